"""The native fitting engine: linear fast path, Levenberg-Marquardt, confidence ranges, registry.

Independent checks: truth of simulated Poisson data, pull distributions, scipy.optimize on the
same statistic, and the analytic one-bin Poisson likelihood."""

import json
import math
import sys

import numpy as np
import pytest
from nuskybgd_engine.errors import BadConfigError, FitError
from nuskybgd_engine.fit import (
    FitOutput,
    GeneralProblem,
    LinearProblem,
    available_backends,
    chi2_datavar,
    confidence_interval,
    cstat,
    fit_general,
    fit_linear,
    get_backend,
    register_backend,
    registry,
)
from scipy.optimize import brentq, minimize

E = np.linspace(3.0, 20.0, 200)


def templates(k, n_bins=200):
    """k smooth NuSTAR-like shapes (power laws, lines, flat), each summing to 1."""
    e = np.linspace(3.0, 20.0, n_bins)
    cols = []
    for j in range(k):
        if j % 3 == 0:
            t = e ** (-0.8 - 0.15 * j)
        elif j % 3 == 1:
            t = np.exp(-0.5 * ((e - 4.0 - 1.3 * j) / 0.4) ** 2) + 1e-3
        else:
            t = 1.0 + 0.02 * j * e
        cols.append(t / t.sum())
    return np.array(cols).T


def simulate(rng, k=5, n_spec=6, counts=2e4, n_bins=200):
    """6 spectra sharing k norms, each with its own template scaling (geometry)."""
    truth = rng.uniform(0.5, 2.0, k)
    data, design = [], []
    base = templates(k, n_bins) * counts / k
    for _ in range(n_spec):
        a = base * rng.uniform(0.5, 1.5, k)
        design.append(a)
        data.append(rng.poisson(a @ truth).astype(float))
    return LinearProblem(data, design), truth


def scipy_cstat_fit(problem, x0):
    """Reference optimum by L-BFGS-B on the same statistic (analytic gradient)."""
    A, d = problem.A, problem.d

    def f(x):
        m = A @ x + problem.o
        return cstat(d, m), A.T @ (2 * (1 - d / np.maximum(m, 1e-5)))

    res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=list(zip(problem.lower, problem.upper)),
                   options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10000})
    return res


# ---------------------------------------------------------------------------------------------
# Linear fast path
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("statistic", ["cstat", "chi"])
@pytest.mark.parametrize("k", [3, 10])
def test_fit_linear_recovers_truth(statistic, k):
    rng = np.random.default_rng(100 + k)
    # chi with data variance needs many counts per bin (grouped spectra, >= 30 counts)
    problem, truth = simulate(rng, k=k, counts=2e4 if statistic == "cstat" else 4e5)
    out = fit_linear(problem, statistic)
    assert out.converged, out.message
    assert out.statistic == statistic
    assert out.dof == 6 * 200 - k
    pulls = (out.theta - truth) / out.errors
    assert np.all(np.abs(pulls) < 3), pulls
    assert not out.at_bound.any()


def test_fit_linear_matches_scipy_optimum():
    rng = np.random.default_rng(7)
    problem, truth = simulate(rng, k=8, counts=5e3)
    out = fit_linear(problem, "cstat")
    ref = scipy_cstat_fit(problem, truth)
    assert out.converged
    assert out.stat <= ref.fun + 1e-6
    assert out.stat == pytest.approx(ref.fun, abs=1e-3)
    np.testing.assert_allclose(out.theta, ref.x, atol=0.02 * out.errors.max())


def block_problem(rng, n_spec=4, shared=2, own=3):
    """Spectra with norms of their own and shared ones (the dashboard's shape): each design is
    zero outside its spectrum's columns; some bins of used columns are zero too."""
    n = shared + n_spec * own
    truth = rng.uniform(0.5, 2.0, n)
    data, design = [], []
    for g in range(n_spec):
        nb = 150 + 40 * g
        a = np.zeros((nb, n))
        cols = [*range(shared), *range(shared + g * own, shared + (g + 1) * own)]
        a[:, cols] = templates(len(cols), nb) * 4e3 * rng.uniform(0.5, 1.5, len(cols))
        a[: 10 * (g + 1), cols[-1]] = 0.0
        design.append(a)
        data.append(rng.poisson(a @ truth).astype(float))
    return LinearProblem(data, design), truth


