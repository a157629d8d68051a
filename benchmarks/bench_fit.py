"""Timing of the native linear fit (norms free, C-stat) against scipy L-BFGS-B on the same problem.

Run: ``python benchmarks/bench_fit.py``. Two synthetic NuSTAR-like problems, 6 spectra
(3 regions x 2 modules) x 425 noticed channels (3-20 keV):

* worst case: 35 free norms (continua, CXB, 29 internal lines, ...), norms spanning 1e-9..1;
* realistic: 12 free norms (nuskybgd's reference-group norms, lines linked).

Each fit starts from presets wrong by random factors 1e-2..1e2 (and a harder 1e-4/1e4 case).
Printed: best-of-5 wall time of ``fit_linear``, of ``scipy.optimize.minimize(L-BFGS-B)`` with the
analytic gradient and of the target (0.5 s), and the difference of the statistic at the two
optima (negative = native lower).
"""

from __future__ import annotations


import numpy as np
from nuskybgd_engine.fit import LinearProblem, confidence_interval, cstat, fit_linear
from scipy.optimize import minimize
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

TARGET_S = 0.5
E = 1.6 + 0.04 * (np.arange(35, 460) + 0.5)  # channel centres 3-20 keV


def shapes(k, rng):
    """k unit-sum spectral shapes: power laws, cut-off power laws, Lorentzian lines, flat."""
    out = []
    for j in range(k):
        kind = j % 4
        if kind == 0:
            t = E ** -rng.uniform(0.5, 2.0)
        elif kind == 1:
            t = E ** -1.29 * np.exp(-E / 41.13) * (1 - np.exp(-E / rng.uniform(2, 5)))
        elif kind == 2:
            e0, w = rng.uniform(3.5, 19.5), rng.uniform(0.05, 0.5)
            t = 1.0 / (1.0 + ((E - e0) / w) ** 2) + 1e-4
        else:
            t = 1.0 + rng.uniform(-0.04, 0.1) * E  # nearly flat (intn-like)
        out.append(t / t.sum())
    return np.array(out).T


def make_problem(k, seed, counts_per_spectrum=3e4):
    rng = np.random.default_rng(seed)
    base = shapes(k, rng)
    # norms like nuskybgd presets: 1e-9 (fcxb) ... 1 (apec), templates carry the inverse scale
    truth = 10.0 ** rng.uniform(-9, 0, k)
    share = rng.dirichlet(np.ones(k) * 2.0)
    data, design = [], []
    for _ in range(6):
        geom = rng.uniform(0.3, 1.5, k)  # region geometry / module weights
        a = base * (counts_per_spectrum * share * geom / truth)
        design.append(a)
        data.append(rng.poisson(a @ truth).astype(float))
    return LinearProblem(data, design), truth, rng


def scipy_fit(problem, x0):
    A, d = problem.A, problem.d
    s = np.where(x0 > 0, x0, 1.0)  # give L-BFGS-B parameters of order 1 (it is not scale-free)

    def f(u):
        m = A @ (u * s)
        mf = np.maximum(m, 1e-5)
        return cstat(d, m), s * (A.T @ (2 * (1 - d / mf)))

    res = minimize(f, x0 / s, jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(x0),
                   options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-12, "gtol": 1e-8})
    return res.fun, res.nit, res.success




def run(label, k, seed, spread):
    problem, truth, rng = make_problem(k, seed)
    start = truth * 10.0 ** rng.uniform(-spread, spread, k)
    t_nat, out = best_time(lambda: fit_linear(problem, "cstat", theta0=start))
    t_sp, (fun, nit, ok) = best_time(lambda: scipy_fit(problem, start), repeat=3)
    print(f"{label:<34} native {t_nat * 1e3:8.2f} ms ({out.n_iter:3d} it, converged={out.converged})   "
          f"L-BFGS-B {t_sp * 1e3:8.2f} ms ({nit:5d} it, success={ok})   "
          f"speed-up x{t_sp / t_nat:6.1f}   C_native - C_scipy = {out.stat - fun:+.2e}   "
          f"target {TARGET_S * 1e3:.0f} ms: {'OK' if t_nat < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    print(f"6 spectra x {E.size} channels, cstat, norms free")
    run("worst case, 35 norms, presets x1e+-2", 35, 1, 2)
    run("worst case, 35 norms, presets x1e+-4", 35, 2, 4)
    run("realistic, 12 norms, presets x1e+-2", 12, 3, 2)
    run("realistic, 12 norms, presets x1e+-4", 12, 4, 4)
    problem, truth, rng = make_problem(35, 5, counts_per_spectrum=3e6)  # grouped-like counts
    t_chi, out = best_time(lambda: fit_linear(problem, "chi", theta0=truth * 10.0 ** rng.uniform(-2, 2, 35)))
    print(f"{'chi (data variance), 35 norms':<34} native {t_chi * 1e3:8.2f} ms ({out.n_iter:3d} it, "
          f"converged={out.converged})")
    problem, truth, rng = make_problem(12, 3)
    out = fit_linear(problem, "cstat")
    t_ci, _ = best_time(lambda: [confidence_interval(out, i, problem, delta_stat=2.706) for i in range(12)],
                        repeat=3)
    print(f"{'90% ranges of all 12 norms':<34} native {t_ci * 1e3:8.2f} ms (profile re-fits)")
