"""ds9 region files, the sky pixel grid, and region masks (spec §1.4, §2.8, §7 item 19).

One mask function serves everything that needs "the pixels of a region": the geometric
weights of the model (sums of projected maps over the mask), the event selection of the
spectral products and BACKSCAL (region pixels / 10⁶). Region shapes are the objects of the
astropy ``regions`` package; this module adds the include/exclude rule, names, validation,
a fast cutout form for live widget updates, and ds9 output.

Conventions
-----------
Pixels
    Masks are numpy arrays indexed ``[iy, ix]`` with 0-based indices; the *centre* of array
    pixel ``(ix, iy)`` is at pixel coordinate ``(ix, iy)`` (the ``regions``/astropy
    convention). ds9 ``image`` coordinates are 1-based, so ds9 ``circle(500,500,r)`` is
    centred on array pixel ``(499, 499)``; the ``regions`` parser applies that shift and
    :meth:`RegionSet.to_ds9_string` undoes it.
Inclusion
    A pixel belongs to a shape when its centre lies inside the shape ("pixel-centre
    inclusion", ``regions`` ``to_mask(mode='center')``); no fractional pixels.
Combination rule (order-independent)
    ``mask = OR(include shapes) & ~OR(exclude shapes)``: a pixel is selected when it is in at
    least one include shape and in no exclude shape, whatever the order of the lines in the
    file. pyregion (used by nuskybgd-py) instead renders shapes in file order, an include
    setting and an exclude (``-shape``) clearing pixels, so an include written *after* an
    exclude re-adds the excluded pixels it covers. IDL nuskybgd's ``reg2mask`` was
    order-independent like this module, but rasterised circles and ellipses as 72-vertex
    polygons and shifted the mask by +1 pixel in both axes. For files with all excludes
    after all includes (the nuskybgd README recommendation) pyregion and this module agree
    up to pixelisation; IDL differs by its polygon approximation and its 1-pixel shift.
Sky shapes
    fk5/icrs/galactic shapes are converted to pixel shapes with the grid WCS by ``regions``
    (centre through the WCS, sizes with the local pixel scale, angles with the local north
    direction). On NuSTAR's 41' grid the tangent-plane distortion is negligible (the 180"
    circle of the test data gives the same pixels as an angular-separation test). The
    conversion costs ~5-10 ms per shape in astropy, so it is cached on the shape's values.
Events
    An event with column value ``X`` (``TLMIN <= X <= TLMAX``) falls in array pixel
    ``ix = floor(X - TLMIN + 0.5)``, the pixel whose centre is nearest (``X - TLMIN`` for
    NuSTAR's integer X/Y columns); :func:`select_events` uses the same mask as the weights.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import FK5, ICRS, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import BadConfigError, BadFileError, BadRegionError
from .events import column_index
from .fitsutil import atomic_output, find_hdu, hdu_name, read_fits

try:  # regions is a hard dependency; import the shape classes once.
    from regions import (
        CircleAnnulusPixelRegion,
        CircleAnnulusSkyRegion,
        CirclePixelRegion,
        CircleSkyRegion,
        EllipsePixelRegion,
        EllipseSkyRegion,
        PixelRegion,
        PolygonPixelRegion,
        PolygonSkyRegion,
        RectanglePixelRegion,
        RectangleSkyRegion,
        Region,
        Regions,
        SkyRegion,
    )
except ImportError as exc:  # pragma: no cover - installation problem
    raise ImportError("nuskybgd_engine.io.regions needs the astropy 'regions' package") from exc

__all__ = [
    "SkyGrid",
    "RegionEntry",
    "RegionSet",
    "Cutout",
    "as_regionset",
    "region_mask",
    "region_cutout",
    "select_events",
    "SUPPORTED_SHAPES",
]

#: Shape classes accepted (sky and pixel variants), with their ds9 names.
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
}
SUPPORTED_SHAPES = tuple(_DS9_NAMES)

# Readable names of the shapes regions can parse but we refuse.
_OTHER_NAMES = {
    "Point": "point",
    "Line": "line",
    "Text": "text",
    "EllipseAnnulus": "ellipse annulus",
    "RectangleAnnulus": "box annulus",
    "Compound": "compound",
}

_PREFIX = "# Region file format: DS9 version 4.1"


def _shape_name(region):
    """ds9-style name of a region object (for messages and output)."""
    for cls, name in _DS9_NAMES.items():
        if type(region) is cls:
            return name
    cname = type(region).__name__
    for stem, name in _OTHER_NAMES.items():
        if cname.startswith(stem):
            return name
    return cname


# --------------------------------------------------------------------------------------
# Sky grid
# --------------------------------------------------------------------------------------


def _number(value, path, extension, field):
    """Finite float from a header value (real files sometimes store numbers as strings)."""
    try:
        out = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise BadFileError(f"expected a number, got {value!r}", path=path, extension=extension, field=field) from None
    if not math.isfinite(out):
        raise BadFileError(f"expected a finite number, got {value!r}", path=path, extension=extension, field=field)
    return out


class SkyGrid:
    """The sky pixel grid (normally NuSTAR's 1000×1000 tangent-plane grid, spec §1.4).

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the grid; pixel coordinates 0-based at pixel centres.
    shape : (int, int)
        ``(ny, nx)`` of the arrays on this grid.
    origin : int
        Event-column value of array index 0 (``TLMIN``; 1 for images and NuSTAR events).
    path : str, optional
        File the grid came from, for messages.
    """

    __slots__ = ("wcs", "shape", "origin", "path")

    def __init__(self, wcs, shape, *, origin=1, path=None):
        self.wcs = wcs
        self.shape = (int(shape[0]), int(shape[1]))
        self.origin = int(origin)
        self.path = os.fspath(path) if path is not None else None

    @classmethod
    def _build(cls, ctype, crpix, crval, cdelt, shape, *, crota=0.0, radesys=None, equinox=None,
               origin=1, path=None, extension=None, fields=None):
        names = fields or ("CTYPE1", "CTYPE2", "CDELT1", "CDELT2")
        want = ("RA---TAN", "DEC--TAN")
        for got, exp, field in zip(ctype, want, names[:2]):
            if str(got).strip().upper() != exp:
                raise BadFileError(
                    f"sky grid must be a {exp} tangent-plane projection, got {got!r}",
                    path=path, extension=extension, field=field,
                )
        for d, field in zip(cdelt, names[2:]):
            # Degrees per pixel; NuSTAR's is 6.83e-4. A value >= 1 means another unit
            # (the solar heliocentric event files store arcsec), which is not RA/Dec.
            if d == 0 or abs(d) >= 1.0:
                raise BadFileError(
                    f"pixel size {d} is not a plausible sky pixel size in degrees",
                    path=path, extension=extension, field=field,
                )
        if shape[0] < 1 or shape[1] < 1:
            raise BadFileError(f"sky grid has no pixels (shape {shape})", path=path, extension=extension)
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crpix = list(crpix)
        w.wcs.crval = list(crval)
        w.wcs.cdelt = list(cdelt)
        if crota:
            w.wcs.crota = [0.0, float(crota)]
        sys_ = (radesys or "").strip().upper()
        if sys_ in ("FK5", "ICRS", "FK4"):
            w.wcs.radesys = sys_
        elif equinox is not None:
            w.wcs.radesys = "FK5"
        else:
            w.wcs.radesys = "ICRS"
        if w.wcs.radesys in ("FK5", "FK4"):
            w.wcs.equinox = float(equinox) if equinox is not None else (2000.0 if w.wcs.radesys == "FK5" else 1950.0)
        w.pixel_shape = (shape[1], shape[0])
        w.wcs.set()
        return cls(w, shape, origin=origin, path=path)

    @classmethod
    def from_header(cls, header, path=None, *, extension=None, shape=None):
        """Grid of a sky image from its ``CTYPE``/``CRPIX``/``CRVAL``/``CDELT`` keywords.

        Parameters
        ----------
        header : astropy.io.fits.Header
            Header of a 2-D image (``NAXIS = 2``, ``RA---TAN``/``DEC--TAN``).
        path : str, optional
            File name for messages.
        extension : str or int, optional
            Extension name for messages.
        shape : (int, int), optional
            Image shape (ny, nx) for an in-memory header that carries no NAXIS keywords.
        """
        ext = extension if extension is not None else header.get("EXTNAME", "PRIMARY")
        if shape is not None:
            header = header.copy()
            header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = 2, int(shape[1]), int(shape[0])
        naxis = header.get("NAXIS")
        if naxis != 2:
            raise BadFileError(f"sky image must have NAXIS = 2, got {naxis!r}", path=path, extension=ext, field="NAXIS")
        vals = {}
        for key in ("NAXIS1", "NAXIS2", "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2"):
            if key not in header:
                raise BadFileError("required keyword missing", path=path, extension=ext, field=key)
            vals[key] = header[key]
        # NuSTAR images use CDELT (+ CROTA2); a CD or rotated PC matrix would be ignored
        # silently by the CDELT-only construction below, so refuse it.
        for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            if key in header:
                raise BadFileError("CD-matrix WCS is not supported (expected CDELT/CROTA2)",
                                   path=path, extension=ext, field=key)
        for key in ("PC1_2", "PC2_1"):
            if key in header and _number(header[key], path, ext, key) != 0:
                raise BadFileError("rotated PC-matrix WCS is not supported (expected CDELT/CROTA2)",
                                   path=path, extension=ext, field=key)
        num = {k: _number(vals[k], path, ext, k) for k in vals if not k.startswith("CTYPE")}
        shape = (int(num["NAXIS2"]), int(num["NAXIS1"]))
        crota = _number(header.get("CROTA2", 0.0), path, ext, "CROTA2")
        return cls._build(
            (vals["CTYPE1"], vals["CTYPE2"]),
            (num["CRPIX1"], num["CRPIX2"]),
            (num["CRVAL1"], num["CRVAL2"]),
            (num["CDELT1"], num["CDELT2"]),
            shape,
            crota=crota,
            radesys=header.get("RADESYS", header.get("RADECSYS")),
            equinox=header.get("EQUINOX"),
            origin=1,
            path=path,
            extension=ext,
        )

    @classmethod
    def from_event_columns(cls, header, path=None, *, x_column=None, y_column=None, extension=None):
        """Grid of the X/Y columns of an event table (``TCTYP``/``TCRPX``/``TCRVL``/``TCDLT``).

        The image equivalent follows IDL ``getspecrmf``: TCTYP→CTYPE, TCRPX→CRPIX,
        TCRVL→CRVAL, TCDLT→CDELT, NAXIS = TLMAX − TLMIN + 1; array index 0 holds column
        value TLMIN, so CRPIX = TCRPX − TLMIN + 1.

        Parameters
        ----------
        header : astropy.io.fits.Header
            Header of the EVENTS extension.
        path : str, optional
            File name for messages.
        x_column, y_column : int, optional
            1-based column numbers of X and Y; found from ``TTYPEn`` = X / Y when omitted.
        extension : str or int, optional
            Extension name for messages.
        """
        ext = extension if extension is not None else header.get("EXTNAME", "EVENTS")
        cols = {}
        for axis, given in (("X", x_column), ("Y", y_column)):
            if given is None:
                given = column_index(header, axis)
                if given is None:
                    raise BadFileError("required column missing", path=path, extension=ext, field=axis)
            cols[axis] = int(given)
        out = {}
        for axis, n in cols.items():
            for stem in ("TCTYP", "TCRPX", "TCRVL", "TCDLT", "TLMIN", "TLMAX"):
                key = f"{stem}{n}"
                if key not in header:
                    raise BadFileError(f"sky WCS keyword of column {axis} missing", path=path, extension=ext, field=key)
                out[(stem, axis)] = header[key] if stem == "TCTYP" else _number(header[key], path, ext, key)
        tlmin = {a: out[("TLMIN", a)] for a in "XY"}
        tlmax = {a: out[("TLMAX", a)] for a in "XY"}
        if tlmin["X"] != tlmin["Y"] or tlmin["X"] != int(tlmin["X"]):
            raise BadFileError(
                f"X and Y must share one integer TLMIN, got {tlmin['X']} and {tlmin['Y']}",
                path=path, extension=ext, field=f"TLMIN{cols['Y']}",
            )
        shape = (int(tlmax["Y"] - tlmin["Y"] + 1), int(tlmax["X"] - tlmin["X"] + 1))
        origin = int(tlmin["X"])
        return cls._build(
            (out[("TCTYP", "X")], out[("TCTYP", "Y")]),
            (out[("TCRPX", "X")] - origin + 1, out[("TCRPX", "Y")] - origin + 1),
            (out[("TCRVL", "X")], out[("TCRVL", "Y")]),
            (out[("TCDLT", "X")], out[("TCDLT", "Y")]),
            shape,
            radesys=header.get("RADESYS", header.get("RADECSYS")),
            equinox=header.get("EQUINOX"),
            origin=origin,
            path=path,
            extension=ext,
            fields=(f"TCTYP{cols['X']}", f"TCTYP{cols['Y']}", f"TCDLT{cols['X']}", f"TCDLT{cols['Y']}"),
        )

    @classmethod
    def from_fits(cls, path):
        """Grid of a FITS file: its first 2-D image HDU, else the X/Y columns of EVENTS."""
        hdul = read_fits(path, what="sky image or event file")
        for hdu in hdul:
            if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS") == 2:
                return cls.from_header(hdu.header, path=path, extension=hdu_name(hdul, hdu))
        events = find_hdu(hdul, path, extnames=("EVENTS",), table=True, what="2-D sky image or EVENTS table")
        return cls.from_event_columns(events.header, path=path, extension="EVENTS")

    def event_index(self, x, y):
        """Array indices of events from their X/Y column values.

        Returns
        -------
        ix, iy : ndarray of int
            0-based array indices (nearest pixel centre).
        inside : ndarray of bool
            Whether the event lies on the grid (non-finite values are outside).
        """
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        with np.errstate(invalid="ignore"):
            fx = np.floor(x - self.origin + 0.5)
            fy = np.floor(y - self.origin + 0.5)
            inside = np.isfinite(fx) & np.isfinite(fy)
            inside &= (fx >= 0) & (fx < self.shape[1]) & (fy >= 0) & (fy < self.shape[0])
        ix = np.where(inside, fx, -1).astype(np.int64)
        iy = np.where(inside, fy, -1).astype(np.int64)
        return ix, iy, inside

    def __eq__(self, other):
        if not isinstance(other, SkyGrid):
            return NotImplemented
        a, b = self.wcs.wcs, other.wcs.wcs
        return (
            self.shape == other.shape
            and self.origin == other.origin
            and a.radesys == b.radesys
            and np.allclose(a.crpix, b.crpix, rtol=0, atol=1e-9)
            and np.allclose(a.crval, b.crval, rtol=0, atol=1e-12)
            and np.allclose(a.cdelt, b.cdelt, rtol=1e-12, atol=0)
        )

    __hash__ = None

    def __repr__(self):
        c = self.wcs.wcs
        src = f" from {self.path!r}" if self.path else ""
        return (
            f"SkyGrid({self.shape[1]}x{self.shape[0]}, CRVAL=({c.crval[0]:.6f}, {c.crval[1]:.6f}), "
            f"CDELT={abs(c.cdelt[1]) * 3600:.6g}\"{src})"
        )


# --------------------------------------------------------------------------------------
# Region sets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionEntry:
    """One shape of a :class:`RegionSet`: a ``regions`` object, include flag and optional name."""

    shape: Region
    include: bool = True
    name: str | None = None

    @property
    def kind(self):
        """ds9 name of the shape (``circle``, ``ellipse``, ``box``, ``polygon``, ``annulus``)."""
        return _shape_name(self.shape)

    @property
    def is_sky(self):
        return isinstance(self.shape, SkyRegion)


def _check_shape(shape, source=None, *, index=None):
    """Reject unsupported or degenerate shapes with a BadRegionError."""
    where = f"region {index + 1}: " if index is not None else ""
    if not isinstance(shape, SUPPORTED_SHAPES):
        raise BadRegionError(
            f"{where}unsupported shape '{_shape_name(shape)}' "
            "(supported: circle, ellipse, box, polygon, annulus)",
            path=source, field="shape",
        )
    if isinstance(shape, (PolygonSkyRegion, PolygonPixelRegion)):
        n = len(np.atleast_1d(shape.vertices.x if isinstance(shape, PolygonPixelRegion) else shape.vertices.ra))
        if n < 3:
            raise BadRegionError(f"{where}polygon needs at least 3 vertices, got {n}", path=source, field="shape")
    if isinstance(shape, SkyRegion):
        # ds9 reads a unitless fk5 size as degrees: circle(ra,dec,60) is a 60 deg circle, not
        # 60". The whole NuSTAR sky grid is 41' across, so anything >= 1 deg is that mistake.
        for param in ("radius", "width", "height", "outer_radius"):
            value = getattr(shape, param, None)
            if value is not None and u.Quantity(value).to_value(u.deg) >= 1.0:
                raise BadRegionError(
                    f"{where}{_shape_name(shape)} {param} is {u.Quantity(value).to_value(u.deg):g} deg: ds9 reads "
                    "sizes without a unit as degrees in sky coordinates (write 60\" for arcsec)",
                    path=source, field="shape",
                )
    if isinstance(shape, PixelRegion):
        if isinstance(shape, PolygonPixelRegion):
            pts = np.concatenate([np.atleast_1d(shape.vertices.x), np.atleast_1d(shape.vertices.y)])
        else:
            pts = np.array([shape.center.x, shape.center.y], dtype=float)
        if not np.all(np.isfinite(np.asarray(pts, dtype=float))):
            raise BadRegionError(f"{where}{_shape_name(shape)} has a non-finite position", path=source, field="shape")


def _check_name(name, source=None):
    if name is None:
        return None
    if not isinstance(name, str):
        raise BadRegionError(f"region name must be a string, got {name!r}", path=source, field="text")
    if any(c in name for c in "{}\n\r"):
        raise BadRegionError(f"region name {name!r} may not contain braces or newlines", path=source, field="text")
    return name


class RegionSet:
    """An ordered list of shapes, each include or exclude, optionally named.

    The order is kept for display and for writing files; it does not affect the mask
    (see the module docstring for the rule).

    Parameters
    ----------
    entries : iterable of RegionEntry, optional
    source : str or os.PathLike, optional
        File the regions came from, used in error messages.
    """

    def __init__(self, entries=(), *, source=None):
        self.source = os.fspath(source) if source is not None else None
        self._entries = []
        for e in entries:
            if not isinstance(e, RegionEntry):
                raise BadRegionError(f"expected a RegionEntry, got {type(e).__name__}", path=self.source)
            self.add(e.shape, include=e.include, name=e.name)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_string(cls, text, *, source=None):
        """Parse ds9 region text (``fk5``/``icrs``/``galactic``/``image`` coordinates).

        Lines starting with ``-`` are excludes; ``# text={name}`` names a shape. Anything the
        ``regions`` parser skips or cannot read (unknown shapes, ``physical`` coordinates,
        syntax errors) is an error, never silently dropped.
        """
        where = os.fspath(source) if source is not None else None
        if not isinstance(text, str):
            raise BadRegionError(f"region text must be a string, got {type(text).__name__}", path=where)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                parsed = Regions.parse(text, format="ds9")
            except Exception as exc:  # regions raises ValueError/TypeError/its own on bad syntax
                reason = str(exc).split("\n")[0] or type(exc).__name__
                raise BadRegionError(f"cannot parse ds9 region: {reason}", path=where) from None
        problems = [str(w.message).split("\n")[0] for w in caught if issubclass(w.category, Warning)]
        if problems:
            # regions skips what it cannot handle with a warning; we refuse instead.
            reason = problems[0].replace(", skipping.", "").replace(", skipping", "").rstrip(". ")
            hint = "; save the region in fk5 or image coordinates" if "physical" in reason.lower() else ""
            raise BadRegionError(f"cannot use ds9 region: {reason}{hint}", path=where)
        if len(parsed) == 0:
            raise BadRegionError("no region shapes found (empty region file?)", path=where)
        out = cls(source=where)
        for i, shape in enumerate(parsed):
            _check_shape(shape, where, index=i)
            include = bool(int(shape.meta.get("include", 1)))
            name = shape.meta.get("text")
            out.add(shape, include=include, name=str(name) if name is not None else None)
        return out

    @classmethod
    def read_ds9(cls, path):
        """Read a ds9 region file; see :meth:`from_string`."""
        p = Path(path)
        if not p.exists():
            raise BadRegionError("region file not found", path=p)
        if p.is_dir():
            raise BadRegionError("expected a region file, found a directory", path=p)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadRegionError("region file is not text (not UTF-8)", path=p) from None
        except OSError as exc:
            raise BadRegionError(f"cannot read region file: {exc.strerror or exc}", path=p) from None
        return cls.from_string(text, source=p)

    def add(self, shape, include=True, name=None):
        """Append a shape (a ``regions`` object in sky or pixel coordinates).

        Returns
        -------
        RegionEntry
        """
        _check_shape(shape, self.source)
        entry = RegionEntry(shape, bool(include), _check_name(name, self.source))
        self._entries.append(entry)
        return entry

    def replace(self, index, shape=None, *, include=None, name=None):
        """Replace entry ``index`` (a live widget edit); unspecified fields are kept."""
        old = self._entries[index]
        shape = old.shape if shape is None else shape
        _check_shape(shape, self.source)
        new = RegionEntry(
            shape,
            old.include if include is None else bool(include),
            old.name if name is None else _check_name(name, self.source),
        )
        self._entries[index] = new
        return new

    def remove(self, index):
        """Delete entry ``index``."""
        del self._entries[index]

    def copy(self):
        return RegionSet(self._entries, source=self.source)

    # -- container ----------------------------------------------------------------------

    def __len__(self):
        return len(self._entries)

    def __iter__(self):
        return iter(self._entries)

    def __getitem__(self, index):
        return self._entries[index]

    @property
    def includes(self):
        return [e for e in self._entries if e.include]

    @property
    def excludes(self):
        return [e for e in self._entries if not e.include]

    def __repr__(self):
        items = ", ".join(
            ("+" if e.include else "-") + e.kind + (f" {e.name!r}" if e.name else "") + ("" if e.is_sky else " [image]")
            for e in self._entries
        )
        src = f" from {Path(self.source).name!r}" if self.source else ""
        return f"RegionSet({len(self)} region{'s' if len(self) != 1 else ''}{src}: {items})"

    # -- conversion ---------------------------------------------------------------------

    def to_pixel(self, grid):
        """Pixel-coordinate entries on ``grid`` (sky shapes converted with ``grid.wcs``)."""
        return [
            RegionEntry(_to_pixel(e.shape, grid, self.source, i).copy(), e.include, e.name) for i, e in enumerate(self)
        ]

    def to_ds9_string(self, coord="fk5", grid=None):
        """ds9 region text.

        Parameters
        ----------
        coord : {'fk5', 'icrs', 'image'}
            Coordinate system written. Sky shapes are written as degrees with radii in
            arcsec; ``image`` writes 1-based ds9 pixel coordinates.
        grid : SkyGrid, optional
            Needed to convert pixel shapes to sky (``fk5``/``icrs``) or sky shapes to ``image``.
        """
        coord = str(coord).lower()
        if coord not in ("fk5", "icrs", "image"):
            raise BadConfigError(f"coord must be 'fk5', 'icrs' or 'image', got {coord!r}", field="coord")
        lines = [_PREFIX, coord]
        for i, e in enumerate(self):
            shape = e.shape
            if coord == "image":
                body = _pixel_to_ds9(_to_pixel(shape, grid, self.source, i))
            else:
                if isinstance(shape, PixelRegion):
                    if grid is None:
                        raise BadConfigError(
                            f"region {i + 1} is in pixel coordinates: a SkyGrid is needed to write {coord}",
                            field="grid",
                        )
                    shape = shape.to_sky(grid.wcs)
                body = _sky_to_ds9(shape, FK5(equinox="J2000") if coord == "fk5" else ICRS())
            line = ("" if e.include else "-") + body
            if e.name:
                line += f" # text={{{e.name}}}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def write_ds9(self, path, *, coord="fk5", grid=None, overwrite=False):
        """Write a ds9 region file atomically (never replaces a file unless ``overwrite``)."""
        text = self.to_ds9_string(coord=coord, grid=grid)
        with atomic_output(path, overwrite=overwrite) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        return Path(path)


def _g(v):
    """Compact float text with enough digits for a loss-free round trip of masks."""
    return f"{float(v):.10g}"


def _pixel_to_ds9(s):
    """ds9 text of a pixel shape (1-based image coordinates)."""
    if isinstance(s, PolygonPixelRegion):
        vx, vy = np.atleast_1d(s.vertices.x), np.atleast_1d(s.vertices.y)
        xy = ",".join(f"{_g(x + 1)},{_g(y + 1)}" for x, y in zip(vx, vy))
        return f"polygon({xy})"
    c = f"{_g(s.center.x + 1)},{_g(s.center.y + 1)}"
    if isinstance(s, CirclePixelRegion):
        return f"circle({c},{_g(s.radius)})"
    if isinstance(s, CircleAnnulusPixelRegion):
        return f"annulus({c},{_g(s.inner_radius)},{_g(s.outer_radius)})"
    ang = _g(u.Quantity(s.angle, u.deg).value)
    if isinstance(s, EllipsePixelRegion):  # ds9 ellipse takes semi-axes, regions full axes
        return f"ellipse({c},{_g(s.width / 2)},{_g(s.height / 2)},{ang})"
    return f"box({c},{_g(s.width)},{_g(s.height)},{ang})"


def _sky_to_ds9(s, frame):
    """ds9 text of a sky shape in ``frame`` (degrees, radii in arcsec)."""

    def pos(coord):
        c = coord.transform_to(frame)
        return f"{c.ra.deg:.10f},{c.dec.deg:+.10f}"

    def arcsec(q):
        return f'{u.Quantity(q).to_value(u.arcsec):.6f}"'

    if isinstance(s, PolygonSkyRegion):
        v = s.vertices.transform_to(frame)
        xy = ",".join(f"{ra:.10f},{dec:+.10f}" for ra, dec in zip(np.atleast_1d(v.ra.deg), np.atleast_1d(v.dec.deg)))
        return f"polygon({xy})"
    c = pos(s.center)
    if isinstance(s, CircleSkyRegion):
        return f"circle({c},{arcsec(s.radius)})"
    if isinstance(s, CircleAnnulusSkyRegion):
        return f"annulus({c},{arcsec(s.inner_radius)},{arcsec(s.outer_radius)})"
    ang = _g(u.Quantity(s.angle, u.deg).value)
    if isinstance(s, EllipseSkyRegion):
        return f"ellipse({c},{arcsec(s.width / 2)},{arcsec(s.height / 2)},{ang})"
    return f"box({c},{arcsec(s.width)},{arcsec(s.height)},{ang})"


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
    return repr(value)


def _grid_key(grid):
    c = grid.wcs.wcs
    # bytes, not floats: an ICRS grid has equinox NaN, and NaN != NaN would defeat the cache.
    nums = np.concatenate([c.crpix, c.crval, c.cdelt, c.get_pc().ravel(), [c.equinox]]).astype(float)
    return (grid.shape, nums.tobytes(), str(c.radesys))


def _to_pixel(shape, grid, source, index):
    """Pixel version of ``shape`` on ``grid``; sky shapes need the grid's WCS.

    The returned object may be shared with the conversion cache: do not modify it.
    """
    if isinstance(shape, PixelRegion):
        return shape
    if grid is None:
        raise BadConfigError(f"region {index + 1} is in sky coordinates: a SkyGrid is needed", field="grid")
    key = (type(shape).__name__, tuple(_param_key(getattr(shape, p)) for p in shape._params), _grid_key(grid))
    hit = _PIXEL_CACHE.get(key)
    if hit is not None:
        _PIXEL_CACHE.move_to_end(key)
        return hit
    pix = _to_pixel_uncached(shape, grid, source, index)
    _PIXEL_CACHE[key] = pix
    if len(_PIXEL_CACHE) > _PIXEL_CACHE_SIZE:
        _PIXEL_CACHE.popitem(last=False)
    return pix


def _to_pixel_uncached(shape, grid, source, index):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # far-off positions give NaN; checked below
            pix = shape.to_pixel(grid.wcs)
    except Exception as exc:
        raise BadRegionError(
            f"region {index + 1} ({_shape_name(shape)}) cannot be placed on the sky grid: {exc}",
            path=source, field="shape",
        ) from None
    if isinstance(pix, PolygonPixelRegion):
        pts = np.concatenate([np.atleast_1d(pix.vertices.x), np.atleast_1d(pix.vertices.y)])
    else:
        pts = np.array([pix.center.x, pix.center.y], dtype=float)
    if not np.all(np.isfinite(np.asarray(pts, dtype=float))):
        raise BadRegionError(
            f"region {index + 1} ({_shape_name(shape)}) is outside the image (not on the sky grid's hemisphere)",
            path=source, field="shape",
        )
    return pix


def as_regionset(regions):
    """A RegionSet from a RegionSet, one region object, or a sequence of regions / RegionEntry."""
    if isinstance(regions, RegionSet):
        return regions
    if isinstance(regions, Region):
        out = RegionSet()
        out.add(regions, include=bool(int(regions.meta.get("include", 1))), name=regions.meta.get("text"))
        return out
    try:
        items = list(regions)
    except TypeError:
        raise BadRegionError(f"expected a RegionSet or region objects, got {type(regions).__name__}") from None
    out = RegionSet()
    for r in items:
        if isinstance(r, RegionEntry):
            out.add(r.shape, include=r.include, name=r.name)
        else:
            meta = getattr(r, "meta", {}) or {}
            out.add(r, include=bool(int(meta.get("include", 1))), name=meta.get("text"))
    return out


# --------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cutout:
    """A region mask restricted to its bounding box on the grid.

    Attributes
    ----------
    slices : (slice, slice)
        ``(slice_y, slice_x)`` of the bounding box in the full grid (clipped to the grid).
    mask : ndarray of bool
        Pixel-centre mask on the bounding box, shape ``(ny_box, nx_box)``.
    shape : (int, int)
        Shape of the full grid.
    """

    slices: tuple
    mask: np.ndarray
    shape: tuple

    @property
    def npix(self):
        """Number of selected pixels (BACKSCAL = npix / (ny·nx) on the 1000×1000 grid)."""
        return int(np.count_nonzero(self.mask))

    def sum(self, image):
        """Sum of ``image`` over the mask, computed on the cutout only.

        ``image`` has the grid shape, or a stack ``(..., ny, nx)``; the result is a float or an
        array over the leading axes.
        """
        a = np.asarray(image)
        if a.shape[-2:] != tuple(self.shape):
            raise BadConfigError(
                f"image shape {a.shape} does not match the sky grid {tuple(self.shape)}", field="image"
            )
        if a.ndim == 2:
            return float(a[self.slices][self.mask].sum())
        # One boolean-indexed sum per map: 3x faster than indexing the stack at once, and
        # exact (a masked multiply would turn NaN outside the mask into NaN sums).
        out = np.empty(a.shape[:-2], dtype=float)
        for idx in np.ndindex(out.shape):
            out[idx] = a[idx][self.slices][self.mask].sum()
        return out

    def to_full(self):
        """The mask on the whole grid, bool ``(ny, nx)``."""
        full = np.zeros(self.shape, dtype=bool)
        full[self.slices] = self.mask
        return full


def _paint(target, target_y0, target_x0, rmask, value):
    """OR (value=True) or clear (value=False) a RegionMask into ``target`` where they overlap."""
    bb = rmask.bbox
    ny, nx = target.shape
    y0 = max(bb.iymin, target_y0)
    y1 = min(bb.iymax, target_y0 + ny)
    x0 = max(bb.ixmin, target_x0)
    x1 = min(bb.ixmax, target_x0 + nx)
    if y0 >= y1 or x0 >= x1:
        return
    sub = rmask.data[y0 - bb.iymin : y1 - bb.iymin, x0 - bb.ixmin : x1 - bb.ixmin] != 0
    view = target[y0 - target_y0 : y1 - target_y0, x0 - target_x0 : x1 - target_x0]
    if value:
        view |= sub
    else:
        view &= ~sub


def region_cutout(regions, grid):
    """Mask of a region set on its bounding box (the fast form for live updates).

    Parameters
    ----------
    regions : RegionSet (or a region object / iterable of them)
    grid : SkyGrid

    Returns
    -------
    Cutout

    Raises
    ------
    BadRegionError
        No include shape; a shape (include or exclude) with no pixel centre on the grid
        ("outside the image", usually wrong coordinates); or an empty result (the excludes
        cover the includes). Shapes partly on the grid are clipped.
    """
    rs = as_regionset(regions)
    src = rs.source
    if len(rs) == 0:
        raise BadRegionError("no region shapes", path=src)
    if not rs.includes:
        raise BadRegionError("no include region (only excludes): nothing to select", path=src)
    ny, nx = grid.shape
    masks = []
    for i, e in enumerate(rs):
        pix = _to_pixel(e.shape, grid, src, i)
        try:
            m = pix.to_mask(mode="center")
        except Exception as exc:
            raise BadRegionError(
                f"region {i + 1} ({e.kind}): cannot rasterise: {exc}", path=src, field="shape"
            ) from None
        bb = m.bbox
        y0, y1 = max(bb.iymin, 0), min(bb.iymax, ny)
        x0, x1 = max(bb.ixmin, 0), min(bb.ixmax, nx)
        on_grid = y0 < y1 and x0 < x1 and np.any(
            m.data[y0 - bb.iymin : y1 - bb.iymin, x0 - bb.ixmin : x1 - bb.ixmin]
        )
        if not on_grid:
            label = f" {e.name!r}" if e.name else ""
            raise BadRegionError(
                f"region {i + 1} ({'' if e.include else '-'}{e.kind}{label}) is outside the image "
                f"(no pixel centre of the {nx}x{ny} sky grid inside it)",
                path=src, field="shape",
            )
        masks.append((m, e.include, (y0, y1, x0, x1)))
    # Bounding box of the includes: excludes can only remove pixels inside it.
    inc = [b for m, keep, b in masks if keep]
    y0 = min(b[0] for b in inc)
    y1 = max(b[1] for b in inc)
    x0 = min(b[2] for b in inc)
    x1 = max(b[3] for b in inc)
    box = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for m, keep, _ in masks:
        if keep:
            _paint(box, y0, x0, m, True)
    for m, keep, _ in masks:
        if not keep:
            _paint(box, y0, x0, m, False)
    if not box.any():
        raise BadRegionError("region selects no pixel (the excludes cover all includes)", path=src)
    return Cutout((slice(y0, y1), slice(x0, x1)), box, (ny, nx))


def region_mask(regions, grid):
    """Full-frame boolean mask ``(ny, nx)``: union of includes minus union of excludes.

    See the module docstring for the pixel-centre convention and how this rule differs from
    pyregion's file-order rendering.
    """
    return region_cutout(regions, grid).to_full()


def select_events(regions, grid, x, y, *, cutout=None):
    """Which events (X/Y column values) fall in the region mask — the same mask as the weights.

    ``cutout`` (the :func:`region_cutout` of ``regions`` on ``grid``) saves recomputing the mask.

    Returns
    -------
    ndarray of bool
        One flag per event.
    """
    cut = cutout if cutout is not None else region_cutout(regions, grid)
    ix, iy, inside = grid.event_index(x, y)
    sy, sx = cut.slices
    ok = inside & (iy >= sy.start) & (iy < sy.stop) & (ix >= sx.start) & (ix < sx.stop)
    out = np.zeros(ix.shape, dtype=bool)
    out[ok] = cut.mask[iy[ok] - sy.start, ix[ok] - sx.start]
    return out
