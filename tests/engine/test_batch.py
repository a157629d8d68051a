"""Batch processing of many observations (engine/batch/, ``nuskybgd batch``).

Three small simulated observations (5 ks) plus a corrupt copy are made once per module; one serial
run and one ``LocalCluster`` run (2 workers, one of them killed mid-task) are shared by the tests.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from nuskybgd_engine.batch import (
    KILL_HOOK_ENV,
    SUMMARY_COLUMNS,
    BatchEntry,
    read_joint_config,
    read_manifest,
    read_obslist,
    run_batch,
    write_summary,
)
from nuskybgd_engine.batch.joint import _unshare
from nuskybgd_engine.errors import BadConfigError

OBSIDS = ("90000000101", "90000000102", "90000000103")
BAD = "90000000109"


def _copy_observation(src, dst_root, new_obsid):
    """Copy an observation under another obsid (file names carry the obsid)."""
    dst = Path(dst_root) / new_obsid
    shutil.copytree(src, dst)
    for p in (dst / "event_cl").iterdir():
        p.rename(p.with_name(p.name.replace(src.name, new_obsid)))
    return dst


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """3 simulated observations + a corrupt one (truncated FPMA events) and an observation list."""
    from nuskybgd_engine.simulate import SimulationSpec, simulate_observation

    root = tmp_path_factory.mktemp("archive")
    for i, obsid in enumerate(OBSIDS):
        simulate_observation(root, SimulationSpec(obsid=obsid, seed=100 + i, exposure=5000.0, pa=30.0 + 40 * i))
    bad = _copy_observation(root / OBSIDS[0], root, BAD)
    evt = bad / "event_cl" / f"nu{BAD}A01_cl.evt"
    shutil.copy(evt, root / "good_copy.evt")  # to repair it later
    data = evt.read_bytes()
    evt.write_bytes(data[: len(data) // 2])
    lst = root / "obs.lst"
    lst.write_text("# test archive\n" + "\n".join([OBSIDS[0], OBSIDS[1], BAD, f"{OBSIDS[2]}  # last"]) + "\n")
    return root, lst


@pytest.fixture(scope="module")
def serial(archive, tmp_path_factory):
    _root, lst = archive
    work = tmp_path_factory.mktemp("serial")
    seen = []
    report = run_batch(lst, work, progress=seen.append)
    return work, report, seen


@pytest.fixture(scope="module")
def cluster(archive, tmp_path_factory):
    """LocalCluster(2) run whose worker dies on the first attempt of OBSIDS[1]; with two joint fits."""
    distributed = pytest.importorskip("distributed")
    _root, lst = archive
    work = tmp_path_factory.mktemp("cluster")
    marker = work / "killed.txt"
    joint = {"joint": [{"name": "separate", "observations": list(OBSIDS[:2]), "share": []},
                       {"name": "shared", "observations": list(OBSIDS[:2]), "share": ["apbgd", "intbgd", "intn"]}]}
    mp = pytest.MonkeyPatch()
    mp.setenv(KILL_HOOK_ENV, f"{OBSIDS[1]}:{marker}")  # inherited by the worker processes
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as lc, distributed.Client(lc) as client:
            report = run_batch(lst, work, client=client, joint=joint)
            client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
            n_workers = len(client.scheduler_info()["workers"])
    finally:
        mp.undo()
    return work, report, marker, n_workers


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------
# Observation lists and configs
# ---------------------------------------------------------------------------------------------


def test_read_obslist(tmp_path):
    lst = tmp_path / "a.lst"
    lst.write_text("# header\n\nobs/90000000001\n/abs/90000000002 r1.reg sub/r2.reg  # own regions\n")
    entries = read_obslist(lst)
    assert [e.obsid for e in entries] == ["90000000001", "90000000002"]
    assert entries[0].obsdir == tmp_path / "obs" / "90000000001" and entries[0].region_files is None
    assert entries[1].obsdir == Path("/abs/90000000002")
    assert entries[1].region_files == [tmp_path / "r1.reg", tmp_path / "sub" / "r2.reg"]


@pytest.mark.parametrize("text, field", [("", None), ("a/1\nb/1\n", "line 3")])
def test_read_obslist_bad(tmp_path, text, field):
    lst = tmp_path / "bad.lst"
    lst.write_text("# x\n" + text)
    with pytest.raises(BadConfigError) as err:
        read_obslist(lst)
    assert str(lst) in str(err.value)
    if field:
        assert field in str(err.value)
    with pytest.raises(BadConfigError, match="not found"):
        read_obslist(tmp_path / "missing.lst")


@pytest.mark.parametrize("config, field", [
    ({"joint": [{"observations": ["1"], "share": []}]}, "joint[0].observations"),
    ({"joint": [{"observations": ["1", "2"], "share": ["fcxb"]}]}, "joint[0].share"),
    ({"joint": [{"observations": ["1", "2"], "share": ["intbgd_line_ratios"]}]}, "joint[0].share"),
    ({"joint": [{"observations": ["1", "9"]}]}, "joint[0].observations"),
    ({"jont": []}, "joint"),
])
def test_joint_config_bad(tmp_path, config, field):
    path = tmp_path / "joint.json"
    path.write_text(json.dumps(config))
    with pytest.raises(BadConfigError) as err:
        read_joint_config(path, ["1", "2"])
    assert str(path) in str(err.value) and field in str(err.value)


def test_joint_config_ok():
    cfg = read_joint_config({"joint": [{"observations": ["1", "2"], "share": ["intn", "intbgd_lines", "intn"]}]})
    assert cfg == [{"name": "joint1", "observations": ["1", "2"], "share": ["intbgd_lines", "intn"]}]


def test_bad_options(tmp_path):
    with pytest.raises(BadConfigError, match="band"):
        run_batch([tmp_path / "90000000001"], tmp_path / "w", band=(20, 3))
    with pytest.raises(BadConfigError, match="regions"):
        run_batch([tmp_path / "90000000001"], tmp_path / "w", regions="mine")
    with pytest.raises(BadConfigError, match="local"):
        run_batch([tmp_path / "90000000001"], tmp_path / "w", n_workers=0)


def test_summary_round_trip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{c: None for c in SUMMARY_COLUMNS} | {"obsid": "1", "module": "A", "model": 1 / 3, "dof": 7,
                                                  "converged": True, "counts": float("nan")}]
    csv_path, pq_path = write_summary(rows, tmp_path / "s")
    back = _read_csv(csv_path)[0]
    assert float(back["model"]) == 1 / 3 and back["obsid"] == "1" and back["dof"] == "7" and back["region"] == ""
    table = pq.read_table(pq_path).to_pylist()[0]
    assert table["model"] == 1 / 3 and table["dof"] == 7 and table["converged"] is True
    assert math.isnan(table["counts"]) and table["region"] is None


# ---------------------------------------------------------------------------------------------
# Serial run: results, isolation of the corrupt observation, manifests, resumability
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_serial_run_results(serial, archive):
    work, report, seen = serial
    assert sorted(report.done) == sorted(OBSIDS) and list(report.failed) == [BAD]
    assert [s["n_done"] for s in seen] == [1, 2, 3, 4]
    rows = _read_csv(work / "summary.csv")
    assert list(rows[0]) == SUMMARY_COLUMNS
    # list order, each observation once: 4 bgd regions × 2 modules, 1 source × 2, 4 detectors × 2
    assert [r["obsid"] for r in rows] == [o for o in OBSIDS for _ in range(18)]
    for obsid in OBSIDS:
        mine = [r for r in rows if r["obsid"] == obsid]
        assert sorted({r["kind"] for r in mine}) == ["background", "detector", "source"]
        # components add up to the model
        for r in mine:
            total = sum(float(r[s]) for s in ("apbgd", "intbgd", "fcxb", "intn"))
            assert total == pytest.approx(float(r["model"]), rel=1e-9)
    products = work / OBSIDS[0] / "products"
    assert (products / "bgd_fit.xcm").is_file() and (products / "bgd_fit.json").is_file()
    fit = json.loads((products / "bgd_fit.json").read_text())
    assert fit["value"] == pytest.approx(float(rows[0]["stat_value"]), rel=1e-12)


@pytest.mark.slow
def test_serial_background_counts_direct(serial, archive):
    """Counts of a background row = events inside the region (pixel centres) and band, counted here."""
    from astropy.io import fits
    from nuskybgd_engine.constants import band_to_channels
    from nuskybgd_engine.io.regions import RegionSet, region_mask

    work, _report, _ = serial
    obsdir = archive[0] / OBSIDS[0]
    evt = obsdir / "event_cl" / f"nu{OBSIDS[0]}A01_cl.evt"
    with fits.open(evt) as hdul:
        ev = hdul["EVENTS"].data
        x, y, pi = np.asarray(ev["X"], float), np.asarray(ev["Y"], float), np.asarray(ev["PI"])
        tlmin = hdul["EVENTS"].header[f"TLMIN{hdul['EVENTS'].columns.names.index('X') + 1}"]
    from nuskybgd_engine.observation import prepare_observation

    grid = prepare_observation(obsdir, modules=("A",)).grid
    mask = region_mask(RegionSet.read_ds9(obsdir / "regions" / "bgd2.reg"), grid)
    ix, iy = np.floor(x - tlmin + 0.5).astype(int), np.floor(y - tlmin + 0.5).astype(int)
    lo, hi = band_to_channels(3.0, 20.0)
    ok = (ix >= 0) & (iy >= 0) & (ix < mask.shape[1]) & (iy < mask.shape[0])
    inside = np.zeros(x.size, bool)
    inside[ok] = mask[iy[ok], ix[ok]]
    direct = int(np.sum(inside & (pi >= lo) & (pi <= hi)))
    row = next(r for r in _read_csv(work / "summary.csv")
               if r["obsid"] == OBSIDS[0] and r["module"] == "A" and r["region"] == "bgd2")
    assert float(row["counts"]) == direct > 0


@pytest.mark.slow
def test_corrupt_observation_recorded(serial):
    work, report, _ = serial
    err = report.failed[BAD]
    assert "\n" not in err and f"nu{BAD}A01_cl.evt" in err
    man = read_manifest(work, BAD)
    assert man["status"] == "failed" and man["error"] == err and man["attempts"] == 1 and man["outputs"] == []
    status = {r["obsid"]: r for r in _read_csv(work / "status.csv")}
    assert status[BAD]["status"] == "failed" and status[BAD]["error"] == err
    assert all(status[o]["status"] == "done" for o in OBSIDS)


@pytest.mark.slow
def test_manifest_records_inputs(serial, archive):
    import hashlib

    work, _report, _ = serial
    man = read_manifest(work, OBSIDS[0])
    assert man["status"] == "done" and man["attempts"] == 1 and man["error"] is None
    assert man["options"] == {"regions": "given", "band": [3.0, 20.0], "statistic": "cstat"}
    evt = archive[0] / OBSIDS[0] / "event_cl" / f"nu{OBSIDS[0]}B01_cl.evt"
    assert man["inputs"][str(evt)]["sha256"] == hashlib.sha256(evt.read_bytes()).hexdigest()
    assert len(man["inputs"]) == 6 + 4  # events, aspect, GTI per module + 4 region files
    assert all((work / OBSIDS[0] / p).is_file() for p in man["outputs"])
    assert man["timings"]["total"] > 0


@pytest.mark.slow
def test_resume_skips_done_and_retries_failed(serial, archive, tmp_path):
    root, lst = archive
    work = tmp_path / "resume"
    shutil.copytree(serial[0], work)
    before = {o: (work / o / "products" / "bgd_fit.json").stat().st_mtime_ns for o in OBSIDS}
    again = run_batch(lst, work)
    assert sorted(again.skipped) == sorted(OBSIDS) and again.done == [] and list(again.failed) == [BAD]
    assert read_manifest(work, BAD)["attempts"] == 2
    assert {o: (work / o / "products" / "bgd_fit.json").stat().st_mtime_ns for o in OBSIDS} == before
    assert (work / "summary.csv").read_text() == (serial[0] / "summary.csv").read_text()
    # repair the corrupt observation: only it is processed
    bad_evt = root / BAD / "event_cl" / f"nu{BAD}A01_cl.evt"
    saved = bad_evt.read_bytes()
    try:
        shutil.copy(root / "good_copy.evt", bad_evt)
        third = run_batch(lst, work)
    finally:
        bad_evt.write_bytes(saved)
    assert third.done == [BAD] and sorted(third.skipped) == sorted(OBSIDS) and not third.failed
    man = read_manifest(work, BAD)
    assert man["status"] == "done" and man["attempts"] == 3 and man["error"] is None
    rows = _read_csv(work / "summary.csv")
    assert [r["obsid"] for r in rows] == [o for o in (OBSIDS[0], OBSIDS[1], BAD, OBSIDS[2]) for _ in range(18)]
    # the repaired copy is observation 1's data: same fitted values
    first = [r for r in rows if r["obsid"] == OBSIDS[0]]
    copy = [r for r in rows if r["obsid"] == BAD]
    assert [float(r["model"]) for r in copy] == pytest.approx([float(r["model"]) for r in first], rel=1e-9)


@pytest.mark.slow
def test_changed_input_is_redone(serial, archive, tmp_path):
    """An input whose content changed (size kept) invalidates the done state."""
    root, _lst = archive
    work = tmp_path / "changed"
    shutil.copytree(serial[0], work)
    man = read_manifest(work, OBSIDS[2])
    reg = next(p for p in man["inputs"] if p.endswith("bgd1.reg"))
    man["inputs"][reg]["mtime_ns"] -= 1  # stat differs: the checksum decides
    man["inputs"][reg]["sha256"] = "0" * 64
    (work / OBSIDS[2] / "manifest.json").write_text(json.dumps(man))
    from nuskybgd_engine.batch.runner import _is_complete

    opts = {"regions": "given", "band": [3.0, 20.0], "statistic": "cstat"}
    assert not _is_complete(BatchEntry(root / OBSIDS[2], OBSIDS[2]), work, opts)
    assert _is_complete(BatchEntry(root / OBSIDS[1], OBSIDS[1]), work, opts)
    assert not _is_complete(BatchEntry(root / OBSIDS[1], OBSIDS[1]), work, {**opts, "band": [3.0, 10.0]})


@pytest.mark.slow
def test_no_usable_region(archive, tmp_path):
    """Regions off the field are dropped; none left is this observation's failure, named."""
    root, _lst = archive
    reg = tmp_path / "far.reg"
    reg.write_text("# Region file format: DS9\nimage\ncircle(20,20,5)\n")
    report = run_batch([BatchEntry(root / OBSIDS[0], OBSIDS[0], [reg])], tmp_path / "w")
    err = report.failed[OBSIDS[0]]
    assert "no usable background region" in err and "regions" in err
    assert report.rows == []


