"""Timing of the background model layer on real-sized spectra (issue 6 budgets).

Run: ``python benchmarks/bench_model.py``. Uses the demo observation (simulated once into a
temporary directory, ~10 s, not timed), 3 background circles x 2 modules = 6 spectra of 4096
channels with the nominal RMFs (3-150 keV noticed).

1. Full fit, norms free (all 30 intbgd norms of each reference, apbgd, fcxb of every region,
   intn: 70 free), C-stat, from the presets: ``BackgroundAnalysis(...).fit('cstat')`` cold
   (building the model and folding every component included) and warm (templates cached, fit
   only), against ``scipy.optimize.minimize(L-BFGS-B)`` with the analytic gradient on the same
   linear problem from the same start. Budget: 0.5 s.
2. Re-evaluating all folded components after one region's weights changed (a region moved in
   the widget; extraction not included): ``replace_group`` + the model counts of every group,
   against a full re-fold (fresh FoldedModel). Budget: 20 ms.

Printed: best-of-N wall times, ratios and the statistic at both optima. BLAS threading matters:
on a loaded 2-core machine a multi-threaded OpenBLAS made each 22 000 x 70 product ~50x slower
(spinning threads); compare with ``OPENBLAS_NUM_THREADS=1 python benchmarks/bench_model.py``.
"""

from __future__ import annotations

import tempfile

import numpy as np
from scipy.optimize import minimize
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

FIT_BUDGET_S = 0.5
REEVAL_BUDGET_S = 0.020




def scipy_fit(problem, x0):
    """L-BFGS-B on the C-stat of a LinearProblem (parameters scaled to order 1)."""
    from nuskybgd_engine.fit import cstat

    A, d, o = problem.A, problem.d, problem.o
    s = np.where(x0 > 0, x0, 1.0)

    def f(u):
        m = A @ (u * s) + o
        mf = np.maximum(m, 1e-10)
        return cstat(d, mf), s * (A.T @ (2 * (1 - d / mf)))

    res = minimize(f, x0 / s, jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(x0),
                   options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-13, "gtol": 1e-9})
    return res.fun, res.nit, res.success


def main():
    from regions import CirclePixelRegion, PixCoord

    from nuskybgd_engine.demo import ensure_demo_observation
    from nuskybgd_engine.fit.native import LinearProblem
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.model.folding import FoldedModel
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.analysis import BackgroundAnalysis, replace_group
    from nuskybgd_engine.groups import group_from_events

    tmp = tempfile.TemporaryDirectory(prefix="nsb_bench_model_")
    obsdir = ensure_demo_observation(tmp.name)
    obs = prepare_observation(obsdir)
    regions = {n: RegionSet.read_ds9(obsdir / "regions" / f"{n}.reg") for n in ("bgd1", "bgd2", "bgd3")}
    groups = [group_from_events(obs[m].events, rs, obs.grid, obs[m].maps, name=f"{n}{m}")
              for n, rs in regions.items() for m in ("A", "B")]
    import os

    print(f"6 spectra ({', '.join(g.name for g in groups)}), {groups[0].counts.size} channels, "
          f"{sum(g.counts.sum() for g in groups):.0f} counts, C-stat; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f}")

    # -- 1. full fit ------------------------------------------------------------------------------
    def cold():
        an = BackgroundAnalysis(groups)
        return an, an.fit("cstat")

    t_cold, (an, res) = best_time(cold, repeat=3)
    n_free = len(res.free)

    def warm():
        # same analysis (templates cached); restart from the presets
        for (s, k), v in zip(free0, theta0):
            an.state[s][k].value = v
        an.model.refresh_links()
        return an.fit("cstat")

    fresh = BackgroundAnalysis(groups)
    data, design, offset, free0 = fresh.model.linear_problem()
    theta0 = np.array([fresh.state[s][k].value for s, k in free0])
    t_warm, res_w = best_time(warm, repeat=5)
    problem = LinearProblem(data, design, offset)
    t_sp, (fun, nit, ok) = best_time(lambda: scipy_fit(problem, theta0), repeat=3)
    print(f"full fit, {n_free} free norms: cold (build + fold + fit) {t_cold * 1e3:7.1f} ms, warm (fit only) "
          f"{t_warm * 1e3:7.1f} ms ({res_w.n_iter} it)   budget {FIT_BUDGET_S * 1e3:.0f} ms: "
          f"{'OK' if t_cold < FIT_BUDGET_S else 'MISSED'} (cold)")
    print(f"  scipy L-BFGS-B on the same linear problem {t_sp * 1e3:7.1f} ms ({nit} it, success={ok}); "
          f"speed-up vs warm x{t_sp / t_warm:.1f}; C_native - C_scipy = {res_w.value - fun:+.3e}")

    # -- 2. re-evaluation after a region moved -------------------------------------------------------
    c = regions["bgd1"][0].shape.to_pixel(obs.grid.wcs)
    moved = RegionSet()
    moved.add(CirclePixelRegion(PixCoord(c.center.x + 6.0, c.center.y - 4.0), c.radius), name="bgd1")
    new_group = group_from_events(obs["A"].events, moved, obs.grid, obs["A"].maps, name="bgd1A", rmf=groups[0].rmf)
    n = len(groups)

    def reevaluate():
        replace_group(an, 1, new_group if an.groups[0] is not new_group else groups[0])
        return [an.model.model_counts(g) for g in range(1, n + 1)]

    reevaluate()  # the templates of both circles are now cached
    t_re, _ = best_time(reevaluate, repeat=20)

    def refold():
        model = FoldedModel(an.state, an.groups, apec=an.apec)
        return [model.model_counts(g) for g in range(1, n + 1)]

    t_full, counts = best_time(refold, repeat=3)
    check = [an.model.model_counts(g) for g in range(1, n + 1)]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(check, counts))
    print(f"re-evaluate all folded components after a region move: {t_re * 1e3:7.2f} ms "
          f"(replace_group + model counts of {n} spectra); full re-fold {t_full * 1e3:7.1f} ms "
          f"(x{t_full / t_re:.0f}); max |difference| {diff:.1e} counts   budget {REEVAL_BUDGET_S * 1e3:.0f} ms: "
          f"{'OK' if t_re < REEVAL_BUDGET_S else 'MISSED'}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
