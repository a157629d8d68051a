"""Fitting backends by name: ``native`` (this package) and ``pyxspec`` (PyXspec, loaded lazily).

A backend is any object made by a factory registered with :func:`register_backend`. The native
backend exposes ``fit(problem, statistic='cstat', theta0=None, **options) -> FitOutput`` and
``confidence_interval(fit_output, index, problem=None, **options)``; a PyXspec backend is
expected to offer the same two methods.
"""

from __future__ import annotations

from ..errors import BadConfigError, FitError
from .native import (
    GeneralProblem,
    LinearProblem,
    confidence_interval,
    fit_general,
    fit_linear,
)

__all__ = ["BACKENDS", "NativeBackend", "available_backends", "get_backend", "register_backend"]

#: name -> factory (a callable with no arguments returning a backend object).
BACKENDS = {}


def register_backend(name, factory, *, replace=False):
    """Register ``factory`` under ``name``.

    Parameters
    ----------
    name : str
    factory : callable
        Called with no arguments by :func:`get_backend`; it may import heavy modules.
    replace : bool
        Allow replacing an existing entry (e.g. the pyxspec placeholder).
    """
    if not isinstance(name, str) or not name:
        raise BadConfigError(f"backend name must be a non-empty string, got {name!r}", field="backend")
    if not callable(factory):
        raise BadConfigError(f"factory for backend {name!r} is not callable", field="backend")
    if name in BACKENDS and not replace:
        raise BadConfigError(f"backend {name!r} is already registered", field="backend")
    BACKENDS[name] = factory


def available_backends():
    """Registered backend names, sorted."""
    return sorted(BACKENDS)


def get_backend(name="native"):
    """The backend object registered as ``name``; BadConfigError naming the available ones."""
    try:
        factory = BACKENDS[name]
    except (KeyError, TypeError):
        raise BadConfigError(f"unknown fit backend {name!r}; available: {', '.join(available_backends())}",
                             field="backend") from None
    return factory()


class NativeBackend:
    """The numpy/scipy engine of :mod:`.native`."""

    name = "native"

    def fit(self, problem, statistic="cstat", theta0=None, **options):
        """Fit a :class:`LinearProblem` (fast path) or a :class:`GeneralProblem` (leven)."""
        if isinstance(problem, LinearProblem):
            return fit_linear(problem, statistic, theta0, **options)
        if isinstance(problem, GeneralProblem):
            start = theta0 if theta0 is not None else problem.theta0
            if start is None:
                raise FitError("a GeneralProblem needs starting values (theta0)", field="theta0")
            return fit_general(problem.model_fn, problem.data, start, problem.lower, problem.upper,
                               statistic=statistic, jac=problem.jac, names=problem.names, **options)
        raise FitError(f"cannot fit a {type(problem).__name__}: expected LinearProblem or GeneralProblem",
                       field="problem")

    def confidence_interval(self, fit_output, index, problem=None, **options):
        """Delta-stat range of one parameter (see :func:`.native.confidence_interval`)."""
        return confidence_interval(fit_output, index, problem, **options)

    def __repr__(self):
        return "<NativeBackend>"


def _pyxspec_factory():
    """Import PyXspec only now; a missing installation is a one-line BadConfigError."""
    try:
        import xspec  # noqa: F401  # lazy: PyXspec is optional and heavy (HEASoft)
    except Exception as exc:  # noqa: BLE001  (ImportError, or a broken HEASoft set-up)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadConfigError(f"PyXspec is not available: {reason}; it comes with HEASoft (see README)",
                             field="backend") from None
    from .pyxspec import PyXspecBackend  # lazy: the PyXspec backend (and its .xcm export) only when asked for

    return PyXspecBackend(xspec)


register_backend("native", NativeBackend)
register_backend("pyxspec", _pyxspec_factory)
