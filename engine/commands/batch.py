"""``nuskybgd batch``: the headless workflow over an observation list, on Dask (resumable)."""

from __future__ import annotations

import sys


def register(subparsers):
    p = subparsers.add_parser(
        "batch", help="model the background of many observations (Dask; resumable), with a summary table",
        description="For each observation directory of OBSLIST (one per line, # comments, paths relative to the "
                    "list; optional background region files and grxe=MAP after the directory) run maps -> regions -> spectra "
                    "-> C-stat fit -> products into WORKDIR/<obsid>/products, one task per observation on "
                    "dask.distributed (--local N workers, or --scheduler tcp://HOST:PORT; neither: serially in "
                    "this process). WORKDIR/<obsid>/manifest.json records inputs (sha256), status, error and "
                    "outputs: a re-run skips completed observations and retries failed ones; a bad observation "
                    "is recorded and never stops the others. WORKDIR/summary.csv/.parquet hold fitted norms, "
                    "statistics and predicted background per observation, module, region and detector; "
                    "WORKDIR/status.csv every observation's status.")
    p.add_argument("obslist", help="text file listing observation directories")
    p.add_argument("--workdir", required=True, help="output directory (manifests, products, summary)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", type=int, metavar="N", default=None,
                       help="start a local Dask cluster of N single-threaded worker processes")
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="address of a running Dask scheduler (tcp://HOST:PORT)")
    p.add_argument("--regions", choices=("given", "suggested"), default="given",
                   help="background regions: the observation's regions/bgd*.reg (or those listed) or suggested")
    p.add_argument("--band", nargs=2, type=float, metavar=("LO", "HI"), default=(3.0, 20.0),
                   help="band in keV of the images and of the summary (default 3 20)")
    p.add_argument("--stat", choices=("cstat", "chi"), default="cstat", help="fit statistic (default cstat)")
    p.add_argument("--joint", metavar="CONFIG", default=None,
                   help='joint fits: JSON {"joint": [{"name": ..., "observations": [obsid, ...], '
                        '"share": ["intbgd_lines", "intn", "apbgd", "intbgd"]}]}')
    p.add_argument("--grxe", metavar="MAP", default=None,
                   help="GRXE sky map (IDL modelrxte_*.fits: image with a galactic or RA/Dec WCS) for every observation "
                        "without its own (grxe=MAP after the directory in OBSLIST): adds the Galactic-ridge source, as "
                        "projbgd --grxe")
    p.add_argument("--retries", type=int, default=2, help="Dask retries of a task whose worker died (default 2)")
    p.add_argument("--overwrite", action="store_true", help="redo observations already completed")
    p.set_defaults(func=run)


def run(args):
    from ..batch import run_batch

    bar = None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None

    def progress(info):
        nonlocal bar
        if "dashboard" in info:
            if info["dashboard"]:
                import importlib.util

                note = "" if importlib.util.find_spec("bokeh") else " (install bokeh>=3.1 to serve it)"
                print(f"Dask dashboard: {info['dashboard']}{note}")
            return
        if info["status"] != "done":
            msg = f"{info['obsid']}: FAILED: {info['error']}"
            (bar.write if bar is not None else print)(msg)
        if bar is None and tqdm is not None:
            bar = tqdm(total=info["n_total"], initial=info["n_done"] - 1, unit="obs", file=sys.stderr)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(info["obsid"])

    try:
        report = run_batch(args.obslist, args.workdir, regions=args.regions, band=tuple(args.band),
                           statistic=args.stat, n_workers=args.local, scheduler=args.scheduler,
                           retries=args.retries, joint=args.joint, progress=progress, force=args.overwrite,
                           grxe=args.grxe)
    finally:
        if bar is not None:
            bar.close()
    print(f"{len(report.done)} done, {len(report.skipped)} already done (skipped), {len(report.failed)} failed "
          f"in {report.elapsed:.1f} s")
    for obsid, err in report.failed.items():
        print(f"  failed {obsid}: {err}")
    for name, res in report.joint.items():
        print(f"  joint fit {name}: " + (f"FAILED: {res}" if isinstance(res, str) else f"{len(res)} rows"))
    print(f"wrote {report.summary_csv}")
    if report.summary_parquet:
        print(f"wrote {report.summary_parquet}")
    else:
        print("Parquet summary skipped: pyarrow is not installed (pip install 'nuskybgd-widgets[batch]')")
    print(f"wrote {report.status_csv}")
    return 0
