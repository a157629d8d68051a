"""The aspect solution ``nu<obsid><A|B>_det1.fits`` (DET1_REFPOINT), spec §1.6 and §2.5.

Despite their names the X_DET1/Y_DET1 columns are the *sky* X/Y position (1000-pixel frame)
of the fixed DET1 reference pixel (350, 350) as a function of time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from ..errors import BadFileError
from .fitsutil import module_from_header, read_fits, require_columns, write_fits

__all__ = ["AspectTrack", "read_aspect", "COPY_KEYWORDS"]

#: Keywords copied from the aspect extension into the aspect histogram (spec §2.5).
COPY_KEYWORDS = (
    "TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ", "DEC_OBJ", "RA_NOM", "DEC_NOM",
    "RA_PNT", "DEC_PNT", "TIMESYS", "MJDREFI", "MJDREFF", "CLOCKAPP", "TSTART", "TSTOP", "DATE-OBS", "DATE-END",
)


@dataclass
class AspectTrack:
    """Sky position (x, y; 0-based float pixels of the 1000×1000 frame as stored) of DET1 (350, 350) vs time."""

    time: np.ndarray
    x: np.ndarray
    y: np.ndarray
    module: str
    header: dict = field(default_factory=dict)
    path: str | None = None

    def __len__(self):
        return len(self.time)

    def __repr__(self):
        return (f"AspectTrack(module={self.module!r}, {len(self)} samples, "
                f"t={self.time[0]:.1f}..{self.time[-1]:.1f} s)" if len(self) else "AspectTrack(empty)")


def _is_aspect_hdu(hdu):
    h = hdu.header
    name = str(h.get("EXTNAME", "")).strip().upper()
    if name not in {f"DET{n}_REFPOINT" for n in range(1, 5)}:
        return False
    return str(h.get("HDUCLAS1", "")).strip().upper() == "TEMPORALDATA"


def read_aspect(path, *, module=None):
    """Read a ``*_det1.fits`` aspect file.

    Parameters
    ----------
    path : path-like
    module : {'A', 'B'}, optional
        When given, the file's INSTRUME must agree.

    Returns
    -------
    AspectTrack
        Samples sorted by time; non-finite samples dropped.
    """
    hdul = read_fits(path, what="aspect (det1) file")
    hdu = next((h for h in hdul if _is_aspect_hdu(h)), None)
    if hdu is None:
        raise BadFileError("no DET1_REFPOINT extension with HDUCLAS1=TEMPORALDATA (is this a *_det1.fits file?)",
                           path=path)
    ext = hdu.header["EXTNAME"]
    tele = str(hdu.header.get("TELESCOP", "NuSTAR")).strip().upper()
    if tele != "NUSTAR":
        raise BadFileError(f"TELESCOP is {tele!r}, expected NuSTAR", path=path, extension=ext, field="TELESCOP")
    header = hdu.header if "INSTRUME" in hdu.header else hdul[0].header
    mod = module_from_header(header, path, extension=ext)
    if module is not None and mod != module:
        raise BadFileError(f"aspect file is for FPM{mod}, expected FPM{module}", path=path, extension=ext,
                           field="INSTRUME")
    cols = require_columns(hdu, path, ["TIME", "X_DET1", "Y_DET1"], extension=ext)
    t, x, y = (cols[c].astype(float) for c in ("TIME", "X_DET1", "Y_DET1"))
    good = np.isfinite(t) & np.isfinite(x) & np.isfinite(y)
    order = np.argsort(t[good], kind="stable")
    keep = {k: hdu.header[k] for k in COPY_KEYWORDS if k in hdu.header}
    return AspectTrack(t[good][order], x[good][order], y[good][order], mod, keep, str(path))


def write_aspect(track, path, *, keywords=None, overwrite=False):
    """Write an aspect track as a ``nu<obsid><A|B>_det1.fits`` file (DET1_REFPOINT, TEMPORALDATA)."""
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name="TIME", format="1D", unit="s", array=track.time),
         fits.Column(name="X_DET1", format="1D", unit="pixel", array=track.x),
         fits.Column(name="Y_DET1", format="1D", unit="pixel", array=track.y)], name="DET1_REFPOINT")
    h = hdu.header
    h["HDUCLASS"] = ("OGIP", "Format conforms to OGIP standards")
    h["HDUCLAS1"] = ("TEMPORALDATA", "Time ordered data")
    h["TELESCOP"] = ("NuSTAR", "Telescope (mission) name")
    h["INSTRUME"] = (f"FPM{track.module}", "Instrument name (FPMA or FPMB)")
    merged = dict(track.header)
    merged.update(keywords or {})
    for key, value in merged.items():
        if key not in ("TELESCOP", "INSTRUME"):
            h[key] = value
    h.add_history("det1xref = 350")
    h.add_history("det1yref = 350")
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = f"FPM{track.module}"
    return write_fits(fits.HDUList([prim, hdu]), path, overwrite=overwrite)
