"""Background PHA of a source region (engine.bgdspec, ``nuskybgd bgdspec``) on the simulated demo observation."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.bgdspec import (
    background_spectrum,
    default_output,
    poisson_draws,
    set_backfile,
    write_background_spectrum,
    write_draws,
)
from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadFileError, BadRegionError, FitError, OutputExistsError
from nuskybgd_engine.io.ogip import read_pha, write_pha
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.model.background import region_weights
from nuskybgd_engine.analysis import BackgroundAnalysis
from nuskybgd_engine.export import save_fit_json
from nuskybgd_engine.results import SYSTEMATIC_FRACTION
from nuskybgd_engine.workflow import load_fit_json


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A FPMA-only fit of the demo's four background regions, saved as fit.json (files as the CLI makes them)."""
    from nuskybgd_engine.demo import ensure_demo_observation
    from nuskybgd_engine.maps.projection import write_projected_maps
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.spectra.extract import extract_spectrum

    obsdir = ensure_demo_observation()
    obs = prepare_observation(obsdir)
    d = tmp_path_factory.mktemp("bgdspec")
    write_projected_maps(obs["A"].maps, d / "bgdapA.fits")
    bgfiles, regfiles = [], []
    for k in range(1, 5):
        reg = obsdir / "regions" / f"bgd{k}.reg"
        spec = extract_spectrum(obs["A"].events, RegionSet.read_ds9(reg), grid=obs.grid).spectrum
        write_pha(spec, d / f"bgd{k}A.pha")
        bgfiles.append(f"bgd{k}A.pha")
        regfiles.append(str(reg))
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "bgdapA.fits", "bgdapfiles": {"A": "bgdapA.fits"},
            "bgddetfiles": {"A": [f"det{n}Aim.fits" for n in range(4)]}}
    (d / "bgdinfo.json").write_text(json.dumps(info))
    an = BackgroundAnalysis.from_bgdinfo(d / "bgdinfo.json")
    an.fit("cstat")
    save_fit_json(an, d / "fit.json")
    src_reg = obsdir / "regions" / "src_point.reg"
    rs = RegionSet.read_ds9(src_reg)
    for m in "AB":
        spec = extract_spectrum(obs[m].events, rs, grid=obs.grid).spectrum
        spec = replace(spec, backscal=0.0123, areascal=1.0)
        write_pha(spec, d / f"src{m}.pha")
    return {"dir": d, "fit": d / "fit.json", "analysis": an, "obs": obs, "src_reg": src_reg, "src_rs": rs}


@pytest.fixture(scope="module")
def bspec(fitted):
    return background_spectrum(fitted["analysis"], fitted["src_rs"], fitted["dir"] / "srcA.pha")


@pytest.mark.slow
def test_band_total_and_error_equal_predict(fitted, bspec):
    """Independent route: predict() folds the band sum through the reference group's responses."""
    an = fitted["analysis"]
    w = region_weights(fitted["src_rs"], fitted["obs"].grid, fitted["obs"]["A"].maps, name="src")
    for band in ((3.0, 20.0), (20.0, 50.0)):
        pred = an.predict(w, band=band, exposure=bspec.exposure)
        total, stat, sys = bspec.band(band)
        assert total == pytest.approx(pred.total, rel=1e-9)
        assert stat == pytest.approx(pred.stat_error, rel=1e-9)
        assert sys == pytest.approx(SYSTEMATIC_FRACTION * pred.total, rel=1e-9)
        for k, v in pred.components.items():
            lo, hi = pred.channels
            assert bspec.components[k][lo:hi + 1].sum() == pytest.approx(v, rel=1e-9)


@pytest.mark.slow
def test_jacobian_matches_finite_differences(fitted, bspec):
    """STAT_ERR rests on d counts / d norm: check it by perturbing each free norm and recomputing."""
    an = fitted["analysis"]
    state = an.state
    for j in (0, len(bspec.free) - 1, bspec.free.index(("apbgd", 3))):
        key = bspec.free[j]
        old = state[key[0]][key[1]].value
        try:
            state[key[0]][key[1]].value = old * 1.01
            an.model.refresh_links()
            moved = background_spectrum(an, fitted["src_rs"], fitted["dir"] / "srcA.pha")
        finally:
            state[key[0]][key[1]].value = old
            an.model.refresh_links()
        numeric = (moved.counts - bspec.counts) / (old * 0.01)
        assert np.allclose(numeric, bspec.jacobian[:, j], rtol=1e-6, atol=1e-12 * np.abs(numeric).max())
    # STAT_ERR per channel = sqrt(diag(J C J^T)), checked with a direct loop on a few channels.
    cov = bspec.covariance
    for c in (100, 300, 1000):
        g = bspec.jacobian[c]
        assert bspec.stat_err[c] == pytest.approx(np.sqrt(g @ cov @ g), rel=1e-12)


@pytest.mark.slow
def test_write_round_trip(fitted, bspec, tmp_path):
    out = write_background_spectrum(bspec, tmp_path / "srcA_bgd.pha", fit_path=fitted["fit"])
    back = read_pha(out)
    src = read_pha(fitted["dir"] / "srcA.pha")
    assert np.allclose(back.counts, bspec.counts, rtol=0, atol=0)
    assert back.exposure == src.exposure
    assert back.backscal == pytest.approx(0.0123) and back.areascal == 1.0
    assert back.module == "A"
    with fits.open(out) as h:
        hdr, data = h["SPECTRUM"].header, h["SPECTRUM"].data
        assert hdr["POISSERR"] is False
        assert hdr["HDUCLAS2"] == "BKG"
        assert "STAT_ERR" not in hdr and "SYS_ERR" not in hdr  # columns instead of keywords
        assert np.allclose(data["STAT_ERR"], bspec.stat_err)
        assert np.allclose(data["SYS_ERR"], SYSTEMATIC_FRACTION, rtol=1e-6)
        assert np.array_equal(data["CHANNEL"], src.channel)
    with pytest.raises(OutputExistsError):
        write_background_spectrum(bspec, out)


