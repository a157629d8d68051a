"""``nuskybgd spec``: transfer the fitted background to source spectra (an .xcm to fit jointly)."""

from __future__ import annotations

from pathlib import Path

from ..errors import BadConfigError
from ._argtypes import add_obs_option, use_obs


def register(subparsers):
    p = subparsers.add_parser(
        "spec", help="append source spectra with the fitted background linked to them (bgd_<src>.xcm)",
        description="Restore a fit (NAME.json of `nuskybgd fit --run`, which records its bgdinfo.json), add the "
                    "source spectra as data groups N+1.. whose background parameters are links to the fitted "
                    "reference groups scaled by the region geometry (fcxb: free at its nominal value), and write "
                    "bgd_<first source region stem>.xcm next to the first source spectrum (numbered, never "
                    "overwritten). Define your source model as model 1 in XSPEC and fit.")
    p.add_argument("items", nargs="+", metavar="ARG",
                   help="FIT.json SRC.reg[,SRC2.reg] SRC.pha[,SRC2.pha]  or, as nuskybgd-py, "
                        "bgdinfo.json FIT.xcm SRC.reg SRC.pha (the two files in either order; a hand-edited or IDL "
                        "nuskybgd .xcm is read, never executed)")
    p.add_argument("--savefile", default=None,
                   help="output NAME.xcm (.xcm added when missing; default bgd_<region stem>.xcm)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output instead of numbering it (NAME2.xcm, NAME3.xcm ...)")
    add_obs_option(p, "the source spectra belong to")
    p.set_defaults(func=run)


def run(args):
    from ..io.regions import RegionSet
    from ..groups import group_from_spectrum_file
    from ..io.files import numbered_path
    from ..workflow import load_fit, spec_export
    from .fit import xcm_path

    from ._forms import sort_inputs

    if len(args.items) not in (3, 4):
        raise BadConfigError("expected FIT.json SRC.reg SRC.pha or bgdinfo.json FIT.xcm SRC.reg SRC.pha",
                             field="arguments")
    *files, regions, spectra = args.items
    given = sort_inputs(files, {"fit", "xcm", "bgdinfo"})
    fit = given.get("fit") or given.get("xcm")
    bgdinfo = given.get("bgdinfo")
    if fit is None or ("xcm" in given and bgdinfo is None) or ("fit" in given and len(given) > 1):
        raise BadConfigError("expected FIT.json SRC.reg SRC.pha or bgdinfo.json FIT.xcm SRC.reg SRC.pha",
                             field="arguments")
    regs = [Path(r) for r in regions.split(",") if r]
    specs = [Path(s) for s in spectra.split(",") if s]
    if not regs or len(regs) != len(specs):
        raise BadConfigError(f"{len(regs)} region(s) for {len(specs)} spectra: give one region per spectrum",
                             field="regions")
    analysis = use_obs(load_fit(fit, bgdinfo), args.obs)
    groups = []
    for r, s in zip(regs, specs):
        from ..io.ogip import read_pha

        m = read_pha(s).module
        if m not in analysis.maps:
            raise BadConfigError(f"{s.name} is FPM{m}, but the fit has no FPM{m} spectra", path=s, field="INSTRUME")
        groups.append(group_from_spectrum_file(s, RegionSet.read_ds9(r), analysis.grid, analysis.maps[m],
                                               name=s.name))
    out = xcm_path(args.savefile) if args.savefile else specs[0].parent / f"bgd_{regs[0].stem}.xcm"
    if not args.overwrite:
        out = numbered_path(out.parent, out.name)
    for path in spec_export(analysis, groups, out, overwrite=args.overwrite):
        print(f"wrote {path}")
    return 0
