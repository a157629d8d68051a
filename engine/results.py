"""What a background analysis gives: :class:`FitResult` (a fit) and :class:`Prediction` (a region).

Plain records with their JSON form (``to_dict``); they compute nothing from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .uncertainty import SYSTEMATIC_FRACTION, combine

__all__ = ["FitResult", "Prediction", "SYSTEMATIC_FRACTION", "std_error"]



@dataclass(repr=False)
class FitResult:
    """Outcome of a background fit, with every parameter of every group."""

    statistic: str
    value: float
    dof: int
    converged: bool
    message: str
    parameters: list
    free: list
    covariance: np.ndarray
    backend: str = "native"
    method: str = ""
    n_iter: int = 0
    warnings: list = field(default_factory=list)
    apec: dict = field(default_factory=dict)
    #: Correlation of the apbgd and fcxb norms of each module's reference group (their degeneracy).
    degeneracy: dict = field(default_factory=dict)
    #: C-stat fits: the statistic a correct model gives on average at the fitted model, and its
    #: standard deviation (Kaastra 2017; :mod:`nuskybgd_engine.fit.goodness`). None for chi.
    expected: float | None = None
    expected_sigma: float | None = None

    @property
    def goodness(self):
        """``(value − expected)/expected_sigma``: beyond ~3 the model does not describe the data."""
        if self.expected is None or not self.expected_sigma:
            return None
        return (self.value - self.expected) / self.expected_sigma

    def error(self, source, index):
        return std_error(self.covariance, self.free, (source, index))

    def correlation(self, a, b):
        i, j = self.free.index(a), self.free.index(b)
        c = self.covariance
        den = math.sqrt(c[i, i] * c[j, j]) if c[i, i] > 0 and c[j, j] > 0 else 0.0
        return float(c[i, j] / den) if den else float("nan")

    def to_dict(self):
        return {
            "statistic": self.statistic, "value": self.value, "dof": self.dof, "converged": self.converged,
            "message": self.message, "backend": self.backend, "method": self.method, "n_iter": self.n_iter,
            "warnings": list(self.warnings), "apec": dict(self.apec),
            "degeneracy": {m: (None if not np.isfinite(v) else v) for m, v in self.degeneracy.items()},
            "expected": self.expected, "expected_sigma": self.expected_sigma,
            "free": [f"{s}:p{k}" for s, k in self.free],
            "covariance": np.where(np.isfinite(self.covariance), self.covariance, None).tolist(),
            "parameters": self.parameters,
        }

    def __repr__(self):
        head = f"FitResult({self.statistic} = {self.value:.2f} for {self.dof} dof"
        if self.goodness is not None:
            head += f" (expected {self.expected:.1f} ± {self.expected_sigma:.1f})"
        lines = [f"{head}, {'converged' if self.converged else 'NOT converged'}; backend {self.backend})"]
        for p in self.parameters:
            if p["state"] == "free":
                lines.append(f"  {p['source']:>6}:p{p['index']:<4} g{p['group']} {p['component']:>10}.{p['name']:<8}"
                             f" {p['value']:.6g} ± {p['error']:.2g}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)


def std_error(covariance, free, key):
    """1σ error of free parameter ``key`` from the covariance (0 if not free, NaN if undetermined)."""
    if key not in free:
        return 0.0
    j = free.index(key)
    v = covariance[j, j]
    return float(math.sqrt(v)) if np.isfinite(v) and v >= 0 else float("nan")


@dataclass(repr=False)
class Prediction:
    """Predicted background counts of one region in one band: total and per component, with 1σ."""

    module: str
    band: tuple
    channels: tuple
    exposure: float
    components: dict
    total: float
    stat_error: float
    sys_error: float
    component_errors: dict
    systematic_fraction: float = SYSTEMATIC_FRACTION

    @property
    def stat_sys_error(self):
        """stat ⊕ sys (quadrature): the combined 1σ (see :mod:`~nuskybgd_engine.uncertainty`)."""
        return combine(self.stat_error, self.sys_error)

    #: Alias of :attr:`stat_sys_error` (older name).
    error = stat_sys_error

    def to_dict(self):
        """Every number named for what it is: ``stat_error``, ``sys_error`` and ``stat_sys_error``."""
        return {"module": self.module, "band_keV": list(self.band), "channels": list(self.channels),
                "exposure": self.exposure, "total": self.total, "stat_error": self.stat_error,
                "sys_error": self.sys_error, "stat_sys_error": self.stat_sys_error,
                "systematic_fraction": self.systematic_fraction, "components": self.components,
                "component_errors": self.component_errors}

    def __repr__(self):
        comps = ", ".join(f"{k} {v:.1f}" for k, v in self.components.items())
        return (f"Prediction(FPM{self.module} {self.band[0]:g}-{self.band[1]:g} keV: {self.total:.1f} counts ± "
                f"{self.stat_error:.1f} (stat) ± {self.sys_error:.1f} (sys, {100 * self.systematic_fraction:.2f} %); "
                f"stat ⊕ sys {self.stat_sys_error:.1f}; {comps})")
