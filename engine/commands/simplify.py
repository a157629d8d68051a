"""``nuskybgd simplify``: keep only the source spectra with a fixed background model."""

from __future__ import annotations

from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser(
        "simplify", help="drop the background spectra of a spec .xcm and freeze the background (bgd_only_<src>.xcm)",
        description="Read bgd_<src>.xcm (from `nuskybgd spec`), evaluate every link numerically, delete the first N "
                    "data groups (the background spectra; N from bgdinfo.json or --ndrop) and freeze every "
                    "background parameter. Writes bgd_only_<src>.xcm (numbered, never overwritten).")
    p.add_argument("xcm", help="bgd_<src>.xcm")
    p.add_argument("bgdinfo", nargs="?", help="bgdinfo.json (gives N = number of background spectra)")
    p.add_argument("--ndrop", type=int, default=None, help="number of background spectra to drop")
    p.add_argument("--savefile", default=None,
                   help="output NAME.xcm (.xcm added when missing; default bgd_only_<src>.xcm next to XCM)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output instead of numbering it (NAME2.xcm, NAME3.xcm ...)")
    p.set_defaults(func=run)


def run(args):
    from ..bgdinfo import read_bgdinfo
    from ..errors import BadConfigError
    from ..io.fitsutil import atomic_output
    from ..workflow import _numbered, simplify_session
    from ..xcm import format_xcm, read_xcm
    from .fit import xcm_path

    if args.ndrop is None and args.bgdinfo is None:
        raise BadConfigError("give bgdinfo.json or --ndrop", field="ndrop")
    n = args.ndrop if args.ndrop is not None else len(read_bgdinfo(args.bgdinfo, check_files=False).bgfiles)
    src = Path(args.xcm)
    session = simplify_session(read_xcm(src), n)
    name = src.name.replace("bgd_", "bgd_only_", 1) if src.name.startswith("bgd_") else f"bgd_only_{src.name}"
    out = xcm_path(args.savefile) if args.savefile else src.with_name(name)
    if not args.overwrite:
        out = _numbered(out)
    with atomic_output(out, overwrite=args.overwrite) as tmp:
        tmp.write_text(format_xcm(session))
    print(f"wrote {out}")
    return 0
