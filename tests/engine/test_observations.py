"""Several observations in one model (issue 15 item 4): two simulated visits of one field at different PAs.

Each visit (20 ks, its own seed, aspect, maps and exposure) gets spectra of the same three fk5
background circles and a fourth held out. The joint model (``bgdinfo.json``'s ``observations`` form:
apbgd shared per module, intbgd/intn shared or per observation, fcxb one surface brightness per
circle) predicts the held-out circle of each visit; the truth is the simulator's expected counts
on its own maps (rebuilt here from the aspect and GTI files it wrote and its calibration). The
joint prediction errors must be smaller than those of a fit of each visit alone. About 50 s (two
simulations and four fits): the module is ``slow``.
"""

import json

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from nuskybgd_engine.analysis import BackgroundAnalysis
from nuskybgd_engine.bgdinfo import read_bgdinfo, write_bgdinfo
from nuskybgd_engine.calibration.products import load_rmf
from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.aspect import read_aspect
from nuskybgd_engine.io.gti import read_gti
from nuskybgd_engine.io.ogip import write_pha, write_rmf
from nuskybgd_engine.io.regions import RegionSet, SkyGrid, region_cutout
from nuskybgd_engine.maps.aspecthist import aspect_histogram
from nuskybgd_engine.maps.module_calibration import module_calibration
from nuskybgd_engine.maps.projection import project_maps, write_projected_maps
from nuskybgd_engine.model.background import region_weights
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.simulate import SimulationSpec, expected_counts, simulate_observation, sky_frame
from nuskybgd_engine.spectra.extract import extract_spectrum

RA, DEC = 150.0, 2.2
VISITS = {"v1": {"obsid": "90000400001", "seed": 41, "pa": 30.0},
          "v2": {"obsid": "90000400002", "seed": 42, "pa": 125.0}}
#: Circles 2.6' from the pointing every 90°, radius 100": on the detectors at any roll.
CIRCLES = {f"bgd{i + 1}": SkyCoord(RA * u.deg, DEC * u.deg).directional_offset_by(a * u.deg, 2.6 * u.arcmin)
           for i, a in enumerate((20.0, 110.0, 200.0, 290.0))}
FIT, HELD = ("bgd1", "bgd2", "bgd3"), "bgd4"
BGD = ("apbgd", "intbgd", "fcxb", "intn")

pytestmark = pytest.mark.slow


