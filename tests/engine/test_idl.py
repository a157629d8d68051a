"""IDL nuskybgd compatibility (issue 17): its `save all` sessions and nuskybgd_fitab's switches.

The expected numbers are derived here from the IDL files' layout (nuskybgd_fitab.pro before and
after 2015), not from :mod:`nuskybgd_engine.idl`.
"""

from __future__ import annotations

import json
import re
import math
import shutil
import warnings

import numpy as np
import pytest

from nuskybgd_engine.bgdinfo import UnknownKeyWarning, read_bgdinfo, write_bgdinfo
from nuskybgd_engine.calibration.products import load_rmf
from nuskybgd_engine.demo import ensure_demo_observation
from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.idl import apply_fit_options, idl_to_nuskybgd, is_idl_session
from nuskybgd_engine.io.ogip import read_pha, write_pha, write_rmf
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.maps.projection import write_projected_maps
from nuskybgd_engine.model.background import region_weights
from nuskybgd_engine.model.xcm_model import session_to_state
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.spectra.extract import extract_spectrum
from nuskybgd_engine.workflow import (
    BackgroundAnalysis,
    analysis_from_xcm,
    background_images,
    simplify_session,
    spec_export,
)
from nuskybgd_engine.xcm import DataEntry, Link, ResponseEntry, ParamLine, XcmSession, format_xcm, make_block, read_xcm, resolve_values

IDL_FILE = "nustar_jupiter_analysis/bgd_20013036002.xcm"
# The IDL file's spectra, in its data-group order (bgd0 is the demo's bgd4).
IDL_SPECTRA = [f"bgd{r}{m}_sr.pha" for m in "AB" for r in (1, 2, 3, 0)]
EC = 1e-4  # IDL's highecut cutoffE

# nuskybgd local index <- IDL (pre-2015) local index, per source.
OLD_OF_NEW = {
    "apbgd": {1: 5, 2: 8, 3: 6},  # nuabs(4) powerlaw(PhoIndex, norm) highecut(cutoffE, foldE) -> cutoffpl
    "fcxb": {1: 5, 2: 8, 3: 6},
    "intbgd": {**{k: 91 + k for k in range(1, 5)}, **{k: k for k in range(5, 92)}},  # apec last -> first
    "intn": {k: k for k in range(1, 5)},
}
OLD_NPAR = {"apbgd": 8, "fcxb": 8, "intbgd": 95, "intn": 4}


def _old_index(source, new_index):
    npar_new = len(OLD_OF_NEW[source])
    g, k = divmod(new_index - 1, npar_new)
    return g * OLD_NPAR[source] + OLD_OF_NEW[source][k + 1]


def _norm_factor(source, local_new):
    return math.exp(EC / 41.13) if source in ("apbgd", "fcxb") and local_new == 3 else 1.0


@pytest.fixture(scope="module")
def idl_session(data_dir):
    path = data_dir / IDL_FILE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return read_xcm(path)


@pytest.mark.requires_data
def test_real_idl_session_same_numbers_links_and_frozen_flags(idl_session):
    assert is_idl_session(idl_session)
    new, conv = idl_to_nuskybgd(idl_session)
    assert not is_idl_session(new)
    state = session_to_state(new)
    old_values = resolve_values(idl_session)
    for src in state:
        block = idl_session.model(src.name)
        npar_new = len(OLD_OF_NEW[src.name])
        assert src.n_par == npar_new and src.n_groups == 8
        for k, p in enumerate(src.params, start=1):
            local = (k - 1) % npar_new + 1
            ok = _old_index(src.name, k)
            line = block.params[ok - 1]
            scale = _norm_factor(src.name, local)
            assert state.value(src.name, k) == pytest.approx(old_values[(src.name, ok)] * scale, rel=1e-12)
            if isinstance(line, Link):
                # The same link, renumbered: target maps back onto the file's target.
                assert p.link is not None and _old_index(p.link.source, p.link.index) == line.index
                assert p.link.source == line.model and p.link.factor == pytest.approx(line.factor, rel=1e-12)
            else:
                assert p.link is None and p.frozen == line.frozen
                assert p.value == pytest.approx(line.value * scale, rel=1e-12)
    # e.g. `= apbgd:6*2.39092` (group 2) -> apbgd:p6 = 2.39092 * apbgd:p3
    assert state["apbgd"][6].link.index == 3 and state["apbgd"][6].link.factor == pytest.approx(2.39092)
    assert state["intn"][32].link.index == 20  # `= intn:20*1.01360`, unchanged numbering
    # nuabs is reported per group: the region-weighted Pt/CZT thicknesses of nuabs.dat (A: 0.0993, 0.3069 on DET1)
    assert conv.nuabs[("apbgd", 1)] == {"Pt": 0.0993395, "CZT": 0.306691, "Zn": 0.0, "CdRatio": 0.9}
    assert 0.07 < conv.nuabs[("apbgd", 3)]["Pt"] < 0.12


