"""XSPEC-compatible spectral model components (spec §3.3, §3.6).

Every component reproduces what the XSPEC model library computes, bin by bin, so that a
model fitted here and exported to an ``.xcm`` file gives the same numbers in XSPEC:

* additive components return, per energy bin ``[E_j, E_j+1]``, the **integral** of the photon
  spectrum over the bin (photons cm⁻² s⁻¹), already multiplied by ``norm`` (their last
  parameter), exactly like XSPEC's ``model`` arrays;
* multiplicative components return the dimensionless per-bin factor XSPEC multiplies into
  the additive bin integrals (``highecut``: the mean of the factor at the two bin edges).

The formulas were checked against the compiled XSPEC 12.15.0 model library (HEASoft 6.35.1,
as shipped by the ``xspectrampoline`` test extra) to ≤ 1e-6 relative on the NuSTAR grid
(``tests/engine/test_components.py``); ``xspectrampoline`` is GPL and is *never* imported here. Where
XSPEC uses an approximation, the same approximation is implemented, not the exact physics:

``cutoffpl``
    Closed form ``K·E_c^(1−Γ)·[Γ(1−Γ, E_j/E_c) − Γ(1−Γ, E_j+1/E_c)]`` with the upper
    incomplete gamma function (downward recurrence in ``a`` for ``a = 1−Γ ≤ 0``), exact (to
    ~1e-13) for any bin width. XSPEC uses the same closed form through GSL's
    ``gsl_sf_gamma_inc``, whose series branch (x = E/E_c < 0.25, |1−Γ| < 0.5) is less
    accurate: ~1e-8 relative on 0.04 keV bins, 1.3e-6 in the one bin straddling x = 0.25
    (GSL switches method there), up to 1e-5 on wide bins at x ≲ 0.01. These are XSPEC's
    errors, not ours (the tests check both against XSPEC and against adaptive quadrature).
``powerlaw``, ``bknpower``
    Analytic bin integrals (``expm1`` form, so Γ → 1 is continuous), ``bknpower`` split at
    ``BreakE``. For 0 < |Γ−1| < 1e-6 XSPEC's ``(E2^a − E1^a)/a`` loses digits to
    cancellation (differences up to 1e-5 at |Γ−1| = 1e-8); ours does not.
``lorentz``, ``gaussian``
    XSPEC's line algorithm: analytic line fractions between edges, walked outwards from the
    bin containing the centre and truncated once the flux left in the grid is below the
    critical level (1e-6 for lorentz, 1e-8 for gaussian), the remainder going into the last
    bin computed. ``lorentz`` uses the current XSPEC normalisation (integral over E > 0 is
    ``norm``); ``lorentz_old`` is the older ``K/π·[arctan …]`` form (not reproducible in a
    current XSPEC, so only for comparisons). ``gaussian`` is likewise renormalised by XSPEC
    12.15 to the flux at E > 0 (visible only for E_L ≲ 6σ). A zero width puts all flux in
    the bin with ``E_lo < E_L ≤ E_hi``.
``bremss``
    XSPEC's ``bremss`` (He/H = 0.085, Kellogg, Baldwin & Koch 1975 Gaunt factor with the
    Molnar/Hughes polynomial fixes and Kurucz's low-temperature table, trapezoid rule over
    each bin, zero above 50 kT). XSPEC evaluates this single-precision Fortran model with the
    bin edges rounded to float32, which moves the bin widths by up to 4e-4 relative at
    165 keV; this is emulated so the numbers agree.
``highecut`` (multiplicative)
    ``M(E) = exp(−max(E − cutoffE, 0.001)/foldE)``, averaged over the two bin edges (float32
    edges, as XSPEC does).
``apec``
    Needs AtomDB. :class:`ApecShape` evaluates it with PyXspec when available; otherwise it
    uses the documented ``bremss`` stand-in :data:`APEC_STANDIN` and says so
    (``evaluated_by == 'standin'``).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..catalogue import APEC_PARAMETERS, XSPEC_MODEL_PARAMETERS, ParamSpec
from ..errors import BadConfigError, NuSkyBgdError

__all__ = [
    "ParamSpec",
    "ComponentSpec",
    "COMPONENTS",
    "get_component",
    "evaluate",
    "unit_shape",
    "validate_edges",
    "APEC_STANDIN",
    "APEC_DEFAULTS",
    "param_specs",
    "ApecShape",
    "XSPEC_REFERENCE_VERSION",
]

#: XSPEC version whose model library the formulas were verified against (by the tests).
XSPEC_REFERENCE_VERSION = "12.15.0 (HEASoft 6.35.1)"

#: Critical levels of XSPEC's line algorithm (fraction of the line left in the grid).
_LORENTZ_CRIT = 1.0e-6
_GAUSS_CRIT = 1.0e-8


# ---------------------------------------------------------------------------------------------
# Registry types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentSpec:
    """An XSPEC model component.

    Attributes
    ----------
    name : str
        Registry key (``lorentz_old`` for the old lorentz normalisation).
    xspec_name : str
        Name to write in an ``.xcm`` expression.
    kind : {'add', 'mul'}
        Additive (bin integrals, last parameter ``norm``) or multiplicative (factors).
    parameters : tuple of ParamSpec
        All parameters in XSPEC order, ``norm`` last for additive components.
    function : callable
        ``function(edges, *shape_params) -> ndarray (n_bins,)``; for additive components the
        spectrum for ``norm = 1``.
    note : str
        Anything a user must know (approximations, version dependence).
    """

    name: str
    xspec_name: str
    kind: str
    parameters: tuple
    function: Callable = field(repr=False)
    note: str = ""

    @property
    def param_names(self):
        return tuple(p.name for p in self.parameters)

    @property
    def n_params(self):
        return len(self.parameters)

    def evaluate(self, energy_edges, *params):
        """Bin-integrated spectrum (additive, times ``norm``) or per-bin factor (mul).

        Parameters
        ----------
        energy_edges : array_like, shape (n_bins + 1,)
            Increasing bin edges in keV (≥ 0).
        *params : float
            All parameters in XSPEC order (``norm`` last for additive components).

        Returns
        -------
        ndarray, shape (n_bins,)
        """
        edges = validate_edges(energy_edges)
        values = self._check_params(params)
        if self.kind == "add":
            return _shape_cached(self, edges, values[:-1]) * values[-1]
        return _shape_cached(self, edges, values).copy()

    def _check_params(self, params):
        if len(params) != self.n_params:
            raise BadConfigError(
                f"{self.name} takes {self.n_params} parameters ({', '.join(self.param_names)}), "
                f"got {len(params)}", field=self.name)
        out = []
        for spec, value in zip(self.parameters, params):
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise BadConfigError(f"parameter must be a number, got {value!r}",
                                     field=f"{self.name}.{spec.name}") from None
            if not math.isfinite(v):
                raise BadConfigError(f"parameter must be finite, got {v}",
                                     field=f"{self.name}.{spec.name}")
            if v < spec.hard_min or v > spec.hard_max:
                raise BadConfigError(
                    f"value {v} outside XSPEC's hard limits [{spec.hard_min}, {spec.hard_max}]",
                    field=f"{self.name}.{spec.name}")
            out.append(v)
        return tuple(out)


def validate_edges(energy_edges):
    """Check a bin-edge array and return it as a float64 ndarray.

    Raises
    ------
    BadConfigError
        Not 1-D with ≥ 2 finite, non-negative, strictly increasing values.
    """
    try:
        edges = np.asarray(energy_edges, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadConfigError("energy edges must be numbers", field="energy_edges") from None
    if edges.ndim != 1 or edges.size < 2:
        raise BadConfigError(f"energy edges must be a 1-D array of at least 2 values, got shape "
                             f"{edges.shape}", field="energy_edges")
    if not np.all(np.isfinite(edges)):
        raise BadConfigError("energy edges must be finite", field="energy_edges")
    if edges[0] < 0:
        raise BadConfigError(f"energy edges must be >= 0 keV, got {edges[0]}",
                             field="energy_edges")
    if not np.all(np.diff(edges) > 0):
        raise BadConfigError("energy edges must be strictly increasing", field="energy_edges")
    return edges


# ---------------------------------------------------------------------------------------------
# Shape cache: the fit engine folds each fixed shape once per spectrum
# ---------------------------------------------------------------------------------------------


class _EdgesKey:
    """Hashable wrapper of an edge array (by content), for the LRU cache."""

    __slots__ = ("edges", "_hash", "_digest")

    def __init__(self, edges):
        self.edges = edges.copy()  # the caller may modify its array later
        self._digest = hashlib.blake2b(edges.tobytes(), digest_size=16).digest()
        self._hash = hash(self._digest)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return isinstance(other, _EdgesKey) and self._digest == other._digest


@functools.lru_cache(maxsize=256)
def _shape_lru(spec, key, shape_params):
    out = np.ascontiguousarray(spec.function(key.edges, *shape_params), dtype=np.float64)
    out.setflags(write=False)
    return out


def _shape_cached(spec, edges, shape_params):
    return _shape_lru(spec, _EdgesKey(edges), tuple(shape_params))


def unit_shape(name, energy_edges, shape_params):
    """Read-only, cached spectrum of an additive component for ``norm = 1``.

    Additive components are linear in their norm, so a fit with frozen shape parameters
    folds this array through the response once and scales it.

    Parameters
    ----------
    name : str
        Registry name.
    energy_edges : array_like
        Bin edges (keV).
    shape_params : sequence of float
        Parameters without the norm.
    """
    spec = get_component(name)
    if spec.kind != "add":
        raise BadConfigError(f"{name} is multiplicative: it has no unit shape", field=name)
    values = spec._check_params(tuple(shape_params) + (1.0,))
    return _shape_cached(spec, validate_edges(energy_edges), values[:-1])


def get_component(name):
    """The :class:`ComponentSpec` registered as ``name`` (``BadConfigError`` if unknown)."""
    try:
        return COMPONENTS[name]
    except (KeyError, TypeError):
        raise BadConfigError(
            f"unknown model component {name!r}; known: {', '.join(sorted(COMPONENTS))}",
            field="component") from None


def evaluate(name, energy_edges, params):
    """Evaluate a registered component on bin edges.

    Parameters
    ----------
    name : str
        Registry name (``cutoffpl``, ``powerlaw``, ``bknpower``, ``lorentz``,
        ``lorentz_old``, ``gaussian``, ``bremss``, ``highecut``).
    energy_edges : array_like, shape (n_bins + 1,)
        Bin edges in keV.
    params : sequence of float
        All parameters in XSPEC order (``norm`` last for additive components).

    Returns
    -------
    ndarray, shape (n_bins,)
        Photons cm⁻² s⁻¹ per bin (additive) or the per-bin factor (multiplicative).
    """
    return get_component(name).evaluate(energy_edges, *params)


# ---------------------------------------------------------------------------------------------
# Continuum formulas (norm = 1)
# ---------------------------------------------------------------------------------------------


def _powerlaw_integral(lo, hi, index):
    """∫_lo^hi E^-index dE, stable for index → 1 (expm1 form)."""
    a = 1.0 - index
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if a == 0.0:
            return np.log(hi / lo)
        if np.all(lo > 0):
            return lo ** a * np.expm1(a * np.log(hi / lo)) / a
        return (hi ** a - lo ** a) / a


def _powerlaw(edges, index):
    return _powerlaw_integral(edges[:-1], edges[1:], index)


def _bknpower(edges, index1, ebreak, index2):
    lo, hi = edges[:-1], edges[1:]
    out = np.empty(lo.size)
    below = hi <= ebreak
    above = lo >= ebreak
    split = ~(below | above)
    scale = ebreak ** (index2 - index1)  # continuity at the break
    out[below] = _powerlaw_integral(lo[below], hi[below], index1)
    out[above] = scale * _powerlaw_integral(lo[above], hi[above], index2)
    if np.any(split):
        out[split] = (_powerlaw_integral(lo[split], np.full(split.sum(), ebreak), index1)
                      + scale * _powerlaw_integral(np.full(split.sum(), ebreak), hi[split], index2))
    return out


def _upper_gamma(a, x):
    """Unregularised upper incomplete gamma Γ(a, x) for real ``a`` and ``x > 0``.

    scipy's ``gammaincc`` needs ``a > 0``; for ``a ≤ 0`` start from ``a + n ∈ [0, 1)``
    (``E1`` at 0) and recur downwards with Γ(s−1, x) = (Γ(s, x) − x^(s−1) e^(−x)) / (s−1).
    """
    from scipy import special  # lazy: scipy.special costs ~0.2 s of every step's start-up

    x = np.asarray(x, dtype=np.float64)
    if a > 0:
        return special.gammaincc(a, x) * special.gamma(a)
    n = int(math.ceil(-a))
    s = a + n  # in [0, 1)
    if s >= 1.0:  # rounding of a + n for a within 1 ulp of an integer
        s, n = s - 1.0, n - 1
    g = special.gammaincc(s, x) * special.gamma(s) if s > 0 else special.exp1(x)
    ex = np.exp(-x)
    for _ in range(n):
        s -= 1.0
        g = (g - x ** s * ex) / s
    return g


def _cutoffpl(edges, index, cutoff):
    if cutoff <= 0.0:  # XSPEC: no cutoff applied
        return _powerlaw(edges, index)
    out = np.zeros(edges.size - 1)
    first = int(np.searchsorted(edges, 0.0, side="right"))  # first edge > 0
    if first >= edges.size:
        return out
    a = 1.0 - index
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        g = _upper_gamma(a, edges[first:] / cutoff)
        out[first:] = cutoff ** a * (g[:-1] - g[1:])
    return out


# --- bremss: Kellogg, Baldwin & Koch (1975) Gaunt factor as in XSPEC's bremss ---------------

# Polynomial-correction coefficients A[k][m][n] (k: constant/linear/quadratic in u; m: 7
# columns in gamma^2; n: 6 rows in u) of KBK (1975) Table 1 with the Molnar & Hughes fixes.
_KBK_A = np.array([
    [1.001, 1.004, 1.017, 1.036, 1.056, 1.121, 1.001, 1.005, 1.017, 1.046, 1.073, 1.115,
     .9991, 1.005, 1.03, 1.055, 1.102, 1.176, .997, 1.005, 1.035, 1.069, 1.134, 1.186,
     .9962, 1.004, 1.042, 1.1, 1.193, 1.306, .9874, .9962, 1.047, 1.156, 1.327, 1.485,
     .9681, .9755, 1.020, 1.208, 1.525, 1.965],
    [.3029, .1616, .04757, .013, .0049, -.0032, .4905, .2155, .08357, .02041, .00739, .00029,
     .654, .2833, .08057, .03257, .00759, -.00151, 1.029, .391, .1266, .05149, .01274, .00324,
     .9569, .4891, .1764, .05914, .01407, -.00024, 1.236, .7579, .326, .1077, .028, .00548,
     1.327, 1.017, .6017, .205, .0605, .00187],
    [-1.323, -.254, -.01571, -.001, -.000184, .00008, -4.762, -.3386, -.03571, -.001786,
     -.0003, .00001, -6.349, -.4206, -.02571, -.003429, -.000234, .00005, -13.231, -.59,
     -.04571, -.005714, -.000445, -.00004, -7.672, -.6852, -.0643, -.005857, -.00042, .00004,
     -7.143, -.9947, -.12, -.01007, -.000851, -.00004, -3.175, -1.116, -.2270, -.01821,
     -.001729, .00023],
]).reshape(3, 7, 6)  # [k, m, n]
_KBK_GAM_LO = np.array([1., 1.7783, 3., 5.6234, 10., 30.])
_KBK_GAM_WIDTH = np.array([.7783, 1.2217, 2.6234, 4.3766, 20., 70.])
_KBK_U_EDGES = np.array([0.03, 0.30, 1.0, 5.0, 15.0])
_KBK_GAM_EDGES = np.array([1.773, 3.0, 5.6234, 10.0, 30.0])

# Kurucz's low-temperature Gaunt table (log10 gamma^2 in 7 steps of 0.5 from -1, log10 u in
# 12 steps of 0.5 from -4), stored [k_u, j_gamma].
_KURUCZ = np.array([
    5.40, 5.25, 5.00, 4.69, 4.48, 4.16, 3.85, 4.77, 4.63, 4.40, 4.13, 3.87, 3.52, 3.27,
    4.15, 4.02, 3.80, 3.57, 3.27, 2.98, 2.70, 3.54, 3.41, 3.22, 2.97, 2.70, 2.45, 2.20,
    2.94, 2.81, 2.65, 2.44, 2.21, 2.01, 1.81, 2.41, 2.32, 2.19, 2.02, 1.84, 1.67, 1.50,
    1.95, 1.90, 1.80, 1.68, 1.52, 1.41, 1.30, 1.55, 1.56, 1.51, 1.42, 1.33, 1.25, 1.17,
    1.17, 1.30, 1.32, 1.30, 1.20, 1.15, 1.11, 0.86, 1.00, 1.15, 1.18, 1.15, 1.11, 1.08,
    0.59, 0.76, 0.97, 1.09, 1.13, 1.10, 1.08, 0.38, 0.53, 0.76, 0.96, 1.08, 1.09, 1.09,
]).reshape(12, 7)


def _kurucz_gaunt(u, gam):
    """Bilinear interpolation in Kurucz's table (log10 u, log10 gamma^2); 0 off the table."""
    lg = math.log10(gam)
    j = int(2.0 * lg + 3.0)  # Fortran INT: truncation
    with np.errstate(divide="ignore"):
        lu = np.log10(u)
    k = np.maximum(np.trunc(2.0 * lu + 9.0), 1.0)
    if j >= 7 or j < 1:
        return np.zeros_like(u)
    t = (lg - (j - 3.0) / 2.0) / 0.5
    w = (lu - (k - 9.0) / 2.0) / 0.5
    ok = k < 12
    ki = np.where(ok, k, 1).astype(int) - 1
    ya = _KURUCZ
    jj = j - 1
    g = ((1 - t) * (1 - w) * ya[ki, jj] + t * (1 - w) * ya[ki, jj + 1]
         + t * w * ya[np.minimum(ki + 1, 11), jj + 1] + (1 - t) * w * ya[np.minimum(ki + 1, 11), jj])
    return np.where(ok, g, 0.0)


