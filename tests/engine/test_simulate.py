"""The simulator: pipeline file layouts, reproducibility, truth vs events, bad options."""

import json

import numpy as np
import pytest
from astropy.io import fits
from scipy import stats

from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadConfigError, OutputExistsError
from nuskybgd_engine.io.aspect import read_aspect
from nuskybgd_engine.io.events import EVENT_COLUMNS, read_events
from nuskybgd_engine.io.gti import read_gti
from nuskybgd_engine.io.regions import RegionSet, SkyGrid, region_cutout
from nuskybgd_engine.simulate import (
    COMPONENT_NAMES,
    SimulationSpec,
    default_norms,
    det1_to_sky,
    simulate_observation,
    sky_to_det1,
)

EXPOSURE = 20000.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    norms = default_norms()
    norms["A"]["ap_factor"] = 1.3
    norms["B"]["intn_factor"] = [1.0, 2.0, 1.0, 0.5]
    return simulate_observation(out, SimulationSpec(obsid="90000000042", seed=7, exposure=EXPOSURE, pa=123.0,
                                                    source="both", norms=norms))


@pytest.mark.slow
def test_files_written(sim):
    root = sim.root
    for m in "AB":
        assert (root / "event_cl" / f"nu90000000042{m}01_cl.evt").is_file()
        assert (root / "event_cl" / f"nu90000000042{m}_det1.fits").is_file()
        assert (root / "event_cl" / f"nu90000000042{m}01_gti.fits").is_file()
    truth = json.loads((root / "truth.json").read_text())
    assert truth["obsid"] == "90000000042" and truth["pa_pnt"] == 123.0
    assert truth["norms"]["A"]["ap_factor"] == 1.3
    bgd = [k for k, v in truth["regions"].items() if v["kind"] == "background"]
    assert 3 <= len(bgd) <= 4
    assert {"src_point", "src_cluster"} <= set(truth["regions"])
    for name in truth["regions"]:
        assert (root / "regions" / f"{name}.reg").is_file()
    # No staging directory left behind.
    assert sorted(p.name for p in root.parent.iterdir()) == ["90000000042"]


@pytest.mark.slow
def test_readers_accept_simulated_files(sim):
    for m in "AB":
        ev = read_events(sim.event_files[m], module=m)
        assert len(ev) == sim.truth["modules"][m]["n_events"]
        assert ev.pa_pnt == 123.0
        assert ev.exposure == EXPOSURE
        assert ev.gti.exposure == pytest.approx(EXPOSURE / 0.95)
        assert np.all(np.diff(ev["TIME"]) >= 0)
        assert np.all(ev.gti.contains(ev["TIME"]))
        track = read_aspect(sim.aspect_files[m], module=m)
        inside = read_gti(sim.gti_files[m]).contains(track.time)
        span = np.ptp(track.x[inside]), np.ptp(track.y[inside])
        assert 10 < max(span) < 80  # a wobble of tens of pixels
        grid = SkyGrid.from_event_columns(fits.getheader(sim.event_files[m], "EVENTS"))
        assert grid.shape == (1000, 1000)
        # DET_ID / RAW / DET1 are consistent with each other (5x5 DET1 sub-pixels per RAW pixel).
        assert set(np.unique(ev["DET_ID"])) == {0, 1, 2, 3}
        assert ev["PI"].min() >= 0 and ev["PI"].max() <= 4095
    for name, path in sim.region_files.items():
        assert len(RegionSet.read_ds9(path)) == 1


def _layout(path, ext):
    from nuskybgd_engine.io.fitsutil import read_fits

    hdu = read_fits(path)[ext]  # tolerates the real file's string TCRVL keyword
    return {c.name: (str(c.format), c.unit) for c in hdu.columns}, hdu.header