def test_block_structured_design_matches_dense_algebra_and_scipy():
    rng = np.random.default_rng(21)
    problem, truth = block_problem(rng)
    A = np.vstack(problem.design)
    x, r = rng.uniform(0.1, 3.0, A.shape[1]), rng.normal(size=A.shape[0])
    w = rng.uniform(0.0, 2.0, A.shape[0])
    np.testing.assert_allclose(problem.counts(x), A @ x, rtol=1e-13)
    np.testing.assert_allclose(problem.gradient(r), A.T @ r, rtol=1e-12, atol=1e-12 * np.abs(A.T @ r).max())
    np.testing.assert_allclose(problem.curvature(w), A.T @ (A * w[:, None]), rtol=1e-12)
    out = fit_linear(problem, "cstat")
    ref = scipy_cstat_fit(problem, truth)
    assert out.converged, out.message
    assert out.stat <= ref.fun + 1e-6
    np.testing.assert_allclose(out.theta, ref.x, atol=0.02 * out.errors.max())
    # covariance (C/2 = -ln L): the inverse of the dense observed curvature at the optimum
    m = A @ out.theta
    cov = np.linalg.inv(A.T @ (A * (problem.d / m ** 2)[:, None]))
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-8, atol=1e-10 * np.abs(cov).max())


def test_pulls_over_200_seeds_are_standard_normal():
    pulls = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        problem, truth = simulate(rng, k=4, n_spec=6, counts=5e3, n_bins=80)
        out = fit_linear(problem, "cstat")
        assert out.converged, (seed, out.message)
        pulls.append((out.theta - truth) / out.errors)
    pulls = np.concatenate(pulls)
    assert pulls.size == 800
    assert abs(pulls.mean()) < 0.12          # standard error of the mean ~0.035
    assert 0.9 < pulls.std() < 1.1           # standard error of the std ~0.025


@pytest.mark.parametrize("statistic", ["cstat", "chi"])
def test_far_starting_values_reach_the_same_optimum(statistic):
    rng = np.random.default_rng(3)
    problem, truth = simulate(rng, k=6, counts=3e5)
    ref = fit_linear(problem, statistic)
    mixed = truth * np.array([1e-4, 1e4, 1.0, 1e4, 1e-4, 1e2])
    for start in (truth * 1e-4, truth * 1e4, mixed, np.zeros(6)):
        out = fit_linear(problem, statistic, theta0=start)
        assert out.converged, out.message
        assert out.stat == pytest.approx(ref.stat, abs=2e-4)
        np.testing.assert_allclose(out.theta, ref.theta, atol=0.02 * ref.errors.min())


def test_single_bin_fit_is_analytic():
    # one Poisson bin, free scale of a template a: theta = d / a, error sqrt(d) / a
    for statistic in ("cstat", "chi"):
        out = fit_linear(LinearProblem([np.array([25.0])], [np.array([[2.0]])]), statistic, theta0=[100.0])
        assert out.converged
        assert out.theta[0] == pytest.approx(12.5, rel=1e-6)
        assert out.errors[0] == pytest.approx(5.0 / 2.0, rel=1e-4)
        assert out.covariance[0, 0] == pytest.approx(6.25, rel=1e-4)


def test_degenerate_templates_are_reported():
    rng = np.random.default_rng(11)
    problem, truth = simulate(rng, k=3)
    design = [np.column_stack([a, a[:, 0]]) for a in problem.design]  # 4th = copy of 1st
    deg = LinearProblem(problem.data, design)
    out = fit_linear(deg, "cstat")
    assert not out.converged
    assert out.singular
    assert "degenerate" in out.message
    assert "p1" in out.message and "p4" in out.message
    # even when started with the copy at 0 (at its limit)
    out = fit_linear(deg, "cstat", theta0=np.r_[truth, 0.0])
    assert not out.converged and out.singular


