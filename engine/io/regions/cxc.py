"""A region set as a CXC FITS region extension (``REG00101``, as nuproducts writes it in spectra).

CXC regions are components ORed together, each the intersection of its rows; a row is a
shape, negated by a leading ``!``. Our rule "union of includes minus union of excludes" is
written exactly: every shape is an intersection of CXC shapes (an elliptical or box annulus is
the outer shape and not the inner one; a sector adds a ``PIE``), component *k* holds include
*k* and, for every exclude, one negated row of it (an exclude that is itself an intersection
``A & !B`` becomes ``!A | B``, so the components multiply out over its rows).
"""

from __future__ import annotations

import itertools

import numpy as np
from astropy import units as u
from astropy.io import fits
from regions import (
    CircleAnnulusPixelRegion,
    CirclePixelRegion,
    EllipseAnnulusPixelRegion,
    EllipsePixelRegion,
    PolygonPixelRegion,
    RectangleAnnulusPixelRegion,
)

from .regionset import as_regionset
from .shapes import PandaPixelRegion

__all__ = ["region_hdu"]


def _rows(s, origin):
    """A pixel shape as CXC rows: [(negated, name, xs, ys, radii, angles)] to be intersected."""
    if isinstance(s, PolygonPixelRegion):
        xs = np.atleast_1d(s.vertices.x).astype(float) + origin
        ys = np.atleast_1d(s.vertices.y).astype(float) + origin
        return [(False, "POLYGON", xs, ys, [], [0.0])]
    cx, cy = [float(s.center.x) + origin], [float(s.center.y) + origin]
    if isinstance(s, CirclePixelRegion):
        return [(False, "CIRCLE", cx, cy, [float(s.radius)], [0.0])]
    if isinstance(s, CircleAnnulusPixelRegion):
        return [(False, "ANNULUS", cx, cy, [float(s.inner_radius), float(s.outer_radius)], [0.0])]
    angle = float(u.Quantity(s.angle, u.deg).value)

    def box(w, h):
        return ("ROTBOX" if angle else "BOX"), cx, cy, [float(w), float(h)], [angle]

    def ellipse(w, h):
        return "ELLIPSE", cx, cy, [float(w) / 2, float(h) / 2], [angle]

    if isinstance(s, EllipsePixelRegion):
        return [(False, *ellipse(s.width, s.height))]
    if isinstance(s, EllipseAnnulusPixelRegion):
        return [(False, *ellipse(s.outer_width, s.outer_height)), (True, *ellipse(s.inner_width, s.inner_height))]
    if isinstance(s, RectangleAnnulusPixelRegion):
        return [(False, *box(s.outer_width, s.outer_height)), (True, *box(s.inner_width, s.inner_height))]
    if isinstance(s, PandaPixelRegion):
        a1 = s.start_angle + angle
        a1, a2 = (0.0, 360.0) if s.span >= 360 else (a1 % 360.0, (a1 + s.span) % 360.0)
        if s.kind == "circle":
            return [(False, "PIE", cx, cy, [float(s.inner[0]), float(s.outer[0])], [a1, a2])]
        shape = ellipse if s.kind == "ellipse" else box
        scale = 2.0 if s.kind == "ellipse" else 1.0  # our ellipse sizes are semi-axes
        rows = [(False, *shape(s.outer[0] * scale, s.outer[1] * scale))]
        if max(s.inner) > 0:
            rows.append((True, *shape(s.inner[0] * scale, s.inner[1] * scale)))
        return rows + [(False, "PIE", cx, cy, [0.0, 2.0 * s.extent()], [a1, a2])]
    return [(False, *box(s.width, s.height))]


def region_hdu(regions, grid, *, keywords=None):
    """The region as a ``REG00101`` extension (CXC FITS region format, as nuproducts writes it).

    Coordinates are event-column (physical) pixels: array index + ``grid.origin`` (so ds9
    ``image`` coordinates on NuSTAR's grid). See the module docstring for how the include and
    exclude shapes become CXC components.
    """
    rs = as_regionset(regions)
    pix = rs.to_pixel(grid)
    incs = [_rows(e.shape, grid.origin) for e in pix if e.include]
    excs = [_rows(e.shape, grid.origin) for e in pix if not e.include]
    rows = []
    for k, (inc, choice) in enumerate(itertools.product(incs, itertools.product(*excs)), start=1):
        for neg, name, xs, ys, rr, ang in inc + [(not r[0], *r[1:]) for r in choice]:
            rows.append((("!" if neg else "") + name, xs, ys, rr, ang, k))
    nxy = max(len(r[1]) for r in rows)
    nr = max(1, max(len(r[3]) for r in rows))
    na = max(len(r[4]) for r in rows)

    def pad(values, n):
        out = np.zeros(n)
        out[: len(values)] = values
        return out

    def column(name, values, n, unit):
        a = np.array([pad(v, n) for v in values])
        return fits.Column(name=name, format=f"{n}D", unit=unit, array=a if n > 1 else a[:, 0])

    cols = [
        column("X", [r[1] for r in rows], nxy, "pixel"),
        column("Y", [r[2] for r in rows], nxy, "pixel"),
        fits.Column(name="SHAPE", format="16A", array=[r[0] for r in rows]),
        column("R", [r[3] for r in rows], nr, "pixel"),
        column("ROTANG", [r[4] for r in rows], na, "degree"),
        fits.Column(name="COMPONENT", format="1I", array=[r[5] for r in rows]),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="REG00101")
    h = hdu.header
    h["EXTVER"] = 1
    for key, value in (("HDUCLASS", "ASC"), ("HDUCLAS1", "REGION"), ("HDUCLAS2", "STANDARD"),
                       ("HDUVERS", "1.0.0"), ("MTYPE1", "pos"), ("MFORM1", "X,Y")):
        h[key] = value
    w = grid.wcs.wcs
    for n, axis in ((1, 0), (2, 1)):
        h[f"TCTYP{n}"] = w.ctype[axis]
        h[f"TCRPX{n}"] = float(w.crpix[axis]) + grid.origin - 1
        h[f"TCRVL{n}"] = float(w.crval[axis])
        h[f"TCDLT{n}"] = float(w.cdelt[axis])
    for key, value in (keywords or {}).items():
        h[key] = value
    return hdu
