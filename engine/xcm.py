"""XSPEC ``.xcm`` files: a neutral in-memory session, a reader and a writer (spec §4).

The reader never executes anything: it understands the subset of XSPEC commands that make up
a ``save all`` file (settings, ``data``, ``backgrnd``, ``response``, ``arf``, ``ignore``,
``notice``, ``model`` blocks, ``newpar``/``freeze``/``thaw``/``untie``, ``bayes``) and

* **refuses Tcl** (``puts``, ``set``, ``tclout``, ``proc``, ``if``, ``for``, ``foreach``,
  ``scan``, ``open``, ``source``, ... , ``@file`` includes, ``[ ... ]`` command and ``$``
  variable substitution, ``;`` separators, brace blocks, ``\\`` continuations) with a one-line
  :class:`~nuskybgd_engine.errors.BadFileError` naming the file and line;
* **ignores** interactive and output commands (``cpd``, ``setplot``, ``plot``, ``iplot``,
  ``fit``, ``query``, ``show``, ``log``, ``renorm``, ``error``, ``writefits``, ``steppar``,
  ``flux``, ...): they are listed in :attr:`XcmSession.notes`, never executed;
* **refuses** commands that would change the model or data in ways not represented here
  (``addcomp``, ``delcomp``, ``editmod``, ``mdefine``, ``lmod``, ``energies``, ``gain``,
  ``fakeit``, ``weight``, ...) and anything it does not know.

Parameter numbering follows XSPEC: in a model of ``n_par`` parameters per data group, the
**global** index of local parameter ``k`` (1-based) of group ``g`` is ``(g-1)*n_par + k``;
links reference global indices (``= 0.85*apbgd:p3``).

The writer follows the rules of spec §4.4 and reproduces ``example_fit.xcm`` byte for byte:
values are written with the shortest lossless representation (``repr``, without a trailing
``.0``), link factors as ``%e`` when that is lossless (else with as many digits as needed),
factor 1 as a bare reference.

File names in a written file are copied as given: relative names are relative to the
directory XSPEC is started in.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import BadConfigError, BadFileError
from .io.fitsutil import atomic_output
from .catalogue import XSPEC_MODEL_PARAMETERS, canonical_name, component_parameters

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


# ---------------------------------------------------------------------------------------------
# Known XSPEC components and their parameters
# ---------------------------------------------------------------------------------------------


#: XSPEC component name -> tuple of ParamSpec: :data:`nuskybgd_engine.catalogue.XSPEC_MODEL_PARAMETERS`.


# ---------------------------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------------------------


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
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")
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


def _component_names(types):
    seen, out = set(), []
    for i, t in enumerate(types, start=1):
        base = t.split("{")[0]
        out.append((f"{base}_{i}" if base in seen else base, t))
        seen.add(base)
    return out


def _component_sizes(types, n_lines=None, n_groups=1):
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
                      components=_component_names(types), n_params_per_group=n_par, params=list(params),
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
    if _NUMBER_RE.match(compact) and re.fullmatch(r"\d+", compact):
        return Link(1.0, current_model, int(compact), text.strip())
    factor, ref = 1.0, None
    for part in compact.split("*"):
        m = _REF_RE.match(part)
        if m and (m.group(1) is not None or m.group(2)):
            if ref is not None:
                raise ValueError(f"link {text.strip()!r} has more than one parameter reference")
            ref = (m.group(1) if m.group(1) is not None else current_model, int(m.group(3)))
        elif _NUMBER_RE.match(part):
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


# ---------------------------------------------------------------------------------------------
# Reader
# ---------------------------------------------------------------------------------------------

_TCL = {"puts", "set", "tclout", "tcloutr", "proc", "if", "else", "elseif", "for", "foreach", "while",
        "scan", "open", "close", "source", "gets", "read", "expr", "return", "incr", "lappend", "append",
        "global", "upvar", "switch", "catch", "eval", "format", "exec", "file", "array", "string",
        "list", "lindex", "llength", "unset", "break", "continue", "flush", "namespace", "package",
        "after", "cd", "pwd", "glob", "info", "regexp", "regsub", "split", "join", "uplevel", "rename",
        "variable", "exit", "quit", "clock", "fconfigure", "seek", "tell", "eof", "subst", "trace",
        "lsort", "lsearch", "lrange", "lreplace", "linsert", "concat", "dict", "apply", "lassign",
        "lset", "encoding", "load", "interp", "history", "time", "vwait", "update", "error",
        "unknown", "auto_load", "pid", "socket", "binary", "chan", "coroutine", "yield", "tailcall",
        "try", "throw", "zlib", "lmap", "lreverse", "lrepeat", "script", "log"}
# XSPEC's own `error`, `time`, `log`, `script`, `exit` shadow Tcl: those are handled as XSPEC
# interactive commands below (ignored), not refused.
_TCL -= {"error", "time", "log", "script", "exit", "quit"}

_IGNORED = {"cpd", "setplot", "plot", "iplot", "fit", "query", "show", "log", "renorm", "error", "writefits",
            "steppar", "flux", "lumin", "eqwidth", "goodness", "ftest", "chatter", "help", "version", "save",
            "exit", "quit", "wdata", "hardcopy", "autosave", "title", "identify", "margin", "lrt", "simftest",
            "rerror", "parallel", "chain", "time", "script", "abort", "visualize"}

_REFUSED = {"addcomp", "delcomp", "editmod", "mdefine", "lmod", "energies", "gain", "fakeit", "weight",
            "dummyrsp", "diagrsp", "corfile", "cornorm", "initpackage", "undo", "respar"}

_COMMANDS = ("statistic", "method", "abund", "xsect", "cosmo", "xset", "systematic", "bayes", "data",
             "backgrnd", "response", "arf", "ignore", "notice", "model", "newpar", "freeze", "thaw", "untie")
_SETTINGS = ("statistic", "method", "abund", "xsect", "cosmo", "systematic")

#: Abbreviations in use in real files (XSPEC accepts any unique prefix; these are the usual).
_ABBREV = {"back": "backgrnd", "resp": "response", "stat": "statistic", "meth": "method", "abun": "abund",
           "mo": "model", "da": "data", "new": "newpar", "xs": "xset"}

_SPEC_RE = re.compile(r"^(?:(\d+):)?(\d+)$")
_PARAM_START = re.compile(r"^\s*(?:[-+.\d=/]|$)")


class _Reader:
    def __init__(self, text, source):
        self.lines = text.splitlines()
        self.path = source
        self.s = XcmSession()
        self.param_lines = {}  # (model key, global index) -> line number, for error messages
        self.change_lines = []  # line number of each entry of s.newpars

    # -- errors ---------------------------------------------------------------------------
    def error(self, lineno, message):
        return BadFileError(message, path=self.path, field=f"line {lineno}")

    # -- main loop ------------------------------------------------------------------------
    def run(self):
        i = 0
        n = len(self.lines)
        while i < n:
            lineno = i + 1
            raw = self.lines[i]
            line = raw.strip()
            i += 1
            if not line or line.startswith("#"):
                continue
            self.check_tcl(lineno, line)
            words = line.split()
            cmd = words[0]
            lower = cmd.lower()
            if lower in _TCL:
                raise self.error(lineno, f"Tcl command {cmd!r} refused (the reader never executes Tcl)")
            if _PARAM_START.match(line):
                raise self.error(lineno, f"parameter line {line[:40]!r} outside a model block (too many "
                                 "parameter lines for the preceding model?)")
            command = self.resolve_command(lower)
            args = words[1:]
            rest = line[len(cmd):].strip()
            if command in ("exit", "quit"):
                # XSPEC stops reading the script here.
                self.s.notes.append(f"line {lineno}: {cmd!r}: the rest of the file is not read")
                break
            if command in _IGNORED:
                self.s.notes.append(f"line {lineno}: {cmd!r} ignored (interactive/output command, not executed)")
                if command == "iplot":
                    self.s.notes.append(f"line {lineno}: lines after 'iplot' are PLT commands for an "
                                        "interactive session; they are read as XSPEC commands here")
                continue
            if command in _REFUSED:
                raise self.error(lineno, f"XSPEC command {cmd!r} is not supported (it changes the model or data "
                                 "in a way this reader does not represent)")
            if command is None:
                raise self.error(lineno, f"unknown command {cmd!r}")
            if command == "model":
                i = self.read_model(lineno, rest, i)
                continue
            if command in _SETTINGS:
                self._setting(command, lineno, rest)
                continue
            getattr(self, f"cmd_{command}")(lineno, args, rest)
        self.check_groups()
        # Order carries no meaning in XSPEC; sorted, so that read(write(x)) == x.
        self.s.responses.sort(key=lambda r: (r.source, r.spectrum))
        self.s.arfs.sort(key=lambda r: (r.source, r.spectrum))
        return self.s

    def check_tcl(self, lineno, line):
        if line.startswith("@"):
            raise self.error(lineno, f"'@' script include refused ({line.split()[0]}): the reader never runs "
                             "other scripts")
        for ch, what in (("[", "Tcl command substitution '[ ... ]'"), ("$", "Tcl variable substitution '$'"),
                         (";", "Tcl command separator ';'")):
            if ch in line:
                raise self.error(lineno, f"{what} refused (the reader never executes Tcl)")
        if line.endswith("\\"):
            raise self.error(lineno, "line continuation '\\' refused (Tcl syntax)")
        stripped = re.sub(r"[ame]table\{[^{}]*\}", "", line)
        # A file{n} extension selection is XSPEC syntax; any other brace is a Tcl block.
        stripped = re.sub(r"(?<=\S)\{[^{}\s]*\}", "", stripped)
        if "{" in stripped or "}" in stripped:
            raise self.error(lineno, "Tcl brace block refused (the reader never executes Tcl)")

    @staticmethod
    def resolve_command(lower):
        if lower in _COMMANDS or lower in _IGNORED or lower in _REFUSED:
            return lower
        if lower in _ABBREV:
            return _ABBREV[lower]
        matches = [c for c in _COMMANDS if c.startswith(lower)] if len(lower) >= 3 else []
        if len(matches) == 1:
            return matches[0]
        return None

    # -- settings -------------------------------------------------------------------------
    def _need(self, lineno, args, what):
        if not args:
            raise self.error(lineno, f"'{what}' needs an argument")

    def _setting(self, key, lineno, rest):
        self._need(lineno, rest, key)
        self.s.settings[key] = " ".join(rest.split())

    def cmd_xset(self, lineno, args, rest):
        if len(args) < 2:
            raise self.error(lineno, "'xset' needs an option name and a value")
        self.s.settings[f"xset {args[0]}"] = " ".join(args[1:])

    def cmd_bayes(self, lineno, args, rest):
        self._need(lineno, rest, "bayes")
        value = " ".join(args)
        if value.lower() == "off":
            self.s.settings.pop("bayes", None)
        else:
            self.s.settings["bayes"] = value

    # -- data and responses ---------------------------------------------------------------
    def _pairs(self, lineno, args, what, default_first=1):
        """(prefix, number, file) triples from ``[[a:]n] file [[a:]n] file ...``."""
        out, i, nxt = [], 0, default_first
        if not args:
            raise self.error(lineno, f"'{what}' needs a file name")
        while i < len(args):
            m = _SPEC_RE.match(args[i])
            if m:
                if i + 1 >= len(args):
                    raise self.error(lineno, f"'{what}': number {args[i]!r} without a file name")
                prefix = int(m.group(1)) if m.group(1) else None
                number, file = int(m.group(2)), args[i + 1]
                i += 2
            else:
                prefix, number, file = None, nxt, args[i]
                i += 1
            if number < 1 or (prefix is not None and prefix < 1):
                raise self.error(lineno, f"'{what}': numbers must be >= 1")
            out.append((prefix, number, file))
            nxt = number + 1
        return out

    def cmd_data(self, lineno, args, rest):
        if self.s.models:
            raise self.error(lineno, "'data' after a model definition is not supported (the number of data "
                             "groups would change the parameter count)")
        for group, spec, file in self._pairs(lineno, args, "data"):
            if group is None:
                group = 1
                self.s.notes.append(f"line {lineno}: spectrum {spec} given without a data group: group 1 assumed")
            self.s.data = [d for d in self.s.data if d.spectrum != spec]
            if file.lower() != "none":
                self.s.data.append(DataEntry(group, spec, file))
        self.s.data.sort(key=lambda d: d.spectrum)

    def cmd_backgrnd(self, lineno, args, rest):
        for _, spec, file in self._pairs(lineno, args, "backgrnd"):
            self.s.backgrounds[spec] = file

    def _response(self, lineno, args, what, target):
        for source, spec, file in self._pairs(lineno, args, what):
            source = 1 if source is None else source
            kept = [r for r in target if (r.source, r.spectrum) != (source, spec)]
            target[:] = kept + [ResponseEntry(source, spec, file)]

    def cmd_response(self, lineno, args, rest):
        self._response(lineno, args, "response", self.s.responses)

    def cmd_arf(self, lineno, args, rest):
        self._response(lineno, args, "arf", self.s.arfs)

    def cmd_ignore(self, lineno, args, rest):
        self._need(lineno, rest, "ignore")
        if self.s.notice:
            self.s.notes.append(f"line {lineno}: 'ignore' after 'notice': a written file puts all ignores "
                                "before all notices")
        self.s.ignore.append(rest)

    def cmd_notice(self, lineno, args, rest):
        self._need(lineno, rest, "notice")
        self.s.notice.append(rest)

    def check_groups(self):
        groups = sorted({d.group for d in self.s.data})
        if groups and groups != list(range(1, len(groups) + 1)):
            raise BadFileError(f"data groups {groups} are not numbered 1..{len(groups)}", path=self.path,
                               field="data")

    # -- models ---------------------------------------------------------------------------
    def read_model(self, lineno, rest, i):
        if not rest:
            raise self.error(lineno, "'model' needs an expression")
        first = rest.split()[0]
        m = re.match(r"^(\d+):([A-Za-z_][A-Za-z0-9_]*)$", first)
        if m:
            source, name, expr = int(m.group(1)), m.group(2), rest[len(first):].strip()
        else:
            source, name, expr = 1, None, rest
        expr = " ".join(expr.split())
        if not expr:
            raise self.error(lineno, "'model' needs an expression")
        if expr.lower() in ("none", "clear"):
            self.s.models = [b for b in self.s.models if b.source != source]
            return i
        try:
            types = parse_expression(expr)
        except BadConfigError as exc:
            raise self.error(lineno, exc.reason) from None
        n_groups = self.s.n_groups
        # Lines belonging to the block (for inferring an unknown parameter count).
        sizes = [None if component_parameters(t) is None else len(component_parameters(t)) for t in types]
        label = f"{name or '<unnamed>'}"
        if None in sizes:
            count, j, last_nonblank = 0, i, 0
            while j < len(self.lines):
                text = self.lines[j].strip()
                if text.startswith("#"):
                    j += 1
                    continue
                if not _PARAM_START.match(self.lines[j]):
                    break
                if text.startswith("/"):
                    raise self.error(j + 1, f"'/' defaults cannot be used with model {label}: it contains a "
                                     "component whose parameter count is unknown")
                count += 1
                if text:
                    last_nonblank = count
                j += 1
            try:
                sizes = _component_sizes(types, last_nonblank, n_groups)
            except BadConfigError as exc:
                raise self.error(lineno, exc.reason) from None
            unknown = [t for t in types if component_parameters(t) is None]
            self.s.notes.append(f"line {lineno}: model {unknown[0]!r} (unknown here) taken to have "
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
                params.append(self.default_line(lineno, key, group, local, defaults, where))
                continue
            if i >= len(self.lines):
                raise self.error(i, f"file ends inside model {label}: {len(params)} of {total} parameter lines "
                                 f"({n_par} per group x {n_groups} group(s))")
            pl = i + 1
            text = self.lines[i].strip()
            i += 1
            if text.startswith("#"):
                self.s.notes.append(f"line {pl}: comment inside model {label} skipped")
                continue
            if text and not _PARAM_START.match(text):
                raise self.error(pl, f"expected {where} ({len(params)} of {total} lines read: {n_par} per group x "
                                 f"{n_groups} group(s)), found {text[:30]!r}")
            self.param_lines[(name or "", len(params) + 1)] = pl
            if text in ("", "/"):
                self.s.notes.append(f"line {pl}: {'blank' if not text else '/'} line for {where}: XSPEC default used")
                params.append(self.default_line(pl, key, group, local, defaults, where))
                continue
            if text == "/*":
                self.s.notes.append(f"line {pl}: '/*': XSPEC defaults for the rest of model {label}")
                rest_default = True
                continue
            if text.startswith("="):
                try:
                    link = parse_link(text[1:], key)
                except ValueError as exc:
                    raise self.error(pl, f"{where}: {exc}") from None
                params.append(link)
                continue
            params.append(self.value_line(pl, text, defaults[local - 1], where))
        # Redefining a model discards it (and parameter commands aimed at it).
        dropped = [c for c in self.s.newpars if c.model == key]
        if dropped:
            self.s.notes.append(f"line {lineno}: model {label} redefined: {len(dropped)} earlier parameter "
                                "command(s) for it discarded")
            keep = [j for j, c in enumerate(self.s.newpars) if c.model != key]
            self.s.newpars = [self.s.newpars[j] for j in keep]
            self.change_lines = [self.change_lines[j] for j in keep]
        others = [b for b in self.s.models if b.source != source and b.key != key]
        if len(others) != len(self.s.models):
            self.s.notes.append(f"line {lineno}: model for source {source} redefined")
        block = ModelBlock(source=source, name=name, expression=expr, components=_component_names(types),
                           n_params_per_group=n_par, params=params, component_sizes=sizes)
        self.s.models = others + [block]
        return i

    def default_line(self, lineno, key, group, local, defaults, where):
        if group >= 2:
            return Link(1.0, key, local, f"{key + ':' if key else ''}p{local}")
        spec = defaults[local - 1]
        if spec is None:
            raise self.error(lineno, f"{where}: no default known for a component unknown here")
        return ParamLine(spec.default, spec.delta)

    def value_line(self, lineno, text, spec, where):
        tokens = text.split()
        if len(tokens) > 6:
            raise self.error(lineno, f"{where}: more than six numbers")
        values = []
        for t in tokens:
            if not _NUMBER_RE.match(t):
                raise self.error(lineno, f"{where}: {t!r} is not a number")
            values.append(float(t))
        if not all(math.isfinite(v) for v in values):
            raise self.error(lineno, f"{where}: non-finite number")
        if len(values) == 1 and spec is not None:
            values.append(spec.delta)  # XSPEC keeps the default step (and frozen state)
        return ParamLine(*values)

    # -- parameter commands ---------------------------------------------------------------
    def _target(self, lineno, token, command):
        m = re.match(r"^(?:([A-Za-z_][A-Za-z0-9_]*):)?(\d+)(?:-(\d+))?$", token)
        if not m:
            raise self.error(lineno, f"'{command}': bad parameter reference {token!r} (expected name:K)")
        name = m.group(1) or ""
        lo = int(m.group(2))
        hi = int(m.group(3)) if m.group(3) else lo
        if lo < 1 or hi < lo:
            raise self.error(lineno, f"'{command}': bad parameter range {token!r}")
        return [(name, k) for k in range(lo, hi + 1)]

    def cmd_newpar(self, lineno, args, rest):
        if not args:
            raise self.error(lineno, "'newpar' needs a parameter")
        targets = self._target(lineno, args[0], "newpar")
        if len(targets) != 1:
            raise self.error(lineno, "'newpar' with a parameter range is not supported")
        name, k = targets[0]
        value = rest[len(args[0]):].strip()
        if not value:
            raise self.error(lineno, "'newpar' without a value would prompt interactively: refused")
        if value.startswith("="):
            try:
                line = parse_link(value[1:], name)
            except ValueError as exc:
                raise self.error(lineno, f"newpar {args[0]}: {exc}") from None
        else:
            tokens = value.split()
            if len(tokens) > 6 or not all(_NUMBER_RE.match(t) for t in tokens):
                raise self.error(lineno, f"newpar {args[0]}: expected up to six numbers or '= link'")
            line = ParamLine(*[float(t) for t in tokens])
        self.s.newpars.append(ParamChange("newpar", name, k, line))
        self.change_lines.append(lineno)

    def _simple_change(self, lineno, args, command):
        if not args:
            raise self.error(lineno, f"'{command}' needs a parameter")
        for token in args:
            for name, k in self._target(lineno, token, command):
                self.s.newpars.append(ParamChange(command, name, k))
                self.change_lines.append(lineno)

    def cmd_freeze(self, lineno, args, rest):
        self._simple_change(lineno, args, "freeze")

    def cmd_thaw(self, lineno, args, rest):
        self._simple_change(lineno, args, "thaw")

    def cmd_untie(self, lineno, args, rest):
        self._simple_change(lineno, args, "untie")


def parse_xcm(text, source=None):
    """Parse the text of an ``.xcm`` file into an :class:`XcmSession` (nothing is executed).

    Parameters
    ----------
    text : str
    source : str or os.PathLike, optional
        File name used in error messages.

    Raises
    ------
    BadFileError
        One line naming ``source`` and ``line N``: Tcl, unknown or unsupported commands,
        malformed numbers or links, wrong parameter line counts.
    """
    reader = _Reader(text, source)
    session = reader.run()
    try:
        validate(session)
    except BadConfigError as exc:
        node = getattr(exc, "node", None)
        lineno = reader.param_lines.get(node) if node else None
        if lineno is None and getattr(exc, "change", None) is not None:
            lineno = reader.change_lines[exc.change]
        field_ = f"line {lineno}" if lineno else exc.field
        raise BadFileError(exc.reason, path=source, field=field_) from None
    return session


def read_xcm(path):
    """Read an ``.xcm`` file (see :func:`parse_xcm`)."""
    path = Path(path)
    if not path.is_file():
        raise BadFileError("xcm file not found" if not path.exists() else "expected an xcm file, found a directory",
                           path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadFileError("xcm file is not text (UTF-8)", path=path) from None
    except OSError as exc:
        raise BadFileError(f"cannot read xcm file: {exc.strerror or exc}", path=path) from None
    return parse_xcm(text, source=path)


# ---------------------------------------------------------------------------------------------
# Validation and evaluation
# ---------------------------------------------------------------------------------------------


def _label(key):
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
            raise BadConfigError(f"two models named {_label(b.key)!r}", field="models")
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
            where = f"model {_label(src[0])} parameter {src[1]}" if src else "link"
            raise _node_error(f"{where} links to {_label(key)}:p{index}, which does not exist",
                              f"model {_label(src[0]) if src else _label(key)}", src)
        if state.get(node) == "visiting":
            cycle = " -> ".join(f"{_label(k)}:p{i}" for k, i in chain + [node])
            raise _node_error(f"link cycle {cycle}", f"model {_label(key)}", node)
        state[node] = "visiting"
        p = block.params[index - 1]
        if isinstance(p, Link):
            if (p.model, p.index) == node:
                raise _node_error(f"parameter {index} is linked to itself", f"model {_label(key)}", node)
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
        where = f"model {_label(b.key)}"
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


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def format_number(x):
    """Shortest lossless decimal form of ``x`` (``repr``) without a trailing ``.0``."""
    x = float(x)
    if not math.isfinite(x):
        raise BadConfigError(f"cannot write non-finite number {x!r}", field="number")
    return repr(x).removesuffix(".0")


def format_factor(x):
    """Link factor in XSPEC's ``%e`` style, with more digits only when ``%e`` would lose bits."""
    x = float(x)
    if not math.isfinite(x):
        raise BadConfigError(f"cannot write non-finite link factor {x!r}", field="link")
    for digits in range(6, 17):
        text = f"{x:.{digits}e}"
        if float(text) == x:
            return text
    return repr(x)


