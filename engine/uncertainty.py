"""The error budget of a background prediction: statistical error, systematic floor, their combination.

A prediction (``predict``, ``bgdspec``, the dashboard) reports three numbers, each named for what it
is:

``stat_error``
    the 1σ statistical error, the fit covariance propagated to the prediction (it shrinks with the
    counts of the background regions);
``sys_error``
    the systematic floor, ``systematic_fraction`` × the prediction: what the method cannot do
    better than however many counts there are (spatial templates, detector-to-detector line
    strengths, aperture registration);
``stat_sys_error``
    ``stat_error ⊕ sys_error`` (in quadrature) — the combination, to be used as the total 1σ.

The default floor is :data:`SYSTEMATIC_FRACTION` (source: :data:`SYSTEMATIC_SOURCE`); every entry
point takes another value (``systematic=`` in the API, ``--systematic`` on the command line).
"""

from __future__ import annotations

import math

from .errors import BadConfigError

__all__ = ["SYSTEMATIC_FRACTION", "SYSTEMATIC_SOURCE", "check_systematic", "combine"]

#: Default systematic floor (1σ, fraction of the prediction): Wik et al. 2014 quote ≈4 % at 90 %
#: confidence for the background in a band, i.e. 4 %/1.645 ≈ 2.43 % at 1σ.
SYSTEMATIC_FRACTION = 0.04 / 1.645
SYSTEMATIC_SOURCE = ("Wik et al. 2014, ApJ 792, 48 (arXiv:1403.2722): background systematic ≈4 % at 90 % "
                     "confidence, i.e. 0.04/1.645 = 2.43 % at 1σ")


def check_systematic(value, *, field="systematic"):
    """The systematic fraction as a float in [0, 1); ``None`` gives the default."""
    if value is None:
        return SYSTEMATIC_FRACTION
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise BadConfigError(f"systematic fraction must be a number in [0, 1), got {value!r}", field=field) from None
    if not (math.isfinite(f) and 0.0 <= f < 1.0):
        raise BadConfigError(f"systematic fraction must be in [0, 1), got {f}", field=field)
    return f


def combine(stat_error, sys_error):
    """stat ⊕ sys: the two 1σ errors added in quadrature."""
    return math.hypot(stat_error, sys_error)
