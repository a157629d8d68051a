"""``nuskybgd getspecnoarf EVT reg=R``: region spectrum, grouped spectrum and RMF without HEASoft.

Replaces nuskybgd-py ``bin/getspecnoarf.py`` (``nuproducts`` + ``grppha 'group min 30'``, spec §2.2).
Writes into ``outdir``, with STEM = ``outprefix`` (default: the region file name without its
suffix)::

    STEM_sr.pha        ungrouped spectrum, 4096 channels, COUNTS, RESPFILE = STEM_sr.rmf
    STEM_sr_g30.pha    same with grppha 'group min 30' GROUPING/QUALITY (g<N> for group=N)
    STEM_sr.rmf        region RMF: CALDB per-detector RMFs mixed by counts per detector, else nominal
    STEM_sr_nsb.arf    only with arf=yes: aperture ARF = Be x DETABS weighted by counts per detector

Every input is checked and every output's writability tested before anything is written; each
file is written atomically.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ._argtypes import add_drop_invalid, yes_no
from ..errors import BadConfigError

__all__ = ["register", "run", "output_paths", "make_products"]


def output_paths(outdir, stem, group=30, arf=False):
    """Output paths keyed by kind: ``pha``, ``grp``, ``rmf`` (and ``arf``)."""
    outdir = Path(outdir)
    out = {"pha": outdir / f"{stem}_sr.pha", "grp": outdir / f"{stem}_sr_g{group}.pha",
           "rmf": outdir / f"{stem}_sr.rmf"}
    if arf:
        out["arf"] = outdir / f"{stem}_sr_nsb.arf"
    return out


def _group_value(value):
    try:
        g = int(value)
    except (TypeError, ValueError):
        raise BadConfigError(f"group must be a positive integer, got {value!r}", field="group") from None
    if g <= 0 or str(value).strip() not in (str(g), f"{g}.0"):
        raise BadConfigError(f"group must be a positive integer, got {value!r}", field="group")
    return g


def make_products(evtfile, regfile, *, outdir=".", stem=None, group=30, rmffile=None, arf=False,
                  detabsfile=None, allow_empty=False, overwrite=False, usrgti=None, drop_invalid=False):
    """Compute every product in memory and check the outputs; return ``[(path, writer, obj)]``."""
    from ..io.events import read_events
    from ..io.fitsutil import check_writable
    from ..io.ogip import Spectrum, write_arf, write_pha
    from ..io.responsecache import write_response
    from ..io.regions import RegionSet
    from ..spectra.extract import SPECTRUM_COLUMNS, EmptyRegionWarning, extract_spectrum
    from ..spectra.grouping import group_min_counts
    from ..spectra.responses import region_arf, region_rmf

    group = _group_value(group)
    events = read_events(evtfile, columns=SPECTRUM_COLUMNS + (("TIME",) if usrgti else ()), drop_invalid=drop_invalid)
    if events.dropped:
        print(events.dropped_note())
    regions = RegionSet.read_ds9(regfile)
    for note in regions.notes:  # shapes with no area (point, text ...) that the mask skips
        print(f"note: {regfile} {note}")
    stem = stem or Path(regfile).stem
    if not stem or "/" in stem:
        raise BadConfigError(f"outprefix must be a file name stem, got {stem!r}", field="outprefix")
    paths = output_paths(outdir, stem, group, arf)
    for path in paths.values():
        check_writable(path, overwrite=overwrite)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EmptyRegionWarning)
        rs = extract_spectrum(events, regions, allow_empty=allow_empty, gti=usrgti or None)
    for w in caught:
        print(f"warning: {w.message}")
    rmf, source = region_rmf(events, rs.det_counts, rmffile=rmffile)
    spec = rs.spectrum
    spec.header["RESPFILE"] = paths["rmf"].name
    spec.header["ANCRFILE"] = "none"
    grouping, quality = group_min_counts(spec.counts, group)
    grouped = Spectrum(channel=spec.channel, counts=spec.counts, exposure=spec.exposure, backscal=spec.backscal,
                       areascal=spec.areascal, module=spec.module, grouping=grouping, quality=quality,
                       header={**spec.header, "GRPCMD": f"group min {group}"}, gti=spec.gti,
                       extra_hdus=spec.extra_hdus)
    rmf.header["RMFSRC"] = source
    rmf.header["OBS_ID"] = events.obsid
    jobs = [(paths["pha"], write_pha, spec), (paths["grp"], write_pha, grouped), (paths["rmf"], write_response, rmf)]
    if arf:
        weights = rs.det_counts if rs.det_counts.sum() > 0 else [1, 1, 1, 1]
        arf_obj, _ = region_arf(events.module, weights, detabs=detabsfile, date=events.header.get("DATE-OBS"))
        jobs.append((paths["arf"], write_arf, arf_obj))
    return jobs, rs, source


def register(subparsers):
    p = subparsers.add_parser(
        "getspecnoarf", help="region spectrum (STEM_sr.pha), grouped spectrum (STEM_sr_g30.pha) and RMF",
        description="Extract the spectrum of a ds9 region from a cleaned event file (grades 0-26, nuproducts "
                    "semantics), group it with grppha's 'group min N' rule and build the region RMF: the CALDB "
                    "per-detector RMFs mixed by the region's counts per detector when $CALDB is set, else the "
                    "embedded nominal NuSTAR RMF. BACKSCAL = region pixels / sky grid pixels (10^6 on the 1000x1000 grid). "
                    "Solar X/Y (sunpos) files take image/physical regions only.")
    p.add_argument("evtfile", metavar="EVT", help="cleaned event file (relative to --indir)")
    p.add_argument("--reg", required=True, help="ds9 region file")
    p.add_argument("--indir", default=".", help="directory of EVT when EVT is a relative name (default .)")
    p.add_argument("--outdir", default=".", help="output directory (must exist; default .)")
    p.add_argument("--outprefix", default=None, help="output stem (default: region file name without suffix)")
    p.add_argument("--attfile", default=None, help="accepted for compatibility; not needed (events carry X/Y)")
    p.add_argument("--group", default="30", help="minimum counts per group of the grouped spectrum (default 30)")
    p.add_argument("--rmffile", default=None, help="use this RMF instead of CALDB / nominal")
    p.add_argument("--arf", type=yes_no, default=False, metavar="yes|no",
                   help="also write STEM_sr_nsb.arf (Be x DETABS weighted by counts per detector; needs CALDB)")
    p.add_argument("--detabsfile", default=None, help="DETABS file for --arf (default CALDB)")
    p.add_argument("--allow-empty", type=yes_no, default=False, metavar="yes|no",
                   help="write an empty spectrum (with a warning) when the region has no event")
    p.add_argument("--usrgti", action="append", default=None, metavar="GTI[,GTI...]",
                   help="user GTI file(s), intersected with the event file's GTI (nuproducts usrgtifile); "
                        "comma-separated or repeated; EXPOSURE/LIVETIME scaled by the file's LIVETIME/ONTIME")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_drop_invalid(p)
    p.set_defaults(func=run)


def run(args):
    evt = Path(args.evtfile)
    if not evt.is_absolute():
        evt = Path(args.indir) / evt
    if args.attfile:
        print(f"note: attfile {args.attfile} not needed (the event file's X/Y columns are used)")
    jobs, rs, source = make_products(evt, args.reg, outdir=args.outdir, stem=args.outprefix, group=args.group,
                                     rmffile=args.rmffile, arf=args.arf, detabsfile=args.detabsfile,
                                     allow_empty=args.allow_empty, overwrite=args.overwrite, usrgti=args.usrgti,
                                     drop_invalid=args.drop_invalid)
    for path, writer, obj in jobs:
        writer(obj, path, overwrite=args.overwrite)
        print(f"wrote {path}")
    dc = rs.det_counts.tolist()
    print(f"{rs.total_counts} counts, {rs.npix} sky pixels (BACKSCAL {rs.spectrum.backscal:.6g}), "
          f"EXPOSURE {rs.spectrum.exposure:.3f} s, "
          f"counts per detector {dc}, RMF from {source}")
    return 0
