"""Counts images from cleaned event files (``mkimgs``, spec §2.1, §1.7).

The PI range is exact: :func:`~nuskybgd_engine.constants.band_to_channels` selects the channels
lying inside [EMIN, EMAX] (3–20 keV → PI 35–459, 3.00–20.00 keV), where the seed's formula gives
PI 36–459 (an off-by-one at the low end, spec §1.7). The range used is written to the header as
PILOW/PIHIGH (inclusive) and EMIN/EMAX (keV, the exact channel edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from astropy.io import fits

from ..constants import DET1_NPIX, DET1_PIXEL_MM, band_to_channels, channels_to_band
from ..errors import BadFileError
from ..io.events import EventList, column_index, read_events
from ..io.fitsutil import write_fits
from ..io.gti import apply_gti
from ..io.regions import grid_from_image_header

__all__ = ["CountsImage", "make_counts_image", "make_det1_image", "write_counts_image", "band_label"]


@dataclass
class CountsImage:
    """A counts image with its header (sky or DET1 frame)."""

    image: np.ndarray
    header: fits.Header
    module: str
    channels: tuple
    band: tuple

    @cached_property
    def grid(self):
        """The sky grid (:class:`~nuskybgd_engine.io.regions.SkyGrid`) of the image.

        Built once from the header on first access: the header is not modified after the image is made.
        """
        return grid_from_image_header(self.header, shape=self.image.shape)

    @property
    def counts(self):
        return int(self.image.sum())

    def __repr__(self):
        return (f"CountsImage(FPM{self.module}, {self.image.shape[1]}x{self.image.shape[0]}, PI {self.channels[0]}-"
                f"{self.channels[1]}, {self.counts} counts)")


def band_label(emin, emax):
    """The seed's file-name label of a band, e.g. ``3to20keV``."""
    return f"{float(emin):g}to{float(emax):g}keV"


def _band_keywords(header, lo, hi):
    e_lo, e_hi = channels_to_band(lo, hi)
    header["PILOW"] = (int(lo), "lowest PI channel included")
    header["PIHIGH"] = (int(hi), "highest PI channel included")
    header["EMIN"] = (round(e_lo, 6), "[keV] lower edge of channel PILOW")
    header["EMAX"] = (round(e_hi, 6), "[keV] upper edge of channel PIHIGH")
    header["HISTORY"] = f"nuskybgd mkimgs: PI {lo}-{hi} ({e_lo:.2f}-{e_hi:.2f} keV, exact channel range)"


def _pi_mask(events, lo, hi):
    pi = np.asarray(events["PI"])
    return (pi >= lo) & (pi <= hi)


def _as_events(events, columns):
    if isinstance(events, EventList):
        missing = [c for c in columns if c not in events.columns]
        if missing:
            raise BadFileError("required column missing", path=events.path, extension="EVENTS", field=missing[0])
        return events
    return read_events(events, columns=columns)