def test_template_without_counts_is_held_and_flagged():
    # e.g. a line outside the noticed band: XSPEC pegs it ("zero pivot") and finishes the fit
    rng = np.random.default_rng(12)
    problem, truth = simulate(rng, k=3, counts=4e5)
    design = [np.column_stack([a, np.zeros(len(a))]) for a in problem.design]
    ref = fit_linear(problem, "chi")
    out = fit_linear(LinearProblem(problem.data, design), "chi", theta0=np.r_[truth, 2.0])
    assert out.converged and not out.singular
    assert out.undetermined.tolist() == [False, False, False, True]
    assert np.isnan(out.errors[3]) and "p4" in out.message and "no effect" in out.message
    np.testing.assert_allclose(out.theta[:3], ref.theta, rtol=1e-8)
    np.testing.assert_allclose(out.errors[:3], ref.errors, rtol=1e-8)
    assert "undetermined" in repr(out)
    assert json.loads(json.dumps(out.to_dict()))["errors"][3] is None
    with pytest.raises(FitError, match="no effect"):
        confidence_interval(out, 3)


def test_parameter_pushed_to_zero():
    rng = np.random.default_rng(5)
    k = 4
    base = templates(k) * 1e4
    truth = np.array([1.0, 0.0, 1.5, 0.7])  # the line is absent from the data
    design = [base * s for s in (1.0, 0.8, 1.2)]
    data = [rng.poisson(a @ truth).astype(float) for a in design]
    problem = LinearProblem(data, design)
    out = fit_linear(problem, "cstat", theta0=np.ones(k))
    ref = scipy_cstat_fit(problem, np.ones(k))
    assert out.converged, out.message
    assert out.stat == pytest.approx(ref.fun, abs=1e-3)
    assert out.at_bound[1]  # for this seed the line norm goes to its limit
    assert out.theta[1] == 0.0 and out.errors[1] == 0.0
    assert np.all(out.covariance[1] == 0.0) and np.all(out.covariance[:, 1] == 0.0)
    assert np.all(out.errors[[0, 2, 3]] > 0)
    # KKT: the statistic increases when the parameter leaves its limit
    m = problem.A @ out.theta
    grad = problem.A.T @ (2 * (1 - problem.d / m))
    assert grad[1] >= 0
    assert "at bound" in repr(out)
    np.testing.assert_allclose(out.theta, np.clip(ref.x, 0, None), atol=0.02 * out.errors.max())
    # data below a fixed offset: the only free template must go to 0
    off = [np.full(200, 50.0)]
    d0 = [rng.poisson(np.full(200, 40.0)).astype(float)]
    prob0 = LinearProblem(d0, [templates(1) * 1e5], off)
    out0 = fit_linear(prob0, "cstat", theta0=[3.0])
    assert out0.converged, out0.message
    assert out0.theta[0] == 0.0 and out0.at_bound[0] and out0.errors[0] == 0.0
    assert out0.stat == pytest.approx(cstat(d0[0], off[0]), rel=1e-12)


def test_not_converged_is_reported():
    rng = np.random.default_rng(2)
    problem, truth = simulate(rng, k=5)
    out = fit_linear(problem, "cstat", theta0=truth * 1e4, max_iter=1)
    assert not out.converged
    assert "not converged" in out.message
    assert "NOT CONVERGED" in repr(out)


def test_fixed_parameter_by_equal_limits():
    rng = np.random.default_rng(21)
    problem, truth = simulate(rng, k=3)
    p = LinearProblem(problem.data, problem.design, lower=[0, truth[1], 0], upper=[np.inf, truth[1], np.inf])
    out = fit_linear(p, "cstat")
    assert out.converged and out.theta[1] == truth[1] and out.at_bound[1] and out.errors[1] == 0