def _born_gaunt(u):
    """0.5513·e^(u/2)·K0(u/2) with the Abramowitz & Stegun 9.8.1/9.8.5/9.8.6 polynomials."""
    x = 0.5 * u
    half = 0.5 * x  # x/2
    out = np.empty_like(u)
    small = half <= 1.0
    xs, hs = x[small], half[small]
    t2 = (xs / 3.75) ** 2
    i0 = 1.0 + t2 * (3.5156229 + t2 * (3.089942 + t2 * (1.2067492 + t2 * (
        .2659732 + t2 * (.0360768 + t2 * .0045813)))))
    h2 = hs * hs
    k0 = -np.log(hs) * i0 - .57721566 + h2 * (.4227842 + h2 * (.23069756 + h2 * (
        .0348859 + h2 * (.00262698 + h2 * (.0001075 + h2 * .0000074)))))
    out[small] = .5513 * np.exp(xs) * k0
    xl = x[~small]
    r = -1.0 / half[~small]
    k0e = 1.25331414 + r * (.07832358 + r * (.02189568 + r * (.01062446 + r * (
        .00587872 + r * (.0025154 + r * .00053208)))))
    out[~small] = .5513 * k0e / np.sqrt(xl)
    return out


def _gaunt(energy, kt, z):
    """XSPEC's ``gaunt(E, T, Z)`` (KBK 1975 + fixes) for energies ``0 < E ≤ 50 kT``."""
    u = energy / kt
    gam = z * z * .01358 / kt
    if gam > 0.1:
        return _kurucz_gaunt(u, gam)
    born = _born_gaunt(u)
    gam1 = min(gam * 1000.0, 100.0)
    if gam1 < 1.0:
        return born
    up = np.maximum(u, 0.003)
    n = np.searchsorted(_KBK_U_EDGES, up, side="left")  # u <= 0.03 -> 0, ... > 15 -> 5
    m = int(np.searchsorted(_KBK_GAM_EDGES, gam1, side="left"))
    a = _KBK_A
    g1 = (a[0, m, n] + a[1, m, n] * up + a[2, m, n] * up * up) * born
    g2 = (a[0, m + 1, n] + a[1, m + 1, n] * up + a[2, m + 1, n] * up * up) * born
    p = (gam1 - _KBK_GAM_LO[m]) / _KBK_GAM_WIDTH[m]
    return (1.0 - p) * g1 + p * g2


