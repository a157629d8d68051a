"""The validation simulator's own instrument: geometry, responses and component spectra.

Written from ``../shared/spec/method.md`` alone, with numpy/scipy/astropy; nothing here comes from
``nuskybgd_engine``. What is taken from the public nuskybgd auxiliary files (read directly with
astropy, every evaluation re-implemented here):

* the detector layout ``detnum{A,B}.fits`` and RAW-pixel map ``pixmap{A,B}.fits`` (§1.2, §1.3, §5);
* the aperture geometry ``det{A,B}_det1.img.gz`` with the ``nomapbgdparams.dat`` shifts and
  scale, evaluated as §2.6(a) describes (our own bilinear periodic shift, scale, crop);
* the Be-window transmission ``be.arf`` and the focused-CXB effective area ``fcxb{A,B}.arf``
  (used by row index on the standard grid, §3.4);
* the component presets ``ratios.json`` (line energies, widths, per-detector strengths, §3.1).

Everything else is our own and deliberately *not* the engine's:

* energy response: a Gaussian of FWHM(E) = sqrt(0.38² + (0.012 E)²) keV (NuSTAR's 0.4 keV at
  10 keV, 0.9 keV at 68 keV), no low-energy tail, no escape peaks, no detector absorption;
* ``lorentz`` in XSPEC's current normalisation (integral over E > 0 equals the norm, §3.3);
* the soft internal component: by default ``apec_like`` — a free-free continuum (Born Gaunt
  factor) raised by 40 % for the free-bound continuum, with a temperature 10 % higher than the
  preset's (a harder slope), plus Ar XVII 3.13 keV, Ar XVIII 3.32 keV, Ca XIX 3.90 keV and
  Fe XXV 6.70 keV lines (assumed strengths: 12, 3, 5 and 1 % of the 3–5 keV continuum photon
  flux) — a stand-in for real apec that differs from the engine's bremss stand-in in level,
  slope and lines, as real apec would; ``standin_like`` — a pure free-free continuum at the
  preset temperature (the shape of the engine's stand-in, up to the Gaunt factor);
* the DET1 → sky mapping of §1.5 evaluated per event at the event's continuous aspect position;
* the optional Galactic-ridge (GRXE) stray light, from the IDL ``grxe2det.pro`` geometry (method.md
  §7 "GRXE"): every detector point sees, through the 29 mm-radius aperture stop at height ``z``, a
  disc of sky of radius 29/z rad whose centre moves ``1/z`` rad per mm of detector position (IDL
  ``vis = (apxy − vfb)·D/apz``); the IDL detector grid is centred on the FPM origin and its image
  is placed into DET1 exactly as the aperture template (grid pixel i at −35 + 0.12096·i mm, the
  ``nomapbgdparams.dat`` shift, crop at 108), so the FPM origin — below the stop — is DET1
  ≈ (153, 198) for FPMA. ``z`` is such that the unobstructed disc is the template's largest open
  solid angle (its corner, far from the optics bench). The disc is integrated on a polar grid of
  equal-area cells; the open part of it is taken as the template's open fraction (the IDL bench
  polygon's orientation needs the CALDB alignment file, which the spec does not give).
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import wcs_to_celestial_frame
from scipy import ndimage, special

__all__ = [
    "DET1_REF",
    "E_HI",
    "E_LO",
    "E_MID",
    "N_CHAN",
    "PIXEL_DEG",
    "SOFT_SHAPES",
    "aperture_map",
    "arf",
    "auxil_dir",
    "band_channels",
    "band_probability",
    "bknpower",
    "cutoffpl",
    "det1_to_sky",
    "detector_maps",
    "fpm_origin_det1",
    "fwhm",
    "gaussian_rmf_rows",
    "grxe_det1",
    "grxe_line",
    "grxe_sky_map",
    "lorentz",
    "open_solid_angle",
    "polar_table",
    "presets",
    "roll",
    "sky_to_det1",
    "soft_component",
    "stop_height_mm",
    "write_grxe_sky_map",
]

N_CHAN = 4096
E_LO = 1.6 + 0.04 * np.arange(N_CHAN)
E_HI = E_LO + 0.04
E_MID = 0.5 * (E_LO + E_HI)
#: Sky and DET1 pixel size (deg), §1.1.
PIXEL_DEG = 6.828076e-4
#: DET1 reference pixel of the aspect solution (0-based), §1.1.
DET1_REF = 350.0
SOFT_SHAPES = ("apec_like", "standin_like")
#: DET1 pixel size (mm), §1.1.
DET1_MM = 0.12096


def auxil_dir():
    """The nuskybgd auxiliary files: $NUSKYBGD_AUXIL, else ``../shared/nustar-auxil``."""
    env = os.environ.get("NUSKYBGD_AUXIL")
    if env:
        return Path(env)
    shared = os.environ.get("NUSKYBGD_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return root / "nustar-auxil"


def _aux(name):
    path = auxil_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"validation simulator needs the nuskybgd auxil file {path}")
    return path


@cache
def detector_maps(module):
    """(detnum, pixmap): 360×360 int arrays, detector 0..3 / RAW index of each DET1 pixel, −1 off."""
    out = []
    for stem in ("detnum", "pixmap"):
        with fits.open(_aux(f"{stem}{module}.fits")) as h:
            out.append(np.rint(np.asarray(h["INSTRMAP"].data, float)).astype(int))
    return tuple(out)


@cache
def _aperture_params(module):
    """(norm, x shift mm, y shift mm) of ``module`` from nomapbgdparams.dat (§2.6 a)."""
    vals = []
    for line in _aux("nomapbgdparams.dat").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            vals.append(float(line))
    return (vals[0], vals[4], vals[5]) if module == "A" else (vals[1], vals[7], vals[8])


@cache
def _template(module):
    with fits.open(_aux(f"det{module}_det1.img.gz")) as h:
        return np.asarray(h[0].data, float)


@cache
def open_solid_angle(module):
    """Open sky (deg²) seen through the aperture stop by each DET1 pixel: 3.1865e-5 × the shifted template."""
    _, sx, sy = _aperture_params(module)
    # out[y, x] = T[y - dy, x - dx], bilinear, periodic.
    shifted = ndimage.shift(_template(module), (sy / DET1_MM, sx / DET1_MM), order=1, mode="grid-wrap")
    return 3.1865e-5 * shifted[108:468, 108:468]


@cache
def aperture_map(module):
    """Expected 10–15 keV aperture counts per DET1 pixel per 10⁵ s for the nominal CXB (§2.6 a)."""
    norm = _aperture_params(module)[0]
    return norm * DET1_MM ** 2 * open_solid_angle(module) + 0.00495 * 0.7


def _specresp(name):
    with fits.open(_aux(name)) as h:
        return np.asarray(h[1].data["SPECRESP"], float)


@cache
def arf(kind, module):
    """``kind`` 'be' (Be window, unitless) or 'fcxb' (on-axis area, cm²), by row on the standard grid."""
    return _specresp("be.arf") if kind == "be" else _specresp(f"fcxb{module}.arf")


@cache
def presets():
    """The component presets of ratios.json, keyed as in the file."""
    return json.loads(_aux("ratios.json").read_text())["models"]


def fwhm(energy):
    """FWHM (keV) of the Gaussian response."""
    energy = np.asarray(energy, float)
    return np.sqrt(0.38 ** 2 + (0.012 * energy) ** 2)


def band_channels(emin, emax):
    """Inclusive PI range whose channels lie within [emin, emax] keV."""
    lo = int(round((emin - 1.6) / 0.04))
    hi = int(round((emax - 1.6) / 0.04)) - 1
    return lo, hi


# --- geometry (§1.5) -------------------------------------------------------------------------


def roll(pa):
    """(M, nudge): the mirror-rotation matrix DET1 → sky and the empirical nudge, for PA_PNT ``pa``."""
    a = -(pa + 1.0) * math.pi / 180.0
    c, s = math.cos(a), math.sin(a)
    m = np.array([[-c, s], [s, c]])
    nudge = np.array([2.7 * math.cos(-a) - 0.8 * math.sin(-a), 2.7 * math.sin(-a) + 0.8 * math.cos(-a)])
    return m, nudge


def det1_to_sky(u, v, px, py, pa):
    """0-based continuous sky (x, y) of DET1 (u, v) when DET1 (350, 350) points at sky (px, py)."""
    m, nu = roll(pa)
    du, dv = np.asarray(u, float) - DET1_REF, np.asarray(v, float) - DET1_REF
    return px - nu[0] + m[0, 0] * du + m[0, 1] * dv, py - nu[1] + m[1, 0] * du + m[1, 1] * dv


def sky_to_det1(x, y, px, py, pa):
    """Inverse of :func:`det1_to_sky` (M is its own inverse)."""
    m, nu = roll(pa)
    dx, dy = np.asarray(x, float) - px + nu[0], np.asarray(y, float) - py + nu[1]
    return DET1_REF + m[0, 0] * dx + m[0, 1] * dy, DET1_REF + m[1, 0] * dx + m[1, 1] * dy


# --- spectra: photons per bin of the standard grid, per unit norm ------------------------------


def _gl_integral(func, lo, hi, n=8):
    x, w = np.polynomial.legendre.leggauss(n)
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    return sum(wk * func(mid + half * xk) for xk, wk in zip(x, w)) * half


def cutoffpl(gamma, ecut):
    """cutoffpl photons cm⁻² s⁻¹ per bin for norm 1."""
    return _gl_integral(lambda e: e ** (-gamma) * np.exp(-e / ecut), E_LO, E_HI)


def bknpower(g1, eb, g2):
    """bknpower photons per bin for norm 1 (closed form, bin split at the break)."""
    def prim(e, g):
        return np.log(e) if g == 1 else e ** (1 - g) / (1 - g)

    out = np.empty(N_CHAN)
    lo_part = np.minimum(E_HI, eb)
    below = E_LO < eb
    out[below] = prim(lo_part[below], g1) - prim(E_LO[below], g1)
    out[~below] = 0.0
    hi_start = np.maximum(E_LO, eb)
    above = E_HI > eb
    out[above] += eb ** (g2 - g1) * (prim(E_HI[above], g2) - prim(hi_start[above], g2))
    return out


def lorentz(line_e, width):
    """lorentz photons per bin for norm 1, XSPEC's current normalisation (∫_{E>0} = 1)."""
    s = float(width)
    bracket = np.arctan(2 * (E_HI - line_e) / s) - np.arctan(2 * (E_LO - line_e) / s)
    return 2.0 * bracket / (math.pi - 2.0 * math.atan(-2.0 * line_e / s))


