"""Aspect-projected aperture map and detector masks in the sky frame (``projbgd``, spec §1.5, §2.6).

Geometry (exactly as nuskybgd-py): roll ``pa = PA_PNT + 1°``, ``a = −pa·π/180``; sky pixel (i, j)
(0-based x, y) looks at DET1 pixel ``detx = 350 + round(−c·Δi + s·Δj)``, ``dety = 350 + round(s·Δi +
c·Δj)`` with ``Δ = (i, j) − peak``, ``c, s = cos a, sin a`` (a mirror flip, det = −1). Templates are
sampled with this nearest-pixel map at the aspect peak, divided by the total aspect exposure E, and
summed over all aspect positions with periodic bilinear shifts by ``position − peak − ν`` where
``ν = R(−a)·(2.7, 0.8)`` is the empirical nudge.

Because all shifts share the fractional part of −ν, the sum is computed as **one** bilinear shift by
−ν followed by an FFT convolution with the aspect histogram (offsets relative to the peak) and a
periodic fold onto the 1000×1000 frame — the same periodic result as the reference loop (which
uses ``scipy.ndimage.shift(mode='wrap')``; the two agree whenever the footprint stays away from the
frame edges, i.e. for every real observation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..constants import DET1_NPIX, DET1_REFPIX, NUDGE_DET1, PA_OFFSET_DEG, SKY_NPIX
from ..errors import BadConfigError, BadFileError
from ..io.fitsutil import check_writable, read_fits, write_fits
from ..io.skyframe import frame_from_header
from .aperture import aperture_map_det1
from .shift import bilinear_shift

__all__ = [
    "ProjectedMaps",
    "roll_angle",
    "nudge",
    "det1_coordinates",
    "reference_templates",
    "project_maps",
    "check_reference_image",
    "reference_roll",
    "read_reference_image",
    "parse_detectors",
    "projected_paths",
    "write_projected_maps",
    "REF_KEYWORDS",
]

#: Keywords the reference sky image must carry (spec §2.6).
REF_KEYWORDS = ("PA_PNT", "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2")

#: Relative level below which FFT round-off is set to exactly 0 (all exact values are ≥ 0).
_FFT_FLOOR = 1e-13


@dataclass
class ProjectedMaps:
    """Outputs of :func:`project_maps` (in memory).

    Attributes
    ----------
    bgdap : ndarray (1000, 1000) float64
        Aspect-averaged aperture map: 10–15 keV aperture counts per sky pixel per 10⁵ s (nominal CXB).
    det : list of 4 (ndarray (1000, 1000) or None)
        Exposure fraction with which each sky pixel was seen by DET0..DET3 (None: not requested).
    header : astropy.io.fits.Header
        Copy of the reference image header plus provenance keywords.
    module : 'A' or 'B'
    exposure : float
        Σ of the aspect histogram (s).
    grxe : ndarray (1000, 1000) float64 or None
        Projected GRXE map (``bgdgrxe<m>.fits``), None without the GRXE source.
    """

    bgdap: np.ndarray
    det: list
    header: fits.Header
    module: str
    exposure: float
    peak: tuple = (0, 0)
    nudge: tuple = (0.0, 0.0)
    pa: float = 0.0
    detectors: tuple = field(default=(0, 1, 2, 3))
    grxe: np.ndarray | None = None

    def __repr__(self):
        return (f"ProjectedMaps(FPM{self.module}, detectors={self.detectors}, peak={self.peak}, "
                f"pa={self.pa:.3f}, exposure={self.exposure:.1f} s)")


def roll_angle(pa_pnt):
    """The rotation angle ``a = −(PA_PNT + 1°)·π/180`` (radians)."""
    return -(float(pa_pnt) + PA_OFFSET_DEG) * math.pi / 180.0


def nudge(pa_pnt):
    """The nudge ν = R(−a)·(2.7, 0.8) in sky pixels, as (ν_x, ν_y)."""
    a = roll_angle(pa_pnt)
    nx, ny = NUDGE_DET1
    return nx * math.cos(-a) - ny * math.sin(-a), nx * math.sin(-a) + ny * math.cos(-a)


def det1_coordinates(i, j, peak, pa_pnt):
    """DET1 pixel (detx, dety) seen by sky pixel(s) (i, j) when DET1 (350, 350) is at ``peak``.

    Parameters
    ----------
    i, j : int or ndarray
        Sky x, y (0-based).
    peak : (int, int)
        Aspect peak (x, y) in the sky frame.
    pa_pnt : float
        PA_PNT in degrees (the +1° offset is added here).

    Returns
    -------
    detx, dety : ndarray of int64 (numpy round-half-to-even, as the reference)
    """
    a = roll_angle(pa_pnt)
    c, s = math.cos(a), math.sin(a)
    di = np.asarray(i, dtype=np.float64) - peak[0]
    dj = np.asarray(j, dtype=np.float64) - peak[1]
    detx = DET1_REFPIX[0] + np.around(-c * di + s * dj).astype(np.int64)
    dety = DET1_REFPIX[1] + np.around(s * di + c * dj).astype(np.int64)
    return detx, dety


def _footprint_box(peak, pa_pnt, shape=(SKY_NPIX, SKY_NPIX)):
    """Sky box (x0, x1, y0, y1), half-open, containing every sky pixel that maps into DET1."""
    a = roll_angle(pa_pnt)
    c, s = math.cos(a), math.sin(a)
    u = np.array([-0.5, DET1_NPIX - 0.5, -0.5, DET1_NPIX - 0.5]) - DET1_REFPIX[0]
    v = np.array([-0.5, -0.5, DET1_NPIX - 0.5, DET1_NPIX - 0.5]) - DET1_REFPIX[1]
    x = peak[0] + (-c * u + s * v)  # the map is its own inverse
    y = peak[1] + (s * u + c * v)
    x0 = max(int(math.floor(x.min())) - 2, 0)
    x1 = min(int(math.ceil(x.max())) + 3, shape[1])
    y0 = max(int(math.floor(y.min())) - 2, 0)
    y1 = min(int(math.ceil(y.max())) + 3, shape[0])
    return x0, max(x1, x0), y0, max(y1, y0)


def reference_templates(maps_det1, active, peak, pa_pnt, *, shape=(SKY_NPIX, SKY_NPIX)):
    """Sample DET1 templates onto the sky at the aspect peak (spec §2.6c), unnormalised.

    Parameters
    ----------
    maps_det1 : ndarray (k, 360, 360)
        Templates (aperture map, detector masks ...).
    active : ndarray (360, 360) bool
        Active DET1 pixels (any requested detector); elsewhere the sky template is 0.
    peak : (int, int)
    pa_pnt : float

    Returns
    -------
    box : (y0, x0)
        Sky position of element [0, 0] of ``sky``.
    sky : ndarray (k, ny, nx)
        The templates on the footprint box (0 outside the active area).
    """
    x0, x1, y0, y1 = _footprint_box(peak, pa_pnt, shape)
    k = maps_det1.shape[0]
    if x1 <= x0 or y1 <= y0:
        return (0, 0), np.zeros((k, 0, 0))
    jj, ii = np.mgrid[y0:y1, x0:x1]
    detx, dety = det1_coordinates(ii, jj, peak, pa_pnt)
    inside = (detx >= 0) & (detx < DET1_NPIX) & (dety >= 0) & (dety < DET1_NPIX)
    sel = np.zeros(detx.shape, dtype=bool)
    sel[inside] = active[dety[inside], detx[inside]]
    sky = np.zeros((k,) + detx.shape)
    sky[:, sel] = maps_det1[:, dety[sel], detx[sel]]
    return (y0, x0), sky


def _fold_add(out, arr, y0, x0):
    """Add ``arr`` (k, h, w) into ``out`` (k, N, N) at (y0, x0), indices taken modulo N."""
    n_y, n_x = out.shape[-2:]
    h, w = arr.shape[-2:]
    if h > n_y or w > n_x:  # fold a wider-than-frame array onto the torus first
        ph, pw = -(-h // n_y) * n_y, -(-w // n_x) * n_x
        pad = np.zeros(arr.shape[:-2] + (ph, pw))
        pad[..., :h, :w] = arr
        arr = pad.reshape(arr.shape[:-2] + (ph // n_y, n_y, pw // n_x, n_x)).sum(axis=(-4, -2))
        h, w = n_y, n_x
    rows = (y0 + np.arange(h)) % n_y
    cols = (x0 + np.arange(w)) % n_x
    out[..., rows[:, None], cols[None, :]] += arr


def _convolve(stack, kernel):
    """Full linear convolution of each image of ``stack`` (k, h, w) with ``kernel`` via real FFTs."""
    kh, kw = kernel.shape
    h, w = stack.shape[-2:]
    shape = (h + kh - 1, w + kw - 1)
    if kh * kw == 1:
        return stack * kernel[0, 0]
    from scipy import fft as sfft  # lazy: scipy.fft pulls scipy.special (start-up time)

    fshape = tuple(sfft.next_fast_len(n, real=True) for n in shape)
    kf = sfft.rfft2(kernel, fshape)
    sf = sfft.rfft2(stack, fshape, axes=(-2, -1))
    out = sfft.irfft2(sf * kf, fshape, axes=(-2, -1))
    return out[..., :shape[0], :shape[1]]


def parse_detectors(det):
    """Detectors 0..3 from the seed's ``det=`` string of characters 1–4 (detector n+1 ↔ DETn)."""
    if isinstance(det, (list, tuple)):
        dets = sorted({int(d) for d in det})
        if not dets or any(d not in (0, 1, 2, 3) for d in dets):
            raise BadConfigError(f"detectors must be a non-empty subset of 0..3, got {det!r}", field="det")
        return tuple(dets)
    text = str(det).strip()
    if not text or any(ch not in "1234" for ch in text):
        raise BadConfigError(f"det must be a non-empty subset of the characters 1234, got {det!r}", field="det")
    return tuple(sorted({int(ch) - 1 for ch in text}))


