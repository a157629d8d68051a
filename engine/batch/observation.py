"""One observation of a batch: prepared, its regions' spectra fitted, products written.

:func:`process_observation` is a pure function of its inputs that writes its products under
``workdir/<obsid>/products`` (staged, then moved into place); :func:`_observation_task` wraps it
with the manifest as one task.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..analysis import BackgroundAnalysis
from ..errors import BadConfigError, BadRegionError
from ..export import export_fit_xcm
from ..fitcache import save_fit
from ..groups import group_from_events
from ..io.regions import RegionSet
from ..maps.grxe import add_grxe_maps, read_grxe_map
from ..model.background import region_weights
from ..model.tablemodel import register_grxe_table
from ..observation import prepare_observation
from .inputs import (
    MANIFEST,
    PRODUCTS,
    BatchEntry,
    _new_manifest,
    _one_line,
    _write_json,
    observation_inputs,
    read_manifest,
)
from .summary import summary_rows


#: Test-only hook: ``"<obsid>:<marker path>"`` makes the task of ``obsid`` kill its worker process
#: (``os._exit``) on the first attempt, i.e. while the marker file does not exist yet.
KILL_HOOK_ENV = "NUSKYBGD_BATCH_TEST_KILL"


def _options(regions, band, statistic):
    if regions not in ("given", "suggested"):
        raise BadConfigError(f"regions must be 'given' or 'suggested', got {regions!r}", field="regions")
    try:
        lo, hi = (float(b) for b in band)
    except (TypeError, ValueError):
        raise BadConfigError(f"band must be two numbers (keV), got {band!r}", field="band") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 1.6 <= lo < hi <= 165.0):
        raise BadConfigError(f"band must satisfy 1.6 <= lo < hi <= 165 keV, got {lo:g} {hi:g}", field="band")
    if statistic not in ("cstat", "chi"):
        raise BadConfigError(f"statistic must be cstat or chi, got {statistic!r}", field="statistic")
    return {"regions": regions, "band": [lo, hi], "statistic": statistic}


def prepare_with_grxe(obsdir, band, grxe=None):
    """:func:`~.observation.prepare_observation`, with the GRXE sky map ``grxe`` projected for every
    module (as ``projbgd --grxe``) and the GRXE spectral table registered, when given."""
    obs = prepare_observation(obsdir, band=band)
    if grxe is not None:
        add_grxe_maps(obs, read_grxe_map(grxe))
        register_grxe_table()  # source 6 uses atable{polarmodel.fits}: in this (worker) process too
    return obs


def _suggested_regions(obs):
    """Background regions proposed by :func:`nuskybgd_engine.suggest.suggest_regions` (named bgd1 ...)."""
    try:
        from ..suggest import suggest_regions  # lazy: an install without suggest still runs regions='given'
    except ImportError:
        raise BadConfigError("regions='suggested' needs nuskybgd_engine.suggest, which is not available in this "
                             "version; use regions='given'", field="regions") from None
    suggestion = suggest_regions(obs)
    return [(f"bgd{k}", rs) for k, rs in enumerate(suggestion.regions, start=1)]


def observation_groups(obs, *, regions="given", region_files=None, obsdir=None, statistic="cstat"):
    """Background spectra (GroupData) of every usable region × module of a prepared observation.

    Regions covering no detector area, no aperture weight or no counts of a module are dropped
    for that module (listed in the returned notes); no usable region at all is an error.

    Returns
    -------
    (groups, notes, region_sets) : list of GroupData, list of str, list of (name, RegionSet)
    """
    obsdir = Path(obsdir if obsdir is not None else obs.root)
    if regions == "given":
        files = [Path(p) for p in region_files] if region_files is not None else sorted(
            (obsdir / "regions").glob("bgd*.reg"))
        if not files:
            raise BadConfigError("no background region files (regions/bgd*.reg, or list them after the "
                                 "observation in the observation list)", path=obsdir / "regions")
        sets = [(p.stem, RegionSet.read_ds9(p)) for p in files]
    else:
        sets = _suggested_regions(obs)
    group_min = 30 if statistic == "chi" else None
    groups, notes = [], []
    for name, rs in sets:
        for m in obs.modules:
            mp = obs[m]
            w = region_weights(rs, obs.grid, mp.maps, name=name)
            if not (w.total_area > 0 and w.W > 0):
                notes.append(f"{name}: FPM{m} region off the detectors, dropped")
                continue
            g = group_from_events(mp.events, rs, obs.grid, mp.maps, name=f"{name}{m}", group_min=group_min)
            if not np.sum(g.counts) > 0:
                notes.append(f"{name}: FPM{m} region has no counts, dropped")
                continue
            groups.append(g)
    if not groups:
        raise BadRegionError("no usable background region (" + "; ".join(notes or ["none given"]) + ")",
                             path=obsdir, field="regions")
    return groups, notes, sets


def _source_regions(obsdir):
    return [(p.stem, RegionSet.read_ds9(p)) for p in sorted((Path(obsdir) / "regions").glob("src*.reg"))]


def _write_products(analysis, rows, target, extra, regions=(), grid=None):
    """Stage the fit exports, rows and (suggested) regions, then move them into ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        written = export_fit_xcm(analysis, stage / "bgd_fit.xcm", statistic=analysis.result.statistic)
        written.append(save_fit(analysis, stage / "bgd_fit.json"))
        _write_json(stage / "summary.json", {"rows": rows, **extra})
        for name, rs in regions:
            rs.write_ds9(stage / f"{name}.reg", coord="fk5", grid=grid)
            written.append(stage / f"{name}.reg")
        if target.exists():
            shutil.rmtree(target)
        os.replace(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return [f"{target.name}/{Path(p).name}" for p in written] + [f"{target.name}/summary.json"]


def process_observation(obsdir, workdir, *, regions="given", band=(3.0, 20.0), region_files=None,
                        statistic="cstat", grxe=None):
    """The headless workflow of one observation; products go to ``workdir/<obsid>/products``.

    Maps (:func:`~.observation.prepare_observation`; with ``grxe``, a GRXE sky map in the IDL
    ``modelrxte_*.fits`` layout, also its projection and the GRXE source) → background regions (``given``:
    ``region_files`` or ``<obsdir>/regions/bgd*.reg``; ``suggested``: :mod:`.suggest`) →
    spectra (:func:`~.groups.group_from_events`, each region × module) → fit
    (:meth:`~.analysis.BackgroundAnalysis.fit`) → ``bgd_fit.xcm`` (+ responses), ``bgd_fit.json``
    and ``summary.json`` (the summary rows, also returned).

    Returns
    -------
    dict
        ``obsid``, ``rows`` (list of dict, :data:`SUMMARY_COLUMNS`), ``outputs`` (paths relative to
        ``workdir/<obsid>``), ``warnings``, ``timings`` (s).

    Raises
    ------
    NuSkyBgdError
        Bad input, no usable region, or a fit that does not converge (:class:`~.errors.FitError`).
    """
    opts = _options(regions, band, statistic)
    band = tuple(opts["band"])
    obsdir = Path(obsdir)
    t = {"start": time.perf_counter()}
    obs = prepare_with_grxe(obsdir, band, grxe)
    t["maps"] = time.perf_counter()
    groups, notes, sets = observation_groups(obs, regions=regions, region_files=region_files, obsdir=obsdir,
                                             statistic=statistic)
    t["spectra"] = time.perf_counter()
    analysis = BackgroundAnalysis(groups)
    result = analysis.fit(statistic)
    t["fit"] = time.perf_counter()
    rows = summary_rows(analysis, obs, band, obsid=obs.obsid, source_regions=_source_regions(obsdir))
    warnings = list(notes) + list(result.warnings)
    outputs = _write_products(analysis, rows, Path(workdir) / obs.obsid / PRODUCTS,
                              {"obsid": obs.obsid, "options": opts, "warnings": warnings},
                              regions=sets if regions == "suggested" else (), grid=obs.grid)
    t["products"] = time.perf_counter()
    timings = {k: t[k] - t[prev] for prev, k in zip(("start", "maps", "spectra", "fit"),
                                                    ("maps", "spectra", "fit", "products"))}
    timings["total"] = t["products"] - t["start"]
    return {"obsid": obs.obsid, "rows": rows, "outputs": outputs, "warnings": warnings, "timings": timings}


def _maybe_kill(obsid):
    """Test-only: kill this worker process on the first attempt of ``obsid`` (see KILL_HOOK_ENV)."""
    spec = os.environ.get(KILL_HOOK_ENV)
    if not spec or ":" not in spec:
        return
    target, marker = spec.split(":", 1)
    if target == obsid and not os.path.exists(marker):
        Path(marker).write_text(f"killed pid {os.getpid()}\n")
        os._exit(17)


def _observation_task(entry, workdir, options):
    """One observation as a task: manifest ``running`` → :func:`process_observation` → ``done`` or
    ``failed``. Errors of the observation are returned, not raised (Dask retries only worker loss)."""
    entry = entry if isinstance(entry, BatchEntry) else BatchEntry.from_dict(entry)
    workdir = Path(workdir)
    path = workdir / entry.obsid / MANIFEST
    man = read_manifest(workdir, entry.obsid) or _new_manifest(entry, options)
    man.update(obsdir=str(entry.obsdir), options=options, status="running", error=None,
               attempts=int(man.get("attempts", 0)) + 1, started=time.time(), finished=None, pid=os.getpid())
    t0 = time.perf_counter()
    try:
        man["inputs"] = observation_inputs(entry, options["regions"])
    except Exception as exc:  # noqa: BLE001 - recorded below as this observation's failure
        man["inputs"] = {}
        input_error = exc
    else:
        input_error = None
    _write_json(path, man)
    _maybe_kill(entry.obsid)
    rows = []
    try:
        if input_error is not None:
            raise input_error
        out = process_observation(entry.obsdir, workdir, regions=options["regions"], band=options["band"],
                                  region_files=entry.region_files, statistic=options["statistic"], grxe=entry.grxe)
        if out["obsid"] != entry.obsid:
            raise BadConfigError(f"directory holds observation {out['obsid']}, not {entry.obsid}",
                                 path=entry.obsdir)
        rows = out["rows"]
        man.update(status="done", outputs=out["outputs"], timings=out["timings"], warnings=out["warnings"])
    except Exception as exc:  # noqa: BLE001 - one bad observation never stops the others
        man.update(status="failed", error=_one_line(exc), outputs=[],
                   timings={"total": time.perf_counter() - t0})
    man["finished"] = time.time()
    _write_json(path, man)
    return {"obsid": entry.obsid, "status": man["status"], "error": man["error"], "rows": rows,
            "attempts": man["attempts"], "elapsed": time.perf_counter() - t0}