def _born_gaunt(e, kt):
    x = e / (2.0 * kt)
    return math.sqrt(3.0) / math.pi * special.k0e(x)  # k0e = K0(x) e^x


#: Free-free photons per unit apec norm: 3.02e-15/1e-14 (bremss vs apec emission measure) times
#: the H+He+metal charge sum relative to H+He(0.085) at the preset abundance (1+4·0.0977+0.113·1.327)/1.34.
_FF_PER_APEC = 0.302 * (1.0 + 4 * 0.0977 + 0.113 * 1.32692) / (1.0 + 4 * 0.085)
#: (energy keV, sigma keV, flux as a fraction of the 3–5 keV continuum photon flux) of the apec_like lines.
APEC_LIKE_LINES = ((3.13, 0.01, 0.12), (3.32, 0.01, 0.03), (3.90, 0.01, 0.05), (6.70, 0.01, 0.01))


def soft_component(shape="apec_like", kt=1.14579):
    """The soft internal component, photons per bin per unit norm (see the module docstring)."""
    if shape not in SOFT_SHAPES:
        raise ValueError(f"soft shape must be one of {SOFT_SHAPES}, got {shape!r}")
    t = kt if shape == "standin_like" else 1.1 * kt
    scale = _FF_PER_APEC * (1.0 if shape == "standin_like" else 1.4)

    def dens(e):
        return scale * (1.0 + 4 * 0.085) * _born_gaunt(e, t) * np.exp(-e / t) / (e * math.sqrt(t))

    cont = _gl_integral(dens, E_LO, E_HI)
    if shape == "standin_like":
        return cont
    band = (E_LO >= 3.0) & (E_HI <= 5.0)
    ref = cont[band].sum()
    out = cont.copy()
    for e0, sig, frac in APEC_LIKE_LINES:
        cdf = special.ndtr((E_HI - e0) / sig) - special.ndtr((E_LO - e0) / sig)
        out += frac * ref * cdf
    return out


