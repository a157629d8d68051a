"""Fit statistics (XSPEC ``cstat``/``chi``) and the fitting engines (:mod:`.native`, :mod:`.registry`).

The names below are imported from their submodules when first used (PEP 562), so that a step
that only needs :mod:`.statistics` or :mod:`.goodness` (e.g. ``nuskybgd predict``) does not pay
for scipy.optimize at start-up.
"""

import importlib

_EXPORTS = {
    ".native": ("GeneralProblem", "LinearProblem", "confidence_interval", "fit_general", "fit_linear"),
    ".registry": ("BACKENDS", "NativeBackend", "available_backends", "get_backend", "register_backend"),
    ".result": ("ConfidenceInterval", "FitOutput"),
    ".statistics": ("STATISTICS", "Statistic", "chi2_datavar", "chi2_terms", "cstat", "cstat_terms",
                    "get_statistic"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