def check_reference_image(header, shape, path=None):
    """Validate the reference sky image (spec §2.6): its sky frame, PA_PNT and a CDELT-style WCS.

    Returns
    -------
    float
        PA_PNT (degrees).
    """
    return reference_roll(header, shape, path)[0]


def reference_roll(header, shape, path=None, *, pa_pnt=None, aspect=None):
    """Frame of the reference sky image and the roll the projection uses, with where it came from.

    The roll is, in order: ``pa_pnt`` when given; the roll measured from the events
    (``PA_EVT`` of an aspect histogram built by :func:`~.eventaspect.aspect_from_events`); the
    image's PA_PNT — for a celestial frame only: in a heliocentric frame PA_PNT (the celestial roll)
    differs from the roll relative to solar north.

    A celestial reference image is NuSTAR's 1000×1000 grid; a heliocentric one keeps its own size.

    Returns
    -------
    pa : float
        Degrees (the +1° offset is added by :func:`roll_angle`).
    frame : SkyFrame
    source : str
        ``'pa_pnt='``, ``'events'`` or ``'PA_PNT'``.
    """
    if len(shape) != 2:
        raise BadFileError(f"reference image must be a 2-D {SKY_NPIX}x{SKY_NPIX} image", path=path, extension=0)
    for key in REF_KEYWORDS:
        if key != "PA_PNT" and key not in header:
            raise BadFileError("required keyword missing from the reference image", path=path, extension=0,
                               field=key)
    frame = frame_from_header(header, path, extension=0, shape=shape)
    if frame.celestial and tuple(shape) != (SKY_NPIX, SKY_NPIX):
        raise BadFileError(f"reference image must be {SKY_NPIX}x{SKY_NPIX}, got {shape[-1]}x{shape[0]}",
                           path=path, extension=0)
    if min(shape) < DET1_NPIX:
        raise BadFileError(f"reference image {shape[-1]}x{shape[0]} is smaller than the detector", path=path,
                           extension=0)
    if pa_pnt is not None:
        return float(pa_pnt), frame, "pa_pnt="
    measured = None if aspect is None else aspect.header.get("PA_EVT")
    if measured is not None:
        return float(measured), frame, "events"
    if not frame.celestial:
        raise BadFileError("the sky frame is heliocentric: the roll relative to solar north is not PA_PNT; build the "
                           "aspect histogram from the events (aspecthist --events EVT) or pass pa_pnt=",
                           path=path, extension=0, field="PA_PNT")
    if "PA_PNT" not in header:
        raise BadFileError("required keyword missing from the reference image", path=path, extension=0,
                           field="PA_PNT")
    try:
        pa = float(header["PA_PNT"])
    except (TypeError, ValueError):
        raise BadFileError("PA_PNT is not a number", path=path, extension=0, field="PA_PNT") from None
    if not math.isfinite(pa) or pa == -100.0:
        raise BadFileError(f"PA_PNT is {pa:g} (no pointing, e.g. a solar observation); pass pa_pnt= or build the "
                           "aspect histogram from the events (aspecthist --events EVT)",
                           path=path, extension=0, field="PA_PNT")
    return pa, frame, "PA_PNT"


