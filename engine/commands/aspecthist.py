"""``nuskybgd aspecthist DET1FILE gtifile=GTI out=aspecthistA.fits``: aspect histogram (spec §2.5).

Two sources of the aspect: the pipeline's ``nu<obsid><A|B>_det1.fits`` (the seed's way), or, with
``events=EVT`` and no DET1FILE, the events themselves (DET1X/DET1Y against X/Y, which also gives
the roll; the way for solar X/Y files, which have no aspect file in their frame). User GTIs
(``usrgti=``) are intersected with the GTI file (or the event file's GTI).
"""

from __future__ import annotations

from ..errors import BadConfigError

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "aspecthist", aliases=["projobs"], help="GTI-filtered histogram of the aspect solution (aspecthist{A,B}.fits)",
        description="Histogram the sky position of DET1 reference pixel (350, 350) from nu<obsid><A|B>_det1.fits "
                    "over the good time intervals: sample k counts t[k+1]-t[k] seconds when t[k] is in a GTI. "
                    "The histogram is cropped to its filled pixels; X_OFF/Y_OFF give the crop offset. "
                    "With --events EVT instead of DET1FILE the aspect and the roll are measured from the events "
                    "(DET1X/DET1Y against X/Y; solar X/Y files), the roll written as PA_EVT for projbgd.")
    p.add_argument("det1file", nargs="?", default=None, help="aspect file nu<obsid><A|B>_det1.fits")
    p.add_argument("--gtifile", default=None,
                   help="GTI file (e.g. nu<obsid>A01_gti.fits); default with --events: the event file's GTI")
    p.add_argument("--events", default=None, metavar="EVT",
                   help="measure the aspect and the roll from this cleaned event file instead of DET1FILE")
    p.add_argument("--bin-seconds", type=float, default=1.0,
                   help="with --events: time bin over which the pointing is taken as fixed (default 1 s)")
    p.add_argument("--pa-pnt", type=float, default=None,
                   help="with --events: use this roll (degrees) instead of measuring it")
    p.add_argument("--usrgti", action="append", default=None, metavar="GTI[,GTI...]",
                   help="user GTI file(s), intersected with the GTI (comma-separated or repeated)")
    p.add_argument("--out", default=None, help="output file (default: aspecthist<A|B>.fits)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args):
    from ..io.aspect import read_aspect
    from ..io.fitsutil import check_writable
    from ..io.gti import as_gtis, intersect_gtis, read_gti
    from ..maps.aspecthist import aspect_histogram, write_aspect_histogram

    if (args.det1file is None) == (args.events is None):
        raise BadConfigError("give either DET1FILE (the aspect file) or --events EVT", field="det1file")
    measured = None
    if args.events is not None:
        from ..io.events import read_events
        from ..maps.eventaspect import aspect_from_events

        events = read_events(args.events, columns=("TIME", "X", "Y", "DET1X", "DET1Y"))
        base, base_name = events.gti, f"GTI of {args.events}"
        if args.gtifile:
            base, base_name = read_gti(args.gtifile), str(args.gtifile)
        if base is None:
            raise BadConfigError(f"{args.events} has no GTI extension: give --gtifile", field="gtifile")
    else:
        if not args.gtifile:
            raise BadConfigError("--gtifile is required with an aspect file", field="gtifile")
        base, base_name = read_gti(args.gtifile), str(args.gtifile)
    gti = intersect_gtis(as_gtis(args.usrgti), base=base, base_name=base_name) if args.usrgti else base
    if args.events is not None:
        measured = aspect_from_events(events, gti, bin_seconds=args.bin_seconds, pa_pnt=args.pa_pnt)
        track = measured.track
    else:
        track = read_aspect(args.det1file)
    out = args.out or f"aspecthist{track.module}.fits"
    check_writable(out, overwrite=args.overwrite)
    hist = aspect_histogram(track, gti, gti_path=base_name)
    write_aspect_histogram(hist, out, overwrite=args.overwrite)
    print(f"wrote {out}: {hist.n_positions} positions, {hist.exposure:.3f} s (GTI total {gti.exposure:.3f} s), "
          f"peak {hist.peak}")
    if measured is not None:
        how = "given" if args.pa_pnt is not None else "measured from"
        print(f"roll PA {measured.pa:.3f} deg {how} {measured.n_events} events "
              f"(rms residual {measured.residual:.2f} sky pixels)")
    return 0