def test_highecut_inside_the_band_is_refused():
    """powerlaw*highecut equals cutoffpl only when the cut-off lies below the NuSTAR grid (1.6 keV)."""
    params = [ParamLine(0.1, -1), ParamLine(0.3, -1), ParamLine(0, -1), ParamLine(0.9, -1),
              ParamLine(1.29, -1), ParamLine(1e-3, 1e-4), ParamLine(10.0, -1), ParamLine(41.13, -1)]
    session = XcmSession(models=[make_block(2, "apbgd", "nuabs(powerlaw*highecut)", params, component_sizes=[4, 2, 2])])
    with pytest.raises(BadConfigError, match="inside the NuSTAR band"):
        idl_to_nuskybgd(session)


# -- a simulated observation with the IDL file's spectra ------------------------------------------


@pytest.fixture(scope="module")
def idl_workdir(tmp_path_factory):
    """bgdinfo.json listing bgd{1,2,3,0}{A,B}_sr.pha in the IDL file's order (bgd0 = the demo's bgd4)."""
    root = tmp_path_factory.mktemp("idl")
    obsdir = ensure_demo_observation(root / "demo")
    obs = prepare_observation(obsdir)
    d = root / "work"
    d.mkdir()
    for m in "AB":
        write_projected_maps(obs[m].maps, d / f"bgdap{m}.fits")
        write_rmf(load_rmf(m)[0], d / f"resp{m}.rmf")
    regions = {r: obsdir / "regions" / f"bgd{4 if r == 0 else r}.reg" for r in (0, 1, 2, 3)}
    bgfiles, regfiles = [], []
    for m in "AB":
        for r in (1, 2, 3, 0):
            shutil.copy(regions[r], d / f"bgd{r}.reg")
            spec = extract_spectrum(obs[m].events, RegionSet.read_ds9(regions[r]), grid=obs.grid).spectrum
            spec.header["RESPFILE"] = f"resp{m}.rmf"
            write_pha(spec, d / f"bgd{r}{m}_sr.pha")
            bgfiles.append(f"bgd{r}{m}_sr.pha")
            regfiles.append(f"bgd{r}.reg")
    shutil.copy(obsdir / "regions" / "src_point.reg", d / "src.reg")
    spec = extract_spectrum(obs["A"].events, RegionSet.read_ds9(d / "src.reg"), grid=obs.grid).spectrum
    spec.header["RESPFILE"] = "respA.rmf"
    write_pha(spec, d / "srcA_sr.pha")
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "bgdapA.fits",
            "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
            "bgddetfiles": {m: [f"det{n}{m}im.fits" for n in range(4)] for m in "AB"}}
    (d / "bgdinfo.json").write_text(json.dumps(info, indent=1))
    return d


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_idl_fit_continues_refit_spec_simplify_image_predict(idl_workdir, data_dir):
    path = data_dir / IDL_FILE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    an = analysis_from_xcm(idl_workdir / "bgdinfo.json", path)
    assert [g.name for g in an.groups] == IDL_SPECTRA
    old = resolve_values(read_xcm(path))
    assert an.state.value("apbgd", 3) == pytest.approx(old[("apbgd", 6)] * math.exp(EC / 41.13), rel=1e-12)
    assert an.state.value("intbgd", 4) == pytest.approx(old[("intbgd", 95)], rel=1e-12)
    c_before = an.statistic_value("cstat")
    result = an.fit("cstat")
    assert result.converged and result.value <= c_before
    # The IDL links survive the fit (B fcxb = A fcxb, intn of B tied to its reference).
    assert an.state["fcxb"][15].link.index == 3
    src = RegionSet.read_ds9(idl_workdir / "src.reg")
    w = region_weights(src, an.grid, an.maps["A"], name="src")
    pred = an.predict(w, band=(3.0, 20.0))
    assert pred.total > 0 and np.isfinite(pred.error)
    images = background_images(an, (3.0, 20.0))
    assert images["A"]["total"].sum() > 0
    out = spec_export(an, [an.groups[0]], idl_workdir / "bgd_src.xcm")
    session = read_xcm(out[0])
    simple = simplify_session(session, len(an.groups))
    assert simple.n_groups == 1


