"""Several observations in the dashboard (issue 15): two tiny simulated visits of one field at different rolls.

The session loads both (one shown in the image, the spectra of both in the model), builds the joint
model with the engine's links across observations, fits it, switches the shown observation, exports
a ``bgdinfo.json`` that the CLI reads back, and takes a user GTI file (exposure checked against the
GTI intervals intersected here, independently of the engine) and the drop-invalid switch. No
browser: the panels are built headless. Two simulations and a few fits: the module is ``slow``.
"""

import json
import shutil

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from regions import CirclePixelRegion, PixCoord

from nuskybgd_engine.analysis import BackgroundAnalysis
from nuskybgd_engine.bgdinfo import read_bgdinfo
from nuskybgd_engine.cli import main as cli_main
from nuskybgd_engine.errors import BadConfigError, NuSkyBgdError
from nuskybgd_engine.io.gti import Gti, write_gti
from nuskybgd_engine.io.regions.shapes import is_sky
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation
from nuskybgd_engine.workflow import analysis_from_xcm
from nuskybgd_widgets.app import build_app

pytestmark = pytest.mark.slow

V1, V2, V3 = "90000700001", "90000700002", "90000700003"
#: Three background circles around the pointing (sky pixels of the simulated grid).
CIRCLES = {"bgd1": (430.0, 500.0), "bgd2": (570.0, 500.0), "bgd3": (500.0, 430.0)}
RADIUS = 40.0


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Two visits (PA 30° and 125°) on one sky grid, and a third pointed 1.2' away (another grid)."""
    root = tmp_path_factory.mktemp("visits")
    for obsid, seed, pa, ra in ((V1, 71, 30.0, 150.0), (V2, 72, 125.0, 150.0), (V3, 73, 200.0, 150.02)):
        simulate_observation(root, SimulationSpec(obsid=obsid, seed=seed, pa=pa, ra=ra, exposure=6000.0,
                                                  source="none"))
    return root


def _app(data_root, workspace):
    app = build_app(data_root=data_root, workspace=workspace)
    data = app.panels["data"]
    data.path.value = V1
    data.load()
    assert app.session.observation is not None, data.message.value
    for name, (x, y) in CIRCLES.items():
        app.session.add_region(CirclePixelRegion(PixCoord(x, y), RADIUS), name)
    return app


@pytest.fixture(scope="module")
def joint(data_root, tmp_path_factory):
    """The app with both visits loaded and the joint model fitted once."""
    app = _app(data_root, tmp_path_factory.mktemp("ws"))
    data = app.panels["data"]
    data.path.value = V2
    assert data.add() == V2, data.message.value
    app.session.fit()
    return app


def test_two_observations_loaded_one_shown(joint):
    s = joint.session
    assert s.observation_keys == (V1, V2) and s.shown == V1
    assert s.observation.obsid == V1
    # every background region has a spectrum per observation x module, named with the observation key
    want = [f"{k}_{r}{m}" for k in (V1, V2) for m in "AB" for r in CIRCLES]
    assert s.spectrum_names() == want
    assert s.model.observations == tuple(k for k in (V1, V2) for _ in range(6))
    assert s.model.group_index("bgd2", "B", V2) == want.index(f"{V2}_bgd2B") + 1
    assert "2 observations" in s.status and f"{V1} shown" in s.status
    # the spectra of the second visit come from its own events (another roll, another seed)
    g1, g2 = (s.analysis.groups[want.index(f"{k}_bgd1A")] for k in (V1, V2))
    assert not np.array_equal(g1.counts, g2.counts)
    assert g1.weights.total_area != pytest.approx(g2.weights.total_area, rel=1e-4)