def _truth_maps(sim, spec, m, cal):
    """The simulator's projected maps (its calibration, the aspect and GTI it wrote)."""
    hdr = fits.Header({"NAXIS": 2, **sky_frame(spec), "PA_PNT": spec.pa})
    hist = aspect_histogram(read_aspect(sim.aspect_files[m], module=m), read_gti(sim.gti_files[m]))
    return project_maps(hdr, cal.instrument_map, hist, module=m, aperture=cal.aperture_det1), SkyGrid.from_header(hdr)


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    """Two simulated visits, their bgdinfo.json files (joint, and one per visit) and the held-out truth."""
    d = tmp_path_factory.mktemp("visits")
    for name, c in CIRCLES.items():
        (d / f"{name}.reg").write_text(f'fk5\ncircle({c.ra.deg:.8f},{c.dec.deg:+.8f},100")\n')
    for m in ("A", "B"):
        write_rmf(load_rmf(m)[0], d / f"resp{m}.rmf")
    cals = {m: module_calibration(m) for m in ("A", "B")}
    blocks, truth, held = [], {}, RegionSet.read_ds9(d / f"{HELD}.reg")
    for key, v in VISITS.items():
        spec = SimulationSpec(obsid=v["obsid"], seed=v["seed"], pa=v["pa"], exposure=20000.0, ra=RA, dec=DEC,
                              source="none")
        sim = simulate_observation(d, spec)
        obs = prepare_observation(sim.root)
        vd = d / key
        vd.mkdir()
        bgfiles, regfiles = [], []
        for m in ("A", "B"):
            write_projected_maps(obs[m].maps, vd / f"bgdap{m}.fits")
            tmaps, tgrid = _truth_maps(sim, spec, m, cals[m])
            cut = region_cutout(held, tgrid)
            sums = {"W": cut.sum(tmaps.bgdap), "A": [cut.sum(x) for x in tmaps.det]}
            exp = expected_counts(cals[m], m, spec.norms, tmaps, sums, spec.exposure)["3-20"]
            truth[(key, m)] = {"counts": sum(exp[k] for k in BGD),
                               "weights": region_weights(held, obs.grid, obs[m].maps, name=HELD)}
        for name in FIT + (HELD,):
            for m in ("A", "B"):
                s = extract_spectrum(obs[m].events, RegionSet.read_ds9(d / f"{name}.reg"), grid=obs.grid).spectrum
                s.header["RESPFILE"] = f"../resp{m}.rmf"
                write_pha(s, vd / f"{name}{m}.pha")
                if name == HELD:  # a "source" spectrum for spec/bgdspec, not fitted
                    continue
                bgfiles.append(f"{key}/{name}{m}.pha")
                regfiles.append(f"{name}.reg")
        block = {"key": key, "bgfiles": bgfiles, "regfiles": regfiles, "refimgf": f"{key}/bgdapA.fits",
                 "bgdapfiles": {m: f"{key}/bgdap{m}.fits" for m in ("A", "B")},
                 "bgddetfiles": {m: [f"{key}/det{n}{m}im.fits" for n in range(4)] for m in ("A", "B")}}
        blocks.append(block)
        single = {k: w for k, w in block.items() if k != "key"}
        single["fcxb_config"] = {"links": [[i, i + 1] for i in range(1, len(bgfiles), 2)]}
        (d / f"single_{key}.json").write_text(json.dumps({**single, "intbgd_fix_line_ratios": True}))
    n = len(blocks[0]["bgfiles"])
    links = [[i, i + 1] for i in range(1, 2 * n, 2)]  # A-B of each circle in each visit, global numbers
    for internal in ("shared", "per_observation"):
        (d / f"joint_{internal}.json").write_text(json.dumps(
            {"observations": blocks, "internal": internal, "fcxb_config": {"links": links},
             "intbgd_fix_line_ratios": True}))
    return d, truth


def _fit(path):
    an = BackgroundAnalysis.from_bgdinfo(path)
    an.fit("cstat")
    return an


@pytest.fixture(scope="module")
def fits_(visits):
    d, _ = visits
    return {"single": {k: _fit(d / f"single_{k}.json") for k in VISITS},
            "shared": _fit(d / "joint_shared.json"), "per_observation": _fit(d / "joint_per_observation.json")}


def test_bgdinfo_observations_form_reads_and_round_trips(visits, tmp_path):
    d, _ = visits
    info = read_bgdinfo(d / "joint_shared.json")
    assert [o.key for o in info.observations] == ["v1", "v2"]
    assert info.group_observations == ["v1"] * 6 + ["v2"] * 6
    assert info.modules == ["A", "B"] * 6 and info.observations[1].groups == list(range(7, 13))
    assert info.internal == "shared" and info.fcxb_across == "per_region"
    out = write_bgdinfo(info, tmp_path / "copy.json")  # another directory: paths made absolute, keys kept
    again = read_bgdinfo(out)
    assert [o.key for o in again.observations] == ["v1", "v2"] and again.bgfiles == info.bgfiles
    assert json.loads(out.read_text())["observations"][1]["key"] == "v2"


@pytest.mark.parametrize("change,field", [
    (lambda x: x.update(bgfiles=["a.pha"]), "observations"),
    (lambda x: x["observations"][1].update(key="v1"), "observations[1].key"),
    (lambda x: x["observations"][0].pop("bgddetfiles"), "observations[0].bgddetfiles"),
    (lambda x: x["observations"][0].update(regfiles=["bgd1.reg"]), "observations[0].regfiles"),
    (lambda x: x["observations"][1].update(colour="red"), "observations[1]"),
    (lambda x: x.update(internal="drifting"), "internal"),
    (lambda x: x.update(fcxb="shared"), "fcxb"),
    (lambda x: x.update(observations=[]), "observations"),
])
def test_bgdinfo_observations_errors(visits, change, field):
    d, _ = visits
    data = json.loads((d / "joint_shared.json").read_text())
    change(data)
    path = d / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadConfigError) as exc:
        read_bgdinfo(path)
    assert exc.value.field == field and "\n" not in str(exc.value)


