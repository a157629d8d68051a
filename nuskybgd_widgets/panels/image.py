"""Image panel: counts image with stretch, overlays, RA/Dec readout, and region drawing/editing.

The 1000×1000 sky image is cropped to the detectors' footprint (plus a margin); pixel
coordinates on the axes are the 0-based array pixels of the sky grid (regions' convention).
Drawing uses bqplot-image-gl's :class:`MouseInteraction` (its drag/click messages reach Python
with bqplot 0.12); ``handle_mouse(event, x, y)`` is the same entry point for scripts and tests.
"""

from __future__ import annotations

import math

import bqplot as bq
import ipywidgets as w
import numpy as np
from bqplot_image_gl import ImageGL
from bqplot_image_gl.interacts import MouseInteraction
from regions import (CirclePixelRegion, EllipsePixelRegion, PixCoord, PolygonPixelRegion,
                     RectanglePixelRegion)
from astropy import units as u

from nuskybgd_engine.errors import BadRegionError
from nuskybgd_engine.io.regions.shapes import outline as _annulus_or_sector_outline

from .base import Panel, guarded

__all__ = ["ImagePanel", "mask_outline", "shape_outline", "stretch"]

MODES = ("pan", "select", "circle", "ellipse", "box", "polygon")
MARGIN = 20


def stretch(image, kind):
    """Display transform of a counts image: ``linear``, ``log`` (log10(1+c)) or ``asinh``."""
    img = np.asarray(image, dtype=float)
    if kind == "linear":
        return img
    if kind == "log":
        return np.log10(1.0 + np.maximum(img, 0.0))
    if kind == "asinh":
        a = max(float(np.percentile(img, 99.5)) * 0.1, 1e-3)
        return np.arcsinh(img / a)
    raise ValueError(kind)


def mask_outline(mask, x0=0, y0=0):
    """Pixel-edge outline of a boolean mask as x, y arrays with NaN separators (for bqplot Lines).

    Edges lie between pixels whose centres differ in the mask, so the outline is exactly the
    boundary of the selected pixel centres (no interpolation).
    """
    m = np.pad(np.asarray(mask, bool), 1)
    xs, ys = [], []
    for axis in (0, 1):
        a = m if axis == 0 else m.T
        diff = a[:, 1:] != a[:, :-1]  # boundary between columns c and c+1 (padded)
        for c in np.nonzero(diff.any(axis=0))[0]:
            col = np.concatenate([[0], diff[:, c].astype(np.int8), [0]])
            starts = np.nonzero(np.diff(col) == 1)[0]
            ends = np.nonzero(np.diff(col) == -1)[0] - 1
            edge = c - 0.5  # original index of column c+1 is c; its left edge is c - 0.5
            lo, hi = starts - 1 - 0.5, ends - 1 + 0.5
            n = starts.size
            u_ = np.column_stack([np.full(n, edge), np.full(n, edge), np.full(n, np.nan)]).ravel()
            v_ = np.column_stack([lo, hi, np.full(n, np.nan)]).ravel()
            if axis == 0:
                xs.append(u_), ys.append(v_)
            else:
                xs.append(v_), ys.append(u_)
    if not xs:
        return np.array([]), np.array([])
    return np.concatenate(xs) + x0, np.concatenate(ys) + y0


def shape_outline(shape, n=72):
    """Outline (closed) of a pixel shape as x, y arrays."""
    if isinstance(shape, CirclePixelRegion):
        t = np.linspace(0, 2 * np.pi, n + 1)
        return shape.center.x + shape.radius * np.cos(t), shape.center.y + shape.radius * np.sin(t)
    if isinstance(shape, EllipsePixelRegion):
        t = np.linspace(0, 2 * np.pi, n + 1)
        a, b = shape.width / 2, shape.height / 2
        th = shape.angle.to_value(u.rad)
        x, y = a * np.cos(t), b * np.sin(t)
        return (shape.center.x + x * np.cos(th) - y * np.sin(th), shape.center.y + x * np.sin(th) + y * np.cos(th))
    if isinstance(shape, RectanglePixelRegion):
        a, b = shape.width / 2, shape.height / 2
        th = shape.angle.to_value(u.rad)
        x, y = np.array([-a, a, a, -a, -a]), np.array([-b, -b, b, b, -b])
        return (shape.center.x + x * np.cos(th) - y * np.sin(th), shape.center.y + x * np.sin(th) + y * np.cos(th))
    if isinstance(shape, PolygonPixelRegion):
        x, y = np.atleast_1d(shape.vertices.x), np.atleast_1d(shape.vertices.y)
        return np.append(x, x[0]), np.append(y, y[0])
    if not hasattr(shape, "inner_radius"):  # elliptical/box annuli and ds9 sectors (pie, panda ...)
        return _annulus_or_sector_outline(shape, n)
    xs, ys = [], []  # annulus: both circles
    for r in (shape.inner_radius, shape.outer_radius):
        cx, cy = shape_outline(CirclePixelRegion(shape.center, r), n)
        xs += [cx, [np.nan]]
        ys += [cy, [np.nan]]
    return np.concatenate(xs), np.concatenate(ys)