@pytest.mark.slow
def test_suggested_regions(archive, tmp_path):
    """regions='suggested': the regions of nuskybgd_engine.suggest are fitted and saved with the products."""
    from nuskybgd_engine.batch import process_observation
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.suggest import suggest_regions

    root, _lst = archive
    out = process_observation(root / OBSIDS[2], tmp_path, regions="suggested")
    expected = suggest_regions(prepare_observation(root / OBSIDS[2])).regions
    bg = [r for r in out["rows"] if r["kind"] == "background"]
    assert sorted({r["region"] for r in bg}) == [f"bgd{k}" for k in range(1, len(expected) + 1)]
    grid = prepare_observation(root / OBSIDS[2], modules=("A",)).grid
    for k, rs in enumerate(expected, start=1):
        saved = RegionSet.read_ds9(tmp_path / OBSIDS[2] / "products" / f"bgd{k}.reg")
        assert saved.to_ds9_string(coord="fk5", grid=grid) == rs.to_ds9_string(coord="fk5", grid=grid)


@pytest.mark.slow
def test_suggested_regions_unavailable(archive, tmp_path, monkeypatch):
    import sys

    from nuskybgd_engine.batch import process_observation

    monkeypatch.setitem(sys.modules, "nuskybgd_engine.suggest", None)  # import fails
    with pytest.raises(BadConfigError, match="regions='given'"):
        process_observation(archive[0] / OBSIDS[0], tmp_path, regions="suggested")