def _float32(values):
    """Round to float32 and back: XSPEC passes single-precision Fortran models float32."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def bremss_density(energy, kt, he_ratio=0.085):
    """Photon density of XSPEC's bremss/vbremss at ``energy`` (keV), zero at E ≥ 50 kT."""
    energy = np.asarray(energy, dtype=np.float64)
    out = np.zeros(energy.shape)
    ok = (energy > 0) & (energy < 50.0 * kt)
    if kt > 0 and np.any(ok):
        e = energy[ok]
        out[ok] = ((_gaunt(e, kt, 1.0) + 4.0 * he_ratio * _gaunt(e, kt, 2.0))
                   * np.exp(-e / kt) / (e * math.sqrt(kt)))
    return out


def _bremss(edges, kt):
    e = _float32(edges)
    kt = float(np.float32(kt))
    dens = bremss_density(e, kt)
    return _float32(0.5 * (dens[:-1] + dens[1:]) * np.diff(e))


def _highecut(edges, cutoff, fold):
    e = _float32(edges)
    cutoff, fold = float(np.float32(cutoff)), float(np.float32(fold))
    m = np.exp(-np.maximum(e - cutoff, 0.001) / fold)
    return _float32(0.5 * (m[:-1] + m[1:]))


# --- lines: XSPEC's walk-outwards algorithm with truncation ------------------------------------


