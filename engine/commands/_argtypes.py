"""Argument types shared by the steps' parsers (no step: the CLI skips modules starting with ``_``)."""

from __future__ import annotations

import argparse

__all__ = ["yes_no", "add_drop_invalid"]


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
