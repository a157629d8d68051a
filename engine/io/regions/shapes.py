"""Region shapes: the ``regions`` classes we accept, our sector shapes, and placing shapes on a grid.

Circles, ellipses, boxes, polygons and circular/elliptical/box annuli are the astropy
``regions`` objects. ds9's sector shapes (``pie``, ``panda``, ``epanda``, ``bpanda``), which
``regions`` does not model, are :class:`PandaPixelRegion` / :class:`PandaSkyRegion`; shapes
written in ds9 ``physical`` coordinates are wrapped in :class:`PhysicalRegion` until a grid
(with its LTM/LTV) places them. :func:`to_pixel` turns any accepted shape into a pixel shape on
a :class:`~.grid.SkyGrid` (cached: the astropy sky conversion costs ~10 ms per shape).

Sector geometry (as ds9 draws and ``pyregion`` rasterises them): in the frame rotated by
``angle`` about the centre, a pixel centre at polar angle φ is inside when
``start <= φ < stop`` (degrees, counter-clockwise from +x; ``stop <= start`` wraps through
360°), it is inside the outer boundary and not inside the inner one. The boundary is a circle
(``pie``/``panda``, sizes = radii), an ellipse (``epanda``, sizes = semi-axes) or a box
(``bpanda``, sizes = full width and height). An outer size of ``None`` is unbounded (the
funtools/ds9 ``pie x y a1 a2`` wedge, clipped to the image).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import (
    CircleAnnulusPixelRegion,
    CircleAnnulusSkyRegion,
    CirclePixelRegion,
    CircleSkyRegion,
    EllipseAnnulusPixelRegion,
    EllipseAnnulusSkyRegion,
    EllipsePixelRegion,
    EllipseSkyRegion,
    PixCoord,
    PixelRegion,
    PolygonPixelRegion,
    PolygonSkyRegion,
    RectangleAnnulusPixelRegion,
    RectangleAnnulusSkyRegion,
    RectanglePixelRegion,
    RectangleSkyRegion,
    RegionBoundingBox,
    RegionMask,
    SkyRegion,
)

from ...errors import BadConfigError, BadRegionError
from .grid import require_celestial

__all__ = [
    "PandaPixelRegion",
    "PandaSkyRegion",
    "PhysicalRegion",
    "SUPPORTED_SHAPES",
    "shape_name",
    "check_shape",
    "to_pixel",
    "outline",
]

PANDA_KINDS = ("circle", "ellipse", "box")
_PANDA_NAMES = {"circle": "panda", "ellipse": "epanda", "box": "bpanda"}


class _Panda:
    """Common part of the pixel and sky sector shapes (see the module docstring)."""

    _params = ("center", "inner", "outer", "start_angle", "stop_angle", "angle")

    def __init__(self, center, inner, outer, start_angle=0.0, stop_angle=360.0, angle=0.0, *, kind="circle",
                 meta=None):
        if kind not in PANDA_KINDS:
            raise BadRegionError(f"sector kind must be one of {PANDA_KINDS}, got {kind!r}", field="shape")
        self.center = center
        self.inner = tuple(inner)
        self.outer = None if outer is None else tuple(outer)
        self.start_angle = float(u.Quantity(start_angle, u.deg).value)
        self.stop_angle = float(u.Quantity(stop_angle, u.deg).value)
        self.angle = u.Quantity(angle, u.deg)
        self.kind = kind
        self.meta = dict(meta or {})

    @property
    def ds9_name(self):
        if self.kind == "circle" and self.outer is None:
            return "pie"
        return _PANDA_NAMES[self.kind]

    @property
    def span(self):
        """Opening angle in degrees, (0, 360]."""
        span = (self.stop_angle - self.start_angle) % 360.0
        return 360.0 if span == 0 and self.stop_angle != self.start_angle else span

    def copy(self, **changes):
        """A copy, with the given parameters changed."""
        meta = changes.pop("meta", self.meta)
        values = {p: getattr(self, p) for p in self._params}
        values.update(changes)
        return type(self)(**values, kind=self.kind, meta=meta)

    def __repr__(self):
        return (f"<{type(self).__name__}({self.ds9_name}: center={self.center}, inner={self.inner}, "
                f"outer={self.outer}, angles=({self.start_angle:g}, {self.stop_angle:g}), angle={self.angle})>")


class PandaPixelRegion(_Panda):
    """A sector of a circular, elliptical or box annulus in 0-based pixel coordinates.

    Parameters
    ----------
    center : regions.PixCoord
    inner, outer : (float, float)
        Sizes in pixels of the inner and outer boundary (radii for ``circle`` — both values
        equal —, semi-axes for ``ellipse``, full width and height for ``box``); ``outer=None``
        is unbounded.
    start_angle, stop_angle : float
        Degrees, counter-clockwise from the rotated +x axis.
    angle : float or Quantity
        Rotation of the shape (degrees, counter-clockwise from +x).
    kind : {'circle', 'ellipse', 'box'}
    """

    def _inside(self, u_, v_, size):
        a, b = size
        if self.kind == "box":
            return (np.abs(u_) <= a / 2) & (np.abs(v_) <= b / 2)
        if a <= 0 or b <= 0:
            return np.zeros(np.shape(u_), dtype=bool)
        return (u_ / a) ** 2 + (v_ / b) ** 2 <= 1.0

    def _local(self, x, y):
        th = self.angle.to_value(u.rad)
        dx, dy = np.asarray(x, float) - self.center.x, np.asarray(y, float) - self.center.y
        return dx * math.cos(th) + dy * math.sin(th), -dx * math.sin(th) + dy * math.cos(th)

    def contains(self, pixcoord):
        """Whether pixel positions are inside (the pixel-centre test of the masks)."""
        u_, v_ = self._local(pixcoord.x, pixcoord.y)
        ok = ~self._inside(u_, v_, self.inner) if max(self.inner) > 0 else np.ones(np.shape(u_), dtype=bool)
        if self.outer is not None:
            ok &= self._inside(u_, v_, self.outer)
        if self.span < 360.0:
            phi = np.degrees(np.arctan2(v_, u_))
            ok &= (phi - self.start_angle) % 360.0 < self.span
        return ok

    def extent(self):
        """Half-size of an axis-aligned box around the centre that holds the shape, in pixels."""
        if self.outer is None:
            raise BadRegionError("an unbounded pie has no extent before it is placed on a grid", field="shape")
        a, b = self.outer
        if self.kind == "box":
            a, b = a / 2, b / 2
        return math.hypot(a, b) if self.kind == "box" else max(a, b)

    def bounded(self, shape):
        """A copy whose unbounded outer size reaches past every corner of a grid of ``shape``."""
        if self.outer is not None:
            return self
        ny, nx = shape
        r = max(math.hypot(x - self.center.x, y - self.center.y) for x in (-1, nx) for y in (-1, ny)) + 2
        return self.copy(outer=(r, r))

    def to_mask(self, mode="center"):
        """Pixel-centre mask on the shape's bounding box (a ``regions.RegionMask``)."""
        if mode != "center":
            raise BadConfigError(f"only pixel-centre masks are supported, got mode={mode!r}", field="mode")
        r = self.extent()
        ixmin, ixmax = math.floor(self.center.x - r), math.ceil(self.center.x + r) + 1
        iymin, iymax = math.floor(self.center.y - r), math.ceil(self.center.y + r) + 1
        yy, xx = np.mgrid[iymin:iymax, ixmin:ixmax]
        data = self.contains(PixCoord(xx, yy)).astype(float)
        return RegionMask(data, RegionBoundingBox(ixmin, ixmax, iymin, iymax))

    def to_sky(self, wcs):
        """The same sector in sky coordinates (sizes through the local pixel scale)."""
        center, scale, north = _scale_angle_at_pixel(self.center, wcs)
        size = (lambda s: None if s is None else tuple(v * scale * u.arcsec for v in s))
        return PandaSkyRegion(center, size(self.inner), size(self.outer), self.start_angle, self.stop_angle,
                              self.angle - (north - 90.0) * u.deg, kind=self.kind, meta=self.meta)


