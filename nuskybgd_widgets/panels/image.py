"""Image panel: counts image with stretch, overlays, RA/Dec readout, and region drawing/editing.

The 1000×1000 sky image is cropped to the detectors' footprint (plus a margin); pixel
coordinates on the axes are the 0-based array pixels of the sky grid (regions' convention).
Drawing uses bqplot-image-gl's :class:`MouseInteraction` (its drag/click messages reach Python
with bqplot 0.12); ``handle_mouse(event, x, y)`` is the same entry point for scripts and tests.
The figure and what it draws are in :mod:`.overlays`, the shape geometry in :mod:`..geometry`.
"""

from __future__ import annotations

import math

import ipywidgets as w
import numpy as np
from regions import PixCoord, PolygonPixelRegion

from nuskybgd_engine.errors import BadRegionError

from ..geometry import DRAW_SHAPES, centre, nearest_hit, scaled, shape_from_drag, shape_outline, size, translated
from .base import Panel, guarded
from .overlays import SkyImageFigure, footprint_crop, footprint_outlines, region_outlines

__all__ = ["ImagePanel", "MODES"]

MODES = ("pan", "select") + DRAW_SHAPES + ("polygon",)
_MODE_TIPS = {"pan": "pan and zoom the image",
              "select": "click a region to edit it; drag it to move, its rim to resize",
              "circle": "drag from the centre to draw a circle", "ellipse": "drag from the centre to draw an ellipse",
              "box": "drag from one corner to the other to draw a box",
              "polygon": "click the vertices, then 'finish polygon' (or double-click)"}


