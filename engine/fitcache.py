"""The sidecar of a saved fit: ``NAME.json`` reopens without re-reading its spectra and responses.

``nuskybgd fit --run`` writes ``NAME.json`` (the parameters and covariance) and, next to it, the
sidecar ``NAME.npz`` that ``NAME.json`` names (key ``sidecar``). The sidecar holds everything the
later steps (predict, spec, bgdspec, image, simplify) take from the inputs:

* per background spectrum: counts, exposure, grouping/quality, region weights, the aperture and
  fcxb ARFs, and its response by content hash (the matrix itself is read from the response cache,
  :mod:`~.io.responsecache`, only by a step that folds something new);
* the unit-norm folded templates of every (spectrum, source) at the fitted shapes, so that no
  response is folded again;
* the fingerprint of every input file (bgdinfo.json, reference image, projected maps, spectra,
  regions, RMFs: path, size, mtime_ns, sha256), the sha256 of ``NAME.json``, the calibration
  environment and the engine version.

A sidecar is used only when all of these still match (an input's content is compared by
:func:`~.io.responsecache.content_hash`, hashed again whenever size, mtime or inode changed);
otherwise the inputs are read as before, a one-line message says why, and the sidecar is
rebuilt. Arrays are stored as they are in memory (float64), so a reopened fit predicts the same
numbers bit for bit. The projected maps stay in their FITS files and are read when a step needs
a module's maps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import __version__
from .analysis import BackgroundAnalysis
from .bgdinfo import read_bgdinfo
from .calibration.products import load_diag_rmf, load_rmf
from .errors import NuSkyBgdError
from .export import save_fit_json
from .groups import read_projected_maps
from .idl import apply_bgdinfo_options
from .io.regions import grid_from_fits
from .io.responsecache import LazyResponse, write_cache_file, content_hash
from .model.background import BackgroundOptions, RegionWeights
from .model.folding import GroupData
from .model.tablemodel import register_grxe_table

__all__ = ["sidecar_path", "sidecar_name", "write_sidecar", "read_sidecar", "open_fit", "FORMAT"]

#: Layout version of the sidecar (another version is rebuilt).
FORMAT = 1

log = logging.getLogger(__name__)


def sidecar_path(fit_path, name=None):
    """The sidecar next to ``fit_path``: ``name`` (a bare file name, as NAME.json gives it), by
    default ``NAME.npz``."""
    fit_path = Path(fit_path)
    return fit_path.with_name(name or fit_path.stem + ".npz")


def _is_sidecar(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            return "meta" in z.files and json.loads(str(z["meta"])).get("format") is not None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def sidecar_name(analysis, fit_path):
    """The sidecar name NAME.json will carry, or None (no bgdinfo to fingerprint, or a file of
    that name that is not a sidecar is in the way: it is never replaced)."""
    if getattr(analysis, "bgdinfo", None) is None:
        return None
    if getattr(analysis, "joint", None) is not None or getattr(analysis.bgdinfo, "subset_of", None) is not None:
        return None  # several observations (or one of them): reopened from their inputs
    path = sidecar_path(fit_path)
    if path.exists() and not _is_sidecar(path):
        log.warning("nuskybgd: %s exists and is not a fit sidecar; not replaced (the fit reopens from its "
                    "inputs)", path)
        return None
    return path.name


def _engine_version():
    return __version__


def _calibration_env():
    return [os.environ.get(k) for k in ("NUSKYBGD_AUXIL", "CALDB", "NUSKYBGD_CACHE", "XDG_CACHE_HOME")]


def _input_files(analysis):
    info = analysis.bgdinfo
    files = [info.path, info.refimgf]
    for m in sorted(info.bgdapfiles):
        files.append(info.bgdapfiles[m])
        files.extend(info.bgddetfiles[m])
    files.extend(info.grxefiles[m] for m in sorted(info.grxefiles))
    files.extend(info.bgfiles)
    files.extend(info.regfiles)
    files.extend(g.files["rmf"] for g in analysis.groups if g.files.get("rmf") not in (None, "nominal"))
    out, seen = [], set()
    for p in files:
        p = str(Path(p).resolve())
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _fingerprint(path):
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": content_hash(path)}


def _changed_input(inputs):
    """The first input file that changed (or vanished) since the sidecar was written, else None."""
    for rec in inputs:
        try:
            if content_hash(rec["path"]) != rec["sha256"]:
                return rec["path"]
        except Exception:  # noqa: BLE001 - unreadable or gone: changed
            return rec["path"]
    return None


def _fit_hash(fit_path):
    return hashlib.sha256(Path(fit_path).read_bytes()).hexdigest()


def write_sidecar(analysis, fit_path, name=None):
    """Write the sidecar ``name`` (default NAME.npz) of ``analysis`` (fitted, built by
    ``from_bgdinfo``) next to ``fit_path``, at the current parameter values.

    Returns the sidecar path, or None when it cannot be written (a message says why; the fit
    then reopens from its inputs, as without a sidecar).
    """
    if getattr(analysis, "bgdinfo", None) is None:
        return None
    arrays = {}
    responses, rindex, groups, templates = [], {}, [], []
    for i, g in enumerate(analysis.groups):
        rmf = g.rmf
        if id(rmf) not in rindex:
            src = g.files.get("rmf")
            digest = getattr(rmf, "digest", None)
            if digest is None:
                if src in (None, "nominal"):
                    digest = None  # rebuilt from the calibration (cached in this process)
                else:
                    digest = content_hash(src)
            j = len(responses)
            rindex[id(rmf)] = j
            responses.append({"digest": digest, "source": None if src in (None, "nominal") else str(Path(src).resolve()),
                              "shape": [rmf.n_energies, rmf.n_channels], "first_channel": int(rmf.first_channel),
                              "module": rmf.module,
                              "header": {k: v for k, v in rmf.header.items()
                                         if isinstance(v, (str, int, float, bool)) or v is None}})
            for k in ("energ_lo", "energ_hi", "e_min", "e_max", "channel"):
                arrays[f"r{j}_{k}"] = np.asarray(getattr(rmf, k))
        w = g.weights
        groups.append({"name": g.name, "module": g.module, "exposure": float(g.exposure), "files": dict(g.files),
                       "rmf": rindex[id(rmf)], "grouping": g.grouping is not None, "quality": g.quality is not None,
                       "weights": {"W": float(w.W), "A": [float(a) for a in w.A], "module": w.module,
                                   "name": w.name, "G": None if w.G is None else float(w.G)}})
        arrays[f"g{i}_counts"] = g.counts
        arrays[f"g{i}_ap_arf"] = g.ap_arf
        arrays[f"g{i}_fcxb_arf"] = g.fcxb_arf
        if g.grouping is not None:
            arrays[f"g{i}_grouping"] = np.asarray(g.grouping)
        if g.quality is not None:
            arrays[f"g{i}_quality"] = np.asarray(g.quality)
        for source, entries in analysis.model.folded_templates(i + 1).items():
            key = f"t{i}_{source}"
            templates.append({"group": i, "source": source, "key": key,
                              "shapes": [[ctype, list(shape)] for (ctype, shape), _t in entries]})
            arrays[key] = np.stack([t for _w, t in entries])
    meta = {"format": FORMAT, "engine": _engine_version(), "fit_sha256": _fit_hash(fit_path),
            "calibration_env": _calibration_env(), "bgdinfo": str(Path(analysis.bgdinfo.path).resolve()),
            "inputs": [_fingerprint(p) for p in _input_files(analysis)], "groups": groups,
            "responses": responses, "templates": templates, "ignore": list(analysis.model.ignore)}
    arrays["meta"] = np.array(json.dumps(meta))
    path = sidecar_path(fit_path, name)
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return path if write_cache_file(path, write) else None


class _LazyMaps(Mapping):
    """The projected maps of each module, read from their FITS files when first used."""

    def __init__(self, info):
        self._info = info
        self._maps = {}

    def __getitem__(self, m):
        if m not in self._info.bgdapfiles:
            raise KeyError(m)
        if m not in self._maps:
            self._maps[m] = read_projected_maps(self._info.bgdapfiles[m], self._info.bgddetfiles[m], m,
                                                self._info.grxefiles.get(m))
        return self._maps[m]

    def __iter__(self):
        return iter(sorted(self._info.bgdapfiles))

    def __len__(self):
        return len(self._info.bgdapfiles)


def read_sidecar(fit_path, name, negative_norms=False):
    """``(analysis, None)`` from the sidecar ``name`` of ``fit_path`` (not yet at the fitted
    values), or ``(None, reason)`` when it is missing or no longer matches its inputs."""
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".npz"):
        return None, f"sidecar name {name!r} is not a .npz file name"
    path = sidecar_path(fit_path, name)
    if not path.is_file():
        return None, f"{name} is missing"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict):
            raise ValueError("no metadata")
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return None, f"{path.name} is unreadable ({exc})"
    try:
        if meta.get("format") != FORMAT or meta.get("engine") != _engine_version():
            return None, f"{path.name} was written by another version"
        if meta.get("fit_sha256") != _fit_hash(fit_path):
            return None, f"{Path(fit_path).name} changed since {path.name} was written"
        if meta.get("calibration_env") != _calibration_env():
            return None, "the calibration environment (NUSKYBGD_AUXIL, CALDB, ...) changed"
        changed = _changed_input(meta["inputs"])
        if changed:
            return None, f"{changed} changed since the fit"
        return _restore(meta, arrays, negative_norms), None
    except (KeyError, ValueError, TypeError, IndexError, NuSkyBgdError) as exc:
        return None, f"{path.name} is inconsistent ({exc})"


def _restore(meta, arrays, negative_norms):
    info = read_bgdinfo(meta["bgdinfo"], check_files=False)
    responses = []
    for j, r in enumerate(meta["responses"]):
        small = {k: arrays[f"r{j}_{k}"] for k in ("energ_lo", "energ_hi", "e_min", "e_max", "channel")}
        module = r["module"]
        if r["digest"] is None:
            def loader(module=module):
                return load_rmf(module)[0]
        else:
            loader = None
        responses.append(LazyResponse(shape=tuple(r["shape"]), first_channel=r["first_channel"], module=module,
                                      header=r["header"], path=r["source"], digest=r["digest"], loader=loader,
                                      **small))
    diag = LazyResponse.of(load_diag_rmf)
    groups = []
    for i, g in enumerate(meta["groups"]):
        w = g["weights"]
        groups.append(GroupData(name=g["name"], module=g["module"], counts=arrays[f"g{i}_counts"],
                                exposure=g["exposure"], rmf=responses[g["rmf"]], diag=diag,
                                ap_arf=arrays[f"g{i}_ap_arf"], fcxb_arf=arrays[f"g{i}_fcxb_arf"],
                                grouping=arrays.get(f"g{i}_grouping") if g["grouping"] else None,
                                quality=arrays.get(f"g{i}_quality") if g["quality"] else None,
                                weights=RegionWeights(W=w["W"], A=tuple(w["A"]), module=w["module"], name=w["name"],
                                                      G=w.get("G")),
                                files=g["files"]))
    options = BackgroundOptions.from_bgdinfo(info, negative_norms)
    if info.grxefiles:
        register_grxe_table()  # the GRXE source's atable{polarmodel.fits}, as from_bgdinfo
    analysis = BackgroundAnalysis(groups, options=options, ignore=tuple(meta["ignore"]))
    for t in meta["templates"]:
        stack = arrays[t["key"]]
        if len(stack) != len(t["shapes"]):
            raise ValueError(f"template {t['key']} has {len(stack)} rows for {len(t['shapes'])} components")
        analysis.model.add_templates(t["group"] + 1, t["source"],
                                     [((c, tuple(s)), row) for (c, s), row in zip(t["shapes"], stack)])
    analysis.bgdinfo = info
    apply_bgdinfo_options(analysis, info)  # IDL fitab's fixap/fixfcxb/tieap, as from_bgdinfo
    analysis.grid = grid_from_fits(info.refimgf)
    analysis.maps = _LazyMaps(info)
    return analysis


def save_fit(analysis, path, *, overwrite=False):
    """:func:`~.export.save_fit_json` and the sidecar NAME.json names (what reopens the fit without
    reading its inputs again).

    Returns
    -------
    pathlib.Path
        ``path`` (NAME.json).
    """
    name = sidecar_name(analysis, path)
    save_fit_json(analysis, path, overwrite=overwrite, sidecar=name)
    if name:
        write_sidecar(analysis, path, name)
    return Path(path)


def open_fit(fit_path, data, negative_norms=False):
    """The analysis of a saved fit (``data``: its parsed NAME.json): from the sidecar NAME.json
    names when that is current, else from its bgdinfo.json
    (:meth:`~.workflow.BackgroundAnalysis.from_bgdinfo`), with a message why.

    Returns
    -------
    analysis : BackgroundAnalysis
        Not yet at the fitted values (the caller restores them from NAME.json).
    rebuild : str or None
        The sidecar name to write again once the fitted values are restored (None: nothing to do).
    """
    name = data.get("sidecar")
    if name is not None:
        analysis, reason = read_sidecar(fit_path, name, negative_norms)
        if analysis is not None:
            return analysis, None
        log.warning("nuskybgd: %s; reading the fit's inputs again and rebuilding the sidecar", reason)
        if not (isinstance(name, str) and Path(name).name == name and name.endswith(".npz")):
            name = None
    return BackgroundAnalysis.from_bgdinfo(data["bgdinfo"], negative_norms=negative_norms,
                                           obs=data.get("observation")), name