class PandaSkyRegion(_Panda):
    """A sector shape in sky coordinates: ``center`` a SkyCoord, sizes Quantities (angles).

    ``angle`` and the sector angles are measured, as in ds9, from the +longitude axis of the
    frame of ``center`` (counter-clockwise, towards north) on a north-up, east-left image.
    """

    def to_pixel(self, wcs):
        (x, y), scale, north = _scale_angle_at_sky(self.center, wcs)
        size = (lambda s: None if s is None else tuple(q.to_value(u.arcsec) / scale for q in s))
        return PandaPixelRegion(PixCoord(x, y), size(self.inner), size(self.outer), self.start_angle,
                                self.stop_angle, self.angle + (north - 90.0) * u.deg, kind=self.kind, meta=self.meta)


def _scale_angle_at_sky(skycoord, wcs):
    """Pixel position, scale (arcsec/pixel) and the pixel angle (deg) of north at ``skycoord``.

    North is that of the coordinate's own frame (galactic north for a galactic shape), as ds9
    measures sky angles; the same finite-difference construction as ``regions`` uses.
    """
    x, y = (float(v) for v in wcs.world_to_pixel(skycoord))
    sky0 = wcs.pixel_to_world(x, y)
    scale = math.sqrt(sky0.separation(wcs.pixel_to_world(x + 1, y)).arcsec
                      * sky0.separation(wcs.pixel_to_world(x, y + 1)).arcsec)
    xo, yo = (float(v) for v in wcs.world_to_pixel(skycoord.directional_offset_by(0.0, scale / 3600 * u.deg)))
    _check_parity(wcs)
    return (x, y), scale, math.degrees(math.atan2(yo - y, xo - x))


