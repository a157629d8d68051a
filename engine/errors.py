"""Exceptions of nuskybgd_engine.

Every error a user can trigger is a :class:`NuSkyBgdError`. Its message is one line that names
the file, the FITS extension and the field involved, so the CLI can print it as is.
"""

from __future__ import annotations

import math
import os

__all__ = [
    "NuSkyBgdError",
    "BadFileError",
    "BadRegionError",
    "BadConfigError",
    "CalibrationNotFoundError",
    "positive_number",
    "OutputExistsError",
    "FitError",
]


class NuSkyBgdError(Exception):
    """Base class of all errors raised for bad input or failed steps.

    Parameters
    ----------
    message : str
        What is wrong, in words a user understands.
    path : str or os.PathLike, optional
        The file concerned.
    extension : str or int, optional
        The FITS extension (name or index) concerned.
    field : str, optional
        The column, keyword, JSON key or option concerned.
    """

    def __init__(self, message, *, path=None, extension=None, field=None):
        self.reason = str(message)
        self.path = os.fspath(path) if path is not None else None
        self.extension = extension
        self.field = field
        super().__init__(self._format())

    def _format(self):
        where = ""
        if self.path is not None:
            where = self.path
            if self.extension is not None:
                where += f"[{self.extension}]"
        elif self.extension is not None:
            where = f"[{self.extension}]"
        if self.field is not None:
            where = f"{where} {self.field}" if where else str(self.field)
        text = f"{where}: {self.reason}" if where else self.reason
        return " ".join(text.split("\n"))


class BadFileError(NuSkyBgdError):
    """A file is missing, unreadable, truncated, of the wrong kind or lacks a required field."""


class BadRegionError(NuSkyBgdError):
    """A region file or region object cannot be used (syntax, shape, outside the image)."""


class BadConfigError(NuSkyBgdError):
    """A configuration value (JSON key, CLI option, widget value) is invalid."""


class CalibrationNotFoundError(NuSkyBgdError):
    """No calibration source provides a required file."""


class OutputExistsError(NuSkyBgdError):
    """An output file exists and overwriting was not requested."""


class FitError(NuSkyBgdError):
    """A fit could not be set up or did not converge."""


def positive_number(value, *, field, what):
    """``value`` as a finite float > 0, else a :class:`BadConfigError` naming ``what`` and ``field``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadConfigError(f"{what} must be a number, got {value!r}", field=field) from None
    if not (math.isfinite(number) and number > 0):
        raise BadConfigError(f"{what} must be > 0, got {number:g}", field=field)
    return number