def _line(edges, centre, fraction, crit):
    """Bin fluxes (unit line flux) of a symmetric line, as XSPEC's calcManyLines.

    ``fraction(E)`` is the fraction of the line between ``centre`` and ``E`` (≥ 0).
    """
    n = edges.size - 1
    out = np.zeros(n)
    efirst, elast = edges[0], edges[-1]
    # centre bin: edges[icen] < centre <= edges[icen + 1]
    icen = int(np.searchsorted(edges, centre, side="left")) - 1
    f = fraction(edges)
    if centre >= efirst:  # low-energy half, walking down from the centre bin
        if centre > elast:
            start, alow = n - 1, f[-1]
        else:
            start, alow = icen, 0.0
        if start >= 0:
            k = np.arange(start, -1, -1)
            upper = np.concatenate(([alow], f[k[1:] + 1]))
            vals = f[k] - upper
            remaining = f[0] - f[k]
            stop = np.flatnonzero(remaining < crit)
            if stop.size:
                s = stop[0]
                vals[s] += remaining[s]
                vals[s + 1:] = 0.0
            out[k] += vals
    if centre <= elast:  # high-energy half, walking up
        if centre < efirst:
            start, alow = 0, f[0]
        else:
            start, alow = max(icen, 0), 0.0
        k = np.arange(start, n)
        lower = np.concatenate(([alow], f[k[1:]]))
        vals = f[k + 1] - lower
        remaining = f[-1] - f[k + 1]
        stop = np.flatnonzero(remaining < crit)
        if stop.size:
            s = stop[0]
            vals[s] += remaining[s]
            vals[s + 1:] = 0.0
        out[k] += vals
    return out