def _scale_angle_at_pixel(pixcoord, wcs):
    center = wcs.pixel_to_world(pixcoord.x, pixcoord.y)
    _, scale, north = _scale_angle_at_sky(center, wcs)
    return center, scale, north


def _check_parity(wcs):
    # Sector angles are turned by the local north angle only; a mirrored (east-right) grid
    # would also reverse their sense. NuSTAR grids are never mirrored.
    if np.linalg.det(wcs.wcs.get_pc() * wcs.wcs.cdelt[:, None]) > 0:
        raise BadRegionError("sector shapes on a mirrored (east-right) sky grid are not supported", field="shape")


class PhysicalRegion:
    """A pixel shape written in ds9 ``physical`` coordinates, placed with a grid's LTM/LTV.

    ``shape`` holds 0-based coordinates (physical − 1, as the 1-based ds9 image coordinates
    become 0-based pixels); sizes are in physical pixels.
    """

    def __init__(self, shape):
        if isinstance(shape, PhysicalRegion) or not _is_pixel(shape):
            raise BadRegionError(f"a physical region wraps a pixel shape, got {type(shape).__name__}", field="shape")
        self.shape = shape

    @property
    def meta(self):
        return self.shape.meta

    def to_image(self, grid):
        """The pixel shape on ``grid`` (``image = LTM · physical + LTV``)."""
        (mx, my), (vx, vy) = grid.ltm, grid.ltv
        if mx != my:
            raise BadRegionError(f"physical pixels of {grid.path or 'the grid'} are not square (LTM {mx} and {my})",
                                 field="shape")
        return _affine(self.shape, mx, vx + mx - 1.0, vy + my - 1.0)

    def __repr__(self):
        return f"<PhysicalRegion({self.shape!r})>"


_SIZES = ("radius", "inner_radius", "outer_radius", "width", "height", "inner_width", "inner_height",
          "outer_width", "outer_height")


