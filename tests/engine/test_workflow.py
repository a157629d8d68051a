"""The workflow layer on one simulated observation: fit recovery, prediction, saving, bad input, CLI steps.

One observation is simulated per module (the demo observation, 40 ks, both modules, a point
source) into a temporary directory; everything else reuses it. Truth comes from the simulator's
``truth.json`` (noise-free expected counts per component, region, module and band).
"""

import copy
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from nuskybgd_engine.bgdinfo import TEMPLATE, read_bgdinfo
from nuskybgd_engine.cli import main
from nuskybgd_engine.calibration.products import load_rmf
from nuskybgd_engine.commands.fit import output_names
from nuskybgd_engine.constants import band_to_channels
from nuskybgd_engine.demo import DEMO_SPEC, ensure_demo_observation
from nuskybgd_engine.errors import BadConfigError, BadFileError, FitError, NuSkyBgdError
from nuskybgd_engine.fit.native import LinearProblem, fit_linear
from nuskybgd_engine.io.fitsutil import read_fits
from nuskybgd_engine.io.ogip import read_pha, write_pha, write_rmf
from nuskybgd_engine.io.regions import RegionSet, region_cutout
from nuskybgd_engine.maps.projection import write_projected_maps
from nuskybgd_engine.model.background import BackgroundOptions, region_weights
from nuskybgd_engine.model.xcm_model import session_to_state
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.spectra.extract import extract_spectrum
from nuskybgd_engine.analysis import BackgroundAnalysis, replace_group
from nuskybgd_engine.export import export_fit_xcm, save_fit_json
from nuskybgd_engine.groups import group_from_events
from nuskybgd_engine.workflow import analysis_from_xcm, load_fit_json
from nuskybgd_engine.xcm import read_xcm, resolve_values

BGD_SOURCES = ("apbgd", "intbgd", "fcxb", "intn")
BAND = (3.0, 20.0)


# -- fixtures: one simulated observation, its maps, spectra and fit ----------------------------------


@pytest.fixture(scope="module")
def obsdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return ensure_demo_observation(root)


@pytest.fixture(scope="module")
def truth(obsdir):
    return json.loads((obsdir / "truth.json").read_text())


@pytest.fixture(scope="module")
def obs(obsdir):
    return prepare_observation(obsdir)


@pytest.fixture(scope="module")
def bgd_regions(truth):
    names = sorted(n for n in truth["regions"] if n.startswith("bgd"))
    assert len(names) >= 3
    return names


@pytest.fixture(scope="module")
def groups(obs, obsdir, bgd_regions):
    out = []
    for name in bgd_regions:
        rs = RegionSet.read_ds9(obsdir / "regions" / f"{name}.reg")
        for m in ("A", "B"):
            out.append(group_from_events(obs[m].events, rs, obs.grid, obs[m].maps, name=f"{name}{m}"))
    return out


def ab_links(n):
    return [(i, i + 1) for i in range(1, n, 2)]


@pytest.fixture(scope="module")
def fitted(groups):
    an = BackgroundAnalysis(groups, options=BackgroundOptions(fcxb_links=ab_links(len(groups)), fix_line_ratios=True))
    an.fit("cstat")
    return an


def band_counts_and_gradient(an, g, lo, hi):
    """Per-source counts in channels lo..hi of group g and their gradient by the free parameters."""
    col = {k: j for j, k in enumerate(an.result.free)}
    counts, grad = {}, {}
    for s, _c, tpl, i in an.model.components(g):
        c = float(tpl[lo:hi + 1].sum())
        counts[s] = counts.get(s, 0.0) + c * an.state.value(s, i)
        f, rs, ri = an.state.root(s, i)
        v = grad.setdefault(s, np.zeros(len(col)))
        if (rs, ri) in col:
            v[col[(rs, ri)]] += f * c
    return counts, grad


# -- recovery ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_recovers_the_simulated_components(fitted, truth):
    res = fitted.result
    assert res.converged and res.statistic == "cstat"
    assert any("stand-in" in w for w in res.warnings)
    lo, hi = band_to_channels(*BAND)
    diffs, grads = [], []
    for g, grp in enumerate(fitted.groups, start=1):
        exp = truth["regions"][grp.name[:-1]]["modules"][grp.module]["expected"]["3-20"]
        counts, grad = band_counts_and_gradient(fitted, g, lo, hi)
        for s in BGD_SOURCES:
            sigma = np.sqrt(grad[s] @ res.covariance @ grad[s])
            assert abs(counts[s] - exp[s]) < 4 * sigma, (grp.name, s, counts[s], exp[s], sigma)
            diffs.append(counts[s] - exp[s])
            grads.append(grad[s])
    # All components of all regions at once, with their full covariance (they share parameters).
    J = np.array(grads)
    V = J @ res.covariance @ J.T
    rank = np.linalg.matrix_rank(V, tol=1e-10 * np.abs(V).max())
    d = np.array(diffs)
    chi2 = float(d @ np.linalg.pinv(V, rcond=1e-10) @ d)
    assert chi2 < stats.chi2.ppf(0.999, rank), (chi2, rank)
    # The total per region is much better determined than the split: Poisson χ² of the totals over all
    # regions (the PSF wings of the simulated point source add a few % to the data, so they count as truth).
    chi2_tot = 0.0
    for g, grp in enumerate(fitted.groups, start=1):
        exp = truth["regions"][grp.name[:-1]]["modules"][grp.module]["expected"]["3-20"]
        tot_true = sum(exp[s] for s in BGD_SOURCES) + exp.get("point", 0.0)
        tot_fit = float(fitted.model.model_counts(g)[lo:hi + 1].sum())
        chi2_tot += (tot_fit - tot_true) ** 2 / tot_true
    assert chi2_tot < stats.chi2.ppf(0.999, len(fitted.groups)), chi2_tot


