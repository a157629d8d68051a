"""Argument types shared by the steps' parsers (no step: the CLI skips modules starting with ``_``)."""

from __future__ import annotations

import argparse

__all__ = ["yes_no"]


def yes_no(value):
    """argparse type for the seed's yes/no (also true/false, 1/0) flags."""
    v = str(value).strip().lower()
    if v in ("yes", "y", "true", "t", "1", "on"):
        return True
    if v in ("no", "n", "false", "f", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")
