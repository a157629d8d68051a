"""Files on disk: atomic non-clobbering output, numbered free names, JSON read and write.

Every writer of the engine (and of the widgets) goes through :func:`atomic_output`, so an output
is either complete or absent and a user's file is never replaced unless asked; JSON goes through
:func:`write_json` / :func:`read_json` so that NaN is handled one way (written as ``null``) and
errors name the file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import tempfile
from pathlib import Path, PurePath

import numpy as np

from ..errors import BadConfigError, BadFileError, OutputExistsError

__all__ = ["check_writable", "atomic_output", "numbered_path", "write_numbered", "write_json", "read_json",
           "json_safe"]


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
    tmp = _temporary_name(path.parent, path.name)
    try:
        yield tmp
        if not tmp.exists():
            raise BadFileError("writer produced no file", path=path)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                _link_new(tmp, path)
            except FileExistsError:
                raise OutputExistsError("output exists (use overwrite=True / --overwrite)", path=path) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _temporary_name(directory, name):
    """A path in ``directory`` that does not exist now, for a file about to become ``name``."""
    # Keep a .gz suffix so writers that compress by file name (astropy) still do.
    suffix = ".tmp.gz" if name.endswith(".gz") else ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


def _link_new(tmp, path):
    """Give the complete file ``tmp`` the name ``path`` only if that name is free (FileExistsError if not).

    A hard link is created exclusively by the kernel, so two writers racing for one name cannot
    both win and none can replace the other's file. File systems without hard links get the same
    guarantee from an exclusive create (``O_EXCL``) of ``path`` that the rename then replaces.
    """
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    os.replace(tmp, path)


def _numbered_names(directory, name):
    """``directory/name``, then ``stem2.ext``, ``stem3.ext`` … (validating ``name``)."""
    directory = Path(directory)
    if PurePath(name).name != name or name in ("", ".", ".."):
        raise BadConfigError(f"output name {name!r} must be a plain file name", field="name")
    path = directory / name
    yield path
    for n in range(2, 100000):
        yield directory / f"{path.stem}{n}{path.suffix}"
    raise BadFileError("no free numbered name", path=path)


def numbered_path(directory, name):
    """A free path ``directory/name``, else ``stem2.ext``, ``stem3.ext`` … (never an existing file).

    A dangling symbolic link counts as taken, so the name it occupies is never written through.
    The name is free when returned, not reserved: a writer that may race with another process
    (the served dashboard) uses :func:`write_numbered`, which claims the name atomically.

    Raises
    ------
    BadConfigError
        ``name`` is not a plain file name (it has a directory part, or is ``.``/``..``).
    """
    for cand in _numbered_names(directory, name):
        if not cand.exists() and not cand.is_symlink():
            return cand


def write_numbered(directory, name, write):
    """Write a new file ``directory/name`` (or ``stem2.ext``, … when taken) without any race.

    ``write(tmp)`` writes the complete file to a temporary path in ``directory``; the file then
    takes the first free numbered name by an exclusive hard link (:func:`_link_new`), so two
    writers racing for the same name get two files (``name`` and ``stem2.ext``), never an
    error and never one file replacing the other.

    Parameters
    ----------
    directory : path-like
        Existing output directory.
    name : str
        Plain file name wanted.
    write : callable
        ``write(path)`` writes the output to ``path`` (which does not exist yet).

    Returns
    -------
    pathlib.Path
        The name the file got.
    """
    directory = Path(directory)
    names = _numbered_names(directory, name)
    first = next(names)
    if not directory.is_dir():
        raise BadFileError("output directory does not exist", path=directory)
    tmp = _temporary_name(directory, name)
    try:
        write(tmp)
        if not tmp.exists():
            raise BadFileError("writer produced no file", path=first)
        for cand in itertools.chain([first], names):
            try:
                _link_new(tmp, cand)
                return cand
            except FileExistsError:
                continue
    finally:
        if tmp.exists():
            tmp.unlink()


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