def test_links_across_observations(fits_):
    """apbgd one reference per module; intbgd/intn shared or per visit; fcxb one brightness per circle."""
    for internal in ("shared", "per_observation"):
        st = fits_[internal].state
        ap, intn, fcxb = st["apbgd"], st["intn"], st["fcxb"]
        # Visit 2's first groups (7: A, 8: B) are linked to visit 1's (1, 2) for apbgd ...
        assert ap[ap.index(7, 3)].link.index == ap.index(1, 3)
        assert ap[ap.index(8, 3)].link.index == ap.index(2, 3)
        # ... and for intn only when shared.
        assert (intn[intn.index(7, 4)].link is not None) == (internal == "shared")
        if internal == "per_observation":  # visit 2's other groups follow visit 2's reference
            assert intn[intn.index(9, 4)].link.index == intn.index(7, 4)
        # fcxb of bgd1 A in visit 2 (group 7) follows visit 1's (group 1), scaled by the detector areas.
        w = st.weights
        link = fcxb[fcxb.index(7, 3)].link
        assert link.index == fcxb.index(1, 3)
        assert link.factor == pytest.approx(w[6].total_area / w[0].total_area)
        assert w[6].total_area != pytest.approx(w[0].total_area, rel=1e-3)  # the roll changed the area
    # Free parameters: shared = one visit's (visit 2 adds nothing); per observation = two visits' minus the
    # two apbgd references and visit 1's three fcxb brightnesses that visit 2 shares (line ratios stay fixed).
    n1 = len(fits_["single"]["v1"].result.free)
    assert len(fits_["single"]["v2"].result.free) == n1
    assert len(fits_["shared"].result.free) == n1
    assert len(fits_["per_observation"].result.free) == 2 * n1 - 2 - 3


def test_joint_predictions_against_truth_and_errors_smaller_than_single(visits, fits_):
    _, truth = visits
    rows = []
    for internal in ("shared", "per_observation"):
        joint = fits_[internal]
        for (key, m), t in truth.items():
            single = fits_["single"][key].predict(t["weights"], band=(3.0, 20.0))
            p = joint.predict(t["weights"], band=(3.0, 20.0), obs=key)
            pull = (p.total - t["counts"]) / p.stat_error
            rows.append((internal, key, m, pull, p.stat_error / single.stat_error))
            assert abs(pull) < 4.0, (internal, key, m, pull)
            if internal == "shared":  # everything but fcxb shared: the joint fit must beat each single fit
                assert p.stat_error < single.stat_error, (key, m, p.stat_error, single.stat_error)
    print("\n".join(f"{r[0]:16s} {r[1]} FPM{r[2]} pull {r[3]:+.2f} error joint/single {r[4]:.3f}" for r in rows))


def test_predict_needs_the_observation(visits, fits_):
    _, truth = visits
    joint = fits_["shared"]
    w = truth[("v1", "A")]["weights"]
    with pytest.raises(BadConfigError, match="several observations") as exc:
        joint.predict(w)
    assert exc.value.field == "obs"
    with pytest.raises(BadConfigError, match="no observation 'v3'"):
        joint.predict(w, obs="v3")
    with pytest.raises(BadConfigError, match="single observation"):
        fits_["single"]["v1"].predict(w, obs="v2")
    assert joint.observation("v2").grid is not joint.observation("v1").grid