def test_linear_problem_validation():
    d = [np.ones(10)]
    with pytest.raises(FitError, match=r"design\[0\]"):
        LinearProblem(d, [np.ones((9, 2))])
    with pytest.raises(FitError, match="lower"):
        LinearProblem(d, [np.ones((10, 2))], lower=[1, 0], upper=[0, 1])
    with pytest.raises(FitError, match=r"data\[0\]"):
        LinearProblem([np.array([1.0, np.nan])], [np.ones((2, 1))])
    with pytest.raises(FitError, match=r"design\[0\]"):
        LinearProblem(d, [np.array([[np.inf, -np.inf]] + [[1.0, 1.0]] * 9)])
    LinearProblem([np.array([1e308, 1e308])], [np.ones((2, 1))])  # finite values whose sum overflows
    with pytest.raises(FitError, match=r"design\[1\]"):
        LinearProblem([np.ones(3), np.ones(3)], [np.ones((3, 2)), np.ones((3, 3))])
    with pytest.raises(FitError, match=r"data\[0\]"):
        fit_linear(LinearProblem([np.array([-1.0, 2.0])], [np.ones((2, 1))]), "cstat")
    with pytest.raises(FitError, match="theta0"):
        fit_linear(LinearProblem(d, [np.ones((10, 2))]), "cstat", theta0=[1.0])
    with pytest.raises(BadConfigError, match="statistic"):
        fit_linear(LinearProblem(d, [np.ones((10, 2))]), "lstat")


def test_fit_output_repr_and_dict():
    rng = np.random.default_rng(4)
    problem, _ = simulate(rng, k=3)
    problem = LinearProblem(problem.data, problem.design, names=["apbgd", "intbgd", "fcxb"])
    out = fit_linear(problem, "cstat")
    text = repr(out)
    assert "apbgd" in text and "fcxb" in text and "converged" in text
    d = json.loads(json.dumps(out.to_dict()))
    assert d["names"] == ["apbgd", "intbgd", "fcxb"]
    np.testing.assert_allclose(d["theta"], out.theta)
    np.testing.assert_allclose(d["errors"], out.errors)
    np.testing.assert_allclose(d["covariance"], out.covariance)
    assert d["converged"] is True and d["dof"] == out.dof and d["statistic"] == "cstat"
    assert isinstance(out, FitOutput)


# ---------------------------------------------------------------------------------------------
# General (Levenberg-Marquardt) path
# ---------------------------------------------------------------------------------------------

def line_model(n_spec=2, exposure=(1.0, 0.8)):
    e = np.linspace(3.0, 12.0, 150)
    de = e[1] - e[0]

    def model_fn(theta):
        e0, n_cont, n_line = theta
        shape = n_cont * 200.0 * e ** -1.5 + n_line * 300.0 * np.exp(-0.5 * ((e - e0) / 0.25) ** 2) * de
        return [t * shape for t in exposure[:n_spec]]

    return model_fn


@pytest.mark.parametrize("statistic", ["cstat", "chi"])
def test_fit_general_matches_scipy_minimize(statistic):
    rng = np.random.default_rng(8)
    fn = line_model()
    truth = np.array([6.4, 1.0, 2.0])
    scale = 1.0 if statistic == "cstat" else 30.0
    data = [rng.poisson(scale * m).astype(float) for m in fn(truth)]

    def fn_s(theta):
        return [scale * m for m in fn(theta)]

    lo, hi = np.array([5.0, 0.0, 0.0]), np.array([8.0, 100.0, 100.0])
    start = np.array([6.2, 0.5, 1.0])
    out = fit_general(fn_s, data, start, lo, hi, statistic=statistic)
    assert out.converged, out.message
    statfn = cstat if statistic == "cstat" else chi2_datavar

    def total(theta):
        return statfn(np.concatenate(data), np.concatenate(fn_s(theta)))

    ref = minimize(total, start, method="Nelder-Mead",
                   options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20000, "maxfev": 40000})
    assert out.stat <= ref.fun + 1e-4
    assert out.stat == pytest.approx(ref.fun, abs=1e-3)
    np.testing.assert_allclose(out.theta, ref.x, atol=0.02 * out.errors.max())
    assert np.all(np.abs((out.theta - truth) / out.errors) < 3)
    assert out.method == "leven"


