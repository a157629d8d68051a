"""``nuskybgd predict``: predicted background counts in any region and band, with 1σ."""

from __future__ import annotations

import json


def register(subparsers):
    p = subparsers.add_parser(
        "predict", help="predicted background counts in a region and band (total, per component, ±1σ)",
        description="Transfer a fitted background (NAME.json of `nuskybgd fit --run`) to any region: counts in the "
                    "band for the exposure of the module's reference spectrum, per component, with the statistical "
                    "error from the fit covariance, the systematic floor (default 0.04/1.645 = 2.43 %% at 1 sigma, "
                    "from the ≈4 %% at 90 %% confidence of Wik et al. 2014) and their combination stat (+) sys "
                    "in quadrature, each reported separately.")
    p.add_argument("fit", help="NAME.json written by `nuskybgd fit --run`")
    p.add_argument("region", help="ds9 region file")
    p.add_argument("--module", required=True, choices=("A", "B"), help="focal plane module")
    p.add_argument("--band", nargs=2, type=float, default=(3.0, 20.0), metavar=("EMIN", "EMAX"),
                   help="energy band in keV (default 3 20)")
    p.add_argument("--exposure", type=float, default=None, help="exposure in s (default: the reference spectrum's)")
    p.add_argument("--systematic", type=float, default=None, metavar="FRACTION",
                   help="systematic floor as a fraction of the prediction (default 0.0243, Wik et al. 2014)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args):
    from ..io.regions import RegionSet
    from ..model.background import region_weights
    from ..workflow import load_fit_json

    analysis = load_fit_json(args.fit)
    rs = RegionSet.read_ds9(args.region)
    if args.module not in analysis.maps:
        from ..errors import BadConfigError

        raise BadConfigError(f"the fit has no FPM{args.module} maps", field="module")
    w = region_weights(rs, analysis.grid, analysis.maps[args.module], name=str(args.region))
    pred = analysis.predict(w, band=tuple(args.band), exposure=args.exposure, systematic=args.systematic)
    if args.json:
        print(json.dumps(pred.to_dict(), indent=1))
    else:
        print(f"FPM{pred.module} {pred.band[0]:g}-{pred.band[1]:g} keV, {pred.exposure:.0f} s: {pred.total:.2f} counts "
              f"± {pred.stat_error:.2f} (stat) ± {pred.sys_error:.2f} (sys, {100 * pred.systematic_fraction:.2f} % "
              f"floor); stat (+) sys {pred.stat_sys_error:.2f}")
        for k, v in pred.components.items():
            print(f"  {k:>6}: {v:.2f} ± {pred.component_errors[k]:.2f} (stat)")
    return 0