def test_cli_fit_predict_image_spec_bgdspec_take_the_observation(visits, fits_, tmp_path, capsys):
    from nuskybgd_engine.cli import main

    d, truth = visits
    assert main(["fit", str(d / "joint_shared.json"), f"--savefile={tmp_path / 'joint'}", "--run"]) == 0
    assert main(["fit", str(d / "joint_shared.json"), f"--savefile={tmp_path / 'v2'}", "--run", "--obs", "v2"]) == 0
    assert main(["fit", str(d / "joint_shared.json"), "--obs", "v9"]) == 2
    # The exported joint .xcm (links across observations with their factors) continues to the same fit.
    assert main(["fit", str(d / "joint_shared.json"), f"--xcm={tmp_path / 'joint.xcm'}",
                 f"--savefile={tmp_path / 'cont'}", "--run"]) == 0
    first, cont = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("joint", "cont"))
    assert cont["value"] == pytest.approx(first["value"], rel=1e-6) and cont["dof"] == first["dof"]
    assert "no observation 'v9' (have v1, v2)" in capsys.readouterr().err
    # The joint fit's NAME.json reopens (no sidecar) and predicts in the named visit as the API does.
    capsys.readouterr()
    held = str(d / f"{HELD}.reg")
    assert main(["predict", str(tmp_path / "joint.json"), held, "--module", "B", "--obs", "v2", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = fits_["shared"].predict(truth[("v2", "B")]["weights"], obs="v2")
    assert cli["total"] == pytest.approx(api.total, rel=1e-4)
    assert cli["stat_error"] == pytest.approx(api.stat_error, rel=1e-3)
    assert main(["predict", str(tmp_path / "joint.json"), held, "--module", "B"]) == 2
    assert "several observations (v1, v2): name one" in capsys.readouterr().err
    # A fit of visit 2 alone (--obs) is the single-visit fit.
    assert main(["predict", str(tmp_path / "v2.json"), held, "--module", "B", "--json"]) == 0
    single = fits_["single"]["v2"].predict(truth[("v2", "B")]["weights"])
    assert json.loads(capsys.readouterr().out)["total"] == pytest.approx(single.total, rel=1e-4)
    # image, bgdspec and spec of visit 2: its maps, exposure and reference.
    assert main(["image", str(tmp_path / "joint.json"), "3", "20", f"--prefix={tmp_path}/v2_", "--obs", "v2"]) == 0
    with fits.open(tmp_path / "v2_bgd_total_B.fits") as h:
        img, exposure = h[0].data, h[0].header["EXPOSURE"]
    assert exposure == pytest.approx(fits_["shared"].groups[7].exposure)  # visit 2's FPMB reference
    w = fits_["shared"].observation("v2").maps["B"]
    cut = region_cutout(RegionSet.read_ds9(held), fits_["shared"].observation("v2").grid)
    assert cut.sum(img) == pytest.approx(api.total, rel=0.05)
    assert w.bgdap.shape == img.shape
    src = d / "v2" / f"{HELD}B.pha"
    out = tmp_path / "bgd4B_bgd.pha"
    assert main(["bgdspec", str(tmp_path / "joint.json"), held, str(src), f"--out={out}", "--obs", "v2"]) == 0
    assert f"{api.total:.2f}" in capsys.readouterr().out
    assert main(["spec", str(tmp_path / "joint.json"), held, str(src), f"--savefile={tmp_path / 'src.xcm'}",
                 "--obs", "v2"]) == 0
    assert "fit of 12 background spectra" in (tmp_path / "src.xcm").read_text()


def test_replace_group_keeps_the_observation_links(visits):
    """Moving a region (the widgets' edit) rebuilds the model with the same links across observations."""
    from nuskybgd_engine.analysis import replace_group

    d, _ = visits
    an = BackgroundAnalysis.from_bgdinfo(d / "joint_per_observation.json")
    before = {(s.name, k): (p.link.source, p.link.index, round(p.link.factor, 12)) if p.link else None
              for s in an.state for k, p in enumerate(s.params, start=1)}
    replace_group(an, 9, an.groups[8])
    after = {(s.name, k): (p.link.source, p.link.index, round(p.link.factor, 12)) if p.link else None
             for s in an.state for k, p in enumerate(s.params, start=1)}
    assert after == before
    assert an.joint.internal == "per_observation" and an.selected is None
    assert an.use_observation("v2").grid is an.observation("v2").grid and an.reference_group("A") == 7