# --- Gaussian response -------------------------------------------------------------------------

_SUB = (np.arange(4) + 0.5) / 4.0  # sub-points inside a 0.04 keV bin


def band_probability(emin, emax):
    """Probability that a photon of each energy bin is detected in the channels of [emin, emax]."""
    lo, hi = band_channels(emin, emax)
    c_lo, c_hi = E_LO[lo], E_HI[hi]
    p = np.zeros(N_CHAN)
    for f in _SUB:
        e = E_LO + 0.04 * f
        sig = fwhm(e) / 2.3548200450309493
        p += special.ndtr((c_hi - e) / sig) - special.ndtr((c_lo - e) / sig)
    return p / _SUB.size


@cache
def gaussian_rmf_rows(nsig=6.0):
    """Rows of the Gaussian RMF: list of (first channel, probabilities) per energy bin."""
    rows = []
    for j in range(N_CHAN):
        e = E_LO[j] + 0.04 * _SUB
        sig = fwhm(e) / 2.3548200450309493
        c0 = max(0, int(math.floor((E_MID[j] - nsig * sig.max() - 1.6) / 0.04)))
        c1 = min(N_CHAN - 1, int(math.ceil((E_MID[j] + nsig * sig.max() - 1.6) / 0.04)))
        edges = 1.6 + 0.04 * np.arange(c0, c1 + 2)
        cdf = special.ndtr((edges[None, :] - e[:, None]) / sig[:, None]).mean(axis=0)
        rows.append((c0, np.diff(cdf)))
    return rows