# -- IDL-form files written from our own fit ------------------------------------------------------


def _nuabs_of(weights, module):
    """IDL getnuabs: Pt/CZT thicknesses of nuabs.dat weighted by the region's detector fractions."""
    pt = {"A": [0.1143, 0.0993, 0.0712, 0.1081], "B": [0.1209, 0.0867, 0.1091, 0.0869]}[module]
    czt = {"A": [0.2275, 0.3069, 0.3476, 0.2554], "B": [0.2451, 0.2887, 0.2430, 0.3248]}[module]
    f = np.asarray(weights.A, float) / np.sum(weights.A)
    return float(np.dot(pt, f)), float(np.dot(czt, f))


def idl_form(state):
    """Our model written as pre-2015 IDL nuskybgd_fitab would: nuabs(powerlaw*highecut), apec last."""
    blocks = []
    n_groups = state["apbgd"].n_groups

    def line(p, scale=1.0):
        return ParamLine(p.value * scale, -abs(p.delta) if p.frozen else abs(p.delta))

    for name in ("apbgd", "fcxb"):
        src = state[name]
        params = []
        for g in range(1, n_groups + 1):
            pt, czt = _nuabs_of(state.weights[g - 1], state.modules[g - 1])
            if name == "apbgd":
                params += [ParamLine(pt, -1), ParamLine(czt, -1), ParamLine(0.0, -1), ParamLine(0.9, -1)]
            else:
                params += [Link(1.0, "apbgd", (g - 1) * 8 + k) for k in range(1, 5)]
            pho, ecut, norm = (src.param(g, k) for k in (1, 2, 3))
            f = math.exp(EC / state.value(name, src.index(g, 2)))
            for p, k_old in ((pho, 5), (norm, 6)):
                if p.link is not None:
                    k_t = (p.link.index - 1) % 3 + 1
                    g_t = (p.link.index - 1) // 3 + 1
                    params.append(Link(p.link.factor, p.link.source, (g_t - 1) * 8 + {1: 5, 2: 8, 3: 6}[k_t]))
                else:
                    params.append(line(p, 1.0 / f if k_old == 6 else 1.0))
            params.append(ParamLine(EC, -1))
            if ecut.link is not None:
                g_t = (ecut.link.index - 1) // 3 + 1
                params.append(Link(ecut.link.factor, ecut.link.source, (g_t - 1) * 8 + 8))
            else:
                params.append(line(ecut))
        blocks.append(make_block(src.number, name, "nuabs(powerlaw*highecut)", params, component_sizes=[4, 2, 2]))
    src = state["intbgd"]
    params = []
    for g in range(1, n_groups + 1):
        params += [Link(1.0, "apbgd", (g - 1) * 8 + k) for k in range(1, 5)]
        order = list(range(5, 92)) + [1, 2, 3, 4]
        for k in order:
            p = src.param(g, k)
            if p.link is not None:
                k_t = (p.link.index - 1) % 91 + 1
                g_t = (p.link.index - 1) // 91 + 1
                params.append(Link(p.link.factor, "intbgd", (g_t - 1) * 95 + (k_t + 91 if k_t <= 4 else k_t)))
            else:
                params.append(line(p))
    expr = "nuabs(" + " + ".join(["lorentz"] * 29 + ["apec"]) + ")"
    blocks.append(make_block(src.number, "intbgd", expr, params, component_sizes=[4] + [3] * 29 + [4]))
    src = state["intn"]
    params = [(Link(p.link.factor, "intn", p.link.index) if p.link is not None else line(p)) for p in src.params]
    blocks.append(make_block(src.number, "intn", "bknpower", params))
    return sorted(blocks, key=lambda b: b.source)


