"""Source detection and suggested background regions (engine.suggest, ``nuskybgd suggest-regions``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nuskybgd_engine.cli import main
from nuskybgd_engine.constants import PIXEL_ARCSEC
from nuskybgd_engine.errors import BadConfigError, BadRegionError
from nuskybgd_engine.io.regions import RegionSet, region_cutout
from nuskybgd_engine.suggest import apbgd_fcxb_correlation, significance_map, suggest_regions


def test_significance_map_hand_values():
    counts = np.zeros((20, 20))
    bkg = np.full((20, 20), 0.1)
    counts[10, 10] = 12.0
    s = significance_map(counts, bkg, box=3)
    n, b = 12.0, 0.9  # 3x3 cell around (10, 10)
    assert s[10, 10] == pytest.approx(math.sqrt(2 * (n * math.log(n / b) - (n - b))))
    # A cell with no counts: N = 0 gives -sqrt(2B).
    assert s[2, 2] == pytest.approx(-math.sqrt(2 * 0.9))
    assert significance_map(np.ones((5, 5)), np.ones((5, 5)), box=1) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def demo():
    from nuskybgd_engine.demo import ensure_demo_observation
    from nuskybgd_engine.observation import prepare_observation

    obsdir = ensure_demo_observation()
    obs = prepare_observation(obsdir)
    truth = json.loads((obsdir / "truth.json").read_text())
    return obsdir, obs, truth, suggest_regions(obs)


@pytest.mark.slow
def test_detects_the_simulated_source_and_nothing_else(demo):
    _, _, truth, sug = demo
    src = truth["sources"][0]
    best = sug.sources[0]
    assert math.hypot(best.x - src["x"], best.y - src["y"]) < 3
    # Anything else found is the same source's PSF wings (the King profile reaches 300"), not noise.
    for s in sug.sources:
        assert math.hypot(s.x - src["x"], s.y - src["y"]) < 300 / PIXEL_ARCSEC


@pytest.mark.slow
def test_suggested_regions_meet_the_rules(demo):
    obsdir, obs, truth, sug = demo
    src = truth["sources"][0]
    assert [rs[0].name for rs in sug.regions] == ["bgd1", "bgd2", "bgd3", "bgd4"]
    assert sorted(c.detector for c in sug.choices) == [0, 1, 2, 3]
    ratios = []
    for rs, c in zip(sug.regions, sug.choices):
        cut = region_cutout(rs, obs.grid)
        for m in "AB":
            cov = sum(cut.sum(d) for d in obs[m].maps.det) / cut.npix
            assert cov >= 0.94  # pixel-centre mask vs the smooth disk of the search: 1 % slack
        # Clear of the source's PSF core + margin, and of each other.
        assert math.hypot(c.x - src["x"], c.y - src["y"]) > c.radius + 90 / PIXEL_ARCSEC
        ratios.append(cut.sum(obs["A"].maps.bgdap) / sum(cut.sum(d) for d in obs["A"].maps.det))
    for i in range(4):
        for j in range(i):
            a, b = sug.choices[i], sug.choices[j]
            assert math.hypot(a.x - b.x, a.y - b.y) >= 2 * a.radius
    # They span the aperture gradient: W/A of the regions differs by more than a factor 2.
    assert max(ratios) / min(ratios) > 2
    assert sug.warnings == []
    again = suggest_regions(obs)
    assert [(c.x, c.y) for c in again.choices] == [(c.x, c.y) for c in sug.choices]


@pytest.mark.slow
def test_degeneracy_is_reported_and_suggested_regions_break_it(demo):
    """One region per module: apbgd and fcxb norms are degenerate and the fit warns. The suggested regions
    with the fcxb surface brightness shared by the regions of a module: no warning."""
    from nuskybgd_engine.model.background import BackgroundOptions
    from nuskybgd_engine.analysis import DEGENERACY_THRESHOLD, BackgroundAnalysis
    from nuskybgd_engine.groups import group_from_events

    _, obs, _, sug = demo
    one = [group_from_events(obs["A"].events, sug.regions[0], obs.grid, obs["A"].maps, name="one")]
    an = BackgroundAnalysis(one)
    res = an.fit("cstat")
    rho = apbgd_fcxb_correlation(an)["A"]
    cov = res.covariance
    i, j = res.free.index(("apbgd", 3)), res.free.index(("fcxb", 3))
    assert rho == pytest.approx(cov[i, j] / math.sqrt(cov[i, i] * cov[j, j]))
    assert abs(rho) > DEGENERACY_THRESHOLD
    assert any("degenerate" in w and f"{rho:+.2f}" in w for w in res.warnings)
    assert res.degeneracy["A"] == pytest.approx(rho) and res.to_dict()["degeneracy"]["A"] == pytest.approx(rho)

    groups = [group_from_events(obs["A"].events, rs, obs.grid, obs["A"].maps, name=f"g{k}")
              for k, rs in enumerate(sug.regions, start=1)]
    an = BackgroundAnalysis(groups, options=BackgroundOptions(fcxb_links=[(1, 2), (1, 3), (1, 4)]))
    res = an.fit("cstat")
    assert abs(apbgd_fcxb_correlation(an)["A"]) < DEGENERACY_THRESHOLD
    assert not any("degenerate" in w for w in res.warnings)


@pytest.mark.slow
def test_bad_requests(demo):
    _, obs, _, _ = demo
    with pytest.raises(BadConfigError) as err:
        suggest_regions(obs, n=7)
    assert "n" == err.value.field
    with pytest.raises(BadConfigError) as err:
        suggest_regions(obs, radius=2000)
    assert err.value.field == "radius"
    with pytest.raises(BadRegionError) as err:
        suggest_regions(obs, radius=400, n=6)  # too big to place 3 circles
    assert err.value.field == "radius"


@pytest.mark.slow
def test_cli_writes_region_files(demo, tmp_path, capsys):
    obsdir, obs, _, sug = demo
    assert main(["suggest-regions", str(obsdir), "--outdir", str(tmp_path), "--n", "4"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["bgd1.reg", "bgd2.reg", "bgd3.reg", "bgd4.reg"]
    for k, c in enumerate(sug.choices, start=1):
        rs = RegionSet.read_ds9(tmp_path / f"bgd{k}.reg")
        (entry,) = rs.to_pixel(obs.grid)
        assert entry.name == f"bgd{k}"
        assert entry.shape.center.x == pytest.approx(c.x, abs=0.01)
        assert entry.shape.center.y == pytest.approx(c.y, abs=0.01)
        assert entry.shape.radius == pytest.approx(c.radius, rel=1e-4)
    assert "DET" in capsys.readouterr().out
    assert main(["suggest-regions", str(obsdir), "--outdir", str(tmp_path)]) == 2  # exists without --overwrite
    assert main(["suggest-regions", str(obsdir), "--outdir", str(tmp_path / "missing")]) == 2
