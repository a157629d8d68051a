"""Reading XSPEC ``.xcm`` files into an :class:`~.session.XcmSession` (spec §4).

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
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import BadConfigError, BadFileError
from .blocks import read_model
from .session import NUMBER_RE, DataEntry, ParamChange, ParamLine, ResponseEntry, XcmSession, parse_link
from .tables import ABBREV, COMMANDS, IGNORED, PARAM_START, REFUSED, SETTINGS, TCL
from .validate import validate

__all__ = ["parse_xcm", "read_xcm"]

_SPEC_RE = re.compile(r"^(?:(\d+):)?(\d+)$")


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
            if lower in TCL:
                raise self.error(lineno, f"Tcl command {cmd!r} refused (the reader never executes Tcl)")
            if PARAM_START.match(line):
                raise self.error(lineno, f"parameter line {line[:40]!r} outside a model block (too many "
                                 "parameter lines for the preceding model?)")
            command = self.resolve_command(lower)
            args = words[1:]
            rest = line[len(cmd):].strip()
            if command in ("exit", "quit"):
                # XSPEC stops reading the script here.
                self.s.notes.append(f"line {lineno}: {cmd!r}: the rest of the file is not read")
                break
            if command in IGNORED:
                self.s.notes.append(f"line {lineno}: {cmd!r} ignored (interactive/output command, not executed)")
                if command == "iplot":
                    self.s.notes.append(f"line {lineno}: lines after 'iplot' are PLT commands for an "
                                        "interactive session; they are read as XSPEC commands here")
                continue
            if command in REFUSED:
                raise self.error(lineno, f"XSPEC command {cmd!r} is not supported (it changes the model or data "
                                 "in a way this reader does not represent)")
            if command is None:
                raise self.error(lineno, f"unknown command {cmd!r}")
            if command == "model":
                i = read_model(self, lineno, rest, i)
                continue
            if command in SETTINGS:
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
        if lower in COMMANDS or lower in IGNORED or lower in REFUSED:
            return lower
        if lower in ABBREV:
            return ABBREV[lower]
        matches = [c for c in COMMANDS if c.startswith(lower)] if len(lower) >= 3 else []
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
            if len(tokens) > 6 or not all(NUMBER_RE.match(t) for t in tokens):
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
