"""``nuskybgd simulate``: a synthetic observation with known truth."""

from __future__ import annotations



def register(subparsers):
    p = subparsers.add_parser(
        "simulate", help="write a synthetic NuSTAR observation with known background (and truth.json)",
        description="Write OUTDIR/<obsid>/event_cl/ (cleaned events, det1 aspect and GTI files of FPMA and FPMB), "
                    "OUTDIR/<obsid>/regions/ (ds9 fk5 background and source regions) and OUTDIR/<obsid>/truth.json "
                    "(injected normalisations and noise-free expected counts per component and region). "
                    "Uses the real calibration when available (NUSKYBGD_AUXIL ...), else the embedded nominal one.")
    p.add_argument("outdir", help="existing directory to write into")
    p.add_argument("--obsid", default="90000000002", help="observation ID (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument("--exposure", type=float, default=50000.0, help="exposure in s (default %(default)s)")
    p.add_argument("--pa", type=float, default=30.0, help="PA_PNT in degrees (default %(default)s)")
    p.add_argument("--ra", type=float, default=150.0, help="nominal RA in degrees (default %(default)s)")
    p.add_argument("--dec", type=float, default=2.2, help="nominal Dec in degrees (default %(default)s)")
    p.add_argument("--source", default="point", help="none, point, cluster or both (default %(default)s)")
    p.add_argument("--norms", metavar="FILE.json",
                   help='truth factors, e.g. {"A": {"ap_factor": 1.2, "intn_factor": [1, 1, 2, 1]}}')
    p.add_argument("--overwrite", action="store_true", help="replace OUTDIR/<obsid> if it exists")
    p.set_defaults(func=run)


def read_norms(path):
    from ..io.files import read_json

    return read_json(path, not_found="norms file not found", invalid="cannot read norms JSON: {exc}")


def run(args):
    from ..simulate import SimulationSpec, check_norms, simulate_observation

    norms = None
    if args.norms:
        norms = check_norms(read_norms(args.norms), source=args.norms)
    spec = SimulationSpec(obsid=args.obsid, seed=args.seed, exposure=args.exposure, pa=args.pa, ra=args.ra,
                          dec=args.dec, source=args.source, norms=norms or None)
    obs = simulate_observation(args.outdir, spec, overwrite=args.overwrite, progress=print)
    for m, info in obs.truth["modules"].items():
        print(f"FPM{m}: {info['n_events']} events -> {obs.event_files[m]}")
    print(f"regions: {', '.join(sorted(obs.region_files))}; truth: {obs.root / 'truth.json'}")
    return 0
