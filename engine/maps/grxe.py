"""Galactic-ridge (GRXE) stray light: a user sky map seen through the aperture stop (IDL ``grxe2det``).

Every DET1 pixel sees, past the aperture stop, a disc of sky: a ray from sky direction θ
passing the stop centre at height ``z`` above the focal plane lands at ``p = a − z·θ``, so
the pixel whose focused sky offset from the point ``a`` below the stop is θ_p (``p − a = −F·θ_p``)
sees a disc centred at ``θ_a + (F/z)·θ_p`` (θ_a: the focused direction of ``a``) of radius
``r_stop/z``. As in IDL (``grxe2det``'s ±35 mm detector grid is centred on the FPM origin, below
the stop, and ``projinitbgds`` places that image into DET1 with the aperture template's shift and
crop), ``a`` is the FPM origin: DET1 ``35/0.12096 − 108 + shift/0.12096`` per axis,
≈ (153.2, 197.9) for FPMA and (152.4, 194.6) for FPMB (:func:`stop_axis_det1`). (Before, the
stop was put above the aspect reference pixel DET1 (350, 350), ≈ 250 DET1 pixels away: every disc
was ~2° off, which the independent simulation of ``benchmarks/validation/bench_grxe.py`` showed as
GRXE predictions 0.5–1.4× the truth from region to region.)
The open part of that disc (what the optics bench leaves) is the aperture map ``ap``
(:func:`~nuskybgd_engine.maps.aperture.aperture_map_det1`, 10–15 keV counts of the nominal
CXB); the GRXE DET1 map is therefore ``(ap − floor) · ⟨S⟩``, ⟨S⟩ the GRXE map's surface
brightness averaged over the disc. A uniform map gives exactly the aperture map (less its
floor), the stray-light CXB weighting; a localized one brightens the side of the field facing it.

Differences from the IDL code, deliberately: the optics-bench shadow is taken from the aperture
template (the same map as the aperture CXB) instead of the 13-vertex outline and the CALDB
alignment file, and ⟨S⟩ is sampled with :data:`DISC_SAMPLES` equal-area points per disc on a
DET1 grid of nodes every ~:data:`DET1_BIN` pixels (IDL: 4), bilinearly interpolated to every pixel. The
sampling accuracy is measured in ``tests/test_grxe_maps.py`` (sub-per-cent for maps smooth on
the RXTE 0.4° scale).

The sky map (IDL auxil ``modelrxte_*.fits``) is a 2-D primary image with a celestial WCS,
galactic (``GLON``/``GLAT``, as the IDL ``euler`` conversion expects) or equatorial; pixels
outside it count as 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import wcs_to_celestial_frame
from scipy.ndimage import map_coordinates

from ..constants import DET1_NPIX, DET1_PIXEL_MM, DET1_REFPIX, PIXEL_DEG
from ..errors import BadConfigError, BadFileError
from ..io.fitsutil import check_writable, read_fits, write_fits
from ..io.skyframe import frame_from_header
from ._auxil import _auxil_data
from .aperture import (
    _PARAM_INDEX,
    APERTURE_FLOOR,
    TEMPLATE_CROP,
    aperture_map_det1,
    module_letter,
    read_aperture_params,
)
from .projection import project_maps, reference_roll, roll_angle

__all__ = [
    "APERTURE_STOP_HEIGHT_MM",
    "APERTURE_STOP_RADIUS_MM",
    "DET1_BIN",
    "DISC_SAMPLES",
    "FOCAL_LENGTH_MM",
    "GrxeSkyMap",
    "add_grxe_maps",
    "grxe_map_det1",
    "grxe_output_path",
    "project_grxe",
    "read_grxe_map",
    "stop_axis_det1",
    "write_projected_grxe",
]

#: NuSTAR focal length (mm): one DET1 pixel (0.12096 mm) is one 2.458″ sky pixel.
FOCAL_LENGTH_MM = DET1_PIXEL_MM / math.radians(PIXEL_DEG)
#: Aperture-stop radius (IDL ``rap = 58/2``).
APERTURE_STOP_RADIUS_MM = 29.0
#: Height of the aperture stop above the focal plane (mm). Chosen so that the unobstructed disc,
#: π (29/z)² rad², equals the largest open solid angle of the aperture template, 3.1865e-5 deg² ×
#: its maximum (3.731e5 for FPMA, 3.727e5 for FPMB): 11.89 deg², z = 854 mm.
APERTURE_STOP_HEIGHT_MM = 854.0
#: IDL grxe2det's detector grid: pixel i of its (template-sized) image is at −35 mm + i DET1 pixels.
GRID_HALF_WIDTH_MM = 35.0
#: DET1 binning of the disc sampling (pixels) and points per disc.
DET1_BIN = 8
DISC_SAMPLES = 256


@dataclass
class GrxeSkyMap:
    """A GRXE surface-brightness sky map with its celestial WCS (arbitrary units per pixel)."""

    data: np.ndarray
    wcs: WCS
    path: str = ""

    def __repr__(self):
        frame = wcs_to_celestial_frame(self.wcs).name
        return f"GrxeSkyMap({self.path or 'in memory'}, {self.data.shape[1]}x{self.data.shape[0]}, {frame})"

    def sample(self, coords):
        """Bilinear surface brightness at ``coords`` (SkyCoord); 0 outside the map."""
        frame = wcs_to_celestial_frame(self.wcs)
        c = coords.transform_to(frame)
        lon, lat = c.spherical.lon.deg, c.spherical.lat.deg
        x, y = self.wcs.world_to_pixel_values(lon, lat)
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return map_coordinates(self.data, [y.ravel(), x.ravel()], order=1, mode="constant",
                               cval=0.0).reshape(x.shape)


def read_grxe_map(path):
    """Read a GRXE sky map (IDL ``modelrxte_*.fits``): primary 2-D image, celestial WCS.

    Raises
    ------
    BadFileError
        No 2-D primary image, no celestial WCS, or non-finite/negative pixels.
    """
    hdul = read_fits(path, what="GRXE sky map")
    data = hdul[0].data
    if data is None or data.ndim != 2:
        shape = None if data is None else data.shape
        raise BadFileError(f"GRXE sky map must be a 2-D primary image, got {shape}", path=path, extension=0)
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise BadFileError("GRXE sky map has non-finite or negative pixels", path=path, extension=0)
    try:
        wcs = _wcs(hdul[0].header)
        wcs_to_celestial_frame(wcs)
    except (ValueError, KeyError, TypeError) as exc:  # astropy's WCS errors are ValueErrors
        raise BadFileError(f"GRXE sky map has no celestial WCS (CTYPE GLON/GLAT or RA/DEC): {exc}",
                           path=path, extension=0, field="CTYPE1") from None
    if not wcs.has_celestial:
        raise BadFileError("GRXE sky map has no celestial WCS (CTYPE GLON/GLAT or RA/DEC)", path=path,
                           extension=0, field="CTYPE1")
    return GrxeSkyMap(data, wcs, str(path))


def _wcs(header):
    """The 2-D WCS of ``header``; astropy's notes on fixed date keywords (MJDREF → DATEREF) are harmless."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2)


