"""Where the maps find their calibration files (auxil: detX_det1.img.gz, detnum, pixmap ...; CALDB products)."""

from __future__ import annotations

from pathlib import Path

from ..calibration.nominal import NOMINAL_PROVIDERS
from ..calibration.resolver import resolve
from ..errors import BadFileError, CalibrationNotFoundError

__all__ = ["_auxil_path", "_auxil_data", "_caldb_path"]


def _auxil_path(name, path=None, *, auxil_dir=None, module=None):
    """Path of the auxil file ``name``.

    Order: an explicit ``path``; ``auxil_dir/name``; the calibration resolver
    (:func:`nuskybgd_engine.calibration.resolve`: ``$NUSKYBGD_AUXIL``, user cache). An answer of
    source ``'nominal'`` (no file) counts as not found for now.

    Raises
    ------
    BadFileError
        An explicit ``path`` does not exist.
    CalibrationNotFoundError
        No source provides the file.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BadFileError(f"calibration file {name} not found", path=path)
        return path
    if auxil_dir is not None:
        candidate = Path(auxil_dir) / name
        if not candidate.is_file():
            raise CalibrationNotFoundError(f"calibration file {name} not found in the auxil directory",
                                           path=candidate)
        return candidate
    found = resolve(name)
    if found.source == "nominal" or found.path is None:
        raise CalibrationNotFoundError(
            f"calibration file {name} not found (set NUSKYBGD_AUXIL or run `nuskybgd auxil fetch`)", field=name)
    return Path(found.path)


def _auxil_data(name, reader, path=None, *, auxil_dir=None, module=None):
    """Contents of auxil file ``name``: ``reader(path)`` of the file found, else the embedded nominal copy.

    Same search order as :func:`_auxil_path`; when only the nominal calibration provides ``name``
    its in-memory approximation is returned instead of raising.
    """
    if path is None and auxil_dir is None:
        found = resolve(name)
        if found.source == "nominal":
            return NOMINAL_PROVIDERS[name]()
        return reader(Path(found.path))
    return reader(_auxil_path(name, path, auxil_dir=auxil_dir, module=module))


def _caldb_path(product, module, date=None):
    """Path of a CALDB product (``$CALDB`` look-up), or None when CALDB does not provide it."""
    try:
        found = resolve(product, module=module, date=date, allow_nominal=False)
    except CalibrationNotFoundError:
        return None
    return Path(found.path) if found.source in ("caldb", "path") and found.path is not None else None