class ImagePanel(Panel):
    """Counts image with overlays and region tools.

    Scripting API (``user_api``): ``set_mode(mode)`` (pan/select/circle/ellipse/box/polygon),
    ``handle_mouse(event, x, y)`` ('dragstart', 'dragmove', 'dragend', 'click', 'dblclick',
    'mousemove'; x, y in 0-based sky pixels), ``finish_polygon()``, ``select(name)``,
    ``delete_selected()``, ``rename_selected(name)``, ``set_include_selected(bool)``,
    ``set_role_selected(role)``, ``import_regions(path)``, ``suggest(n)``, ``set_stretch(kind)``,
    ``set_overlay(name, bool)``; settable ``new_role`` and ``exclude`` (what a drawing adds),
    ``stretch``, ``smooth``, ``module``; read-only ``mode``, ``selected``, ``readout`` (RA/Dec text).
    """

    title = "Image"
    api_expose = ("set_mode", "handle_mouse", "finish_polygon", "select", "delete_selected", "rename_selected",
                  "set_include_selected", "set_role_selected", "import_regions", "suggest", "set_stretch",
                  "set_overlay", "new_role", "exclude", "stretch", "smooth", "module", "show_observation")
    api_readonly = ("mode", "selected", "readout")

    def __init__(self, session):
        super().__init__(session)
        self.view = SkyImageFigure()
        self.figure = self.view.figure
        self.view.mouse.on_msg(self._on_mouse_msg)
        # tools
        self.mode_buttons = {}
        for mode in MODES:
            b = w.ToggleButton(value=mode == "pan", description=mode, tooltip=_MODE_TIPS[mode],
                               layout=w.Layout(width="auto"))
            b.add_class(f"nsb-draw-{mode}")
            b.observe(lambda ch, mode=mode: self._mode_clicked(mode, ch["new"]), "value")
            self.mode_buttons[mode] = b
        self.mode = "pan"
        self.new_role = w.Dropdown(options=["background", "source"], value="background", description="new",
                                   layout=w.Layout(width="190px"))
        self.exclude = w.Checkbox(value=False, description="exclude (from selected)", indent=False)
        self.finish_button = w.Button(description="finish polygon", icon="check",
                                      tooltip="close the polygon clicked so far (or double-click its last vertex)",
                                      layout=w.Layout(width="auto"))
        self.finish_button.on_click(lambda _b: self.finish_polygon())
        self.stretch = w.ToggleButtons(options=["linear", "log", "asinh"], value="asinh",
                                       style={"button_width": "60px"})
        self.smooth = w.Checkbox(value=True, description="smooth", indent=False, layout=w.Layout(width="80px"))
        self.stretch.observe(lambda _ch: self._draw_image(), "value")
        self.smooth.observe(lambda _ch: self._draw_image(), "value")
        self.overlays = {k: w.Checkbox(value=v, description=k, indent=False, layout=w.Layout(width="auto", margin="0 12px 0 0"))
                         for k, v in (("detectors", True), ("aperture", False), ("background model", False),
                                      ("regions", True))}
        for k, box in self.overlays.items():
            box.add_class("nsb-overlay-" + k.replace(" ", "-"))
            box.observe(lambda _ch: self._draw_overlays(), "value")
        self.overlays["background model"].observe(lambda _ch: self._draw_image(), "value")
        self.module = w.ToggleButtons(options=["A", "B"], value="A", tooltips=["FPMA", "FPMB"],
                                      style={"button_width": "40px"})
        self.module.observe(lambda _ch: self._on_data(), "value")
        # several observations: which one the image shows (counts, maps and regions follow)
        self.observation = w.Dropdown(options=list(session.data.keys), description="obs",
                                      tooltip="observation shown (the spectra panel shows all)",
                                      style={"description_width": "30px"},
                                      layout=w.Layout(width="190px", display="none" if len(session.data.keys) < 2
                                                      else None)).add_class("nsb-image-observation")
        self.observation.observe(lambda ch: self._syncing or ch["new"] is None
                                 or self.show_observation(ch["new"]), "value")
        session.data.observe(self._on_keys, ["keys", "shown"])
        self.readout = w.Label("").add_class("nsb-cursor-readout")
        # region editor
        self.region_list = w.Select(options=[], rows=6, layout=w.Layout(width="160px")).add_class("nsb-region-list")
        self.region_list.observe(lambda ch: self._on_select(ch["new"]), "value")
        self.name_box = w.Text(description="name", layout=w.Layout(width="200px")).add_class("nsb-region-name")
        self.rename_button = w.Button(description="rename", layout=w.Layout(width="70px"))
        self.rename_button.on_click(lambda _b: self.rename_selected(self.name_box.value.strip()))
        self.role_box = w.Dropdown(options=["background", "source"], description="role",
                                   layout=w.Layout(width="200px"))
        self.role_box.observe(lambda ch: self._syncing or self.set_role_selected(ch["new"]), "value")
        self.include_box = w.Checkbox(value=True, description="include", indent=False)
        self.include_box.observe(lambda ch: self._syncing or self.set_include_selected(ch["new"]), "value")
        self.delete_button = w.Button(description="delete", button_style="danger",
                                      layout=w.Layout(width="70px")).add_class("nsb-delete-region")
        self.delete_button.on_click(lambda _b: self.delete_selected())
        self.reg_path = w.Text(placeholder="ds9 file (workspace or data root)",
                               layout=w.Layout(width="230px")).add_class("nsb-region-path")
        self.import_button = w.Button(description="import .reg", layout=w.Layout(width="90px"))
        self.suggest_button = w.Button(description="suggest regions", layout=w.Layout(width="130px"),
                                       tooltip="add source-free background regions spanning the detectors")
        self.suggest_button.add_class("nsb-suggest-button")
        self.suggest_button.on_click(lambda _b: self.suggest())
        self.import_button.on_click(lambda _b: self.import_regions(self.reg_path.value.strip()))
        self.selected = None
        self._syncing = False
        self._drag = None
        self._drag_last = None  # pointer position of the last applied select-mode drag step
        self._poly = []
        self._crop = (0, 1000, 0, 1000)
        self._counts = None
        session.data.observe(self._on_data, "observation")
        session.regions.observe(self._on_regions, "items")
        session.model.observe(self._on_model, "change")
        # rows wrap rather than cut a label (1440x900 leaves the panel the figure's width)
        wrap = w.Layout(flex_flow="row wrap")
        tools = w.VBox([
            w.HBox(list(self.mode_buttons.values()), layout=wrap),
            w.HBox([self.new_role, self.exclude, self.finish_button], layout=wrap),
            w.HBox([self.stretch, self.smooth, w.Label("FPM"), self.module, self.observation], layout=wrap),
            w.HBox(list(self.overlays.values()), layout=wrap),
        ])
        editor = w.HBox([self.region_list, w.VBox([w.HBox([self.name_box, self.rename_button]), self.role_box,
                                                   w.HBox([self.include_box, self.delete_button]),
                                                   w.HBox([self.reg_path, self.import_button]),
                                                   self.suggest_button])])
        # never narrower than the figure: beside the spectra it would be squeezed and cut
        self.widget = w.VBox([self._header(), tools, self.figure, self.readout, editor, self.message],
                             layout=w.Layout(flex="0 0 auto", width="530px")).add_class("nsb-image-panel")
        if session.observation is not None:
            self._on_data()
            self._on_regions()

    # -- data and drawing ---------------------------------------------------------------------

    def _on_keys(self, _change=None):
        data = self.session.data
        self._syncing = True
        try:
            self.observation.options = list(data.keys)
            self.observation.value = data.shown or None
            self.observation.layout.display = None if len(data.keys) > 1 else "none"
        finally:
            self._syncing = False

    @guarded
    def show_observation(self, key):
        """Show observation ``key`` (the "obs" dropdown when several are loaded)."""
        self.session.show_observation(key)

    def _on_data(self, _change=None):
        obs = self.session.observation
        if obs is None:
            return
        mods = list(obs.modules)
        if self.module.value not in mods:
            self.module.options = mods
        mp = obs[self.module.value]
        self._crop = footprint_crop(obs, self.module.value)
        self._counts = np.array(mp.image.image, dtype=float)
        with self.figure.hold_sync():
            self.view.show_frame(self._crop, footprint_outlines(mp.maps, self._crop))
            self._draw_image()
            self._draw_overlays()

    def _draw_image(self):
        if self._counts is None:
            return
        show_model = self.overlays["background model"].value and self.session.analysis is not None
        img = self._counts
        if show_model:
            try:
                images = self.session.model.background_images(modules=(self.module.value,))
                img = np.asarray(images[self.module.value]["total"], float)
            except Exception as exc:  # noqa: BLE001 - no model yet: keep the counts
                self.show(f"background model image unavailable: {exc}", "warning")
                show_model = False
        self.view.show_image(img, self._crop, self.stretch.value, smooth=self.smooth.value and not show_model)

    def _draw_overlays(self):
        on = {k: b.value for k, b in self.overlays.items()}
        with self.figure.hold_sync():
            self.view.show_footprint(on["detectors"], on["aperture"])
            self._draw_regions(on["regions"])

    def _pixel_shape(self, name):
        return self.session.region(name).regions.to_pixel(self.session.grid)[0].shape

    def _draw_regions(self, visible=True):
        s = self.session
        if visible and s.observation is not None:
            self.view.show_regions(*region_outlines(s.regions, s.grid, self.selected))
        else:
            self.view.show_regions()

    def _on_regions(self, _change=None):
        names = self.session.region_names()
        self._syncing = True
        try:
            self.region_list.options = names
            if self.selected not in names:
                self.selected = None
            self.region_list.value = self.selected
            self._fill_editor()
        finally:
            self._syncing = False
        self._draw_regions(self.overlays["regions"].value)

    def _on_model(self, _change=None):
        if self.overlays["background model"].value:
            self._draw_image()

    def set_overlay(self, name, on=True):
        """Show or hide an overlay: detectors, aperture, background model (instead of the counts), regions."""
        if name not in self.overlays:
            raise ValueError(f"overlay must be one of {', '.join(self.overlays)}")
        self.overlays[name].value = bool(on)

    def set_stretch(self, kind):
        """Display stretch of the image: linear, log or asinh."""
        self.stretch.value = kind

    # -- modes and mouse ------------------------------------------------------------------------

    def set_mode(self, mode):
        """Interaction mode: pan (zoom/pan), select (click/drag regions), or a shape to draw."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        # the figure's interaction first: once the browser shows the other buttons released, the
        # figure already sends drags to this mode (a drag right after the click is not a pan)
        self.view.set_interaction(pan=mode == "pan")
        for m, b in self.mode_buttons.items():
            if b.value != (m == mode):
                b.value = m == mode
        self._poly, self._drag = [], None
        self.view.show_preview()

    def _mode_clicked(self, mode, pressed):
        if pressed:
            self.set_mode(mode)
        elif mode == self.mode:  # the active tool clicked again stays pressed (one tool is always on)
            self.mode_buttons[mode].value = True

    def _on_mouse_msg(self, _widget, content, _buffers):
        event = content.get("event")
        domain = content.get("domain") or {}
        if "x" in domain and "y" in domain:
            self.handle_mouse(event, float(domain["x"]), float(domain["y"]))

    def handle_mouse(self, event, x, y):
        """Process one mouse event at sky pixel (x, y) (0-based) in the current mode."""
        if event == "mousemove":
            return self._readout(x, y)
        if self.session.observation is None:
            return None
        if self.mode in DRAW_SHAPES:
            return self._draw_drag(event, x, y)
        if self.mode == "polygon":
            if event == "click":
                self._poly.append((x, y))
                px, py = zip(*self._poly)
                self.view.show_preview(list(px) + [px[0]], list(py) + [py[0]])
            elif event == "dblclick":
                return self.finish_polygon()
            return None
        if self.mode == "select":
            return self._select_drag(event, x, y)
        return None

    def _readout(self, x, y):
        s = self.session
        if s.observation is None:
            return None
        ra, dec = s.grid.wcs.pixel_to_world_values(x, y)
        ix, iy = int(round(x)), int(round(y))
        c = self._counts
        val = c[iy, ix] if c is not None and 0 <= iy < c.shape[0] and 0 <= ix < c.shape[1] else float("nan")
        self.readout.value = f"RA {float(ra):.5f}°  Dec {float(dec):+.5f}°  (x {x:.1f}, y {y:.1f}; counts {val:g})"
        return float(ra), float(dec)

    def _draw_drag(self, event, x, y):
        if event == "dragstart":
            self._drag = (x, y)
            return None
        if self._drag is None:
            return None
        shape = shape_from_drag(self.mode, self._drag, (x, y))
        if event == "dragmove":
            if shape is not None:
                self.view.show_preview(*shape_outline(shape))
            return None
        if event == "dragend":
            self._drag = None
            self.view.show_preview()
            if shape is None:
                self.show("too small: drag further to draw a region", "warning")
                return None
            return self._add_drawn(shape)
        return None

    @guarded
    def _add_drawn(self, shape):
        s = self.session
        if self.exclude.value:
            if self.selected is None:
                raise BadRegionError("select the region to exclude from first", field="exclude")
            s.add_shape(self.selected, shape, include=False)
            self.show(f"excluded a {type(shape).__name__[:-11].lower()} from {self.selected}")
            return s.region(self.selected)
        item = s.add_region(shape, role=self.new_role.value)
        self.select(item.name)
        self.show(f"added {item.role} region {item.name}")
        return item

    @guarded
    def finish_polygon(self):
        """Close the polygon clicked so far (≥ 3 vertices) into a region."""
        pts, self._poly = self._poly, []
        self.view.show_preview()
        if len(pts) < 3:
            raise BadRegionError(f"a polygon needs at least 3 vertices, got {len(pts)}", field="shape")
        x, y = (np.array(v) for v in zip(*pts))
        return self._add_drawn(PolygonPixelRegion(PixCoord(x, y)))

    @guarded
    def _select_drag(self, event, x, y):
        if event in ("click", "dragstart"):
            grid = self.session.grid
            name = nearest_hit({r.name: r.regions.to_pixel(grid)[0].shape for r in self.session.regions}, x, y)
            self.select(name)
            if event == "dragstart" and name is not None:
                shape = self._pixel_shape(name)
                cx, cy = centre(shape)
                d = math.hypot(x - cx, y - cy)
                kind = "resize" if d > 0.75 * size(shape) else "move"
                self._drag = (name, kind, shape, (x, y), max(d, 1.0))
                self._drag_last = None
            return name
        if self._drag is None or event not in ("dragmove", "dragend"):
            return None
        name, kind, shape, (sx, sy), d0 = self._drag
        if event == "dragend":
            self._drag = None
            if self._drag_last == (x, y):  # the last dragmove already put the region there
                return self.session.region(name)
        self._drag_last = (x, y)
        if kind == "move":
            new = translated(shape, x - sx, y - sy)
        else:
            cx, cy = centre(shape)
            new = scaled(shape, math.hypot(x - cx, y - cy) / d0)
        return self.session.move_region(name, new)

    # -- region editor ---------------------------------------------------------------------------

    def select(self, name):
        """Select region ``name`` (None: nothing) for the editor and select-mode drags."""
        self.selected = name
        self._syncing = True
        try:
            self.region_list.value = name if name in self.region_list.options else None
            self._fill_editor()
        finally:
            self._syncing = False
        self._draw_regions(self.overlays["regions"].value)

    def _on_select(self, name):
        if not self._syncing:
            self.select(name)

    def _fill_editor(self):
        if self.selected is None:
            self.name_box.value = ""
            return
        item = self.session.region(self.selected)
        self.name_box.value = item.name
        self.role_box.value = item.role
        self.include_box.value = item.regions[0].include

    def _need_selected(self):
        if self.selected is None:
            raise BadRegionError("select a region first", field="region")
        return self.selected

    @guarded
    def delete_selected(self):
        """Delete the selected region."""
        name = self._need_selected()
        self.session.remove_region(name)
        self.select(None)
        self.show(f"deleted {name}")

    @guarded
    def rename_selected(self, new_name):
        """Rename the selected region."""
        item = self.session.rename_region(self._need_selected(), new_name)
        self.select(item.name)
        return item

    @guarded
    def set_role_selected(self, role):
        """Make the selected region a background or a source region."""
        return self.session.set_role(self._need_selected(), role)

    @guarded
    def set_include_selected(self, include):
        """Make the selected region's first shape an include (True) or exclude (False) shape."""
        return self.session.set_include(self._need_selected(), include)

    @guarded
    def import_regions(self, path, role=None):
        """Import a ds9 file as one region (role: the 'new' dropdown)."""
        item = self.session.import_regions(path, role=role or self.new_role.value)
        self.select(item.name)
        self.show(f"imported {item.name} ({len(item.regions)} shape(s))")
        return item

    @guarded
    def suggest(self, n=4):
        """Add ``n`` suggested background regions (editable like drawn ones)."""
        names = self.session.suggest_regions(n)
        self.show(f"suggested {', '.join(names)}")
        return names