@pytest.mark.slow
def test_idl_form_of_our_fit_reads_back_to_the_same_model(idl_workdir, tmp_path):
    an = BackgroundAnalysis.from_bgdinfo(idl_workdir / "bgdinfo.json")
    an.fit("cstat")
    session = XcmSession(settings={"statistic": "cstat"},
                         data=[DataEntry(g, g, n) for g, n in enumerate(IDL_SPECTRA, start=1)],
                         responses=[ResponseEntry(s, g, "resp.rmf") for s in (2, 3, 4, 5) for g in range(1, 9)],
                         models=idl_form(an.state))
    path = tmp_path / "idl_form.xcm"
    path.write_text(format_xcm(session))
    back = analysis_from_xcm(idl_workdir / "bgdinfo.json", path)
    for src in an.state:
        for k, p in enumerate(src.params, start=1):
            q = back.state[src.name][k]
            assert back.state.value(src.name, k) == pytest.approx(an.state.value(src.name, k), rel=1e-9, abs=1e-300)
            assert (q.link is None) == (p.link is None) and q.frozen == p.frozen
            if p.link is not None:
                assert (q.link.source, q.link.index) == (p.link.source, p.link.index)
    assert back.statistic_value("cstat") == pytest.approx(an.result.value, rel=1e-9)


# -- nuskybgd_fitab switches ------------------------------------------------------------------------


def _nominal_ap(w):
    return 0.002353 / 32.0 * w.W  # nuskybgd_fitab.pro: str(0.002353/32.*total(bgdapfrac[ibgd,*]))


def _nominal_fcxb(w):
    # nuskybgd_fitab.pro: 0.002353*1.5*(2.45810736/3600.*1000.)^2*bgdbackscl, bgdbackscl = sum(A)/1000.^2
    return 0.002353 * 1.5 * (2.45810736 / 3600.0 * 1000.0) ** 2 * w.total_area / 1000.0**2


@pytest.mark.slow
def test_fixap_fixfcxb_as_nuskybgd_fitab(idl_workdir, tmp_path):
    info = json.loads((idl_workdir / "bgdinfo.json").read_text())
    info.update({"fixap": True, "fixfcxb": True})
    for p in ("bgfiles", "regfiles"):
        info[p] = [str(idl_workdir / f) for f in info[p]]
    for m in "AB":
        info["bgdapfiles"][m] = str(idl_workdir / info["bgdapfiles"][m])
        info["bgddetfiles"][m] = [str(idl_workdir / f) for f in info["bgddetfiles"][m]]
    info["refimgf"] = str(idl_workdir / info["refimgf"])
    (tmp_path / "b.json").write_text(json.dumps(info))
    an = BackgroundAnalysis.from_bgdinfo(tmp_path / "b.json")
    ap, fc = an.state["apbgd"], an.state["fcxb"]
    for g, w in enumerate(an.state.weights, start=1):
        pa, pf = ap.param(g, 3), fc.param(g, 3)
        # IDL: the reference norm written with delta -1e-4 (frozen), the others `=apbgd:N*ratio`.
        assert pa.link is not None or (pa.frozen and pa.value == pytest.approx(_nominal_ap(w), rel=1e-6))
        assert an.state.value("apbgd", ap.index(g, 3)) == pytest.approx(_nominal_ap(w), rel=1e-6)
        # IDL: every fcxb norm that is not linked written with delta -1e-6 (frozen) at its nominal value.
        assert pf.link is not None or (pf.frozen and pf.value == pytest.approx(_nominal_fcxb(w), rel=1e-6))
    assert not [k for k in an.state.free_parameters() if k[0] in ("apbgd", "fcxb")]