def _format_link(link):
    ref = f"{link.model + ':' if link.model else ''}p{link.index}"
    return f"= {ref}" if link.factor == 1.0 else f"= {format_factor(link.factor)}*{ref}"


def _format_param(p, where):
    if isinstance(p, Link):
        return _format_link(p)
    nums = [p.value, p.delta, p.hard_min, p.soft_min, p.soft_max, p.hard_max]
    while nums and nums[-1] is None:
        nums.pop()
    if any(v is None for v in nums):
        raise BadConfigError("value line with a gap (a later number given after a missing one)", field=where)
    try:
        return " ".join(format_number(v) for v in nums)
    except BadConfigError as exc:
        raise BadConfigError(exc.reason, field=where) from None


_BAD_NAME = re.compile(r"[\s{}\[\]$;\"]")


def _file(name, where):
    name = str(name)
    if not name or _BAD_NAME.search(name):
        raise BadConfigError(f"file name {name!r} cannot be written to an xcm file (no spaces, braces, brackets, "
                             "'$', ';' or quotes)", field=where)
    return name


def _text(value, where):
    value = str(value).strip()
    if not value or "\n" in value or "\r" in value or re.search(r"[\[\]{}$;\\]", value) or value.startswith("@"):
        raise BadConfigError(f"value {value!r} cannot be written (empty or Tcl characters)", field=where)
    return value