def _disc_offsets(n):
    """``n`` equal-area points in the unit disc (Vogel's sunflower), shape (n, 2)."""
    k = np.arange(n) + 0.5
    r = np.sqrt(k / n)
    phi = k * math.pi * (3.0 - math.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi)])


def stop_axis_det1(module, *, params=None, auxil_dir=None):
    """DET1 (x, y), 0-based, of the point below the aperture-stop centre (the FPM origin, IDL).

    ``params``: the ``nomapbgdparams.dat`` values (read from the auxil files when not given).
    """
    mod = module_letter(module)
    if params is None:
        params = _auxil_data("nomapbgdparams.dat", read_aperture_params, auxil_dir=auxil_dir, module=mod)
    _, i_x, i_y, _ = _PARAM_INDEX[mod]
    origin = GRID_HALF_WIDTH_MM / DET1_PIXEL_MM - TEMPLATE_CROP
    return origin + params[i_x] / DET1_PIXEL_MM, origin + params[i_y] / DET1_PIXEL_MM


def grxe_map_det1(grxe, ref_header, peak, pa_pnt, *, module="A", aperture=None, auxil_dir=None,
                  det1_bin=DET1_BIN, disc_samples=DISC_SAMPLES, axis=None):
    """The GRXE stray-light map of one module in DET1, float64 360×360.

    Parameters
    ----------
    grxe : GrxeSkyMap
    ref_header : astropy.io.fits.Header
        The celestial reference sky image (its WCS places the pointing).
    peak : (int, int)
        Sky pixel (x, y) of DET1 (350, 350) (the aspect peak).
    pa_pnt : float
        PA_PNT (deg) as for :func:`~nuskybgd_engine.maps.projection.det1_coordinates`.
    module : {'A', 'B'}
    aperture : ndarray (360, 360), optional
        The DET1 aperture map (computed when not given).
    det1_bin, disc_samples : int
        DET1 binning of the sampling grid and sample points per disc.
    axis : (float, float), optional
        DET1 (x, y) below the stop centre (default :func:`stop_axis_det1` of ``module``).

    Returns
    -------
    ndarray (360, 360)
        Aperture counts per pixel per 10⁵ s (nominal CXB) × the mean GRXE surface brightness
        over the sky the pixel sees through the stop.
    """
    if frame_from_header(ref_header, shape=(1, 1)).kind != "celestial":  # only the frame's kind matters here
        raise BadConfigError("GRXE needs a celestial (RA/Dec) reference image", field="grxe")
    det1_bin = int(det1_bin)
    if det1_bin < 1 or DET1_NPIX % det1_bin:
        raise BadConfigError(f"det1_bin must divide {DET1_NPIX}, got {det1_bin}", field="det1_bin")
    if int(disc_samples) < 1:
        raise BadConfigError(f"disc_samples must be >= 1, got {disc_samples}", field="disc_samples")
    if aperture is None:
        aperture = aperture_map_det1(module, auxil_dir=auxil_dir)
    aperture = np.asarray(aperture, dtype=np.float64)
    nb = DET1_NPIX // det1_bin
    # Nodes span the first to the last pixel centre, so the interpolation never extrapolates.
    centres = np.linspace(0.0, DET1_NPIX - 1.0, nb + 1)
    ax, ay = axis if axis is not None else stop_axis_det1(module, auxil_dir=auxil_dir)
    dv, du = np.meshgrid(centres - ay, centres - ax, indexing="ij")
    a = roll_angle(pa_pnt)
    c, s = math.cos(a), math.sin(a)

    def focused(du, dv):  # sky-pixel offsets of DET1 offsets: the inverse of det1_coordinates
        return -c * du + s * dv, s * du + c * dv

    # The focused sky position of the stop axis, then each sample's offset from it × F/z.
    axis_i, axis_j = focused(ax - DET1_REFPIX[0], ay - DET1_REFPIX[1])
    di, dj = focused(du, dv)
    mag = FOCAL_LENGTH_MM / APERTURE_STOP_HEIGHT_MM
    radius = math.degrees(APERTURE_STOP_RADIUS_MM / APERTURE_STOP_HEIGHT_MM) / PIXEL_DEG
    disc = _disc_offsets(int(disc_samples)) * radius
    x = peak[0] + axis_i + mag * di[..., None] + disc[:, 0]
    y = peak[1] + axis_j + mag * dj[..., None] + disc[:, 1]
    wcs = _wcs(ref_header)
    coords = wcs.pixel_to_world(x.ravel(), y.ravel())
    if not isinstance(coords, SkyCoord):
        raise BadConfigError("GRXE needs a celestial (RA/Dec) reference image", field="grxe")
    bright = grxe.sample(coords).reshape(x.shape).mean(axis=-1)
    # Bilinear from the nodes to every DET1 pixel.
    pix = np.arange(DET1_NPIX) * nb / (DET1_NPIX - 1.0)
    yy, xx = np.meshgrid(pix, pix, indexing="ij")
    full = map_coordinates(bright, [yy.ravel(), xx.ravel()], order=1, mode="nearest").reshape(yy.shape)
    return np.clip(aperture - APERTURE_FLOOR, 0.0, None) * full


