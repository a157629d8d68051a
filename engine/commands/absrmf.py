"""``nuskybgd absrmf EVT OUTPREFIX [rmffile=] [detabsfile=]``: per-detector RMFs with detector absorption.

nuskybgd-py ``cli.absrmf`` / ``rmf.make_absrmf`` (spec §2.13): for detector n of the event
file's module, the detector RMF (CALDB through GRPRMF, or ``rmffile``; without CALDB the
embedded nominal RMF) with each energy row scaled by DETABS_n (CALDB DETABS or ``detabsfile``,
extension n+1). Writes ``<OUTPREFIX>{0..3}{A|B}.rmf`` (e.g. ``det`` gives ``det0A.rmf``, the
names ``imrefspec`` reads). The seed scaled channels instead of energy rows for fixed-width
matrices (§7.8); here rows are always scaled.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "run", "absrmf_outputs", "make_absrmfs"]


def absrmf_outputs(outprefix, module):
    """``[<outprefix>0A.rmf, ..., <outprefix>3A.rmf]``."""
    return [Path(f"{outprefix}{n}{module}.rmf") for n in range(4)]


def make_absrmfs(evtfile, outprefix, *, rmffile=None, detabsfile=None, overwrite=False):
    """Compute the four RMFs in memory after checking inputs and outputs; return ``[(path, Response)]``."""
    from ..calibration.resolver import resolve
    from ..io.events import read_events
    from ..io.fitsutil import check_writable
    from ..io.ogip import read_rmf
    from ..spectra.responses import apply_detabs, detector_rmfs, read_detabs

    events = read_events(evtfile, columns=())
    module = events.module
    date = events.header.get("DATE-OBS")
    outputs = absrmf_outputs(outprefix, module)
    for path in outputs:
        check_writable(path, overwrite=overwrite)
    found = resolve("DETABS", path=detabsfile, module=module, date=date, allow_nominal=False)
    detabs = read_detabs(found.path, module=module)
    if rmffile is not None:
        rmfs, source = [read_rmf(rmffile, module=module)] * 4, "path"
    else:
        rmfs, source = detector_rmfs(module, date=date)
    out = []
    for n in range(4):
        weights = [0.0] * 4
        weights[n] = 1.0
        r = apply_detabs(rmfs[n], detabs, weights)
        r.header["DETNAM"] = f"DET{n}"
        r.header["RMFSRC"] = source
        r.header["DETABSF"] = Path(found.path).name[:60]
        out.append((outputs[n], r))
    return out, source


def register(subparsers):
    p = subparsers.add_parser(
        "absrmf", help="per-detector RMFs with detector absorption (<OUTPREFIX>{0..3}{A|B}.rmf)",
        description="Scale each energy row of the detector RMFs by the CALDB detector absorption (DETABS) of "
                    "that detector. RMFs: --rmffile, else CALDB (GRPRMF index), else the nominal RMF. DETABS: "
                    "--detabsfile, else CALDB.")
    p.add_argument("evtfile", metavar="EVT", help="cleaned event file (module and DATE-OBS)")
    p.add_argument("outprefix", metavar="OUTPREFIX", help="output prefix, e.g. det or bgd/det")
    p.add_argument("--rmffile", default=None, help="RMF for all detectors (default CALDB, else nominal)")
    p.add_argument("--detabsfile", default=None, help="DETABS file (default CALDB)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def _caldb_word(value):
    return None if value is None or str(value).upper() == "CALDB" else value


def run(args):
    from ..io.ogip import write_rmf

    jobs, source = make_absrmfs(args.evtfile, args.outprefix, rmffile=_caldb_word(args.rmffile),
                                detabsfile=_caldb_word(args.detabsfile), overwrite=args.overwrite)
    for path, r in jobs:
        write_rmf(r, path, overwrite=args.overwrite)
        print(f"wrote {path} (RMF from {source}, DETABS of {r.header['DETNAM']})")
    return 0
