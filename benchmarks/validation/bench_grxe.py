"""GRXE recovery on the independent validation simulator: a Galactic-ridge field with a known GRXE.

Run: ``python benchmarks/validation/bench_grxe.py [--seeds 8] [--procs 2] [--first 1] [--save rows.json]``.

For every seed the simulator (:mod:`validation`, no engine code) writes an observation pointed at
(l, b) = (20°, 1°) whose background holds, besides apbgd/intbgd/fcxb/intn, the Galactic-ridge stray
light of a synthetic ``modelrxte``-format sky map (brightness ∝ e^{−|l|/30°}/(1 + b²), b in degrees)
seen through the aperture stop with the simulator's own geometry (IDL ``grxe2det``: stop above the
FPM origin, disc of sky of radius 29/z moving 1/z rad per mm). The GRXE spectrum is a 6.7 keV line +
the polarmodel table at 0.6 M☉ (the IDL source 6), its continuum half of FPMA's apbgd counts in
3–20 keV, its line 5 % of them. The engine then runs the method with the GRXE option as the CLI
does (``projbgd --grxe`` = :func:`~nuskybgd_engine.maps.grxe.project_grxe`; the source 6 model;
C-stat fit of the four background circles of FPMA and FPMB, the fcxb norm of each region tied
A↔B), and predicts every region (fitted and held-out ``src_point``/``src_ext``).

Printed, mean ± standard deviation over seeds (and the standard error of the mean):

* held-out total bias (prediction/truth − 1) per module, 3–20 keV, and its pull std;
* GRXE component recovery, prediction/truth of the GRXE counts in each region (3–20 keV), of the
  GRXE line and continuum norms (the engine's region norms, reference norm × G_region/G_ref, against
  the simulator's K × Σ Ω⟨S⟩ over the region), and of apbgd+fcxb and intbgd;
* ``--no-grxe-fit``: the same observation fitted without the GRXE option (what ignoring the ridge costs);
* ``--stop-height MM``: the simulator's aperture stop at another height than the 854 mm both assume
  (the one geometric number neither the spec nor the auxil files give directly).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread per seed process
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from validation import COMPONENTS, GRXE, REGIONS_DET1, ValidationSpec, simulate
from validation.bench_validation import FIT_REGIONS, HELD_OUT, config_for, print_warnings, run_seeds
from validation.instrument import auxil_dir

#: Pointing (galactic l, b in degrees); exposure and PA alternate as in bench_validation (config_for).
POINTING = (20.0, 1.0)


def spec_for(seed, grxe=None):
    """The ValidationSpec of a seed: a field at :data:`POINTING` with the GRXE (defaults of ``simobs``)."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    c = SkyCoord(l=POINTING[0] * u.deg, b=POINTING[1] * u.deg, frame="galactic").icrs
    exposure, pa = config_for(seed)
    return ValidationSpec(seed=seed, exposure=exposure, pa=pa, obsid=f"{92000000000 + seed}", ra=float(c.ra.deg),
                          dec=float(c.dec.deg), grxe={"l0": POINTING[0], **(grxe or {})})


def fit_grxe_api(root, truth, *, use_grxe=True):
    """Fit the observation under ``root`` with the engine API and the GRXE option.

    Returns ``(predictions {(region, module): {...}}, fit info)``; each prediction has the 3–20 keV
    total, its statistical error, the components, and (with GRXE) the region's GRXE line and
    continuum norms.
    """
    from nuskybgd_engine.analysis import BackgroundAnalysis
    from nuskybgd_engine.groups import group_from_events
    from nuskybgd_engine.io.ogip import read_rmf
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.maps.grxe import add_grxe_maps, read_grxe_map
    from nuskybgd_engine.model.background import BackgroundOptions, region_weights
    from nuskybgd_engine.model.tablemodel import register_grxe_table
    from nuskybgd_engine.observation import prepare_observation

    obs = prepare_observation(root)
    if use_grxe:
        add_grxe_maps(obs, read_grxe_map(root / truth["files"]["grxe_map"]))  # = projbgd --grxe
        register_grxe_table()
    rmf = {m: read_rmf(root / f"gauss{m}.rmf", module=m) for m in "AB"}
    regions = {n: RegionSet.read_ds9(root / "regions" / f"{n}.reg") for n in REGIONS_DET1}
    groups = [group_from_events(obs[m].events, regions[n], obs.grid, obs[m].maps, name=f"{n}{m}", rmf=rmf[m])
              for n in FIT_REGIONS for m in "AB"]
    opts = BackgroundOptions(fcxb_links=[(i, i + 1) for i in range(1, len(groups), 2)])
    analysis = BackgroundAnalysis(groups, options=opts)
    res = analysis.fit("cstat")
    src = next((s for s in analysis.state if s.name == GRXE), None)
    out = {}
    for n in REGIONS_DET1:
        for m in "AB":
            w = region_weights(regions[n], obs.grid, obs[m].maps, name=n)
            d = analysis.predict(w, band=(3.0, 20.0)).to_dict()
            row = {"total": d["total"], "stat_error": d["stat_error"], "components": dict(d["components"])}
            if src is not None:
                r = analysis.reference_group(m)
                scale = w.G / analysis.state.weights[r - 1].G
                row["norms"] = {"line": src.param(r, 3).value * scale, "cont": src.param(r, 5).value * scale}
            out[f"{n}|{m}"] = row
    return out, {"stat": res.value, "dof": res.dof, "warnings": list(res.warnings)}


