"""Convergence of the spectral fit from image-based starting values vs the presets (issue 8).

Run: ``python benchmarks/bench_startvalues.py [--seeds 100] [--exposure 20000]``.

One module (FPMA), no source, fixed geometry (see ``bench_coverage.Setup``). Each seed draws
truth factors far from the presets (log-uniform: aperture and fcxb 0.2-5x, internal 0.2-5x with
±20 % per detector) and new events, then fits (C-stat, native backend) the four simulator
background regions twice: from the presets, and after ``startvalues.apply_start_values`` (the
Poisson image fit in 3-10 and 20-50 keV; ``detect=False`` since the simulation has no source).
Printed: convergence rate of each (target ≥ 99 % from the image starts), the median distance of
the starting apbgd / intn norms from the fitted ones (|ln start/fit|), iterations and times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_coverage import Setup


def truth_norms(rng):
    f = lambda lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # noqa: E731
    internal, intn = f(0.2, 5), f(0.2, 5)
    return {"A": {"ap_factor": f(0.2, 5), "fcxb_factor": f(0.2, 5),
                  "intbgd_factor": list(internal * rng.uniform(0.8, 1.2, 4)),
                  "intn_factor": list(intn * rng.uniform(0.8, 1.2, 4))}}


def main():
    from nuskybgd_engine.errors import FitError
    from nuskybgd_engine.maps.images import make_counts_image
    from nuskybgd_engine.observation import ModuleProducts, ObservationProducts
    from nuskybgd_engine.startvalues import apply_start_values
    from nuskybgd_engine.analysis import BackgroundAnalysis

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--exposure", type=float, default=20000.0)
    args = ap.parse_args()
    setup = Setup(args.exposure)
    stats = {"preset": [], "image": []}
    dist = {"preset": [], "image": []}
    times = {"preset": [], "image": [], "start": []}
    for seed in range(args.seeds):
        rng = np.random.default_rng(5000 + seed)
        events, spec = setup.events(5000 + seed, truth_norms(rng))
        groups = setup.groups(events)
        obs = ObservationProducts(obsid=spec.obsid, root=setup.tmp, band=(3.0, 20.0), modules={
            "A": ModuleProducts("A", events, make_counts_image(events, 3.0, 20.0), None, None, setup.maps)})
        fitted = {}
        for how in ("preset", "image"):
            an = BackgroundAnalysis(groups)
            if how == "image":
                t0 = time.perf_counter()
                apply_start_values(an, obs, detect=False)
                times["start"].append(time.perf_counter() - t0)
            start = {k: an.state.value(*k) for k in (("apbgd", 3), ("intn", 4))}
            t0 = time.perf_counter()
            try:
                res = an.fit("cstat")
                ok = res.converged
            except FitError:
                ok = False
            times[how].append(time.perf_counter() - t0)
            stats[how].append(ok)
            if ok:
                fitted[how] = {k: an.state.value(*k) for k in start}
            fitted.setdefault("start_" + how, start)
        ref = fitted.get("image") or fitted.get("preset")
        if ref:
            for how in ("preset", "image"):
                s = fitted["start_" + how]
                # A norm fitted at its bound 0 has no log distance: counted as nan, left out of the median.
                dist[how].append([abs(np.log(s[k] / ref[k])) if ref[k] > 0 and s[k] > 0 else np.nan for k in s])
    for how, label in (("preset", "presets"), ("image", "image-based starts")):
        rate = 100 * np.mean(stats[how])
        d = np.nanmedian(np.array(dist[how]), axis=0)
        print(f"from {label:<19}: converged {rate:5.1f} % of {len(stats[how])} seeds; median |ln start/fit| "
              f"apbgd {d[0]:.2f}, intn {d[1]:.2f}; fit {np.median(times[how]) * 1e3:.0f} ms (median)")
    print(f"image start values: {np.median(times['start']) * 1e3:.0f} ms per observation (median); target "
          f"convergence ≥ 99 % -> {'OK' if np.mean(stats['image']) >= 0.99 else 'BELOW'}")


if __name__ == "__main__":
    main()
