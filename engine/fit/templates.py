"""Poisson fit of the amplitudes of fixed images to a counts image (:func:`poisson_template_fit`).

Used for the image-based starting values (:mod:`..startvalues`) and for the local background of
the significance map (:mod:`..suggest`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BadConfigError, FitError
from .native import LinearProblem, fit_linear

__all__ = ["TemplateFit", "poisson_template_fit", "BLOCK"]

#: Image pixels are summed in blocks of this size before the fit (exact for Poisson data; faster).
BLOCK = 4


@dataclass
class TemplateFit:
    """Poisson fit of amplitudes of fixed images: ``μ = Σ_k amplitude_k · template_k``."""

    amplitudes: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    cstat: float
    n_bins: int
    counts: float
    converged: bool

    def __repr__(self):
        amps = ", ".join(f"{a:.4g}±{e:.2g}" for a, e in zip(self.amplitudes, self.errors))
        return f"TemplateFit([{amps}], {self.counts:.0f} counts, cstat {self.cstat:.1f}/{self.n_bins} bins)"


def _block_sum(image, block):
    ny, nx = image.shape
    ny2, nx2 = ny - ny % block, nx - nx % block
    a = image[:ny2, :nx2]
    return a.reshape(ny2 // block, block, nx2 // block, block).sum(axis=(1, 3))


def poisson_template_fit(counts, templates, mask=None, *, block=BLOCK):
    """Fit non-negative amplitudes of ``templates`` to a counts image by maximum Poisson likelihood.

    Parameters
    ----------
    counts : ndarray (ny, nx)
        Counts image.
    templates : sequence of ndarray (ny, nx)
        Model images (any scale); amplitude 1 means "as given".
    mask : ndarray of bool (ny, nx), optional
        Pixels to use (default: where any template is > 0).
    block : int
        Pixels are summed in ``block``×``block`` cells first (sums of Poisson counts are Poisson
        with the summed mean, so the likelihood stays exact for the model).

    Returns
    -------
    TemplateFit
    """
    counts = np.asarray(counts, dtype=float)
    tpl = [np.asarray(t, dtype=float) for t in templates]
    if not tpl:
        raise BadConfigError("no templates to fit", field="templates")
    if any(t.shape != counts.shape for t in tpl):
        raise BadConfigError(f"templates must have the image's shape {counts.shape}", field="templates")
    support = sum(tpl) > 0
    mask = support if mask is None else (np.asarray(mask, bool) & support)
    cb = _block_sum(np.where(mask, counts, 0.0), block).ravel()
    cols = [_block_sum(np.where(mask, t, 0.0), block).ravel() for t in tpl]
    keep = sum(cols) > 0
    design = np.stack([c[keep] for c in cols], axis=1)
    data = cb[keep]
    if data.size == 0:
        raise FitError("no image pixels left to fit (mask covers everything)", field="mask")
    # Columns scaled to unit sum: amplitudes of order the counts, well conditioned.
    scale = design.sum(axis=0)
    used = scale > 0
    design = design[:, used] / scale[used]
    problem = LinearProblem([data], [design])
    out = fit_linear(problem, "cstat")
    amps = np.zeros(len(tpl))
    errs = np.full(len(tpl), np.nan)
    cov = np.full((len(tpl), len(tpl)), np.nan)
    amps[used] = out.theta / scale[used]
    c = np.asarray(out.covariance, float) / np.outer(scale[used], scale[used])
    idx = np.flatnonzero(used)
    cov[np.ix_(idx, idx)] = c
    d = np.diag(c)
    errs[used] = np.where(np.isfinite(d) & (d >= 0), np.sqrt(np.abs(d)), np.nan)
    return TemplateFit(amplitudes=amps, errors=errs, covariance=cov, cstat=float(out.stat), n_bins=int(data.size),
                       counts=float(data.sum()), converged=bool(out.converged))
