"""Good-time intervals: read from GTI files or event files, and interval arithmetic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ..errors import BadFileError
from .fitsutil import find_hdu, read_fits, require_columns, write_fits

__all__ = ["Gti", "read_gti", "gti_from_hdu"]


@dataclass(frozen=True)
class Gti:
    """Sorted good-time intervals ``[start, stop)`` in seconds (mission time)."""

    start: np.ndarray
    stop: np.ndarray

    def __post_init__(self):
        start = np.atleast_1d(np.asarray(self.start, dtype=float))
        stop = np.atleast_1d(np.asarray(self.stop, dtype=float))
        order = np.argsort(start, kind="stable")
        object.__setattr__(self, "start", start[order])
        object.__setattr__(self, "stop", stop[order])

    @property
    def exposure(self):
        """Total good time Σ(stop − start) in seconds."""
        return float(np.sum(self.stop - self.start))

    def __len__(self):
        return len(self.start)

    def contains(self, times):
        """Boolean array: which ``times`` fall in a good interval ``[start, stop)``."""
        times = np.asarray(times, dtype=float)
        idx = np.searchsorted(self.start, times, side="right") - 1
        ok = idx >= 0
        inside = np.zeros(times.shape, dtype=bool)
        inside[ok] = times[ok] < self.stop[idx[ok]]
        return inside

    def __repr__(self):
        return f"Gti({len(self)} intervals, {self.exposure:.1f} s)"


def gti_from_hdu(hdu, path):
    """Build a :class:`Gti` from a GTI table HDU (START/STOP columns), validating it."""
    ext = hdu.header.get("EXTNAME", "GTI")
    cols = require_columns(hdu, path, ["START", "STOP"], extension=ext)
    start, stop = cols["START"].astype(float), cols["STOP"].astype(float)
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(stop))):
        raise BadFileError("non-finite START/STOP values", path=path, extension=ext, field="START")
    if np.any(stop < start):
        raise BadFileError("an interval has STOP < START", path=path, extension=ext, field="STOP")
    return Gti(start, stop)


def read_gti(path):
    """Read the GTI of a file: the first extension with HDUCLAS1 = GTI or EXTNAME STDGTI/GTI."""
    hdul = read_fits(path, what="GTI file")
    hdu = find_hdu(hdul, path, extnames=("STDGTI", "GTI"), hduclas1="GTI", what="GTI extension", table=True)
    return gti_from_hdu(hdu, path)


def gti_hdu(gti, *, extname="STDGTI", keywords=None):
    """A GTI table HDU in the pipeline's layout (START/STOP in s, HDUCLAS1 GTI, HDUCLAS2 STANDARD)."""
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="1D", unit="s", array=gti.start),
         fits.Column(name="STOP", format="1D", unit="s", array=gti.stop)], name=extname)
    h = hdu.header
    h["HDUCLASS"] = ("OGIP", "format conforms to OGIP/GSFC conventions")
    h["HDUCLAS1"] = ("GTI", "Extension contains Good Time Intervals")
    h["HDUCLAS2"] = ("STANDARD", "Extension contains Good Time Intervals")
    h["TELESCOP"] = ("NuSTAR", "Mission name")
    h["TIMEZERO"] = 0.0
    for key, value in (keywords or {}).items():
        h[key] = value
    return hdu


def write_gti(gti, path, *, keywords=None, overwrite=False):
    """Write a ``nu<obsid><A|B>01_gti.fits``-style file: empty primary + STDGTI."""
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = ("NuSTAR", "Mission name")
    for key in ("TSTART", "TSTOP", "MJDREFI", "MJDREFF", "OBS_ID", "INSTRUME"):
        if keywords and key in keywords:
            prim.header[key] = keywords[key]
    return write_fits(fits.HDUList([prim, gti_hdu(gti, keywords=keywords)]), path, overwrite=overwrite)
