"""DET1 pixel/detector maps and the observation instrument map (spec §1.3, §2.4).

Convention (spec §7 item 3): every DET1 map here is a standard FITS image, **array index =
DET1X − 1, DET1Y − 1** (0-based). The PIXPOS-derived maps are rolled by (−1, −1) to reach it (PIXPOS
REF_DET1X/Y are 1-based); the shipped auxil ``pixmap``/``detnum`` are already rolled; the CALDB
``INSTRMAP`` is a standard FITS image and is used **as is** (as nuskybgd-py does; the IDL
version's extra roll would misregister it by one pixel). Checked on real events: ``detnum`` at
(DET1Y − 1, DET1X − 1) equals DET_ID for every event of a real cleaned event file.

Bad pixels (spec §2.4 step 5, §7 item 2): RAW pixel (det n, RAWX, RAWY) is removed when, in
any BADPIX extension,

* the union of its bad intervals [TIME, TIME_STOP) lasts more than 80 % of that extension's
  TSTOP − TSTART (nuskybgd-py tests each row alone; the union also catches a pixel flagged in
  several pieces), or
* its BADFLAG has one of the "stable" bits set — by default LSB bits 0, 1, 2 (values 1: on-ground
  CALDB bad pixel, 2: disabled on-board, 4: user bad-pixel file; nuflagbad's definitions) — and
  its interval overlaps the observation when the observation times are known. The reference
  meant to test value 2 only and its test never fires; hot/flickering pixels (value 32, from
  nuhotpix) count only through the duration rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..constants import DET1_NPIX, PIXEL_DEG
from ..errors import BadConfigError, BadFileError
from ..io.events import EventList, read_badpix, read_events
from ..io.fitsutil import module_from_header, read_fits, require_columns, write_fits
from ._auxil import _auxil_data, _caldb_path
from .aperture import module_letter

__all__ = [
    "GRADE_WEIGHTS",
    "DEFAULT_BAD_BITS",
    "InstrumentMap",
    "pixel_maps_from_pixpos",
    "load_pixel_maps",
    "read_det1_map",
    "read_caldb_badpix",
    "bad_raw_pixels",
    "make_instrument_map",
    "write_instrument_map",
    "read_instrument_map",
    "det1_header",
]

#: Grade weights w[0..26] (NGC 253 observation), spec §1.3.
GRADE_WEIGHTS = np.array([
    1.00000, 0.124902, 0.117130, 0.114720, 0.118038, 0.0114296, 0.0101738, 0.0113617, 0.0122017,
    0.0157910, 0.0144079, 0.0145691, 0.0149934, 0.00165462, 0.00194312, 0.00156128, 0.00143400,
    0.00210433, 0.00180735, 0.00140006, 0.00169704, 0.00189220, 0.00160371, 0.00150188, 0.00168007,
    0.000296983, 0.000364864,
])

#: BADFLAG bits (LSB = 0) that mark a pixel bad whatever the duration: 1 CALDB, 2 on-board, 4 user.
DEFAULT_BAD_BITS = (0, 1, 2)

#: Fraction of the extension's TSTOP − TSTART above which a pixel counts as bad.
BAD_DURATION_FRACTION = 0.8

_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "EXTEND",
               "CHECKSUM", "DATASUM", "BSCALE", "BZERO")


def det1_header(module):
    """Minimal DET1 image header (the CALDB INSTRMAP WCS: CRPIX 180.5, CDELT 6.828076e-4 deg)."""
    h = fits.Header()
    h["EXTNAME"] = "INSTRMAP"
    h["TELESCOP"] = "NuSTAR"
    h["INSTRUME"] = f"FPM{module}"
    for axis in (1, 2):
        h[f"CTYPE{axis}"] = f"DET1{'X' if axis == 1 else 'Y'}"
        h[f"CUNIT{axis}"] = "deg"
        h[f"CRPIX{axis}"] = 180.5
        h[f"CRVAL{axis}"] = 0.0
        h[f"CDELT{axis}"] = PIXEL_DEG
    return h


def _clean_header(header):
    out = header.copy()
    for key in _STRUCTURAL:
        while key in out:
            del out[key]
    return out


@dataclass
class InstrumentMap:
    """Observation instrument map: DET1 pixel values n+1 (detector n active) or 0 (dead/gap/bad).

    Attributes
    ----------
    data : ndarray (360, 360) float64
    header : astropy.io.fits.Header (EXTNAME INSTRMAP, DET1 WCS)
    module : 'A' or 'B'
    bad_raw : ndarray (4, 1024) bool
        RAW pixels removed (index RAWX + 32·RAWY).
    n_killed : int
        DET1 pixels removed by bad pixels.
    """

    data: np.ndarray
    header: fits.Header
    module: str
    bad_raw: np.ndarray = field(default_factory=lambda: np.zeros((4, 1024), bool))
    n_killed: int = 0
    path: str | None = None

    def mask(self, detector):
        """Boolean DET1 mask of detector ``detector`` (0..3)."""
        return self.data == detector + 1

    def active_pixels(self):
        """Number of active DET1 pixels per detector, tuple of 4."""
        return tuple(int(np.count_nonzero(self.data == n + 1)) for n in range(4))

    def __repr__(self):
        return f"InstrumentMap(FPM{self.module}, active={self.active_pixels()}, killed={self.n_killed})"


# ---------------------------------------------------------------------------------------------
# Pixel and detector maps
# ---------------------------------------------------------------------------------------------


def pixel_maps_from_pixpos(path):
    """Pixel map and detector map from a CALDB PIXPOS file (spec §1.3), vectorised.

    For every (detector, RAW pixel) the PDFs of its rows with GRADE ≤ 26, REF_DET1X ≠ −1 and no NaN
    are weighted by :data:`GRADE_WEIGHTS` and summed on the DET1 grid (7×7 block with lower-left
    corner at REF_DET1X/Y; parts beyond 360 dropped); each DET1 pixel goes to the candidate with the
    largest summed probability (the first, in the reference's loop order detector/RAWX/RAWY, on
    ties; none if all are 0). Both maps are then rolled by (−1, −1).

    Returns
    -------
    pixmap, detnum : ndarray (360, 360) int32
        RAWX + 32·RAWY and detector number of each DET1 pixel, −1 where unassigned.
    """
    hdul = read_fits(path, what="PIXPOS file")
    keys, vals, det_of = [], [], {}
    n_hdu = 0
    for hdu in hdul:
        name = str(hdu.header.get("EXTNAME", "")).upper()
        if "PIXPOS" not in name or not isinstance(hdu, fits.BinTableHDU):
            continue
        detnam = str(hdu.header.get("DETNAM", "")).strip().upper()
        if detnam not in ("DET0", "DET1", "DET2", "DET3"):
            raise BadFileError(f"DETNAM is {detnam!r}, expected DET0..DET3", path=path, extension=name, field="DETNAM")
        cols = require_columns(hdu, path, ["RAWX", "RAWY", "GRADE", "REF_DET1X", "REF_DET1Y", "PDF"], extension=name)
        pdf = np.asarray(cols["PDF"], dtype=np.float32)
        if pdf.ndim != 3 or pdf.shape[1:] != (7, 7):
            pdf = pdf.reshape(len(pdf), 7, 7) if pdf.size == len(pdf) * 49 else None
            if pdf is None:
                raise BadFileError("PDF column is not 7x7", path=path, extension=name, field="PDF")
        grade = cols["GRADE"].astype(np.int64)
        rx, ry = cols["REF_DET1X"].astype(np.int64), cols["REF_DET1Y"].astype(np.int64)
        rawx, rawy = cols["RAWX"].astype(np.int64), cols["RAWY"].astype(np.int64)
        ok = (rx != -1) & (grade >= 0) & (grade <= 26) & ~np.isnan(pdf).any(axis=(1, 2))
        ok &= (rawx >= 0) & (rawx < 32) & (rawy >= 0) & (rawy < 32)
        # Candidate number in the reference's loop order: HDU, then RAWX (outer), RAWY (inner).
        cand = n_hdu * 1024 + rawx[ok] * 32 + rawy[ok]
        det_of[n_hdu] = int(detnam[3])
        # Product in float32 as the reference computes it, summed in float64.
        w = (pdf[ok] * GRADE_WEIGHTS.astype(np.float32)[grade[ok]][:, None, None]).astype(np.float64)
        ay, ax = np.mgrid[0:7, 0:7]
        py = ry[ok][:, None, None] + ay
        px = rx[ok][:, None, None] + ax
        inside = (px >= 0) & (px < DET1_NPIX) & (py >= 0) & (py < DET1_NPIX)
        key = (np.broadcast_to(cand[:, None, None], px.shape) * DET1_NPIX + py) * DET1_NPIX + px
        keys.append(key[inside])
        vals.append(w[inside])
        n_hdu += 1
    if n_hdu == 0:
        raise BadFileError("no PIXPOS extension", path=path)
    key = np.concatenate(keys)
    val = np.concatenate(vals)
    order = np.argsort(key, kind="stable")
    key, val = key[order], val[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ukey = key[start]
    usum = np.add.reduceat(val, start)
    npix = DET1_NPIX * DET1_NPIX
    pix = ukey % npix
    cand = ukey // npix
    # Winner per DET1 pixel: largest sum, then smallest candidate number.
    best = np.lexsort((cand, -usum, pix))
    first = np.r_[True, pix[best][1:] != pix[best][:-1]]
    win = best[first]
    win = win[usum[win] > 0]
    pixmap = np.full(npix, -1, dtype=np.int32)
    detnum = np.full(npix, -1, dtype=np.int32)
    pixmap[pix[win]] = (cand[win] % 1024 % 32) * 32 + (cand[win] % 1024 // 32)  # RAWX + 32·RAWY
    hdu_of = cand[win] // 1024
    detnum[pix[win]] = np.vectorize(det_of.get, otypes=[np.int32])(hdu_of) if len(hdu_of) else []
    pixmap = np.roll(pixmap.reshape(DET1_NPIX, DET1_NPIX), (-1, -1), axis=(0, 1))
    detnum = np.roll(detnum.reshape(DET1_NPIX, DET1_NPIX), (-1, -1), axis=(0, 1))
    return pixmap, detnum


def read_det1_map(path, *, what="DET1 map"):
    """Read a 360×360 DET1 image from the INSTRMAP extension (or the primary) of a file.

    Returns
    -------
    data : ndarray (360, 360) float64
    header : astropy.io.fits.Header
    """
    hdul = read_fits(path, what=what)
    hdu = next((h for h in hdul if str(h.header.get("EXTNAME", "")).strip().upper() == "INSTRMAP"), None)
    if hdu is None:
        raise BadFileError(f"no INSTRMAP extension in {what}", path=path, extension="INSTRMAP")
    data = hdu.data
    if data is None or data.shape != (DET1_NPIX, DET1_NPIX):
        raise BadFileError(f"{what} must be a {DET1_NPIX}x{DET1_NPIX} image, got "
                           f"{None if data is None else data.shape}", path=path, extension="INSTRMAP")
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise BadFileError(f"{what} has non-finite pixels", path=path, extension="INSTRMAP")
    return data, hdu.header


def load_pixel_maps(module, *, auxil_dir=None, pixmap_path=None, detnum_path=None):
    """The auxil pixel and detector maps (``pixmap<m>.fits``, ``detnum<m>.fits``).

    Without any file (no path, NUSKYBGD_AUXIL or cache) the embedded nominal layout is used.

    Returns
    -------
    pixmap, detnum : ndarray (360, 360) int32
    header : astropy.io.fits.Header of the detnum INSTRMAP extension (a DET1 header for nominal maps)
    """
    def reader(what):
        return lambda path: (*read_det1_map(path, what=what), str(path))

    maps = {}
    for kind, what, path in (("pixmap", "pixel map", pixmap_path), ("detnum", "detector map", detnum_path)):
        got = _auxil_data(f"{kind}{module}.fits", reader(what), path, auxil_dir=auxil_dir, module=module)
        maps[kind] = got if isinstance(got, tuple) else (np.asarray(got), det1_header(module), f"nominal {what}")
    pix, _, ppath = maps["pixmap"]
    det, header, dpath = maps["detnum"]
    if np.any((det < -1) | (det > 3)) or np.any(det != np.round(det)):
        raise BadFileError("detector map values must be -1..3", path=dpath, extension="INSTRMAP")
    if np.any((pix < -1) | (pix > 1023)) or np.any(pix != np.round(pix)):
        raise BadFileError("pixel map values must be -1..1023", path=ppath, extension="INSTRMAP")
    return pix.astype(np.int32), det.astype(np.int32), header


# ---------------------------------------------------------------------------------------------
# Bad pixels
# ---------------------------------------------------------------------------------------------


def read_caldb_badpix(path, *, module=None):
    """Read a CALDB BADPIX file (TIME = first time a pixel is bad, no TIME_STOP).

    Returns a list of :class:`~nuskybgd_engine.io.events.BadPixels` with ``time_stop = +inf`` and
    no TSTART/TSTOP (only the flag test applies to them).
    """
    return read_badpix(path, module=module, caldb=True)


def _union_length(start, stop):
    """Total length of the union of intervals [start, stop)."""
    order = np.argsort(start, kind="stable")
    total, cur_a, cur_b = 0.0, None, None
    for a, b in zip(start[order], stop[order]):
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def bad_raw_pixels(badpix, *, obs_start=None, obs_stop=None, bad_bits=DEFAULT_BAD_BITS,
                   fraction=BAD_DURATION_FRACTION):
    """Which RAW pixels are bad for the observation (rules in the module docstring).

    Parameters
    ----------
    badpix : iterable of BadPixels
    obs_start, obs_stop : float, optional
        Observation TSTART/TSTOP; with them a flagged row must overlap the observation.
    bad_bits : iterable of int
        BADFLAG bits (LSB = 0) that mark a pixel bad whatever its duration.
    fraction : float
        Duration fraction of the extension's TSTOP − TSTART above which a pixel is bad.

    Returns
    -------
    ndarray (4, 1024) bool
        ``[det, RAWX + 32·RAWY]``.
    """
    bad = np.zeros((4, 1024), dtype=bool)
    bits = tuple(int(b) for b in bad_bits)
    for bp in badpix:
        n = len(bp.rawx)
        if n == 0:
            continue
        raw = np.asarray(bp.rawx, int) + 32 * np.asarray(bp.rawy, int)
        flags = np.asarray(bp.badflag, dtype=bool).reshape(n, -1)
        width = flags.shape[1]
        flagged = np.zeros(n, dtype=bool)
        for b in bits:
            if 0 <= b < width:
                flagged |= flags[:, width - 1 - b]  # element 0 is the most significant bit
        t0, t1 = np.asarray(bp.time, float), np.asarray(bp.time_stop, float)
        if obs_start is not None and obs_stop is not None:
            flagged &= (t0 < obs_stop) & (t1 > obs_start)
        bad[bp.detector, raw[flagged]] = True
        if bp.tstart is not None and bp.tstop is not None and bp.tstop > bp.tstart:
            limit = fraction * (bp.tstop - bp.tstart)
            for r in np.unique(raw):
                sel = raw == r
                if _union_length(t0[sel], t1[sel]) > limit:
                    bad[bp.detector, r] = True
    return bad


# ---------------------------------------------------------------------------------------------
# Instrument map
# ---------------------------------------------------------------------------------------------


def _float_or_none(header, key):
    try:
        return float(header[key]) if key in header else None
    except (TypeError, ValueError):
        return None


def make_instrument_map(events=None, *, module=None, usrbpix=(), badpix=(), instrmap=None, pixpos=None,
                        caldb_badpix=None, auxil_dir=None, pixmap_path=None, detnum_path=None,
                        bad_bits=DEFAULT_BAD_BITS, use_caldb=True):
    """Observation instrument map (spec §2.4): DET1 values detnum + 1 where active, 0 elsewhere.

    Parameters
    ----------
    events : EventList or path-like, optional
        Cleaned event file: module, observation times and its BADPIX extensions.
    module : {'A', 'B'}, optional
        Required when ``events`` is not given; must agree with it otherwise.
    usrbpix : sequence of path-like
        Extra bad-pixel files (``*_bp.fits``, ``*_hp.fits``, user files).
    badpix : sequence of BadPixels
        Extra bad-pixel tables already read.
    instrmap : path-like, optional
        CALDB INSTRMAP file: the active area (value > 0), used as is. Default: every pixel of the
        detector map (``detnum ≥ 0``).
    pixpos : path-like, optional
        CALDB PIXPOS file: pixel/detector maps computed per §1.3. Default: the auxil maps.
    caldb_badpix : path-like, optional
        CALDB BADPIX file (flag test only).
    auxil_dir, pixmap_path, detnum_path : optional
        Where the auxil ``pixmap``/``detnum`` files are.
    bad_bits : iterable of int
        BADFLAG bits counted as bad (see :func:`bad_raw_pixels`).
    use_caldb : bool
        Look up INSTRMAP, PIXPOS and BADPIX in ``$CALDB`` (for the observation date) when they are
        not given; without CALDB the auxil maps are used.

    Returns
    -------
    InstrumentMap
    """
    if events is not None and not isinstance(events, EventList):
        events = read_events(events, columns=())
    mod = None
    if module is not None:
        mod = module_letter(module)
    if events is not None:
        if mod is not None and events.module != mod:
            raise BadFileError(f"event file is for FPM{events.module}, expected FPM{mod}", path=events.path,
                               extension="EVENTS", field="INSTRUME")
        mod = events.module
    if mod is None:
        raise BadConfigError("module (A or B) is needed when no event file is given", field="mod")

    if use_caldb:
        date = None
        if events is not None:
            date = str(events.header.get("DATE-OBS", "")).strip() or None
        instrmap = instrmap if instrmap is not None else _caldb_path("INSTRMAP", mod, date)
        pixpos = pixpos if pixpos is not None else _caldb_path("PIXPOS", mod, date)
        caldb_badpix = caldb_badpix if caldb_badpix is not None else _caldb_path("BADPIX", mod, date)

    history = []
    if pixpos is not None:
        pixmap, detnum = pixel_maps_from_pixpos(pixpos)
        header = det1_header(mod)
        history.append(f"pixel/detector maps from PIXPOS {Path(pixpos).name}")
    else:
        pixmap, detnum, header = load_pixel_maps(mod, auxil_dir=auxil_dir, pixmap_path=pixmap_path,
                                                 detnum_path=detnum_path)
        header = _clean_header(header)
        history.append("pixel/detector maps from auxil pixmap/detnum")
    if instrmap is not None:
        base, ihdr = read_det1_map(instrmap, what="CALDB instrument map")
        header = _clean_header(ihdr)
        active = base > 0
        history.append(f"active area from CALDB INSTRMAP {Path(instrmap).name} (not rolled)")
    else:
        active = detnum >= 0
        history.append("active area = all mapped DET1 pixels")

    tables = list(badpix)
    obs_start = obs_stop = None
    if events is not None:
        tables += list(events.badpix)
        obs_start, obs_stop = _float_or_none(events.header, "TSTART"), _float_or_none(events.header, "TSTOP")
    for path in usrbpix:
        tables += read_badpix(path, module=mod)
    if caldb_badpix is not None:
        tables += read_caldb_badpix(caldb_badpix, module=mod)
    bad = bad_raw_pixels(tables, obs_start=obs_start, obs_stop=obs_stop, bad_bits=bad_bits)

    assigned = detnum >= 0
    killed = np.zeros_like(active)
    killed[assigned] = bad[detnum[assigned], pixmap[assigned]]
    keep = active & assigned & ~killed
    data = np.where(keep, detnum + 1, 0).astype(np.float64)

    header["EXTNAME"] = "INSTRMAP"
    header["TELESCOP"] = "NuSTAR"
    header["INSTRUME"] = f"FPM{mod}"
    header["NBADRAW"] = (int(bad.sum()), "RAW pixels removed as bad")
    header["NBADDET1"] = (int(np.count_nonzero(active & assigned & killed)), "DET1 pixels removed as bad")
    header["BADBITS"] = (",".join(str(b) for b in bad_bits), "BADFLAG bits (LSB=0) counted as bad")
    header["VALUES"] = ("detnum+1", "1..4 = DET0..DET3 active, 0 = dead/gap/bad")
    for text in history:
        header["HISTORY"] = text
    if events is not None and events.path:
        header["HISTORY"] = f"bad pixels from {Path(events.path).name}"
    for path in usrbpix:
        header["HISTORY"] = f"bad pixels from {Path(path).name}"
    return InstrumentMap(data=data, header=header, module=mod, bad_raw=bad,
                         n_killed=int(header["NBADDET1"]))


def write_instrument_map(imap, path, *, overwrite=False):
    """Write the map as the seed does: a float64 primary image whose header has EXTNAME='INSTRMAP'."""
    hdu = fits.PrimaryHDU(np.asarray(imap.data, dtype=np.float64), header=_clean_header(imap.header))
    hdu.header["EXTNAME"] = "INSTRMAP"
    return write_fits(fits.HDUList([hdu]), path, overwrite=overwrite)


def read_instrument_map(path, *, module=None):
    """Read an observation instrument map (``newinstrmap<m>.fits``, the ``chipmap`` of projbgd).

    The image is taken from the HDU named INSTRMAP (primary or extension); values must be 0..4.
    """
    hdul = read_fits(path, what="instrument map")
    hdu = next((h for h in hdul if str(h.header.get("EXTNAME", "")).strip().upper() == "INSTRMAP"), None)
    if hdu is None:
        raise BadFileError("no INSTRMAP extension (expected an instrument map from mkinstrmap)", path=path,
                           extension="INSTRMAP")
    data = hdu.data
    if data is None or data.shape != (DET1_NPIX, DET1_NPIX):
        raise BadFileError(f"instrument map must be {DET1_NPIX}x{DET1_NPIX}, got {None if data is None else data.shape}",
                           path=path, extension="INSTRMAP")
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isin(data, (0, 1, 2, 3, 4))):
        raise BadFileError("instrument map values must be 0..4 (detector number + 1; is this a detnum map?)",
                           path=path, extension="INSTRMAP")
    mod = None
    if "INSTRUME" in hdu.header:
        mod = module_from_header(hdu.header, path, extension="INSTRMAP")
    if module is not None and mod is not None and mod != module:
        raise BadFileError(f"instrument map is for FPM{mod}, expected FPM{module}", path=path,
                           extension="INSTRMAP", field="INSTRUME")
    return InstrumentMap(data=data, header=hdu.header.copy(), module=mod or module, path=str(path))
