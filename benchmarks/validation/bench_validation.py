"""Pulls and component recovery of the engine on the independent validation simulator.

Run: ``python benchmarks/validation/bench_validation.py [--seeds 24] [--procs 2] [--rmf engine|gauss]
[--soft apec_like|standin_like] [--lines free|ratios|grouped] [--negative] [--cli] [--mismatch]``.

Seeds alternate between 50 ks at PA 37° and 120 ks at PA 212° (the issue's 12 + 12 for 24 seeds).
For every seed the simulator (:mod:`validation`, no engine code) writes an observation; the engine
then runs the method on it as the seed's README does — instrument maps, aspect histograms,
projected maps, spectra of the four background circles (``bgd0`` DET0, ``bgd1`` DET1, ``bgd23``
straddling DET2/DET3, ``bgd3`` DET3) for FPMA and FPMB, the model with the fcxb norm of each
region tied A↔B, a C-stat fit, and predictions in every region (the four fitted ones and the
held-out ``src_point``/``src_ext``) in 3–20 and 20–50 keV — through the Python API
(``prepare_observation``, ``group_from_events``, ``BackgroundAnalysis``: the functions the CLI
steps call). ``--cli`` additionally runs the first seed through the ``nuskybgd`` command line
(mkimgs, mkinstrmap, aspecthist, projbgd, getspecnoarf, fit --run --stat cstat, predict) and
shows that it gives the same predictions as the API.

Options: ``--rmf engine`` fits with the engine's own RMF (what ``getspecnoarf`` writes without
CALDB, as in the issue), ``--rmf gauss`` with the simulator's true response (the spectrum's own
RESPFILE, as an observer has from nuproducts); ``--soft`` the simulator's soft-component shape;
``--lines free`` all 29 line norms free (the bgdinfo template), ``--lines ratios`` lines 5–29 tied
to 19.6 keV (``intbgd_fix_line_ratios``), ``--lines grouped`` also the 3.54/4.51/10.20 keV lines tied to
apec (``intbgd_fix_solar_ratios``); ``--negative`` opens the norms' limit at 0; ``--mismatch`` only
prints the counts each component gives through the two responses.

Printed: the held-out and fitted-region bias (prediction − truth)/truth per module, band and region
with its standard error over seeds; pull std (prediction − truth)/σ with the statistical σ and with
the statistical σ ⊕ systematic floor; component recovery, prediction/truth of apbgd, fcxb,
apbgd+fcxb, intbgd and intn in 3–20 keV per region and module; and the verdict against the
targets of issue 16.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from validation import BANDS, COMPONENTS, REGIONS_DET1, ValidationSpec, simulate
from validation.instrument import auxil_dir

FIT_REGIONS = [n for n, r in REGIONS_DET1.items() if r[3] == "background"]
HELD_OUT = [n for n, r in REGIONS_DET1.items() if r[3] != "background"]
#: Targets of issue 16.
TARGETS = {"apfcxb": 0.05, "intbgd": 0.25, "bias": 0.01, "pull_std": (0.9, 1.1)}


def config_for(seed):
    """(exposure, PA) of a seed: odd seeds 50 ks at 37°, even seeds 120 ks at 212°."""
    return (50000.0, 37.0) if seed % 2 else (120000.0, 212.0)


def options(args, n_groups):
    from nuskybgd_engine.model.background import BackgroundOptions

    return BackgroundOptions(fcxb_links=[(i, i + 1) for i in range(1, n_groups, 2)],
                             fix_line_ratios=args.lines in ("ratios", "grouped"), solar_ratios=args.lines == "grouped",
                             negative_norms=args.negative)


def fit_api(root, args):
    """Fit the observation under ``root`` with the engine API; predictions per (region, module, band)."""
    from nuskybgd_engine.io.ogip import read_rmf
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.model.background import region_weights
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.analysis import BackgroundAnalysis
    from nuskybgd_engine.groups import group_from_events

    obs = prepare_observation(root)
    rmf = {m: read_rmf(root / f"gauss{m}.rmf", module=m) if args.rmf == "gauss" else None for m in "AB"}
    regions = {n: RegionSet.read_ds9(root / "regions" / f"{n}.reg") for n in REGIONS_DET1}
    groups = [group_from_events(obs[m].events, regions[n], obs.grid, obs[m].maps, name=f"{n}{m}", rmf=rmf[m])
              for n in FIT_REGIONS for m in "AB"]
    analysis = BackgroundAnalysis(groups, options=options(args, len(groups)))
    res = analysis.fit("cstat")
    out = {}
    for n in REGIONS_DET1:
        for m in "AB":
            w = region_weights(regions[n], obs.grid, obs[m].maps, name=n)
            for band, e in BANDS.items():
                out[(n, m, band)] = _pred_dict(analysis.predict(w, band=e))
    return out, {"stat": res.value, "dof": res.dof, "goodness": res.goodness, "warnings": list(res.warnings)}


def _pred_dict(pr):
    d = pr.to_dict()
    return {"total": d["total"], "stat_error": d["stat_error"], "sys_error": d["sys_error"],
            "components": dict(d["components"])}


def fit_cli(root, args):
    """The same through the ``nuskybgd`` command line, as the seed's README runs it."""
    exe = str(Path(sys.executable).with_name("nuskybgd"))
    obsid = root.name
    work = root / "event_cl" / "bgd"
    work.mkdir()

    def run(*argv):
        subprocess.run([exe, *argv], cwd=work, check=True, capture_output=True, text=True)

    run("mkimgs", "../../", obsid, "3", "20")
    for m in "AB":
        run("mkinstrmap", f"../nu{obsid}{m}01_cl.evt")
        run("aspecthist", f"../nu{obsid}{m}_det1.fits", f"gtifile=../nu{obsid}{m}01_gti.fits",
            f"out=aspecthist{m}.fits")
        run("projbgd", "refimg=imA3to20keV.fits", f"out=bgdap{m}.fits", f"mod={m}", "det=1234",
            f"chipmap=newinstrmap{m}.fits", f"aspect=aspecthist{m}.fits")
    for n in FIT_REGIONS:
        for m in "AB":
            extra = [f"--rmffile=../../gauss{m}.rmf"] if args.rmf == "gauss" else []
            run("getspecnoarf", f"../nu{obsid}{m}01_cl.evt", f"reg=../../regions/{n}.reg", f"outprefix={n}{m}", *extra)
    info = {"bgfiles": [f"{n}{m}_sr.pha" for n in FIT_REGIONS for m in "AB"],
            "regfiles": [f"../../regions/{n}.reg" for n in FIT_REGIONS for m in "AB"],
            "refimgf": "bgdapA.fits", "bgdapfiles": {m: f"bgdap{m}.fits" for m in "AB"},
            "bgddetfiles": {m: [f"det{k}{m}im.fits" for k in range(4)] for m in "AB"},
            "fcxb_config": {"links": [[2 * i + 1, 2 * i + 2] for i in range(len(FIT_REGIONS))]},
            "intbgd_fix_line_ratios": args.lines in ("ratios", "grouped"),
            "intbgd_fix_solar_ratios": args.lines == "grouped", "negative_norms": args.negative}
    (work / "bgdinfo.json").write_text(json.dumps(info, indent=1))
    run("fit", "bgdinfo.json", "--run", "--stat", "cstat", "--savefile", "bgdfit")
    out = {}
    for n in REGIONS_DET1:
        for m in "AB":
            for band, (lo, hi) in BANDS.items():
                p = subprocess.run([exe, "predict", "bgdfit.json", f"../../regions/{n}.reg", "--module", m, "--band",
                                    str(lo), str(hi), "--json"], cwd=work, check=True, capture_output=True, text=True)
                d = json.loads(p.stdout)
                out[(n, m, band)] = {"total": d["total"], "stat_error": d["stat_error"], "sys_error": d["sys_error"],
                                     "components": d["components"]}
    return out


