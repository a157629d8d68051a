"""``nuskybgd fit``: build (and with --run, fit) the background model of bgdinfo.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._argtypes import add_obs_option, yes_no
from ..errors import BadConfigError


def register(subparsers):
    p = subparsers.add_parser(
        "fit", aliases=["fitab"], help="build the background model of bgdinfo.json; with --run, fit it",
        description="Load the spectra of bgdinfo.json into data groups, compute the region weights on the "
                    "projected maps and write the prefilled model as NAME.xcm (default bgdparams; an existing "
                    "file is never replaced: NAME2.xcm, NAME3.xcm ... are used). With --run the model is fitted "
                    "(C-stat by default) and NAME.xcm holds the fit, NAME.json every parameter with its error. "
                    "Paths inside the .xcm are relative to its directory: start XSPEC there.")
    p.add_argument("bgdinfo", help="bgdinfo.json (`nuskybgd fit --template` prints one)", nargs="?")
    p.add_argument("--savefile", default="bgdparams", help="output name without .xcm (default %(default)s)")
    p.add_argument("--run", action="store_true", help="fit the model (default: only write the prefilled model)")
    p.add_argument("--stat", choices=("cstat", "chi"), default=None,
                   help="fit statistic (default: bgdinfo 'statistic', else cstat with --run, chi in the file)")
    p.add_argument("--backend", default="native", help="native (default) or pyxspec")
    p.add_argument("--xcm", default=None, metavar="FIT.xcm",
                   help="continue a fit saved in XSPEC (nuskybgd-py `save all`, or IDL nuskybgd's, nuabs included): "
                        "its values, links and frozen flags are the starting model (spectra must be bgdinfo's)")
    p.add_argument("--fixap", type=yes_no, default=None, metavar="yes|no",
                   help="IDL nuskybgd_fitab /fixap: freeze the apbgd reference norms at their nominal value "
                        "(default: bgdinfo 'fixap', else no)")
    p.add_argument("--fixfcxb", type=yes_no, default=None, metavar="yes|no",
                   help="IDL /fixfcxb: freeze every fcxb norm that is not linked at its nominal value "
                        "(default: bgdinfo 'fixfcxb', else no)")
    p.add_argument("--tieap", type=yes_no, default=None, metavar="yes|no",
                   help="IDL /tieap: one apbgd reference norm per module for all observations (default: bgdinfo "
                        "'tieap', else yes; no = each further OBS_ID gets its own, IDL's default)")
    add_obs_option(p, "to fit alone (default: all of them in one model)")
    p.add_argument("--template", action="store_true", help="print a bgdinfo.json template and exit")
    p.add_argument("--overwrite", action="store_true", help="replace NAME.xcm/NAME.json instead of numbering")
    p.set_defaults(func=run)


def xcm_path(savefile):
    """``NAME`` or ``NAME.xcm`` given to ``--savefile`` -> the path ``NAME.xcm``."""
    name = str(savefile)
    return Path(name if name.endswith(".xcm") else f"{name}.xcm")


def output_names(savefile, overwrite=False):
    """NAME.xcm and NAME.json, numbered (NAME2, NAME3 ...) when either exists, unless overwrite."""
    stem = str(savefile)
    if stem.endswith(".xcm"):
        stem = stem[:-4]  # fixes the seed's name.xcm.xcm (§7 item 10)
    base = Path(stem)
    if overwrite:
        return base.with_name(base.name + ".xcm"), base.with_name(base.name + ".json")
    for n in [""] + [str(i) for i in range(2, 1000)]:
        xcm, js = base.with_name(f"{base.name}{n}.xcm"), base.with_name(f"{base.name}{n}.json")
        if not xcm.exists() and not js.exists():
            return xcm, js
    raise BadConfigError("no free numbered output name", path=base)


def run(args):
    from ..bgdinfo import TEMPLATE, observation_subset, read_bgdinfo
    from ..analysis import BackgroundAnalysis
    from ..export import export_fit_xcm
    from ..fitcache import save_fit

    if args.template:
        print(json.dumps(TEMPLATE, indent=4))
        return 0
    if not args.bgdinfo:
        raise BadConfigError("give a bgdinfo.json (or --template)", field="bgdinfo")
    info = read_bgdinfo(args.bgdinfo)
    if args.obs is not None:
        info = observation_subset(info, args.obs)
    if args.xcm and any(getattr(args, k) is not None for k in ("fixap", "fixfcxb", "tieap")):
        raise BadConfigError("--xcm carries its own frozen flags and links; edit them there, not with "
                             "--fixap/--fixfcxb/--tieap", field="xcm")
    for key in ("fixap", "fixfcxb", "tieap"):  # IDL switches on the command line override the file
        if getattr(args, key) is not None:
            setattr(info, key, getattr(args, key))
    if args.xcm:
        from ..workflow import analysis_from_xcm

        analysis = analysis_from_xcm(info, args.xcm)
    else:
        analysis = BackgroundAnalysis.from_bgdinfo(info)
    stat = args.stat or info.statistic or ("cstat" if args.run else "chi")
    xcm, js = output_names(args.savefile, args.overwrite)
    if args.run:
        result = analysis.fit(stat, backend=args.backend)
        print(repr(result))
        written = export_fit_xcm(analysis, xcm, statistic=stat, overwrite=args.overwrite)
        written.append(save_fit(analysis, js, overwrite=args.overwrite))
    else:
        written = export_fit_xcm(analysis, xcm, statistic=stat, overwrite=args.overwrite)
        if analysis.apec.evaluated_by != "pyxspec":
            print("note: apec is written as its bremss stand-in (no AtomDB here); see the comment in the file",
                  file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    return 0