def read_reference_image(path):
    """Header and shape of the reference sky image (its primary HDU)."""
    hdul = read_fits(path, what="reference image")
    data = hdul[0].data
    shape = () if data is None else data.shape
    return hdul[0].header.copy(), shape


def project_maps(ref_header, instrument_map, aspect, *, module=None, detectors=(0, 1, 2, 3), aperture=None,
                 auxil_dir=None, pa_pnt=None, ref_shape=None, ref_path=None, aspect_path=None):
    """Project the DET1 aperture map and detector masks onto the sky with the aspect histogram.

    Parameters
    ----------
    ref_header : astropy.io.fits.Header
        Header of the 1000×1000 reference sky image (PA_PNT, WCS); copied into the outputs.
    instrument_map : InstrumentMap or ndarray (360, 360)
        Values n+1 on active pixels of detector n, 0 elsewhere.
    aspect : AspectHistogram
    module : {'A', 'B'}, optional
        Defaults to the instrument map's (or aspect histogram's) module.
    detectors : str or sequence of int
        Detectors 0..3, or the seed's string of characters 1–4.
    aperture : ndarray (360, 360), optional
        DET1 aperture map; computed with :func:`aperture_map_det1` when not given.
    auxil_dir : path-like, optional
        For the aperture map files.
    pa_pnt : float, optional
        Overrides the roll (see :func:`reference_roll` for the order: ``pa_pnt``, the aspect's
        measured ``PA_EVT``, the header's PA_PNT).
    ref_shape : tuple, optional
        Shape ``(ny, nx)`` of the reference image (default: NAXIS2/NAXIS1 of ``ref_header``, else
        1000×1000); 1000×1000 for a celestial frame, the event grid's size for a heliocentric one.
    ref_path, aspect_path : str, optional
        Names for error messages.

    Returns
    -------
    ProjectedMaps
    """
    if ref_shape is None:
        ref_shape = ((int(ref_header["NAXIS2"]), int(ref_header["NAXIS1"])) if "NAXIS1" in ref_header
                     and "NAXIS2" in ref_header else (SKY_NPIX, SKY_NPIX))
    pa, _, pa_source = reference_roll(ref_header, ref_shape, ref_path, pa_pnt=pa_pnt, aspect=aspect)
    shape = (int(ref_shape[0]), int(ref_shape[1]))
    dets = parse_detectors(detectors) if isinstance(detectors, str) else parse_detectors(tuple(detectors))
    imap = getattr(instrument_map, "data", instrument_map)
    imap = np.asarray(imap, dtype=np.float64)
    if imap.shape != (DET1_NPIX, DET1_NPIX):
        raise BadConfigError(f"instrument map must be {DET1_NPIX}x{DET1_NPIX}, got {imap.shape}", field="chipmap")
    mod = module or getattr(instrument_map, "module", None) or aspect.module
    mod = str(mod).strip().upper().removeprefix("FPM") if mod else None
    if mod not in ("A", "B"):
        raise BadConfigError(f"module must be A or B, got {module!r}", field="mod")
    for what, other in (("instrument map", getattr(instrument_map, "module", None)), ("aspect histogram", aspect.module)):
        if other is not None and other != mod:
            raise BadConfigError(f"{what} is for FPM{other}, but mod={mod}", field="mod")
    if aperture is None:
        aperture = aperture_map_det1(mod, auxil_dir=auxil_dir)
    aperture = np.asarray(aperture, dtype=np.float64)

    hist = np.asarray(aspect.image, dtype=np.float64)
    total = float(hist.sum())
    if not total > 0:
        raise BadFileError("aspect histogram is empty", path=aspect_path or aspect.path)
    peak = aspect.peak
    if not (0 <= peak[0] < shape[1] and 0 <= peak[1] < shape[0]):
        raise BadFileError(f"aspect peak ({peak[0]}, {peak[1]}) is outside the {shape[1]}x{shape[0]} sky frame",
                           path=aspect_path or aspect.path)

    masks = np.stack([imap == d + 1 for d in dets]).astype(np.float64)
    active = masks.any(axis=0)
    templates = np.concatenate([aperture[None], masks]) / total
    (by, bx), sky = reference_templates(templates, active, peak, pa, shape=shape)
    nu_x, nu_y = nudge(pa)

    out = np.zeros((len(templates),) + shape)
    if sky.size:
        # Zero margin so the bilinear shift by −ν never wraps inside the padded box.
        mx, my = int(math.ceil(abs(nu_x))) + 1, int(math.ceil(abs(nu_y))) + 1
        padded = np.zeros((sky.shape[0], sky.shape[1] + 2 * my, sky.shape[2] + 2 * mx))
        padded[:, my:my + sky.shape[1], mx:mx + sky.shape[2]] = sky
        shifted = bilinear_shift(padded, -nu_x, -nu_y)
        conv = _convolve(shifted, hist)
        # Kernel element [0, 0] is the aspect offset (X_OFF − p_x, Y_OFF − p_y).
        _fold_add(out, conv, by - my + aspect.y_off - peak[1], bx - mx + aspect.x_off - peak[0])
        # FFT round-off: exact values are ≥ 0; values below the floor are exactly 0.
        for k in range(len(out)):
            top = out[k].max()
            out[k][out[k] < _FFT_FLOOR * top] = 0.0

    header = ref_header.copy()
    for key in ("BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM", "BUNIT"):
        header.remove(key, ignore_missing=True, remove_all=True)
    if pa_source != "PA_PNT":
        header["PA_PNT"] = (float(pa), f"[deg] roll used (from {pa_source})")
    header["HISTORY"] = "nuskybgd projbgd: aspect-projected aperture map / detector mask"
    header["NSB_MOD"] = (f"FPM{mod}", "module of the projected maps")
    header["NSB_PA"] = (pa + PA_OFFSET_DEG, "[deg] roll used (PA_PNT + 1)")
    header["NSB_PKX"] = (int(peak[0]), "aspect peak x (0-based sky pixel)")
    header["NSB_PKY"] = (int(peak[1]), "aspect peak y (0-based sky pixel)")
    header["NSB_NUX"] = (nu_x, "nudge x (sky pixels)")
    header["NSB_NUY"] = (nu_y, "nudge y (sky pixels)")
    header["NSB_ASPE"] = (total, "[s] aspect histogram exposure")
    det = [None] * 4
    for n, d in enumerate(dets):
        det[d] = out[1 + n]
    return ProjectedMaps(bgdap=out[0], det=det, header=header, module=mod, exposure=total, peak=peak,
                         nudge=(nu_x, nu_y), pa=pa + PA_OFFSET_DEG, detectors=dets)