def format_xcm(session):
    """The ``.xcm`` text of a session, following the writer rules of spec §4.4.

    Order: settings (``abund angr`` unless set otherwise) -> ``data`` -> ``backgrnd`` ->
    ``response``/``arf`` by source and spectrum -> ``ignore`` -> ``notice`` -> models -> parameter
    commands -> ``bayes off``. No Tcl, no fit, no plot. The session is validated first.
    """
    validate(session)
    lines = []
    for text in session.comments:
        for part in str(text).splitlines() or [""]:
            lines.append(f"# {part}".rstrip())
    settings = dict(session.settings)
    settings.setdefault("abund", "angr")
    bayes = settings.pop("bayes", "off")
    known = set(_SETTINGS) | {k for k in settings if k.startswith("xset ")}
    for k in settings:
        if k not in known:
            raise BadConfigError(f"unknown setting {k!r} (known: {', '.join(_SETTINGS)}, 'xset <name>')",
                                 field="settings")
    for key in ("statistic", "method", "abund", "xsect", "cosmo"):
        if key in settings:
            lines.append(f"{key} {_text(settings[key], key)}")
    for key, value in settings.items():
        if key.startswith("xset "):
            lines.append(f"xset {_text(key[5:], 'settings')} {_text(value, key)}")
    if "systematic" in settings:
        lines.append(f"systematic {_text(settings['systematic'], 'systematic')}")
    for d in sorted(session.data, key=lambda d: d.spectrum):
        lines.append(f"data {int(d.group)}:{int(d.spectrum)} {_file(d.file, f'data {d.spectrum}')}")
    for spec in sorted(session.backgrounds):
        lines.append(f"backgrnd {int(spec)} {_file(session.backgrounds[spec], f'backgrnd {spec}')}")
    arfs = {(a.source, a.spectrum): a for a in session.arfs}
    resp_keys = {(r.source, r.spectrum) for r in session.responses}
    orphan = sorted(set(arfs) - resp_keys)
    if orphan:
        raise BadConfigError(f"arf {orphan[0][0]}:{orphan[0][1]} without a response for that source and spectrum",
                             field="arfs")
    for r in sorted(session.responses, key=lambda r: (r.source, r.spectrum)):
        lines.append(f"response {int(r.source)}:{int(r.spectrum)} {_file(r.file, f'response {r.source}:{r.spectrum}')}")
        a = arfs.get((r.source, r.spectrum))
        if a is not None:
            lines.append(f"arf {int(a.source)}:{int(a.spectrum)} {_file(a.file, f'arf {a.source}:{a.spectrum}')}")
    for text in session.ignore:
        lines.append(f"ignore {_text(text, 'ignore')}")
    for text in session.notice:
        lines.append(f"notice {_text(text, 'notice')}")
    sources_with_resp = {r.source for r in session.responses}
    for b in session.models:
        where = f"model {_label(b.key)}"
        if b.source != 1 and b.source not in sources_with_resp:
            raise BadConfigError(f"source {b.source} has no 'response {b.source}:s' line (XSPEC needs responses "
                                 "before a named model)", field=where)
        if b.name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", b.name):
            raise BadConfigError(f"bad model name {b.name!r}", field=where)
        expr = " ".join(b.expression.split())
        if re.search(r"[\[\]$;\\]", expr):
            raise BadConfigError(f"expression {expr!r} contains Tcl characters", field=where)
        head = f"model {b.source}:{b.name} {expr}" if b.name is not None else f"model {expr}"
        lines.append(head)
        for k, p in enumerate(b.params, start=1):
            lines.append(_format_param(p, f"{where} parameter {k}"))
    for ch in session.newpars:
        ref = f"{ch.model + ':' if ch.model else ''}{ch.index}"
        if ch.command == "newpar":
            body = _format_param(ch.line, f"newpar {ref}")
            lines.append(f"newpar {ref} {body}")
        elif ch.command in ("freeze", "thaw", "untie"):
            lines.append(f"{ch.command} {ref}")
        else:
            raise BadConfigError(f"unknown parameter command {ch.command!r}", field="newpars")
    lines.append(f"bayes {_text(bayes, 'bayes')}")
    return "\n".join(lines) + "\n"


def write_xcm(session, path, overwrite=False):
    """Write ``session`` to ``path`` (atomically; never replaces a file unless ``overwrite``).

    Returns the path written.
    """
    text = format_xcm(session)
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return path
