"""The dashboard application: one Session and its six panels in one root widget.

>>> app = build_app(workspace="work", demo=True)      # doctest: +SKIP
>>> app.widget                                         # display in Jupyter / Voilà
>>> app.session.fit(); app.panels["export"].export_xcm()
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ipywidgets as w

from .panels import DataPanel, ExportPanel, ImagePanel, LinksPanel, ParametersPanel, SpectraPanel
from .session import Session

__all__ = ["App", "build_app"]


@dataclass
class App:
    """``widget`` (root ipywidget), ``session`` (:class:`Session`), ``panels`` (name → panel)."""

    widget: w.Widget
    session: Session
    panels: dict = field(default_factory=dict)

    def _ipython_display_(self):  # pragma: no cover - display hook
        from IPython.display import display

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
    if demo:
        panels["data"].load(demo=True)
    root = w.VBox([
        panels["data"].widget,
        w.HBox([panels["image"].widget, panels["spectra"].widget]),
        w.HBox([panels["parameters"].widget, panels["links"].widget]),
        panels["export"].widget,
    ]).add_class("nsb-app")
    return App(widget=root, session=session, panels=panels)