def projected_paths(out, module, detectors=(0, 1, 2, 3)):
    """Output paths: ``out`` and ``det<n><m>im.fits`` in the directory of ``out``."""
    out = Path(out)
    return out, {d: out.parent / f"det{d}{module}im.fits" for d in detectors}


def write_projected_maps(maps, out, *, overwrite=False):
    """Write ``bgdap`` to ``out`` and the detector images next to it (nothing is written on error).

    Returns
    -------
    list of Path
    """
    out, det_paths = projected_paths(out, maps.module, maps.detectors)
    for path in [out, *det_paths.values()]:
        check_writable(path, overwrite=overwrite)
    written = []
    hdr = maps.header.copy()
    hdr["BUNIT"] = ("count", "10-15 keV aperture counts per pixel per 1e5 s")
    written.append(write_fits(fits.HDUList([fits.PrimaryHDU(maps.bgdap, header=hdr)]), out, overwrite=overwrite))
    for d, path in det_paths.items():
        h = maps.header.copy()
        h["DETNAM"] = (f"DET{d}", "detector of this exposure-fraction map")
        h["BUNIT"] = ("", "exposure fraction 0..1")
        written.append(write_fits(fits.HDUList([fits.PrimaryHDU(maps.det[d], header=h)]), path, overwrite=overwrite))
    return written
