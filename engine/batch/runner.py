"""Running a batch: one task per observation, in-process or on ``dask.distributed``.

A re-run skips observations whose manifest says ``done`` with unchanged inputs and options,
and retries everything else; a failed observation never stops the others.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import BadConfigError, BadFileError
from ..maps.grxe import read_grxe_map
from .inputs import (
    MANIFEST,
    PRODUCTS,
    BatchEntry,
    _inputs_unchanged,
    _new_manifest,
    _one_line,
    _write_json,
    read_manifest,
    read_obslist,
)
from .joint import _run_joint, read_joint_config
from .observation import _observation_task, _options
from .summary import _stored_rows, _write_csv, write_summary


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
              force=False, grxe=None):
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
    grxe : path-like, optional
        GRXE sky map (IDL ``modelrxte_*.fits``, as ``projbgd --grxe``) for every observation that
        names none of its own (``grxe=MAP`` in the observation list): the Galactic-ridge source
        enters their models. Read and checked before anything runs; the map is one of each
        observation's inputs (a changed map redoes it).

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
    if grxe is not None:
        read_grxe_map(grxe)  # a bad global map would fail every observation: refuse it up front
        entries = [e if e.grxe is not None else replace(e, grxe=Path(grxe)) for e in entries]
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