def _affine(shape, scale, dx, dy):
    """Copy of a pixel shape with positions ``p · scale + d`` and sizes × ``scale``."""
    def move(p):
        return PixCoord(np.asarray(p.x, float) * scale + dx, np.asarray(p.y, float) * scale + dy)

    if isinstance(shape, PandaPixelRegion):
        size = (lambda s: None if s is None else tuple(v * scale for v in s))
        return shape.copy(center=move(shape.center), inner=size(shape.inner), outer=size(shape.outer))
    if isinstance(shape, PolygonPixelRegion):
        return PolygonPixelRegion(move(shape.vertices), meta=shape.meta)
    values = {}
    for p in shape._params:
        v = getattr(shape, p)
        values[p] = move(v) if p == "center" else (v * scale if p in _SIZES else v)
    return type(shape)(**values, meta=shape.meta)


#: ds9 names of the accepted shape classes.
_DS9_NAMES = {
    CircleSkyRegion: "circle",
    CirclePixelRegion: "circle",
    EllipseSkyRegion: "ellipse",
    EllipsePixelRegion: "ellipse",
    RectangleSkyRegion: "box",
    RectanglePixelRegion: "box",
    PolygonSkyRegion: "polygon",
    PolygonPixelRegion: "polygon",
    CircleAnnulusSkyRegion: "annulus",
    CircleAnnulusPixelRegion: "annulus",
    EllipseAnnulusSkyRegion: "ellipse annulus",
    EllipseAnnulusPixelRegion: "ellipse annulus",
    RectangleAnnulusSkyRegion: "box annulus",
    RectangleAnnulusPixelRegion: "box annulus",
}
SUPPORTED_SHAPES = tuple(_DS9_NAMES) + (PandaPixelRegion, PandaSkyRegion, PhysicalRegion)
_SUPPORTED_TEXT = "circle, ellipse, box, polygon, annulus, ellipse/box annulus, pie, panda, epanda, bpanda"


def shape_name(shape):
    """ds9-style name of a shape (for messages and output)."""
    if isinstance(shape, PhysicalRegion):
        return shape_name(shape.shape)
    if isinstance(shape, _Panda):
        return shape.ds9_name
    name = _DS9_NAMES.get(type(shape))
    if name:
        return name
    cname = type(shape).__name__
    for stem in ("Point", "Line", "Text", "Compound"):
        if cname.startswith(stem):
            return stem.lower()
    return cname


def _is_pixel(shape):
    return isinstance(shape, (PixelRegion, PandaPixelRegion))


def is_sky(shape):
    """Whether a shape is in sky coordinates."""
    return isinstance(shape, (SkyRegion, PandaSkyRegion))


def _positions(shape):
    if isinstance(shape, PolygonPixelRegion):
        return np.concatenate([np.atleast_1d(shape.vertices.x), np.atleast_1d(shape.vertices.y)]).astype(float)
    return np.array([shape.center.x, shape.center.y], dtype=float)