# --- Galactic ridge (GRXE) stray light ------------------------------------------------------------

#: The GRXE spectrum of IDL source 6: a 6.7 keV line of zero width + the polarmodel table at 0.6 M☉.
GRXE_LINE_KEV = 6.7
GRXE_WDMASS = 0.6
#: IDL grxe2det: aperture-stop radius (mm).
STOP_RADIUS_MM = 29.0


def fpm_origin_det1(module):
    """DET1 (x, y), 0-based, of the FPM origin: the centre of IDL's ±35 mm detector grid.

    grxe2det samples −35 + 0.48384·k mm and congrid(/interp) ×4 puts output pixel i at
    −35 + 0.12096·i mm; projinitbgds shifts that image like the aperture template and crops at 108.
    """
    _, sx, sy = _aperture_params(module)
    i0 = 35.0 / DET1_MM
    return i0 + sx / DET1_MM - 108.0, i0 + sy / DET1_MM - 108.0


def stop_height_mm(module):
    """Aperture-stop height ``z`` (mm): π (29/z)² equals the template's largest open solid angle."""
    omega_max = math.radians(1.0) ** 2 * 3.1865e-5 * float(_template(module).max())  # sr
    return STOP_RADIUS_MM / math.sqrt(omega_max / math.pi)


def focal_length_mm():
    """Focal length (mm): one DET1 pixel subtends one sky pixel (§1.1)."""
    return DET1_MM / math.radians(PIXEL_DEG)


@cache
def polar_table(wdmass=GRXE_WDMASS):
    """The ``polarmodel.fits`` table at ``wdmass`` (linear in the grid), photons per simulator bin per unit norm.

    Each 0.1 keV table bin is spread uniformly over its width and summed into our 0.04 keV bins by overlap.
    """
    with fits.open(_aux("polarmodel.fits")) as h:
        grid = np.asarray(h["PARAMETERS"].data["VALUE"][0], float)[:int(h["PARAMETERS"].data["NUMBVALS"][0])]
        lo = np.asarray(h["ENERGIES"].data["ENERG_LO"], float)
        hi = np.asarray(h["ENERGIES"].data["ENERG_HI"], float)
        spectra = np.asarray(h["SPECTRA"].data["INTPSPEC"], float)
    k = int(np.searchsorted(grid, wdmass) - 1)
    t = (wdmass - grid[k]) / (grid[k + 1] - grid[k])
    flux = (1 - t) * spectra[k] + t * spectra[k + 1]
    out = np.zeros(N_CHAN)
    for a, b, f in zip(lo, hi, flux):
        overlap = np.clip(np.minimum(E_HI, b) - np.maximum(E_LO, a), 0.0, None)
        out += f * overlap / (b - a)
    return out