@pytest.mark.slow
def test_tieap_unties_each_further_observation(idl_workdir):
    """IDL: one apbgd reference per (observation, module) unless /tieap; one observation: no change."""
    an = BackgroundAnalysis.from_bgdinfo(idl_workdir / "bgdinfo.json")
    before = an.state.copy()
    apply_fit_options(an.state, tieap=False, obsids=["1"] * 8)
    assert [p.link for p in an.state["apbgd"].params] == [p.link for p in before["apbgd"].params]
    # Spectra 3, 4 (A) and 7, 8 (B) from a second observation.
    obs = ["1", "1", "2", "2", "1", "1", "2", "2"]
    changes = apply_fit_options(an.state, tieap=False, obsids=obs)
    ap = an.state["apbgd"]
    assert len(changes) == 2
    for g_first, g_other in ((3, 4), (7, 8)):
        first, other = ap.param(g_first, 3), ap.param(g_other, 3)
        assert first.link is None and not first.frozen
        w0, w1 = an.state.weights[g_first - 1].W, an.state.weights[g_other - 1].W
        assert other.link.index == ap.index(g_first, 3) and other.link.factor == pytest.approx(w1 / w0)
        assert first.value == pytest.approx(before.value("apbgd", ap.index(g_first, 3)))
    assert ap.param(2, 3).link.index == ap.index(1, 3)  # first observation: still its module's reference


# -- bgdinfo.json as users write it -----------------------------------------------------------------


@pytest.mark.slow
def test_unknown_bgdinfo_keys_warn_and_survive_a_round_trip(idl_workdir, tmp_path):
    data = json.loads((idl_workdir / "bgdinfo.json").read_text())
    data["my_note"] = {"observer": "me"}
    data["zz_version"] = 3
    src = idl_workdir / "with_unknown.json"
    src.write_text(json.dumps(data))
    with pytest.warns(UnknownKeyWarning, match="my_note, zz_version"):
        info = read_bgdinfo(src)
    write_bgdinfo(info, idl_workdir / "copy.json")
    back = json.loads((idl_workdir / "copy.json").read_text())
    assert back["my_note"] == {"observer": "me"} and back["zz_version"] == 3
    assert back["bgfiles"] == data["bgfiles"]  # same directory: names as the user wrote them
    with pytest.raises(Exception):
        write_bgdinfo(info, idl_workdir / "copy.json")  # never replaces a file unless asked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownKeyWarning)
        write_bgdinfo(info, tmp_path / "elsewhere.json")
        moved = read_bgdinfo(tmp_path / "elsewhere.json")
    assert moved.bgfiles == info.bgfiles


@pytest.mark.slow
def test_idl_switches_must_be_booleans(idl_workdir):
    data = json.loads((idl_workdir / "bgdinfo.json").read_text())
    data["fixap"] = "yes"
    (idl_workdir / "bad.json").write_text(json.dumps(data))
    with pytest.raises(BadConfigError, match="fixap"):
        read_bgdinfo(idl_workdir / "bad.json")


@pytest.mark.slow
def test_idl_pha_names_read_back(idl_workdir):
    assert read_pha(idl_workdir / "bgd0B_sr.pha").module == "B"


