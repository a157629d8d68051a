"""``nuskybgd suggest-regions``: propose background regions away from the sources."""

from __future__ import annotations

from ._argtypes import add_drop_invalid


def register(subparsers):
    p = subparsers.add_parser(
        "suggest-regions", help="propose 3-6 background regions avoiding the sources in the counts image",
        description="Find sources in the counts image (Poisson significance over a background fitted from the "
                    "projected aperture and detector maps) and propose N circles on active detector area, clear "
                    "of the sources, covering all four detectors and the aperture gradient. Writes "
                    "<outdir>/<prefix>1.reg ... (ds9 fk5).")
    p.add_argument("obsdir", help="observation directory (<obsid> with event_cl/)")
    p.add_argument("--modules", nargs="+", choices=("A", "B"), default=["A", "B"], help="modules (default A B)")
    p.add_argument("--band", nargs=2, type=float, default=(3.0, 20.0), metavar=("EMIN", "EMAX"),
                   help="band of the counts image in keV (default 3 20)")
    p.add_argument("--n", type=int, default=4, help="number of regions, 3-6 (default 4)")
    p.add_argument("--radius", type=float, default=110.0, help="circle radius in arcsec (default 110)")
    p.add_argument("--threshold", type=float, default=5.0, help="source detection threshold in sigma (default 5)")
    p.add_argument("--margin", type=float, default=60.0, help="clearance around sources in arcsec (default 60)")
    p.add_argument("--outdir", default=".", help="output directory (default .)")
    p.add_argument("--prefix", default="bgd", help="region file prefix (default bgd)")
    p.add_argument("--overwrite", action="store_true", help="replace existing region files")
    add_drop_invalid(p)
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from ..constants import PIXEL_ARCSEC
    from ..errors import BadFileError
    from ..io.fitsutil import check_writable
    from ..observation import prepare_observation
    from ..suggest import suggest_regions

    outdir = Path(args.outdir)
    if not outdir.is_dir():
        raise BadFileError("output directory does not exist", path=outdir)
    for k in range(1, args.n + 1):
        check_writable(outdir / f"{args.prefix}{k}.reg", overwrite=args.overwrite)
    obs = prepare_observation(args.obsdir, band=tuple(args.band), modules=tuple(args.modules),
                              drop_invalid=args.drop_invalid)
    for m in obs.modules.values():
        if m.events.dropped:
            print(m.events.dropped_note())
    sug = suggest_regions(obs, n=args.n, radius=args.radius, threshold=args.threshold, margin=args.margin,
                          prefix=args.prefix)
    for s in sug.sources:
        ra, dec = obs.grid.wcs.pixel_to_world_values(s.x, s.y)
        print(f"source at RA {float(ra):.5f} Dec {float(dec):.5f} ({s.significance:.1f} sigma), excluded within "
              f"{s.radius * PIXEL_ARCSEC:.0f}\"")
    paths = sug.write(outdir, obs.grid, prefix=args.prefix, overwrite=args.overwrite)
    for c, p in zip(sug.choices, paths):
        print(f"wrote {p}: DET{c.detector} ({100 * c.purity:.0f} %), coverage {c.coverage:.3f}, "
              f"aperture W/A {c.aperture_ratio:.4g}")
    for w in sug.warnings:
        print(f"warning: {w}")
    return 0
