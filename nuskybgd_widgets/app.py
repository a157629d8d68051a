"""The dashboard application: one Session and its six panels in one root widget.

>>> app = build_app(workspace="work", demo=True)      # doctest: +SKIP
>>> app.widget                                         # display in Jupyter / Voilà
>>> app.session.fit(); app.panels["export"].export_xcm()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ipywidgets as w
from IPython.display import display

from .panels import (
    DataPanel,
    ExportPanel,
    ImagePanel,
    LinksPanel,
    ParametersPanel,
    SpectraPanel,
)
from .session import Session

__all__ = ["App", "build_app"]

_TABS = ("data", "parameters", "links", "export")

# Ctrl-Z / Ctrl-Shift-Z (Ctrl-Y) click the Undo / Redo buttons. A widget cannot run a <script>, so
# the listener is installed once from an image's onerror handler (innerHTML runs those); it
# ignores keys typed into text boxes (their own undo), and acts on the app holding the focus (the
# page in Voila, the output's cell in JupyterLab), never on a dashboard in another cell or tab.
_SHORTCUTS = """<img src="data:," style="display:none" onerror="
if (!window.nsbKeys) { window.nsbKeys = true;
  document.addEventListener('keydown', function (e) {
    if (!(e.ctrlKey || e.metaKey)) return;
    var t = e.target, tag = t && t.tagName;
    if (tag === 'INPUT' || tag === 'TEXTAREA' || (t && t.isContentEditable)) return;
    var k = e.key.toLowerCase(), which = null;
    if (k === 'z') which = e.shiftKey ? 'redo' : 'undo'; else if (k === 'y') which = 'redo';
    if (!which) return;
    var app = t && t.closest && t.closest('.nsb-app');
    var apps = t && t.querySelectorAll ? t.querySelectorAll('.nsb-app') : [];
    if (!app && apps.length === 1) app = apps[0];
    if (!app) return;
    var b = app.querySelector('.nsb-' + which + '-button');
    if (b && !b.disabled) { e.preventDefault(); b.click(); }
  });
}">"""


@dataclass
class App:
    """``widget`` (root ipywidget), ``session`` (:class:`Session`), ``panels`` (name → panel)."""

    widget: w.Widget
    session: Session
    panels: dict = field(default_factory=dict)

    def _ipython_display_(self):  # pragma: no cover - display hook
        display(self.widget)


def build_app(data_root=None, workspace=None, demo=False):
    """Create the session and panels.

    Parameters
    ----------
    data_root : path-like, optional
        Observations are opened only under this directory.
    workspace : path-like, optional
        Outputs (and the demo observation, unless ``$NUSKYBGD_DEMO_DIR`` is set) go here.
    demo : bool
        Load the demo observation with its suggested regions (4 background, 1 source).

    Returns
    -------
    App
    """
    session = Session(data_root=data_root, workspace=workspace)
    panels = {"data": DataPanel(session), "image": ImagePanel(session), "links": LinksPanel(session),
              "spectra": SpectraPanel(session), "parameters": ParametersPanel(session),
              "export": ExportPanel(session)}
    links = panels["links"]
    links.set_visible(False)  # its link matrix and freeze grid (n² + 4n widgets): built only while its tab is open
    if demo:
        panels["data"].load(demo=True)
    # One screen at 1440x900: the image and the spectra (with Fit) side by side; the rest in tabs.
    tabs = w.Tab([panels[k].widget for k in _TABS]).add_class("nsb-tabs")
    for i, k in enumerate(_TABS):
        tabs.set_title(i, panels[k].title)
    tabs.selected_index = _TABS.index("parameters" if session.observation is not None else "data")
    tabs.observe(lambda ch: links.set_visible(ch["new"] == _TABS.index("links")), "selected_index")
    keys = w.HTML(_SHORTCUTS, layout=w.Layout(height="0px", overflow="hidden")).add_class("nsb-shortcuts")
    # the spectra follow the region picked on the image
    image, spectra = panels["image"], panels["spectra"]
    image.region_list.observe(lambda ch: _focus(spectra, ch["new"]), "value")
    root = w.VBox([
        # both panels have fixed widths (no text length moves the image); a narrow page (a notebook
        # cell) puts the spectra below the image instead of cutting either
        w.HBox([image.widget, spectra.widget], layout=w.Layout(align_items="flex-start", flex_flow="row wrap")),
        tabs, keys,
    ]).add_class("nsb-app")
    return App(widget=root, session=session, panels=panels)


def _focus(spectra, name):
    if name in spectra.focus.options:
        spectra.focus.value = name
