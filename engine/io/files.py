"""Files on disk: atomic non-clobbering output, numbered free names, JSON read and write.

Every writer of the engine (and of the widgets) goes through :func:`atomic_output`, so an output
is either complete or absent and a user's file is never replaced unless asked; JSON goes through
:func:`write_json` / :func:`read_json` so that NaN is handled one way (written as ``null``) and
errors name the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path, PurePath

import numpy as np

from ..errors import BadConfigError, BadFileError, OutputExistsError

__all__ = ["check_writable", "atomic_output", "numbered_path", "write_json", "read_json", "json_safe"]


def check_writable(path, *, overwrite=False):
    """Raise a one-line error unless ``path`` can be written (directory exists, no clobbering)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("output exists (use overwrite=True / --overwrite)", path=path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadFileError("output directory does not exist", path=parent)
    if not os.access(parent, os.W_OK):
        raise BadFileError("output directory is not writable", path=parent)


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False):
    """Context manager yielding a temporary path; on success it becomes ``path`` atomically.

    Without ``overwrite`` an existing ``path`` is never replaced, even if it appears while
    the output is written (the final step is a hard link, which fails if the name exists).
    On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    # Keep a .gz suffix so writers that compress by file name (astropy) still do.
    suffix = ".tmp.gz" if path.name.endswith(".gz") else ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise BadFileError("writer produced no file", path=path)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError("output exists (use overwrite=True / --overwrite)", path=path) from None
            except OSError:
                # File systems without hard links: fall back to a checked rename.
                if path.exists():
                    raise OutputExistsError("output exists (use overwrite=True / --overwrite)", path=path) from None
                os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def numbered_path(directory, name):
    """A free path ``directory/name``, else ``stem2.ext``, ``stem3.ext`` … (never an existing file).

    A dangling symbolic link counts as taken, so the name it occupies is never written through.

    Raises
    ------
    BadConfigError
        ``name`` is not a plain file name (it has a directory part, or is ``.``/``..``).
    """
    directory = Path(directory)
    if PurePath(name).name != name or name in ("", ".", ".."):
        raise BadConfigError(f"output name {name!r} must be a plain file name", field="name")
    path = directory / name
    if not path.exists() and not path.is_symlink():
        return path
    stem, suffix = path.stem, path.suffix
    for n in range(2, 100000):
        cand = directory / f"{stem}{n}{suffix}"
        if not cand.exists() and not cand.is_symlink():
            return cand
    raise BadFileError("no free numbered name", path=path)


def json_safe(obj):
    """``obj`` with NaN/±inf floats as None and numpy scalars/arrays and paths as plain Python.

    JSON has no NaN: an undetermined value is written as ``null``.
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def write_json(path, data, *, overwrite=False, indent=1):
    """Write ``data`` as JSON atomically (see :func:`atomic_output`); NaN and ±inf become ``null``.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    try:
        text = json.dumps(json_safe(data), indent=indent, allow_nan=False)
    except TypeError as exc:
        raise BadConfigError(f"cannot be written as JSON ({exc})", path=path) from None
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def read_json(path, *, not_found="file not found", invalid="not valid JSON ({exc})"):
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