def test_links_across_visits_follow_the_engine_rules(joint):
    """fcxb: one surface brightness per region and module (norm scaled by the detector areas); apbgd
    shared; intbgd/intn shared or free per visit with the model option ``internal``."""
    s = joint.session
    names = s.spectrum_names()
    st = s.analysis.state
    fcxb, ap, intn = st["fcxb"], st["apbgd"], st["intn"]
    for r in CIRCLES:
        for m in "AB":
            i, j = names.index(f"{V1}_{r}{m}") + 1, names.index(f"{V2}_{r}{m}") + 1
            link = fcxb[fcxb.index(j, 3)].link
            assert link is not None and link.index == fcxb.index(i, 3)
            area_i = s.analysis.groups[i - 1].weights.total_area
            area_j = s.analysis.groups[j - 1].weights.total_area
            assert link.factor == pytest.approx(area_j / area_i, rel=1e-12)
            assert st.value("fcxb", fcxb.index(j, 3)) == pytest.approx(
                st.value("fcxb", fcxb.index(i, 3)) * area_j / area_i, rel=1e-9)
    ref_v2 = names.index(f"{V2}_bgd1A") + 1
    ref_v1 = names.index(f"{V1}_bgd1A") + 1
    assert ap[ap.index(ref_v2, 3)].link.index == ap.index(ref_v1, 3)
    assert intn[intn.index(ref_v2, 4)].link is not None  # shared (the default)
    n_shared = len(s.analysis.model.free())
    s.set_options(internal="per_observation")
    try:
        intn = s.analysis.state["intn"]
        assert intn[intn.index(ref_v2, 4)].link is None  # free in the second visit
        assert joint.panels["data"].internal.value == "per_observation"
        assert len(s.analysis.model.free()) > n_shared
    finally:
        s.set_options(internal="shared")
    assert len(s.analysis.model.free()) == n_shared
    with pytest.raises(BadConfigError, match="internal must be one of"):
        s.set_options(internal="drifting")


def test_joint_fit_and_tables(joint):
    s = joint.session
    r = s.fit()
    assert r.converged
    # every observation's parameters are in the table; the search filters by observation key
    spectra = {p.spectrum for p in s.model.parameters}
    assert spectra == set(s.spectrum_names())
    table = joint.panels["parameters"]
    table.free_only.value = False  # with intbgd/intn shared every parameter of the second visit is linked
    table.search.value = V2
    assert table.shown and all(p.spectrum.startswith(V2) for p in table.shown)
    table.search.value = ""
    # the spectra panel shows every spectrum of both observations, stacked A | B
    sp = joint.panels["spectra"]
    sp.layout.value = "all"  # the small views are made when the stacked layout is shown
    assert sorted(sp.views) == sorted(s.spectrum_names())
    assert len(sp.stack.children) == 2 * 2 * len(CIRCLES)
    assert [v for _k, v in sp.observation.options] == ["", V1, V2] and sp.observation.layout.display is None
    sp.observation.value = V2  # the stacked view's observation filter
    assert sp.stack.children == tuple(sp.views[f"{V2}_{r}{m}"].widget for r in CIRCLES for m in "AB")
    sp.observation.value = ""
    sp.layout.value = "selected"
    # undo/redo of the joint fit
    before = s.model.parameters
    s.set_parameter("apbgd", s.analysis.state["apbgd"].index(1, 3), 0.5 * s.analysis.state.value("apbgd", 3))
    assert s.undo() == "edit" and s.model.parameters == before
    s.redo()
    assert s.model.parameters != before
    s.undo()


def test_switch_the_shown_observation(joint):
    s, image = joint.session, joint.panels["image"]
    assert image.observation.options == (V1, V2) and image.observation.layout.display is None
    s.fit()
    pred_v1 = s.predict("bgd2")
    image.observation.value = V2  # the dropdown
    assert s.shown == V2 and s.observation.obsid == V2
    assert np.array_equal(image._counts, s.observation[image.module.value].image.image)
    assert f"{V2} shown" in joint.panels["data"].status.value
    # predictions and model images follow the shown visit (its reference spectra, maps and exposure)
    pred_v2 = s.predict("bgd2")
    assert pred_v2["A"].total != pytest.approx(pred_v1["A"].total, rel=1e-6)
    assert s.analysis.selected == V2 and s.fit_is_current  # switching changes no value
    # a region moved on the shown image updates both visits' spectra
    names = s.spectrum_names()
    old = [s.analysis.groups[names.index(f"{k}_bgd3A")].counts.sum() for k in (V1, V2)]
    s.move_region("bgd3", CirclePixelRegion(PixCoord(500.0, 420.0), RADIUS))
    new = [s.analysis.groups[names.index(f"{k}_bgd3A")].counts.sum() for k in (V1, V2)]
    assert old[0] != new[0] and old[1] != new[1]
    s.move_region("bgd3", CirclePixelRegion(PixCoord(*CIRCLES["bgd3"]), RADIUS))
    image.show_observation(V1)
    assert s.shown == V1
    image.show_observation("nope")
    assert "no observation &#x27;nope&#x27;" in image.message.value


