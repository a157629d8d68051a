"""The image panel's figure: counts (or model) image, detector and aperture outlines, regions.

:func:`footprint_crop`, :func:`footprint_outlines` and :func:`region_outlines` compute what to draw
(numpy only); :class:`SkyImageFigure` holds the bqplot marks and draws it.
"""

from __future__ import annotations

import bqplot as bq
import ipywidgets as w
import numpy as np
from bqplot_image_gl import ImageGL
from bqplot_image_gl.interacts import MouseInteraction
from scipy.ndimage import gaussian_filter

from ..geometry import (
    centre,
    join_outlines,
    mask_outline,
    shape_outline,
    size,
    stretch,
    trim_gaps,
)

__all__ = ["SkyImageFigure", "footprint_crop", "footprint_outlines", "region_outlines", "MARGIN"]

#: Pixels around the detectors' footprint kept in the view.
MARGIN = 20
_EMPTY = (np.array([]), np.array([]))


def footprint_crop(obs, module, margin=MARGIN):
    """``(x0, x1, y0, y1)``: the square part of the sky image the loaded modules' detectors cover."""
    foot = sum(np.asarray(d) for m in obs.modules for d in obs[m].maps.det) > 0.01
    iy, ix = np.nonzero(foot)
    if not iy.size:
        ny, nx = obs[module].image.image.shape
        return 0, nx, 0, ny
    ny, nx = foot.shape
    y0, y1 = max(int(iy.min()) - margin, 0), min(int(iy.max()) + margin + 1, ny)
    x0, x1 = max(int(ix.min()) - margin, 0), min(int(ix.max()) + margin + 1, nx)
    side = max(x1 - x0, y1 - y0)  # square crop keeps pixels square
    return x0, min(x0 + side, nx), y0, min(y0 + side, ny)


def footprint_outlines(maps, crop):
    """Outlines (x, y with NaN separators) of the four detectors and of the aperture map's quartiles."""
    x0, x1, y0, y1 = crop
    sl = (slice(y0, y1), slice(x0, x1))
    det = join_outlines([mask_outline(np.asarray(d)[sl] > 0.5, x0, y0) for d in maps.det])
    ap = np.asarray(maps.bgdap)[sl]
    inside = ap[np.asarray(sum(np.asarray(d)[sl] for d in maps.det)) > 0.5]
    levels = np.percentile(inside, [25, 50, 75]) if inside.size else []
    return det, join_outlines([mask_outline(ap > lev, x0, y0) for lev in levels])


def region_outlines(items, grid, selected=None):
    """Outlines of regions by kind ('background', 'source', 'exclude', 'selected') and their labels
    ``(x, y, text)`` just above each region's first shape."""
    kinds = {"background": [], "source": [], "exclude": [], "selected": []}
    lx, ly, lt = [], [], []
    for item in items:
        entries = item.regions.to_pixel(grid)
        for e in entries:
            xy = shape_outline(e.shape)
            kinds[item.role if e.include else "exclude"].append(xy)
            if item.name == selected:
                kinds["selected"].append(xy)
        first = entries[0].shape
        cx, cy = centre(first)
        lx.append(cx), ly.append(cy + size(first) + 6), lt.append(item.name)
    return {k: join_outlines(v) for k, v in kinds.items()}, (lx, ly, lt)