def one_seed(job):
    seed, args = job
    exposure, pa = config_for(seed)
    tmp = Path(tempfile.mkdtemp(prefix="nsb_validation_"))
    t0 = time.perf_counter()
    try:
        spec = ValidationSpec(seed=seed, exposure=exposure, pa=pa, obsid=f"{91000000000 + seed}",
                              soft_shape=args.soft)
        truth = simulate(tmp, spec)
        root = tmp / spec.obsid
        t_sim = time.perf_counter() - t0
        pred, fit = fit_api(root, args)
        row = {"seed": seed, "exposure": exposure, "pa": pa, "truth": truth["regions"], "pred": _keys(pred),
               "fit": fit, "t_sim": t_sim, "t_fit": time.perf_counter() - t0 - t_sim}
        if args.cli and seed == args.first:
            row["cli"] = _keys(fit_cli(root, args))
        return row
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _keys(d):
    return {"|".join(k): v for k, v in d.items()}


# --- the response mismatch, measured directly -------------------------------------------------------


def response_mismatch():
    """Counts of each component (whole module, 10⁵ s) through the simulator's Gaussian and the engine's RMF.

    The photon spectra are the simulator's (unit truth factors); the only difference between the two
    columns is the redistribution: the engine's nominal RMF (fitted to a real NuSTAR RMF) has Cd/Te
    escape peaks, a shoulder and a flat low-energy continuum, the simulator's Gaussian has none.
    """
    from nuskybgd_engine.calibration.products import load_rmf
    from nuskybgd_engine.io.ogip import fold

    from validation import instrument as ins
    from validation.simobs import photon_spectra

    rows = {}
    for m in "AB":
        detnum, _ = ins.detector_maps(m)
        npix = np.array([np.count_nonzero(detnum == n) for n in range(4)], float)
        ap_sum = ins.aperture_map(m)[detnum >= 0].sum()
        sp = photon_spectra(m, "apec_like")
        whole = {"apbgd": sp["apbgd"] * ap_sum, "fcxb": sp["fcxb"] * npix.sum(),
                 "intbgd": npix @ sp["intbgd"]}
        rmf, _ = load_rmf(m)
        for band, (lo, hi) in BANDS.items():
            c_lo, c_hi = ins.band_channels(lo, hi)
            p = ins.band_probability(lo, hi)
            for comp, flux in whole.items():
                gauss = float(flux @ p) * 1e5
                engine = float(fold(rmf, flux)[c_lo:c_hi + 1].sum()) * 1e5
                rows[(m, band, comp)] = (gauss, engine)
    print("\n== response mismatch: counts per module in 10^5 s, simulator Gaussian vs engine nominal RMF")
    for (m, band, comp), (g, e) in rows.items():
        print(f"FPM{m} {band:<6} {comp:<7} Gaussian {g:9.1f}   engine RMF {e:9.1f}   ratio {e / g:6.3f}")
    for m in "AB":
        g_i, e_i = rows[(m, "3-20", "intbgd")]
        cont = rows[(m, "3-20", "apbgd")][0] + rows[(m, "3-20", "fcxb")][0]
        print(f"FPM{m}: the engine RMF puts {e_i - g_i:.0f} more intbgd counts into 3-20 keV than the simulator "
              f"({e_i / g_i:.2f}x); the continuum the fit must give up to make room: "
              f"{100 * (e_i - g_i) / cont:.1f} % of apbgd+fcxb")
    return rows


