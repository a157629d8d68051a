"""Embedded nominal calibration: compact analytic stand-ins for the nuskybgd auxil files.

So that ``simulate``, the demo and the tests run with no calibration files at all, this module
rebuilds in memory approximations of the shipped auxil files (spec §5) from a small coefficient
table, ``nominal_coeffs.json`` (regenerated from the real files by
``benchmarks/fit_nominal_calibration.py``; none of the files is copied). With the real files
present the resolver uses them instead.

Models (coefficients in ``nominal_coeffs.json``):

* aperture map ``det{A,B}_det1.img`` (576×576): a polar expansion about a fitted centre,
  ``T = c0 + Σ_{k≤4} Σ_{n=1..4} r^n (a_kn cos kθ + b_kn sin kθ)`` (39 numbers per module), fitted
  to minimise the rms relative error over the region that lands on DET1 after the module's
  shift (spec §2.6a); clipped below at a positive floor elsewhere.
* ``detnum``/``pixmap``: per detector an affine map DET1 → continuous RAW coordinates (6 numbers)
  and the extent of the edge pixels beyond the 32×32 grid (4 numbers).
* ``be.arf``, ``fcxb{A,B}.arf``: knot tables (row index, value), PCHIP in (log E, log A); fcxb
  is zero above the last non-zero row (89.58 keV).
* ``rmf``: Gaussian core with FWHM(E) = sqrt(a² + b E + c E²), Cd/Te K escape peaks
  (23.17, 26.10, 27.47, 31.00 keV below E), an exponential shoulder (scale 2 keV, 1–10 keV below
  E) and a flat continuum below E − 10 keV; row sums and component fractions are knot tables.
  Fitted to ``nuAdet3_20100101v002.rmf`` (used for both modules and all detectors).
* ``ratios.json`` and ``nomapbgdparams.dat``: the published presets (spec §3.1, App. A, §2.6a),
  reproduced exactly.

Measured accuracy (``benchmarks/fit_nominal_calibration.py``, test
``tests/engine/test_nominal_calibration.py``), against the real files:

* aperture map, rms relative error over the shifted DET1 crop: A 0.75 %, B 1.10 %
  (max 13 % / 13 %, only next to the minimum of the map).
* detnum: same label on 99.61 % (A) / 99.46 % (B) of the DET1 pixels; per-detector pixel
  counts within 0.25 % (A) / 0.59 % (B). pixmap: same RAW pixel on 87.3 % / 88.5 % of the
  pixels labelled alike (RAW pixels are 5×5 DET1 pixels: misplacing a boundary by one DET1 pixel
  costs 20 %); within one RAW pixel (|ΔRAWX|, |ΔRAWY| ≤ 1) on 99.98 % / 99.99 %.
* ARFs, max relative error over 3–80 keV rows whose value exceeds 1 % of the peak:
  be 1.29 %, fcxbA 1.47 %, fcxbB 1.48 % (9, 43, 42 knots; ≤ 5 % outside that band).
* RMF: FWHM at 6, 20, 60 keV: −2.7 %, −0.3 %, +2.7 % of the real rows; counts of a Γ = 1.3
  power law (no ARF) folded through it: +1.1 % in 3–20 keV, +0.9 % in 20–50 keV. Builds in
  0.15–0.4 s (7.0 M non-zeros, most of them the flat continuum).

The exact numbers of the current table are printed by the fitting script and the test.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from scipy import sparse

from ..constants import CHANNEL_DE, N_CHANNELS, channel_edges
from ..errors import BadConfigError, BadFileError
from .resolver import AUXIL_FILES, register_nominal

__all__ = [
    "COEFF_PATH",
    "NOMINAL_PROVIDERS",
    "aperture_det1img",
    "detnum",
    "pixmap",
    "arf",
    "diag_rmf",
    "rmf",
    "ratios",
    "nomapbgdparams",
    "eval_aperture",
    "eval_detector_layout",
    "eval_knots",
    "rmf_from_params",
]

COEFF_PATH = Path(__file__).with_name("nominal_coeffs.json")

#: Escape-peak offsets below the photon energy (keV): Cd Kα, Cd Kβ, Te Kα, Te Kβ.
ESCAPE_LINES = (23.17, 26.10, 27.47, 31.00)
#: K edges (keV) above which each escape peak exists (Cd, Cd, Te, Te).
ESCAPE_EDGES = (26.71, 26.71, 31.81, 31.81)
#: Channel half-widths of the Gaussian kernels, shoulder window and its e-folding scale.
CORE_HALF = 25
SHOULDER_LO, SHOULDER_HI = 25, 250  # channels below the row's channel
SHOULDER_SCALE_KEV = 2.0
ARF_NAMES = ("be.arf", "fcxbA.arf", "fcxbB.arf")


@functools.lru_cache(maxsize=1)
def _coeffs():
    try:
        with open(COEFF_PATH, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise BadFileError(f"cannot read the nominal calibration table: {exc}", path=COEFF_PATH) from None


def _module(module):
    m = str(module).strip().upper()
    if m in ("FPMA", "FPMB"):
        m = m[-1]
    if m not in ("A", "B"):
        raise BadConfigError(f"module must be 'A' or 'B', got {module!r}", field="module")
    return m


def energy_grid():
    """ENERG_LO, ENERG_HI (keV) of the standard 4096-row NuSTAR grid."""
    edges = channel_edges()
    return edges[:-1].copy(), edges[1:].copy()


# ------------------------------------------------------------------------------------------
# Aperture map
# ------------------------------------------------------------------------------------------

def _polar_basis(x, y, xc, yc, kmax, nmax):
    r = np.hypot(x - xc, y - yc) / 576.0
    th = np.arctan2(y - yc, x - xc)
    rn = [r ** (n + 1) for n in range(nmax)]
    cols = []
    for k in range(kmax + 1):
        for f in ((np.cos,) if k == 0 else (np.cos, np.sin)):
            ang = f(k * th)
            cols.extend(ang * p for p in rn)
    cols.append(np.ones_like(r))
    return np.stack(cols, axis=-1)


def eval_aperture(params, x, y):
    """Evaluate the polar aperture model at pixel positions (x, y) (0-based array indices)."""
    basis = _polar_basis(np.asarray(x, float), np.asarray(y, float), params["xc"], params["yc"],
                         params["kmax"], params["nmax"])
    return basis @ np.asarray(params["coef"], float)


def aperture_det1img(module):
    """Approximation of ``det{A,B}_det1.img``: float32 (576, 576), > 0."""
    p = _coeffs()["aperture"][_module(module)]
    yy, xx = np.mgrid[0:576, 0:576]
    out = eval_aperture(p, xx.ravel(), yy.ravel()).reshape(576, 576)
    return np.maximum(out, p["floor"]).astype(np.float32)


# ------------------------------------------------------------------------------------------
# Detector layout
# ------------------------------------------------------------------------------------------

def eval_detector_layout(dets):
    """Detector number and RAW index maps (int16, 360×360, −1 off-detector) from per-detector
    affine DET1 → RAW maps and edge extents (list of 4 dicts with ``ax``, ``ay``, ``margin``)."""
    jj, ii = np.mgrid[0:360, 0:360]
    num = np.full((360, 360), -1, np.int16)
    raw = np.full((360, 360), -1, np.int16)
    for n, d in enumerate(dets):
        ax, ay, mg = d["ax"], d["ay"], d["margin"]
        u = ax[0] * ii + ax[1] * jj + ax[2]
        v = ay[0] * ii + ay[1] * jj + ay[2]
        inside = (u >= -mg[0]) & (u < 32 + mg[1]) & (v >= -mg[2]) & (v < 32 + mg[3]) & (num < 0)
        rx = np.clip(np.floor(u), 0, 31).astype(np.int16)
        ry = np.clip(np.floor(v), 0, 31).astype(np.int16)
        num[inside] = n
        raw[inside] = (rx + 32 * ry)[inside]
    return num, raw


@functools.lru_cache(maxsize=2)
def _layout(module):
    return eval_detector_layout(_coeffs()["detectors"][module])


def detnum(module):
    """Approximation of ``detnum{A,B}.fits``: int16 (360, 360), detector 0..3 or −1."""
    return _layout(_module(module))[0].copy()


def pixmap(module):
    """Approximation of ``pixmap{A,B}.fits``: int16 (360, 360), RAWX + 32·RAWY or −1."""
    return _layout(_module(module))[1].copy()


# ------------------------------------------------------------------------------------------
# ARFs
# ------------------------------------------------------------------------------------------

def eval_knots(rows, values, nrows):
    """PCHIP in (log E, log value) through knot rows of the standard grid; rows ``0..nrows-1``."""
    from scipy.interpolate import PchipInterpolator  # lazy: 0.25 s that most steps never need

    lo, hi = energy_grid()
    le = np.log(0.5 * (lo + hi))
    rows = np.asarray(rows, int)
    f = PchipInterpolator(le[rows], np.log(np.asarray(values, float)), extrapolate=True)
    return np.exp(f(le[:nrows]))


def arf(name):
    """Approximation of ``be.arf``, ``fcxbA.arf`` or ``fcxbB.arf`` on the standard grid.

    Returns
    -------
    energ_lo, energ_hi, specresp : ndarray (4096,)
        keV, keV, cm² (be.arf: transmission, unit area).
    """
    if name not in ARF_NAMES:
        raise BadConfigError(f"no nominal ARF named {name!r} (have {', '.join(ARF_NAMES)})", field="arf")
    t = _coeffs()["arf"][name]
    lo, hi = energy_grid()
    out = np.zeros(N_CHANNELS)
    out[: t["nrows"]] = eval_knots(t["rows"], t["values"], t["nrows"])
    return lo, hi, out


# ------------------------------------------------------------------------------------------
# Responses
# ------------------------------------------------------------------------------------------

def diag_rmf():
    """The identity response of ``diag.rmf`` (exact).

    Returns
    -------
    energ_lo, energ_hi, e_min, e_max : ndarray (4096,)
    matrix : scipy.sparse.csr_matrix (4096, 4096), rows = energies, columns = channels.
    """
    lo, hi = energy_grid()
    return lo, hi, lo.copy(), hi.copy(), sparse.identity(N_CHANNELS, format="csr", dtype=np.float64)


def _lin(knots_e, values, e):
    return np.interp(e, np.asarray(knots_e, float), np.asarray(values, float))


def _gauss_block(centre_ch, sigma_ch, half, ncols):
    """Channel-integrated unit Gaussians, one per row: (rows, cols, vals) for csr assembly."""
    from scipy.special import erf  # lazy: start-up time

    nrow = centre_ch.size
    base = np.rint(centre_ch).astype(int)
    cols = base[:, None] + np.arange(-half, half + 1)[None, :]
    lo = (cols - centre_ch[:, None]) / (np.sqrt(2) * sigma_ch[:, None])
    hi = (cols + 1 - centre_ch[:, None]) / (np.sqrt(2) * sigma_ch[:, None])
    vals = 0.5 * (erf(hi) - erf(lo))
    vals /= vals.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(nrow), 2 * half + 1).reshape(nrow, -1)
    ok = (cols >= 0) & (cols < ncols)
    return rows[ok], cols[ok], vals[ok]


def rmf_from_params(p):
    """Build the nominal RMF matrix (csr, 4096×4096) from its parameter dict (see :func:`rmf`)."""
    n = N_CHANNELS
    lo, hi = energy_grid()
    e = 0.5 * (lo + hi)
    idx = np.arange(n)
    a, b, c = p["fwhm"]
    sigma_ch = np.sqrt(np.maximum(a * a + b * e + c * e * e, 1e-6)) / 2.3548200450309493 / CHANNEL_DE
    kn = p["knots_e"]
    # The real RMF's row sums reach 1.01 near 60 keV (calibration noise); a response keeps them <= 1.
    total = np.clip(_lin(p["rowsum_e"], p["rowsum"], e), 0.0, 1.0)
    total[e > p["rowsum_e"][-1]] = 0.0
    fesc = [np.where(e > edge, np.maximum(_lin(kn, p["escape"][k], e), 0.0), 0.0)
            for k, edge in enumerate(ESCAPE_EDGES)]
    fsh = np.maximum(_lin(kn, p["shoulder"], e), 0.0)
    fco = np.maximum(_lin(kn, p["continuum"], e), 0.0)
    fco[idx < SHOULDER_HI + 1] = 0.0
    fcore = 1.0 - fsh - fco - sum(fesc)
    parts_r, parts_c, parts_v = [], [], []

    def add(r, cidx, v, weight):
        parts_r.append(r)
        parts_c.append(cidx)
        parts_v.append(v * weight[r])

    # Channel c spans [c, c+1) in channel units; row i's photons sit at its centre i + 0.5.
    r_, c_, v_ = _gauss_block(idx + 0.5, sigma_ch, CORE_HALF, n)
    add(r_, c_, v_, total * fcore)
    for k, line in enumerate(ESCAPE_LINES):
        rows = np.nonzero(fesc[k] > 0)[0]
        if rows.size == 0:
            continue
        cen = rows + 0.5 - line / CHANNEL_DE
        r_, c_, v_ = _gauss_block(cen, sigma_ch[rows], 10, n)
        add(rows[r_], c_, v_, total * fesc[k])
    # Shoulder: exponential rising toward the peak, channels i-250 .. i-26.
    off = np.arange(SHOULDER_LO + 1, SHOULDER_HI + 1)
    shape = np.exp(-off * CHANNEL_DE / SHOULDER_SCALE_KEV)
    rows = np.repeat(idx, off.size)
    cols = (idx[:, None] - off[None, :]).ravel()
    w = np.tile(shape, n)
    ok = cols >= 0
    norm = np.bincount(rows[ok], weights=w[ok], minlength=n)
    add(rows[ok], cols[ok], w[ok] / np.maximum(norm[rows[ok]], 1e-300), total * fsh)
    # Flat continuum over channels 0 .. i-251: built directly in csr form (it holds most entries).
    width = np.where(fco * total > 0, idx - SHOULDER_HI, 0)
    indptr = np.r_[0, np.cumsum(width)]
    cols = np.arange(indptr[-1]) - np.repeat(indptr[:-1], width)
    vals = np.repeat(total * fco / np.maximum(width, 1), width)
    flat = sparse.csr_matrix((vals, cols, indptr), shape=(n, n))
    r_all = np.concatenate(parts_r)
    c_all = np.concatenate(parts_c)
    v_all = np.concatenate(parts_v)
    m = sparse.csr_matrix((v_all, (r_all, c_all)), shape=(n, n)) + flat
    return m


def rmf(module="A"):
    """Nominal NuSTAR RMF (Gaussian core, escape peaks, low-energy tail).

    Parameters
    ----------
    module : {'A', 'B'}
        Accepted for symmetry; both modules use the fit to ``nuAdet3_20100101v002.rmf``.

    Returns
    -------
    energ_lo, energ_hi, e_min, e_max : ndarray (4096,)
    matrix : scipy.sparse.csr_matrix (4096, 4096), row sums = the real RMF's, clipped to ≤ 1.
    """
    _module(module)
    lo, hi = energy_grid()
    return lo, hi, lo.copy(), hi.copy(), rmf_from_params(_coeffs()["rmf"])


# ------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------

def ratios():
    """The presets of ``ratios.json`` (spec §3.1, Appendix A), same structure as the file."""
    t = _coeffs()["ratios"]
    models = []
    cut = t["apbgd_cutoffpl"]
    models.append({"name": "2:apbgd", "formula": "cutoffpl",
                   "components": {"cutoffpl": {m: dict(cut) for m in "AB"}}})
    comps = {}
    ap = t["apec"]
    comps["apec"] = {m: {"kt": ap["kt"], "abundanc": ap["abundanc"], "redshift": ap["redshift"],
                         "ifactors": list(ap["ifactors"][m])} for m in "AB"}
    for name, linee, width, ifa, ifb in t["lines"]:
        comps[name] = {m: {"linee": linee, "width": width, "ifactors": list(v)} for m, v in (("A", ifa), ("B", ifb))}
    formula = "{apec}+" + "+".join(f"{{l{k}}}" for k in range(1, len(t["lines"]) + 1))
    models.append({"name": "3:intbgd", "formula": formula, "components": comps})
    models.append({"name": "4:fcxb", "formula": "{cutoffpl}",
                   "components": {"cutoffpl": {m: {"name": "cutoffpl", "phoindex": "=apbgd:1",
                                                   "highecut": "=apbgd:2"} for m in "AB"}}})
    bk = t["intn_bknpower"]
    models.append({"name": "5:intn", "formula": "{bknpower}",
                   "components": {"bknpower": {m: {"phoindx1": bk["phoindx1"], "breake": bk["breake"],
                                                   "phoindx2": bk["phoindx2"], "ifactors": list(bk["ifactors"][m])}
                                               for m in "AB"}}})
    out = dict(t["header"])
    out["models"] = models
    return out


def nomapbgdparams():
    """The 10 numbers of ``nomapbgdparams.dat`` (spec §2.6a), as a float64 array."""
    return np.array(_coeffs()["nomapbgdparams"], dtype=float)


#: auxil file name -> loader returning the in-memory equivalent (wired by the resolver).
NOMINAL_PROVIDERS = {
    "detA_det1.img": functools.partial(aperture_det1img, "A"),
    "detB_det1.img": functools.partial(aperture_det1img, "B"),
    "detA_det1.img.gz": functools.partial(aperture_det1img, "A"),
    "detB_det1.img.gz": functools.partial(aperture_det1img, "B"),
    "detnumA.fits": functools.partial(detnum, "A"),
    "detnumB.fits": functools.partial(detnum, "B"),
    "pixmapA.fits": functools.partial(pixmap, "A"),
    "pixmapB.fits": functools.partial(pixmap, "B"),
    "be.arf": functools.partial(arf, "be.arf"),
    "fcxbA.arf": functools.partial(arf, "fcxbA.arf"),
    "fcxbB.arf": functools.partial(arf, "fcxbB.arf"),
    "diag.rmf": diag_rmf,
    "ratios.json": ratios,
    "nomapbgdparams.dat": nomapbgdparams,
}


def _register_with_resolver():
    """Tell the resolver which auxil names the nominal calibration serves (run at import)."""
    for name in NOMINAL_PROVIDERS:
        if name in AUXIL_FILES:
            register_nominal(name)


_register_with_resolver()
