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
* the DET1 → sky mapping of §1.5 evaluated per event at the event's continuous aspect position.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from pathlib import Path

import numpy as np
from astropy.io import fits
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
    "fwhm",
    "gaussian_rmf_rows",
    "lorentz",
    "presets",
    "roll",
    "sky_to_det1",
    "soft_component",
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
def aperture_map(module):
    """Expected 10–15 keV aperture counts per DET1 pixel per 10⁵ s for the nominal CXB (§2.6 a)."""
    vals = []
    for line in _aux("nomapbgdparams.dat").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            vals.append(float(line))
    norm, sx, sy = (vals[0], vals[4], vals[5]) if module == "A" else (vals[1], vals[7], vals[8])
    with fits.open(_aux(f"det{module}_det1.img.gz")) as h:
        t = np.asarray(h[0].data, float)
    pix_mm = 0.12096
    # out[y, x] = T[y - dy, x - dx], bilinear, periodic.
    shifted = ndimage.shift(t, (sy / pix_mm, sx / pix_mm), order=1, mode="grid-wrap")
    ap = 3.1865e-5 * norm * pix_mm ** 2 * shifted + 0.00495 * 0.7
    return ap[108:468, 108:468]


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
