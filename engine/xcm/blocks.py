"""Model blocks of an ``.xcm``: a ``model`` command's expression and its parameter lines.

Parameter lines are value lines (up to six numbers), links (``= factor*name:pK``) or XSPEC's
defaults (blank, ``/``, ``/*``); a component unknown to the catalogue gets its parameter count
from the number of lines. Used by the reader (:mod:`.reader`), whose state it fills.
"""

from __future__ import annotations

import math
import re

from ..catalogue import component_parameters
from ..errors import BadConfigError
from .session import (
    NUMBER_RE,
    Link,
    ModelBlock,
    ParamLine,
    component_names,
    component_sizes,
    parse_expression,
    parse_link,
)
from .tables import PARAM_START

__all__ = ["read_model"]


def read_model(reader, lineno, rest, i):
    """Read a ``model`` command at line ``lineno`` and its parameter lines from index ``i``.

    Adds the :class:`ModelBlock` to ``reader.s`` (replacing a block of the same source or name)
    and returns the index of the first line after the block.
    """
    if not rest:
        raise reader.error(lineno, "'model' needs an expression")
    first = rest.split()[0]
    m = re.match(r"^(\d+):([A-Za-z_][A-Za-z0-9_]*)$", first)
    if m:
        source, name, expr = int(m.group(1)), m.group(2), rest[len(first):].strip()
    else:
        source, name, expr = 1, None, rest
    expr = " ".join(expr.split())
    if not expr:
        raise reader.error(lineno, "'model' needs an expression")
    if expr.lower() in ("none", "clear"):
        reader.s.models = [b for b in reader.s.models if b.source != source]
        return i
    try:
        types = parse_expression(expr)
    except BadConfigError as exc:
        raise reader.error(lineno, exc.reason) from None
    n_groups = reader.s.n_groups
    # Lines belonging to the block (for inferring an unknown parameter count).
    sizes = [None if component_parameters(t) is None else len(component_parameters(t)) for t in types]
    label = f"{name or '<unnamed>'}"
    if None in sizes:
        count, j, last_nonblank = 0, i, 0
        while j < len(reader.lines):
            text = reader.lines[j].strip()
            if text.startswith("#"):
                j += 1
                continue
            if not PARAM_START.match(reader.lines[j]):
                break
            if text.startswith("/"):
                raise reader.error(j + 1, f"'/' defaults cannot be used with model {label}: it contains a "
                                 "component whose parameter count is unknown")
            count += 1
            if text:
                last_nonblank = count
            j += 1
        try:
            sizes = component_sizes(types, last_nonblank, n_groups)
        except BadConfigError as exc:
            raise reader.error(lineno, exc.reason) from None
        unknown = [t for t in types if component_parameters(t) is None]
        reader.s.notes.append(f"line {lineno}: model {unknown[0]!r} (unknown here) taken to have "
                            f"{sizes[types.index(unknown[0])]} parameters, inferred from the line count")
    n_par = sum(sizes)
    defaults = []
    for t, size in zip(types, sizes):
        specs = component_parameters(t)
        defaults.extend(specs if specs is not None else [None] * size)
    key = name or ""
    params = []
    total = n_par * n_groups
    rest_default = False
    while len(params) < total:
        k = len(params) + 1
        group, local = (k - 1) // n_par + 1, (k - 1) % n_par + 1
        where = f"model {label} parameter {k} (group {group}, local {local})"
        if rest_default:
            params.append(_default_line(reader, lineno, key, group, local, defaults, where))
            continue
        if i >= len(reader.lines):
            raise reader.error(i, f"file ends inside model {label}: {len(params)} of {total} parameter lines "
                             f"({n_par} per group x {n_groups} group(s))")
        pl = i + 1
        text = reader.lines[i].strip()
        i += 1
        if text.startswith("#"):
            reader.s.notes.append(f"line {pl}: comment inside model {label} skipped")
            continue
        if text and not PARAM_START.match(text):
            raise reader.error(pl, f"expected {where} ({len(params)} of {total} lines read: {n_par} per group x "
                             f"{n_groups} group(s)), found {text[:30]!r}")
        reader.param_lines[(name or "", len(params) + 1)] = pl
        if text in ("", "/"):
            reader.s.notes.append(f"line {pl}: {'blank' if not text else '/'} line for {where}: XSPEC default used")
            params.append(_default_line(reader, pl, key, group, local, defaults, where))
            continue
        if text == "/*":
            reader.s.notes.append(f"line {pl}: '/*': XSPEC defaults for the rest of model {label}")
            rest_default = True
            continue
        if text.startswith("="):
            try:
                link = parse_link(text[1:], key)
            except ValueError as exc:
                raise reader.error(pl, f"{where}: {exc}") from None
            params.append(link)
            continue
        params.append(_value_line(reader, pl, text, defaults[local - 1], where))
    # Redefining a model discards it (and parameter commands aimed at it).
    dropped = [c for c in reader.s.newpars if c.model == key]
    if dropped:
        reader.s.notes.append(f"line {lineno}: model {label} redefined: {len(dropped)} earlier parameter "
                            "command(s) for it discarded")
        keep = [j for j, c in enumerate(reader.s.newpars) if c.model != key]
        reader.s.newpars = [reader.s.newpars[j] for j in keep]
        reader.change_lines = [reader.change_lines[j] for j in keep]
    others = [b for b in reader.s.models if b.source != source and b.key != key]
    if len(others) != len(reader.s.models):
        reader.s.notes.append(f"line {lineno}: model for source {source} redefined")
    block = ModelBlock(source=source, name=name, expression=expr, components=component_names(types),
                       n_params_per_group=n_par, params=params, component_sizes=sizes)
    reader.s.models = others + [block]
    return i

def _default_line(reader, lineno, key, group, local, defaults, where):
    if group >= 2:
        return Link(1.0, key, local, f"{key + ':' if key else ''}p{local}")
    spec = defaults[local - 1]
    if spec is None:
        raise reader.error(lineno, f"{where}: no default known for a component unknown here")
    return ParamLine(spec.default, spec.delta)

def _value_line(reader, lineno, text, spec, where):
    tokens = text.split()
    if len(tokens) > 6:
        raise reader.error(lineno, f"{where}: more than six numbers")
    values = []
    for t in tokens:
        if not NUMBER_RE.match(t):
            raise reader.error(lineno, f"{where}: {t!r} is not a number")
        values.append(float(t))
    if not all(math.isfinite(v) for v in values):
        raise reader.error(lineno, f"{where}: non-finite number")
    if len(values) == 1 and spec is not None:
        values.append(spec.delta)  # XSPEC keeps the default step (and frozen state)
    return ParamLine(*values)