# ---------------------------------------------------------------------------------------------
# Dask: LocalCluster equals serial; a killed worker loses and duplicates nothing; joint fits
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cluster_equals_serial(cluster, serial):
    work, report, _marker, _n = cluster
    assert sorted(report.done) == sorted(OBSIDS) and list(report.failed) == [BAD]
    a, b = _read_csv(serial[0] / "summary.csv"), _read_csv(work / "summary.csv")
    assert len(a) == len(b) == 3 * 18
    for ra, rb in zip(a, b):
        for c in SUMMARY_COLUMNS:
            try:
                fa, fb = float(ra[c]), float(rb[c])
            except ValueError:
                assert ra[c] == rb[c], c
            else:
                assert fa == pytest.approx(fb, rel=1e-9, abs=1e-300, nan_ok=True), c
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(work / "summary.parquet")
    assert table.num_rows == len(b) and table.column_names == SUMMARY_COLUMNS


@pytest.mark.slow
def test_worker_killed_mid_run(cluster):
    work, _report, marker, n_workers = cluster
    assert marker.is_file()  # the worker did die in the task of OBSIDS[1]
    assert n_workers == 2  # ... and the nanny replaced it
    man = read_manifest(work, OBSIDS[1])
    assert man["status"] == "done" and man["attempts"] == 2
    assert all(read_manifest(work, o)["attempts"] == 1 for o in (OBSIDS[0], OBSIDS[2]))
    obsids = [r["obsid"] for r in _read_csv(work / "summary.csv")]
    assert obsids == [o for o in OBSIDS for _ in range(18)]  # nothing lost, nothing duplicated
    assert not any(p.name.startswith(".") for p in (work / OBSIDS[1]).iterdir())  # no staging left


