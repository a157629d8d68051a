"""Fit statistics identical to XSPEC's ``cstat`` and ``chi`` (data variance), in counts.

Both work on the counts of the noticed (grouped) bins of a spectrum: ``data`` d_i and ``model``
m_i (counts predicted per bin, i.e. exposure x folded model rate). They follow XSPEC 12's own
code (HEASoft 6.20, ``Xspec/src/XSFit/StatMethod``):

``cstat`` (``Cstat/CstatVariants.cxx``, ``StdCstat::specificPerform``, no background)
    C = 2 sum_i [ m_i - d_i + d_i (ln d_i - ln m_i) ], the d_i ln d_i - d_i part being 0 when
    d_i = 0, so a zero-count bin adds 2 m_i. Before the sum XSPEC floors the model rate at
    ``FLOOR / t_s`` with ``FLOOR = 1e-5``, i.e. the model counts at **1e-5 counts**:
    ``m_i <- max(m_i, 1e-5)``. So m_i <= 0 with d_i > 0 gives the large but finite term
    2 [1e-5 - d + d ln(d / 1e-5)], and m_i <= 0 with d_i = 0 gives 2e-5. The derivatives XSPEC
    uses for the fit (``specificResetCalc``) are evaluated at the floored model as well:
    dC/dm = 2 (1 - d/m), d2C/dm2 = 2 d/m^2 (zero for d = 0).

``chi`` (``ChiSquare/ChiSquare.cxx``), default weighting ``standard``
    chi2 = sum_i (d_i - m_i)^2 / sigma_i^2 with sigma_i^2 = d_i (Poisson data variance of the
    counts). A zero variance (d_i = 0) is replaced by ``ChiSquare::calcMinVariance`` =
    1 / (exposure x areascal)^2 in rate units, which is **sigma^2 = 1 count^2** in counts
    (no background file); XSPEC then prints "Chi-square may not be valid due to bins with zero
    variance". The variance does not depend on the model, so the statistic is quadratic in m.

Degrees of freedom: XSPEC reports ``dof = (number of noticed bins) - (number of variable
parameters)`` for both statistics; :attr:`Statistic.dof_offset` is the extra number subtracted
(0 for both; kept so that a future statistic can declare one).
"""

from __future__ import annotations

import abc

import numpy as np

from ..errors import BadConfigError, FitError

__all__ = [
    "CHI_MIN_VARIANCE",
    "CSTAT_FLOOR",
    "STATISTICS",
    "CStat",
    "ChiDataVar",
    "Statistic",
    "chi2_datavar",
    "chi2_terms",
    "cstat",
    "cstat_terms",
    "datavar",
    "get_statistic",
]

#: XSPEC ``StdCstat::FLOOR``: the model is floored at this many counts per bin.
CSTAT_FLOOR = 1.0e-5
#: Variance (counts^2) XSPEC's ``chi`` uses for a zero-count bin (``calcMinVariance``, no background).
CHI_MIN_VARIANCE = 1.0