def test_export_bgdinfo_round_trip_through_the_cli(joint, tmp_path):
    s = joint.session
    s.fit()
    written = joint.panels["export"].export_bgdinfo()  # the "bgdinfo.json" button
    path = written[0]
    info = read_bgdinfo(path)
    assert [o.key for o in info.observations] == [V1, V2]
    assert info.group_observations == list(s.model.observations)
    assert info.internal == "shared"
    # the CLI's analysis of the file is the session's model: same links, same statistic at the same values
    an = BackgroundAnalysis.from_bgdinfo(path)
    assert [g.name.removesuffix("_sr.pha") for g in an.groups] == s.spectrum_names()
    for src in s.analysis.state:
        other = an.state[src.name]
        for k, p in enumerate(src.params, start=1):
            assert (other[k].link is None) == (p.link is None), (src.name, k)
            if p.link is None and not p.frozen:
                an.state.set_value(src.name, k, s.analysis.state.value(src.name, k))
    an.model.refresh_links()
    assert an.statistic_value("cstat") == pytest.approx(s.analysis.statistic_value("cstat"), rel=1e-10)
    # nuskybgd fit reads it and reaches the session's minimum
    out = tmp_path / "cli"
    assert cli_main(["fit", str(path), "--run", "--savefile", str(out)]) == 0
    fitted = json.loads((tmp_path / "cli.json").read_text())
    assert fitted["value"] == pytest.approx(s.result.value, abs=0.05)
    assert fitted["dof"] == s.result.dof
    # the session's fit as .xcm continues in the CLI on these spectra: the same model, values and links
    xcm = joint.panels["export"].export_xcm()[0]
    assert cli_main(["fit", str(path), "--xcm", str(xcm), "--savefile", str(tmp_path / "cont")]) == 0
    again = analysis_from_xcm(read_bgdinfo(path), xcm)
    assert again.statistic_value("cstat") == pytest.approx(s.analysis.statistic_value("cstat"), rel=1e-10)
    # one observation of it, as the CLI's --obs selects it
    single = BackgroundAnalysis.from_bgdinfo(path, obs=V2)
    assert len(single.groups) == 6


def test_undo_follows_the_spectra_into_the_joint_model(data_root, tmp_path):
    """An edit made with one observation is undone after a second one renamed its spectra."""
    app = _app(data_root, tmp_path / "ws")
    s = app.session
    k = s.analysis.state["apbgd"].index(1, 3)
    before = s.analysis.state.value("apbgd", k)
    s.set_parameter("apbgd", k, 2 * before)
    s.add_observation(V2)
    k = s.analysis.state["apbgd"].index(s.model.group_index("bgd1", "A", V1), 3)
    assert s.analysis.state.value("apbgd", k) == pytest.approx(2 * before)  # carried into the joint model
    assert s.undo() == "edit"
    assert s.analysis.state.value("apbgd", k) == pytest.approx(before)
    s.redo()
    assert s.analysis.state.value("apbgd", k) == pytest.approx(2 * before)
    s.rename_region("bgd1", "left")  # a renamed region: its steps follow it too
    s.undo()
    assert s.analysis.state.value("apbgd", s.analysis.state["apbgd"].index(
        s.model.group_index("left", "A", V1), 3)) == pytest.approx(before)


def test_observations_on_another_sky_grid_share_sky_regions(data_root, tmp_path):
    app = _app(data_root, tmp_path / "ws")
    s = app.session
    g1 = s.grid
    centre = {n: g1.wcs.pixel_to_world(x, y) for n, (x, y) in CIRCLES.items()}
    assert s.add_observation(V3) == V3
    assert s.data.mixed_grids
    assert all(is_sky(e.shape) for r in s.regions for e in r.regions)  # drawn pixels became sky regions
    s.show_observation(V3)
    g3 = s.grid
    assert g3 != g1
    for r in s.regions:
        pix = r.regions.to_pixel(g3)[0].shape  # what the image overlay draws on the shown grid
        sky = g3.wcs.pixel_to_world(pix.center.x, pix.center.y)
        assert sky.separation(centre[r.name]).arcsec < 0.01
        assert not np.allclose((pix.center.x, pix.center.y), CIRCLES[r.name], atol=1.0)  # another place in pixels
    # a region drawn on the shown (second) grid is stored on the sky and has spectra in both
    s.add_region(CirclePixelRegion(PixCoord(480.0, 560.0), RADIUS), "bgd4")
    assert is_sky(s.region("bgd4").regions[0].shape)
    assert {f"{k}_bgd4{m}" for k in (V1, V3) for m in "AB"} <= set(s.spectrum_names())
    s.move_region("bgd4", CirclePixelRegion(PixCoord(485.0, 560.0), RADIUS))
    c = s.region("bgd4").regions[0].shape.center
    assert c.separation(SkyCoord(g3.wcs.pixel_to_world(485.0, 560.0))).arcsec < 0.01


def _intersect(a, b):
    """Intersection of two lists of [start, stop) intervals (written here, not the engine's)."""
    out = []
    for s0, s1 in a:
        for t0, t1 in b:
            lo, hi = max(s0, t0), min(s1, t1)
            if hi > lo:
                out.append((lo, hi))
    return out