@pytest.mark.slow
def test_fit_cli_idl_switches_survive_the_saved_fit(idl_workdir, tmp_path):
    from nuskybgd_engine.cli import main
    from nuskybgd_engine.workflow import load_fit_json

    out = tmp_path / "fx"
    assert main(["fit", str(idl_workdir / "bgdinfo.json"), f"savefile={out}", "--run", "fixap=yes",
                 "--fixfcxb", "yes", "tieap=yes"]) == 0
    an = load_fit_json(tmp_path / "fx.json")
    free = an.state.free_parameters()
    assert free and not [k for k in free if k[0] in ("apbgd", "fcxb")]
    ap = an.state["apbgd"]
    w = an.state.weights[0]
    assert ap[3].frozen and ap[3].value == pytest.approx(_nominal_ap(w), rel=1e-6)


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_idl_fit_through_the_cli(idl_workdir, data_dir, tmp_path, capsys):
    """fit --xcm (continue), then predict, bgdspec, spec, simplify and image on the IDL fit."""
    from nuskybgd_engine.cli import main

    path = data_dir / IDL_FILE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    xcm = idl_workdir / "idl_fit.xcm"
    shutil.copy(path, xcm)
    d, info = idl_workdir, str(idl_workdir / "bgdinfo.json")
    assert main(["fit", info, f"savefile={tmp_path / 'idl'}", "--run", f"xcm={xcm}"]) == 0
    saved = json.loads((tmp_path / "idl.json").read_text())
    assert saved["xcm"] == str(xcm.resolve())
    assert main(["predict", str(tmp_path / "idl.json"), str(d / "src.reg"), "--module", "A"]) == 0
    assert main(["bgdspec", str(tmp_path / "idl.json"), str(d / "src.reg"), str(d / "srcA_sr.pha"),
                 f"out={tmp_path / 'bgd.pha'}"]) == 0
    assert main(["spec", str(xcm), info, str(d / "src.reg"), str(d / "srcA_sr.pha"),
                 f"savefile={tmp_path / 'bgd_src.xcm'}"]) == 0
    assert main(["simplify", info, str(tmp_path / "bgd_src.xcm")]) == 0
    assert (tmp_path / "bgd_only_src.xcm").is_file()
    assert main(["image", info, str(xcm), "3", "20", f"prefix={tmp_path}/"]) == 0
    assert (tmp_path / "bgd_total_B.fits").is_file()
    capsys.readouterr()


# -- nuskybgd_spec / nuskybgd_image / grpabovebgd options ------------------------------------------


@pytest.fixture(scope="module")
def idl_fit(idl_workdir):
    from nuskybgd_engine.cli import main

    assert main(["fit", str(idl_workdir / "bgdinfo.json"), f"savefile={idl_workdir / 'fitted'}", "--run"]) == 0
    return idl_workdir / "fitted.json"


def _bgdspec(fit, d, out, *extra):
    from nuskybgd_engine.cli import main

    assert main(["bgdspec", str(fit), str(d / "src.reg"), str(d / "srcA_sr.pha"), f"out={out}", *extra]) == 0
    return read_pha(out)


@pytest.mark.slow
def test_bgdspec_expfactor_perfect_is_idl_fakeit(idl_fit, idl_workdir, tmp_path, capsys):
    d = idl_workdir
    src = read_pha(d / "srcA_sr.pha")
    model = _bgdspec(idl_fit, d, tmp_path / "model.pha")
    perfect = _bgdspec(idl_fit, d, tmp_path / "perfect.pha", "--perfect")  # IDL's default expfactor 100
    assert perfect.exposure == pytest.approx(100 * src.exposure, rel=1e-12)
    assert np.allclose(perfect.counts, 100 * model.counts, rtol=1e-12, atol=0)
    assert perfect.backscal == pytest.approx(src.backscal)
    # What XSPEC subtracts: counts x (BACKSCAL EXPOSURE)_src / (BACKSCAL EXPOSURE)_bkg = the model in the region.
    scale = (src.backscal * src.exposure) / (perfect.backscal * perfect.exposure)
    assert np.allclose(perfect.counts * scale, model.counts, rtol=1e-12)
    noisy = _bgdspec(idl_fit, d, tmp_path / "noisy.pha", "--expfactor", "20", "--seed", "4")
    assert noisy.exposure == pytest.approx(20 * src.exposure)
    assert np.issubdtype(noisy.counts.dtype, np.integer) and not np.array_equal(noisy.counts, 20 * model.counts)
    lam = 20 * model.counts.sum()
    assert abs(noisy.counts.sum() - lam) < 5 * math.sqrt(lam)
    capsys.readouterr()