def _join(parts):
    if not parts:
        return np.array([]), np.array([])
    xs, ys = [], []
    for x, y in parts:
        xs += [np.asarray(x, float), [np.nan]]
        ys += [np.asarray(y, float), [np.nan]]
    return np.concatenate(xs), np.concatenate(ys)


def _centre(shape):
    if isinstance(shape, PolygonPixelRegion):
        return float(np.mean(shape.vertices.x)), float(np.mean(shape.vertices.y))
    return float(shape.center.x), float(shape.center.y)


def _size(shape):
    if isinstance(shape, CirclePixelRegion):
        return float(shape.radius)
    if isinstance(shape, (EllipsePixelRegion, RectanglePixelRegion)):
        return 0.5 * float(max(shape.width, shape.height))
    if isinstance(shape, PolygonPixelRegion):
        cx, cy = _centre(shape)
        return float(np.max(np.hypot(shape.vertices.x - cx, shape.vertices.y - cy)))
    return float(getattr(shape, "outer_radius", 1.0))


def _translated(shape, dx, dy):
    if isinstance(shape, PolygonPixelRegion):
        return PolygonPixelRegion(PixCoord(shape.vertices.x + dx, shape.vertices.y + dy))
    out = shape.copy()
    out.center = PixCoord(shape.center.x + dx, shape.center.y + dy)
    return out


def _scaled(shape, f):
    f = max(f, 1e-3)
    if isinstance(shape, CirclePixelRegion):
        return CirclePixelRegion(shape.center, max(shape.radius * f, 1.0))
    if isinstance(shape, (EllipsePixelRegion, RectanglePixelRegion)):
        return type(shape)(shape.center, max(shape.width * f, 1.0), max(shape.height * f, 1.0), angle=shape.angle)
    if isinstance(shape, PolygonPixelRegion):
        cx, cy = _centre(shape)
        return PolygonPixelRegion(PixCoord(cx + (shape.vertices.x - cx) * f, cy + (shape.vertices.y - cy) * f))
    return shape


