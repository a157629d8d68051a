"""Data panel: choose an observation under the data root (or the demo), modules and band; load it."""

from __future__ import annotations

import ipywidgets as w

from .base import Panel, guarded

__all__ = ["DataPanel"]

_STEPS_PER_MODULE = 5  # prepare_observation reports 5 steps per module
_DEMO = "\0demo"  # dropdown value of the demo entry (no directory can have this name)


class DataPanel(Panel):
    """Observation picker with progress.

    Scripting API (``user_api``): ``load(path=None, demo=False)`` (what the Load / Demo buttons do);
    settable ``path`` (the path box); read-only ``modules`` (ticked FPMA/FPMB), ``band`` ((lo, hi) keV)
    and ``status``.
    """

    title = "Data"
    api_expose = ("load", "path")
    api_readonly = ("modules", "band", "status")

    def __init__(self, session):
        super().__init__(session)
        s = session
        self._syncing = False
        self.choice = w.Dropdown(description="observation", options=self._choices(),
                                 layout=w.Layout(width="260px")).add_class("nsb-observation-choice")
        self.path = w.Text(placeholder="obsid directory (under the data root)", description="path",
                           layout=w.Layout(width="320px")).add_class("nsb-path-input")
        self.module_a = w.Checkbox(value="A" in s.modules, description="FPMA", indent=False,
                                   layout=w.Layout(width="70px"))
        self.module_b = w.Checkbox(value="B" in s.modules, description="FPMB", indent=False,
                                   layout=w.Layout(width="70px"))
        self.emin = w.BoundedFloatText(value=s.band[0], min=1.6, max=165.0, step=0.5, description="image keV",
                                       tooltip="band of the counts image (not the fit range)",
                                       layout=w.Layout(width="140px"))
        self.emax = w.BoundedFloatText(value=s.band[1], min=1.6, max=165.0, step=0.5,
                                       layout=w.Layout(width="80px"))
        self.load_button = w.Button(description="Load", button_style="primary").add_class("nsb-load-button")
        self.demo_button = w.Button(description="Demo").add_class("nsb-demo-button")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="200px"))
        self.status = w.Label(s.status).add_class("nsb-data-status")
        self.choice.observe(self._chosen, "value")
        self.load_button.on_click(lambda _b: self.load())
        self.demo_button.on_click(lambda _b: self.load(demo=True))
        s.data.observe(lambda ch: setattr(self.status, "value", ch["new"]), "status")
        self.widget = w.VBox([
            w.HBox([self._header(), self.choice, self.path, self.module_a, self.module_b, self.emin, self.emax,
                    self.load_button, self.demo_button], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.progress, self.status]),
            self.message,
        ]).add_class("nsb-data-panel")

    def _choices(self):
        """What the dropdown lists: the observations under the data root and the demo."""
        return [("", ""), ("demo (simulated)", _DEMO)] + [(d, d) for d in self.session.observation_dirs()]

    def _chosen(self, change):
        if self._syncing or not change["new"]:
            return
        if change["new"] == _DEMO:
            self.load(demo=True)
        else:
            self.path.value = change["new"]

    def _show_loaded(self, demo, path):
        """The dropdown lists what is there now and shows what was loaded."""
        self._syncing = True
        try:
            self.choice.options = self._choices()
            value = _DEMO if demo else path
            self.choice.value = value if value in [v for _k, v in self.choice.options] else ""
        finally:
            self._syncing = False

    @property
    def modules(self):
        """The ticked modules."""
        return tuple(m for m, box in (("A", self.module_a), ("B", self.module_b)) if box.value)

    @property
    def band(self):
        """The (low, high) keV band in the boxes."""
        return (self.emin.value, self.emax.value)

    def _tick(self, text):
        self.progress.value = min(self.progress.value + 1, self.progress.max)
        self.status.value = text

    @guarded
    def load(self, path=None, demo=False):
        """Load ``path`` (default: the path box) or the demo with the chosen modules and band."""
        mods = self.modules
        self.progress.max = max(1, _STEPS_PER_MODULE * len(mods))
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.show("")
        try:
            obs = self.session.load(None if demo else (path if path is not None else self.path.value.strip()),
                                    demo=demo, modules=mods, band=self.band, progress=self._tick)
        except Exception:
            self.progress.bar_style = "danger"
            raise
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        self.status.value = self.session.status
        self._show_loaded(demo, None if demo else (path if path is not None else self.path.value.strip()))
        return obs
