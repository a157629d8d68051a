"""Spectral model of the background: XSPEC-compatible components (:mod:`.components`)."""

from .components import (  # noqa: F401  (re-exported public API)
    APEC_STANDIN,
    COMPONENTS,
    ApecShape,
    ComponentSpec,
    ParamSpec,
    evaluate,
    get_component,
    unit_shape,
)