def _delta_line(edges, centre):
    out = np.zeros(edges.size - 1)
    icen = int(np.searchsorted(edges, centre, side="left")) - 1
    if 0 <= icen < out.size:
        out[icen] = 1.0
    return out


def _gaussian(edges, centre, sigma):
    from scipy import special  # lazy: see _upper_gamma

    if sigma == 0.0:
        return _delta_line(edges, centre)
    scale = 1.0 / (sigma * math.sqrt(2.0))
    # XSPEC >= 12.13-ish renormalises to the flux at E > 0 (a no-op unless E_L < ~6 sigma)
    norm = 0.5 / (0.5 * special.erfc(-centre * scale))
    return _line(edges, centre, lambda e: norm * special.erf(np.abs(e - centre) * scale),
                 _GAUSS_CRIT)


def _lorentz(edges, centre, width, old=False):
    if width == 0.0:
        return _delta_line(edges, centre)
    if old:
        norm = 1.0 / math.pi
    else:  # current XSPEC: integral over E > 0 is 1
        norm = 1.0 / (0.5 * math.pi - math.atan(-2.0 * centre / width))
    return _line(edges, centre, lambda e: np.arctan(2.0 * np.abs(e - centre) / width) * norm,
                 _LORENTZ_CRIT)


def _lorentz_old(edges, centre, width):
    return _lorentz(edges, centre, width, old=True)