# --- report -----------------------------------------------------------------------------------------


def _true_total(row, n, m, band):
    return sum(row["truth"][n]["modules"][m]["expected"][band][c] for c in COMPONENTS)


def _mean_se(v):
    v = np.asarray(v, float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def collect(rows):
    """Per (region, module, band): relative errors, pulls (stat, total), component ratios."""
    out = {}
    for n in REGIONS_DET1:
        for m in "AB":
            for band in BANDS:
                rel, ps, pt, comp = [], [], [], {c: [] for c in (*COMPONENTS, "apfcxb")}
                for r in rows:
                    p = r["pred"][f"{n}|{m}|{band}"]
                    true = _true_total(r, n, m, band)
                    rel.append(p["total"] / true - 1.0)
                    ps.append((p["total"] - true) / p["stat_error"])
                    pt.append((p["total"] - true) / np.hypot(p["stat_error"], p["sys_error"]))
                    exp = r["truth"][n]["modules"][m]["expected"][band]
                    for c in COMPONENTS:
                        comp[c].append(p["components"][c] / exp[c])
                    comp["apfcxb"].append((p["components"]["apbgd"] + p["components"]["fcxb"])
                                          / (exp["apbgd"] + exp["fcxb"]))
                out[(n, m, band)] = {"rel": rel, "pull_stat": ps, "pull_total": pt, "comp": comp}
    return out


def report(rows, args):
    stats = collect(rows)
    ok = True
    print(f"\n== bias (prediction/truth - 1, %, mean ± s.e. over {len(rows)} seeds) and pull std "
          "(σ = statistical; σ ⊕ systematic floor)")
    print(f"{'region':<10}{'mod':<4}{'band':<7}{'bias %':>16}{'pull mean':>11}{'std(stat)':>11}{'std(total)':>11}")
    for (n, m, band), s in stats.items():
        mean, se = _mean_se(s["rel"])
        pm = np.mean(s["pull_stat"])
        print(f"{n:<10}{m:<4}{band:<7}{100 * mean:>+9.2f} ± {100 * se:4.2f}{pm:>+11.2f}"
              f"{np.std(s['pull_stat'], ddof=1):>11.2f}{np.std(s['pull_total'], ddof=1):>11.2f}")
    print("\n== held-out regions pooled, per module and band")
    for m in "AB":
        for band in BANDS:
            rel = [x for n in HELD_OUT for x in stats[(n, m, band)]["rel"]]
            ps = [x for n in HELD_OUT for x in stats[(n, m, band)]["pull_stat"]]
            pt = [x for n in HELD_OUT for x in stats[(n, m, band)]["pull_total"]]
            mean, se = _mean_se(rel)
            # the two held-out regions of a seed are correlated: the s.e. uses seeds, not regions
            mean_seed = [np.mean([stats[(n, m, band)]["rel"][i] for n in HELD_OUT]) for i in range(len(rows))]
            se = _mean_se(mean_seed)[1]
            sd_s, sd_t = np.std(ps, ddof=1), np.std(pt, ddof=1)
            # The std of n pulls has a standard error ≈ std/sqrt(2(n-1)); with 24 seeds the bias's s.e.
            # is ~0.7 %, so "within the target" is also judged within 2 standard errors.
            sd_se = sd_s / np.sqrt(2 * (len(ps) - 1))
            good = abs(mean) < TARGETS["bias"] and TARGETS["pull_std"][0] <= sd_s <= TARGETS["pull_std"][1]
            near = (abs(mean) - 2 * se < TARGETS["bias"]
                    and TARGETS["pull_std"][0] - 2 * sd_se <= sd_s <= TARGETS["pull_std"][1] + 2 * sd_se)
            ok &= near
            print(f"FPM{m} {band:<6} bias {100 * mean:+6.2f} % ± {100 * se:4.2f}  pull std stat {sd_s:4.2f} "
                  f"± {sd_se:4.2f}  total {sd_t:4.2f}  "
                  f"{'ok' if good else 'within 2 s.e. of the target' if near else 'MISS'}")
    print("\n== component recovery 3-20 keV: prediction/truth (mean ± s.e. over seeds)")
    names = ("apbgd", "fcxb", "apfcxb", "intbgd", "intn")
    print(f"{'region':<10}{'mod':<4}" + "".join(f"{c:>22}" for c in names))
    for n in REGIONS_DET1:
        for m in "AB":
            s = stats[(n, m, "3-20")]["comp"]
            cells = []
            for c in names:
                mean, se = _mean_se(s[c])
                cells.append(f"{mean:7.3f} ± {se:5.3f}".rjust(22))
            a_mean = np.mean(s["apfcxb"])
            i_mean = np.mean(s["intbgd"])
            good = abs(a_mean - 1) < TARGETS["apfcxb"] and abs(i_mean - 1) < TARGETS["intbgd"]
            ok &= good
            print(f"{n:<10}{m:<4}" + "".join(cells) + ("" if good else "  MISS"))
    good_fit = [r["fit"]["goodness"] for r in rows if r["fit"]["goodness"] is not None]
    if good_fit:
        print(f"\nC-stat goodness (C - expected)/σ: mean {np.mean(good_fit):+.2f}, std {np.std(good_fit, ddof=1):.2f}")
    print_warnings(rows, 6)
    cli = [r for r in rows if "cli" in r]
    for r in cli:
        d = max(abs(r["cli"][k]["total"] / r["pred"][k]["total"] - 1) for k in r["cli"])
        print(f"\nCLI run of seed {r['seed']} (mkimgs … fit --run --stat cstat … predict): largest relative "
              f"difference from the API predictions {d:.2e}")
    return ok


def print_warnings(rows, most):
    """The ``most`` commonest fit warnings over the seeds' ``rows`` and how many fits gave each."""
    warn = {}
    for r in rows:
        for w in r["fit"]["warnings"]:
            key = w.split(":")[0] if "degenerate" not in w else w.split("(")[0]
            warn[key] = warn.get(key, 0) + 1
    for k, v in sorted(warn.items(), key=lambda kv: -kv[1])[:most]:
        print(f"  warning in {v}/{len(rows)} fits: {k[:110]}")


def run_seeds(task, args):
    """``task((seed, args))`` for ``args.seeds`` seeds from ``args.first``, on ``args.procs`` processes."""
    seeds = list(range(args.first, args.first + args.seeds))
    if args.procs > 1:
        with mp.get_context("spawn").Pool(args.procs) as pool:
            return pool.map(task, [(s, args) for s in seeds], chunksize=1)
    return [task((s, args)) for s in seeds]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=24)
    p.add_argument("--first", type=int, default=1)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--rmf", choices=("engine", "gauss"), default="gauss")
    p.add_argument("--soft", choices=("apec_like", "standin_like"), default="apec_like")
    p.add_argument("--lines", choices=("free", "ratios", "grouped"), default="free")
    p.add_argument("--negative", action="store_true", help="norms may go below 0 (negative_norms)")
    p.add_argument("--cli", action="store_true")
    p.add_argument("--save", default=None, help="write the per-seed rows as JSON")
    p.add_argument("--mismatch", action="store_true", help="only print the response mismatch and exit")
    args = p.parse_args(argv)
    os.environ.setdefault("NUSKYBGD_AUXIL", str(auxil_dir()))
    if args.mismatch:
        response_mismatch()
        return 0
    t0 = time.perf_counter()
    rows = run_seeds(one_seed, args)
    print(f"validation: {len(rows)} seeds (50 ks PA 37° / 120 ks PA 212°), rmf={args.rmf}, soft={args.soft}, "
          f"lines={args.lines}, negative_norms={args.negative}; wall {time.perf_counter() - t0:.0f} s "
          f"(simulation {np.mean([r['t_sim'] for r in rows]):.1f} s, "
          f"engine {np.mean([r['t_fit'] for r in rows]):.1f} s "
          "per seed)")
    if args.save:
        Path(args.save).write_text(json.dumps(rows))
    ok = report(rows, args)
    print(f"\nverdict: {'PASS' if ok else 'FAIL'} (targets: apbgd+fcxb within {TARGETS['apfcxb']:.0%}, intbgd within "
          f"{TARGETS['intbgd']:.0%} in every region; held-out |bias| < {TARGETS['bias']:.0%} and pull std (stat) in "
          f"{TARGETS['pull_std']}, each within 2 standard errors)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
