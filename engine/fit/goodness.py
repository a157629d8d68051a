"""Goodness of a C-stat fit: the expected value and spread of C for the fitted model (Kaastra 2017).

Unlike χ², the C statistic of a correct model is not ≈ dof when bins hold few counts: a bin with
Poisson mean μ contributes on average ``C_e(μ)``, which is ≈ 0 for μ → 0, peaks near 1.16 at
μ ≈ 1.3 and tends to 1 (+1/(6μ)) for large μ (Kaastra 2017, A&A 605, A51). So a C-stat of 0.73 per
dof on a short ungrouped observation and of 1.13 per dof on a long one can both be perfect fits.
Compare instead ``C_min`` with what a correct model gives, at the fitted model μ_i:

* mean ``Σ_i C_e(μ_i) − p``: the fit lowers C by about the number ``p`` of free parameters
  (Wilks' theorem holds in the total counts even when each bin has few);
* spread: Kaastra's ``Σ_i S_v²(μ_i)`` is the variance of C at a *fixed* model. A fit removes part
  of it: the likelihood equations fix ``L_j = Σ_i (x_ij/μ_i) d_i`` for every free norm j (with
  ``x_ij`` = ∂μ_i/∂θ_j), e.g. the total counts when a normalisation is free, and at low counts
  most of the variance of C is that of the total counts. Given the design ``x``, the variance is
  reduced by the part of C that the L_j explain linearly: ``Var C − cᵀ V⁻¹ c`` with
  ``c_j = Σ_i (x_ij/μ_i) Cov(C_i, d_i)`` and ``V_jk = Σ_i x_ij x_ik / μ_i``. Without it the σ
  is about twice too large on a 20 ks background fit (measured in ``benchmarks/bench_recovery.py``).

``(C_min − expected)/σ`` beyond ~3 says the model does not describe the data. The moments are
computed exactly by summing Poisson probabilities over the counts (not with Kaastra's polynomial
approximations), with the model floored at 1e-5 counts as XSPEC floors it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import FitError
from .statistics import CSTAT_FLOOR

__all__ = ["cstat_moments", "cstat_expectation"]

#: Below this mean the counts 0..SMALL_K hold all the probability (to < 1e-30).
_SMALL_MU = 50.0
_SMALL_K = 160
#: Half width of the summation window around μ, in units of sqrt(μ), for larger means.
_WINDOW_SIGMAS = 12.0
_CHUNK = 4096
#: Log-spaced table of the exact moments for μ ≤ 50, interpolated (relative error < 1e-5).
_TABLE_POINTS = 4000


def _terms(k, mu):
    """Per-count C contributions 2 (μ − k + k ln(k/μ)) and log Poisson probabilities."""
    from scipy.special import gammaln  # lazy: scipy.special is slow to import (CLI start-up)

    with np.errstate(divide="ignore", invalid="ignore"):
        klogk = np.where(k > 0, k * np.log(np.where(k > 0, k, 1.0) / mu), 0.0)
    c = 2.0 * (mu - k + klogk)
    logp = k * np.log(mu) - mu - gammaln(k + 1.0)
    return c, logp


def _moments(k, c, p, mu):
    """Mean and variance of C and its covariance with the counts, from the probabilities p(k)."""
    norm = p.sum(axis=1)
    mean = (p * c).sum(axis=1) / norm
    dc = c - mean[:, None]
    var = (p * dc ** 2).sum(axis=1) / norm
    cov = (p * dc * (k - mu[:, None])).sum(axis=1) / norm
    return mean, var, cov


def _moments_small(mu):
    k = np.arange(_SMALL_K + 1, dtype=float)[None, :]
    c, logp = _terms(k, mu[:, None])
    return _moments(k, c, np.exp(logp), mu)


@lru_cache(maxsize=1)
def _table():
    x = np.linspace(np.log(CSTAT_FLOOR), np.log(_SMALL_MU), _TABLE_POINTS)
    out = np.empty((3, x.size))
    for start in range(0, x.size, _CHUNK // 8):
        sl = slice(start, start + _CHUNK // 8)
        out[:, sl] = _moments_small(np.exp(x[sl]))
    return x, out


def _moments_table(mu):
    x, table = _table()
    lx = np.log(mu)
    return tuple(np.interp(lx, x, row) for row in table)


def _moments_large(mu):
    half = int(np.ceil(_WINDOW_SIGMAS * np.sqrt(mu.max()) + 10))
    j = np.arange(-half, half + 1, dtype=float)[None, :]
    k = np.round(mu)[:, None] + j
    c, logp = _terms(np.maximum(k, 0.0), mu[:, None])
    return _moments(k, c, np.where(k >= 0, np.exp(logp), 0.0), mu)


def _floored(model):
    mu = np.asarray(model, dtype=float).ravel()
    if not np.all(np.isfinite(mu)):
        raise FitError("model counts contain NaN or infinity", field="model")
    return np.maximum(mu, CSTAT_FLOOR)


def cstat_moments(model, *, with_covariance=False):
    """Mean and variance of each bin's C term when the counts are Poisson with mean ``model``.

    Parameters
    ----------
    model : array_like
        Model counts per bin (floored at 1e-5 as in XSPEC's ``cstat``).
    with_covariance : bool
        Also return ``Cov(C_i, d_i)``, the covariance of the term with the bin's counts.

    Returns
    -------
    mean, variance[, covariance] : numpy.ndarray
        ``C_e(μ)`` and ``S_v²(μ)`` of Kaastra (2017), per bin.
    """
    mu = _floored(model)
    out = np.empty((3, mu.size))
    small = mu <= _SMALL_MU
    for where, fn in ((np.flatnonzero(small), _moments_table), (np.flatnonzero(~small), _moments_large)):
        for start in range(0, where.size, _CHUNK):
            sel = where[start:start + _CHUNK]
            out[:, sel] = fn(mu[sel])
    return (out[0], out[1], out[2]) if with_covariance else (out[0], out[1])


def cstat_expectation(models, designs=None, *, columns=None):
    """What a correct model's C-stat averages, and its standard deviation, summed over spectra.

    Parameters
    ----------
    models : array_like or sequence of array_like
        Fitted model counts of the noticed bins (one array per spectrum, or one array).
    designs : sequence of array_like, optional
        For each spectrum, ``∂model/∂θ`` over its noticed bins (n_bins × p), θ the free norms of
        the fit. Given, the mean is lowered by ``p`` and the variance by the part the fit removes
        (module docstring). Without it: Kaastra's fixed-model mean and variance.
    columns : sequence of int, optional
        Use only these columns of the designs (e.g. the norms inside their limits); default all.

    Returns
    -------
    (expected, sigma) : tuple of float
    """
    if isinstance(models, np.ndarray) and models.ndim == 1:
        models = [models]
    models = list(models)
    if designs is not None:
        designs = [np.asarray(x, dtype=float) for x in designs]
        if len(designs) != len(models):
            raise FitError(f"{len(designs)} design matrices for {len(models)} spectra", field="designs")
    total_mean = total_var = 0.0
    p = n_cols = 0
    c = V = sel = None
    for i, m in enumerate(models):
        mean, var, cov = cstat_moments(m, with_covariance=True)
        total_mean += float(mean.sum())
        total_var += float(var.sum())
        if designs is None:
            continue
        x = designs[i]
        mu = _floored(m)
        if x.ndim != 2 or x.shape[0] != mu.size:
            raise FitError(f"design of spectrum {i + 1} has shape {x.shape}, expected ({mu.size}, p)",
                           field="designs")
        if c is None:
            n_cols = x.shape[1]
            sel = np.arange(n_cols) if columns is None else np.asarray(columns, dtype=int).reshape(-1)
            if np.any((sel < 0) | (sel >= n_cols)):
                raise FitError(f"columns must lie in 0..{n_cols - 1}", field="columns")
            p = sel.size
            c, V = np.zeros(p), np.zeros((p, p))
        elif x.shape[1] != n_cols:
            raise FitError("design matrices have different numbers of parameters", field="designs")
        # a spectrum's design is zero outside its own norms (and the shared ones): sum over those
        used = np.flatnonzero(np.any(x != 0, axis=0)[sel])
        w = x[:, sel[used]] / mu[:, None]
        c[used] += w.T @ cov
        V[np.ix_(used, used)] += (w * mu[:, None]).T @ w
    if c is not None and p:
        total_mean -= p
        total_var -= float(c @ np.linalg.pinv(V, rcond=1e-12, hermitian=True) @ c)
    return total_mean, float(np.sqrt(max(total_var, 0.0)))
