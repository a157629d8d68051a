"""Argument types shared by the steps' parsers (no step: the CLI skips modules starting with ``_``)."""

from __future__ import annotations

import argparse

__all__ = ["yes_no", "add_drop_invalid", "add_obs_option", "use_obs"]


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


def add_obs_option(parser, what="the region(s) and outputs refer to"):
    """``--obs KEY``: the observation of a several-observation bgdinfo.json ``what`` (its ``key``)."""
    parser.add_argument("--obs", default=None, metavar="KEY",
                        help=f"observation {what}, when the bgdinfo.json holds several ('observations' keys)")


def use_obs(analysis, key):
    """Select observation ``key`` of ``analysis`` (nothing when ``key`` is None); returns the analysis."""
    return analysis if key is None else analysis.use_observation(key)