@pytest.mark.slow
def test_predict_source_region_within_3_sigma(fitted, obs, obsdir, truth):
    src = RegionSet.read_ds9(obsdir / "regions" / "src_point.reg")
    for m in ("A", "B"):
        pred = fitted.predict(region_weights(src, obs.grid, obs[m].maps, name="src"), band=BAND)
        exp = truth["regions"]["src_point"]["modules"][m]["expected"]["3-20"]
        true_bgd = sum(exp[s] for s in BGD_SOURCES)
        assert abs(pred.total - true_bgd) < 3 * pred.stat_error, (m, pred, true_bgd)
        assert set(pred.components) == set(BGD_SOURCES)
        assert pred.total == pytest.approx(sum(pred.components.values()), rel=1e-12)
        assert pred.error == pytest.approx(np.hypot(pred.stat_error, 0.04 / 1.645 * pred.total))
        assert all(pred.component_errors[s] > 0 for s in BGD_SOURCES)
        d = pred.to_dict()
        assert json.loads(json.dumps(d))["total"] == pred.total


@pytest.mark.slow
def test_predict_on_the_reference_region_equals_its_model(fitted):
    """The reference's own weights transfer with factor 1: the prediction is its model counts, and
    the statistical error is the propagated covariance of those counts."""
    lo, hi = band_counts = band_to_channels(*BAND)
    for r in (1, 2):
        pred = fitted.predict(fitted.state.weights[r - 1], band=BAND)
        counts, grad = band_counts_and_gradient(fitted, r, lo, hi)
        for s in BGD_SOURCES:
            assert pred.components[s] == pytest.approx(counts[s], rel=1e-9), s
        tot = sum(grad.values())
        assert pred.stat_error == pytest.approx(np.sqrt(tot @ fitted.result.covariance @ tot), rel=1e-9)
        assert pred.channels == band_counts
        # Twice the exposure, twice the counts
        assert fitted.predict(fitted.state.weights[r - 1], band=BAND,
                              exposure=2 * fitted.groups[r - 1].exposure).total == pytest.approx(2 * pred.total)


@pytest.mark.slow
def test_predict_errors(fitted, groups):
    with pytest.raises(BadConfigError):
        fitted.predict("not weights")
    with pytest.raises(BadConfigError):
        fitted.predict(fitted.state.weights[0], band=(20, 3))
    with pytest.raises(BadConfigError):
        fitted.predict(fitted.state.weights[0], exposure=0.0)
    an = BackgroundAnalysis(groups[:1])
    with pytest.raises(FitError):
        an.predict(groups[0].weights)
    an.fit("cstat")
    with pytest.raises(BadConfigError, match="FPMB"):
        an.predict(groups[1].weights)


@pytest.mark.slow
def test_fit_not_converging_is_reported(groups):
    an = BackgroundAnalysis(groups[:2])
    with pytest.raises(FitError) as exc:
        an.fit("cstat", max_iter=1)
    assert "converge" in str(exc.value)
    assert an.result is not None and not an.result.converged
    with pytest.raises(BadConfigError):
        an.fit("leastsq")
    with pytest.raises(BadConfigError):
        an.fit("cstat", backend="nosuch")


@pytest.mark.slow
def test_chi_fit_on_grouped_spectra(obs, obsdir):
    rs = RegionSet.read_ds9(obsdir / "regions" / "bgd1.reg")
    g = group_from_events(obs["A"].events, rs, obs.grid, obs["A"].maps, name="bgd1A", group_min=30)
    an = BackgroundAnalysis([g], options=BackgroundOptions(fix_line_ratios=True))
    res = an.fit("chi")
    b = an.model.binning[0]
    assert res.converged and b.n_noticed < 200
    assert np.all(an.model.binned_data(1) >= 30)  # every noticed group has >= 30 counts
    assert res.dof == b.n_noticed - len(res.free)


@pytest.mark.slow
def test_bad_spectra(groups):
    for bad in (0.0, float("nan")):
        with pytest.raises(BadFileError) as exc:
            replace(groups[0], exposure=bad)
        assert "EXPOSURE" in str(exc.value) and "bgd1A_sr.pha" in str(exc.value)
    counts = groups[0].counts.copy()
    counts[100] = np.nan
    with pytest.raises(BadFileError) as exc:
        replace(groups[0], counts=counts)
    assert "COUNTS" in str(exc.value)
    with pytest.raises(BadConfigError):
        BackgroundAnalysis([])