# ---------------------------------------------------------------------------------------------
# Registry (parameters and default value lines: the XSPEC catalogue, ..catalogue)
# ---------------------------------------------------------------------------------------------

_P = XSPEC_MODEL_PARAMETERS

COMPONENTS = {
    "powerlaw": ComponentSpec("powerlaw", "powerlaw", "add", _P["powerlaw"], _powerlaw),
    "cutoffpl": ComponentSpec(
        "cutoffpl", "cutoffpl", "add", _P["cutoffpl"],
        _cutoffpl, note="POW_EMIN/POW_EMAX must not be set in XSPEC (norm at 1 keV)"),
    "bknpower": ComponentSpec("bknpower", "bknpower", "add", _P["bknpower"], _bknpower),
    "lorentz": ComponentSpec(
        "lorentz", "lorentz", "add", _P["lorentz"], _lorentz,
        note="current XSPEC normalisation: the integral over E > 0 equals norm"),
    "lorentz_old": ComponentSpec(
        "lorentz_old", "lorentz", "add", _P["lorentz"], _lorentz_old,
        note="old XSPEC lorentz normalisation K/pi*[arctan]; current XSPEC cannot reproduce it"),
    "gaussian": ComponentSpec("gaussian", "gaussian", "add", _P["gaussian"], _gaussian),
    "bremss": ComponentSpec(
        "bremss", "bremss", "add", _P["bremss"],
        _bremss, note="norm = 3.02e-15/(4 pi D^2) Int n_e n_H dV; He/H = 0.085 built in"),
    "highecut": ComponentSpec(
        "highecut", "highecut", "mul", _P["highecut"],
        _highecut, note="per-bin factor: mean of exp(-max(E-cutoffE, 0.001)/foldE) at the edges"),
}


