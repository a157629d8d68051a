"""``nuskybgd imrefspec AB 0123``: noise-free reference spectra of the aperture and fcxb components.

nuskybgd-py ``bin/imrefspec.py`` (spec §2.14): for every ``det{n}{A|B}.rmf`` found (from
``absrmf``, prefix ``det``), fold ``cutoffpl(1.29, 41.13, 0.002353)`` for 10⁹ s through it with
``be.arf`` → ``aperbgd{A}_det{n}.pha`` and with ``fcxb{A}.arf`` → ``fcxbbgd{A}_det{n}.pha``.
The ARFs come from the calibration resolver (``$NUSKYBGD_AUXIL``, cache, or nominal); no
``$NUSKYBGD_AUXIL`` is required. Missing RMFs are skipped with a message; none at all is an error.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadConfigError, BadFileError

__all__ = ["register", "run", "parse_selection", "make_reference_spectra"]


def parse_selection(modules, detectors):
    """``('AB', '0123')`` -> ``(['A', 'B'], [0, 1, 2, 3])``; anything else is an error."""
    mods = list(dict.fromkeys(str(modules).strip().upper()))
    if not mods or any(m not in "AB" for m in mods):
        raise BadConfigError(f"modules must be letters A and/or B, got {modules!r}", field="modules")
    dets = list(dict.fromkeys(str(detectors).strip()))
    if not dets or any(d not in "0123" for d in dets):
        raise BadConfigError(f"detectors must be digits 0-3, got {detectors!r}", field="detectors")
    return mods, [int(d) for d in dets]


def make_reference_spectra(modules, detectors, *, rmfdir=".", prefix="det", outdir=".", exposure=None,
                           overwrite=False):
    """Compute the spectra of every available RMF; return ``(jobs, skipped)``, jobs = [(path, Spectrum)].

    ``exposure`` defaults to :data:`~nuskybgd_engine.spectra.refspec.REFERENCE_EXPOSURE` (10⁹ s).
    """
    from ..calibration.products import load_arf
    from ..io.fitsutil import check_writable
    from ..io.ogip import read_rmf
    from ..spectra.refspec import REFERENCE_EXPOSURE, output_names, reference_spectra

    if exposure is None:
        exposure = REFERENCE_EXPOSURE
    mods, dets = parse_selection(modules, detectors)
    rmfdir, outdir = Path(rmfdir), Path(outdir)
    queue, skipped = [], []
    for m in mods:
        for n in dets:
            path = rmfdir / f"{prefix}{n}{m}.rmf"
            (queue if path.is_file() else skipped).append((m, n, path))
    if not queue:
        raise BadFileError(f"no detector RMF found ({', '.join(p.name for _, _, p in skipped)}); run "
                           f"`nuskybgd absrmf EVT {prefix}` first", path=rmfdir)
    for m, n, _ in queue:
        for name in output_names(m, n):
            check_writable(outdir / name, overwrite=overwrite)
    jobs = []
    for m, n, path in queue:
        rmf = read_rmf(path, module=m)
        be, be_src = load_arf("be.arf", rmf)
        fcxb, fcxb_src = load_arf(f"fcxb{m}.arf", rmf)
        aper, fc = reference_spectra(m, rmf, be, fcxb, detector=n, exposure=exposure, rmf_name=path.name)
        aper.header["ARFSRC"] = be_src
        fc.header["ARFSRC"] = fcxb_src
        a_name, f_name = output_names(m, n)
        jobs += [(outdir / a_name, aper), (outdir / f_name, fc)]
    return jobs, skipped


def register(subparsers):
    p = subparsers.add_parser(
        "imrefspec", help="noise-free reference spectra aperbgd{A}_det{n}.pha and fcxbbgd{A}_det{n}.pha",
        description="Fold cutoffpl(1.29, 41.13, 0.002353) for 1e9 s through each det{n}{A|B}.rmf (from absrmf) "
                    "with be.arf (aperture) and fcxb{A|B}.arf (focused CXB), without Poisson noise.")
    p.add_argument("modules", metavar="MODULES", help="A, B or AB")
    p.add_argument("detectors", metavar="DETECTORS", help="detector digits, e.g. 0123")
    p.add_argument("--rmfdir", default=".", help="directory of the det{n}{A|B}.rmf files (default .)")
    p.add_argument("--prefix", default="det", help="RMF name prefix used with absrmf (default det)")
    p.add_argument("--outdir", default=".", help="output directory (default .)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(args):
    from ..io.ogip import write_pha

    jobs, skipped = make_reference_spectra(args.modules, args.detectors, rmfdir=args.rmfdir, prefix=args.prefix,
                                           outdir=args.outdir, overwrite=args.overwrite)
    for m, n, path in skipped:
        print(f"skipped FPM{m} det{n}: {path} not found")
    for path, spec in jobs:
        write_pha(spec, path, overwrite=args.overwrite)
        print(f"wrote {path} ({spec.total_counts:.6g} counts in {spec.exposure:g} s)")
    return 0
