"""``nuskybgd predict``: predicted background counts in any region and band, with 1σ."""

from __future__ import annotations

import json


def register(subparsers):
    p = subparsers.add_parser(
        "predict", help="predicted background counts in a region and band (total, per component, ±1σ)",
        description="Transfer a fitted background (NAME.json of `nuskybgd fit --run`) to any region: counts in the "
                    "band for the exposure of the module's reference spectrum, per component, with the statistical "
                    "error from the fit covariance and a systematic floor (≈4 % at 90 % confidence, Wik et al.) "
                    "added in quadrature.")
    p.add_argument("fit", help="NAME.json written by `nuskybgd fit --run`")
    p.add_argument("region", help="ds9 region file")
    p.add_argument("--module", required=True, choices=("A", "B"), help="focal plane module")
    p.add_argument("--band", nargs=2, type=float, default=(3.0, 20.0), metavar=("EMIN", "EMAX"),
                   help="energy band in keV (default 3 20)")
    p.add_argument("--exposure", type=float, default=None, help="exposure in s (default: the reference spectrum's)")
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
    pred = analysis.predict(w, band=tuple(args.band), exposure=args.exposure)
    if args.json:
        print(json.dumps(pred.to_dict(), indent=1))
    else:
        print(f"FPM{pred.module} {pred.band[0]:g}-{pred.band[1]:g} keV, {pred.exposure:.0f} s: "
              f"{pred.total:.2f} ± {pred.error:.2f} counts (stat {pred.stat_error:.2f}, sys {pred.sys_error:.2f})")
        for k, v in pred.components.items():
            print(f"  {k:>6}: {v:.2f} ± {pred.component_errors[k]:.2f}")
    return 0
