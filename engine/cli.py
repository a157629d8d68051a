"""The ``nuskybgd`` command: argument parsing and file I/O only, no science.

Each step lives in its own module of :mod:`nuskybgd_engine.commands` with a
``register(subparsers)`` function; a step exists in the CLI only when its module is there.
Arguments may be given as ``--key value`` or in the seed's ``key=value`` form; a value
starting with ``!`` (the HEASoft/seed overwrite prefix) sets ``--overwrite``.
Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys

from . import __version__
from .errors import NuSkyBgdError

_KEYVAL = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$", re.S)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit with status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def normalise_argv(argv):
    """Turn seed-style ``key=value`` tokens into ``--key value`` and ``!path`` into ``--overwrite``."""
    out = []
    overwrite = False
    for tok in argv:
        m = _KEYVAL.match(tok)
        if m and not tok.startswith("-"):
            key, value = m.group(1), m.group(2)
            if value.startswith("!"):
                overwrite, value = True, value[1:]
            out += [f"--{key.replace('_', '-')}", value]
        elif tok.startswith("!") and len(tok) > 1:
            overwrite = True
            out.append(tok[1:])
        else:
            out.append(tok)
    if overwrite and "--overwrite" not in out:
        out.append("--overwrite")
    return out


def yes_no(value):
    """argparse type for the seed's yes/no (also true/false, 1/0) flags."""
    v = str(value).strip().lower()
    if v in ("yes", "y", "true", "t", "1", "on"):
        return True
    if v in ("no", "n", "false", "f", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")


def add_drop_invalid(parser):
    """``--drop-invalid`` of the steps that read events (see ``read_events(drop_invalid=...)``)."""
    parser.add_argument("--drop-invalid", action="store_true",
                        help="leave out (and count) events with a value outside its column's TLMIN..TLMAX "
                             "(default: such events are an error)")


def build_parser():
    parser = _Parser(
        prog="nuskybgd",
        description="NuSTAR background modelling (Wik et al. 2014) without HEASoft or XSPEC.",
        epilog="Arguments may also be given as key=value, as in nuskybgd-py.",
    )
    parser.add_argument("--version", action="version", version=f"nuskybgd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="STEP", parser_class=_Parser)
    sub.required = True
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv=None):
    """Entry point of the ``nuskybgd`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(normalise_argv(argv))
    try:
        status = args.func(args)
    except NuSkyBgdError as exc:
        print(f"nuskybgd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nuskybgd {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