@pytest.mark.requires_data
@pytest.mark.slow
def test_layout_matches_real_files(sim, data_dir):
    real_cols, real_hdr = _layout(data_dir / "nustar_sac" / "nu90410111001A06_cl_sunpos.evt", "EVENTS")
    cols, hdr = _layout(sim.event_files["A"], "EVENTS")
    assert set(cols) == set(EVENT_COLUMNS)
    for name, (fmt, _unit) in cols.items():
        assert real_cols[name][0] == fmt, name
    for key in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "DATE-OBS", "DATE-END", "TSTART", "TSTOP", "MJDREFI",
                "MJDREFF", "EXPOSURE", "LIVETIME", "ONTIME", "RA_NOM", "DEC_NOM", "RA_PNT", "DEC_PNT", "PA_PNT",
                "HDUCLASS", "HDUCLAS1", "TIMESYS", "EQUINOX", "RADECSYS"):
        assert key in real_hdr and key in hdr, key
    x = list(cols).index("X") + 1
    assert hdr[f"TCTYP{x}"] == "RA---TAN" and hdr[f"TCRPX{x}"] == 500.5
    assert hdr[f"TCDLT{x}"] == pytest.approx(-6.828076e-4) and hdr[f"TLMIN{x}"] == 1 and hdr[f"TLMAX{x}"] == 1000
    # Aspect and GTI files: same extension names, classes, columns and units as the pipeline's.
    real_cols, real_hdr = _layout(data_dir / "nustarFittingExample" / "nu80415201001A_det1.fits.gz", 1)
    cols, hdr = _layout(sim.aspect_files["A"], 1)
    assert cols == real_cols
    for key in ("EXTNAME", "HDUCLAS1", "TELESCOP", "INSTRUME"):
        assert hdr[key] == real_hdr[key]
    real_cols, real_hdr = _layout(data_dir / "nustarFittingExample" / "nu80415201001A06_gti.fits", 1)
    cols, hdr = _layout(sim.gti_files["A"], 1)
    assert set(cols) == set(real_cols) and [c[0] for c in cols.values()] == [c[0] for c in real_cols.values()]
    for key in ("EXTNAME", "HDUCLAS1", "HDUCLAS2", "TELESCOP"):
        assert hdr[key] == real_hdr[key]


@pytest.mark.slow
def test_reproducible_with_seed(tmp_path):
    spec = dict(obsid="90000000043", seed=3, exposure=2000.0, source="point")
    for d in "abc":
        (tmp_path / d).mkdir()
    a = simulate_observation(tmp_path / "a", SimulationSpec(**spec))
    b = simulate_observation(tmp_path / "b", SimulationSpec(**spec))
    c = simulate_observation(tmp_path / "c", SimulationSpec(**{**spec, "seed": 4}))
    ea, eb, ec = (read_events(o.event_files["A"]) for o in (a, b, c))
    for col in EVENT_COLUMNS:
        np.testing.assert_array_equal(ea[col], eb[col])
    assert len(ea) != len(ec) or not np.array_equal(ea["TIME"], ec["TIME"])


def _counts_in_region(path, rs, band):
    ev = read_events(path)
    grid = SkyGrid.from_event_columns(fits.getheader(path, "EVENTS"))
    cut = region_cutout(rs, grid)
    lo, hi = (int(round((e - 1.6) / 0.04)) for e in band)
    img = np.zeros(grid.shape)
    sel = (ev["PI"] >= lo) & (ev["PI"] < hi)
    np.add.at(img, (ev["Y"][sel].astype(int) - 1, ev["X"][sel].astype(int) - 1), 1)
    return cut.sum(img)


@pytest.mark.slow
def test_region_counts_match_truth(sim):
    """χ² of observed background counts vs truth.json over regions, bands and modules."""
    chi2, dof = 0.0, 0
    for name, entry in sim.truth["regions"].items():
        if entry["kind"] != "background":
            continue
        rs = RegionSet.read_ds9(sim.region_files[name])
        for m in "AB":
            for band, lims in (("3-20", (3.0, 20.0)), ("20-50", (20.0, 50.0))):
                expected = sum(entry["modules"][m]["expected"][band].values())
                observed = _counts_in_region(sim.event_files[m], rs, lims)
                assert expected > 50
                chi2 += (observed - expected) ** 2 / expected
                dof += 1
    assert dof >= 12
    assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)


@pytest.mark.slow
def test_component_counts_match_truth():
    """Per component: events of each background component in each region vs its expected counts."""
    from nuskybgd_engine.maps.module_calibration import module_calibration
    from nuskybgd_engine.maps.aspecthist import aspect_histogram
    from nuskybgd_engine.maps.projection import project_maps
    from nuskybgd_engine.simulate import (
        sky_frame,
        aspect_centre_for,
        expected_counts,
        make_aspect_track,
        make_gti,
        simulate_module_events,
    )

    spec = SimulationSpec(seed=11, exposure=60000.0, pa=250.0, source="none")
    rng = np.random.default_rng(spec.seed)
    gti = make_gti(spec.exposure, rng)
    cal = module_calibration("B")
    track = make_aspect_track("B", gti, aspect_centre_for(spec.pa), rng)
    hdr = fits.Header({"NAXIS": 2, **sky_frame(spec), "PA_PNT": spec.pa})
    maps = project_maps(hdr, cal.instrument_map, aspect_histogram(track, gti), module="B",
                        aperture=cal.aperture_det1)
    ev = simulate_module_events(spec, "B", cal, track, gti, rng)
    grid = SkyGrid.from_header(hdr)
    from regions import CirclePixelRegion, PixCoord

    chi2, dof = 0.0, 0
    x = ev.columns["X"].astype(int) - 1
    y = ev.columns["Y"].astype(int) - 1
    pi = ev.columns["PI"]
    # A 4x4 pattern of circles over the field: every detector, edges included.
    for cx in np.linspace(400, 600, 4):
        for cy in np.linspace(400, 600, 4):
            rs = RegionSet()
            rs.add(CirclePixelRegion(PixCoord(cx, cy), 40.0))
            cut = region_cutout(rs, grid)
            sums = {"W": cut.sum(maps.bgdap), "A": [cut.sum(d) for d in maps.det]}
            exp = expected_counts(cal, "B", spec.norms, maps, sums, spec.exposure)["3-20"]
            inband = (pi >= 35) & (pi < 460)
            for k, comp in enumerate(("apbgd", "intbgd", "fcxb", "intn")):
                sel = inband & (ev.component == COMPONENT_NAMES.index(comp))
                img = np.zeros(grid.shape)
                np.add.at(img, (y[sel], x[sel]), 1)
                obs = cut.sum(img)
                if exp[comp] < 20:
                    continue
                chi2 += (obs - exp[comp]) ** 2 / exp[comp]
                dof += 1
    assert dof > 20
    assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)


