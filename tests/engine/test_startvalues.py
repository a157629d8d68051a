"""Image-based starting values (engine.startvalues)."""

from __future__ import annotations

import numpy as np
import pytest

from nuskybgd_engine.errors import BadConfigError, FitError
from nuskybgd_engine.fit.templates import poisson_template_fit
from nuskybgd_engine.startvalues import apply_start_values, image_start_values


def test_template_fit_recovers_known_amplitudes():
    """Poisson data drawn from known amplitudes of two images: the fit finds them within the errors."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:200, :200]
    grad = 0.02 + 0.002 * xx / 200.0 * (1 + yy / 200.0)  # aperture-like gradient
    flat = np.where(xx < 100, 0.05, 0.08)  # two "detectors"
    truth = np.array([3.0, 0.5])
    counts = rng.poisson(truth[0] * grad + truth[1] * flat)
    fit = poisson_template_fit(counts, [grad, flat])
    assert fit.converged
    assert np.all(np.abs(fit.amplitudes - truth) < 4 * fit.errors)
    # Errors: the inverse Fisher matrix Σ T_j T_k / μ on the unbinned pixels, at the fitted amplitudes.
    mu = fit.amplitudes[0] * grad + fit.amplitudes[1] * flat
    fisher = np.array([[np.sum(a * b / mu) for b in (grad, flat)] for a in (grad, flat)])
    assert np.allclose(fit.errors, np.sqrt(np.diag(np.linalg.inv(fisher))), rtol=0.02)
    masked = np.ones_like(counts, bool)
    masked[:, :50] = False
    fit2 = poisson_template_fit(counts, [grad, flat], masked)
    assert fit2.counts == pytest.approx(counts[:, 50:].sum())


def test_template_fit_bad_input():
    with pytest.raises(BadConfigError):
        poisson_template_fit(np.zeros((8, 8)), [np.ones((4, 4))])
    with pytest.raises(FitError):
        poisson_template_fit(np.zeros((8, 8)), [np.ones((8, 8))], np.zeros((8, 8), bool))


@pytest.fixture(scope="module")
def demo():
    from nuskybgd_engine.demo import ensure_demo_observation
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.groups import group_from_events

    obsdir = ensure_demo_observation()
    obs = prepare_observation(obsdir, modules=("A",))
    groups = [group_from_events(obs["A"].events, RegionSet.read_ds9(obsdir / "regions" / f"bgd{k}.reg"), obs.grid,
                                obs["A"].maps, name=f"bgd{k}A") for k in range(1, 5)]
    return obs, groups


@pytest.mark.slow
def test_start_values_close_to_the_fitted_answer(demo):
    """The image says what the spectral fit finds: factors within 30 % of fitted/preset for apbgd and intn."""
    from nuskybgd_engine.analysis import BackgroundAnalysis

    obs, groups = demo
    an = BackgroundAnalysis(groups)
    pre = {k: an.state.value(*k) for k in an.state.free_parameters()}
    sv = image_start_values(an, obs)
    assert {k: an.state.value(*k) for k in pre} == pre  # image_start_values does not change the model
    an.fit("cstat")
    s = sv.modules["A"]
    # apbgd and fcxb trade off in the spectral fit: compare their sum in the reference region instead.
    for source, factor in (("intn", s.intn),):
        fitted = an.state.value(source, 4) / pre[(source, 4)]
        assert factor == pytest.approx(fitted, rel=0.6)
    assert 0.3 < s.apbgd < 3 and set(s.fits) == {"soft", "hard"}


@pytest.mark.slow
def test_apply_start_values_scales_reference_norms_and_fit_converges(demo):
    from nuskybgd_engine.analysis import BackgroundAnalysis

    obs, groups = demo
    an = BackgroundAnalysis(groups)
    before = {k: an.state.value(*k) for k in an.state.free_parameters()}
    linked_before = an.state.value("apbgd", an.state["apbgd"].index(2, 3))
    sv = apply_start_values(an, obs)
    s = sv.modules["A"]
    assert sv.applied and an.result is None
    assert an.state.value("apbgd", 3) == pytest.approx(before[("apbgd", 3)] * s.apbgd)
    assert an.state.value("intn", 4) == pytest.approx(before[("intn", 4)] * s.intn)
    assert an.state.value("intbgd", 16) == pytest.approx(before[("intbgd", 16)] * s.intbgd)
    assert an.state.value("fcxb", 3) == before[("fcxb", 3)]
    # Linked (non-reference) norms follow.
    assert an.state.value("apbgd", an.state["apbgd"].index(2, 3)) == pytest.approx(linked_before * s.apbgd)
    res = an.fit("cstat")
    assert res.converged


@pytest.mark.slow
def test_start_values_need_the_module_maps(demo):
    from nuskybgd_engine.observation import ObservationProducts
    from nuskybgd_engine.analysis import BackgroundAnalysis

    obs, groups = demo
    an = BackgroundAnalysis(groups)
    empty = ObservationProducts(obsid=obs.obsid, root=obs.root, band=obs.band, modules={})
    with pytest.raises(BadConfigError) as err:
        image_start_values(an, empty)
    assert "FPMA" in str(err.value)
