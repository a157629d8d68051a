"""``nuskybgd aspecthist DET1FILE gtifile=GTI out=aspecthistA.fits``: aspect histogram (spec §2.5)."""

from __future__ import annotations

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "aspecthist", aliases=["projobs"], help="GTI-filtered histogram of the aspect solution (aspecthist{A,B}.fits)",
        description="Histogram the sky position of DET1 reference pixel (350, 350) from nu<obsid><A|B>_det1.fits "
                    "over the good time intervals: sample k counts t[k+1]-t[k] seconds when t[k] is in a GTI. "
                    "The histogram is cropped to its filled pixels; X_OFF/Y_OFF give the crop offset.")
    p.add_argument("det1file", help="aspect file nu<obsid><A|B>_det1.fits")
    p.add_argument("--gtifile", required=True, help="GTI file (e.g. nu<obsid>A01_gti.fits)")
    p.add_argument("--out", default=None, help="output file (default: aspecthist<A|B>.fits)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args):
    from ..io.aspect import read_aspect
    from ..io.fitsutil import check_writable
    from ..io.gti import read_gti
    from ..maps.aspecthist import aspect_histogram, write_aspect_histogram

    track = read_aspect(args.det1file)
    gti = read_gti(args.gtifile)
    out = args.out or f"aspecthist{track.module}.fits"
    check_writable(out, overwrite=args.overwrite)
    hist = aspect_histogram(track, gti, gti_path=str(args.gtifile))
    write_aspect_histogram(hist, out, overwrite=args.overwrite)
    print(f"wrote {out}: {hist.n_positions} positions, {hist.exposure:.3f} s (GTI total {gti.exposure:.3f} s), "
          f"peak {hist.peak}")
    return 0