def project_grxe(ref_header, instrument_map, aspect, grxe, *, module=None, aperture=None, auxil_dir=None,
                 pa_pnt=None, det1_bin=DET1_BIN, disc_samples=DISC_SAMPLES, ref_shape=None):
    """The aspect-projected GRXE map on the reference sky grid (as ``bgdap``: per pixel per 10⁵ s).

    ``ref_shape`` (ny, nx) is the reference image's shape when its header has no NAXIS1/2 (an
    in-memory counts image); see :func:`grxe_map_det1` for the other parameters.

    Returns
    -------
    ndarray (ny, nx)
    """
    mod = module or getattr(instrument_map, "module", None) or aspect.module
    mod = str(mod).strip().upper().removeprefix("FPM")
    shape = ref_shape or ((int(ref_header["NAXIS2"]), int(ref_header["NAXIS1"])) if "NAXIS1" in ref_header else None)
    pa, _, _ = reference_roll(ref_header, shape or (1000, 1000), pa_pnt=pa_pnt, aspect=aspect)
    if aperture is None:
        aperture = aperture_map_det1(mod, auxil_dir=auxil_dir)
    det1 = grxe_map_det1(grxe, ref_header, aspect.peak, pa, module=mod, aperture=aperture,
                         det1_bin=det1_bin, disc_samples=disc_samples)
    maps = project_maps(ref_header, instrument_map, aspect, module=mod, detectors=(0, 1, 2, 3), aperture=det1,
                        pa_pnt=pa, ref_shape=shape)
    return maps.bgdap