@pytest.mark.slow
def test_joint_fit(cluster, serial):
    """Sharing nothing is the sum of the separate fits; sharing apbgd/intbgd/intn leaves the first
    observation's norms plus the second's fcxb norms free."""
    work, report, _marker, _n = cluster
    assert set(report.joint) == {"separate", "shared"}
    assert all(isinstance(v, list) for v in report.joint.values()), report.joint
    single = {o: json.loads((serial[0] / o / "products" / "bgd_fit.json").read_text()) for o in OBSIDS[:2]}
    sep = json.loads((work / "joint" / "separate" / "bgd_fit.json").read_text())
    shared = json.loads((work / "joint" / "shared" / "bgd_fit.json").read_text())
    assert len(sep["free"]) == sum(len(s["free"]) for s in single.values())
    assert sep["value"] == pytest.approx(sum(s["value"] for s in single.values()), abs=0.05)
    n_fcxb_2 = sum(1 for f in single[OBSIDS[1]]["free"] if f.startswith("fcxb:"))
    assert len(shared["free"]) == len(single[OBSIDS[0]]["free"]) + n_fcxb_2
    assert shared["value"] >= sep["value"] - 0.05
    rows = _read_csv(work / "joint_summary.csv")
    assert {r["obsid"] for r in rows} == set(OBSIDS[:2]) and {r["kind"] for r in rows} == {
        "joint:separate", "joint:shared"}