def param_specs(ctype):
    """The ParamSpecs of a model component type, in XSPEC order (:data:`APEC_PARAMETERS` for apec).

    Raises ``BadConfigError`` for an unknown type.
    """
    if ctype == "apec":
        return APEC_PARAMETERS
    try:
        return COMPONENTS[ctype].parameters
    except KeyError:
        raise BadConfigError(f"unknown component type {ctype!r}", field="model") from None


# ---------------------------------------------------------------------------------------------
# apec: PyXspec when available, otherwise a documented bremss stand-in
# ---------------------------------------------------------------------------------------------

#: The frozen nuskybgd apec shape (ratios.json intbgd; abundances relative to ``angr``).
APEC_DEFAULTS = {"kT": 1.14579, "Abundanc": 1.32692, "Redshift": 0.0}


def _apec_standin_norm_factor(abund=APEC_DEFAULTS["Abundanc"]):
    """bremss norm per unit apec norm for the same emission measure (free-free only).

    apec norm = 1e-14/(4πD²)∫n_e n_H dV; XSPEC bremss norm = 3.02e-15/(4πD²)∫n_e n_H dV
    with H + He (He/H = 0.085) free-free built in. Same ∫n_e n_H dV gives 0.302. apec
    (angr) has He/H = 0.0977 instead of 0.085 and metal free-free: Σ n_Z/n_H·q_Z² over C…Ni
    with ionisation charges q_Z typical of 1.15 keV (O, C, N bare; Ne, Mg, Si, S He-/H-like;
    Fe ~ Fe XVII–XX, q² ≈ 300) is 0.113 per unit abundance. Ratio of free-free emissivities
    (H + He + metals)/(H + He at 0.085) ≈ (1 + 4·0.0977 + 0.113·A)/(1 + 4·0.085).
    """
    he_angr = 0.0977
    metals_z2 = 0.113  # per unit abundance, angr, charges at kT ≈ 1.15 keV (see above)
    return 0.302 * (1.0 + 4.0 * he_angr + metals_z2 * abund) / (1.0 + 4.0 * 0.085)


#: How the stand-in replaces apec (only for the frozen nuskybgd shape).
APEC_STANDIN = {
    "xspec_name": "bremss",
    "params": {"kT": APEC_DEFAULTS["kT"]},
    "norm_factor": _apec_standin_norm_factor(),
    "description": (
        "apec(kT=1.14579 keV, Abundanc=1.32692 angr, z=0) replaced by XSPEC bremss(kT=1.14579) "
        "with norm = norm_factor x apec norm (same emission measure; H+He+metal free-free). "
        "Omits apec's free-bound continuum (O VIII, Ne X, Mg, Si recombination edges) and lines "
        "(Si XIII 1.86, S XV 2.46, Ar XVII 3.1, Ca XIX 3.9, Fe XXV 6.7 keV). Estimated, not "
        "verified (no AtomDB here): the stand-in is lower than apec by roughly 30-50 % at "
        "3-5 keV with a slightly different slope; the fitted norm absorbs the level, not the "
        "lines. Above ~6 keV the component is negligible."
    ),
}


