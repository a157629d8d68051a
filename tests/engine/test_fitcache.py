"""A saved fit reopens from its sidecar with identical results; stale or corrupt caches are rebuilt.

One simulated observation (the demo, both modules) gives 4 background spectra (2 regions × 2
modules, each module's spectra naming one RMF) fitted by ``nuskybgd fit --run``; the tests copy
that work directory when they change a file.
"""

import copy
import json
import logging
import shutil

import numpy as np
import pytest

from nuskybgd_engine.calibration.products import load_rmf
from nuskybgd_engine.cli import main
from nuskybgd_engine.demo import ensure_demo_observation
from nuskybgd_engine.fitcache import sidecar_path
from nuskybgd_engine.io import responsecache
from nuskybgd_engine.io.ogip import read_pha, read_rmf, write_rmf
from nuskybgd_engine.io.responsecache import LazyResponse, cache_root, content_hash, read_response, write_response
from nuskybgd_engine.maps.projection import write_projected_maps
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.predictions import predict_regions
from nuskybgd_engine.workflow import background_images, load_fit_json

from ..conftest import write_demo_inputs

BANDS = ((3.0, 20.0), (10.0, 30.0))
pytestmark = pytest.mark.slow  # one simulated observation and a fit per module, copies per test


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Maps, RMFs, spectra, regions and bgdinfo.json of the demo observation (no fit yet)."""
    obsdir = ensure_demo_observation(tmp_path_factory.mktemp("demo"))
    obs = prepare_observation(obsdir)
    d = tmp_path_factory.mktemp("base")
    for m in ("A", "B"):
        write_projected_maps(obs[m].maps, d / f"bgdap{m}.fits")
    write_demo_inputs(d, obsdir, obs)
    return d


def fit_in(directory):
    assert main(["fit", str(directory / "bgdinfo.json"), f"savefile={directory / 'fit'}", "--run"]) == 0
    return directory / "fit.json"


@pytest.fixture(scope="module")
def fitted(base):
    return fit_in(base)


@pytest.fixture
def workcopy(base, tmp_path):
    """A fitted copy of the work directory that a test may change."""
    d = tmp_path / "work"
    shutil.copytree(base, d, ignore=shutil.ignore_patterns("fit.*"))
    return fit_in(d)


def from_inputs(fit_path):
    """The fit reopened the old way: every input read again (the sidecar not named)."""
    data = json.loads(fit_path.read_text())
    data["sidecar"] = None
    plain = fit_path.with_name("plain.json")
    plain.write_text(json.dumps(data))
    return load_fit_json(plain)


def predictions(an, directory):
    regions = [directory / "src_point.reg", directory / "bgd1.reg"]
    return [c.to_dict() for c in predict_regions(an, regions, modules=["A", "B"], bands=BANDS)]


def test_fit_json_names_its_sidecar(fitted):
    data = json.loads(fitted.read_text())
    assert data["sidecar"] == "fit.npz" and sidecar_path(fitted).is_file()


def test_reopened_fit_predicts_the_same_numbers(fitted, base, caplog):
    with caplog.at_level(logging.WARNING):
        fast = load_fit_json(fitted)
    assert not caplog.records  # the sidecar was current
    assert all(isinstance(g.rmf, LazyResponse) for g in fast.groups)
    slow = from_inputs(fitted)
    assert not any(isinstance(g.rmf, LazyResponse) for g in slow.groups)
    got, want = predictions(fast, base), predictions(slow, base)
    assert len(got) == 2 * 2 * len(BANDS)
    for a, b in zip(got, want):
        assert a["region"] == b["region"] and a["module"] == b["module"] and a["band_keV"] == b["band_keV"]
        for key in ("total", "stat_sys_error", "stat_error", "sys_error"):
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=0)
        for k in b["components"]:
            assert a["components"][k] == pytest.approx(b["components"][k], rel=1e-10, abs=1e-300)
            assert a["component_errors"][k] == pytest.approx(b["component_errors"][k], rel=1e-10, abs=1e-300)
    # Predicting folded nothing: no response matrix was read.
    assert all(g.rmf._real is None for g in fast.groups)
    img_fast, img_slow = background_images(fast, (3, 20)), background_images(slow, (3, 20))
    for m in img_slow:
        for k in img_slow[m]:
            np.testing.assert_allclose(img_fast[m][k], img_slow[m][k], rtol=1e-10, atol=0)
    assert fast.result.value == slow.result.value
    np.testing.assert_array_equal(fast.result.covariance, slow.result.covariance)
    assert fast.statistic_value("cstat") == pytest.approx(slow.statistic_value("cstat"), rel=1e-10)


def test_lazy_response_reads_the_matrix_when_needed(fitted, base):
    an = load_fit_json(fitted)
    rmf = an.groups[0].rmf
    want = read_rmf(base / "respA.rmf")
    assert rmf.n_channels == want.n_channels and rmf.module == "A"
    assert (rmf.matrix != want.matrix).nnz == 0  # read now, from the response cache
    assert rmf._real is not None


def test_changed_input_file_invalidates_the_sidecar(workcopy, caplog):
    d = workcopy.parent
    stale = sidecar_path(workcopy).read_bytes()
    # Same size, new content: the region moves by a little.
    reg = d / "bgd1.reg"
    text = reg.read_text()
    i = text.index(",", text.index("circle(")) - 3  # a digit of the centre's RA, ~1e-7 degrees
    new = text[:i] + ("2" if text[i] != "2" else "3") + text[i + 1:]
    assert len(new) == len(text) and new != text
    reg.write_text(new)
    with caplog.at_level(logging.WARNING):
        an = load_fit_json(workcopy)
    assert any("bgd1.reg changed since the fit" in r.getMessage() for r in caplog.records)
    assert not any(isinstance(g.rmf, LazyResponse) for g in an.groups)  # read from the inputs
    fresh = from_inputs(workcopy)
    assert an.groups[0].weights == fresh.groups[0].weights
    assert sidecar_path(workcopy).read_bytes() != stale  # rebuilt
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_fit_json(workcopy)
    assert not caplog.records and isinstance(again.groups[0].rmf, LazyResponse)
    assert again.groups[0].weights == fresh.groups[0].weights


def test_changed_fit_json_or_corrupt_sidecar_is_rebuilt(workcopy, caplog):
    side = sidecar_path(workcopy)
    raw = bytearray(side.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    side.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        an = load_fit_json(workcopy)
    assert any("fit.npz" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert not isinstance(an.groups[0].rmf, LazyResponse)
    assert isinstance(load_fit_json(workcopy).groups[0].rmf, LazyResponse)
    caplog.clear()
    workcopy.write_text(workcopy.read_text().replace('"statistic": "cstat"', '"statistic":  "cstat"'))
    with caplog.at_level(logging.WARNING):
        load_fit_json(workcopy)
    assert any("fit.json changed" in r.getMessage() for r in caplog.records)


def test_foreign_npz_is_never_replaced(base, tmp_path):
    d = tmp_path / "work"
    shutil.copytree(base, d, ignore=shutil.ignore_patterns("fit.*"))
    (d / "fit.npz").write_bytes(b"the user's own file")
    fit = fit_in(d)
    assert (d / "fit.npz").read_bytes() == b"the user's own file"
    assert json.loads(fit.read_text())["sidecar"] is None
    assert not isinstance(load_fit_json(fit).groups[0].rmf, LazyResponse)
    assert (d / "fit.npz").read_bytes() == b"the user's own file"


def test_response_cache_shares_and_rebuilds(base, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NUSKYBGD_RESPONSE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "r.rmf"
    shutil.copy(base / "respA.rmf", path)
    want = read_rmf(path)
    first = read_response(path, module="A")
    assert read_response(path) is first  # shared in the process
    entry = cache_root() / f"{responsecache._matrix_of(content_hash(path))}.npz"
    assert entry.is_file() and entry.stat().st_size < 1.2 * path.stat().st_size
    # Another file with the same response (other keywords, other bytes) shares the object.
    other = tmp_path / "other.rmf"
    relabelled = copy.copy(want)
    relabelled.header = {**want.header, "OBS_ID": "12345678901"}
    write_rmf(relabelled, other)
    assert other.read_bytes() != path.read_bytes()
    assert read_response(other) is first
    responsecache._SHARED.clear()
    second = read_response(path)
    assert second is not first and (second.matrix != want.matrix).nnz == 0
    assert np.array_equal(second.matrix.indices, want.matrix.indices) and second.header == want.header
    # A corrupt cache file is reported and rebuilt.
    responsecache._SHARED.clear()
    raw = bytearray(entry.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    entry.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        third = read_response(path)
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert (third.matrix != want.matrix).nnz == 0
    responsecache._SHARED.clear()
    assert (read_response(path).matrix != want.matrix).nnz == 0
    # The module is checked as read_rmf does; a changed file is read again.
    with pytest.raises(Exception, match="INSTRUME"):
        read_response(path, module="B")
    write_rmf(load_rmf("B")[0], path, overwrite=True)
    assert read_response(path).module == "B"


def test_cli_predict_several_regions_modules_bands(fitted, base, capsys):
    capsys.readouterr()
    regs = [str(base / "src_point.reg"), str(base / "bgd1.reg")]
    assert main(["predict", str(fitted), *regs, "--module", "A", "B", "--band", "3", "20", "--band", "10", "30",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    want = predictions(load_fit_json(fitted), base)
    assert [(d["region"], d["module"], d["band_keV"]) for d in data] == \
        [(w["region"], w["module"], w["band_keV"]) for w in want]
    assert [d["total"] for d in data] == [w["total"] for w in want]
    assert main(["predict", str(fitted), *regs, "--module", "B"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["region", "FPM"] and len(lines) == 3
    assert lines[1].split()[:3] == ["src_point", "B", "3-20"]
    assert read_pha(base / "bgd1A_sr.pha").module == "A"


def test_written_rmfs_are_serialised_once(base, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NUSKYBGD_RESPONSE_CACHE", str(tmp_path / "cache"))
    resp = read_rmf(base / "respB.rmf")
    first = write_response(resp, tmp_path / "a.rmf")
    second = write_response(resp, tmp_path / "b.rmf")
    assert first.read_bytes() == second.read_bytes()
    back = read_rmf(second)
    assert (back.matrix != resp.matrix).nnz == 0 and back.module == "B"
    assert read_response(second) is read_response(first)
    with pytest.raises(Exception, match="exists"):
        write_response(resp, second)  # never replaced unless asked
    kept = next((tmp_path / "cache" / "written").glob("*.rmf"))
    raw = bytearray(kept.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    kept.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        third = write_response(resp, tmp_path / "c.rmf")
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert (read_rmf(third).matrix != resp.matrix).nnz == 0
