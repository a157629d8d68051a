"""A fit's files: the background model as an XSPEC ``.xcm`` and the fit as ``NAME.json``.

Both take a fitted :class:`~nuskybgd_engine.analysis.BackgroundAnalysis` (any object with its
``state``, ``groups``, ``model``, ``apec``, ``options`` and ``result``); this package sits below
:mod:`nuskybgd_engine.fit` so that fit backends (PyXspec) can write the ``.xcm`` they load.
``NAME.json`` is read back by :func:`nuskybgd_engine.workflow.load_fit_json`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FitError
from ..io.files import atomic_output, write_json
from ..model.xcm_model import state_to_session
from ..xcm import format_xcm
from .writer import ExportWriter, group_files

__all__ = ["export_fit_xcm", "save_fit_json"]


def export_fit_xcm(analysis, path, *, statistic=None, overwrite=False):
    """Write the background model as an ``.xcm`` (and any response it needs) next to ``path``.

    Returns the list of files written (the ``.xcm`` first). File names inside the ``.xcm`` are
    relative to its directory (start XSPEC there) or absolute for real calibration files.
    """
    path = Path(path)
    statistic = statistic or (analysis.result.statistic if analysis.result else "chi")
    writer = ExportWriter(path.parent)
    files = group_files(analysis, writer)
    session = state_to_session(analysis.state, files, statistic=statistic, apec=analysis.apec.xspec_component(),
                               ignore=analysis.model.ignore,
                               comments=[f"nuskybgd-widgets background model ({len(files)} spectra); paths are "
                                         "relative to this file's directory"])
    text = format_xcm(session)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return [path] + writer.written


def save_fit_json(analysis, path, *, overwrite=False, sidecar=None):
    """``NAME.json``: statistic, value, dof and every parameter (source, group, name, value, error,
    frozen, link), plus what is needed to restore the fit (bgdinfo path, covariance)."""
    if analysis.result is None:
        raise FitError("no fit to save", field="fit")
    data = analysis.result.to_dict()
    info = getattr(analysis, "bgdinfo", None)
    data["bgdinfo"] = str(info.path.resolve()) if info is not None else None
    if getattr(info, "subset_of", None) is not None:  # one observation of a several-observation file
        data["observation"] = info.subset_of
    data["spectra"] = [g.name for g in analysis.groups]
    data["xcm"] = str(analysis.source_xcm) if getattr(analysis, "source_xcm", None) else None
    data["modules"] = [g.module for g in analysis.groups]
    data["options"] = analysis.options.to_dict()
    data["ignore"] = list(analysis.model.ignore)
    data["sidecar"] = sidecar  # NAME.npz of :func:`~nuskybgd_engine.fitcache.save_fit`, or None
    # An undetermined parameter has error NaN (and NaN covariance): written as null.
    return write_json(path, data, overwrite=overwrite)
