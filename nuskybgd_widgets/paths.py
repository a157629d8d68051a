"""Path sandboxing for the dashboard: everything it reads or writes stays under a root.

The dashboard may be served to a browser, so a path typed into a widget is untrusted: it is
resolved against its root (the data root for observations, the workspace for outputs) and
refused when it leaves it, whether by ``..``, by an absolute path elsewhere, or through a
symbolic link that points outside. Outputs never replace an existing file: they get the next
free numbered name (``stem2.ext``, ``stem3.ext``, … as the engine's exporters do).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.io.files import numbered_path as _numbered_path

__all__ = ["UnsafePathError", "resolve_root", "resolve_under", "numbered_path"]


class UnsafePathError(BadConfigError):
    """A user-supplied path leaves its sandbox root (``..``, absolute elsewhere, symlink out)."""


def resolve_root(root, *, what="root", create=False):
    """The absolute, symlink-free form of a sandbox root (which must be a directory).

    Parameters
    ----------
    root : path-like
    what : str
        Name used in error messages (``data root``, ``workspace``).
    create : bool
        Make the directory (and parents) when missing.
    """
    if root is None or str(root).strip() == "":
        raise BadConfigError(f"no {what} given", field=what)
    p = Path(os.path.expanduser(os.fspath(root)))
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadFileError(f"cannot create the {what}: {exc.strerror or exc}", path=p) from None
    if not p.is_dir():
        raise BadFileError(f"{what} is not a directory", path=p)
    return p.resolve()


def resolve_under(root, path, *, what="path", must_exist=False):
    """Resolve ``path`` (relative to ``root``, or absolute inside it) and check it stays inside.

    Parameters
    ----------
    root : path-like
        The sandbox directory (resolved with :func:`resolve_root` first when needed).
    path : str or path-like
        What the user typed. ``..`` components are refused outright (even when the result
        would still be inside), so a path means what it says.
    what : str
        Field name for error messages.
    must_exist : bool
        Raise :class:`~nuskybgd_engine.errors.BadFileError` when the target is missing.

    Returns
    -------
    pathlib.Path
        Absolute path with symbolic links resolved.

    Raises
    ------
    UnsafePathError
        ``..``, an absolute path outside ``root``, or a symbolic link leading outside.
    """
    root = Path(root).resolve()
    if path is None:
        raise BadConfigError("no path given", field=what)
    text = os.fspath(path)
    if not isinstance(text, str):
        raise BadConfigError(f"path must be text, got {type(path).__name__}", field=what)
    if "\x00" in text:
        raise UnsafePathError("path contains a NUL character", field=what)
    pure = PurePath(text)
    if ".." in pure.parts:
        raise UnsafePathError(f"'..' is not allowed in {text!r}: give a path inside {root}", path=text, field=what)
    candidate = Path(text) if pure.is_absolute() else root / pure
    resolved = candidate.resolve()  # follows symlinks, so a link pointing outside is caught below
    if not resolved.is_relative_to(root):
        lexical = Path(os.path.normpath(candidate))
        reason = "is a symbolic link that leads outside" if lexical.is_relative_to(root) else "is outside"
        raise UnsafePathError(f"{reason} the allowed directory {root}", path=text, field=what)
    if must_exist and not resolved.exists():
        raise BadFileError("not found", path=text)
    return resolved


def numbered_path(directory, name):
    """A free path ``directory/name``, else ``stem2.ext``, ``stem3.ext`` … (never an existing file).

    The engine's :func:`~nuskybgd_engine.io.files.numbered_path`; a name with a directory part is
    refused as :class:`UnsafePathError`.
    """
    if PurePath(name).name != name or name in ("", ".", ".."):
        raise UnsafePathError(f"output name {name!r} must be a plain file name", field="name")
    return _numbered_path(directory, name)
