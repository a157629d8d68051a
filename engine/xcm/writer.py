"""Writing an :class:`~.session.XcmSession` as an ``.xcm`` file (spec §4.4).

The writer follows the rules of spec §4.4 and reproduces ``example_fit.xcm`` byte for byte:
values are written with the shortest lossless representation (``repr``, without a trailing
``.0``), link factors as ``%e`` when that is lossless (else with as many digits as needed),
factor 1 as a bare reference.

File names in a written file are copied as given: relative names are relative to the
directory XSPEC is started in.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import BadConfigError
from ..io.files import atomic_output
from .session import Link
from .tables import SETTINGS
from .validate import label, validate

__all__ = ["format_xcm", "write_xcm", "format_number", "format_factor"]


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
    known = set(SETTINGS) | {k for k in settings if k.startswith("xset ")}
    for k in settings:
        if k not in known:
            raise BadConfigError(f"unknown setting {k!r} (known: {', '.join(SETTINGS)}, 'xset <name>')",
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
        where = f"model {label(b.key)}"
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