def test_det1_sky_mapping_round_trip():
    u = np.array([10.0, 180.5, 350.0, 359.0])
    v = np.array([5.0, 100.0, 350.0, 200.0])
    sx, sy = det1_to_sky(u, v, 400.0, 410.0, 77.0)
    bu, bv = sky_to_det1(sx, sy, 400.0, 410.0, 77.0)
    np.testing.assert_allclose(bu, u, atol=1e-9)
    np.testing.assert_allclose(bv, v, atol=1e-9)
    # DET1 (350, 350) lands on the aspect position minus the nudge.
    from nuskybgd_engine.maps.projection import det1_coordinates, nudge

    nx, ny = nudge(77.0)
    assert sx[2] == pytest.approx(400.0 - nx) and sy[2] == pytest.approx(410.0 - ny)
    # Consistent with the projection's nearest-pixel map (sky -> DET1 at the peak, no nudge).
    sx0, sy0 = det1_to_sky(u, v, 400.0, 410.0, 77.0)
    dx, dy = det1_coordinates(np.rint(sx0 + nx), np.rint(sy0 + ny), (400, 410), 77.0)
    assert np.all(np.abs(dx - u) <= 1) and np.all(np.abs(dy - v) <= 1)


# ----------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("kw,field", [({"exposure": -5}, "exposure"), ({"source": "galaxy"}, "source"),
                                      ({"obsid": "abc"}, "obsid"), ({"dec": 95}, "dec"), ({"seed": -1}, "seed")])
def test_bad_spec(kw, field):
    with pytest.raises(BadConfigError) as err:
        SimulationSpec(**kw)
    assert err.value.field == field


def test_bad_norms():
    with pytest.raises(BadConfigError, match="A.intn_factor"):
        SimulationSpec(norms={"A": {"intn_factor": [1, 2]}})
    with pytest.raises(BadConfigError, match="unknown key"):
        SimulationSpec(norms={"B": {"apbgd": 1}})


@pytest.mark.parametrize("args,expect", [
    (["--exposure", "-5"], "exposure"), (["--source", "galaxy"], "unknown source kind"),
])
def test_cli_bad_options_one_line(tmp_path, capsys, args, expect):
    assert main(["simulate", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_and_existing(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "90000000002").mkdir()
    (tmp_path / "90000000002" / "mine.txt").write_text("user data")
    assert main(["simulate", str(tmp_path), "--exposure", "500"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "90000000002" / "mine.txt").read_text() == "user data"
    with pytest.raises(OutputExistsError):
        simulate_observation(tmp_path, SimulationSpec(exposure=500))


def test_unwritable_outdir(tmp_path, monkeypatch, capsys):
    import os

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    assert main(["simulate", str(tmp_path), "--exposure", "500"]) == 2
    assert "not writable" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_simulate_and_overwrite(tmp_path, capsys):
    norms = tmp_path / "n.json"
    norms.write_text(json.dumps({"A": {"fcxb_factor": 2.0}}))
    assert main(["simulate", str(tmp_path), "obsid=90000000077", "exposure=1000", "source=none",
                 f"norms={norms}"]) == 0
    truth = json.loads((tmp_path / "90000000077" / "truth.json").read_text())
    assert truth["norms"]["A"]["fcxb_factor"] == 2.0 and truth["sources"] == []
    assert main(["simulate", str(tmp_path), "--obsid", "90000000077", "--exposure", "1000", "--overwrite"]) == 0
    assert "FPMA" in capsys.readouterr().out
