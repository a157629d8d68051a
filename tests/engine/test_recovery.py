"""A small version of ``benchmarks/bench_recovery.py``: fit simulated observations, compare with the truth.

Six seeds at 20 ks, the method as a user runs it (maps, spectra of the simulator's suggested
background circles, fixed line ratios, fcxb tied between A and B, C-stat), the last circle held
out and predicted. The pulls (fit − truth)/σ of every free norm come from the fit with the norms'
lower limit opened (the unbiased likelihood maximum, ``negative_norms``); the held-out prediction is
checked for that fit and for the default physical one (norms ≥ 0). The seeds are fixed, so the
numbers are deterministic; the bounds are about 3.5 standard errors wide, loose enough for any
correct implementation and tight enough to catch a convention error of a few σ in one component
(e.g. a wrong area unit of intn or an aperture factor).
"""

import numpy as np
import pytest

from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.model.background import BackgroundOptions, region_weights
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation, true_norms
from nuskybgd_engine.analysis import BackgroundAnalysis
from nuskybgd_engine.groups import group_from_events

pytestmark = pytest.mark.slow

SEEDS = (11, 12, 13, 14, 15, 16)
EXPOSURE = 20000.0
BGD = ("apbgd", "intbgd", "fcxb", "intn")


def _fit(groups, negative_norms):
    opts = BackgroundOptions(fcxb_links=[(i, i + 1) for i in range(1, len(groups), 2)], fix_line_ratios=True,
                             negative_norms=negative_norms)
    an = BackgroundAnalysis(groups, options=opts)
    an.fit("cstat")
    return an


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    rows = []
    for seed in SEEDS:
        sim = simulate_observation(tmp_path_factory.mktemp(f"seed{seed}"),
                                   SimulationSpec(obsid=f"{90000200000 + seed}", seed=seed, exposure=EXPOSURE,
                                                  source="none"))
        obs = prepare_observation(sim.root)
        bgd = sorted(n for n in sim.truth["regions"] if n.startswith("bgd"))
        assert len(bgd) >= 3, seed
        fit_regions, held = bgd[:-1], bgd[-1]
        groups, regions = [], []
        for name in fit_regions:
            rs = RegionSet.read_ds9(sim.region_files[name])
            for m in ("A", "B"):
                groups.append(group_from_events(obs[m].events, rs, obs.grid, obs[m].maps, name=f"{name}{m}"))
                regions.append(name)
        held_rs = RegionSet.read_ds9(sim.region_files[held])
        row = {"seed": seed}
        for mode, neg in (("negative", True), ("physical", False)):
            an = _fit(groups, neg)
            pred = []
            for m in ("A", "B"):
                p = an.predict(region_weights(held_rs, obs.grid, obs[m].maps, name=held), band=(3.0, 20.0))
                exp = sim.truth["regions"][held]["modules"][m]["expected"]["3-20"]
                pred.append((p.total - sum(exp[k] for k in BGD)) / p.stat_error)
            row[mode] = {"analysis": an, "pred": pred}
        an = row["negative"]["analysis"]
        truth = true_norms(an, sim.truth, regions)
        assert set(truth) == set(an.result.free)  # every free parameter here is a norm with a truth
        row["pulls"] = {}
        for (s, k), value in truth.items():
            p = an.state[s][k]
            g = (k - 1) // an.state[s].n_par + 1
            name = f"{s}.{p.component}.{an.groups[g - 1].module}.{'ref' if s != 'fcxb' else regions[g - 1]}"
            row["pulls"][name] = (an.state.value(s, k) - value) / an.result.error(s, k)
        row["truth"], row["regions"], row["sim"] = truth, regions, sim
        rows.append(row)
    return rows


def test_true_norms_of_apbgd_and_fcxb_are_the_presets(seeds):
    """With the nominal truth (all factors 1), apbgd and fcxb truths are the §3.2 presets.

    Not to rounding: the truth's region sums are taken on the simulator's regions before they are
    written as fk5 ds9 files, the analysis' on the regions read back (0.1 % apart in W).
    """
    row = seeds[0]
    an = BackgroundAnalysis(row["negative"]["analysis"].groups)  # presets, no links, nothing fitted
    truth = true_norms(an, row["sim"].truth, row["regions"])
    n = 0
    for (s, k), value in truth.items():
        if s in ("apbgd", "fcxb"):
            assert an.state[s][k].value == pytest.approx(value, rel=3e-3), (s, k)
            n += 1
    assert n == 2 + len(an.groups)  # one apbgd reference per module, an fcxb norm per spectrum
    with pytest.raises(BadConfigError, match="region names"):
        true_norms(an, row["sim"].truth, row["regions"][:-1])
    with pytest.raises(BadConfigError, match="nosuch"):
        true_norms(an, row["sim"].truth, ["nosuch"] * len(an.groups))


def test_pulls_of_every_free_norm(seeds):
    names = sorted(seeds[0]["pulls"])
    assert len(names) == 17  # 2 apbgd, 3 fcxb (A drives B), 2 x (apec + 4 lines), 2 intn
    per_norm = np.array([[row["pulls"][n] for n in names] for row in seeds])
    assert np.all(np.isfinite(per_norm))
    # Each norm over the seeds (standard error of the mean 1/sqrt(6) = 0.41).
    means = per_norm.mean(axis=0)
    assert np.all(np.abs(means) < 1.5), dict(zip(names, means.round(2)))
    # All together (102 pulls, correlated within a seed).
    assert abs(per_norm.mean()) < 0.35, per_norm.mean()
    assert 0.7 < per_norm.std(ddof=1) < 1.35, per_norm.std(ddof=1)
    assert np.all(np.abs(per_norm) < 4.5)


def test_held_out_prediction(seeds):
    for mode in ("negative", "physical"):
        pulls = np.array([row[mode]["pred"] for row in seeds]).ravel()
        assert np.all(np.abs(pulls) < 3.5), (mode, pulls.round(2))
        assert abs(pulls.mean()) < 0.9, (mode, pulls.mean())  # 12 pulls: standard error 0.29


def test_physical_limit_against_opened_limit(seeds):
    """The physical fit never goes below 0 and never fits better than the unconstrained one."""
    for row in seeds:
        phys, neg = row["physical"]["analysis"], row["negative"]["analysis"]
        assert min(phys.state.value(s, k) for s, k in phys.result.free) >= 0.0
        assert neg.result.value <= phys.result.value + 1e-6


def test_cstat_is_what_a_correct_model_gives(seeds):
    """The simulated data are drawn from the model: C-stat sits within its expected scatter (Kaastra 2017)."""
    for mode in ("negative", "physical"):
        z = np.array([row[mode]["analysis"].result.goodness for row in seeds])
        assert np.all(np.abs(z) < 3.5), (mode, z.round(2))
        assert abs(z.mean()) < 1.5, (mode, z.mean())  # 6 seeds: standard error 0.41
