"""``nuskybgd auxil info|fetch``: show where each calibration file comes from; fill the user cache."""

from __future__ import annotations

import os



def register(subparsers):
    parser = subparsers.add_parser(
        "auxil", help="calibration files: where each comes from (info), download them (fetch)",
        description="Calibration files are searched in this order: explicit path > $NUSKYBGD_AUXIL (auxil files) "
                    "or $CALDB (CALDB products) > user cache (filled by `nuskybgd auxil fetch`) > embedded "
                    "nominal calibration.")
    sub = parser.add_subparsers(dest="auxil_command", metavar="ACTION")
    sub.required = True

    info = sub.add_parser("info", help="print which source serves each calibration file",
                          description="Print, for each auxil file and CALDB product, the source that serves it.")
    info.add_argument("--cache", metavar="DIR", help="auxil cache directory (default: $NUSKYBGD_CACHE, "
                      "$XDG_CACHE_HOME/nuskybgd/auxil or ~/.cache/nuskybgd/auxil)")
    info.add_argument("--date", metavar="DATE-OBS", help="observation date for the CALDB selection "
                      "(default: newest files)")
    info.add_argument("--verify", action="store_true", help="check size and SHA-256 of the auxil files found")
    info.set_defaults(func=run_info)

    fetch = sub.add_parser(
        "fetch", help="download the nuskybgd auxil files into the user cache (SHA-256 verified)",
        description="Download the MIT-licensed auxil files of the public nuskybgd repositories into the user "
                    "cache, verifying each against the SHA-256 digests shipped with this package.")
    fetch.add_argument("files", nargs="*", metavar="FILE", help="files to fetch (default: all)")
    fetch.add_argument("--base-url", metavar="URL", help="download from this https://, http:// or file:// "
                       "directory (or local directory) instead of the public repositories "
                       "(default: $NUSKYBGD_AUXIL_URL)")
    fetch.add_argument("--cache", metavar="DIR", help="target directory (default: the user cache)")
    fetch.add_argument("--overwrite", action="store_true", help="replace cached files whose digest is wrong")
    fetch.set_defaults(func=run_fetch)


def _table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [str(c).ljust(w) for c, w in zip(row, widths)] + [str(row[-1])]
        print("  ".join(cells).rstrip())


def run_info(args):
    from ..calibration.caldb import caldb_index_path
    from ..calibration.fetch import load_manifest, verify_file
    from ..calibration.resolver import (
        AUXIL_ENV, AUXIL_FILES, CALDB_ENV, auxil_env_dir, cache_dir, caldb_env_dir, survey,
    )

    auxil = auxil_env_dir()
    cdir = cache_dir(getattr(args, "cache", None))
    caldb = caldb_env_dir()
    print("search order: explicit path > NUSKYBGD_AUXIL (auxil files) | CALDB (CALDB products) > cache > nominal")
    print(f"{AUXIL_ENV}: {auxil if auxil is not None else 'unset'}")
    if caldb is None:
        state = "unset"
    elif caldb_index_path(caldb).is_file():
        state = f"{caldb} (index {caldb_index_path(caldb)})"
    else:
        state = f"{caldb} (no NuSTAR index found: CALDB products unavailable)"
    print(f"{CALDB_ENV}: {state}")
    print(f"cache: {cdir}{'' if cdir.is_dir() else ' (empty: run `nuskybgd auxil fetch`)'}")
    verify = getattr(args, "verify", False)
    manifest = load_manifest() if verify else None
    header = ("file", "source", "check", "path") if verify else ("file", "source", "path")
    rows = [header]
    missing = []
    for label, found, _reason in survey(cache=getattr(args, "cache", None), date=getattr(args, "date", None)):
        if found is None:
            missing.append(label)
            where = "-"
            source = "missing"
        else:
            source = found.source
            where = "(embedded)" if found.path is None else str(found.path)
            if found.extension is not None:
                where += f"[{found.extension}]"
        if verify:
            check = "-"
            if found is not None and found.path is not None and label in AUXIL_FILES:
                check = "ok" if verify_file(found.path, label, manifest) else "differs"
            rows.append((label, source, check, where))
        else:
            rows.append((label, source, where))
    _table(rows)
    if any(m in AUXIL_FILES for m in missing):
        print(f"missing auxil files: run `nuskybgd auxil fetch` or set {AUXIL_ENV}")
    if any(m not in AUXIL_FILES for m in missing):
        print(f"missing CALDB products: set {CALDB_ENV} to a HEASARC CALDB with the NuSTAR FPM files, "
              "or give the files explicitly")
    return 0


def run_fetch(args):
    from ..calibration.fetch import URL_ENV, fetch_auxil
    from ..calibration.resolver import cache_dir

    names = list(args.files) or None
    target = cache_dir(args.cache)
    source = args.base_url or os.environ.get(URL_ENV, "").strip() or "the public nuskybgd repositories"
    print(f"fetching into {target} from {source}")

    def progress(name, status, path):
        print(f"{status:8s} {name} ({path})")

    status = fetch_auxil(base_url=args.base_url, cache_dir=args.cache, names=names, overwrite=args.overwrite,
                         progress=progress)
    fetched = sum(1 for s in status.values() if s == "fetched")
    print(f"{fetched} fetched, {len(status) - fetched} already present, in {target}")
    return 0
