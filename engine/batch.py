"""Archive-scale background modelling: the headless workflow over many observations on Dask.

Each observation of an observation list goes through the same engine functions as the CLI
and the widgets (:func:`~.observation.prepare_observation` → regions →
:func:`~.groups.group_from_events` → :meth:`~.analysis.BackgroundAnalysis.fit` → exports) in
:func:`process_observation`, a pure function of its inputs that writes its products under
``workdir/<obsid>/products``. :func:`run_batch` runs one task per observation, in-process or
as tasks of ``dask.distributed`` (an existing scheduler or a ``LocalCluster``); nothing here
schedules work itself.

Resumability
    ``workdir/<obsid>/manifest.json`` (written atomically) records the inputs (path, size,
    mtime, sha256), options, status (``pending``/``running``/``done``/``failed``), the
    one-line error, outputs, timings and the attempt count. A re-run skips observations whose
    manifest says ``done`` with unchanged inputs and options, and retries everything else.
Isolation
    Any error of one observation (corrupt file, no usable region, fit not converging) is
    caught in its task and recorded; it never stops the others. A worker that dies is replaced
    by Dask and its task re-run (products are staged and moved into place, so a re-run never
    sees half-written files and the summary holds each observation once).
Summary
    ``workdir/summary.csv`` and ``summary.parquet`` (pyarrow): one row per observation, module
    and region (``kind`` = ``background`` for the fitted regions, ``source`` for source
    regions, ``detector`` for each whole detector) with fitted norms, statistic, and the
    model or predicted background in the band; ``workdir/status.csv`` lists every
    observation's status and error.
Joint fits (optional)
    :func:`read_joint_config` / :func:`joint_fit`: several observations' spectra in one
    :class:`~.analysis.BackgroundAnalysis`, sharing the named background sources.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .analysis import BackgroundAnalysis
from .constants import band_to_channels
from .errors import BadConfigError, BadFileError, BadRegionError, NuSkyBgdError
from .export import export_fit_xcm, save_fit_json
from .groups import group_from_events
from .io.files import atomic_output, read_json, write_json
from .io.regions import RegionSet
from .model.background import RegionWeights, _references, region_weights
from .model.parameters import Link
from .observation import find_observation_files, prepare_observation

__all__ = [
    "JOINT_SHARES",
    "SUMMARY_COLUMNS",
    "BatchEntry",
    "BatchReport",
    "joint_fit",
    "observation_inputs",
    "process_observation",
    "read_joint_config",
    "read_manifest",
    "read_obslist",
    "run_batch",
]

MANIFEST = "manifest.json"
PRODUCTS = "products"
#: Test-only hook: ``"<obsid>:<marker path>"`` makes the task of ``obsid`` kill its worker process
#: (``os._exit``) on the first attempt, i.e. while the marker file does not exist yet.
KILL_HOOK_ENV = "NUSKYBGD_BATCH_TEST_KILL"

SUMMARY_COLUMNS = [
    "obsid", "module", "region", "kind", "band_lo", "band_hi", "exposure", "counts", "model", "model_error",
    "apbgd", "intbgd", "fcxb", "intn", "apbgd_norm", "fcxb_norm", "intn_norm", "statistic", "stat_value", "dof",
    "converged", "n_warnings", "apec",
]
_SOURCES = ("apbgd", "intbgd", "fcxb", "intn")
_TEXT_COLUMNS = ("obsid", "module", "region", "kind", "statistic", "apec")
_FLOAT_COLUMNS = frozenset(SUMMARY_COLUMNS) - set(_TEXT_COLUMNS) - {"dof", "n_warnings", "converged"}


# ---------------------------------------------------------------------------------------------
# Observation list and inputs
# ---------------------------------------------------------------------------------------------


@dataclass
class BatchEntry:
    """One observation of a batch: its directory, obsid and (optional) own background regions."""

    obsdir: Path
    obsid: str
    region_files: list | None = None

    def to_dict(self):
        return {"obsdir": str(self.obsdir), "obsid": self.obsid,
                "region_files": [str(p) for p in self.region_files] if self.region_files is not None else None}


def read_obslist(path):
    """Read an observation list: one observation directory per line, optionally followed by its
    background region files (whitespace-separated); ``#`` starts a comment; paths are relative
    to the list file.

    Returns
    -------
    list of BatchEntry

    Raises
    ------
    BadConfigError
        Unreadable or empty list, or an obsid listed twice (its products would collide).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadConfigError("observation list not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadConfigError(f"cannot read observation list ({exc})", path=path) from None
    base = path.parent
    entries, seen = [], {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        obsdir = Path(tokens[0]) if Path(tokens[0]).is_absolute() else base / tokens[0]
        regions = [Path(t) if Path(t).is_absolute() else base / t for t in tokens[1:]] or None
        obsid = obsdir.name
        if obsid in seen:
            raise BadConfigError(f"observation {obsid} listed twice (lines {seen[obsid]} and {n})", path=path,
                                 field=f"line {n}")
        seen[obsid] = n
        entries.append(BatchEntry(obsdir=obsdir, obsid=obsid, region_files=regions))
    if not entries:
        raise BadConfigError("no observation directories listed", path=path)
    return entries


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _input_paths(entry, regions):
    """The files an observation's result depends on (events, aspect, GTI, region files)."""
    _obsid, files = find_observation_files(entry.obsdir)
    paths = [p for m in sorted(files) for p in (files[m]["events"], files[m]["det1"], files[m]["gti"])
             if p is not None]
    if regions == "given":
        paths += _given_region_files(entry)
    return [Path(p) for p in paths]


def _given_region_files(entry):
    if entry.region_files is not None:
        return [Path(p) for p in entry.region_files]
    return sorted((Path(entry.obsdir) / "regions").glob("bgd*.reg"))


def observation_inputs(entry, regions="given", *, checksums=True):
    """``{path: {"size", "mtime_ns", "sha256"}}`` of an observation's input files."""
    out = {}
    for p in _input_paths(entry, regions):
        try:
            st = p.stat()
        except OSError:
            raise BadFileError("input file not found", path=p) from None
        out[str(p)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                       "sha256": _sha256(p) if checksums else None}
    return out


def _inputs_unchanged(recorded, entry, regions):
    """True when the recorded inputs are the current ones (same paths; same size and mtime, or
    the same sha256 when the stat differs, e.g. after a copy)."""
    try:
        current = [str(p) for p in _input_paths(entry, regions)]
    except NuSkyBgdError:
        return False
    if sorted(current) != sorted(recorded):
        return False
    for path, rec in recorded.items():
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
            continue
        if st.st_size != rec.get("size") or _sha256(path) != rec.get("sha256"):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------


def _write_json(path, data):
    """Atomic JSON (re)write of a manifest or summary, its directory made first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, overwrite=True)


def read_manifest(workdir, obsid):
    """The manifest of ``obsid`` under ``workdir`` (None when absent or unreadable)."""
    path = Path(workdir) / obsid / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _new_manifest(entry, options):
    return {"obsid": entry.obsid, "obsdir": str(entry.obsdir), "options": options, "inputs": {},
            "status": "pending", "error": None, "outputs": [], "timings": {}, "attempts": 0,
            "started": None, "finished": None}


def _one_line(exc):
    """A one-line description of any exception (engine errors are already one line)."""
    if isinstance(exc, NuSkyBgdError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


# ---------------------------------------------------------------------------------------------
# One observation
# ---------------------------------------------------------------------------------------------


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


def _suggested_regions(obs):
    """Background regions proposed by :func:`nuskybgd_engine.suggest.suggest_regions` (named bgd1 ...)."""
    try:
        from .suggest import suggest_regions  # lazy: an install without suggest still runs regions='given'
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


def _detector_weights(maps, n):
    """RegionWeights of the whole of detector ``n``: its projected exposure map, and the aperture
    weight of each sky pixel split between the detectors by their exposure fractions."""
    det = [np.asarray(d, float) if d is not None else None for d in maps.det]
    if det[n] is None:
        return None
    cover = sum(d for d in det if d is not None)
    share = np.divide(det[n], cover, out=np.zeros_like(det[n]), where=cover > 0)
    A = [0.0, 0.0, 0.0, 0.0]
    A[n] = float(det[n].sum())
    return RegionWeights(W=float((maps.bgdap * share).sum()), A=tuple(A), module=maps.module, name=f"DET{n}")


def _band_counts(analysis, g, lo, hi):
    """Model counts of each source of data group ``g`` in channels ``lo..hi``."""
    per = analysis.model.source_counts(g)
    return {s: float(np.sum(np.asarray(per[s])[lo:hi + 1])) if s in per else 0.0 for s in _SOURCES}


def summary_rows(analysis, obs, band, *, obsid, source_regions=(), group_obsids=None):
    """Summary rows of a fitted analysis (see :data:`SUMMARY_COLUMNS`).

    ``group_obsids`` (joint fits) gives the observation of each data group; predictions
    (source regions, detectors) are made per observation from its first group of the module.
    """
    lo_c, hi_c = band_to_channels(*band)
    res = analysis.result
    common = {"band_lo": float(band[0]), "band_hi": float(band[1]), "statistic": res.statistic,
              "stat_value": float(res.value), "dof": int(res.dof), "converged": bool(res.converged),
              "n_warnings": len(res.warnings), "apec": analysis.apec.evaluated_by}
    state = analysis.state
    rows = []
    for g, grp in enumerate(analysis.groups, start=1):
        comps = _band_counts(analysis, g, lo_c, hi_c)
        norms = {}
        for s in ("apbgd", "fcxb", "intn"):
            src = state[s]
            k = next(i for i, p in enumerate(src.params[:src.n_par], start=1) if p.name == "norm")
            norms[f"{s}_norm"] = float(state.value(s, src.index(g, k)))
        rows.append({"obsid": group_obsids[g - 1] if group_obsids else obsid, "module": grp.module,
                     "region": str(grp.name)[:-1] if str(grp.name).endswith(grp.module) else str(grp.name),
                     "kind": "background", "exposure": float(grp.exposure),
                     "counts": float(np.sum(grp.counts[lo_c:hi_c + 1])), "model": float(sum(comps.values())),
                     "model_error": float("nan"), **comps, **norms, **common})
    if obs is not None and not group_obsids:
        for m in obs.modules:
            if m not in state.modules:
                continue
            targets = [(name, "source", region_weights(rs, obs.grid, obs[m].maps, name=name))
                       for name, rs in source_regions]
            targets += [(f"DET{n}", "detector", _detector_weights(obs[m].maps, n)) for n in range(4)]
            for name, kind, w in targets:
                if w is None or not (w.total_area > 0 and w.W > 0):
                    continue
                pred = analysis.predict(w, band=band)
                rows.append({"obsid": obsid, "module": m, "region": name, "kind": kind, "exposure": pred.exposure,
                             "counts": float("nan"), "model": pred.total, "model_error": pred.error,
                             **{s: float(pred.components.get(s, 0.0)) for s in _SOURCES},
                             "apbgd_norm": float("nan"), "fcxb_norm": float("nan"), "intn_norm": float("nan"),
                             **common})
    return [{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows]


def _source_regions(obsdir):
    return [(p.stem, RegionSet.read_ds9(p)) for p in sorted((Path(obsdir) / "regions").glob("src*.reg"))]


def _write_products(analysis, rows, target, extra, regions=(), grid=None):
    """Stage the fit exports, rows and (suggested) regions, then move them into ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        written = export_fit_xcm(analysis, stage / "bgd_fit.xcm", statistic=analysis.result.statistic)
        written.append(save_fit_json(analysis, stage / "bgd_fit.json"))
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
                        statistic="cstat"):
    """The headless workflow of one observation; products go to ``workdir/<obsid>/products``.

    Maps (:func:`~.observation.prepare_observation`) → background regions (``given``:
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
    obs = prepare_observation(obsdir, band=band)
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
    entry = entry if isinstance(entry, BatchEntry) else BatchEntry(Path(entry["obsdir"]), entry["obsid"],
                                                                   entry.get("region_files"))
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
                                  region_files=entry.region_files, statistic=options["statistic"])
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


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------


@dataclass
class BatchReport:
    """What :func:`run_batch` did."""

    done: list = field(default_factory=list)  # obsids processed in this run
    skipped: list = field(default_factory=list)  # obsids already done with unchanged inputs
    failed: dict = field(default_factory=dict)  # obsid -> one-line error
    summary_csv: Path | None = None
    summary_parquet: Path | None = None
    status_csv: Path | None = None
    rows: list = field(default_factory=list)
    joint: dict = field(default_factory=dict)  # name -> rows or error
    dashboard: str | None = None
    elapsed: float = 0.0

    def __repr__(self):
        return (f"BatchReport(done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}, "
                f"{len(self.rows)} summary rows, {self.elapsed:.1f} s)")


def _is_complete(entry, workdir, options):
    man = read_manifest(workdir, entry.obsid)
    if not man or man.get("status") != "done" or man.get("options") != options:
        return False
    if not (Path(workdir) / entry.obsid / PRODUCTS / "summary.json").is_file():
        return False
    return _inputs_unchanged(man.get("inputs", {}), entry, options["regions"])


def _stored_rows(workdir, obsid):
    data = json.loads((Path(workdir) / obsid / PRODUCTS / "summary.json").read_text(encoding="utf-8"))
    # JSON has no NaN (written as null): the numeric columns get their NaN back.
    return [{c: (math.nan if v is None and c in _FLOAT_COLUMNS else v) for c, v in r.items()} for r in data["rows"]]


def _record_failure(workdir, entry, options, error):
    """Client side: the task itself failed (e.g. its worker died too often)."""
    man = read_manifest(workdir, entry.obsid) or _new_manifest(entry, options)
    man.update(status="failed", error=error, finished=time.time())
    _write_json(Path(workdir) / entry.obsid / MANIFEST, man)


def _connect(client, n_workers, scheduler, cluster_kwargs):
    """(client, owned objects to close) for the requested execution."""
    if client is not None:
        return client, []
    if n_workers is None and scheduler is None:
        return None, []
    try:
        from distributed import Client, LocalCluster  # lazy: dask is heavy and needed only for cluster runs
    except ImportError:
        raise BadConfigError("running on Dask needs dask.distributed: pip install 'nuskybgd-widgets[batch]'",
                             field="scheduler" if scheduler else "local") from None
    if scheduler is not None:
        try:
            c = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise BadConfigError(f"cannot connect to the Dask scheduler ({_one_line(exc)})",
                                 field="scheduler") from None
        return c, [c]
    n = int(n_workers)
    if n < 1:
        raise BadConfigError(f"need at least 1 worker, got {n}", field="local")
    kw = {"n_workers": n, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
    kw.update(cluster_kwargs or {})
    cluster = LocalCluster(**kw)
    c = Client(cluster)
    return c, [c, cluster]


def run_batch(obslist, workdir, *, regions="given", band=(3.0, 20.0), statistic="cstat", client=None,
              n_workers=None, scheduler=None, retries=2, joint=None, progress=None, cluster_kwargs=None,
              force=False):
    """Model the background of every observation of ``obslist``, resumably.

    Parameters
    ----------
    obslist : path-like or list of BatchEntry / path-like
        An observation list file (:func:`read_obslist`) or the entries themselves.
    workdir : path-like
        Where manifests, products and the summary go (created if needed).
    regions : {'given', 'suggested'}
    band : (float, float)
        Band (keV) of the images, and of the summary's counts and predictions.
    statistic : {'cstat', 'chi'}
    client : distributed.Client, optional
        Use this client; else ``scheduler`` (address of a running scheduler); else a
        ``LocalCluster(n_workers, threads_per_worker=1, processes=True)`` when ``n_workers`` is
        given; else everything runs serially in this process (no Dask needed).
    retries : int
        Dask ``retries`` of a task that raised outside the observation's own processing. A task
        whose worker dies is re-run by the scheduler (up to ``distributed.scheduler.allowed-failures``
        worker deaths); errors of the observation itself are recorded, not retried.
    joint : path-like or dict, optional
        Joint-fit configuration (:func:`read_joint_config`), fitted after the observations.
    progress : callable(dict), optional
        Called once per observation as it finishes (``obsid``, ``status``, ``error``, ``n_done``,
        ``n_total``), and once with ``{"dashboard": link}`` when a cluster is used.
    cluster_kwargs : dict, optional
        Extra ``LocalCluster`` arguments.
    force : bool
        Redo observations already done (their products are replaced).

    Returns
    -------
    BatchReport

    Notes
    -----
    Joint fits are redone on every run (their inputs are the observations' spectra). With a
    remote scheduler, the workers must see ``workdir`` and the observations at the same paths.
    """
    t0 = time.perf_counter()
    options = _options(regions, band, statistic)
    entries = read_obslist(obslist) if isinstance(obslist, (str, os.PathLike)) else [
        e if isinstance(e, BatchEntry) else BatchEntry(Path(e), Path(e).name) for e in obslist]
    joint_cfg = read_joint_config(joint, [e.obsid for e in entries]) if joint is not None else None
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadFileError(f"cannot create the work directory ({exc})", path=workdir) from None
    say = progress or (lambda info: None)
    report = BatchReport()
    todo = []
    for e in entries:
        if not force and _is_complete(e, workdir, options):
            report.skipped.append(e.obsid)
        else:
            todo.append(e)
            if read_manifest(workdir, e.obsid) is None:
                _write_json(workdir / e.obsid / MANIFEST, _new_manifest(e, options))
    n_total, n_done = len(entries), len(report.skipped)
    results = {}

    def finished(res):
        nonlocal n_done
        n_done += 1
        results[res["obsid"]] = res
        if res["status"] == "done":
            report.done.append(res["obsid"])
        else:
            report.failed[res["obsid"]] = res["error"]
        say({"obsid": res["obsid"], "status": res["status"], "error": res["error"], "n_done": n_done,
             "n_total": n_total})

    client, owned = _connect(client, n_workers, scheduler, cluster_kwargs)
    try:
        if client is None:
            for e in todo:
                try:
                    res = _observation_task(e, workdir, options)
                except Exception as exc:  # noqa: BLE001 - e.g. the manifest cannot be written
                    err = f"task failed ({_one_line(exc)})"
                    res = {"obsid": e.obsid, "status": "failed", "error": err, "rows": []}
                finished(res)
        else:
            from distributed import as_completed  # lazy: dask is heavy and needed only for cluster runs

            report.dashboard = getattr(client, "dashboard_link", None)
            say({"dashboard": report.dashboard})
            futures = {}
            for e in todo:
                fut = client.submit(_observation_task, e.to_dict(), str(workdir), options, pure=False,
                                    retries=retries, key=f"nuskybgd-obs-{e.obsid}-{os.urandom(4).hex()}")
                futures[fut] = e
            for fut in as_completed(list(futures)):
                e = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: record, continue
                    err = f"task failed ({_one_line(exc)})"
                    _record_failure(workdir, e, options, err)
                    res = {"obsid": e.obsid, "status": "failed", "error": err, "rows": []}
                finished(res)
        if joint_cfg:
            report.joint = _run_joint(joint_cfg, entries, workdir, options, client)
    finally:
        for obj in owned:
            obj.close()
    rows = []
    for e in entries:  # list order, each observation once
        if e.obsid in results and results[e.obsid]["status"] == "done":
            rows += results[e.obsid]["rows"]
        elif e.obsid in report.skipped:
            rows += _stored_rows(workdir, e.obsid)
    report.rows = rows
    report.summary_csv, report.summary_parquet = write_summary(rows, workdir / "summary")
    report.status_csv = _write_status(entries, workdir)
    report.elapsed = time.perf_counter() - t0
    return report


def _write_status(entries, workdir):
    rows = []
    for e in entries:
        man = read_manifest(workdir, e.obsid) or {}
        rows.append({"obsid": e.obsid, "obsdir": str(e.obsdir), "status": man.get("status", "pending"),
                     "attempts": man.get("attempts", 0), "seconds": (man.get("timings") or {}).get("total"),
                     "error": man.get("error") or ""})
    path = Path(workdir) / "status.csv"
    _write_csv(rows, path, ["obsid", "obsdir", "status", "attempts", "seconds", "error"])
    return path


def _write_csv(rows, path, columns):
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c]))
                        for c in columns})


def write_summary(rows, stem):
    """``<stem>.csv`` and ``<stem>.parquet`` (atomic) of summary rows; Parquet needs pyarrow.

    Floats are written with ``repr`` in the CSV, so they read back exactly.

    Returns
    -------
    (Path, Path or None)
    """
    stem = Path(stem)
    csv_path = stem.with_suffix(".csv")
    _write_csv(rows, csv_path, SUMMARY_COLUMNS)
    try:
        import pyarrow as pa  # lazy: pyarrow is optional (the CSV is written without it)
        import pyarrow.parquet as pq
    except ImportError:
        stem.with_suffix(".parquet").unlink(missing_ok=True)  # never leave a stale table next to the CSV
        return csv_path, None
    types = {c: pa.float64() for c in SUMMARY_COLUMNS}
    types.update({c: pa.string() for c in _TEXT_COLUMNS})
    types.update(dof=pa.int64(), n_warnings=pa.int64(), converged=pa.bool_())
    schema = pa.schema([(c, types[c]) for c in SUMMARY_COLUMNS])
    table = pa.Table.from_pylist([{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows], schema=schema)
    pq_path = stem.with_suffix(".parquet")
    with atomic_output(pq_path, overwrite=True) as tmp:
        pq.write_table(table, tmp)
    return csv_path, pq_path


# ---------------------------------------------------------------------------------------------
# Joint fits over observations
# ---------------------------------------------------------------------------------------------

#: What observations of a joint fit may share. ``fcxb`` (the focused sky) is never shared.
JOINT_SHARES = {
    "apbgd": "aperture (stray-light CXB) norm per unit aperture weight",
    "intbgd": "every internal-background component (lines and the soft apec) per unit detector area",
    "intbgd_lines": "the internal lines per unit detector area (the soft apec stays per observation)",
    "intn": "the internal continuum per unit detector area",
}


def read_joint_config(config, obsids=None):
    """Validate a joint-fit configuration.

    ``{"joint": [{"name": "epoch1", "observations": ["<obsid>", ...], "share": ["intbgd_lines"]}]}``
    (a path to such a JSON file, or the dict). ``share`` names keys of :data:`JOINT_SHARES`;
    everything not shared is fitted per observation. ``obsids``: the batch's observations.

    Returns
    -------
    list of dict
        ``name``, ``observations``, ``share`` of each joint fit.
    """
    source = None
    if isinstance(config, (str, os.PathLike)):
        source = Path(config)
        config = read_json(source, not_found="joint-fit configuration not found", invalid="not valid JSON ({exc})")
    if not isinstance(config, dict) or not isinstance(config.get("joint"), list):
        raise BadConfigError("must be an object with a list 'joint'", path=source, field="joint")
    out, names = [], set()
    for i, item in enumerate(config["joint"]):
        where = f"joint[{i}]"
        if not isinstance(item, dict):
            raise BadConfigError("must be an object", path=source, field=where)
        obs = item.get("observations")
        if not isinstance(obs, list) or len(obs) < 2 or not all(isinstance(o, str) for o in obs):
            raise BadConfigError("needs 'observations': a list of at least 2 obsids", path=source,
                                 field=f"{where}.observations")
        if len(set(obs)) != len(obs):
            raise BadConfigError("an observation is listed twice", path=source, field=f"{where}.observations")
        if obsids is not None:
            missing = [o for o in obs if o not in obsids]
            if missing:
                raise BadConfigError(f"not in the observation list: {', '.join(missing)}", path=source,
                                     field=f"{where}.observations")
        share = item.get("share", [])
        if not isinstance(share, list) or not all(isinstance(s, str) for s in share):
            raise BadConfigError("'share' must be a list of names", path=source, field=f"{where}.share")
        for s in share:
            if s not in JOINT_SHARES:
                hint = (" (line ratios with a free scale per observation are not linear links; share "
                        "'intbgd_lines' instead)" if "ratio" in s else "")
                raise BadConfigError(f"cannot share {s!r}; choose from {', '.join(JOINT_SHARES)}{hint}",
                                     path=source, field=f"{where}.share")
        name = str(item.get("name") or f"joint{i + 1}")
        if name in names or not name.replace("-", "").replace("_", "").isalnum():
            raise BadConfigError(f"name {name!r} must be unique and alphanumeric", path=source, field=f"{where}.name")
        names.add(name)
        out.append({"name": name, "observations": list(obs), "share": sorted(set(share))})
    return out


def _unshare(state, group_obs, share):
    """Give each observation its own free norms for the sources not in ``share``.

    The model built over all groups links every group of a module to that module's first group
    (geometric factors). For every later observation ``o`` its first group ``g_o`` of the module
    is made free (at its current, geometrically scaled value) and ``o``'s other groups are
    re-pointed to ``g_o`` with factor ``f_s / f_go``, so only the shared components stay linked
    across observations.
    """
    def unshared(source, component):
        if source == "intbgd":
            if "intbgd" in share:
                return False
            return component == "apec" or "intbgd_lines" not in share
        return source in ("apbgd", "intn") and source not in share

    modules = state.modules
    firsts = {}
    for g, (o, m) in enumerate(zip(group_obs, modules), start=1):
        firsts.setdefault((o, m), g)
    refs = _references(modules)
    for name in ("apbgd", "intbgd", "intn"):
        src = state[name]
        for k in range(1, src.n_par + 1):
            p0 = src.params[k - 1]
            if p0.name != "norm" or not unshared(name, p0.component):
                continue
            for (o, m), g_o in firsts.items():
                if g_o == refs[m]:
                    continue
                r_idx = src.index(refs[m], k)
                p = src[src.index(g_o, k)]
                if p.link is None or (p.link.source, p.link.index) != (name, r_idx):
                    continue
                f_go = p.link.factor
                if f_go == 0:
                    raise BadRegionError(f"observation {o}: zero geometric factor for {name} {p0.component}",
                                         field="joint")
                p.value = state.value(name, src.index(g_o, k))
                p.link = None
                p.frozen = src[r_idx].frozen
                for s in range(1, len(modules) + 1):
                    if s == g_o or group_obs[s - 1] != o or modules[s - 1] != m:
                        continue
                    q = src[src.index(s, k)]
                    if q.link is not None and (q.link.source, q.link.index) == (name, r_idx):
                        q.link = Link(q.link.factor / f_go, name, src.index(g_o, k))


def joint_fit(entries, workdir, share, *, name="joint", regions="given", band=(3.0, 20.0), statistic="cstat"):
    """Fit several observations' background spectra in one analysis, sharing ``share``.

    Writes ``workdir/joint/<name>/`` (``bgd_fit.xcm``, ``bgd_fit.json``, ``summary.json``) and
    returns the summary rows (``background`` rows of every observation; the per-observation
    norms in ``*_norm`` are those of the joint fit).
    """
    opts = _options(regions, band, statistic)
    band = tuple(opts["band"])
    for s in share:
        if s not in JOINT_SHARES:
            raise BadConfigError(f"cannot share {s!r}; choose from {', '.join(JOINT_SHARES)}", field="share")
    groups, group_obs = [], []
    for e in entries:
        obs = prepare_observation(e.obsdir, band=band)
        gs, _notes, _sets = observation_groups(obs, regions=regions, region_files=e.region_files, obsdir=e.obsdir,
                                        statistic=statistic)
        groups += gs
        group_obs += [e.obsid] * len(gs)
    analysis = BackgroundAnalysis(groups)
    _unshare(analysis.state, group_obs, set(share))
    analysis.model.refresh_links()
    analysis.fit(statistic)
    rows = summary_rows(analysis, None, band, obsid=name, group_obsids=group_obs)
    _write_products(analysis, rows, Path(workdir) / "joint" / name,
                    {"name": name, "observations": [e.obsid for e in entries], "share": sorted(share),
                     "options": opts})
    return rows


def _joint_task(cfg, entries, workdir, options):
    try:
        rows = joint_fit(entries, workdir, cfg["share"], name=cfg["name"], regions=options["regions"],
                         band=options["band"], statistic=options["statistic"])
        return {"name": cfg["name"], "rows": rows, "error": None}
    except Exception as exc:  # noqa: BLE001 - a failed joint fit is reported, not fatal
        return {"name": cfg["name"], "rows": [], "error": _one_line(exc)}


def _run_joint(configs, entries, workdir, options, client):
    by_id = {e.obsid: e for e in entries}
    jobs = [(cfg, [by_id[o] for o in cfg["observations"]]) for cfg in configs]
    if client is None:
        results = [_joint_task(cfg, es, str(workdir), options) for cfg, es in jobs]
    else:
        futs = [client.submit(_joint_task, cfg, es, str(workdir), options, pure=False) for cfg, es in jobs]
        results = client.gather(futs)
    out, rows = {}, []
    for res in results:
        out[res["name"]] = res["error"] or res["rows"]
        for r in res["rows"]:
            rows.append({**r, "kind": f"joint:{res['name']}"})
    if rows:
        write_summary(rows, Path(workdir) / "joint_summary")
    return out
