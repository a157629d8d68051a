"""Reading a user's JSON file with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BadConfigError

__all__ = ["read_json"]


def read_json(path, *, not_found, invalid):
    """The parsed contents of the JSON file ``path``.

    Parameters
    ----------
    not_found : str
        Message of the ``BadConfigError`` raised when the file does not exist.
    invalid : str
        Message when it cannot be read or parsed; ``{exc}`` is replaced by the reason,
        e.g. ``"not valid JSON ({exc})"``.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadConfigError(not_found, path=path) from None
    except (OSError, ValueError) as exc:
        raise BadConfigError(invalid.format(exc=exc), path=path) from None
