"""The argument forms of nuskybgd-py and IDL nuskybgd: which file is which, by content.

The seed writes ``simplify bgdinfo.json bgd_src.xcm`` and ``image bgdinfo.json fit.xcm EMIN EMAX``;
we also accept the fit's ``NAME.json`` in place of both. Files are told apart by what they contain,
not by their order or suffix, so any order a user types works.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BadConfigError

__all__ = ["file_kind", "sort_inputs"]

#: What each kind is, for error messages.
KINDS = {"bgdinfo": "bgdinfo.json", "fit": "fit NAME.json (`nuskybgd fit --run`)", "xcm": "XSPEC .xcm"}


def file_kind(path):
    """``'bgdinfo'``, ``'fit'`` (a saved fit NAME.json) or ``'xcm'`` for the file ``path``.

    Raises
    ------
    BadConfigError
        When the file does not exist or is none of these.
    """
    path = Path(path)
    if not path.is_file():
        raise BadConfigError("file not found", path=path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise BadConfigError(f"cannot read ({exc})", path=path) from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadConfigError(f"not valid JSON ({exc})", path=path) from None
        if isinstance(data, dict) and "bgfiles" in data:
            return "bgdinfo"
        if isinstance(data, dict) and "parameters" in data and "bgdinfo" in data:
            return "fit"
        raise BadConfigError("a JSON file that is neither a bgdinfo.json (no 'bgfiles') nor a fit NAME.json",
                             path=path)
    first = next((ln.split()[0].lower() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")),
                 "")
    if first in {"statistic", "data", "model", "method", "abund", "xsect", "cosmo", "xset", "query", "response",
                 "resp", "arf", "ignore", "notice", "systematic", "back", "backgrnd", "setplot", "cpd", "fit",
                 "newpar", "bayes", "weight", "parallel", "set", "puts"}:
        return "xcm"
    raise BadConfigError("neither a bgdinfo.json, a fit NAME.json nor an XSPEC .xcm", path=path)


def sort_inputs(paths, wanted):
    """Map each of ``paths`` to its kind; every kind in ``wanted`` (a set) must appear at most once.

    Returns
    -------
    dict
        kind -> Path
    """
    out = {}
    for p in paths:
        kind = file_kind(p)
        if kind not in wanted:
            raise BadConfigError(f"is a {KINDS[kind]}; expected {' or '.join(KINDS[k] for k in sorted(wanted))}",
                                 path=p)
        if kind in out:
            raise BadConfigError(f"two {KINDS[kind]} files given ({out[kind].name} and {Path(p).name})", path=p)
        out[kind] = Path(p)
    return out
