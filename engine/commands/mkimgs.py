"""``nuskybgd mkimgs``: sky (and optionally DET1) counts images in an energy band (spec §2.1).

Replaces the seed's xselect run. Two forms::

    nuskybgd mkimgs DIR OBSID EMIN EMAX        # finds DIR/OBSID/event_cl/nu<OBSID>{A,B}01_cl.evt[.gz]
    nuskybgd mkimgs EVT [EVT ...] EMIN EMAX    # event files given directly

Writes ``im{A,B}<lo>to<hi>keV.fits`` (and ``...det.fits`` with ``--det1 yes``) into ``--outdir``.
"""

from __future__ import annotations

from pathlib import Path

from ..cli import add_drop_invalid, yes_no
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
        epilog="Forms: `mkimgs DIR OBSID EMIN EMAX` or `mkimgs EVT [EVT ...] EMIN EMAX`.")
    p.add_argument("inputs", nargs="+", metavar="ARG", help="DIR OBSID, or event files, followed by EMIN EMAX (keV)")
    p.add_argument("--outdir", default=".", help="output directory (default: current directory)")
    p.add_argument("--det1", type=yes_no, default=False, metavar="yes|no",
                   help="also write the DET1 image <name>det.fits (RAWX, RAWY 1..30, as the seed)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_drop_invalid(p)
    p.set_defaults(func=run)


def _parse(inputs):
    if len(inputs) < 3:
        raise BadConfigError("expected DIR OBSID EMIN EMAX or EVT [EVT ...] EMIN EMAX", field="inputs")
    try:
        emin, emax = float(inputs[-2]), float(inputs[-1])
    except ValueError:
        raise BadConfigError(f"EMIN EMAX must be numbers, got {inputs[-2]!r} {inputs[-1]!r}", field="band") from None
    rest = inputs[:-2]
    if len(rest) == 2 and Path(rest[0]).is_dir() and not Path(rest[1]).is_file():
        return find_event_files(rest[0], rest[1]), emin, emax
    return [Path(r) for r in rest], emin, emax


def run(args):
    from ..io.events import read_events
    from ..io.fitsutil import check_writable
    from ..maps.images import band_label, make_counts_image, make_det1_image, write_counts_image

    files, emin, emax = _parse(args.inputs)
    outdir = Path(args.outdir)
    label = band_label(emin, emax)
    events = [read_events(f, columns=("X", "Y", "PI", "DET1X", "DET1Y", "RAWX", "RAWY") if args.det1
                          else ("X", "Y", "PI"), drop_invalid=args.drop_invalid) for f in files]
    for ev in events:
        if ev.dropped:
            print(ev.dropped_note())
    modules = [ev.module for ev in events]
    if len(set(modules)) != len(modules):
        raise BadConfigError(f"two event files of the same module FPM{modules[0]} given", field="inputs")
    jobs = []
    for ev in events:
        jobs.append((outdir / f"im{ev.module}{label}.fits", make_counts_image(ev, emin, emax)))
        if args.det1:
            jobs.append((outdir / f"im{ev.module}{label}det.fits", make_det1_image(ev, emin, emax)))
    for path, _ in jobs:
        check_writable(path, overwrite=args.overwrite)
    for path, img in jobs:
        write_counts_image(img, path, overwrite=args.overwrite)
        print(f"wrote {path}: {img.counts} counts, PI {img.channels[0]}-{img.channels[1]} "
              f"({img.band[0]:.2f}-{img.band[1]:.2f} keV)")
    return 0