def make_counts_image(events, emin, emax, *, gti=None):
    """Sky counts image of the events with PI in the exact channel range of [emin, emax] keV.

    Parameters
    ----------
    events : EventList or path-like
    emin, emax : float
        Band in keV.
    gti : Gti, path(s) or list, optional
        User GTI(s) intersected with the event GTI (:func:`~nuskybgd_engine.io.gti.apply_gti`): only
        their events are binned and EXPOSURE/LIVETIME/ONTIME are those of the remaining good time.

    Returns
    -------
    CountsImage
        int32 image on the sky grid of the X/Y columns (1000×1000 for NuSTAR), header with the sky
        WCS, the observation keywords (PA_PNT, EXPOSURE, INSTRUME ...) and PILOW/PIHIGH/EMIN/EMAX.
        Event X is binned so that pixel i (1-based) holds TLMIN-relative X in [i − 0.5, i + 0.5).
    """
    lo, hi = band_to_channels(emin, emax)
    ev = _as_events(events, ("X", "Y", "PI") + (("TIME",) if gti is not None else ()))
    if gti is not None:
        ev = apply_gti(ev, gti)
    if not ev.sky:
        raise BadFileError("no sky WCS for the X/Y columns", path=ev.path, extension="EVENTS", field="X")
    nx, ny = int(ev.sky["NAXIS1"]), int(ev.sky["NAXIS2"])
    if nx <= 0 or ny <= 0 or nx * ny > 100_000_000:
        raise BadFileError(f"implausible sky frame {nx}x{ny} from TLMIN/TLMAX", path=ev.path, extension="EVENTS",
                           field="TLMAX")
    sel = _pi_mask(ev, lo, hi)
    # 0-based pixel of coordinate X: round(X) − TLMIN, i.e. CRPIX-relative as in the image WCS.
    tlmin_x = float(ev.header.get(f"TLMIN{column_index(ev.header, 'X')}", 1))
    tlmin_y = float(ev.header.get(f"TLMIN{column_index(ev.header, 'Y')}", 1))
    x = np.asarray(ev["X"], dtype=np.float64)[sel]
    y = np.asarray(ev["Y"], dtype=np.float64)[sel]
    ix = np.floor(x + 0.5 - tlmin_x)
    iy = np.floor(y + 0.5 - tlmin_y)
    ok = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    flat = iy[ok].astype(np.int64) * nx + ix[ok].astype(np.int64)
    image = np.bincount(flat, minlength=nx * ny).astype(np.int32).reshape(ny, nx)
    header = ev.sky_image_header()
    if "USRGTI" in ev.header:
        header["USRGTI"] = ev.header["USRGTI"]
    header["HDUCLAS1"] = "IMAGE"
    header["BUNIT"] = "count"
    _band_keywords(header, lo, hi)
    return CountsImage(image=image, header=header, module=ev.module, channels=(lo, hi), band=channels_to_band(lo, hi))


def make_det1_image(events, emin, emax, *, raw_edge=True):
    """DET1 counts image (360×360), the seed's ``<out>det.fits``.

    Parameters
    ----------
    events : EventList or path-like
    emin, emax : float
    raw_edge : bool
        Drop the outermost RAW rows/columns (keep RAWX, RAWY in 1..30) as the seed does.

    Returns
    -------
    CountsImage
        Array index = DET1X − 1, DET1Y − 1; header CTYPE DET1X/DET1Y, CDELT 0.12096 mm.
    """
    lo, hi = band_to_channels(emin, emax)
    cols = ("DET1X", "DET1Y", "PI") + (("RAWX", "RAWY") if raw_edge else ())
    ev = _as_events(events, cols)
    sel = _pi_mask(ev, lo, hi)
    if raw_edge:
        rx, ry = np.asarray(ev["RAWX"]), np.asarray(ev["RAWY"])
        sel &= (rx >= 1) & (rx <= 30) & (ry >= 1) & (ry <= 30)
    ix = np.asarray(ev["DET1X"], dtype=np.int64)[sel] - 1
    iy = np.asarray(ev["DET1Y"], dtype=np.int64)[sel] - 1
    ok = (ix >= 0) & (ix < DET1_NPIX) & (iy >= 0) & (iy < DET1_NPIX)
    image = np.bincount(iy[ok] * DET1_NPIX + ix[ok], minlength=DET1_NPIX**2).astype(np.int32)
    image = image.reshape(DET1_NPIX, DET1_NPIX)
    header = fits.Header()
    for axis, name in ((1, "DET1X"), (2, "DET1Y")):
        header[f"CTYPE{axis}"] = name
        header[f"CRPIX{axis}"] = 1.0
        header[f"CRVAL{axis}"] = 1.0
        header[f"CDELT{axis}"] = 1.0
        header[f"CUNIT{axis}"] = "pixel"
    header["DET1PIX"] = (DET1_PIXEL_MM, "[mm] DET1 pixel size")
    for k, v in ev.header_keywords().items():
        header[k] = v
    header["HDUCLAS1"] = "IMAGE"
    header["BUNIT"] = "count"
    _band_keywords(header, lo, hi)
    return CountsImage(image=image, header=header, module=ev.module, channels=(lo, hi), band=channels_to_band(lo, hi))


def write_counts_image(img, path, *, overwrite=False):
    """Write a counts image as an int32 primary image."""
    return write_fits(fits.HDUList([fits.PrimaryHDU(img.image, header=img.header.copy())]), path, overwrite=overwrite)