class ApecShape:
    """The intbgd ``apec`` component, evaluated by PyXspec or by the bremss stand-in.

    Parameters
    ----------
    kT, abundance, redshift : float
        apec's shape parameters (always frozen in nuskybgd); abundances relative to ``angr``.
    route : {'auto', 'pyxspec', 'standin'}
        ``auto`` tries PyXspec (``import xspec``, lazily) and falls back to the stand-in;
        ``pyxspec`` fails (``NuSkyBgdError``) when PyXspec/AtomDB cannot evaluate apec.

    Attributes
    ----------
    evaluated_by : {'pyxspec', 'standin'}
        Which route produced the numbers; the model, fit and export layers report it.
    """

    def __init__(self, kT=APEC_DEFAULTS["kT"], abundance=APEC_DEFAULTS["Abundanc"],
                 redshift=APEC_DEFAULTS["Redshift"], route="auto"):
        if route not in ("auto", "pyxspec", "standin"):
            raise BadConfigError(f"apec route must be auto, pyxspec or standin, got {route!r}",
                                 field="apec_route")
        names = ("kT", "Abundanc", "Redshift")
        values = []
        for spec, name, v in zip(APEC_PARAMETERS, names, (kT, abundance, redshift)):
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise BadConfigError(f"must be a number, got {v!r}", field=f"apec.{name}") from None
            if not (math.isfinite(v) and spec.hard_min <= v <= spec.hard_max):
                raise BadConfigError(f"value {v} outside [{spec.hard_min}, {spec.hard_max}]",
                                     field=f"apec.{name}")
            values.append(v)
        self.kT, self.abundance, self.redshift = values
        self.route = route
        self._xspec = None
        self.evaluated_by = "standin"
        self.reason = "stand-in requested" if route == "standin" else ""
        if route != "standin":
            self._xspec, why = _try_pyxspec()
            if self._xspec is not None:
                self.evaluated_by = "pyxspec"
            elif route == "pyxspec":
                raise NuSkyBgdError(f"apec cannot be evaluated with PyXspec: {why}",
                                    field="apec_route")
            else:
                self.reason = why
        self._cache = {}

    # -- evaluation ---------------------------------------------------------------------------

    @property
    def norm_factor(self):
        """Stand-in norm per unit apec norm (1 when apec itself is evaluated)."""
        if self.evaluated_by == "pyxspec":
            return 1.0
        return _apec_standin_norm_factor(self.abundance)

    def unit_shape(self, energy_edges):
        """Read-only bin-integrated spectrum for apec ``norm = 1``."""
        edges = validate_edges(energy_edges)
        key = _EdgesKey(edges)
        if key not in self._cache:
            if self.evaluated_by == "pyxspec":
                arr = _pyxspec_apec(self._xspec, edges, self.kT, self.abundance, self.redshift)
            else:
                if self.redshift != 0.0:
                    raise BadConfigError("the apec stand-in only covers redshift 0",
                                         field="apec.Redshift")
                arr = _bremss(edges, self.kT) * self.norm_factor
            arr = np.ascontiguousarray(arr, dtype=np.float64)
            arr.setflags(write=False)
            self._cache[key] = arr
        return self._cache[key]

    def evaluate(self, energy_edges, norm):
        """Bin-integrated photon spectrum for apec norm ``norm``."""
        try:
            norm = float(norm)
        except (TypeError, ValueError):
            raise BadConfigError(f"must be a number, got {norm!r}", field="apec.norm") from None
        if not math.isfinite(norm):
            raise BadConfigError(f"must be finite, got {norm}", field="apec.norm")
        return self.unit_shape(energy_edges) * norm

    # -- export -------------------------------------------------------------------------------

    def xspec_component(self):
        """What an ``.xcm`` writer must write so XSPEC reproduces the fitted model.

        Returns
        -------
        dict
            ``xspec_name`` (``'apec'`` only when apec was really evaluated, else
            ``'bremss'``), ``params`` (ordered shape parameters, frozen), ``norm_factor``
            (multiply the apec norm, and write ``abund angr`` explicitly in any case),
            ``evaluated_by``.
        """
        if self.evaluated_by == "pyxspec":
            return {"xspec_name": "apec", "evaluated_by": "pyxspec", "norm_factor": 1.0,
                    "params": {"kT": self.kT, "Abundanc": self.abundance,
                               "Redshift": self.redshift}}
        return {"xspec_name": APEC_STANDIN["xspec_name"], "evaluated_by": "standin",
                "norm_factor": self.norm_factor, "params": {"kT": self.kT},
                "description": APEC_STANDIN["description"]}

    def __repr__(self):
        return (f"ApecShape(kT={self.kT}, abundance={self.abundance}, redshift={self.redshift}, "
                f"evaluated_by={self.evaluated_by!r})")


def _try_pyxspec():
    """Import PyXspec if present; return (module, '') or (None, reason)."""
    try:
        import xspec  # noqa: PLC0415  # lazy: PyXspec is optional and heavy; never required
    except Exception as exc:  # ImportError, or a broken HEASoft set-up
        return None, f"PyXspec not available ({type(exc).__name__})"
    return xspec, ""


def _pyxspec_apec(xspec, edges, kT, abundance, redshift):
    """apec bin integrals from PyXspec on ``edges`` (norm 1, ``abund angr``)."""
    try:
        xspec.Xset.abund = "angr"
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "energies.txt")
            np.savetxt(path, edges, fmt="%.10g")
            xspec.AllModels.setEnergies(path)
            try:
                model = xspec.Model("apec")
                model.setPars(kT, abundance, redshift, 1.0)
                values = np.asarray(model.values(0), dtype=np.float64)
            finally:
                xspec.AllModels.setEnergies("reset")
    except Exception as exc:  # AtomDB missing, XSPEC error: say so, one line
        raise NuSkyBgdError(f"PyXspec failed to evaluate apec: {exc}", field="apec") from None
    if values.shape != (edges.size - 1,) or not np.all(np.isfinite(values)):
        raise NuSkyBgdError("PyXspec returned an unusable apec spectrum", field="apec")
    return values