@pytest.mark.slow
def test_replace_group_keeps_the_fit_and_the_templates(fitted, groups, obs, obsdir):
    an = BackgroundAnalysis(list(groups), options=fitted.options)
    an.fit("cstat")
    before = {k: an.state[k[0]][k[1]].value for k in an.state.free_parameters()}
    n_templates = len(an.model._templates)
    rs = RegionSet.read_ds9(obsdir / "regions" / "bgd1.reg")
    from regions import CirclePixelRegion, PixCoord

    c = rs[0].shape.to_pixel(obs.grid.wcs)
    moved = RegionSet()
    moved.add(CirclePixelRegion(PixCoord(c.center.x + 5, c.center.y), c.radius), name="moved")
    new = group_from_events(obs["A"].events, moved, obs.grid, obs["A"].maps, name="bgd1A", rmf=groups[0].rmf)
    replace_group(an, 1, new)
    assert an.result is None and an.groups[0] is new
    for k, v in before.items():
        assert an.state[k[0]][k[1]].value == v
    assert an.state.weights[0] is new.weights
    an.model.components(1)
    assert len(an.model._templates) == n_templates  # same responses: nothing refolded
    with pytest.raises(BadConfigError):
        replace_group(an, 2, new)  # group 2 is FPMB
    with pytest.raises(BadConfigError):
        replace_group(an, 99, new)


@pytest.mark.slow
def test_export_of_a_fit_reloads_with_identical_values(fitted, tmp_path):
    written = export_fit_xcm(fitted, tmp_path / "fit.xcm")
    assert written[0] == tmp_path / "fit.xcm" and all(Path(p).exists() for p in written)
    state = session_to_state(read_xcm(tmp_path / "fit.xcm"))
    for s in fitted.state:
        for k in range(1, len(s.params) + 1):
            assert state.value(s.name, k) == pytest.approx(fitted.state.value(s.name, k), rel=1e-14), (s.name, k)
            assert state[s.name][k].state == s.params[k - 1].state
    # written responses are reused, not duplicated; the .xcm itself is never overwritten
    again = export_fit_xcm(fitted, tmp_path / "fit2.xcm")
    assert again == [tmp_path / "fit2.xcm"]
    with pytest.raises(NuSkyBgdError):
        export_fit_xcm(fitted, tmp_path / "fit.xcm")


@pytest.mark.slow
def test_save_fit_json_needs_a_bgdinfo_to_reload(fitted, tmp_path):
    path = save_fit_json(fitted, tmp_path / "f.json")
    data = json.loads(path.read_text())
    assert data["bgdinfo"] is None and data["converged"] and len(data["free"]) == len(fitted.result.free)
    assert data["options"]["fcxb_links"] == [list(p) for p in ab_links(len(fitted.groups))]
    with pytest.raises(BadConfigError) as exc:
        load_fit_json(path)
    assert "bgdinfo" in str(exc.value)
    with pytest.raises(NuSkyBgdError):
        save_fit_json(fitted, path)  # never overwritten
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(BadConfigError, match="junk.json"):
        load_fit_json(tmp_path / "junk.json")
    (tmp_path / "partial.json").write_text("{}")
    with pytest.raises(BadConfigError) as exc:
        load_fit_json(tmp_path / "partial.json")
    assert "partial.json" in str(exc.value)


# -- files on disk: bgdinfo.json and the CLI steps -------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, obs, obsdir, bgd_regions):
    """bgdinfo.json with 6 spectra (3 circles x A/B), their region files, maps and a source spectrum.

    All spectra of a module name the same RESPFILE (the nominal RMF, 28 MB), so it is read once.
    """
    d = tmp_path_factory.mktemp("work")
    for m in ("A", "B"):
        write_projected_maps(obs[m].maps, d / f"bgdap{m}.fits")
        write_rmf(load_rmf(m)[0], d / f"resp{m}.rmf")

    def spectrum(reg, m, stem):
        spec = extract_spectrum(obs[m].events, RegionSet.read_ds9(reg), grid=obs.grid).spectrum
        spec.header["RESPFILE"] = f"resp{m}.rmf"
        write_pha(spec, d / f"{stem}_sr.pha")
        return f"{stem}_sr.pha"

    bgfiles, regfiles = [], []
    for name in bgd_regions[:3]:
        shutil.copy(obsdir / "regions" / f"{name}.reg", d / f"{name}.reg")
        for m in ("A", "B"):
            bgfiles.append(spectrum(d / f"{name}.reg", m, f"{name}{m}"))
            regfiles.append(f"{name}.reg")
    shutil.copy(obsdir / "regions" / "src_point.reg", d / "src.reg")
    spectrum(d / "src.reg", "A", "srcA")
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "bgdapA.fits",
            "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
            "bgddetfiles": {m: [f"det{n}{m}im.fits" for n in range(4)] for m in ("A", "B")},
            "fcxb_config": {"links": [[1, 2], [3, 4], [5, 6]]}, "intbgd_fix_line_ratios": True}
    (d / "bgdinfo.json").write_text(json.dumps(info, indent=1))
    return d


@pytest.fixture(scope="module")
def cli_fit(workdir):
    """``nuskybgd fit bgdinfo.json savefile=fit --run`` (module scope: later CLI steps read it)."""
    status = main(["fit", str(workdir / "bgdinfo.json"), f"savefile={workdir / 'fit'}", "--run"])
    assert status == 0
    return workdir / "fit.json"


