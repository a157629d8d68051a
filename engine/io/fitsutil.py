"""Validated FITS access and atomic, non-clobbering output.

All readers of the engine open files through :func:`read_fits`, which loads every HDU
(so a truncated file fails here, with a one-line :class:`BadFileError`, rather than later
inside numpy) and verifies the CHECKSUM/DATASUM keywords a file carries (so a damaged file of
the right size fails too), and look things up with :func:`find_hdu` and :func:`require_columns`,
which name the file, extension and field in their errors.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import BadFileError
from .files import atomic_output, check_writable  # noqa: F401  (re-exported: long-standing import names)

__all__ = [
    "column_index",
    "header_number",
    "read_fits",
    "verify_checksums",
    "find_hdu",
    "hdu_name",
    "require_columns",
    "module_from_header",
    "atomic_output",
    "write_fits",
    "check_writable",
]


def column_index(header, name):
    """1-based number of the column called ``name`` (TTYPEn), or None."""
    for key in header:
        if key.startswith("TTYPE") and str(header[key]).strip().upper() == name:
            return int(key[5:])
    return None


def header_number(value, path, extension, field):
    """Finite float from a header value (real files sometimes store numbers as strings)."""
    try:
        out = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise BadFileError(f"expected a number, got {value!r}", path=path, extension=extension, field=field) from None
    if not math.isfinite(out):
        raise BadFileError(f"expected a finite number, got {value!r}", path=path, extension=extension, field=field)
    return out


def read_fits(path, *, what="FITS file"):
    """Open a FITS file fully into memory and check it is complete.

    Parameters
    ----------
    path : str or os.PathLike
        File to read (``.gz`` works).
    what : str
        Kind of file expected, used in error messages.

    Returns
    -------
    astropy.io.fits.HDUList
        With all data loaded (the file is closed).
    """
    path = Path(path)
    if not path.exists():
        raise BadFileError(f"{what} not found", path=path)
    if path.is_dir():
        raise BadFileError(f"expected a {what}, found a directory", path=path)
    try:
        # Real pipeline files carry benign header oddities (e.g. TCRVL written as a string):
        # astropy's verify warnings are recorded and dropped; only truncation is fatal.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Not copied: HDU.copy() drops column keywords astropy deems invalid (e.g. TCRVLn='0.0').
            source = path
            if path.suffix == ".gz":
                # astropy seeks inside a gzip stream and so decompresses twice: once is enough.
                with gzip.open(path, "rb") as fh:
                    source = io.BytesIO(fh.read())
            out = fits.open(source, memmap=False, lazy_load_hdus=False)
            raw = source.getvalue() if source is not path else None
            try:
                for i, hdu in enumerate(out):
                    # Touch the data: truncation only shows when it is read.
                    try:
                        if hdu.data is not None:
                            np.asarray(hdu.data)
                    except (OSError, ValueError, TypeError, EOFError):
                        raise BadFileError(f"cannot read {what}: truncated or corrupt file (data of HDU {i} "
                                           "incomplete)", path=path, extension=hdu.header.get("EXTNAME", i)) from None
            finally:
                out.close()
        for w in caught:
            text = str(w.message)
            if any(k in text.lower() for k in ("truncat", "file size", "corrupt", "extra bytes")):
                raise BadFileError(f"cannot read {what}: truncated or corrupt file ({text.splitlines()[0]})", path=path)
    except BadFileError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError, EOFError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        if "truncat" in reason.lower() or isinstance(exc, EOFError):
            reason = f"truncated or corrupt file ({reason})"
        raise BadFileError(f"cannot read {what}: {reason}", path=path) from None
    except Exception as exc:  # astropy raises a zoo of types on corrupt headers
        raise BadFileError(f"cannot read {what}: {type(exc).__name__}: {exc}", path=path) from None
    if len(out) == 0:
        raise BadFileError(f"empty {what}", path=path)
    if raw is None:
        words = np.memmap(path, dtype=">u4", mode="r", shape=(path.stat().st_size // 4,))
    else:
        words = np.frombuffer(raw, dtype=">u4", count=len(raw) // 4)
    try:
        verify_checksums(out, words, path, what=what)
    finally:
        del words  # unmaps the file
    return out


def _ones_complement_sum(words):
    """32-bit ones' complement sum of big-endian 32-bit words (the FITS checksum arithmetic)."""
    total = int(words.sum(dtype=np.uint64))  # exact below 2**32 words (16 GiB)
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def verify_checksums(hdul, words, path, *, what="FITS file"):
    """Check the CHECKSUM and DATASUM keywords of every HDU against the bytes of the file.

    A file whose checksums some HDUs satisfy is maintained by the software that wrote it (the
    NuSTAR pipeline, HEASoft, this package): an HDU whose data then fail its DATASUM is
    damaged, and that is an error. A header that fails its CHECKSUM while its data match
    DATASUM was edited (a keyword changed by hand or by a tool, as in real spectra): its values
    are validated by the readers like any other header, so that is not an error. When no HDU
    satisfies its CHECKSUM, the file was rewritten by a tool that left the keywords stale (solar
    ``*_sunpos.evt`` files made with nustar_pysolar are: the X/Y columns were replaced, the
    checksums kept): they then say nothing about damage and are not used. The cost is one
    pass of integer additions over the file (see benchmarks/bench_io.py).

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The file as read (HDU positions from :meth:`~astropy.io.fits.HDUList.fileinfo`).
    words : numpy.ndarray
        The file's bytes as big-endian unsigned 32-bit words.
    path : path-like
        The file, for messages.
    what : str
        Kind of file, for messages.

    Raises
    ------
    BadFileError
        An HDU's data do not match its DATASUM (or, without DATASUM, the HDU does not match its
        CHECKSUM), while other HDUs match theirs.
    """
    results = []  # (name, datasum matches, checksum matches); None = keyword absent
    for i, hdu in enumerate(hdul):
        header = hdu.header
        if "CHECKSUM" not in header and "DATASUM" not in header:
            continue
        info = hdul.fileinfo(i)
        start, data_start, data_span = info["hdrLoc"], info["datLoc"], info["datSpan"]
        datasum = _ones_complement_sum(words[data_start // 4:(data_start + data_span) // 4])
        data_ok = None
        if "DATASUM" in header:
            try:
                data_ok = datasum == int(str(header["DATASUM"]).strip())
            except ValueError:
                data_ok = False
        whole_ok = None
        if "CHECKSUM" in header:
            whole = _ones_complement_sum(np.array([_ones_complement_sum(words[start // 4:data_start // 4]),
                                                   datasum], dtype=np.uint64))
            whole_ok = whole == 0xFFFFFFFF  # ones' complement -0: the CHECKSUM value balances the HDU
        name = hdu_name(hdul, hdu)
        results.append((f"{name},{hdu.ver}" if hdu.ver > 1 else name, data_ok, whole_ok))  # BADPIX,2 ...
    if not any(whole_ok for _, _, whole_ok in results):
        return  # no checksum holds anywhere: stale keywords, not evidence of damage
    for name, data_ok, whole_ok in results:
        if data_ok is False or (data_ok is None and whole_ok is False):
            key = "DATASUM" if data_ok is False else "CHECKSUM"
            raise BadFileError(f"damaged {what}: the data do not match {key} while the file's other checksums "
                               "hold; get or make the file again", path=path, extension=name)


def hdu_name(hdul, hdu):
    """Readable name of an HDU for messages: its EXTNAME, else its index."""
    name = hdu.header.get("EXTNAME")
    if name:
        return str(name)
    for i, h in enumerate(hdul):
        if h is hdu:
            return i
    return "?"


def find_hdu(hdul, path, *, extnames=(), hduclas1=None, predicate=None, what="extension", table=None):
    """Return the first HDU matching any of the criteria given.

    Parameters
    ----------
    hdul : HDUList
    path : path of the file, for messages.
    extnames : sequence of str
        Accepted EXTNAME values (case-insensitive).
    hduclas1 : str, optional
        Accepted HDUCLAS1 value (case-insensitive).
    predicate : callable(hdu) -> bool, optional
        Extra test.
    what : str
        Name of the wanted extension for the error message.
    table : bool, optional
        Require a binary table (True) or an image (False).
    """
    names = {n.upper() for n in extnames}
    for hdu in hdul:
        if table is True and not isinstance(hdu, fits.BinTableHDU):
            continue
        if table is False and not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            continue
        name = str(hdu.header.get("EXTNAME", "")).strip().upper()
        clas = str(hdu.header.get("HDUCLAS1", "")).strip().upper()
        ok = False
        if names and name in names:
            ok = True
        if hduclas1 is not None and clas == hduclas1.upper():
            ok = True
        if not names and hduclas1 is None:
            ok = True
        if ok and (predicate is None or predicate(hdu)):
            return hdu
    wanted = " or ".join([f"EXTNAME={n}" for n in extnames] + ([f"HDUCLAS1={hduclas1}"] if hduclas1 else []))
    raise BadFileError(f"no {what} found ({wanted or 'any'})", path=path)


def require_columns(hdu, path, columns, *, extension=None):
    """Check that a table HDU has all ``columns``; return a dict name -> numpy array."""
    ext = extension if extension is not None else hdu.header.get("EXTNAME", "?")
    if not isinstance(hdu, fits.BinTableHDU):
        raise BadFileError("expected a binary table", path=path, extension=ext)
    have = {c.upper(): c for c in hdu.columns.names}
    out = {}
    for col in columns:
        if col.upper() not in have:
            raise BadFileError("required column missing", path=path, extension=ext, field=col)
        out[col] = np.asarray(hdu.data[have[col.upper()]])
    return out


def module_from_header(header, path, *, extension=None):
    """Focal-plane module 'A' or 'B' from the INSTRUME keyword (FPMA/FPMB)."""
    ext = extension if extension is not None else header.get("EXTNAME", "PRIMARY")
    value = str(header.get("INSTRUME", "")).strip().upper()
    if value in ("FPMA", "A"):
        return "A"
    if value in ("FPMB", "B"):
        return "B"
    if not value:
        raise BadFileError("INSTRUME keyword missing (expected FPMA or FPMB)", path=path, extension=ext, field="INSTRUME")
    raise BadFileError(f"INSTRUME is {value!r}, expected FPMA or FPMB", path=path, extension=ext, field="INSTRUME")


def write_fits(hdul, path, *, overwrite=False, checksum=True):
    """Write an HDUList atomically; never replaces an existing file unless ``overwrite``."""
    if not isinstance(hdul, fits.HDUList):
        hdul = fits.HDUList(hdul)
    with atomic_output(path, overwrite=overwrite) as tmp:
        hdul.writeto(tmp, checksum=checksum, output_verify="silentfix")
    return Path(path)
