"""The sky pixel grid of an image or event file, and its ds9 ``physical`` coordinates (spec §1.4).

ds9 ``physical`` coordinates are the pixel coordinates of the original file: for an image,
``image = LTM · physical + LTV`` (keywords ``LTM1_1``, ``LTM2_2``, ``LTV1``, ``LTV2``; identity
when absent, as on NuSTAR's sky images, which write ``LTM = 1``, ``LTV = 0``); for an event file
(ds9 bins the X/Y columns), physical is the X/Y column value, so array index ``i`` holds
physical ``i + TLMIN``.
"""

from __future__ import annotations

import os

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ...errors import BadFileError, BadRegionError
from ..fitsutil import column_index, find_hdu, hdu_name, header_number, read_fits

__all__ = ["SkyGrid"]


#: Why sky (fk5/icrs/galactic) shapes cannot go on a heliocentric grid (one line, shared by every check).
NOT_CELESTIAL = ("the sky frame of this observation is heliocentric (solar X/Y in arcsec), not RA/Dec: "
                 "fk5/icrs/galactic regions cannot be placed on it; save the regions in image or physical coordinates")


def grid_is_celestial(grid):
    """True when ``grid``'s WCS is an RA/Dec frame (sky regions can be converted with it)."""
    ct = [str(c).upper() for c in grid.wcs.wcs.ctype]
    return ct[0].startswith("RA-") and ct[1].startswith("DEC-")


def require_celestial(grid, source=None, what=NOT_CELESTIAL):
    """Raise :class:`BadRegionError` (``what``, one line) unless ``grid`` is celestial."""
    if not grid_is_celestial(grid):
        raise BadRegionError(what, path=source or grid.path, field="coordinates")


def _physical_keywords(header, path, ext):
    """(LTM, LTV) of an image header: ds9 ``physical`` → image; identity when absent."""
    for key in ("LTM1_2", "LTM2_1"):
        if key in header and header_number(header[key], path, ext, key) != 0:
            raise BadFileError("rotated physical coordinates (LTM1_2/LTM2_1) are not supported",
                               path=path, extension=ext, field=key)
    ltm = tuple(header_number(header.get(k, 1.0), path, ext, k) for k in ("LTM1_1", "LTM2_2"))
    ltv = tuple(header_number(header.get(k, 0.0), path, ext, k) for k in ("LTV1", "LTV2"))
    for key, value in zip(("LTM1_1", "LTM2_2"), ltm):
        if value <= 0:
            raise BadFileError(f"physical pixel scale must be positive, got {value}", path=path, extension=ext,
                               field=key)
    return ltm, ltv


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
    ltm, ltv : (float, float), optional
        ds9 ``physical`` → 1-based image coordinates: ``image = ltm · physical + ltv`` per
        axis. Default ``ltm = 1``, ``ltv = 1 − origin`` (physical = event-column value).
    """

    __slots__ = ("wcs", "shape", "origin", "path", "ltm", "ltv")

    def __init__(self, wcs, shape, *, origin=1, path=None, ltm=None, ltv=None):
        self.wcs = wcs
        self.shape = (int(shape[0]), int(shape[1]))
        self.origin = int(origin)
        self.path = os.fspath(path) if path is not None else None
        self.ltm = tuple(float(v) for v in (ltm if ltm is not None else (1.0, 1.0)))
        self.ltv = tuple(float(v) for v in (ltv if ltv is not None else (1.0 - self.origin,) * 2))

    def physical_to_pixel(self, x, y):
        """0-based array pixel coordinates of ds9 ``physical`` coordinates."""
        return (self.ltm[0] * np.asarray(x, float) + self.ltv[0] - 1.0,
                self.ltm[1] * np.asarray(y, float) + self.ltv[1] - 1.0)

    def pixel_to_physical(self, x, y):
        """ds9 ``physical`` coordinates of 0-based array pixel coordinates."""
        return ((np.asarray(x, float) + 1.0 - self.ltv[0]) / self.ltm[0],
                (np.asarray(y, float) + 1.0 - self.ltv[1]) / self.ltm[1])

    @classmethod
    def _build(cls, ctype, crpix, crval, cdelt, shape, *, crota=0.0, radesys=None, equinox=None,
               origin=1, path=None, extension=None, fields=None, ltm=None, ltv=None):
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
        return cls(w, shape, origin=origin, path=path, ltm=ltm, ltv=ltv)

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
            if key in header and header_number(header[key], path, ext, key) != 0:
                raise BadFileError("rotated PC-matrix WCS is not supported (expected CDELT/CROTA2)",
                                   path=path, extension=ext, field=key)
        num = {k: header_number(vals[k], path, ext, k) for k in vals if not k.startswith("CTYPE")}
        shape = (int(num["NAXIS2"]), int(num["NAXIS1"]))
        crota = header_number(header.get("CROTA2", 0.0), path, ext, "CROTA2")
        ltm, ltv = _physical_keywords(header, path, ext)
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
            ltm=ltm,
            ltv=ltv,
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
                out[(stem, axis)] = header[key] if stem == "TCTYP" else header_number(header[key], path, ext, key)
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
            and self.ltm == other.ltm
            and self.ltv == other.ltv
        )

    __hash__ = None

    def __repr__(self):
        c = self.wcs.wcs
        src = f" from {self.path!r}" if self.path else ""
        return (
            f"SkyGrid({self.shape[1]}x{self.shape[0]}, CRVAL=({c.crval[0]:.6f}, {c.crval[1]:.6f}), "
            f"CDELT={abs(c.cdelt[1]) * 3600:.6g}\"{src})"
        )