def test_unshare_relinks_to_observation_reference():
    """Unit check of the link rewrite on a 2-observation × 2-region model of one module."""
    from nuskybgd_engine.model.background import (
        BackgroundOptions,
        RegionWeights,
        build_background_model,
    )
    from nuskybgd_engine.model.presets import load_presets

    ws = [RegionWeights(W=w, A=(a, a / 2, 0.0, 0.0), module="A", name=f"r{i}")
          for i, (w, a) in enumerate([(10.0, 100.0), (20.0, 50.0), (40.0, 80.0), (5.0, 30.0)])]
    state = build_background_model(["A"] * 4, ws, load_presets(), BackgroundOptions())
    _unshare(state, ["o1", "o1", "o2", "o2"], {"intn"})
    ap = state["apbgd"]
    k = 3
    assert ap[ap.index(3, k)].free and ap[ap.index(1, k)].free
    link = ap[ap.index(4, k)].link
    assert (link.source, link.index) == ("apbgd", ap.index(3, k)) and link.factor == pytest.approx(5.0 / 40.0)
    intn = state["intn"]
    assert not intn[intn.index(3, 4)].free  # shared: still linked to observation 1
    link = intn[intn.index(4, 4)].link
    assert (link.source, link.index) == ("intn", intn.index(1, 4))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_batch(serial, archive, tmp_path, capsys):
    """``nuskybgd batch`` on a LocalCluster of 1 worker: done ones skipped, the corrupt one retried."""
    import importlib.util

    from nuskybgd_engine.cli import main

    _root, lst = archive
    work = tmp_path / "cli"
    shutil.copytree(serial[0], work)
    local = ["--local", "1"] if importlib.util.find_spec("distributed") else []
    assert main(["batch", str(lst), f"workdir={work}", *local]) == 0
    out = capsys.readouterr().out
    assert "0 done, 3 already done (skipped), 1 failed" in out and f"failed {BAD}" in out
    assert ("Dask dashboard: http" in out) == bool(local)
    assert read_manifest(work, BAD)["attempts"] == 2
    if importlib.util.find_spec("pyarrow"):
        assert "summary.parquet" in out
    assert main(["batch", str(tmp_path / "none.lst"), "--workdir", str(work)]) == 2
    assert "none.lst" in capsys.readouterr().err
    assert main(["batch", str(lst), "--workdir", str(work), "--band", "3", "2"]) == 2
    assert "band" in capsys.readouterr().err