class ImagePanel(Panel):
    """Counts image with overlays and region tools.

    Scripting API: ``set_mode(mode)`` (pan/select/circle/ellipse/box/polygon),
    ``handle_mouse(event, x, y)`` ('dragstart', 'dragmove', 'dragend', 'click', 'dblclick',
    'mousemove'; x, y in 0-based sky pixels), ``finish_polygon()``, ``select(name)``,
    ``delete_selected()``, ``rename_selected(name)``, ``set_include_selected(bool)``,
    ``set_role_selected(role)``, ``import_regions(path)``, ``set_stretch(kind)``, ``readout``
    (RA/Dec label), ``overlays`` (name → Checkbox), ``new_role`` and ``exclude`` (what a drawing adds).
    """

    title = "Image"

    def __init__(self, session):
        super().__init__(session)
        self.xs = bq.LinearScale(min=0.0, max=999.0)
        self.ys = bq.LinearScale(min=0.0, max=999.0)
        self.cs = bq.ColorScale(scheme="viridis", min=0.0, max=1.0)
        self.image = ImageGL(image=np.zeros((2, 2), dtype=np.float32), x=(0, 1), y=(0, 1),
                             scales={"x": self.xs, "y": self.ys, "image": self.cs})
        sc = {"x": self.xs, "y": self.ys}
        self.det_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#ffffff"], stroke_width=1, opacities=[0.8])
        self.ap_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#ffa348"], stroke_width=1, line_style="dashed")
        self.bgd_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#33d17a"], stroke_width=2)
        self.src_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#00e5ff"], stroke_width=2)
        self.exc_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#ff4040"], stroke_width=2, line_style="dashed")
        self.sel_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#ffff00"], stroke_width=3)
        self.preview = bq.Lines(x=[], y=[], scales=sc, colors=["#ffffff"], stroke_width=1.5, line_style="dashed")
        self.labels = bq.Label(x=[], y=[], text=[], scales=sc, colors=["white"], default_size=12)
        self.figure = bq.Figure(
            marks=[self.image, self.det_lines, self.ap_lines, self.bgd_lines, self.src_lines, self.exc_lines,
                   self.sel_lines, self.preview, self.labels],
            axes=[bq.Axis(scale=self.xs, label="sky x (pixel)"),
                  bq.Axis(scale=self.ys, orientation="vertical", label="sky y (pixel)")],
            fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10}, min_aspect_ratio=1, max_aspect_ratio=1,
            layout=w.Layout(width="520px", height="520px"), animation_duration=0)
        self.figure.add_class("nsb-image-figure")
        self.panzoom = bq.interacts.PanZoom(scales={"x": [self.xs], "y": [self.ys]})
        self.mouse = MouseInteraction(x_scale=self.xs, y_scale=self.ys, move_throttle=50)
        self.mouse.on_msg(self._on_mouse_msg)
        self.figure.interaction = self.panzoom
        # tools
        self.mode_buttons = {}
        for mode in MODES:
            b = w.ToggleButton(value=mode == "pan", description=mode, layout=w.Layout(width="72px"))
            b.add_class(f"nsb-draw-{mode}")
            b.observe(lambda ch, mode=mode: ch["new"] and self.set_mode(mode), "value")
            self.mode_buttons[mode] = b
        self.mode = "pan"
        self.new_role = w.Dropdown(options=["background", "source"], value="background", description="new",
                                   layout=w.Layout(width="190px"))
        self.exclude = w.Checkbox(value=False, description="exclude (from selected)", indent=False)
        self.finish_button = w.Button(description="finish polygon", layout=w.Layout(width="120px"))
        self.finish_button.on_click(lambda _b: self.finish_polygon())
        self.stretch = w.ToggleButtons(options=["linear", "log", "asinh"], value="asinh",
                                       style={"button_width": "60px"})
        self.smooth = w.Checkbox(value=True, description="smooth", indent=False, layout=w.Layout(width="80px"))
        self.stretch.observe(lambda _ch: self._draw_image(), "value")
        self.smooth.observe(lambda _ch: self._draw_image(), "value")
        self.overlays = {k: w.Checkbox(value=v, description=k, indent=False, layout=w.Layout(width="130px"))
                         for k, v in (("detectors", True), ("aperture", False), ("background model", False),
                                      ("regions", True))}
        for k, box in self.overlays.items():
            box.add_class("nsb-overlay-" + k.replace(" ", "-"))
            box.observe(lambda _ch: self._draw_overlays(), "value")
        self.overlays["background model"].observe(lambda _ch: self._draw_image(), "value")
        self.module = w.ToggleButtons(options=["A", "B"], value="A", description="FPM",
                                      style={"button_width": "40px"})
        self.module.observe(lambda _ch: self._on_data(), "value")
        self.readout = w.Label("").add_class("nsb-cursor-readout")
        # region editor
        self.region_list = w.Select(options=[], rows=6, layout=w.Layout(width="160px"))
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
        session.observe(self._on_data, "data_version")
        session.observe(self._on_regions, "regions_version")
        session.observe(self._on_fit, "model_version")
        tools = w.VBox([
            w.HBox(list(self.mode_buttons.values())),
            w.HBox([self.new_role, self.exclude, self.finish_button]),
            w.HBox([self.stretch, self.smooth, self.module]),
            w.HBox(list(self.overlays.values())),
        ])
        editor = w.HBox([self.region_list, w.VBox([w.HBox([self.name_box, self.rename_button]), self.role_box,
                                                   w.HBox([self.include_box, self.delete_button]),
                                                   w.HBox([self.reg_path, self.import_button]),
                                                   self.suggest_button])])
        self.widget = w.VBox([self._header(), tools, self.figure, self.readout, editor,
                              self.message]).add_class("nsb-image-panel")
        if session.observation is not None:
            self._on_data()
            self._on_regions()

    # -- data and drawing ---------------------------------------------------------------------

    def _on_data(self, _change=None):
        obs = self.session.observation
        if obs is None:
            return
        mods = list(obs.modules)
        if self.module.value not in mods:
            self.module.options = mods
        mp = obs[self.module.value]
        foot = sum(np.asarray(d) for m in mods for d in obs[m].maps.det) > 0.01
        iy, ix = np.nonzero(foot)
        if iy.size:
            ny, nx = foot.shape
            y0, y1 = max(int(iy.min()) - MARGIN, 0), min(int(iy.max()) + MARGIN + 1, ny)
            x0, x1 = max(int(ix.min()) - MARGIN, 0), min(int(ix.max()) + MARGIN + 1, nx)
            side = max(x1 - x0, y1 - y0)  # square crop keeps pixels square
            x1, y1 = min(x0 + side, nx), min(y0 + side, ny)
        else:
            y0, x0, (y1, x1) = 0, 0, mp.image.image.shape
        self._crop = (x0, x1, y0, y1)
        self._counts = np.array(mp.image.image, dtype=float)
        with self.figure.hold_sync():
            self.xs.min, self.xs.max = x0 - 0.5, x1 - 0.5
            self.ys.min, self.ys.max = y0 - 0.5, y1 - 0.5
            self._draw_image()
            sl = (slice(y0, y1), slice(x0, x1))
            parts = [mask_outline(np.asarray(d)[sl] > 0.5, x0, y0) for d in mp.maps.det]
            self._det_xy = _join(parts)
            ap = np.asarray(mp.maps.bgdap)[sl]
            inside = ap[np.asarray(sum(np.asarray(d)[sl] for d in mp.maps.det)) > 0.5]
            levels = np.percentile(inside, [25, 50, 75]) if inside.size else []
            self._ap_xy = _join([mask_outline(ap > lev, x0, y0) for lev in levels])
            self._draw_overlays()

    def _model_image(self):
        images = self.session.background_images(modules=(self.module.value,))
        return np.asarray(images[self.module.value]["total"], float)

    def _draw_image(self):
        if self._counts is None:
            return
        x0, x1, y0, y1 = self._crop
        show_model = self.overlays["background model"].value and self.session.analysis is not None
        try:
            img = self._model_image() if show_model else self._counts
        except Exception as exc:  # noqa: BLE001 - no model yet: keep the counts
            self.show(f"background model image unavailable: {exc}", "warning")
            img = self._counts
        img = img[y0:y1, x0:x1]
        if self.smooth.value and not show_model:
            from scipy.ndimage import gaussian_filter

            img = gaussian_filter(img, 1.5)
        disp = stretch(img, self.stretch.value).astype(np.float32)
        with self.figure.hold_sync():
            self.image.image = disp
            self.image.x, self.image.y = (x0 - 0.5, x1 - 0.5), (y0 - 0.5, y1 - 0.5)
            self.cs.min, self.cs.max = float(disp.min()), float(max(disp.max(), disp.min() + 1e-6))

    def _draw_overlays(self):
        on = {k: b.value for k, b in self.overlays.items()}
        empty = (np.array([]), np.array([]))
        with self.figure.hold_sync():
            self.det_lines.x, self.det_lines.y = getattr(self, "_det_xy", empty) if on["detectors"] else empty
            self.ap_lines.x, self.ap_lines.y = getattr(self, "_ap_xy", empty) if on["aperture"] else empty
            self._draw_regions(on["regions"])

    def _pixel_entries(self, item):
        return item.regions.to_pixel(self.session.grid)

    def _draw_regions(self, visible=True):
        s = self.session
        groups = {"background": [], "source": [], "exclude": [], "selected": []}
        lx, ly, lt = [], [], []
        if visible and s.observation is not None:
            for item in s.regions:
                entries = self._pixel_entries(item)
                for e in entries:
                    xy = shape_outline(e.shape)
                    groups[item.role if e.include else "exclude"].append(xy)
                    if item.name == self.selected:
                        groups["selected"].append(xy)
                first = entries[0].shape
                cx, cy = _centre(first)
                lx.append(cx), ly.append(cy + _size(first) + 6), lt.append(item.name)
        with self.figure.hold_sync():
            for key, mark in (("background", self.bgd_lines), ("source", self.src_lines),
                              ("exclude", self.exc_lines), ("selected", self.sel_lines)):
                mark.x, mark.y = _join(groups[key])
            self.labels.x, self.labels.y, self.labels.text = lx, ly, lt

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

    def _on_fit(self, _change=None):
        if self.overlays["background model"].value:
            self._draw_image()

    # -- modes and mouse ------------------------------------------------------------------------

    def set_mode(self, mode):
        """Interaction mode: pan (zoom/pan), select (click/drag regions), or a shape to draw."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        for m, b in self.mode_buttons.items():
            if b.value != (m == mode):
                b.value = m == mode
        self.figure.interaction = self.panzoom if mode == "pan" else self.mouse
        self._poly, self._drag = [], None
        self.preview.x, self.preview.y = [], []

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
        if self.mode in ("circle", "ellipse", "box"):
            return self._draw_drag(event, x, y)
        if self.mode == "polygon":
            if event == "click":
                self._poly.append((x, y))
                px, py = zip(*self._poly)
                self.preview.x, self.preview.y = list(px) + [px[0]], list(py) + [py[0]]
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
        shape = self._shape_from_drag(self._drag, (x, y))
        if event == "dragmove":
            if shape is not None:
                self.preview.x, self.preview.y = shape_outline(shape)
            return None
        if event == "dragend":
            self._drag = None
            self.preview.x, self.preview.y = [], []
            if shape is None:
                self.show("too small: drag further to draw a region", "warning")
                return None
            return self._add_drawn(shape)
        return None

    def _shape_from_drag(self, start, end):
        (x0, y0), (x1, y1) = start, end
        if self.mode == "circle":
            r = math.hypot(x1 - x0, y1 - y0)
            return CirclePixelRegion(PixCoord(x0, y0), r) if r >= 2 else None
        if self.mode == "ellipse":
            a, b = abs(x1 - x0), abs(y1 - y0)
            return EllipsePixelRegion(PixCoord(x0, y0), 2 * a, 2 * b) if min(a, b) >= 1 else None
        wdt, hgt = abs(x1 - x0), abs(y1 - y0)
        if min(wdt, hgt) < 2:
            return None
        return RectanglePixelRegion(PixCoord((x0 + x1) / 2, (y0 + y1) / 2), wdt, hgt)

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
        self.preview.x, self.preview.y = [], []
        if len(pts) < 3:
            raise BadRegionError(f"a polygon needs at least 3 vertices, got {len(pts)}", field="shape")
        x, y = (np.array(v) for v in zip(*pts))
        return self._add_drawn(PolygonPixelRegion(PixCoord(x, y)))

    def _hit(self, x, y):
        """Name of the region under (x, y) (nearest centre among shapes containing the point)."""
        best = None
        for item in self.session.regions:
            shape = self._pixel_entries(item)[0].shape
            cx, cy = _centre(shape)
            d = math.hypot(x - cx, y - cy)
            if shape.contains(PixCoord(x, y)) or abs(d - _size(shape)) < 3:
                if best is None or d < best[0]:
                    best = (d, item.name)
        return best[1] if best else None

    @guarded
    def _select_drag(self, event, x, y):
        if event in ("click", "dragstart"):
            name = self._hit(x, y)
            self.select(name)
            if event == "dragstart" and name is not None:
                shape = self._pixel_entries(self.session.region(name))[0].shape
                cx, cy = _centre(shape)
                d, r = math.hypot(x - cx, y - cy), _size(shape)
                kind = "resize" if d > 0.75 * r else "move"
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
            new = _translated(shape, x - sx, y - sy)
        else:
            cx, cy = _centre(shape)
            new = _scaled(shape, math.hypot(x - cx, y - cy) / d0)
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
        name = self._need_selected()
        self.session.remove_region(name)
        self.select(None)
        self.show(f"deleted {name}")

    @guarded
    def rename_selected(self, new_name):
        item = self.session.rename_region(self._need_selected(), new_name)
        self.select(item.name)
        return item

    @guarded
    def set_role_selected(self, role):
        return self.session.set_role(self._need_selected(), role)

    @guarded
    def set_include_selected(self, include):
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

    def set_stretch(self, kind):
        self.stretch.value = kind
