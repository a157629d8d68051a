"""Checking and evaluating an :class:`~.session.XcmSession`: counts, links, parameter commands."""

from __future__ import annotations

import copy
import math

from ..errors import BadConfigError
from .session import Link, ParamLine

__all__ = ["validate", "resolve_values", "apply_changes", "label"]


def label(key):
    return key or "<unnamed>"


def apply_changes(session):
    """A copy of ``session`` with its ``newpars`` folded into the model blocks.

    ``newpar`` replaces a link, or merges the given numbers into a value line; ``freeze``/``thaw``
    set the sign of delta (a missing delta becomes ∓0.01); ``untie`` turns a link into a value line
    with the link's current value and the step (and frozen state) of the parameter it pointed to.
    """
    out = copy.deepcopy(session)
    blocks = {b.key: b for b in out.models}
    for ch in out.newpars:
        where = f"{ch.command} {ch.model + ':' if ch.model else ''}{ch.index}"
        block = blocks.get(ch.model)
        if block is None or not 1 <= ch.index <= len(block.params):
            raise BadConfigError(f"{where}: no such parameter", field="newpars")
        cur = block.params[ch.index - 1]
        if ch.command == "newpar":
            if isinstance(ch.line, Link) or isinstance(cur, Link):
                if isinstance(ch.line, ParamLine) and ch.line.delta is None:
                    new = ParamLine(ch.line.value, 0.01)
                else:
                    new = copy.deepcopy(ch.line)
            else:
                given = ch.line.numbers()
                merged = [g if g is not None else c for g, c in zip(given + [None] * 6, cur.numbers() + [None] * 6)]
                new = ParamLine(*merged[:6])
            block.params[ch.index - 1] = new
        elif ch.command in ("freeze", "thaw"):
            if isinstance(cur, Link):
                out.notes.append(f"{where}: parameter is linked; {ch.command} has no effect")
                continue
            step = abs(cur.delta) if cur.delta else 0.01
            cur.delta = -step if ch.command == "freeze" else step
        elif ch.command == "untie":
            if isinstance(cur, ParamLine):
                continue
            values = _resolve(out.models)
            target = blocks[cur.model].params[cur.index - 1] if cur.model in blocks else None
            delta = target.delta if isinstance(target, ParamLine) else None
            block.params[ch.index - 1] = ParamLine(values[(ch.model, ch.index)], delta)
        else:
            raise BadConfigError(f"unknown parameter command {ch.command!r}", field="newpars")
    out.newpars = []
    return out


def _node_error(message, field_, node):
    exc = BadConfigError(message, field=field_)
    exc.node = node  # (model key, global index): lets the reader name the line
    return exc


def _resolve(models):
    blocks = {}
    for b in models:
        if b.key in blocks:
            raise BadConfigError(f"two models named {label(b.key)!r}", field="models")
        blocks[b.key] = b
    values = {}
    state = {}

    def value_of(key, index, chain):
        node = (key, index)
        if node in values:
            return values[node]
        block = blocks.get(key)
        if block is None or not 1 <= index <= len(block.params):
            src = chain[-1] if chain else None
            where = f"model {label(src[0])} parameter {src[1]}" if src else "link"
            raise _node_error(f"{where} links to {label(key)}:p{index}, which does not exist",
                              f"model {label(src[0]) if src else label(key)}", src)
        if state.get(node) == "visiting":
            cycle = " -> ".join(f"{label(k)}:p{i}" for k, i in chain + [node])
            raise _node_error(f"link cycle {cycle}", f"model {label(key)}", node)
        state[node] = "visiting"
        p = block.params[index - 1]
        if isinstance(p, Link):
            if (p.model, p.index) == node:
                raise _node_error(f"parameter {index} is linked to itself", f"model {label(key)}", node)
            v = p.factor * value_of(p.model, p.index, chain + [node])
        else:
            v = float(p.value)
        state[node] = "done"
        values[node] = v
        return v

    for b in models:
        for k in range(1, len(b.params) + 1):
            value_of(b.key, k, [])
    return values


def validate(session):
    """Check a session: counts per block, every link resolves, no self-links or cycles, finite
    numbers, parameter commands aim at existing parameters. Raises BadConfigError (one line)."""
    groups = session.n_groups
    for b in session.models:
        where = f"model {label(b.key)}"
        if b.n_params_per_group < 1:
            raise BadConfigError("model has no parameters", field=where)
        if b.component_sizes and sum(b.component_sizes) != b.n_params_per_group:
            raise BadConfigError(f"component sizes {b.component_sizes} do not add up to "
                                 f"{b.n_params_per_group}", field=where)
        expected = b.n_params_per_group * groups
        if len(b.params) != expected:
            raise BadConfigError(f"{len(b.params)} parameter lines, expected {expected} ({b.n_params_per_group} "
                                 f"per group x {groups} data group(s))", field=where)
        for k, p in enumerate(b.params, start=1):
            if isinstance(p, Link):
                if not math.isfinite(p.factor):
                    raise BadConfigError(f"parameter {k}: non-finite link factor", field=where)
            elif isinstance(p, ParamLine):
                nums = [p.value, p.delta, p.hard_min, p.soft_min, p.soft_max, p.hard_max]
                if any(v is not None and not math.isfinite(v) for v in nums):
                    raise BadConfigError(f"parameter {k}: non-finite number", field=where)
            else:
                raise BadConfigError(f"parameter {k}: expected ParamLine or Link, got {type(p).__name__}",
                                     field=where)
    _resolve(session.models)
    blocks = {b.key: b for b in session.models}
    for j, ch in enumerate(session.newpars):
        b = blocks.get(ch.model)
        problem = None
        if ch.command not in ("newpar", "freeze", "thaw", "untie"):
            problem = f"unknown parameter command {ch.command!r}"
        elif b is None or not 1 <= ch.index <= len(b.params):
            problem = "no such parameter"
        elif ch.command == "newpar" and not isinstance(ch.line, (ParamLine, Link)):
            problem = "newpar needs a ParamLine or Link"
        elif isinstance(ch.line, ParamLine) and any(
                v is not None and not math.isfinite(v) for v in ch.line.numbers()):
            problem = "non-finite number"
        if problem:
            exc = BadConfigError(f"{ch.command} {ch.model + ':' if ch.model else ''}{ch.index}: {problem}",
                                 field="newpars")
            exc.change = j
            raise exc
    if session.newpars:
        try:
            _resolve(apply_changes(session).models)
        except BadConfigError as exc:
            node = getattr(exc, "node", None)
            hits = [j for j, ch in enumerate(session.newpars) if (ch.model, ch.index) == node]
            if hits:
                exc.change = hits[-1]
                exc.node = None
            raise


def resolve_values(session):
    """Numeric value of every parameter, links evaluated (chains followed), parameter commands
    applied: ``{(model name or '', global index): float}``."""
    validate(session)
    effective = apply_changes(session) if session.newpars else session
    return _resolve(effective.models)
