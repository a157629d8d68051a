"""Recovery of the simulated background: pulls of every free norm and of a held-out prediction.

Run: ``python benchmarks/bench_recovery.py [N_SEEDS] [EXPOSURE_S] [N_PROCESSES] [--unbounded]``
(defaults 50, 20000, 2). ``--unbounded`` refits without the norms' lower limit 0 (a diagnostic:
with the limit, weak lines pegged at 0 bias the correlated norms; see the report numbers).

For each seed, :func:`nuskybgd_engine.simulate.simulate_observation` writes a complete observation
(both modules, no astrophysical source, default "nominal" truth norms), and the engine runs the
method on it exactly as a user would: maps (:func:`prepare_observation`), spectra of the
simulator's suggested background circles (:func:`group_from_events`), model (fixed line ratios,
fcxb of each region tied between A and B, as in the bgdinfo template) and a C-stat fit. The last
suggested circle is *held out*: its background is predicted (:meth:`BackgroundAnalysis.predict`)
and compared with the simulation's noise-free expected counts.

Truth of each free norm (spec §3.2 with the simulator's conventions, ``Atot_n`` = Ā, the mean
number of active DET1 pixels per detector, I/J = ratios.json ifactors, A/W = region weights):

* apbgd (reference region r): ``0.002353/32 · W_r``;
* fcxb (group i, the A spectrum of a region): ``1.6455454e-9 · Σ_n A_in``;
* intbgd component k (reference): ``Σ_n I^k_n · A_rn / Atot_n``;
* intn (reference): ``Σ_n 25 J_n · A_rn / Atot_n``.

Printed: for every free norm the mean and standard deviation of (fit − truth)/σ over the seeds
(criteria |mean| < 0.15 and 0.8 ≤ std ≤ 1.2), how often it sat at a limit, then the same for the
predicted 3-20 keV counts of the held-out circle (σ = statistical error of the prediction), with
the wall time.
"""

from __future__ import annotations

import os

# One BLAS thread per worker: the workers already fill the cores, and a multi-threaded OpenBLAS on
# an oversubscribed machine spins (fits became ~30x slower in our measurements, see bench_model).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import multiprocessing as mp  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

MEAN_MAX = 0.15
STD_RANGE = (0.8, 1.2)