def test_fit_general_with_jacobian_and_on_linear_problem():
    rng = np.random.default_rng(9)
    problem, truth = simulate(rng, k=4)
    lin = fit_linear(problem, "cstat")
    out = fit_general(problem.model, problem.data, truth * 3, problem.lower, problem.upper,
                      statistic="cstat", jac=lambda th: problem.A)
    assert out.converged
    assert out.stat == pytest.approx(lin.stat, abs=1e-3)
    np.testing.assert_allclose(out.errors, lin.errors, rtol=1e-3)
    num = fit_general(problem.model, problem.data, truth * 3, problem.lower, problem.upper)
    assert num.converged and num.stat == pytest.approx(lin.stat, abs=1e-3)


def test_fit_general_model_failure_is_a_fit_error():
    def bad(theta):
        raise ValueError("boom")

    with pytest.raises(FitError, match="boom"):
        fit_general(bad, [np.ones(3)], [1.0], [0.0], [2.0])
    with pytest.raises(FitError, match="bins"):
        fit_general(lambda t: [np.ones(2)], [np.ones(3)], [1.0], [0.0], [2.0])


# ---------------------------------------------------------------------------------------------
# Confidence ranges
# ---------------------------------------------------------------------------------------------

def analytic_one_bin(d, delta):
    c = lambda m: 2 * (m - d + d * math.log(d / m)) - delta
    return brentq(c, 1e-9 * d, d, xtol=1e-14), brentq(c, d, 100 * d + 10, xtol=1e-14)


@pytest.mark.parametrize("delta", [1.0, 2.706])
@pytest.mark.parametrize("d", [4.0, 10.0, 100.0])
def test_confidence_interval_one_bin_analytic(d, delta):
    problem = LinearProblem([np.array([d])], [np.array([[1.0]])])
    out = fit_linear(problem, "cstat", theta0=[1.0])
    ci = confidence_interval(out, 0, problem, delta_stat=delta)
    lo, hi = ci
    elo, ehi = analytic_one_bin(d, delta)
    assert lo == pytest.approx(elo, rel=1e-6)
    assert hi == pytest.approx(ehi, rel=1e-6)
    assert not ci.lo_at_bound and not ci.hi_at_bound


def test_confidence_interval_zero_counts_hits_the_limit():
    problem = LinearProblem([np.array([0.0])], [np.array([[1.0]])])
    out = fit_linear(problem, "cstat", theta0=[2.0])
    assert out.converged and out.at_bound[0] and out.theta[0] == 0
    ci = confidence_interval(out, 0)
    assert ci.lo == 0.0 and ci.lo_at_bound
    # C = 2 max(m, 1e-5): minimum 2e-5 (XSPEC floor), rises by 1 at m = (1 + 2e-5) / 2
    assert ci.hi == pytest.approx(0.5 + 1e-5, rel=1e-9)
    assert not ci.hi_at_bound
    capped = LinearProblem([np.array([0.0])], [np.array([[1.0]])], upper=[0.3])
    out = fit_linear(capped, "cstat")
    ci = confidence_interval(out, 0)
    assert ci.hi == 0.3 and ci.hi_at_bound and "limit" in ci.message


def test_confidence_interval_profiles_other_parameters():
    rng = np.random.default_rng(31)
    problem, _ = simulate(rng, k=3, counts=1e5)
    out = fit_linear(problem, "cstat")
    for i in range(3):
        lo, hi = confidence_interval(out, i, problem)
        # near-Gaussian likelihood: the profile range is +- the covariance error
        assert lo == pytest.approx(out.theta[i] - out.errors[i], rel=0, abs=0.05 * out.errors[i])
        assert hi == pytest.approx(out.theta[i] + out.errors[i], rel=0, abs=0.05 * out.errors[i])
        # and the profiled statistic there is exactly 1 above the minimum
        sub = fit_linear(problem.fix(i, hi), "cstat")
        assert sub.stat - out.stat == pytest.approx(1.0, abs=1e-3)
    # the same through the general path
    gen = fit_general(problem.model, problem.data, out.theta, problem.lower, problem.upper)
    lo_g, hi_g = confidence_interval(gen, 0, gen.context["problem"])
    lo_l, hi_l = confidence_interval(out, 0, problem)
    assert lo_g == pytest.approx(lo_l, rel=1e-3) and hi_g == pytest.approx(hi_l, rel=1e-3)