@pytest.fixture(scope="module")
def loaded(cli_fit):
    """The CLI fit restored from its NAME.json."""
    return load_fit_json(cli_fit)


def edit_info(workdir, tmp_path, **changes):
    info = json.loads((workdir / "bgdinfo.json").read_text())
    for k, v in changes.items():
        if v is None:
            info.pop(k, None)
        else:
            info[k] = v
    for k in ("bgfiles", "regfiles", "refimgf"):  # absolute paths: the JSON now lives elsewhere
        if isinstance(info.get(k), list):
            info[k] = [str(workdir / p) if not Path(p).is_absolute() else p for p in info[k]]
        elif isinstance(info.get(k), str):
            info[k] = str(workdir / info[k])
    for k in ("bgdapfiles", "bgddetfiles"):
        if isinstance(info.get(k), dict):
            info[k] = {m: (str(workdir / v) if isinstance(v, str) else [str(workdir / x) for x in v])
                       for m, v in info[k].items()}
    path = tmp_path / "bgdinfo.json"
    path.write_text(json.dumps(info))
    return path


@pytest.mark.slow
def test_bgdinfo_reads(workdir):
    info = read_bgdinfo(workdir / "bgdinfo.json")
    assert len(info.bgfiles) == 6 and info.fcxb_links == [(1, 2), (3, 4), (5, 6)] and info.fix_line_ratios
    assert info.bgddetfiles["B"][3] == workdir / "det3Bim.fits"
    assert set(TEMPLATE) <= {"bgfiles", "regfiles", "refimgf", "bgdapfiles", "bgddetfiles", "fcxb_config",
                             "intbgd_fix_line_ratios"}


@pytest.mark.parametrize("changes, field", [
    (dict(bgfiles=None), "bgfiles"),
    (dict(bgddetfiles=None), "bgddetfiles"),
    (dict(fixap="yes"), "fixap"),  # unknown keys only warn (tests/engine/test_idl.py)
    (dict(fcxb_config={"links": [[1, 1]]}), "fcxb_config.links"),
    (dict(fcxb_config={"links": [[1, 7]]}), "fcxb_config.links"),
    (dict(fcxb_config={"links": [["1", 2]]}), "fcxb_config.links"),
    (dict(fcxb_config=[1, 2]), "fcxb_config"),
    (dict(intbgd_fix_line_ratios="yes"), "intbgd_fix_line_ratios"),
    (dict(intbgd_fix_solar_ratios=1), "intbgd_fix_solar_ratios"),
    (dict(negative_norms=1), "negative_norms"),
    (dict(statistic="l1"), "statistic"),
    (dict(regfiles=["bgd1.reg"]), "regfiles"),
    (dict(bgfiles=["nosuch.pha"] * 6), "bgfiles[0]"),
    (dict(bgdapfiles={"A": "bgdapA.fits"}), "bgdapfiles.B"),  # B spectra, no B maps
    (dict(bgddetfiles={"A": ["det0Aim.fits"] * 4, "B": ["det0Bim.fits"] * 3}), "bgddetfiles.B"),
])
@pytest.mark.slow
def test_bgdinfo_errors(workdir, tmp_path, changes, field):
    path = edit_info(workdir, tmp_path, **changes)
    with pytest.raises(BadConfigError) as exc:
        read_bgdinfo(path)
    msg = str(exc.value)
    assert str(path) in msg and field in msg and "\n" not in msg


@pytest.mark.slow
def test_bgdinfo_missing_map_file_and_bad_json(workdir, tmp_path):
    path = edit_info(workdir, tmp_path)
    info = json.loads(path.read_text())
    info["bgddetfiles"]["A"][2] = str(tmp_path / "gone.fits")
    path.write_text(json.dumps(info))
    with pytest.raises(BadConfigError) as exc:
        read_bgdinfo(path)
    assert "bgddetfiles.A[2]" in str(exc.value) and "gone.fits" in str(exc.value)
    path.write_text("{not json")
    with pytest.raises(BadConfigError, match="JSON"):
        read_bgdinfo(path)
    with pytest.raises(BadConfigError, match="not found"):
        read_bgdinfo(tmp_path / "none.json")


@pytest.mark.slow
def test_one_module_analysis_needs_only_its_maps(workdir, tmp_path):
    info = json.loads((workdir / "bgdinfo.json").read_text())
    path = edit_info(workdir, tmp_path, bgfiles=info["bgfiles"][0::2], regfiles=info["regfiles"][0::2],
                     bgdapfiles={"A": "bgdapA.fits"}, bgddetfiles={"A": [f"det{n}Aim.fits" for n in range(4)]},
                     fcxb_config=None)
    assert sorted(read_bgdinfo(path).bgdapfiles) == ["A"]


@pytest.mark.slow
def test_zero_exposure_spectrum_file(workdir, tmp_path):
    spec = read_pha(workdir / "bgd1A_sr.pha")
    spec.exposure = 0.0
    spec.header["RESPFILE"] = str(workdir / "respA.rmf")
    write_pha(spec, tmp_path / "bgd1A_sr.pha")
    info = json.loads((workdir / "bgdinfo.json").read_text())
    info["bgfiles"][0] = str(tmp_path / "bgd1A_sr.pha")
    path = edit_info(workdir, tmp_path, bgfiles=info["bgfiles"])
    with pytest.raises(NuSkyBgdError) as exc:
        BackgroundAnalysis.from_bgdinfo(path)
    assert "EXPOSURE" in str(exc.value) and "bgd1A_sr.pha" in str(exc.value)