def grxe_line():
    """The 6.7 keV line of zero width: photons per bin per unit norm (all in the bin holding 6.7 keV)."""
    out = np.zeros(N_CHAN)
    out[int((GRXE_LINE_KEV - 1.6) // 0.04)] = 1.0
    return out


def write_grxe_sky_map(path, l0, b_scale=1.0, l_scale=30.0, pixel=0.2, half_width=(24.0, 12.0)):
    """A synthetic GRXE map in the IDL auxil layout (``modelrxte_*.fits``: primary image, GLON/GLAT CAR).

    Surface brightness ``exp(−|l|/l_scale) / (1 + (b/b_scale)²)`` (arbitrary units) on a grid of
    ``pixel`` degrees covering l0 ± half_width[0], |b| ≤ half_width[1].
    """
    nx = int(round(2 * half_width[0] / pixel)) + 1
    ny = int(round(2 * half_width[1] / pixel)) + 1
    h = fits.Header()
    h.update(CTYPE1="GLON-CAR", CTYPE2="GLAT-CAR", CRPIX1=(nx + 1) / 2, CRPIX2=(ny + 1) / 2, CRVAL1=float(l0),
             CRVAL2=0.0, CDELT1=-pixel, CDELT2=pixel, CUNIT1="deg", CUNIT2="deg", BUNIT="arbitrary")
    b = (np.arange(ny) - (ny - 1) / 2) * pixel
    lon = l0 - (np.arange(nx) - (nx - 1) / 2) * pixel
    lon = (lon + 180.0) % 360.0 - 180.0
    img = np.exp(-np.abs(lon)[None, :] / l_scale) / (1.0 + (b[:, None] / b_scale) ** 2)
    fits.PrimaryHDU(img.astype(np.float32), header=h).writeto(path)
    return Path(path)


def grxe_sky_map(path):
    """(image, astropy WCS) of a GRXE map file."""
    with fits.open(path) as h:
        return np.asarray(h[0].data, float), WCS(h[0].header, naxis=2)


def _polar_cells(n_r=16, n_phi=48):
    """Offsets (unit disc) of equal-area cells: rings of equal area, ``n_phi`` azimuths each."""
    r = np.sqrt((np.arange(n_r) + 0.5) / n_r)
    phi = (np.arange(n_phi) + 0.5) * 2 * math.pi / n_phi
    rr, pp = np.meshgrid(r, phi, indexing="ij")
    return np.column_stack([(rr * np.cos(pp)).ravel(), (rr * np.sin(pp)).ravel()])


def grxe_det1(module, sky_map, sky_wcs, px, py, pa, step=4, stop_height=None):
    """Mean GRXE brightness over the disc of sky each DET1 pixel sees through the stop, (360, 360).

    ``sky_wcs`` is the observation's sky-pixel WCS (1000×1000 grid, 0-based pixels); (px, py) the sky
    pixel of DET1 (350, 350). Sampled every ``step`` DET1 pixels (IDL: 4) and bilinear in between.
    ``stop_height`` (mm) replaces :func:`stop_height_mm` (a sensitivity test of that assumption).
    """
    z = float(stop_height) if stop_height is not None else stop_height_mm(module)
    image, map_wcs = sky_map
    u0, v0 = fpm_origin_det1(module)
    mag = focal_length_mm() / z
    radius = math.degrees(STOP_RADIUS_MM / z) / PIXEL_DEG  # sky pixels
    nodes = np.arange(0, 360 + step, step, dtype=float)
    vv, uu = np.meshgrid(nodes, nodes, indexing="ij")
    ox, oy = det1_to_sky(u0, v0, px, py, pa)
    sx, sy = det1_to_sky(uu, vv, px, py, pa)
    # Disc centre: the FPM origin's focused direction + (F/z) × the pixel's focused offset from it.
    cx, cy = ox + mag * (sx - ox), oy + mag * (sy - oy)
    cells = _polar_cells() * radius
    x = (cx[..., None] + cells[:, 0]).ravel()
    y = (cy[..., None] + cells[:, 1]).ravel()
    world = sky_wcs.pixel_to_world(x, y)
    c = world.transform_to(wcs_to_celestial_frame(map_wcs))
    mx, my = map_wcs.world_to_pixel(SkyCoord(c))
    vals = ndimage.map_coordinates(image, [np.ravel(my), np.ravel(mx)], order=1, mode="constant", cval=0.0)
    mean = vals.reshape(cx.shape + (len(cells),)).mean(axis=-1)
    fine = np.arange(360, dtype=float) / step
    fy, fx = np.meshgrid(fine, fine, indexing="ij")
    return ndimage.map_coordinates(mean, [fy, fx], order=1, mode="nearest")