def test_user_gti_file_changes_the_exposure(data_root, tmp_path):
    ws = tmp_path / "ws"
    app = build_app(data_root=data_root, workspace=ws)
    evt = data_root / V1 / "event_cl" / f"nu{V1}A01_cl.evt"
    with fits.open(evt) as hdul:
        header = hdul["EVENTS"].header
        gti = hdul["GTI"].data if "GTI" in hdul else hdul["STDGTI"].data
        event_gti = list(zip(gti["START"].tolist(), gti["STOP"].tolist()))
        ratio = header["LIVETIME"] / header["ONTIME"]
    t0 = event_gti[0][0]
    user = [(t0 + 500.0, t0 + 2500.0), (t0 + 5900.0, t0 + 9000.0)]
    write_gti(Gti([u[0] for u in user], [u[1] for u in user]), ws / "mygti.fits")
    good = _intersect(event_gti, user)
    assert len(good) >= 2
    want = sum(hi - lo for lo, hi in good) * ratio
    data = app.panels["data"]
    data.path.value = V1
    data.gti.value = "mygti.fits"
    data.load()
    s = app.session
    assert s.observation is not None, data.message.value
    assert s.observation["A"].events.header["EXPOSURE"] == pytest.approx(want, rel=1e-9)
    assert f"usrgti: {len(good)} intervals, {sum(hi - lo for lo, hi in good) / 1e3:.1f} ks" in data.status.value
    s.add_region(CirclePixelRegion(PixCoord(430.0, 500.0), RADIUS), "bgd1")
    assert s.analysis.groups[0].exposure == pytest.approx(want, rel=1e-9)
    # without the GTI file: the whole exposure
    data.gti.value = ""
    data.load()
    assert s.observation["A"].events.header["EXPOSURE"] == pytest.approx(header["EXPOSURE"], rel=1e-9)
    assert "usrgti" not in data.status.value


@pytest.mark.parametrize("content,match", [
    (b"not a FITS file", "mygti.fits"),
    (None, "not found"),
])
def test_bad_gti_file_is_one_line_in_the_panel(data_root, tmp_path, content, match):
    ws = tmp_path / "ws"
    app = build_app(data_root=data_root, workspace=ws)
    if content is not None:
        (ws / "mygti.fits").write_bytes(content)
    data = app.panels["data"]
    data.path.value = V1
    data.gti.value = "mygti.fits"
    assert data.load() is None
    text = data.message.value
    assert match in text and "\n" not in text and "Traceback" not in text
    assert app.session.observation is None
    # a GTI file outside the workspace and the data root is refused too
    data.gti.value = "../../etc/passwd"
    data.load()
    assert "passwd" in data.message.value and app.session.observation is None


def test_gti_without_overlap_and_drop_invalid(data_root, tmp_path):
    ws = tmp_path / "ws"
    root = tmp_path / "data"
    shutil.copytree(data_root / V1, root / V1)
    app = build_app(data_root=root, workspace=ws)
    data = app.panels["data"]
    data.path.value = V1
    write_gti(Gti([1e6], [2e6]), ws / "early.fits")  # years before the visit
    data.gti.value = "early.fits"
    data.load()
    assert "no good time left" in data.message.value and app.session.observation is None
    data.gti.value = ""
    # a damaged event file: one PI value beyond TLMAX
    evt = root / V1 / "event_cl" / f"nu{V1}A01_cl.evt"
    with fits.open(evt, mode="update") as hdul:
        ev = hdul["EVENTS"]
        col = ev.columns.names.index("PI") + 1
        ev.data["PI"][3] = int(ev.header[f"TLMAX{col}"]) + 5
    data.load()
    text = data.message.value
    assert "TLMIN..TLMAX" in text and "drop invalid events" in text and "\n" not in text
    assert app.session.observation is None
    data.drop_invalid.value = True
    data.load()
    assert app.session.observation is not None, data.message.value
    assert len(app.session.observation["A"].events) > 0
    assert "1 invalid events dropped" in data.status.value


def test_add_observation_errors(joint):
    s = joint.session
    with pytest.raises(BadConfigError, match="loaded already"):
        s.add_observation(V2)
    with pytest.raises(BadConfigError, match="observation key"):
        s.add_observation(V3, key="a b")
    assert s.observation_keys == (V1, V2)
    with pytest.raises(NuSkyBgdError, match="missing"):
        s.add_observation("missing")
    with pytest.raises(BadConfigError, match="visits is for the demo"):
        s.load(V1, visits=2)
