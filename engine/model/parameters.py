"""XSPEC-style parameters: named sources, one parameter copy per data group, links.

A source (``apbgd``, ``intbgd``, ``fcxb``, ``intn``) has ``n_par`` parameters per data group;
parameter ``k`` (1-based) of group ``g`` has the *global* index ``K = (g − 1)·n_par + k``, as
in XSPEC. A parameter is free, frozen, or linked: ``value = factor × value(source:pK)`` (links
may chain; cycles are refused).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from ..errors import BadConfigError

__all__ = ["Link", "Parameter", "SourceModel", "ModelState"]


@dataclass(frozen=True)
class Link:
    """``= factor * source:pK``."""

    factor: float
    source: str
    index: int

    def __str__(self):
        if self.factor == 1.0:
            return f"= {self.source}:p{self.index}"
        return f"= {self.factor:.6e}*{self.source}:p{self.index}"


@dataclass
class Parameter:
    """One parameter of one data group."""

    name: str
    component: str
    value: float
    delta: float = 0.01
    frozen: bool = False
    link: Link | None = None
    hard_min: float = -1e24
    soft_min: float = -1e24
    soft_max: float = 1e24
    hard_max: float = 1e24
    unit: str = ""

    @property
    def free(self):
        return not self.frozen and self.link is None

    @property
    def is_norm(self):
        return self.name == "norm"

    @property
    def state(self):
        return "linked" if self.link is not None else "frozen" if self.frozen else "free"


@dataclass
class SourceModel:
    """One XSPEC source (``model N:name expr``) with its parameters for every data group."""

    number: int
    name: str
    components: list  # [(xspec component name, model type)]
    n_par: int
    params: list = field(default_factory=list)  # length n_par * n_groups

    @property
    def n_groups(self):
        return len(self.params) // self.n_par if self.n_par else 0

    @property
    def expression(self):
        return " + ".join(t for _, t in self.components)

    def index(self, group, local):
        """Global index of local parameter ``local`` of data group ``group`` (both 1-based)."""
        return (group - 1) * self.n_par + local

    def param(self, group, local):
        return self.params[self.index(group, local) - 1]

    def __getitem__(self, global_index):
        if not 1 <= global_index <= len(self.params):
            raise BadConfigError(f"{self.name} has parameters 1..{len(self.params)}, not {global_index}",
                                 field=f"{self.name}:p{global_index}")
        return self.params[global_index - 1]

    def __repr__(self):
        return (f"SourceModel({self.number}:{self.name}, {len(self.components)} components, "
                f"{self.n_par} par/group, {self.n_groups} groups)")


class ModelState:
    """All background sources of a fit; resolves values through links."""

    def __init__(self, sources=()):
        self.sources = {}
        self.modules = []  # module of each data group (A/B)
        self.weights = []  # RegionWeights of each data group
        for s in sources:
            self.add(s)

    def add(self, source):
        if source.name in self.sources:
            raise BadConfigError(f"source {source.name!r} defined twice", field=source.name)
        self.sources[source.name] = source
        return source

    def __getitem__(self, name):
        try:
            return self.sources[name]
        except KeyError:
            raise BadConfigError(f"no source named {name!r} (have {', '.join(self.sources)})", field=name) from None

    def __iter__(self):
        return iter(sorted(self.sources.values(), key=lambda s: s.number))

    def value(self, source, index, _seen=None):
        """Numerical value of ``source:p<index>``, following links."""
        p = self[source][index]
        if p.link is None:
            return p.value
        seen = _seen or set()
        key = (source, index)
        if key in seen:
            raise BadConfigError(f"link cycle through {source}:p{index}", field=f"{source}:p{index}")
        seen.add(key)
        return p.link.factor * self.value(p.link.source, p.link.index, seen)

    def root(self, source, index):
        """(factor, source, index) of the unlinked parameter ``source:p<index>`` resolves to."""
        factor, seen = 1.0, set()
        while True:
            p = self[source][index]
            if p.link is None:
                return factor, source, index
            if (source, index) in seen:
                raise BadConfigError(f"link cycle through {source}:p{index}", field=f"{source}:p{index}")
            seen.add((source, index))
            factor *= p.link.factor
            source, index = p.link.source, p.link.index

    def refresh_links(self):
        """Store the resolved value in every linked parameter (what XSPEC shows for them)."""
        for s in self:
            for k, p in enumerate(s.params, start=1):
                if p.link is not None:
                    p.value = self.value(s.name, k)

    def dependent_groups(self, group):
        """Data groups (1-based, sorted) whose model may change with data group ``group``'s weights.

        ``group`` itself and every group with a parameter linked, directly or through a chain, to a
        parameter of ``group``: link factors are area ratios to the linked group's region, so moving
        a module's reference region changes the model of every spectrum of that module.
        """
        out = {int(group)}
        for s in self:
            for k, p in enumerate(s.params, start=1):
                if p.link is None:
                    continue
                _f, rs, ri = self.root(s.name, k)
                targets = ((p.link.source, p.link.index), (rs, ri))
                if any((i - 1) // self[src].n_par + 1 == group for src, i in targets):
                    out.add((k - 1) // s.n_par + 1)
        return sorted(out)

    def free_parameters(self):
        """List of (source, global index) of the free parameters, in XSPEC order."""
        return [(s.name, k + 1) for s in self for k, p in enumerate(s.params) if p.free]

    def set_value(self, source, index, value):
        p = self[source][index]
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise BadConfigError(f"must be a number, got {value!r}", field=f"{source}:p{index}") from None
        if not math.isfinite(value):
            raise BadConfigError("must be finite", field=f"{source}:p{index}")
        if not p.hard_min <= value <= p.hard_max:
            raise BadConfigError(f"{value:g} outside the hard limits [{p.hard_min:g}, {p.hard_max:g}]",
                                 field=f"{source}:p{index} ({p.component}.{p.name})")
        p.value = value

    def freeze(self, source, index, frozen=True):
        p = self[source][index]
        p.frozen = bool(frozen)
        if frozen:
            p.link = None

    def link(self, source, index, target_source, target_index, factor=1.0):
        """Link ``source:p<index>`` to ``factor × target``; refuses self-links and cycles."""
        self[target_source][target_index]  # validates the target exists
        factor = float(factor)
        if not math.isfinite(factor):
            raise BadConfigError("link factor must be finite", field=f"{source}:p{index}")
        p = self[source][index]
        old = p.link
        p.link = Link(factor, target_source, int(target_index))
        try:
            self.value(source, index)
        except BadConfigError:
            p.link = old
            raise
        p.frozen = False

    def unlink(self, source, index):
        """Remove a link, keeping the current numerical value as a free parameter."""
        p = self[source][index]
        if p.link is not None:
            p.value = self.value(source, index)
            p.link = None

    def copy(self):
        return copy.deepcopy(self)

    def __repr__(self):
        free = len(self.free_parameters())
        return f"ModelState({', '.join(f'{s.number}:{s.name}' for s in self)}; {free} free parameters)"