class SkyImageFigure:
    """bqplot figure in sky pixels (0-based, the sky grid's) with the image and the outline marks.

    ``panzoom`` and ``mouse`` (bqplot-image-gl MouseInteraction) are the two interactions.
    """

    def __init__(self):
        self.xs = bq.LinearScale(min=0.0, max=999.0)
        self.ys = bq.LinearScale(min=0.0, max=999.0)
        self.cs = bq.ColorScale(scheme="viridis", min=0.0, max=1.0)
        self.image = ImageGL(image=np.zeros((2, 2), dtype=np.float32), x=(0, 1), y=(0, 1),
                             scales={"x": self.xs, "y": self.ys, "image": self.cs})
        sc = {"x": self.xs, "y": self.ys}
        self.det_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#ffffff"], stroke_width=1, opacities=[0.8])
        self.ap_lines = bq.Lines(x=[], y=[], scales=sc, colors=["#ffa348"], stroke_width=1, line_style="dashed")
        self.region_lines = {
            "background": bq.Lines(x=[], y=[], scales=sc, colors=["#33d17a"], stroke_width=2),
            "source": bq.Lines(x=[], y=[], scales=sc, colors=["#00e5ff"], stroke_width=2),
            "exclude": bq.Lines(x=[], y=[], scales=sc, colors=["#ff4040"], stroke_width=2, line_style="dashed"),
            "selected": bq.Lines(x=[], y=[], scales=sc, colors=["#ffff00"], stroke_width=3),
        }
        self.preview = bq.Lines(x=[], y=[], scales=sc, colors=["#ffffff"], stroke_width=1.5, line_style="dashed")
        self.labels = bq.Label(x=[], y=[], text=[], scales=sc, colors=["white"], default_size=12)
        self.figure = bq.Figure(
            marks=[self.image, self.det_lines, self.ap_lines, *self.region_lines.values(), self.preview, self.labels],
            axes=[bq.Axis(scale=self.xs, label="sky x (pixel)"),
                  bq.Axis(scale=self.ys, orientation="vertical", label="sky y (pixel)")],
            fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10}, min_aspect_ratio=1, max_aspect_ratio=1,
            layout=w.Layout(width="520px", height="520px"), animation_duration=0)
        self.figure.add_class("nsb-image-figure")
        self.panzoom = bq.interacts.PanZoom(scales={"x": [self.xs], "y": [self.ys]})
        self.mouse = MouseInteraction(x_scale=self.xs, y_scale=self.ys, move_throttle=50)
        self.figure.interaction = self.panzoom
        self._footprint = (_EMPTY, _EMPTY)

    def set_interaction(self, pan):
        """Pan/zoom (True) or mouse events for drawing and selecting (False)."""
        self.figure.interaction = self.panzoom if pan else self.mouse

    def show_frame(self, crop, footprint):
        """View ``crop`` (x0, x1, y0, y1) and keep the detector/aperture outlines ``footprint``."""
        x0, x1, y0, y1 = crop
        self._footprint = footprint
        with self.figure.hold_sync():
            self.xs.min, self.xs.max = x0 - 0.5, x1 - 0.5
            self.ys.min, self.ys.max = y0 - 0.5, y1 - 0.5

    def show_image(self, image, crop, kind, smooth=False):
        """Show the ``crop`` of a full-grid ``image`` with stretch ``kind`` (optionally smoothed)."""
        x0, x1, y0, y1 = crop
        img = image[y0:y1, x0:x1]
        if smooth:
            img = gaussian_filter(img, 1.5)
        disp = stretch(img, kind).astype(np.float32)
        with self.figure.hold_sync():
            self.image.image = disp
            self.image.x, self.image.y = (x0 - 0.5, x1 - 0.5), (y0 - 0.5, y1 - 0.5)
            self.cs.min, self.cs.max = float(disp.min()), float(max(disp.max(), disp.min() + 1e-6))

    def show_footprint(self, detectors, aperture):
        """Draw (or hide) the detector and aperture outlines."""
        det, ap = self._footprint
        with self.figure.hold_sync():
            self.det_lines.x, self.det_lines.y = det if detectors else _EMPTY
            self.ap_lines.x, self.ap_lines.y = ap if aperture else _EMPTY

    def show_regions(self, outlines=None, labels=None):
        """Draw :func:`region_outlines` output (``None``: no regions)."""
        outlines = outlines or {}
        lx, ly, lt = labels or ([], [], [])
        with self.figure.hold_sync():
            for kind, mark in self.region_lines.items():
                mark.x, mark.y = outlines.get(kind, _EMPTY)
            self.labels.x, self.labels.y, self.labels.text = lx, ly, lt

    def show_preview(self, x=(), y=()):
        """Dashed outline of the shape being drawn (empty: none)."""
        self.preview.x, self.preview.y = trim_gaps(x, y)