def test_output_names_are_numbered(tmp_path):
    assert output_names(tmp_path / "b") == (tmp_path / "b.xcm", tmp_path / "b.json")
    assert output_names(tmp_path / "b.xcm") == (tmp_path / "b.xcm", tmp_path / "b.json")  # no b.xcm.xcm
    (tmp_path / "b.json").write_text("{}")
    assert output_names(tmp_path / "b") == (tmp_path / "b2.xcm", tmp_path / "b2.json")
    (tmp_path / "b2.xcm").write_text("")
    assert output_names(tmp_path / "b") == (tmp_path / "b3.xcm", tmp_path / "b3.json")
    assert output_names(tmp_path / "b", overwrite=True) == (tmp_path / "b.xcm", tmp_path / "b.json")


@pytest.mark.slow
def test_cli_fit_prefilled_numbered_and_overwrite(workdir, loaded, tmp_path, capsys):
    info = workdir / "bgdinfo.json"
    out = tmp_path / "bgdparams"
    (tmp_path / "bgdparams.xcm").write_text("user's file\n")
    assert main(["fit", str(info), f"savefile={out}"]) == 0
    assert (tmp_path / "bgdparams.xcm").read_text() == "user's file\n"  # never overwritten: numbered
    session = read_xcm(tmp_path / "bgdparams2.xcm")
    assert session.n_groups == 6 and session.settings["statistic"] == "chi"
    assert not (tmp_path / "bgdparams2.json").exists()
    # the prefilled model is the preset model: apbgd reference norm = 7.353125e-5 W
    values = resolve_values(session)
    assert values[("apbgd", 3)] == pytest.approx(0.002353 / 32 * loaded.state.weights[0].W, rel=1e-14)
    assert values[("apbgd", 9)] == pytest.approx(0.002353 / 32 * loaded.state.weights[2].W, rel=1e-14)
    # responses are referenced, not copied: the spectra's RMF and the auxiliary files
    resp = {(r.source, r.spectrum): r.file for r in session.responses}
    assert resp[(2, 1)] == str(workdir / "respA.rmf") and resp[(3, 2)] == str(workdir / "respB.rmf")
    assert not list(tmp_path.glob("resp*.rmf"))
    assert main(["fit", str(info), f"savefile={out}.xcm", "--overwrite", "--stat", "cstat"]) == 0
    assert read_xcm(tmp_path / "bgdparams.xcm").settings["statistic"] == "cstat"
    assert not (tmp_path / "bgdparams.xcm.xcm").exists()
    capsys.readouterr()
    assert main(["fit", "--template"]) == 0
    assert json.loads(capsys.readouterr().out) == TEMPLATE


@pytest.mark.slow
def test_cli_fit_run_writes_xcm_and_json(cli_fit, loaded, workdir):
    data = json.loads(cli_fit.read_text())
    assert data["converged"] and data["statistic"] == "cstat"
    assert Path(data["bgdinfo"]) == (workdir / "bgdinfo.json").resolve()
    state = session_to_state(read_xcm(workdir / "fit.xcm"))
    for p in data["parameters"]:
        assert state.value(p["source"], p["index"]) == pytest.approx(p["value"], rel=1e-14)
    an = loaded
    assert an.result.free == [tuple((s.split(":p")[0], int(s.split(":p")[1]))) for s in data["free"]]
    for p in data["parameters"]:
        assert an.state.value(p["source"], p["index"]) == pytest.approx(p["value"], rel=1e-14)
    # the restored analysis gives the statistic of the fit
    assert an.statistic_value("cstat") == pytest.approx(data["value"], rel=1e-10)
    # the .xcm with its bgdinfo restores the same values (no covariance)
    ax = analysis_from_xcm(workdir / "bgdinfo.json", workdir / "fit.xcm")
    for p in data["parameters"]:
        assert ax.state.value(p["source"], p["index"]) == pytest.approx(p["value"], rel=1e-14)


