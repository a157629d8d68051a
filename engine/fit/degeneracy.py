"""Which fitted norms of different background sources the data cannot tell apart.

Two free norms of different sources (say the 3.54 keV line of ``intbgd`` and ``apbgd``) whose
estimates are correlated beyond a threshold trade counts with each other: their sum is measured,
their split is not, and a small mismatch between the true and the modelled shapes (the response,
the soft component) moves the split a long way while the total stays right. The fit reports such
pairs so the user can link or freeze one of them (``intbgd_fix_line_ratios``,
``intbgd_fix_solar_ratios``, fcxb links) — the validation benchmark's diagnosis of issue 16.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CROSS_SOURCE_THRESHOLD", "degenerate_pairs", "describe"]

#: |correlation| of two free norms of different sources above which the fit warns.
CROSS_SOURCE_THRESHOLD = 0.9


def degenerate_pairs(covariance, free, state, *, threshold=CROSS_SOURCE_THRESHOLD, skip=(("apbgd", "fcxb"),)):
    """Pairs of free norms of different sources correlated beyond ``threshold``.

    Parameters
    ----------
    covariance : ndarray
        Covariance of the free parameters, in the order of ``free``.
    free : list of (source, index)
    state : ModelState
    threshold : float
    skip : sequence of (source, source)
        Source pairs reported elsewhere (apbgd–fcxb has its own warning).

    Returns
    -------
    list of ((source, index), (source, index), float)
        Sorted by decreasing |correlation|.
    """
    cov = np.asarray(covariance, dtype=float)
    norms = [j for j, (s, k) in enumerate(free) if state[s][k].is_norm]
    d = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    skip = {frozenset(p) for p in skip}
    out = []
    for a, i in enumerate(norms):
        for j in norms[a + 1:]:
            si, sj = free[i][0], free[j][0]
            if si == sj or frozenset((si, sj)) in skip or not (d[i] > 0 and d[j] > 0):
                continue
            rho = cov[i, j] / (d[i] * d[j])
            if np.isfinite(rho) and abs(rho) > threshold:
                out.append((free[i], free[j], float(rho)))
    return sorted(out, key=lambda t: -abs(t[2]))


def describe(pair, state):
    """One-line warning for a pair of :func:`degenerate_pairs`."""
    (sa, ka), (sb, kb), rho = pair
    names = []
    for s, k in ((sa, ka), (sb, kb)):
        src = state[s]
        g = (k - 1) // src.n_par + 1
        module = state.modules[g - 1] if getattr(state, "modules", None) else "?"
        names.append(f"{s} {src[k].component} (FPM{module}, {s}:p{k})")
    return (f"{names[0]} and {names[1]} are degenerate (correlation {rho:+.2f}): the data fix their sum, not "
            "their split; link or freeze one (e.g. intbgd_fix_line_ratios / intbgd_fix_solar_ratios)")
