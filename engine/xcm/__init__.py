"""XSPEC ``.xcm`` files: a neutral in-memory session, a reader that never executes anything,
a validator and a writer (spec §4).

:mod:`.session` (data classes, expressions, links) · :mod:`.reader` (+ :mod:`.blocks` for model
blocks, :mod:`.tables` for the command vocabulary) · :mod:`.validate` · :mod:`.writer`.
Component parameters come from :mod:`nuskybgd_engine.catalogue`.
"""

from ..catalogue import XSPEC_MODEL_PARAMETERS, component_parameters
from .reader import parse_xcm, read_xcm
from .session import (
    DataEntry,
    Link,
    ModelBlock,
    ParamChange,
    ParamLine,
    ResponseEntry,
    XcmSession,
    make_block,
    parse_expression,
    parse_link,
)
from .validate import apply_changes, resolve_values, validate
from .writer import format_factor, format_number, format_xcm, write_xcm

__all__ = [
    "XSPEC_MODEL_PARAMETERS",
    "DataEntry",
    "Link",
    "ModelBlock",
    "ParamChange",
    "ParamLine",
    "ResponseEntry",
    "XcmSession",
    "apply_changes",
    "component_parameters",
    "format_factor",
    "format_number",
    "format_xcm",
    "make_block",
    "parse_expression",
    "parse_link",
    "parse_xcm",
    "read_xcm",
    "resolve_values",
    "validate",
    "write_xcm",
]