def truths(analysis, truth, cal_atot, ratios, fit_regions):
    """{(source, global index): truth value} of every free norm of the analysis."""
    st = analysis.state
    out = {}
    comps = ratios["models"][1]["components"]
    J = {m: np.asarray(ratios["models"][3]["components"]["bknpower"][m]["ifactors"]) for m in "AB"}
    for g, grp in enumerate(analysis.groups, start=1):
        m, reg = grp.module, fit_regions[(g - 1) // 2]
        w = truth["regions"][reg]["modules"][m]["weights"]
        A, W = np.asarray(w["A"]), w["W"]
        atot = cal_atot[m]
        f = truth["norms"][m]
        cand = {("apbgd", (g - 1) * 3 + 3): f["ap_factor"] * 0.002353 / 32 * W,
                ("fcxb", (g - 1) * 3 + 3): f["fcxb_factor"] * 1.6455454e-9 * A.sum(),
                ("intn", (g - 1) * 4 + 4): float(np.sum(25 * J[m] * np.asarray(f["intn_factor"]) * A / atot))}
        local = 0
        for name in comps:
            local += 4 if name == "apec" else 3
            ik = np.asarray(comps[name][m]["ifactors"]) * np.asarray(f["intbgd_factor"])
            cand[("intbgd", (g - 1) * 91 + local)] = float(np.sum(ik * A / atot))
        for key, value in cand.items():
            if st[key[0]][key[1]].free:
                out[key] = value
    return out


def fit_unbounded(analysis):
    """The same C-stat fit with the norms' lower limit (0) removed: a diagnostic of the bias that
    the physical limit puts on weak lines and, through correlations, on the other norms."""
    from nuskybgd_engine.errors import FitError
    from nuskybgd_engine.fit.native import LinearProblem, fit_linear

    data, design, offset, free = analysis.model.linear_problem()
    n = len(free)
    problem = LinearProblem(data, design, offset, np.full(n, -np.inf), np.full(n, np.inf))
    out = fit_linear(problem, "cstat", np.array([analysis.state[s][k].value for s, k in free]))
    analysis.model.set_free_values(free, out.theta)
    analysis.result = analysis._result(out, free, "cstat", "native")
    if not out.converged:
        raise FitError(f"fit did not converge: {out.message}")
    return analysis.result


def one_seed(args):
    seed, exposure, unbounded = args
    from nuskybgd_engine.calibration.products import load_ratios, module_calibration
    from nuskybgd_engine.errors import FitError
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.model.background import BackgroundOptions, region_weights
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.simulate import SimulationSpec, internal_area, simulate_observation
    from nuskybgd_engine.workflow import BackgroundAnalysis, group_from_events

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="nsb_recovery_"))
    try:
        sim = simulate_observation(tmp, SimulationSpec(obsid=f"{90000100000 + seed}", seed=seed, exposure=exposure,
                                                       source="none"))
        truth = sim.truth
        obs = prepare_observation(sim.root)
        bgd = sorted(n for n in truth["regions"] if n.startswith("bgd"))
        if len(bgd) < 3:
            return {"seed": seed, "skipped": f"only {len(bgd)} background circles"}
        fit_regions, held = bgd[:-1], bgd[-1]
        groups = []
        for name in fit_regions:
            rs = RegionSet.read_ds9(sim.region_files[name])
            for m in ("A", "B"):
                groups.append(group_from_events(obs[m].events, rs, obs.grid, obs[m].maps, name=f"{name}{m}"))
        opts = BackgroundOptions(fcxb_links=[(i, i + 1) for i in range(1, len(groups), 2)], fix_line_ratios=True)
        analysis = BackgroundAnalysis(groups, options=opts)
        try:
            res = fit_unbounded(analysis) if unbounded else analysis.fit("cstat")
        except FitError as exc:
            return {"seed": seed, "failed": str(exc)}
        # The simulator's internal-background area unit (one for all detectors, see simulate.py).
        atot = {m: np.full(4, internal_area(module_calibration(m).detnum)) for m in "AB"}
        ratios, _ = load_ratios()
        pulls, at_limit = {}, {}
        for key, value in truths(analysis, truth, atot, ratios, fit_regions).items():
            g = (key[1] - 1) // analysis.state[key[0]].n_par + 1
            p = analysis.state[key[0]][key[1]]
            name = f"{key[0]}.{p.component} ({'A' if analysis.groups[g - 1].module == 'A' else 'B'}"
            name += ", ref)" if key[0] != "fcxb" else f", {fit_regions[(g - 1) // 2]})"
            err = res.error(*key)
            at_limit[name] = bool(p.value <= (-np.inf if unbounded else 0.0) or not err > 0)
            pulls[name] = (p.value - value) / err if err > 0 else float("nan")
        rs = RegionSet.read_ds9(sim.region_files[held])
        pred = {}
        for m in ("A", "B"):
            pr = analysis.predict(region_weights(rs, obs.grid, obs[m].maps, name=held), band=(3.0, 20.0))
            exp = truth["regions"][held]["modules"][m]["expected"]["3-20"]
            true_bgd = sum(exp[k] for k in ("apbgd", "intbgd", "fcxb", "intn"))
            pred[f"held-out {held} FPM{m} 3-20 keV counts"] = (pr.total - true_bgd) / pr.stat_error
        return {"seed": seed, "pulls": pulls, "at_limit": at_limit, "pred": pred, "time": time.perf_counter() - t0,
                "stat": res.value, "dof": res.dof}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarise(label, values, limits=None):
    v = np.asarray([x for x in values if np.isfinite(x)])
    if v.size < 2:
        print(f"  {label:<44} n={v.size:3d}  (too few finite pulls)")
        return False
    mean, std = float(v.mean()), float(v.std(ddof=1))
    ok = abs(mean) < MEAN_MAX and STD_RANGE[0] <= std <= STD_RANGE[1]
    extra = f"  at limit {limits}/{len(values)}" if limits else ""
    print(f"  {label:<44} n={v.size:3d}  mean {mean:+.3f} (±{std / np.sqrt(v.size):.3f})  std {std:.3f}  "
          f"{'ok' if ok else 'FAIL'}{extra}")
    return ok


def main(argv):
    unbounded = "--unbounded" in argv
    argv = [a for a in argv if a != "--unbounded"]
    n = int(argv[1]) if len(argv) > 1 else 50
    exposure = float(argv[2]) if len(argv) > 2 else 20000.0
    procs = int(argv[3]) if len(argv) > 3 else 2
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(procs) as pool:
        results = pool.map(one_seed, [(s, exposure, unbounded) for s in range(1, n + 1)], chunksize=1)
    wall = time.perf_counter() - t0
    good = [r for r in results if "pulls" in r]
    for r in results:
        if "pulls" not in r:
            why = r.get("skipped") or "FIT FAILED: " + r.get("failed", "?")
            print(f"seed {r['seed']}: {why}")
    print(f"recovery: {len(good)}/{n} seeds fitted, {exposure:g} s per module, 6 spectra per fit "
          f"(3 circles x A/B), C-stat{', norms UNBOUNDED (diagnostic)' if unbounded else ''}; "
          f"wall {wall:.0f} s on {procs} processes "
          f"({np.mean([r['time'] for r in good]):.1f} s per seed)")
    print(f"mean C-stat/dof {np.mean([r['stat'] / r['dof'] for r in good]):.3f}")
    print(f"pulls (fit - truth)/sigma; criteria |mean| < {MEAN_MAX}, std in {STD_RANGE}:")
    names = sorted({k for r in good for k in r["pulls"]})
    n_ok = 0
    for name in names:
        vals = [r["pulls"][name] for r in good if name in r["pulls"]]
        lim = sum(r["at_limit"].get(name, False) for r in good)
        n_ok += summarise(name, vals, lim)
    print(f"free norms within the criteria: {n_ok}/{len(names)}")
    print("held-out region (sigma = statistical error of the prediction):")
    for name in sorted({k for r in good for k in r["pred"]}):
        summarise(name, [r["pred"][name] for r in good])
    summarise("held-out, both modules pooled", [v for r in good for v in r["pred"].values()])


if __name__ == "__main__":
    main(sys.argv)
