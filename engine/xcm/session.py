"""The neutral in-memory XSPEC session of an ``.xcm`` file: data classes, expressions, links.

Parameter numbering follows XSPEC: in a model of ``n_par`` parameters per data group, the
**global** index of local parameter ``k`` (1-based) of group ``g`` is ``(g-1)*n_par + k``;
links reference global indices (``= 0.85*apbgd:p3``). Component parameter counts and defaults
come from the XSPEC catalogue (:mod:`nuskybgd_engine.catalogue`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from ..catalogue import component_parameters, canonical_name
from ..errors import BadConfigError

__all__ = ["ParamLine", "Link", "DataEntry", "ResponseEntry", "ParamChange", "ModelBlock", "XcmSession",
           "parse_expression", "make_block", "parse_link", "component_names", "component_sizes", "NUMBER_RE"]


@dataclass
class ParamLine:
    """A parameter value line: ``value delta hard_min soft_min soft_max hard_max``.

    Fields not given in the file are ``None`` (XSPEC keeps its defaults; in a ``newpar``, the
    current values). A negative ``delta`` means frozen.
    """

    value: float
    delta: float | None = None
    hard_min: float | None = None
    soft_min: float | None = None
    soft_max: float | None = None
    hard_max: float | None = None

    @property
    def frozen(self):
        """True when the parameter is frozen (negative delta)."""
        return self.delta is not None and self.delta < 0

    def numbers(self):
        """The given numbers, in file order, up to the last one that is not ``None``."""
        vals = [self.value, self.delta, self.hard_min, self.soft_min, self.soft_max, self.hard_max]
        while vals and vals[-1] is None:
            vals.pop()
        return vals


@dataclass
class Link:
    """A link ``= factor*model:pK``: the parameter equals ``factor`` times global parameter
    ``index`` of ``model`` (``''`` for the unnamed source-1 model).

    ``text`` is the expression as read (not compared: ``= apbgd:6*2.39092`` and
    ``= 2.390920e+00*apbgd:p6`` are the same link).
    """

    factor: float
    model: str
    index: int
    text: str = field(default="", compare=False)

    def evaluate(self, value_of):
        """``factor * value_of(model, index)``."""
        return self.factor * value_of(self.model, self.index)


class DataEntry(NamedTuple):
    """One loaded spectrum: ``data group:spectrum file``."""

    group: int
    spectrum: int
    file: str


class ResponseEntry(NamedTuple):
    """A response or ARF of an additional source: ``response source:spectrum file``."""

    source: int
    spectrum: int
    file: str


@dataclass
class ParamChange:
    """A parameter command after the model blocks.

    ``command`` is ``newpar`` (with ``line`` a ParamLine or Link), ``freeze``, ``thaw`` or
    ``untie`` (``line`` None). ``model`` is the model name (``''`` = unnamed model), ``index``
    the global parameter index.
    """

    command: str
    model: str
    index: int
    line: ParamLine | Link | None = None


@dataclass
class ModelBlock:
    """One ``model [source:name] expression`` command with its parameter lines.

    Attributes
    ----------
    source : int
        XSPEC source number (1 = the unnamed model unless a name is given).
    name : str or None
        Model name (``None`` for the unnamed model).
    expression : str
        The expression as written.
    components : list of (component_name, model_type)
        In expression order; names follow XSPEC: the first ``lorentz`` is ``lorentz``, a later
        one at 1-based position ``i`` is ``lorentz_i``.
    n_params_per_group : int
    params : list of ParamLine or Link
        ``n_params_per_group * n_groups`` entries, group 1 first.
    component_sizes : list of int
        Parameters of each component (inferred for components unknown here).
    """

    source: int
    name: str | None
    expression: str
    components: list
    n_params_per_group: int
    params: list
    component_sizes: list = field(default_factory=list)

    @property
    def key(self):
        """Name used in links (``''`` for the unnamed model)."""
        return self.name or ""

    @property
    def n_groups(self):
        return len(self.params) // self.n_params_per_group if self.n_params_per_group else 0

    @property
    def component_names(self):
        return [c[0] for c in self.components]

    def global_index(self, group, local):
        """Global (1-based) index of local parameter ``local`` (1-based) of ``group``."""
        if not 1 <= local <= self.n_params_per_group:
            raise BadConfigError(f"local parameter {local} out of range 1..{self.n_params_per_group}",
                                 field=f"model {self.key or '<unnamed>'}")
        if group < 1:
            raise BadConfigError(f"data group {group} < 1", field=f"model {self.key or '<unnamed>'}")
        return (group - 1) * self.n_params_per_group + local

    def param(self, group, local):
        """The ParamLine or Link of local parameter ``local`` of data group ``group``."""
        k = self.global_index(group, local)
        if k > len(self.params):
            raise BadConfigError(f"data group {group} not in model ({self.n_groups} groups)",
                                 field=f"model {self.key or '<unnamed>'}")
        return self.params[k - 1]

    @property
    def parameter_names(self):
        """``(component_name, parameter_name)`` for local indices 1..n_params_per_group."""
        out = []
        sizes = self.component_sizes or [None] * len(self.components)
        for (cname, mtype), size in zip(self.components, sizes):
            specs = component_parameters(mtype)
            if specs is not None:
                out.extend((cname, s.name) for s in specs)
            else:
                out.extend((cname, f"par{i}") for i in range(1, (size or 0) + 1))
        return out


@dataclass
class XcmSession:
    """An XSPEC session as described by an ``.xcm`` file (no interpretation beyond XSPEC's).

    Attributes
    ----------
    settings : dict
        ``statistic``, ``method``, ``abund``, ``xsect``, ``cosmo``, ``systematic`` and
        ``xset <name>`` -> argument string (``{'method': 'leven 30000 1e-4',
        'xset delta': '0.01'}``); ``bayes`` only when not ``off`` (XSPEC's default).
    data : list of DataEntry
    backgrounds : dict
        spectrum number -> file name or ``'none'``.
    responses, arfs : list of ResponseEntry
        For sources ≥ 2 (or given explicitly for source 1).
    ignore, notice : list of str
        Arguments of each ``ignore``/``notice`` command, verbatim.
    models : list of ModelBlock
    newpars : list of ParamChange
        ``newpar``/``freeze``/``thaw``/``untie`` after the models, in file order.
    notes : list of str
        What the reader ignored, defaulted or assumed (never executed).
    """

    settings: dict = field(default_factory=dict)
    data: list = field(default_factory=list)
    backgrounds: dict = field(default_factory=dict)
    responses: list = field(default_factory=list)
    arfs: list = field(default_factory=list)
    ignore: list = field(default_factory=list)
    notice: list = field(default_factory=list)
    models: list = field(default_factory=list)
    newpars: list = field(default_factory=list)
    notes: list = field(default_factory=list, compare=False)
    #: Comment lines written before the first command (``#`` added); never inside blocks.
    comments: list = field(default_factory=list, compare=False)

    @property
    def n_groups(self):
        """Number of data groups (XSPEC has one even without data)."""
        return max((d.group for d in self.data), default=1)

    def model(self, name):
        """The ModelBlock called ``name`` (``''``/None = unnamed)."""
        for m in self.models:
            if m.key == (name or ""):
                return m
        raise BadConfigError(f"no model named {name!r}", field="models")


# ---------------------------------------------------------------------------------------------
# Expressions and links
# ---------------------------------------------------------------------------------------------

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
NUMBER_RE = re.compile(rf"^{_NUMBER}$")
_REF_RE = re.compile(r"^(?:([A-Za-z_][A-Za-z0-9_]*):)?(p?)(\d+)$")
_TOKEN_RE = re.compile(r"\s*(?:(?P<table>[ame]table\{[^{}]*\})|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                       r"|(?P<op>[-+*()]))")


def parse_expression(expression):
    """Component types of a model expression, in order (``'nuabs(powerlaw*highecut)'`` ->
    ``['nuabs', 'powerlaw', 'highecut']``). Known names are returned in XSPEC's spelling.

    Raises BadConfigError on characters or parentheses XSPEC would not accept.
    """
    types = []
    pos, depth, text = 0, 0, expression.strip()
    if not text:
        raise BadConfigError("empty model expression", field="model")
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            rest = text[pos:].strip()
            if not rest:
                break
            raise BadConfigError(f"cannot parse model expression {expression!r} at {rest[:20]!r}", field="model")
        pos = m.end()
        if m.group("table"):
            types.append(m.group("table"))
        elif m.group("name"):
            name = m.group("name")
            canon = canonical_name(name) or name
            types.append(canon)
        elif m.group("op") == "(":
            depth += 1
        elif m.group("op") == ")":
            depth -= 1
            if depth < 0:
                raise BadConfigError(f"unbalanced ')' in model expression {expression!r}", field="model")
    if depth:
        raise BadConfigError(f"unbalanced '(' in model expression {expression!r}", field="model")
    if not types:
        raise BadConfigError(f"no component in model expression {expression!r}", field="model")
    return types


def component_names(types):
    seen, out = set(), []
    for i, t in enumerate(types, start=1):
        base = t.split("{")[0]
        out.append((f"{base}_{i}" if base in seen else base, t))
        seen.add(base)
    return out


def component_sizes(types, n_lines=None, n_groups=1):
    """Parameters per component; an unknown count is inferred from ``n_lines`` if unique."""
    sizes = [None if component_parameters(t) is None else len(component_parameters(t)) for t in types]
    unknown = [t for t, s in zip(types, sizes) if s is None]
    if not unknown:
        return sizes
    if len(unknown) > 1:
        raise BadConfigError(f"parameter counts of models {', '.join(sorted(set(unknown)))} are unknown: "
                             "cannot split the parameter lines between them", field="model")
    if n_lines is None:
        raise BadConfigError(f"parameter count of model {unknown[0]!r} is unknown", field="model")
    known = sum(s for s in sizes if s is not None)
    if n_lines % n_groups or n_lines // n_groups - known < 1:
        raise BadConfigError(f"cannot infer the parameter count of model {unknown[0]!r}: {n_lines} parameter "
                             f"lines for {n_groups} data group(s) and {known} known parameters per group",
                             field="model")
    return [n_lines // n_groups - known if s is None else s for s in sizes]


def make_block(source, name, expression, params, component_sizes=None):
    """Build a :class:`ModelBlock` from an expression (component names and counts derived).

    ``component_sizes`` (parameters per component) is required when a component is unknown
    here (e.g. IDL's ``nuabs``); otherwise it is taken from :data:`XSPEC_MODEL_PARAMETERS`.
    """
    types = parse_expression(expression)
    if component_sizes is None:
        sizes = [None if component_parameters(t) is None else len(component_parameters(t)) for t in types]
        if None in sizes:
            raise BadConfigError("component_sizes needed for models unknown here: "
                                 + ", ".join(t for t, s in zip(types, sizes) if s is None), field="model")
    else:
        sizes = [int(s) for s in component_sizes]
        if len(sizes) != len(types):
            raise BadConfigError(f"{len(sizes)} component sizes for {len(types)} components", field="model")
    n_par = sum(sizes)
    return ModelBlock(source=int(source), name=name or None, expression=expression,
                      components=component_names(types), n_params_per_group=n_par, params=list(params),
                      component_sizes=sizes)


def parse_link(text, current_model=""):
    """Parse a link expression (the part after ``=``) into a :class:`Link`.

    Accepted: a product of one parameter reference (``name:pK``, ``name:K``, ``pK``) and any
    number of numeric factors, in any order, with spaces anywhere (XSPEC writes
    ``1.49632e + 12``). A bare ``K`` alone is XSPEC's old reference to the current model.
    Raises ValueError with a reason otherwise.
    """
    compact = "".join(text.split())
    if not compact:
        raise ValueError("empty link expression")
    if NUMBER_RE.match(compact) and re.fullmatch(r"\d+", compact):
        return Link(1.0, current_model, int(compact), text.strip())
    factor, ref = 1.0, None
    for part in compact.split("*"):
        m = _REF_RE.match(part)
        if m and (m.group(1) is not None or m.group(2)):
            if ref is not None:
                raise ValueError(f"link {text.strip()!r} has more than one parameter reference")
            ref = (m.group(1) if m.group(1) is not None else current_model, int(m.group(3)))
        elif NUMBER_RE.match(part):
            factor *= float(part)
        else:
            raise ValueError(f"link {text.strip()!r} is not a product of numbers and one "
                             "parameter reference (name:pK)")
    if ref is None:
        raise ValueError(f"link {text.strip()!r} has no parameter reference (name:pK)")
    if not math.isfinite(factor):
        raise ValueError(f"link {text.strip()!r} has a non-finite factor")
    if ref[1] < 1:
        raise ValueError(f"link {text.strip()!r} references parameter 0")
    return Link(factor, ref[0], ref[1], text.strip())
