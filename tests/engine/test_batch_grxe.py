"""GRXE in ``nuskybgd batch``: a global ``--grxe MAP`` or ``grxe=MAP`` per observation in the list."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from astropy.io import fits
from nuskybgd_engine.batch import read_manifest, read_obslist, run_batch
from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.model.tablemodel import unregister_table_model

OBSIDS = ("90000000151", "90000000152")


def write_grxe_sky(path, slope=1.0):
    """An all-sky galactic map in the IDL modelrxte layout (0.4° pixels) with a gradient in l and b."""
    h = fits.Header()
    h.update(CTYPE1="GLON-CAR", CTYPE2="GLAT-CAR", CRPIX1=451.0, CRPIX2=226.0, CRVAL1=0.0, CRVAL2=0.0,
             CDELT1=-0.4, CDELT2=0.4)
    y, x = np.mgrid[0:451, 0:901]
    fits.PrimaryHDU((1.0 + slope * x / 900.0 + 2.0 * y / 450.0).astype(np.float32), header=h).writeto(path)
    return path


def test_obslist_grxe_token(tmp_path):
    write_grxe_sky(tmp_path / "ridge.fits")
    lst = tmp_path / "a.lst"
    lst.write_text("obs/90000000001 grxe=ridge.fits r1.reg\nobs/90000000002\n")
    a, b = read_obslist(lst)
    assert a.grxe == tmp_path / "ridge.fits" and a.region_files == [tmp_path / "r1.reg"]
    assert b.grxe is None and b.region_files is None
    assert type(a).from_dict(a.to_dict()) == a  # what a Dask task receives


@pytest.mark.parametrize("line, match", [("obs/1 grxe=missing.fits", "missing.fits not found"),
                                         ("obs/1 grxe=ridge.fits grxe=ridge.fits", "one GRXE map"),
                                         ("obs/1 grxe=", "one GRXE map")])
def test_obslist_grxe_token_bad(tmp_path, line, match):
    write_grxe_sky(tmp_path / "ridge.fits")
    lst = tmp_path / "bad.lst"
    lst.write_text("# x\n" + line + "\n")
    with pytest.raises(BadConfigError, match=match) as err:
        read_obslist(lst)
    assert str(lst) in str(err.value) and "line 2" in str(err.value)


def test_bad_global_map_is_refused_up_front(tmp_path, capsys):
    from nuskybgd_engine.cli import main

    bad = tmp_path / "flat.fits"
    fits.PrimaryHDU(np.ones(5)).writeto(bad)  # 1-D: not a sky map
    lst = tmp_path / "a.lst"
    lst.write_text("obs/90000000001\n")
    with pytest.raises(BadFileError, match="2-D") as err:
        run_batch(lst, tmp_path / "work", grxe=bad)
    assert "flat.fits" in str(err.value)
    assert not (tmp_path / "work" / "90000000001").exists()  # nothing started
    assert main(["batch", str(lst), "--workdir", str(tmp_path / "work"), "--grxe", str(bad)]) == 2
    assert "flat.fits" in capsys.readouterr().err


@pytest.fixture(scope="module")
def grxe_batch(tmp_path_factory, auxil_dir):
    """Two simulated 5 ks observations; the first with its own map in the list, the second the global one."""
    from nuskybgd_engine.simulate import SimulationSpec, simulate_observation

    mp = pytest.MonkeyPatch()
    mp.setenv("NUSKYBGD_AUXIL", str(auxil_dir))  # the GRXE spectral table polarmodel.fits
    root = tmp_path_factory.mktemp("grxe_archive")
    for i, obsid in enumerate(OBSIDS):
        simulate_observation(root, SimulationSpec(obsid=obsid, seed=150 + i, exposure=5000.0, pa=30.0 + 90 * i))
    own, glob = write_grxe_sky(root / "own.fits", slope=4.0), write_grxe_sky(root / "global.fits")
    lst = root / "obs.lst"
    lst.write_text(f"{OBSIDS[0]} grxe=own.fits\n{OBSIDS[1]}\n")
    (root / "joint.json").write_text(json.dumps({"joint": [{"name": "both", "observations": list(OBSIDS),
                                                            "share": ["intn"]}]}))
    work = root / "work"
    report = run_batch(lst, work, grxe=glob, joint=root / "joint.json")
    yield root, lst, work, report, own, glob
    unregister_table_model("atable{polarmodel.fits}")
    mp.undo()


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.requires_data
def test_batch_fits_the_grxe(grxe_batch):
    _root, _lst, work, report, own, glob = grxe_batch
    assert sorted(report.done) == sorted(OBSIDS) and not report.failed
    for obsid, sky in zip(OBSIDS, (own, glob)):
        man = read_manifest(work, obsid)
        assert str(sky) in man["inputs"]  # the map the observation used is one of its inputs
        fit = json.loads((work / obsid / "products" / "bgd_fit.json").read_text())
        grxe = [p for p in fit["parameters"] if p["source"] == "grxe" and p["state"] == "free"]
        assert len(grxe) == 4  # line and table norms, per module
        assert "grxe" in (work / obsid / "products" / "bgd_fit.xcm").read_text()
    rows = _rows(report.summary_csv)
    assert {r["kind"] for r in rows} >= {"background", "detector"}
    for r in rows:
        assert np.isfinite(float(r["grxe"])) and float(r["grxe"]) >= 0
        parts = sum(float(r[c]) for c in ("apbgd", "intbgd", "fcxb", "intn", "grxe"))
        assert float(r["model"]) == pytest.approx(parts, rel=1e-9)
    assert isinstance(report.joint["both"], list) and report.joint["both"]  # the joint fit has the GRXE too


@pytest.mark.slow
@pytest.mark.requires_data
def test_changed_grxe_map_is_redone(grxe_batch, tmp_path):
    _root, lst, work, _report, own, glob = grxe_batch
    w = tmp_path / "work"
    shutil.copytree(work, w)
    again = run_batch(lst, w, grxe=glob)
    assert sorted(again.skipped) == sorted(OBSIDS)
    data = fits.getdata(own)
    fits.writeto(own, data * 2.0, fits.getheader(own), overwrite=True)
    try:
        third = run_batch(lst, w, grxe=glob)
    finally:
        fits.writeto(own, data, fits.getheader(own), overwrite=True)
    assert third.done == [OBSIDS[0]] and third.skipped == [OBSIDS[1]]
    # Without the global map the second observation has no GRXE: redone without source 6.
    fourth = run_batch(lst, w)
    assert OBSIDS[1] in fourth.done
    fit = json.loads((w / OBSIDS[1] / "products" / "bgd_fit.json").read_text())
    assert not any(p["source"] == "grxe" for p in fit["parameters"])
