"""``nuskybgd mkimgs``: sky (and optionally DET1) counts images in an energy band (spec §2.1).

Replaces the seed's xselect run. Three forms::

    nuskybgd mkimgs DIR OBSID EMIN EMAX        # IDL mkimgs.py / seed README: DIR/OBSID/event_cl/nu<OBSID>{A,B}01_cl.evt
    nuskybgd mkimgs EVT OUTNAME EMIN EMAX      # nuskybgd-py bin/mkimgs: OUTNAME.fits and OUTNAMEdet.fits
    nuskybgd mkimgs EVT [EVT ...] EMIN EMAX    # event files given directly

The first writes ``im{A,B}<lo>to<hi>keV.fits`` where the events are (``OBSID/event_cl/``, as IDL
mkimgs, so that ``refimg=../imB3to20keV.fits`` works from ``event_cl/bgd/``); EMIN and EMAX may be
comma-separated lists of bands, as in IDL. The last writes into ``--outdir`` (default: the current
directory).
"""

from __future__ import annotations

from pathlib import Path

from ._argtypes import add_drop_invalid, yes_no
from ..errors import BadConfigError, BadFileError

__all__ = ["register", "run", "find_event_files"]


def find_event_files(directory, obsid):
    """Cleaned event files ``nu<obsid>{A,B}01_cl.evt[.gz]`` of an observation directory."""
    directory = Path(directory)
    found = []
    for mod in "AB":
        for sub in (directory / obsid / "event_cl", directory / "event_cl", directory):
            hits = [sub / f"nu{obsid}{mod}01_cl.evt{ext}" for ext in ("", ".gz")]
            hit = next((h for h in hits if h.is_file()), None)
            if hit is not None:
                found.append(hit)
                break
    if not found:
        raise BadFileError(f"no nu{obsid}A01_cl.evt or nu{obsid}B01_cl.evt found (looked in "
                           f"{directory / obsid / 'event_cl'}, {directory / 'event_cl'} and {directory})",
                           path=directory)
    return found


def register(subparsers):
    p = subparsers.add_parser(
        "mkimgs", help="counts images in an energy band (im{A,B}<lo>to<hi>keV.fits)",
        description="Bin the events of cleaned event files into sky counts images with the sky WCS and PA_PNT, "
                    "EXPOSURE, INSTRUME ... copied. The PI range is exact (channels lying inside [EMIN, EMAX]: "
                    "3-20 keV gives PI 35-459; the seed's formula gave 36-459) and is written to the header as "
                    "PILOW/PIHIGH and EMIN/EMAX.",
        epilog="Forms: `mkimgs DIR OBSID EMIN EMAX` (images into DIR/OBSID/event_cl/, EMIN/EMAX may be "
               "comma-separated lists as in IDL), `mkimgs EVT OUTNAME EMIN EMAX` (nuskybgd-py: OUTNAME.fits and "
               "OUTNAMEdet.fits) or `mkimgs EVT [EVT ...] EMIN EMAX`.")
    p.add_argument("inputs", nargs="+", metavar="ARG",
                   help="DIR OBSID, EVT OUTNAME, or event files, followed by EMIN EMAX (keV)")
    p.add_argument("--outdir", default=None,
                   help="output directory (default: the event files' directory in the DIR OBSID form, else the "
                        "current directory)")
    p.add_argument("--det1", type=yes_no, default=None, metavar="yes|no",
                   help="also write the DET1 image <name>det.fits (RAWX, RAWY 1..30, as the seed; default yes in "
                        "the EVT OUTNAME form, no otherwise)")
    p.add_argument("--usrgti", action="append", default=None, metavar="GTI[,GTI...]",
                   help="user GTI file(s), intersected with the event file's GTI (nuproducts usrgtifile); "
                        "comma-separated or repeated; EXPOSURE/LIVETIME scaled by the file's LIVETIME/ONTIME")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_drop_invalid(p)
    p.set_defaults(func=run)


def _bands(lo_text, hi_text):
    """[(emin, emax), ...] from the (IDL: comma-separated) EMIN and EMAX arguments."""
    try:
        lows = [float(v) for v in str(lo_text).split(",")]
        highs = [float(v) for v in str(hi_text).split(",")]
    except ValueError:
        raise BadConfigError(f"EMIN EMAX must be numbers, got {lo_text!r} {hi_text!r}", field="band") from None
    if len(lows) != len(highs):
        raise BadConfigError(f"{len(lows)} lower and {len(highs)} upper band edges", field="band")
    for lo, hi in zip(lows, highs):
        if not lo < hi:
            raise BadConfigError(f"EMIN {lo:g} must be below EMAX {hi:g}", field="band")
    return list(zip(lows, highs))


def _parse(inputs):
    """(event files, bands, output stem or None, default output directory)."""
    if len(inputs) < 3:
        raise BadConfigError("expected DIR OBSID EMIN EMAX, EVT OUTNAME EMIN EMAX or EVT [EVT ...] EMIN EMAX",
                             field="inputs")
    bands = _bands(inputs[-2], inputs[-1])
    rest = inputs[:-2]
    if len(rest) == 2 and Path(rest[0]).is_dir() and not Path(rest[1]).is_file():
        files = find_event_files(rest[0], rest[1])
        return files, bands, None, files[0].parent
    looks_like_file = rest[1].lower().endswith((".evt", ".evt.gz", ".fits", ".fits.gz")) if len(rest) == 2 else True
    if len(rest) == 2 and Path(rest[0]).is_file() and not Path(rest[1]).exists() and not looks_like_file:
        if len(bands) != 1:
            raise BadConfigError("the EVT OUTNAME form takes one band", field="band")
        return [Path(rest[0])], bands, rest[1], Path(".")
    return [Path(r) for r in rest], bands, None, Path(".")


def run(args):
    from ..io.events import read_events
    from ..io.fitsutil import check_writable
    from ..io.gti import apply_gti
    from ..maps.images import band_label, make_counts_image, make_det1_image, write_counts_image

    files, bands, stem, default_dir = _parse(args.inputs)
    outdir = Path(args.outdir) if args.outdir is not None else default_dir
    det1 = args.det1 if args.det1 is not None else stem is not None
    cols = ("X", "Y", "PI") + (("DET1X", "DET1Y", "RAWX", "RAWY") if det1 else ()) + (
        ("TIME",) if args.usrgti else ())
    events = [read_events(f, columns=cols, drop_invalid=args.drop_invalid) for f in files]
    for ev in events:
        if ev.dropped:
            print(ev.dropped_note())
    if args.usrgti:
        events = [apply_gti(ev, args.usrgti) for ev in events]
    modules = [ev.module for ev in events]
    if len(set(modules)) != len(modules):
        raise BadConfigError(f"two event files of the same module FPM{modules[0]} given", field="inputs")
    jobs = []
    for ev in events:
        for emin, emax in bands:
            name = stem if stem is not None else f"im{ev.module}{band_label(emin, emax)}"
            jobs.append((outdir / f"{name}.fits", make_counts_image(ev, emin, emax)))
            if det1:
                jobs.append((outdir / f"{name}det.fits", make_det1_image(ev, emin, emax)))
    for path, _ in jobs:
        check_writable(path, overwrite=args.overwrite)
    for path, img in jobs:
        write_counts_image(img, path, overwrite=args.overwrite)
        print(f"wrote {path}: {img.counts} counts, PI {img.channels[0]}-{img.channels[1]} "
              f"({img.band[0]:.2f}-{img.band[1]:.2f} keV), EXPOSURE {float(img.header.get('EXPOSURE', 0)):.3f} s")
    return 0