def add_grxe_maps(observation, grxe, *, auxil_dir=None):
    """Project ``grxe`` for every module of a prepared observation (``maps.grxe`` set in place).

    What ``projbgd --grxe`` writes, for an in-memory
    :class:`~nuskybgd_engine.observation.ObservationProducts` (its counts images, instrument maps and
    aspect histograms); the GRXE source then enters every model built from its spectra.

    Returns
    -------
    observation
    """
    for m in observation.modules:
        mp = observation[m]
        mp.maps.grxe = project_grxe(mp.image.header, mp.instrument_map, mp.aspect, grxe, module=m,
                                    auxil_dir=auxil_dir, ref_shape=mp.image.image.shape)
    return observation


def grxe_output_path(out, module):
    """``bgdgrxe<module>.fits`` in the directory of ``out`` (next to the other projected maps)."""
    return Path(out).parent / f"bgdgrxe{module}.fits"


def write_projected_grxe(sky, header, path, *, overwrite=False, source=""):
    """Write the projected GRXE map (primary image, the projection's header) atomically.

    Returns
    -------
    Path
    """
    check_writable(path, overwrite=overwrite)
    hdr = header.copy()
    hdr["BUNIT"] = ("", "aperture counts per pixel per 1e5 s x GRXE map brightness")
    hdr["HISTORY"] = "nuskybgd projbgd --grxe: GRXE sky map seen through the aperture stop"
    if source:
        hdr["NSB_GRXE"] = (Path(source).name, "GRXE sky map")
    return write_fits(fits.HDUList([fits.PrimaryHDU(np.asarray(sky, dtype=np.float64), header=hdr)]), path,
                      overwrite=overwrite)
