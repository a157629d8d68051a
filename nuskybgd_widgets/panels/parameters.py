"""Parameters panel: number boxes and log sliders per parameter, freeze/thaw, links, reset."""

from __future__ import annotations

import math

import ipywidgets as w

from ..state import COMPONENTS
from .base import Panel, guarded

__all__ = ["ParametersPanel"]


class _Row:
    """The widgets of one parameter (a ParameterRow)."""

    def __init__(self, panel, p):
        self.source, self.index = p.source, p.index
        self.label = w.Label(f"p{p.index} {p.component}.{p.name}", layout=w.Layout(width="190px"))
        self.box = w.FloatText(value=p.value, layout=w.Layout(width="120px"))
        self.slider = w.FloatLogSlider(value=1.0, base=10, min=-2, max=2, step=0.02, readout=False,
                                       continuous_update=True, layout=w.Layout(width="160px"))
        self.frozen = w.Checkbox(value=p.frozen, description="frozen", indent=False, layout=w.Layout(width="70px"))
        self.link = w.Label("", layout=w.Layout(width="200px"))
        self.box.observe(lambda ch: panel._value_changed(self, ch["new"]), "value")
        self.slider.observe(lambda ch: panel._slider_changed(self, ch["new"]), "value")
        self.frozen.observe(lambda ch: panel._frozen_changed(self, ch["new"]), "value")
        self.widget = w.HBox([self.label, self.box, self.slider, self.frozen, self.link])
        self.centre = None


class ParametersPanel(Panel):
    """Parameters of one component and spectrum.

    Scripting API (``user_api``): ``select(source, g)``, ``set_value(source, index, value)``,
    ``set_frozen(source, index, frozen)``, ``reset()``; settable ``norms_only``; read-only ``shown``
    (the ParameterRows on screen). ``rows`` maps (source, index) to row widgets (``.box`` FloatText,
    ``.slider`` log slider around the value, ``.frozen`` Checkbox).
    """

    title = "Parameters"
    api_expose = ("select", "set_value", "set_frozen", "reset", "norms_only")
    api_readonly = ("shown",)

    def __init__(self, session):
        super().__init__(session)
        self.source = w.Dropdown(options=list(COMPONENTS), value="apbgd", description="component")
        self.spectrum = w.Dropdown(options=[], description="spectrum")
        self.norms_only = w.Checkbox(value=True, description="norms only", indent=False)
        self.reset_button = w.Button(description="Reset to presets").add_class("nsb-reset-button")
        self.reset_button.on_click(lambda _b: self.reset())
        for box in (self.source, self.spectrum, self.norms_only):
            box.observe(lambda _ch: self._build(), "value")
        self.table = w.VBox()
        self.rows = {}
        self._syncing = False
        session.model.observe(self._on_model, ["spectra", "parameters"])
        self.widget = w.VBox([self._header(), w.HBox([self.source, self.spectrum, self.norms_only, self.reset_button]),
                              self.table, self.message]).add_class("nsb-parameters-panel")
        self._on_model()

    def _on_model(self, _change=None):
        names = self.session.spectrum_names()
        options = [(n, g) for g, n in enumerate(names, start=1)]
        if list(self.spectrum.options) != options:
            self._syncing = True
            try:
                old = self.spectrum.value
                self.spectrum.options = options
                self.spectrum.value = old if old in range(1, len(names) + 1) else (1 if names else None)
            finally:
                self._syncing = False
            self._build()
        else:
            self._sync()

    def select(self, source, g):
        """Show the parameters of ``source`` in data group ``g``."""
        self.source.value = source
        self.spectrum.value = g

    @property
    def shown(self):
        """The ParameterRows of the chosen component and spectrum (norms only when ticked)."""
        g, source = self.spectrum.value, self.source.value
        return [p for p in self.session.model.parameters if p.source == source and p.group == g
                and (p.name == "norm" or not self.norms_only.value)]

    def _build(self, _change=None):
        if self._syncing:
            return
        self.rows = {}
        if self.session.analysis is None or self.spectrum.value is None:
            self.table.children = [w.Label("no background spectra yet")]
            return
        rows = []
        for p in self.shown:
            row = _Row(self, p)
            self.rows[(p.source, p.index)] = row
            rows.append(row.widget)
        self.table.children = rows
        self._sync()

    def _sync(self):
        if self.session.analysis is None:
            return
        params = {(p.source, p.index): p for p in self.shown}
        if set(params) != set(self.rows):  # the model's layout changed under the same spectra
            return self._build()
        self._syncing = True
        try:
            for key, row in self.rows.items():
                p = params[key]
                row.box.value = p.value
                row.frozen.value = p.frozen
                row.link.value = p.link or ""
                row.box.disabled = row.slider.disabled = p.link is not None
                row.frozen.disabled = p.link is not None
                row.centre = row.box.value if row.box.value > 0 else None
                row.slider.value = 1.0
                row.slider.disabled = row.slider.disabled or row.centre is None
        finally:
            self._syncing = False

    def _value_changed(self, row, value):
        if not self._syncing:
            self.set_value(row.source, row.index, value)

    def _slider_changed(self, row, factor):
        if not self._syncing and row.centre is not None and math.isfinite(factor):
            self.set_value(row.source, row.index, row.centre * factor, keep_centre=True)

    def _frozen_changed(self, row, frozen):
        if not self._syncing:
            self.set_frozen(row.source, row.index, frozen)

    @guarded
    def set_value(self, source, index, value, keep_centre=False):
        """Set a parameter (the number box); the spectra redraw."""
        row = self.rows.get((source, index))
        centre = row.centre if row is not None else None
        try:
            self.session.set_parameter(source, index, value)  # success: parameters -> _on_model syncs
        except Exception:
            self._sync()
            raise
        finally:
            if keep_centre and row is not None and centre:
                # the slider moves relative to where the drag started
                self._syncing = True
                row.centre = centre
                row.slider.value = value / centre
                self._syncing = False

    @guarded
    def set_frozen(self, source, index, frozen):
        try:
            self.session.freeze(source, index, frozen)  # success: parameters -> _on_model syncs
        except Exception:
            self._sync()
            raise

    @guarded
    def reset(self):
        """Back to the preset values and freezes."""
        self.session.reset_parameters()
        self._build()
