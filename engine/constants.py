"""NuSTAR constants used by the method (spec §1.1). One place, named, documented."""

import numpy as np
from .errors import BadConfigError

#: Sky and DET1 pixel angular size (CDELT of the CALDB instrument map).
PIXEL_DEG = 6.828076e-4
PIXEL_ARCSEC = 2.45810736
#: DET1 pixel physical size in mm (RAW pixel 0.6048 mm / 5).
DET1_PIXEL_MM = 0.12096
#: Sky image size required by the projection (pixels per axis).
SKY_NPIX = 1000
#: DET1 image size (pixels per axis).
DET1_NPIX = 360
#: DET1 reference pixel tracked by the aspect solution (0-based array index).
DET1_REFPIX = (350, 350)
#: Empirical roll offset added to PA_PNT (degrees).
PA_OFFSET_DEG = 1.0
#: Empirical registration "nudge" in DET1 pixels, rotated by the roll.
NUDGE_DET1 = (2.7, 0.8)
#: Detector numbers and module names.
DETECTORS = (0, 1, 2, 3)
MODULES = ("A", "B")

#: PI channel grid: channel c covers [1.6 + 0.04 c, 1.64 + 0.04 c) keV, 4096 channels.
N_CHANNELS = 4096
CHANNEL_E0 = 1.6
CHANNEL_DE = 0.04


def channel_edges():
    """Energy edges (keV) of the 4096 PI channels, shape (4097,)."""
    return CHANNEL_E0 + CHANNEL_DE * np.arange(N_CHANNELS + 1)


def band_to_channels(emin, emax):
    """Exact inclusive PI channel range whose channels lie inside [emin, emax] keV.

    Channel edges are rounded to the nearest edge, so ``3-20 keV`` gives channels 35..459
    (3.00-20.00 keV). The seed's formula gives 36..459 (an off-by-one at the low end, spec §1.7).

    Returns
    -------
    (int, int)
        First and last channel, inclusive.
    """
    try:
        emin = float(emin)
        emax = float(emax)
    except (TypeError, ValueError):
        raise BadConfigError(f"energy band must be two numbers, got {emin!r} {emax!r}", field="band")
    if not (np.isfinite(emin) and np.isfinite(emax)) or emin >= emax:
        raise BadConfigError(f"energy band must satisfy emin < emax, got {emin} {emax}", field="band")
    lo = int(np.round((emin - CHANNEL_E0) / CHANNEL_DE))
    hi = int(np.round((emax - CHANNEL_E0) / CHANNEL_DE)) - 1
    lo = max(lo, 0)
    hi = min(hi, N_CHANNELS - 1)
    if hi < lo:
        raise BadConfigError(
            f"energy band {emin}-{emax} keV contains no PI channel (1.6-165.44 keV)", field="band"
        )
    return lo, hi


def channels_to_band(lo, hi):
    """Energy range (keV) covered by the inclusive channel range ``lo..hi``."""
    return CHANNEL_E0 + CHANNEL_DE * lo, CHANNEL_E0 + CHANNEL_DE * (hi + 1)
