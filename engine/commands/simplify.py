"""``nuskybgd simplify``: keep only the source spectra with a fixed background model."""

from __future__ import annotations



def register(subparsers):
    p = subparsers.add_parser(
        "simplify", help="drop the background spectra of a spec .xcm and freeze the background (bgd_only_<src>.xcm)",
        description="Read bgd_<src>.xcm (from `nuskybgd spec`), evaluate every link numerically, delete the first N "
                    "data groups (the background spectra; N from bgdinfo.json or --ndrop) and freeze every "
                    "background parameter. Writes bgd_only_<src>.xcm (numbered, never overwritten).")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="bgd_<src>.xcm and bgdinfo.json (gives N = number of background spectra), in either order "
                        "(nuskybgd-py: `simplify bgdinfo.json bgd_src.xcm`); told apart by content")
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
    from ..io.files import numbered_path
    from ..workflow import simplify_session
    from ..xcm import format_xcm, read_xcm
    from ._forms import sort_inputs
    from .fit import xcm_path

    if len(args.files) > 2:
        raise BadConfigError("expected bgd_<src>.xcm and bgdinfo.json", field="arguments")
    given = sort_inputs(args.files, {"xcm", "bgdinfo"})
    if "xcm" not in given:
        raise BadConfigError("no .xcm given (bgd_<src>.xcm written by `nuskybgd spec`)", field="arguments")
    if args.ndrop is None and "bgdinfo" not in given:
        raise BadConfigError("give bgdinfo.json or --ndrop", field="ndrop")
    n = args.ndrop if args.ndrop is not None else len(read_bgdinfo(given["bgdinfo"], check_files=False).bgfiles)
    src = given["xcm"]
    session = simplify_session(read_xcm(src), n)
    name = src.name.replace("bgd_", "bgd_only_", 1) if src.name.startswith("bgd_") else f"bgd_only_{src.name}"
    out = xcm_path(args.savefile) if args.savefile else src.with_name(name)
    if not args.overwrite:
        out = numbered_path(out.parent, out.name)
    with atomic_output(out, overwrite=args.overwrite) as tmp:
        tmp.write_text(format_xcm(session))
    print(f"wrote {out}")
    return 0
