"""Pixel-region geometry of the image panel: outlines, hit sizes, moves, resizes, drawn shapes.

Pure numpy/``regions`` (no widgets): shapes are astropy ``regions`` pixel shapes in the sky grid's
0-based array pixels; outlines are x, y arrays with NaN separators, as bqplot ``Lines`` draw them.
"""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from regions import CirclePixelRegion, EllipsePixelRegion, PixCoord, PolygonPixelRegion, RectanglePixelRegion

from nuskybgd_engine.io.regions.shapes import outline as annulus_or_sector_outline

__all__ = ["stretch", "mask_outline", "shape_outline", "join_outlines", "trim_gaps", "centre", "size", "translated", "scaled",
           "shape_from_drag", "nearest_hit", "DRAW_SHAPES"]

#: Drawing modes that make a shape from a drag (start → end).
DRAW_SHAPES = ("circle", "ellipse", "box")


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
        return annulus_or_sector_outline(shape, n)
    xs, ys = [], []  # annulus: both circles
    for r in (shape.inner_radius, shape.outer_radius):
        cx, cy = shape_outline(CirclePixelRegion(shape.center, r), n)
        xs += [cx, [np.nan]]
        ys += [cy, [np.nan]]
    return np.concatenate(xs), np.concatenate(ys)


def join_outlines(parts):
    """Outlines ``[(x, y), ...]`` joined into one x, y pair with NaN separators (one bqplot Lines)."""
    if not parts:
        return np.array([]), np.array([])
    xs, ys = [], []
    for x, y in parts:
        xs += [np.asarray(x, float), [np.nan]]
        ys += [np.asarray(y, float), [np.nan]]
    return trim_gaps(np.concatenate(xs), np.concatenate(ys))


def trim_gaps(x, y):
    """``x, y`` without the NaN gap separators at either end.

    bqplot places a line's label at its last point: a NaN there is a browser console error
    ("attribute transform: Expected number") on every redraw.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.nonzero(np.isfinite(x) & np.isfinite(y))[0]
    if not ok.size:
        return np.array([]), np.array([])
    return x[ok[0]:ok[-1] + 1], y[ok[0]:ok[-1] + 1]


def centre(shape):
    """Centre (x, y) of a pixel shape; the vertex mean of a polygon."""
    if isinstance(shape, PolygonPixelRegion):
        return float(np.mean(shape.vertices.x)), float(np.mean(shape.vertices.y))
    return float(shape.center.x), float(shape.center.y)


def size(shape):
    """Half-size of a pixel shape: radius, half the longer side, or the farthest polygon vertex."""
    if isinstance(shape, CirclePixelRegion):
        return float(shape.radius)
    if isinstance(shape, (EllipsePixelRegion, RectanglePixelRegion)):
        return 0.5 * float(max(shape.width, shape.height))
    if isinstance(shape, PolygonPixelRegion):
        cx, cy = centre(shape)
        return float(np.max(np.hypot(shape.vertices.x - cx, shape.vertices.y - cy)))
    return float(getattr(shape, "outer_radius", 1.0))


def translated(shape, dx, dy):
    """A copy of ``shape`` moved by (dx, dy) pixels."""
    if isinstance(shape, PolygonPixelRegion):
        return PolygonPixelRegion(PixCoord(shape.vertices.x + dx, shape.vertices.y + dy))
    out = shape.copy()
    out.center = PixCoord(shape.center.x + dx, shape.center.y + dy)
    return out


def scaled(shape, f):
    """A copy of ``shape`` scaled by ``f`` about its centre (sizes at least 1 px)."""
    f = max(f, 1e-3)
    if isinstance(shape, CirclePixelRegion):
        return CirclePixelRegion(shape.center, max(shape.radius * f, 1.0))
    if isinstance(shape, (EllipsePixelRegion, RectanglePixelRegion)):
        return type(shape)(shape.center, max(shape.width * f, 1.0), max(shape.height * f, 1.0), angle=shape.angle)
    if isinstance(shape, PolygonPixelRegion):
        cx, cy = centre(shape)
        return PolygonPixelRegion(PixCoord(cx + (shape.vertices.x - cx) * f, cy + (shape.vertices.y - cy) * f))
    return shape


def shape_from_drag(mode, start, end):
    """The shape a drag from ``start`` to ``end`` (x, y) draws in ``mode``; None when too small.

    circle: centre at the start, radius the drag length (≥ 2 px); ellipse: centre at the start, semi-axes
    the drag's x and y extents (≥ 1 px); box: the dragged rectangle (sides ≥ 2 px).
    """
    (x0, y0), (x1, y1) = start, end
    if mode == "circle":
        r = math.hypot(x1 - x0, y1 - y0)
        return CirclePixelRegion(PixCoord(x0, y0), r) if r >= 2 else None
    if mode == "ellipse":
        a, b = abs(x1 - x0), abs(y1 - y0)
        return EllipsePixelRegion(PixCoord(x0, y0), 2 * a, 2 * b) if min(a, b) >= 1 else None
    if mode != "box":
        raise ValueError(f"mode must be one of {DRAW_SHAPES}, got {mode!r}")
    wdt, hgt = abs(x1 - x0), abs(y1 - y0)
    if min(wdt, hgt) < 2:
        return None
    return RectanglePixelRegion(PixCoord((x0 + x1) / 2, (y0 + y1) / 2), wdt, hgt)


def nearest_hit(shapes, x, y, edge=3.0):
    """Name of the shape under (x, y): among ``{name: shape}`` those containing the point or within
    ``edge`` pixels of their rim, the one with the nearest centre; None when there is none."""
    best = None
    for name, shape in shapes.items():
        cx, cy = centre(shape)
        d = math.hypot(x - cx, y - cy)
        if shape.contains(PixCoord(x, y)) or abs(d - size(shape)) < edge:
            if best is None or d < best[0]:
                best = (d, name)
    return best[1] if best else None
