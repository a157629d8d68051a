"""Data panel: choose an observation under the data root (or the demo), modules, band, a user GTI
file and the drop-invalid switch; load it, or add it to the loaded ones (several visits, one joint
model)."""

from __future__ import annotations

import ipywidgets as w
from nuskybgd_engine.demo import DEMO_SPEC, DEMO_VISITS
from nuskybgd_engine.errors import BadConfigError

from .base import Panel, guarded

__all__ = ["DataPanel"]

_STEPS_PER_MODULE = 5  # prepare_observation reports 5 steps per module
_DEMO = "\0demo"  # dropdown value of the demo entry (no directory can have this name)


class DataPanel(Panel):
    """Observation picker with progress.

    Scripting API (``user_api``): ``load(path=None, demo=False)`` (what the Load / Demo buttons do),
    ``add(path=None, demo=False)`` (the "+ observation" button: one more visit, fitted jointly; with
    ``demo`` the next visit of the demo field), ``set_internal(mode)``; settable ``path`` (the path
    box), ``gti`` (user GTI file(s), under the workspace or the data root) and ``drop_invalid``;
    read-only ``modules`` (ticked FPMA/FPMB), ``band`` ((lo, hi) keV) and ``status``.
    """

    title = "Data"
    api_expose = ("load", "add", "set_internal", "path", "gti", "drop_invalid")
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
        self.add_button = w.Button(description="+ observation", tooltip="add the chosen observation (or the demo's "
                                   "next visit) to the loaded ones: one joint model",
                                   layout=w.Layout(width="120px")).add_class("nsb-add-observation")
        self.gti = w.Text(placeholder="optional GTI file(s)", description="usrgti",
                          tooltip="user GTI file(s) under the workspace or the data root, comma-separated",
                          layout=w.Layout(width="320px")).add_class("nsb-gti-input")
        self.drop_invalid = w.Checkbox(value=False, description="drop invalid events", indent=False,
                                       tooltip="leave out events with values outside TLMIN..TLMAX (damaged file)",
                                       layout=w.Layout(width="150px")).add_class("nsb-drop-invalid")
        self.internal = w.Dropdown(options=[("internal bgd shared", "shared"),
                                            ("internal bgd per observation", "per_observation")],
                                   value=s.model.internal, layout=w.Layout(width="230px"),
                                   tooltip="several observations: intbgd/intn one norm for all, or free in each"
                                   ).add_class("nsb-internal-mode")
        self.internal.observe(lambda ch: self._syncing or self.set_internal(ch["new"]), "value")
        s.model.observe(self._internal_changed, "internal")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="200px"))
        self.status = w.Label(s.status).add_class("nsb-data-status")
        self.choice.observe(self._chosen, "value")
        self.load_button.on_click(lambda _b: self.load())
        self.demo_button.on_click(lambda _b: self.load(demo=True))
        self.add_button.on_click(lambda _b: self.add(demo=self.choice.value == _DEMO))
        s.data.observe(lambda ch: setattr(self.status, "value", ch["new"]), "status")
        self.widget = w.VBox([
            w.HBox([self._header(), self.choice, self.path, self.module_a, self.module_b, self.emin, self.emax,
                    self.load_button, self.demo_button], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([self.gti, self.drop_invalid, self.add_button, self.internal],
                   layout=w.Layout(flex_flow="row wrap")),
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

    def _internal_changed(self, change):
        self._syncing = True
        try:
            self.internal.value = change["new"]
        finally:
            self._syncing = False

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
                                    demo=demo, modules=mods, band=self.band, progress=self._tick,
                                    usrgti=self.gti.value.strip() or None, drop_invalid=self.drop_invalid.value)
        except Exception:
            self.progress.bar_style = "danger"
            raise
        self._done()
        self._show_loaded(demo, None if demo else (path if path is not None else self.path.value.strip()))
        return obs

    def _done(self):
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        self.status.value = self.session.status

    @guarded
    def add(self, path=None, demo=False):
        """Add ``path`` (default: the path box) or, with ``demo``, the demo field's next visit to the
        loaded observations (same modules and band; the user GTI box and the drop-invalid switch
        apply to it). Returns its key."""
        self.progress.max = max(1, _STEPS_PER_MODULE * len(self.session.modules))
        self.progress.value = 0
        self.progress.bar_style = "info"
        self.show("")
        if demo:  # the demo field's first visit not loaded yet
            loaded = set(self.session.observation_keys)
            demo = next((v for v, spec in ((1, DEMO_SPEC), *DEMO_VISITS.items()) if spec["obsid"] not in loaded), None)
            if demo is None:
                raise BadConfigError(f"every visit of the demo field is loaded ({len(DEMO_VISITS) + 1})",
                                     field="observation")
        try:
            key = self.session.add_observation(None if demo else (path if path is not None
                                                                  else self.path.value.strip()),
                                               demo=demo, progress=self._tick,
                                               usrgti=self.gti.value.strip() or None,
                                               drop_invalid=self.drop_invalid.value)
        except Exception:
            self.progress.bar_style = "danger"
            raise
        self._done()
        self.show(f"added {key}: {len(self.session.observation_keys)} observations, fitted jointly")
        return key

    @guarded
    def set_internal(self, mode):
        """Internal background across observations: 'shared' or 'per_observation'."""
        try:
            self.session.set_options(internal=mode)
        except Exception:
            self._internal_changed({"new": self.session.model.internal})
            raise
        self.show(f"internal background {mode.replace('_', ' ')}")