@pytest.mark.slow
def test_bgdspec_avgfcxb_uses_the_nominal_cxb(idl_fit, idl_workdir, tmp_path, capsys):
    from nuskybgd_engine.bgdspec import background_spectrum
    from nuskybgd_engine.workflow import load_fit_json

    d = idl_workdir
    an = load_fit_json(idl_fit)
    bspec = background_spectrum(an, RegionSet.read_ds9(d / "src.reg"), d / "srcA_sr.pha")
    avg = _bgdspec(idl_fit, d, tmp_path / "avg.pha", "--avgfcxb", "--perfect", "expfactor=1")
    # nuskybgd_spec.pro: 0.002353*(2.45810736/3600.*1000.)^2*backscl, backscl = total(mask)/1000.^2
    backscl = read_pha(d / "srcA_sr.pha").backscal
    nominal = 0.002353 * (2.45810736 / 3600.0 * 1000.0) ** 2 * backscl
    out = capsys.readouterr().out
    fitted = float(re.search(r"fitted ([0-9.eE+-]+)\)", out).group(1))
    expect = bspec.counts - bspec.components["fcxb"] + bspec.components["fcxb"] * nominal / fitted
    assert np.allclose(avg.counts, expect, rtol=1e-3, atol=1e-12)
    assert f"nominal {nominal:.4g}" in out


@pytest.mark.slow
def test_image_countsimg_bsub_and_nobsub(idl_fit, idl_workdir, tmp_path, capsys):
    from astropy.io import fits

    from nuskybgd_engine.cli import main
    from nuskybgd_engine.io.events import read_events
    from nuskybgd_engine.maps.images import make_counts_image, write_counts_image
    from nuskybgd_engine.workflow import load_fit_json

    evt = next((idl_workdir.parent / "demo").rglob("nu*A01_cl.evt*"))
    img_path = tmp_path / "imA3to20keV.fits"
    write_counts_image(make_counts_image(read_events(evt, columns=("X", "Y", "PI")), 3, 20), img_path)
    assert main(["image", str(idl_fit), "3", "20", f"prefix={tmp_path}/", f"countsimg={img_path}"]) == 0
    an = load_fit_json(idl_fit)
    with fits.open(img_path) as h:
        data, live = h[0].data.astype(float), float(h[0].header.get("LIVETIME", h[0].header["EXPOSURE"]))
    with fits.open(tmp_path / "bgd_total_A.fits") as h:
        total, exp_ref = h[0].data, h[0].header["EXPOSURE"]
    with fits.open(tmp_path / "bgdimA3to20keV.fits") as h:
        bgd = h[0].data
    with fits.open(tmp_path / "imA3to20keVbsub.fits") as h:
        bsub = h[0].data
    assert exp_ref == pytest.approx(an.groups[0].exposure)
    assert np.allclose(bgd, total * live / exp_ref, rtol=1e-6)  # IDL: scaled to the image LIVETIME
    assert np.allclose(bsub, data - bgd, rtol=1e-6, atol=1e-9)  # IDL: data - bgdim
    out2 = tmp_path / "nob"
    out2.mkdir()
    img2 = out2 / "imA3to20keV.fits"
    shutil.copy(img_path, img2)
    assert main(["image", str(idl_fit), "3", "20", f"prefix={out2}/", f"countsimg={img2}", "--nobsub"]) == 0
    assert (out2 / "bgdimA3to20keV.fits").is_file() and not (out2 / "imA3to20keVbsub.fits").exists()
    assert main(["image", str(idl_fit), "4", "20", f"prefix={out2}/x", f"countsimg={img2}"]) == 2  # other band
    capsys.readouterr()


def _idl_grpabovebgd(counts, bspec, ncts, chan=0):
    """pro/grpabovebgd.pro's loop, line by line."""
    grouping = np.zeros(len(counts), int)
    cts = bcts = 0
    firstval = 1
    for c in range(len(bspec)):
        cts += counts[c]
        bcts += bspec[c]
        if cts - bcts >= ncts or c == chan - 1:
            cts = bcts = 0
            grouping[c] = 1 if firstval else -1
            firstval = 1
        else:
            grouping[c] = 1 if firstval == 1 else -1
            firstval = 0
    return grouping


@pytest.mark.parametrize("seed, ncts, chan", [(1, 5, 0), (2, 20, 0), (3, 3, 40), (4, 1, 0)])
def test_group_above_background_is_idl_grpabovebgd(seed, ncts, chan):
    from nuskybgd_engine.spectra.grouping import group_above_background

    rng = np.random.default_rng(seed)
    counts = rng.poisson(3.0, 200)
    bkg = rng.uniform(0, 2.5, 200)
    assert np.array_equal(group_above_background(counts, bkg, ncts, chan=chan),
                          _idl_grpabovebgd(counts, bkg, ncts, chan))