def check_shape(shape, source=None, *, index=None):
    """Reject unsupported or degenerate shapes with a BadRegionError."""
    where = f"region {index + 1}: " if index is not None else ""
    if not isinstance(shape, SUPPORTED_SHAPES):
        raise BadRegionError(f"{where}unsupported shape '{shape_name(shape)}' (supported: {_SUPPORTED_TEXT})",
                             path=source, field="shape")
    if isinstance(shape, PhysicalRegion):
        shape = shape.shape
    name = shape_name(shape)
    if isinstance(shape, (PolygonSkyRegion, PolygonPixelRegion)):
        n = np.atleast_1d(shape.vertices.x).size if isinstance(shape, PolygonPixelRegion) else shape.vertices.size
        if n < 3:
            raise BadRegionError(f"{where}polygon needs at least 3 vertices, got {n}", path=source, field="shape")
    if isinstance(shape, _Panda):
        sizes = list(shape.inner) + list(shape.outer or ())
        vals = [u.Quantity(s).to_value(u.deg) if isinstance(shape, PandaSkyRegion) else float(s) for s in sizes]
        if not all(math.isfinite(v) and v >= 0 for v in vals):
            raise BadRegionError(f"{where}{name} sizes must be finite and >= 0", path=source, field="shape")
        if shape.outer is not None and not any(v > 0 for v in vals[2:]):
            raise BadRegionError(f"{where}{name} outer size must be > 0", path=source, field="shape")
        if not (math.isfinite(shape.start_angle) and math.isfinite(shape.stop_angle)):
            raise BadRegionError(f"{where}{name} angles must be finite", path=source, field="shape")
    if is_sky(shape):
        # ds9 reads a unitless fk5 size as degrees: circle(ra,dec,60) is a 60 deg circle, not
        # 60". The whole NuSTAR sky grid is 41' across, so anything >= 1 deg is that mistake.
        params = ("radius", "width", "height", "outer_radius", "outer_width", "outer_height")
        values = [(p, getattr(shape, p, None)) for p in params]
        if isinstance(shape, PandaSkyRegion) and shape.outer is not None:
            values += [("outer size", q) for q in shape.outer]
        for param, value in values:
            if value is not None and u.Quantity(value).to_value(u.deg) >= 1.0:
                raise BadRegionError(
                    f"{where}{name} {param} is {u.Quantity(value).to_value(u.deg):g} deg: ds9 reads sizes without "
                    "a unit as degrees in sky coordinates (write 60\" for arcsec)",
                    path=source, field="shape",
                )
    elif not np.all(np.isfinite(_positions(shape))):
        raise BadRegionError(f"{where}{name} has a non-finite position", path=source, field="shape")


# Sky -> pixel conversion through SkyCoord costs ~10 ms per shape (astropy frame machinery),
# far above the 1 ms budget of a live update, while the result only depends on the shape's
# parameters and the grid. Cache it, keyed on those values (not on object identity, since
# regions shapes are mutable).
_PIXEL_CACHE = OrderedDict()
_PIXEL_CACHE_SIZE = 512


def _param_key(value):
    if isinstance(value, SkyCoord):
        frame = value.frame
        return (
            frame.name,
            str(getattr(frame, "equinox", "")),
            np.atleast_1d(value.data.lon.deg).tobytes(),
            np.atleast_1d(value.data.lat.deg).tobytes(),
        )
    if isinstance(value, u.Quantity):
        return (np.atleast_1d(value.value).tobytes(), str(value.unit))
    if isinstance(value, tuple):
        return tuple(_param_key(v) for v in value)
    return repr(value)


def _grid_key(grid):
    c = grid.wcs.wcs
    # bytes, not floats: an ICRS grid has equinox NaN, and NaN != NaN would defeat the cache.
    nums = np.concatenate([c.crpix, c.crval, c.cdelt, c.get_pc().ravel(), [c.equinox]]).astype(float)
    return (grid.shape, nums.tobytes(), str(c.radesys))


def to_pixel(shape, grid, source=None, index=0):
    """Pixel version of ``shape`` on ``grid`` (sky shapes need the grid's WCS, physical ones its LTM/LTV).

    The returned object may be shared with the conversion cache: do not modify it.
    """
    if _is_pixel(shape):
        pix = shape
    elif grid is None:
        kind = "physical" if isinstance(shape, PhysicalRegion) else "sky"
        raise BadConfigError(f"region {index + 1} is in {kind} coordinates: a SkyGrid is needed", field="grid")
    elif isinstance(shape, PhysicalRegion):
        pix = shape.to_image(grid)
    else:
        key = (type(shape).__name__, getattr(shape, "kind", ""),
               tuple(_param_key(getattr(shape, p)) for p in shape._params), _grid_key(grid))
        pix = _PIXEL_CACHE.get(key)
        if pix is not None:
            _PIXEL_CACHE.move_to_end(key)
        else:
            pix = _sky_to_pixel(shape, grid, source, index)
            _PIXEL_CACHE[key] = pix
            if len(_PIXEL_CACHE) > _PIXEL_CACHE_SIZE:
                _PIXEL_CACHE.popitem(last=False)
    if isinstance(pix, PandaPixelRegion) and grid is not None:
        pix = pix.bounded(grid.shape)
    return pix


