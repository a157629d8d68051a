"""``nuskybgd predict``: predicted background counts in any regions and bands, with 1σ."""

from __future__ import annotations

import json
import sys

from ._argtypes import add_obs_option, use_obs


def register(subparsers):
    p = subparsers.add_parser(
        "predict", help="predicted background counts in a region and band (total, per component, ±1σ)",
        description="Transfer a fitted background (NAME.json of `nuskybgd fit --run`) to any region: counts in the "
                    "band for the exposure of the module's reference spectrum, per component, with the statistical "
                    "error from the fit covariance, the systematic floor (default 0.04/1.645 = 2.43 % at 1 sigma, "
                    "from the ≈4 % at 90 % confidence of Wik et al. 2014) and their combination stat (+) sys "
                    "in quadrature, each reported separately.")
    p.add_argument("fit", help="NAME.json written by `nuskybgd fit --run`")
    p.add_argument("region", nargs="+", help="ds9 region file(s)")
    p.add_argument("--module", required=True, nargs="+", choices=("A", "B"), help="focal plane module(s)")
    p.add_argument("--band", nargs=2, type=float, action="append", default=None, metavar=("EMIN", "EMAX"),
                   help="energy band in keV (default 3 20); repeat for several bands")
    p.add_argument("--exposure", type=float, default=None, help="exposure in s (default: the reference spectrum's)")
    p.add_argument("--systematic", type=float, default=None, metavar="FRACTION",
                   help="systematic floor as a fraction of the prediction (default 0.0243, Wik et al. 2014)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_obs_option(p, "the region(s) are in")
    p.set_defaults(func=run)


def run(args):
    from ..predictions import format_table, predict_regions
    from ..workflow import load_fit_json

    analysis = use_obs(load_fit_json(args.fit), args.obs)
    cases = predict_regions(analysis, args.region, modules=args.module, bands=args.band or [(3.0, 20.0)],
                            exposure=args.exposure, systematic=args.systematic)
    for path, notes in dict((c.path, c.notes) for c in cases).items():
        for note in notes:  # shapes with no area that the mask skips; on stderr, as stdout may be JSON
            print(f"note: {path} {note}", file=sys.stderr)
    if len(cases) > 1:  # several regions, modules or bands: a table (or a JSON list), one line per case
        print(json.dumps([c.to_dict() for c in cases], indent=1) if args.json else format_table(cases))
        return 0
    pred = cases[0].prediction
    if args.json:
        print(json.dumps(pred.to_dict(), indent=1))
    else:
        print(f"FPM{pred.module} {pred.band[0]:g}-{pred.band[1]:g} keV, {pred.exposure:.0f} s: {pred.total:.2f} counts "
              f"± {pred.stat_error:.2f} (stat) ± {pred.sys_error:.2f} (sys, {100 * pred.systematic_fraction:.2f} % "
              f"floor); stat (+) sys {pred.stat_sys_error:.2f}")
        for k, v in pred.components.items():
            print(f"  {k:>6}: {v:.2f} ± {pred.component_errors[k]:.2f} (stat)")
    return 0
