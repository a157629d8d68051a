"""Expected C-stat of a correct model (Kaastra 2017), checked against closed forms and simulation."""

import math

import numpy as np
import pytest
from scipy import stats

from nuskybgd_engine.errors import FitError
from nuskybgd_engine.fit.goodness import cstat_expectation, cstat_moments
from nuskybgd_engine.fit.statistics import CSTAT_FLOOR, cstat_terms


def brute_force(mu, kmax=400):
    """Mean and variance of the C term by direct summation with exact arithmetic per count."""
    mean = sq = 0.0
    for k in range(kmax + 1):
        p = math.exp(k * math.log(mu) - mu - math.lgamma(k + 1))
        c = 2 * (mu - k + (k * math.log(k / mu) if k else 0.0))
        mean += p * c
        sq += p * c * c
    return mean, sq - mean * mean


@pytest.mark.parametrize("mu", [1e-4, 0.05, 0.3, 1.0, 2.0, 7.5, 30.0, 49.99, 50.01, 120.0])
def test_moments_equal_direct_summation(mu):
    mean, var = cstat_moments([mu])
    ref_mean, ref_var = brute_force(mu)
    assert mean[0] == pytest.approx(ref_mean, rel=2e-5)
    assert var[0] == pytest.approx(ref_var, rel=2e-5)


def test_known_shape_of_the_expectation():
    """Kaastra (2017), Fig. 1: C_e(μ) peaks ≈1.16 near μ ≈ 1.5 and tends to 1 + 1/(6μ); S_v² tends to 2."""
    mu = np.logspace(-3, 4, 400)
    mean, var = cstat_moments(mu)
    assert 1.15 < mean.max() < 1.17
    assert 1.0 < mu[np.argmax(mean)] < 2.0
    big = mu > 200
    np.testing.assert_allclose(mean[big], 1 + 1 / (6 * mu[big]), rtol=1e-4)
    np.testing.assert_allclose(var[big], 2.0, rtol=0.02)
    assert mean[0] < 0.02  # almost surely 0 counts: C = 2μ


def test_floor_as_xspec():
    """A model at or below 0 is floored at 1e-5 counts, as XSPEC's cstat does."""
    a = cstat_moments([0.0, -3.0, CSTAT_FLOOR])
    np.testing.assert_array_equal(a[0], a[0][2])
    with pytest.raises(FitError, match="model"):
        cstat_moments([1.0, np.nan])


def test_simulated_fits_scatter_as_predicted():
    """Poisson spectra from a known model: (C − C_e)/σ_C over 400 realisations is standard normal."""
    rng = np.random.default_rng(3)
    e = np.linspace(1, 20, 600)
    model = 0.8 * e ** -0.5 + 2.0 * np.exp(-0.5 * ((e - 6.4) / 0.2) ** 2)  # 0.2 to 2.8 counts per bin
    expected, sigma = cstat_expectation([model[:300], model[300:]])
    z = np.array([(cstat_terms(d, model).sum() - expected) / sigma for d in rng.poisson(model, (400, model.size))])
    assert abs(z.mean()) < 0.15  # standard error 0.05
    assert 0.9 < z.std(ddof=1) < 1.1
    assert stats.kstest(z, "norm").pvalue > 0.001
    # A wrong model (10 % too faint) is far off.
    d = rng.poisson(model)
    assert (cstat_terms(d, 0.9 * model).sum() - cstat_expectation(0.9 * model)[0]) / sigma > 1.5


def test_fitted_models_scatter_as_predicted_with_the_design():
    """Low counts (0.04–0.6 per bin) fitted with two free norms: the fit absorbs most of C's variance.

    With the design the reported σ matches the scatter of (C_min − expected) over realisations;
    Kaastra's fixed-model σ is then about twice too large.
    """
    from nuskybgd_engine.fit.native import LinearProblem, fit_linear

    rng = np.random.default_rng(11)
    e = np.linspace(3, 30, 800)
    X = np.column_stack([0.6 * (e / 3) ** -1.5, 0.05 * np.exp(-0.5 * ((e - 19.6) / 1.5) ** 2) + 0.02])
    truth = np.array([1.0, 1.0])
    z_fit, z_fixed = [], []
    for d in rng.poisson(X @ truth, (300, e.size)):
        out = fit_linear(LinearProblem([d[:400], d[400:]], [X[:400], X[400:]]), "cstat", truth)
        m = X @ out.theta
        c = cstat_terms(d, m).sum()
        exp_fit, sig_fit = cstat_expectation([m[:400], m[400:]], [X[:400], X[400:]])
        exp_fixed, sig_fixed = cstat_expectation(m)
        assert exp_fit == pytest.approx(exp_fixed - 2)
        z_fit.append((c - exp_fit) / sig_fit)
        z_fixed.append((c - exp_fixed) / sig_fixed)
    z_fit, z_fixed = np.array(z_fit), np.array(z_fixed)
    assert abs(z_fit.mean()) < 0.2  # standard error 0.06
    assert 0.85 < z_fit.std(ddof=1) < 1.15
    assert z_fixed.std(ddof=1) < 0.75


def test_block_designs_and_column_selection_match_the_dense_formula():
    """Spectra whose designs are zero outside their own norms, a subset of the columns used: the
    same numbers as the module docstring's formula written out densely on the selected columns."""
    rng = np.random.default_rng(5)
    models, designs = [], []
    for g in range(3):
        x = np.zeros((120, 7))
        cols = [0, 1 + 2 * g, 2 + 2 * g]
        x[:, cols] = rng.uniform(0.01, 2.0, (120, 3))
        designs.append(x)
        models.append(x @ rng.uniform(0.5, 1.5, 7))
    columns = [0, 2, 3, 5, 6]
    mean, var, cov = (np.concatenate(a) for a in zip(*(cstat_moments(m, with_covariance=True) for m in models)))
    mu, X = np.concatenate(models), np.vstack(designs)[:, columns]
    c, V = (X / mu[:, None]).T @ cov, X.T @ (X / mu[:, None])
    want_sigma = np.sqrt(var.sum() - c @ np.linalg.solve(V, c))
    expected, sigma = cstat_expectation(models, designs, columns=columns)
    assert expected == pytest.approx(mean.sum() - len(columns), rel=1e-12)
    assert sigma == pytest.approx(want_sigma, rel=1e-10)
    assert cstat_expectation(models, [x[:, columns] for x in designs]) == pytest.approx((expected, sigma), rel=1e-12)
    with pytest.raises(FitError, match="columns"):
        cstat_expectation(models, designs, columns=[7])


def test_design_errors():
    m = np.ones(10)
    with pytest.raises(FitError, match="designs"):
        cstat_expectation([m], [np.ones((10, 2)), np.ones((10, 2))])
    with pytest.raises(FitError, match="shape"):
        cstat_expectation([m], [np.ones((9, 2))])
    with pytest.raises(FitError, match="numbers of parameters"):
        cstat_expectation([m, m], [np.ones((10, 2)), np.ones((10, 3))])
