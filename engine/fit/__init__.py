"""Fit statistics (XSPEC ``cstat``/``chi``) and the fitting engines (:mod:`.native`, :mod:`.registry`)."""

from .native import (  # noqa: F401
    GeneralProblem,
    LinearProblem,
    confidence_interval,
    fit_general,
    fit_linear,
)
from .registry import (  # noqa: F401
    BACKENDS,
    NativeBackend,
    available_backends,
    get_backend,
    register_backend,
)
from .result import ConfidenceInterval, FitOutput  # noqa: F401
from .statistics import (  # noqa: F401
    STATISTICS,
    Statistic,
    chi2_datavar,
    chi2_terms,
    cstat,
    cstat_terms,
    get_statistic,
)