@pytest.mark.slow
def test_cli_errors_are_one_line(workdir, tmp_path, capsys):
    bad = edit_info(workdir, tmp_path, bgfiles=None)
    assert main(["fit", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bgfiles" in err
    assert main(["predict", str(tmp_path / "nofit.json"), str(workdir / "src.reg"), "--module", "A"]) == 2
    assert "nofit.json" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_spec_and_simplify(cli_fit, loaded, workdir):
    assert main(["spec", str(cli_fit), str(workdir / "src.reg"), str(workdir / "srcA_sr.pha")]) == 0
    out = workdir / "bgd_src.xcm"
    session = read_xcm(out)
    assert session.n_groups == 7 and session.data[-1].file == "srcA_sr.pha"
    state = session_to_state(session)
    an = loaded
    rs = RegionSet.read_ds9(workdir / "src.reg")
    w = region_weights(rs, an.grid, an.maps["A"])
    # apbgd of the source = W_src / W_ref x fitted reference norm; fcxb free at its nominal value
    assert state.value("apbgd", 6 * 3 + 3) == pytest.approx(w.W / an.state.weights[0].W * an.state.value("apbgd", 3),
                                                             rel=1e-12)
    assert state["fcxb"][6 * 3 + 3].free
    assert state.value("fcxb", 21) == pytest.approx(1.6455454e-9 * w.total_area, rel=1e-6)
    src_free = [(s, k) for s, k in state.free_parameters() if (k - 1) // state[s].n_par == 6]
    assert src_free == [("fcxb", 21)]
    values = resolve_values(session)

    assert main(["simplify", str(out), str(workdir / "bgdinfo.json")]) == 0
    simple = read_xcm(workdir / "bgd_only_src.xcm")
    assert simple.n_groups == 1 and [d.file for d in simple.data] == ["srcA_sr.pha"]
    for block in simple.models:
        orig = next(b for b in session.models if b.name == block.name)
        assert block.n_params_per_group == orig.n_params_per_group
        for k, line in enumerate(block.params, start=1):
            assert line.frozen
            assert line.value == pytest.approx(values[(block.name, orig.global_index(7, k))], rel=1e-15)
    assert main(["simplify", str(out), "--ndrop", "6"]) == 0
    assert (workdir / "bgd_only_src2.xcm").exists()
    assert main(["simplify", str(out), "--ndrop", "6", "--savefile", str(workdir / "mine")]) == 0
    assert read_xcm(workdir / "mine.xcm").n_groups == 1  # NAME -> NAME.xcm, as `fit --savefile`
    assert main(["simplify", str(out), "--ndrop", "7"]) == 2


@pytest.mark.slow
def test_cli_image_sums(cli_fit, loaded, workdir, tmp_path):
    """§6.1-17: Σ over the reference region of the apbgd/intbgd/intn images = the model counts of the
    component in the reference spectrum; the per-module fcxb image (pooled surface brightness)
    summed over the module's regions = the fcxb counts of those regions (same exposures)."""
    assert main(["image", str(cli_fit), "3", "20", f"prefix={tmp_path}/"]) == 0
    an = loaded
    lo, hi = band_to_channels(*BAND)
    info = read_bgdinfo(workdir / "bgdinfo.json")
    for m in ("A", "B"):
        imgs = {c: read_fits(tmp_path / f"bgd_{c}_{m}.fits")[0] for c in BGD_SOURCES + ("total",)}
        r = an.state.modules.index(m) + 1
        assert imgs["apbgd"].header["EXPOSURE"] == an.groups[r - 1].exposure
        cut = {g: region_cutout(RegionSet.read_ds9(info.regfiles[g - 1]), an.grid)
               for g in range(1, 7) if an.state.modules[g - 1] == m}
        counts = {g: {s: float(v[lo:hi + 1].sum()) for s, v in an.model.source_counts(g).items()} for g in cut}
        for s in ("apbgd", "intbgd", "intn"):
            assert cut[r].sum(imgs[s].data) == pytest.approx(counts[r][s], rel=1e-9), (m, s)
        assert sum(cut[g].sum(imgs["fcxb"].data) for g in cut) == pytest.approx(
            sum(counts[g]["fcxb"] for g in cut), rel=1e-9)
        np.testing.assert_allclose(imgs["total"].data, sum(imgs[s].data for s in BGD_SOURCES), rtol=1e-6)
    # outputs are never replaced without --overwrite
    before = (tmp_path / "bgd_total_A.fits").read_bytes()
    assert main(["image", str(cli_fit), "3", "20", f"prefix={tmp_path}/"]) == 2
    assert (tmp_path / "bgd_total_A.fits").read_bytes() == before


@pytest.mark.slow
def test_cli_predict_json(cli_fit, loaded, workdir, capsys):
    capsys.readouterr()
    assert main(["predict", str(cli_fit), str(workdir / "src.reg"), "--module", "B", "--band", "3", "20",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    an = loaded
    rs = RegionSet.read_ds9(workdir / "src.reg")
    pred = an.predict(region_weights(rs, an.grid, an.maps["B"]), band=BAND)
    assert data["module"] == "B" and data["band_keV"] == [3.0, 20.0]
    assert data["total"] == pytest.approx(pred.total, rel=1e-12)
    assert data["stat_sys_error"] == pytest.approx(pred.stat_sys_error, rel=1e-12)
    assert data["stat_error"] == pytest.approx(pred.stat_error, rel=1e-12)
    assert data["sys_error"] == pytest.approx(0.04 / 1.645 * pred.total, rel=1e-12)
    assert "error" not in data  # every error is named for what it is
    assert set(data["components"]) == set(BGD_SOURCES)
    assert main(["predict", str(cli_fit), str(workdir / "src.reg"), "--module", "A"]) == 0
    out = capsys.readouterr().out
    assert "(stat)" in out and "(sys, 2.43 % floor)" in out and "stat (+) sys" in out
    # the floor is settable: 0 leaves the statistical error alone, a bad value is a one-line error
    assert main(["predict", str(cli_fit), str(workdir / "src.reg"), "--module", "B", "--systematic", "0",
                 "--json"]) == 0
    zero = json.loads(capsys.readouterr().out)
    assert zero["sys_error"] == 0 and zero["systematic_fraction"] == 0
    assert zero["stat_sys_error"] == pytest.approx(data["stat_error"], rel=1e-12)
    assert main(["predict", str(cli_fit), str(workdir / "src.reg"), "--module", "B", "--systematic", "1.5"]) == 2
    assert "systematic fraction must be in [0, 1)" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_demo_reuses_the_observation(obsdir, capsys):
    assert json.loads((obsdir / "truth.json").read_text())["seed"] == DEMO_SPEC["seed"]
    capsys.readouterr()
    assert main(["demo", str(obsdir.parent)]) == 0
    out = capsys.readouterr().out
    assert "simulate:" not in out  # the existing observation was reused
    assert (obsdir / "bgd" / "demo_fit.xcm").exists() and (obsdir / "bgd" / "demo_fit.json").exists()
    assert out.count("pull") == 2


@pytest.mark.slow
def test_save_fit_json_with_an_undetermined_parameter(loaded, tmp_path):
    """An undetermined parameter (error NaN, kept by a converged fit) is written as null and read back."""
    an = copy.copy(loaded)
    params = [dict(p) for p in loaded.result.parameters]
    k = next(i for i, p in enumerate(params) if p["state"] == "free")
    params[k]["error"] = float("nan")
    cov = loaded.result.covariance.copy()
    cov[0, :] = cov[:, 0] = np.nan
    an.result = replace(loaded.result, parameters=params, covariance=cov)
    path = save_fit_json(an, tmp_path / "undetermined.json")
    data = json.loads(path.read_text())
    assert data["parameters"][k]["error"] is None and data["covariance"][0][0] is None
    back = load_fit_json(path)
    assert np.isnan(back.result.parameters[k]["error"]) and np.isnan(back.result.covariance[0, 0])
    assert "FitResult" in repr(back.result)


@pytest.mark.slow
def test_fit_json_of_an_edited_bgdinfo_is_refused(cli_fit, workdir, tmp_path):
    """The covariance belongs to the fitted free parameters: a bgdinfo.json changed after the fit
    (here: line ratios no longer fixed) must not be combined with it silently."""
    bgdinfo = edit_info(workdir, tmp_path, intbgd_fix_line_ratios=False)
    data = json.loads(cli_fit.read_text())
    data["bgdinfo"] = str(bgdinfo)
    (tmp_path / "fit.json").write_text(json.dumps(data))
    with pytest.raises(BadConfigError) as exc:
        load_fit_json(tmp_path / "fit.json")
    assert "fit.json" in str(exc.value) and "free" in str(exc.value)


# -- norms below 0 (BackgroundOptions.negative_norms) ----------------------------------------------------


@pytest.fixture(scope="module")
def free_lines(groups):
    """The demo fitted with every line norm free, with and without the norms' lower limit.

    Several weak lines of this observation want to go below 0.
    """
    out = {}
    for neg in (False, True):
        an = BackgroundAnalysis(groups, options=BackgroundOptions(fcxb_links=ab_links(len(groups)),
                                                                  negative_norms=neg))
        an.fit("cstat")
        out[neg] = an
    return out


@pytest.mark.slow
def test_physical_fit_stops_norms_at_0(free_lines):
    an = free_lines[False]
    values = np.array([an.state.value(s, k) for s, k in an.result.free])
    assert values.min() == 0.0  # pegged, exactly at the limit
    assert not any("below 0" in w for w in an.result.warnings)


@pytest.mark.slow
def test_negative_norms_fit_is_the_unbounded_likelihood_maximum(free_lines):
    phys, an = free_lines[False], free_lines[True]
    assert an.result.converged
    free = an.result.free
    values = {f"{s}:p{k}": an.state.value(s, k) for s, k in free}
    negative = [name for name, v in values.items() if v < 0]
    assert negative and an.result.value < phys.result.value
    note = next(w for w in an.result.warnings if "below 0" in w)
    assert all(name in note for name in negative)
    # The same optimum as a fit with no lower bound at all, from another start.
    data, design, offset, free2 = an.model.linear_problem()
    assert free2 == free
    n = len(free)
    start = np.array([phys.state.value(s, k) for s, k in free]) + 1e-12
    ref = fit_linear(LinearProblem(data, design, offset, np.full(n, -np.inf), np.full(n, np.inf)), "cstat", start)
    assert ref.converged
    assert an.result.value == pytest.approx(ref.stat, rel=1e-9, abs=1e-6)
    errors = np.array([an.result.error(s, k) for s, k in free])
    np.testing.assert_array_less(np.abs(np.array(list(values.values())) - ref.theta), 1e-3 * errors)


@pytest.mark.slow
def test_negative_norms_from_bgdinfo_to_xcm_and_back(workdir, tmp_path, capsys):
    """bgdinfo ``negative_norms`` -> fit --run -> NAME.json/NAME.xcm keep the opened limits -> reloads."""
    path = edit_info(workdir, tmp_path, negative_norms=True, intbgd_fix_line_ratios=False)
    assert read_bgdinfo(path).negative_norms
    assert main(["fit", str(path), f"savefile={tmp_path / 'neg'}", "--run"]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "neg.json").read_text())
    assert data["options"]["negative_norms"] is True
    an = load_fit_json(tmp_path / "neg.json")
    assert an.options.negative_norms
    norms = [p for s in an.state for p in s.params if p.is_norm]
    assert norms and all(p.hard_min == p.soft_min == -1e24 for p in norms)
    assert all(p.hard_min != -1e24 for s in an.state for p in s.params if not p.is_norm and p.name != "Redshift")
    # The xcm carries the limits as XSPEC's newpar would, so XSPEC fits the same problem.
    text = (tmp_path / "neg.xcm").read_text()
    assert re.search(r"^\s*\S+\s+\S+\s+-1e\+24\s+-1e\+24\s+1e\+24\s+1e\+24\s*$", text, re.M)
    back = analysis_from_xcm(path, tmp_path / "neg.xcm")
    for s in an.state:
        for k, p in enumerate(s.params, start=1):
            q = back.state[s.name][k]
            if p.link is not None:
                continue
            assert (q.hard_min, q.soft_min, q.soft_max, q.hard_max) == (p.hard_min, p.soft_min, p.soft_max,
                                                                        p.hard_max), f"{s.name}:p{k}"
    back.fit("cstat")
    assert back.result.value == pytest.approx(data["value"], rel=1e-8)


@pytest.mark.slow
def test_replace_group_keeps_opened_limits(free_lines, groups):
    an = copy.copy(free_lines[True])
    an.options = BackgroundOptions(fcxb_links=ab_links(len(groups)))  # as if read from an xcm: limits only
    out = replace_group(an, 1, groups[0])
    assert all(p.hard_min == -1e24 for s in out.state for p in s.params if p.is_norm)


# -- goodness of fit (expected C-stat) -----------------------------------------------------------------


@pytest.mark.slow
def test_fit_reports_the_expected_cstat(fitted, loaded):
    res = fitted.result
    assert res.expected > 0 and res.expected_sigma > 0
    assert abs(res.goodness) < 3  # the simulated data are drawn from this model
    assert f"expected {res.expected:.1f}" in repr(res)
    assert not any("misses something" in w for w in res.warnings)
    d = res.to_dict()
    assert d["expected"] == res.expected and d["expected_sigma"] == res.expected_sigma
    assert loaded.result.goodness == pytest.approx(
        (loaded.result.value - loaded.result.expected) / loaded.result.expected_sigma)


@pytest.mark.slow
def test_a_model_missing_a_component_is_flagged(groups):
    an = BackgroundAnalysis(groups[:2], options=BackgroundOptions(fcxb_links=[(1, 2)]))
    r = an.state["intn"].n_par  # the internal continuum switched off: the data above 20 keV are missed
    for g in (1, 2):
        p = an.state["intn"][(g - 1) * r + r]
        if p.link is None:
            p.value, p.frozen = 0.0, True
    an.model.refresh_links()
    res = an.fit("cstat")
    assert res.goodness > 4
    assert any("misses something" in w and f"{res.expected:.1f}" in w for w in res.warnings)


@pytest.mark.slow
def test_chi_fit_has_no_expected_cstat(groups):
    an = BackgroundAnalysis(groups[:2], options=BackgroundOptions(fcxb_links=[(1, 2)]))
    res = an.fit("chi")
    assert res.expected is None and res.goodness is None and "expected" not in repr(res)
    assert res.to_dict()["expected"] is None


@pytest.mark.slow
def test_analysis_edits_replace_groups_set_value_set_maps(fitted, groups, obs, obsdir):
    """The edits the widgets make: several groups swapped all-or-none, a value set (the fit no longer
    describes the model), the projected maps attached for background_images."""
    from regions import CirclePixelRegion, PixCoord

    an = BackgroundAnalysis(list(groups), options=fitted.options)
    an.fit("cstat")
    c = RegionSet.read_ds9(obsdir / "regions" / "bgd1.reg")[0].shape.to_pixel(obs.grid.wcs)
    moved = RegionSet()
    moved.add(CirclePixelRegion(PixCoord(c.center.x + 5, c.center.y), c.radius), name="moved")
    new = {m: group_from_events(obs[m].events, moved, obs.grid, obs[m].maps, name=f"bgd1{m}") for m in "AB"}
    saved = (an.groups, an.state, an.model, an.result)
    with pytest.raises(BadConfigError, match="FPMA"):
        an.replace_groups({1: new["A"], 3: new["B"]})  # group 3 is FPMA: the swap of group 1 is undone too
    assert (an.groups, an.state, an.model, an.result) == saved and an.groups[0] is groups[0]
    an.replace_groups({1: new["A"], 2: new["B"]})
    assert an.groups[:2] == [new["A"], new["B"]] and an.result is None
    assert an.state.weights[1] is new["B"].weights
    an.fit("cstat")
    free, linked = an.state.free_parameters()[0], next(
        (s.name, k) for s in an.state for k, p in enumerate(s.params, start=1) if p.link is not None)
    with pytest.raises(BadConfigError, match="linked"):
        an.set_value(*linked, 1.0)
    assert an.result is not None
    an.set_value(*free, an.state.value(*free) * 2)
    assert an.result is None
    with pytest.raises(BadConfigError, match="maps"):
        an.set_maps({"A": obs["A"].maps})
    an.set_maps({m: obs[m].maps for m in "AB"})
    from nuskybgd_engine.workflow import background_images

    assert set(background_images(an, (3.0, 20.0), modules=("A",))) == {"A"}