@pytest.mark.slow
def test_draws_are_poisson_realisations(bspec, tmp_path):
    draws = poisson_draws(bspec, 200, seed=3)
    assert all(d.dtype.kind == "i" for d in draws)
    sel = slice(35, 460)
    totals = np.array([d[sel].sum() for d in draws])
    lam = bspec.counts[sel].sum()
    # Mean within 4 standard errors of the model, variance of a Poisson count (within 25 %).
    assert abs(totals.mean() - lam) < 4 * np.sqrt(lam / totals.size)
    assert totals.var(ddof=1) == pytest.approx(lam, rel=0.25)
    paths = write_draws(bspec, tmp_path / "x_bgd.pha", 2, seed=1)
    assert [p.name for p in paths] == ["x_bgd_draw1.pha", "x_bgd_draw2.pha"]
    spec = read_pha(paths[0])
    assert np.array_equal(spec.counts, poisson_draws(bspec, 1, seed=1)[0])
    assert spec.header["POISSERR"] is True and spec.backscal == pytest.approx(0.0123)


@pytest.mark.slow
def test_set_backfile_keeps_the_rest(fitted, tmp_path):
    src = tmp_path / "s.pha"
    src.write_bytes((fitted["dir"] / "srcA.pha").read_bytes())
    before = read_pha(src)
    value = set_backfile(src, tmp_path / "s_bgd.pha")
    after = read_pha(src)
    assert value == "s_bgd.pha" and after.header["BACKFILE"] == "s_bgd.pha"
    assert np.array_equal(after.counts, before.counts) and after.exposure == before.exposure
    assert [h.name for h in after.extra_hdus] == [h.name for h in before.extra_hdus]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.pha"]  # no temporary left behind


@pytest.mark.slow
def test_cli_writes_background_draws_and_backfile(fitted, capsys):
    d = fitted["dir"]
    src = d / "cliA.pha"
    src.write_bytes((d / "srcA.pha").read_bytes())
    status = main(["bgdspec", str(fitted["fit"]), str(fitted["src_reg"]), str(src), "--draws", "2", "--seed", "5",
                   "--update-source"])
    assert status == 0
    out = default_output(src)
    assert out.name == "cliA_bgd.pha" and out.is_file()
    assert (d / "cliA_bgd_draw1.pha").is_file() and (d / "cliA_bgd_draw2.pha").is_file()
    assert read_pha(src).header["BACKFILE"] == "cliA_bgd.pha"
    text = capsys.readouterr().out
    assert "3-20 keV" in text and "BACKFILE" in text
    assert "(stat)" in text and "(sys, 2.43 % floor)" in text and "stat (+) sys" in text  # each error named
    # Same result as the engine call (the fit restored from fit.json).
    again = background_spectrum(load_fit_json(fitted["fit"]), fitted["src_rs"], src)
    assert np.allclose(read_pha(out).counts, again.counts, rtol=1e-9)
    assert main(["bgdspec", str(fitted["fit"]), str(fitted["src_reg"]), str(src)]) == 2  # exists, no --overwrite


@pytest.mark.slow
def test_other_module_spectrum_is_rejected(fitted):
    with pytest.raises(BadFileError) as err:
        background_spectrum(fitted["analysis"], fitted["src_rs"], fitted["dir"] / "srcB.pha")
    assert "srcB.pha" in str(err.value) and "INSTRUME" in str(err.value) and "FPMB" in str(err.value)


@pytest.mark.slow
def test_region_off_detectors_is_rejected(fitted, tmp_path):
    reg = tmp_path / "far.reg"
    reg.write_text("image\ncircle(30,30,10)\n")
    with pytest.raises(BadRegionError) as err:
        background_spectrum(fitted["analysis"], RegionSet.read_ds9(reg), fitted["dir"] / "srcA.pha")
    assert "far.reg" in str(err.value) and "region" in str(err.value)


@pytest.mark.slow
def test_fit_without_covariance_is_rejected(fitted, tmp_path):
    an = fitted["analysis"]
    saved = an.result
    try:
        an.result = None
        with pytest.raises(FitError) as err:
            background_spectrum(an, fitted["src_rs"], fitted["dir"] / "srcA.pha")
        assert "fit" in str(err.value)
        an.result = replace(saved, covariance=np.zeros((0, 0)))
        with pytest.raises(FitError) as err:
            background_spectrum(an, fitted["src_rs"], fitted["dir"] / "srcA.pha")
        assert "covariance" in str(err.value)
        cov = saved.covariance.copy()
        cov[0, 0] = np.nan
        an.result = replace(saved, covariance=cov)
        with pytest.raises(FitError) as err:
            background_spectrum(an, fitted["src_rs"], fitted["dir"] / "srcA.pha")
        assert "not finite" in str(err.value)
    finally:
        an.result = saved
    # A fit JSON without covariance (hand-edited) fails when loaded, naming the key.
    data = json.loads(fitted["fit"].read_text())
    del data["covariance"]
    bad = tmp_path / "nocov.json"
    bad.write_text(json.dumps(data))
    assert main(["bgdspec", str(bad), str(fitted["src_reg"]), str(fitted["dir"] / "srcA.pha"),
                 "--out", str(tmp_path / "o.pha")]) == 2