def _as_arrays(data, model, field="data"):
    """Float arrays of equal shape, finite, or a FitError naming the field."""
    try:
        d = np.asarray(data, dtype=float)
        m = np.asarray(model, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitError(f"cannot convert to numbers ({exc})", field=field) from None
    if d.shape != m.shape:
        raise FitError(f"data shape {d.shape} differs from model shape {m.shape}", field=field)
    if not np.all(np.isfinite(d)):
        raise FitError("data contain NaN or infinite values", field=field)
    return d, m


def _check_counts(d, field="data"):
    if np.any(d < 0):
        raise FitError("Poisson counts must be >= 0 (negative value found)", field=field)


# ---------------------------------------------------------------------------------------------
# cstat
# ---------------------------------------------------------------------------------------------

def cstat_terms(data, model):
    """Per-bin contributions to XSPEC's ``cstat`` (no background).

    Parameters
    ----------
    data : array_like
        Counts per bin (>= 0; need not be integer).
    model : array_like
        Model counts per bin; values below ``CSTAT_FLOOR`` are floored as XSPEC does.

    Returns
    -------
    numpy.ndarray
        ``2 [m - d + d ln(d/m)]`` with ``m = max(model, 1e-5)`` and the ``d ln d`` term 0 for d = 0.
    """
    d, m = _as_arrays(data, model)
    _check_counts(d)
    return _cstat_terms(d, m)


def _cstat_terms(d, m):
    mf = np.maximum(m, CSTAT_FLOOR)
    out = mf - d
    pos = d > 0
    out[pos] += d[pos] * (np.log(d[pos]) - np.log(mf[pos]))
    return 2.0 * out


def cstat(data, model):
    """XSPEC's ``cstat`` for Poisson data without background (see module docstring).

    Returns
    -------
    float
    """
    return float(np.sum(cstat_terms(data, model)))


# ---------------------------------------------------------------------------------------------
# chi (data variance)
# ---------------------------------------------------------------------------------------------

def datavar(data):
    """XSPEC ``standard`` weighting variance of counts: d, and 1 where d = 0."""
    d = np.asarray(data, dtype=float)
    return np.where(d > 0, d, CHI_MIN_VARIANCE)


def chi2_terms(data, model):
    """Per-bin ``(d - m)^2 / sigma^2`` with XSPEC's standard (data) variance.

    Parameters
    ----------
    data : array_like
        Counts per bin (>= 0).
    model : array_like
        Model counts per bin.

    Returns
    -------
    numpy.ndarray
    """
    d, m = _as_arrays(data, model)
    _check_counts(d)
    return (d - m) ** 2 / datavar(d)


def chi2_datavar(data, model):
    """XSPEC's ``chi`` with ``weight standard``: sum (d - m)^2 / d, a zero-count bin using sigma^2 = 1.

    Returns
    -------
    float
    """
    return float(np.sum(chi2_terms(data, model)))


# ---------------------------------------------------------------------------------------------
# Statistic objects (what the fitters use)
# ---------------------------------------------------------------------------------------------

class Statistic(abc.ABC):
    """A fit statistic S(d, m) = sum_i s(d_i, m_i) with per-bin derivatives wrt the model counts.

    Attributes
    ----------
    name : str
        XSPEC's name (``statistic <name>``).
    dof_offset : int
        Subtracted from ``n_bins - n_free`` to give the degrees of freedom (0: XSPEC's rule).
    """

    name = ""
    dof_offset = 0

    def validate(self, data, field="data"):
        """Raise FitError if ``data`` cannot be used with this statistic."""
        d = np.asarray(data, dtype=float)
        if not np.all(np.isfinite(d)):
            raise FitError("data contain NaN or infinite values", field=field)
        _check_counts(d, field)

    @abc.abstractmethod
    def terms(self, d, m):
        """Per-bin contributions (arrays assumed valid; no checks, for speed)."""

    def value(self, d, m):
        """The statistic, a float."""
        return float(np.sum(self.terms(d, m)))

    @abc.abstractmethod
    def gradient(self, d, m):
        """dS/dm_i per bin (the direction XSPEC uses; see the module docstring for cstat)."""

    @abc.abstractmethod
    def hessian_diag(self, d, m):
        """d2S/dm_i^2 per bin (observed curvature; the Hessian wrt m is diagonal)."""

    def fisher_diag(self, d, m):
        """Expected curvature E[d2S/dm^2] (d replaced by its expectation m): Fisher scoring weights."""
        return self.hessian_diag(d, m)

    def __repr__(self):
        return f"<Statistic {self.name}>"


class CStat(Statistic):
    """XSPEC ``cstat`` (Poisson, no background), model floored at 1e-5 counts."""

    name = "cstat"

    def terms(self, d, m):
        return _cstat_terms(d, m)

    def gradient(self, d, m):
        mf = np.maximum(m, CSTAT_FLOOR)
        return 2.0 * (1.0 - d / mf)

    def hessian_diag(self, d, m):
        mf = np.maximum(m, CSTAT_FLOOR)
        return 2.0 * d / (mf * mf)

    def fisher_diag(self, d, m):
        return 2.0 / np.maximum(m, CSTAT_FLOOR)


class ChiDataVar(Statistic):
    """XSPEC ``chi`` with standard weighting: sigma^2 = d (1 where d = 0)."""

    name = "chi"

    def terms(self, d, m):
        return (d - m) ** 2 / datavar(d)

    def gradient(self, d, m):
        return -2.0 * (d - m) / datavar(d)

    def hessian_diag(self, d, m):
        return 2.0 / datavar(d)


#: Registry of statistics by XSPEC name.
STATISTICS = {"cstat": CStat(), "chi": ChiDataVar()}


def get_statistic(statistic):
    """The :class:`Statistic` for a name (or the object itself); BadConfigError if unknown."""
    if isinstance(statistic, Statistic):
        return statistic
    try:
        return STATISTICS[str(statistic).lower()]
    except KeyError:
        raise BadConfigError(
            f"unknown fit statistic {statistic!r}; available: {', '.join(sorted(STATISTICS))}",
            field="statistic",
        ) from None
