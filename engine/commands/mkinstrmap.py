"""``nuskybgd mkinstrmap EVT [usrbpix=f1,f2] [prefix=]``: observation instrument map (spec §2.4).

Writes ``<prefix>newinstrmap<A|B>.fits``: DET1 values detnum + 1 on active pixels, 0 on
dead/gap/bad pixels (EXTNAME INSTRMAP, DET1 WCS). Sources: CALDB INSTRMAP/PIXPOS/BADPIX when
``$CALDB`` (or ``--instrmap``/``--pixpos``/``--caldb-badpix``) provides them, else the auxil
``detnum``/``pixmap`` maps.
"""

from __future__ import annotations

from pathlib import Path

from ._argtypes import yes_no

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "mkinstrmap", help="observation instrument map newinstrmap{A,B}.fits (bad pixels removed)",
        description="Build the DET1 instrument map of an observation: detector layout from CALDB PIXPOS or the "
                    "auxil detnum/pixmap maps, active area from CALDB INSTRMAP (used as is) or the detector map, "
                    "bad pixels from the event file's BADPIX extensions and usrbpix files. A RAW pixel is bad "
                    "when bad for > 80 % of an extension's TSTOP-TSTART, or when its BADFLAG has bit value 1 "
                    "(CALDB), 2 (disabled on-board) or 4 (user) set.")
    p.add_argument("evt", help="cleaned event file nu<obsid><A|B>01_cl.evt")
    p.add_argument("--usrbpix", default="", help="comma-separated extra bad-pixel files (*_bp.fits, *_hp.fits)")
    p.add_argument("--prefix", default="", help="prefix of the output name (may contain a directory)")
    p.add_argument("--dryrun", type=yes_no, default=False, metavar="yes|no", help="report, write nothing")
    p.add_argument("--instrmap", help="CALDB INSTRMAP file (default: $CALDB look-up, else none)")
    p.add_argument("--pixpos", help="CALDB PIXPOS file (default: $CALDB look-up, else the auxil maps)")
    p.add_argument("--caldb-badpix", help="CALDB BADPIX file (default: $CALDB look-up)")
    p.add_argument("--auxil-dir", help="auxil directory (default: $NUSKYBGD_AUXIL / cache)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args):
    from ..io.fitsutil import check_writable
    from ..maps.instrmap import DEFAULT_BAD_BITS, make_instrument_map, write_instrument_map

    usr = [f.strip() for f in str(args.usrbpix).split(",") if f.strip()]
    imap = make_instrument_map(args.evt, usrbpix=usr, instrmap=args.instrmap, pixpos=args.pixpos,
                               caldb_badpix=args.caldb_badpix, auxil_dir=args.auxil_dir,
                               bad_bits=DEFAULT_BAD_BITS)
    out = Path(f"{args.prefix}newinstrmap{imap.module}.fits")
    active = imap.active_pixels()
    print(f"FPM{imap.module}: active DET1 pixels per detector {active}; {int(imap.bad_raw.sum())} bad RAW pixels "
          f"remove {imap.n_killed} DET1 pixels")
    if args.dryrun:
        check_writable(out, overwrite=args.overwrite)
        print(f"dry run: would write {out}")
        return 0
    write_instrument_map(imap, out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
