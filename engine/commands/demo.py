"""``nuskybgd demo``: simulate the demo observation and run the whole method on it headlessly."""

from __future__ import annotations

import json
import time


def register(subparsers):
    p = subparsers.add_parser(
        "demo", help="simulate the demo observation (once) and run the whole workflow on it, with a summary",
        description="Simulates the embedded demo observation into OUTDIR (default: $NUSKYBGD_DEMO_DIR or "
                    "~/.cache/nuskybgd/demo; reused when present), builds images, instrument maps, aspect "
                    "histograms and projected maps, extracts the suggested background regions' spectra, fits the "
                    "background (C-stat), predicts the background of the source region and compares it with the "
                    "simulation's truth. The fit is written to OUTDIR/<obsid>/bgd/demo_fit.xcm/.json (numbered).")
    p.add_argument("outdir", nargs="?", default=None, help="where the demo observation lives")
    p.set_defaults(func=run)


def run(args):
    from ..demo import ensure_demo_observation
    from ..io.regions import RegionSet
    from ..model.background import BackgroundOptions, region_weights
    from ..observation import prepare_observation
    from ..startvalues import apply_start_values
    from ..analysis import BackgroundAnalysis
    from ..export import export_fit_xcm
    from ..fitcache import save_fit
    from ..groups import group_from_events
    from .fit import output_names

    t0 = time.perf_counter()
    obsdir = ensure_demo_observation(args.outdir, progress=lambda m: print(f"  simulate: {m}"))
    print(f"demo observation: {obsdir}")
    obs = prepare_observation(obsdir, progress=lambda m: print(f"  maps: {m}"))
    truth = json.loads((obsdir / "truth.json").read_text())
    regdir = obsdir / "regions"
    groups = []
    for reg in sorted(regdir.glob("bgd*.reg")):
        rs = RegionSet.read_ds9(reg)
        for m in obs.modules:
            groups.append(group_from_events(obs[m].events, rs, obs.grid, obs[m].maps, name=f"{reg.stem}{m}"))
    # As the seed's bgdinfo template: the fcxb norm of each region is shared by FPMA and FPMB.
    pairs = [(i, i + 1) for i in range(1, len(groups), len(obs.modules))] if len(obs.modules) == 2 else []
    analysis = BackgroundAnalysis(groups, options=BackgroundOptions(fcxb_links=pairs))
    start = apply_start_values(analysis, obs)
    print(f"starting values from the counts image: {start!r}")
    result = analysis.fit("cstat")
    print(f"fit: {len(groups)} spectra, C-stat {result.value:.1f} for {result.dof} dof "
          f"({'converged' if result.converged else 'NOT converged'}; a correct model gives "
          f"{result.expected:.1f} ± {result.expected_sigma:.1f})")
    for w in result.warnings:
        print(f"  warning: {w}")
    outdir = obsdir / "bgd"
    outdir.mkdir(exist_ok=True)
    xcm, js = output_names(outdir / "demo_fit.xcm")  # one number for both files
    written = export_fit_xcm(analysis, xcm, statistic="cstat")
    written.append(save_fit(analysis, js))
    for path in written:
        print(f"wrote {path}")
    src = RegionSet.read_ds9(regdir / "src_point.reg")
    print("background in the source region, 3-20 keV (predicted vs simulated truth):")
    for m in obs.modules:
        pred = analysis.predict(region_weights(src, obs.grid, obs[m].maps, name="src_point"))
        exp = truth["regions"]["src_point"]["modules"][m]["expected"]["3-20"]
        true_bgd = sum(v for k, v in exp.items() if k in ("apbgd", "intbgd", "fcxb", "intn"))
        pull = (pred.total - true_bgd) / pred.error
        print(f"  FPM{m}: {pred.total:8.1f} ± {pred.error:5.1f} counts; truth {true_bgd:8.1f} (pull {pull:+.2f})")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