def one_seed(job):
    seed, args = job
    tmp = Path(tempfile.mkdtemp(prefix="nsb_grxe_"))
    t0 = time.perf_counter()
    try:
        spec = spec_for(seed, {"stop_height": args.stop_height})
        truth = simulate(tmp, spec, truth_times=args.truth_times)
        root = tmp / spec.obsid
        t_sim = time.perf_counter() - t0
        pred, fit = fit_grxe_api(root, truth, use_grxe=not args.no_grxe_fit)
        return {"seed": seed, "exposure": spec.exposure, "pa": spec.pa, "truth": truth["regions"],
                "k": truth["grxe"], "pred": pred, "fit": fit, "t_sim": t_sim,
                "t_fit": time.perf_counter() - t0 - t_sim}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measures(row):
    """Per (region, module): total bias, pull, and the component and norm ratios (prediction/truth)."""
    out = {}
    for n in REGIONS_DET1:
        for m in "AB":
            p = row["pred"][f"{n}|{m}"]
            t = row["truth"][n]["modules"][m]
            exp = t["expected"]["3-20"]
            true_total = sum(exp[c] for c in (*COMPONENTS, GRXE))
            comp = p["components"]
            d = {"bias": p["total"] / true_total - 1.0, "pull": (p["total"] - true_total) / p["stat_error"],
                 "apfcxb": (comp["apbgd"] + comp["fcxb"]) / (exp["apbgd"] + exp["fcxb"]),
                 "intbgd": comp["intbgd"] / exp["intbgd"]}
            if "norms" in p:
                d["grxe"] = comp[GRXE] / exp[GRXE]
                d["line"] = p["norms"]["line"] / t["grxe_norms"]["line"]
                d["cont"] = p["norms"]["cont"] / t["grxe_norms"]["cont"]
            else:  # fitted without the GRXE source: where did the ridge's counts go?
                d["apfcxb_with_grxe"] = (comp["apbgd"] + comp["fcxb"]) / (exp["apbgd"] + exp["fcxb"] + exp[GRXE])
            out[(n, m)] = d
    return out


def summarize(rows):
    """``{(region, module, measure): (mean, std, standard error)}`` over seeds."""
    per = [measures(r) for r in rows]
    out = {}
    for key in per[0]:
        for q in per[0][key]:
            v = np.array([p[key][q] for p in per], float)
            sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
            out[(*key, q)] = (float(v.mean()), sd, sd / np.sqrt(v.size))
    return out


def held_out_pooled(rows, q):
    """Held-out regions of both modules pooled per seed (mean over the 2 regions), then over seeds."""
    per = [measures(r) for r in rows]
    out = {}
    for m in "AB":
        v = np.array([np.mean([p[(n, m)][q] for n in HELD_OUT]) for p in per])
        sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
        out[m] = (float(v.mean()), sd, sd / np.sqrt(v.size))
    return out


def report(rows, args):
    s = summarize(rows)
    print(f"\n== per region, 3-20 keV: mean ± std over {len(rows)} seeds (prediction/truth)")
    qs = ["bias", "grxe", "line", "cont", "apfcxb", "intbgd"] if not args.no_grxe_fit else \
        ["bias", "apfcxb", "apfcxb_with_grxe", "intbgd"]
    print(f"{'region':<10}{'mod':<4}" + "".join(f"{q:>18}" for q in qs))
    for n in REGIONS_DET1:
        for m in "AB":
            cells = []
            for q in qs:
                mean, sd, _ = s[(n, m, q)]
                cells.append((f"{100 * mean:+6.1f}% ± {100 * sd:4.1f}" if q == "bias" else f"{mean:6.3f} ± {sd:5.3f}")
                             .rjust(18))
            print(f"{n:<10}{m:<4}" + "".join(cells) + ("   (held out)" if n in HELD_OUT else ""))
    print("\n== held-out regions (src_point, src_ext) pooled per seed: mean ± std (s.e.)")
    for q in qs:
        for m, (mean, sd, se) in held_out_pooled(rows, q).items():
            scale, unit = (100, "%") if q == "bias" else (1, "")
            print(f"FPM{m} {q:<18} {scale * mean:+8.3f}{unit} ± {scale * sd:.3f}{unit}  (s.e. {scale * se:.3f}{unit})")
    pulls = [measures(r)[(n, m)]["pull"] for r in rows for n in HELD_OUT for m in "AB"]
    print(f"held-out pull (stat) mean {np.mean(pulls):+.2f}, std {np.std(pulls, ddof=1):.2f} over {len(pulls)}")
    print_warnings(rows, 5)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--truth-times", type=int, default=200, help="aspect samples of the region truth")
    p.add_argument("--no-grxe-fit", action="store_true", help="fit without the GRXE source (the ridge ignored)")
    p.add_argument("--stop-height", type=float, default=None,
                   help="simulate with this aperture-stop height (mm; the engine assumes 854): sensitivity to it")
    p.add_argument("--save", default=None, help="write the per-seed rows as JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("NUSKYBGD_AUXIL", str(auxil_dir()))
    t0 = time.perf_counter()
    rows = run_seeds(one_seed, args)
    print(f"GRXE validation: {len(rows)} seeds {args.first}..{args.first + args.seeds - 1} (50 ks PA 37° / 120 ks "
          f"PA 212°), field (l, b) = {POINTING}, GRXE fit {'off' if args.no_grxe_fit else 'on'}, stop height "
          f"{args.stop_height or 'the instrument'}; wall "
          f"{time.perf_counter() - t0:.0f} s (simulation {np.mean([r['t_sim'] for r in rows]):.1f} s, engine "
          f"{np.mean([r['t_fit'] for r in rows]):.1f} s per seed)")
    if args.save:
        Path(args.save).write_text(json.dumps(rows))
    report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