def test_confidence_interval_refuses_unconverged_fit():
    rng = np.random.default_rng(2)
    problem, truth = simulate(rng, k=3)
    out = fit_linear(problem, "cstat", theta0=truth * 1e4, max_iter=1)
    with pytest.raises(FitError, match="did not converge"):
        confidence_interval(out, 0, problem)
    good = fit_linear(problem, "cstat")
    with pytest.raises(FitError, match="index"):
        confidence_interval(good, 5, problem)


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------

def test_native_backend_fits_both_problem_kinds():
    rng = np.random.default_rng(13)
    problem, truth = simulate(rng, k=3)
    backend = get_backend("native")
    out = backend.fit(problem, "cstat")
    assert out.converged and out.method == "newton"
    gp = GeneralProblem(problem.model, problem.data, problem.lower, problem.upper, theta0=truth)
    out2 = backend.fit(gp, "cstat")
    assert out2.converged and out2.method == "leven"
    assert out2.stat == pytest.approx(out.stat, abs=1e-3)
    lo, hi = backend.confidence_interval(out, 0)
    assert lo < out.theta[0] < hi
    with pytest.raises(FitError, match="problem"):
        backend.fit("not a problem")


def test_unknown_backend_lists_available():
    with pytest.raises(BadConfigError) as err:
        get_backend("sherpa")
    msg = str(err.value)
    assert "backend" in msg and "native" in msg and "pyxspec" in msg
    assert "native" in available_backends()


def test_pyxspec_backend_missing_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "xspec", None)  # makes `import xspec` raise ImportError
    with pytest.raises(BadConfigError) as err:
        get_backend("pyxspec")
    msg = str(err.value)
    assert "PyXspec is not available" in msg and "HEASoft" in msg
    assert "\n" not in msg


def test_register_backend_rules(monkeypatch):
    monkeypatch.setattr(registry, "BACKENDS", dict(registry.BACKENDS))
    with pytest.raises(BadConfigError, match="already registered"):
        register_backend("native", object)
    register_backend("native", lambda: "replacement", replace=True)
    assert get_backend("native") == "replacement"
    with pytest.raises(BadConfigError, match="callable"):
        register_backend("other", 3)


def test_fit_general_parameter_at_limit_and_callable_confidence_interval():
    rng = np.random.default_rng(1)  # for this seed the line norm goes to 0
    fn = line_model()
    truth = np.array([6.4, 1.0, 0.0])  # no line in the data
    data = [rng.poisson(m).astype(float) for m in fn(truth)]
    lo, hi = np.array([5.0, 0.0, 0.0]), np.array([8.0, 100.0, 100.0])
    out = fit_general(fn, data, np.array([6.0, 0.3, 1.0]), lo, hi, statistic="cstat")
    d = np.concatenate(data)
    ref = minimize(lambda t: cstat(d, np.concatenate(fn(t))), [6.0, 0.3, 1.0], method="L-BFGS-B",
                   bounds=list(zip(lo, hi)), options={"ftol": 1e-15, "gtol": 1e-10})
    assert out.stat <= ref.fun + 1e-4
    # line norm at its limit; its energy then has no effect (XSPEC freezes it: zero norm)
    assert out.converged, out.message
    assert out.at_bound[2] and out.theta[2] == 0.0 and out.errors[2] == 0.0
    assert out.undetermined[0] and np.isnan(out.errors[0]) and not out.singular
    assert out.errors[1] > 0
    # continuum norm range through a bare model function
    ci = confidence_interval(out, 1, fn, data=data, lower=lo, upper=hi)
    assert ci.lo < out.theta[1] < ci.hi
    # the profiled statistic at both ends is delta_stat above the minimum
    for v in ci:
        sub = GeneralProblem(fn, data, lo, hi, theta0=out.theta).fix(1, v)
        prof = fit_general(sub.model_fn, sub.data, sub.theta0, sub.lower, sub.upper, tol=1e-7)
        assert prof.stat - out.stat == pytest.approx(1.0, abs=2e-3)