@pytest.mark.slow
def test_grpabovebgd_cli_groups_stand_above_the_background(idl_fit, idl_workdir, tmp_path, capsys):
    from nuskybgd_engine.cli import main
    from nuskybgd_engine.spectra.grouping import group_starts

    d = idl_workdir
    bgd = _bgdspec(idl_fit, d, tmp_path / "bgd.pha", "--perfect")
    out = tmp_path / "grp.pha"
    assert main(["grpabovebgd", str(d / "srcA_sr.pha"), str(tmp_path / "bgd.pha"), str(out), "10"]) == 0
    src, grp = read_pha(d / "srcA_sr.pha"), read_pha(out)
    assert np.array_equal(grp.counts, src.counts)
    scaled = bgd.counts * (src.backscal * src.exposure) / (bgd.backscal * bgd.exposure)
    starts = list(group_starts(grp.grouping)) + [src.counts.size]
    net = [src.counts[a:b].sum() - scaled[a:b].sum() for a, b in zip(starts[:-1], starts[1:])]
    assert len(net) > 3 and all(n >= 10 for n in net[:-1])  # the last group may fall short, as in IDL
    capsys.readouterr()


@pytest.mark.slow
def test_our_fit_xcm_with_its_bgdinfo_is_continued(idl_fit, idl_workdir, tmp_path, capsys):
    """A nuskybgd-py style pair (bgdinfo.json + the fit's .xcm, as after `save all`) refits from the file's values."""
    from nuskybgd_engine.cli import main

    first = json.loads(idl_fit.read_text())
    assert main(["fit", str(idl_workdir / "bgdinfo.json"), f"savefile={tmp_path / 'again'}", "--run",
                 f"xcm={idl_workdir / 'fitted.xcm'}"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["value"] == pytest.approx(first["value"], rel=1e-6, abs=1e-6)
    assert main(["fit", str(idl_workdir / "bgdinfo.json"), f"savefile={tmp_path / 'x'}", "--run",
                 f"xcm={idl_workdir / 'fitted.xcm'}", "fixap=yes"]) == 2
    capsys.readouterr()


def test_post_2015_idl_layout_apec_last_without_nuabs():
    """IDL after 2015: apbgd cutoffpl, intbgd `lorentz+...(29)+apec` (apec last, line k norm at 3k)."""
    lines = []
    for k in range(29):
        lines += [ParamLine(3.0 + k, -1), ParamLine(0.1, -1),
                  (ParamLine(1e-3 * (k + 1), 1e-4) if k == 3 else Link(0.5 + k, "intbgd", 12))]
    apec = [ParamLine(1.14579, -1), ParamLine(1.32692, -1), ParamLine(0.0, -1), ParamLine(0.2, 0.02)]
    block = make_block(3, "intbgd", " + ".join(["lorentz"] * 29 + ["apec"]), lines + apec)
    ap = make_block(2, "apbgd", "cutoffpl", [ParamLine(1.29, -1), ParamLine(41.13, -1), ParamLine(1e-3, 1e-4)])
    session = XcmSession(models=[ap, block])
    assert is_idl_session(session)
    new, conv = idl_to_nuskybgd(session)
    b = new.model("intbgd")
    assert [t for _c, t in b.components] == ["apec"] + ["lorentz"] * 29
    assert [p.value for p in b.params[:4]] == [1.14579, 1.32692, 0.0, 0.2] and b.params[3].delta == 0.02
    # line 1 (IDL local 1-3) is now local 5-7; `=intbgd:12*r` (line 4 norm) becomes `=intbgd:16*r`
    assert b.params[4].value == 3.0 and b.params[6].index == 16 and b.params[6].factor == 0.5
    assert b.params[15].value == pytest.approx(4e-3)
    assert new.model("apbgd").params[2].value == 1e-3 and not conv.nuabs and not conv.norm_factors
