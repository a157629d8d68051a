"""``nuskybgd phafix FILE...``: strip directories from the file keywords of PHA spectra.

nuskybgd-py ``bin/phafix.py`` (spec §2.3): in every extension with HDUCLAS1 = SPECTRUM or
EXTNAME = SPECTRUM, BACKFILE, CORRFILE, RESPFILE and ANCRFILE are replaced by their
basenames, so XSPEC finds the RMF/ARF/background when the spectrum is loaded from its own
directory. Rewriting the user's file in place is the purpose of this step, so it is done
with ``overwrite=True``, atomically (a failure leaves the file untouched).
"""

from __future__ import annotations

import posixpath

__all__ = ["phafix", "register", "run"]


def _basename(value):
    # Keyword values are POSIX-style paths in practice; also strip Windows separators.
    return posixpath.basename(str(value).replace("\\", "/"))


def phafix(path, *, dry_run=False):
    """Rewrite BACKFILE/CORRFILE/RESPFILE/ANCRFILE of every SPECTRUM HDU of ``path`` to basenames.

    Parameters
    ----------
    path : str or os.PathLike
        PHA file, modified in place (atomically) when anything changes.
    dry_run : bool
        Only report what would change.

    Returns
    -------
    list of (extension, keyword, old, new)
        The changes made (empty if the file was already clean; then it is not rewritten).
    """
    from ..io.fitsutil import read_fits, write_fits
    from ..io.ogip import FILE_KEYWORDS, spectrum_hdus

    hdul = read_fits(path, what="PHA spectrum")
    hdus = spectrum_hdus(hdul, path)
    changes = []
    for index, hdu in enumerate(hdul):
        if not any(hdu is h for h in hdus):
            continue
        for key in FILE_KEYWORDS:
            if key not in hdu.header:
                continue
            old = hdu.header[key]
            if not isinstance(old, str):
                continue
            new = _basename(old.strip())
            if new != old.strip():
                changes.append((hdu.header.get("EXTNAME", index), key, old, new))
                hdu.header[key] = new
    if changes and not dry_run:
        write_fits(hdul, path, overwrite=True)
    return changes


def register(subparsers):
    p = subparsers.add_parser(
        "phafix",
        help="strip directories from BACKFILE/CORRFILE/RESPFILE/ANCRFILE of PHA files (in place)",
        description="For every SPECTRUM extension, replace BACKFILE, CORRFILE, RESPFILE and ANCRFILE by their "
        "basenames so XSPEC finds the files next to the spectrum. Files are rewritten in place, atomically.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="PHA spectra to fix")
    p.add_argument("--dry-run", action="store_true", help="only list the changes")
    p.set_defaults(func=run)


def run(args):
    from ..io.fitsutil import read_fits
    from ..io.ogip import spectrum_hdus

    # Validate every file before changing any, so a bad name in the list changes nothing.
    for path in args.files:
        spectrum_hdus(read_fits(path, what="PHA spectrum"), path)
    for path in args.files:
        changes = phafix(path, dry_run=args.dry_run)
        if not changes:
            print(f"{path}: nothing to change")
        for ext, key, old, new in changes:
            verb = "would set" if args.dry_run else "set"
            print(f"{path}[{ext}]: {verb} {key} {old!r} -> {new!r}")
    return 0
