"""The outcome of a fit: :class:`FitOutput` (values, errors, covariance, convergence)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ConfidenceInterval", "FitOutput"]


@dataclass(repr=False, eq=False)
class FitOutput:
    """Best-fit parameters and how they were obtained.

    Attributes
    ----------
    theta : numpy.ndarray
        Best-fit parameter values, shape (n_free,).
    stat : float
        Fit statistic at ``theta`` (XSPEC's value: C or chi^2).
    covariance : numpy.ndarray
        (n_free, n_free) covariance = (H/2)^-1 with H the Hessian of the statistic over the
        parameters not at a bound; rows/columns of parameters at a bound are 0; NaN where the
        Hessian is singular.
    errors : numpy.ndarray
        sqrt(diag(covariance)): 0 for a parameter at a bound, NaN when undetermined.
    n_iter : int
        Iterations used.
    converged : bool
        True only if the convergence criterion was met and every parameter is determined.
    message : str
        Why the fit stopped (one line).
    dof : int
        Noticed bins minus free parameters (XSPEC's rule).
    statistic : str
        Name of the statistic (``cstat`` or ``chi``).
    at_bound : numpy.ndarray
        Bool per parameter: at its lower or upper limit (XSPEC: "pegged").
    singular : bool
        The curvature matrix is singular: some combination of parameters is not constrained
        (``converged`` is then False).
    undetermined : numpy.ndarray
        Bool per parameter: it does not change the model at the best fit (e.g. the shape of a
        component whose norm is 0); its error is NaN. XSPEC holds such parameters too.
    names : list of str
        Parameter names (``p1``, ``p2``, ... when not given).
    n_bins : int
        Number of noticed bins used.
    method : str
        ``newton`` (linear fast path) or ``leven`` (Levenberg-Marquardt).
    """

    theta: np.ndarray
    stat: float
    covariance: np.ndarray
    errors: np.ndarray
    n_iter: int
    converged: bool
    message: str
    dof: int
    statistic: str = "cstat"
    at_bound: np.ndarray = None
    singular: bool = False
    names: list = None
    undetermined: np.ndarray = None
    n_bins: int = 0
    method: str = ""
    #: What produced the fit (problem, bounds...), used by confidence_interval; not serialised.
    context: dict = field(default_factory=dict)

    def __post_init__(self):
        self.theta = np.asarray(self.theta, dtype=float)
        n = self.theta.size
        if self.at_bound is None:
            self.at_bound = np.zeros(n, dtype=bool)
        if self.undetermined is None:
            self.undetermined = np.zeros(n, dtype=bool)
        if self.names is None:
            self.names = [f"p{i + 1}" for i in range(n)]

    @property
    def n_free(self):
        """Number of fitted parameters."""
        return int(self.theta.size)

    def to_dict(self):
        """JSON-ready dictionary (lists and plain numbers; NaN kept as None)."""

        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        return {
            "names": list(self.names),
            "theta": [num(v) for v in self.theta],
            "errors": [num(v) for v in self.errors],
            "at_bound": [bool(b) for b in self.at_bound],
            "undetermined": [bool(b) for b in self.undetermined],
            "covariance": [[num(v) for v in row] for row in np.asarray(self.covariance)],
            "stat": num(self.stat),
            "statistic": self.statistic,
            "dof": int(self.dof),
            "n_bins": int(self.n_bins),
            "n_iter": int(self.n_iter),
            "converged": bool(self.converged),
            "singular": bool(self.singular),
            "message": self.message,
            "method": self.method,
        }

    def __repr__(self):
        status = "converged" if self.converged else "NOT CONVERGED"
        head = (f"FitOutput({self.method or 'fit'}, {self.statistic} = {self.stat:.6g} for {self.dof} dof, "
                f"{status} after {self.n_iter} iterations: {self.message})")
        lines = [head]
        width = max([4] + [len(str(n)) for n in self.names])
        lines.append(f"  {'#':>3}  {'name':<{width}}  {'value':>14}  {'error':>12}  flag")
        rows = zip(self.names, self.theta, self.errors, self.at_bound, self.undetermined)
        for i, (name, v, e, b, u) in enumerate(rows, 1):
            flag = "undetermined" if (u or not np.isfinite(e)) else ("at bound" if b else "")
            lines.append(f"  {i:>3}  {name:<{width}}  {v:>14.6e}  {e:>12.4e}  {flag}")
        return "\n".join(lines)


class ConfidenceInterval(tuple):
    """A ``(lo, hi)`` pair that also says whether either end stopped at a parameter limit.

    Unpacks as ``lo, hi = ci``; extra attributes: ``lo_at_bound``, ``hi_at_bound``,
    ``best`` (the best-fit value), ``delta_stat`` and ``message``.
    """

    def __new__(cls, lo, hi, *, lo_at_bound=False, hi_at_bound=False, best=float("nan"),
                delta_stat=1.0, message=""):
        self = super().__new__(cls, (float(lo), float(hi)))
        self.lo_at_bound = bool(lo_at_bound)
        self.hi_at_bound = bool(hi_at_bound)
        self.best = float(best)
        self.delta_stat = float(delta_stat)
        self.message = message
        return self

    @property
    def lo(self):
        return self[0]

    @property
    def hi(self):
        return self[1]

    def __repr__(self):
        lo = f"{self[0]:.6g}" + (" (limit)" if self.lo_at_bound else "")
        hi = f"{self[1]:.6g}" + (" (limit)" if self.hi_at_bound else "")
        return f"ConfidenceInterval({lo}, {hi}; delta_stat={self.delta_stat:g})"