def _sky_to_pixel(shape, grid, source, index):
    require_celestial(grid, source)  # a heliocentric WCS would fail inside astropy with a cryptic message
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # far-off positions give NaN; checked below
            pix = shape.to_pixel(grid.wcs)
    except BadRegionError:
        raise
    except Exception as exc:
        raise BadRegionError(
            f"region {index + 1} ({shape_name(shape)}) cannot be placed on the sky grid: {exc}",
            path=source, field="shape",
        ) from None
    if not np.all(np.isfinite(_positions(pix))):
        raise BadRegionError(
            f"region {index + 1} ({shape_name(shape)}) is outside the image (not on the sky grid's hemisphere)",
            path=source, field="shape",
        )
    return pix


def _ring(kind, size, t):
    """Points (u, v) at polar angles ``t`` (radians) on a circle/ellipse (semi-axes) or box (full sizes)."""
    a, b = size
    c, s = np.cos(t), np.sin(t)
    if kind == "box":  # the ray from the centre meets the nearer pair of sides
        with np.errstate(divide="ignore"):
            k = np.minimum(np.where(c != 0, a / 2 / np.abs(c), np.inf), np.where(s != 0, b / 2 / np.abs(s), np.inf))
    elif a > 0 and b > 0:
        k = a * b / np.sqrt((b * c) ** 2 + (a * s) ** 2)
    else:
        k = np.zeros_like(t)
    return k * c, k * s


def outline(shape, n=72):
    """Outline of an elliptical or box annulus or a sector shape in pixels, for display.

    Returns
    -------
    x, y : ndarray
        Closed curves (the outer and inner boundary of an annulus, or the boundary of a
        sector) joined by NaN separators.
    """
    if isinstance(shape, PandaPixelRegion):
        kind, inner, outer = shape.kind, shape.inner, shape.outer or shape.inner
        a1, span = math.radians(shape.start_angle), math.radians(shape.span)
    elif isinstance(shape, (EllipseAnnulusPixelRegion, RectangleAnnulusPixelRegion)):
        kind = "ellipse" if isinstance(shape, EllipseAnnulusPixelRegion) else "box"
        half = 2.0 if kind == "ellipse" else 1.0
        inner = (shape.inner_width / half, shape.inner_height / half)
        outer = (shape.outer_width / half, shape.outer_height / half)
        a1, span = 0.0, 2 * math.pi
    else:
        raise BadConfigError(f"no outline for a {shape_name(shape)}: use the shape's own drawing", field="shape")
    t = np.linspace(a1, a1 + span, n + 1)
    if kind == "box":  # keep the corners
        corners = [q * math.pi / 2 + sgn * math.atan2(h, w) for w, h in (inner, outer) if w > 0
                   for q in range(-4, 5) for sgn in (1, -1)]
        t = np.unique(np.concatenate([t, [c for c in corners if a1 < c < a1 + span]]))
    rings = [_ring(kind, outer, t), _ring(kind, inner, t)]
    if span < 2 * math.pi or max(inner) == 0:  # one closed sector boundary
        (uo, vo), (ui, vi) = rings
        rings = [(np.concatenate([uo, ui[::-1], uo[:1]]), np.concatenate([vo, vi[::-1], vo[:1]]))]
    th = u.Quantity(shape.angle, u.deg).to_value(u.rad)
    xs, ys = [], []
    for uu, vv in rings:
        xs += [shape.center.x + uu * math.cos(th) - vv * math.sin(th), [np.nan]]
        ys += [shape.center.y + uu * math.sin(th) + vv * math.cos(th), [np.nan]]
    return np.concatenate(xs[:-1]), np.concatenate(ys[:-1])
