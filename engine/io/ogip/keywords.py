"""Keywords and column helpers shared by the OGIP readers and writers (PHA, RMF, ARF).

Header keywords that describe the data versus the table layout, the standard comments the
writers put on them, the module (FPMA/FPMB) check, and the numeric column/keyword checks that
turn a bad file into a :class:`~nuskybgd_engine.errors.BadFileError` naming file, extension and field.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from ...errors import BadConfigError, BadFileError

#: Keywords of a SPECTRUM extension that name associated files (rewritten by ``phafix``).
#: Keywords of a SPECTRUM extension that name associated files (rewritten by ``phafix``).
FILE_KEYWORDS = ("BACKFILE", "CORRFILE", "RESPFILE", "ANCRFILE")

# Keywords describing the table layout or checksums: never carried in a header dict,
# always recomputed by the writers.
_STRUCTURAL = {
    "XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT", "TFIELDS", "EXTNAME",
    "CHECKSUM", "DATASUM", "SIMPLE", "EXTEND", "THEAP", "EXTVER", "EXTLEVEL",
}
_COLUMN_PREFIXES = (
    "TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO", "TDISP", "TDIM", "TLMIN", "TLMAX",
    "TCTYP", "TCRPX", "TCRVL", "TCDLT", "TCUNI", "TCROT", "TDMIN", "TDMAX", "TDRPX", "TDDLT",
)
# Keywords copied to the primary HDU by the writers (as nuproducts does).
PRIMARY_KEYS = (
    "TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ", "DEC_OBJ", "RA_NOM", "DEC_NOM",
    "DATE-OBS", "DATE-END", "TSTART", "TSTOP", "MJDREFI", "MJDREFF", "TIMESYS", "ORIGIN",
)
# Standard comments, so written files read well in fv/fstruct.
_COMMENTS = {
    "HDUCLASS": "format conforms to OGIP standard",
    "HDUCLAS1": "dataset class",
    "HDUCLAS2": "dataset subclass",
    "HDUCLAS3": "dataset subclass",
    "HDUVERS": "version of format",
    "TELESCOP": "mission name",
    "INSTRUME": "instrument name",
    "FILTER": "filter in use",
    "EXPOSURE": "exposure time (s)",
    "LIVETIME": "dead-time corrected on-source time (s)",
    "BACKSCAL": "background scaling factor",
    "AREASCAL": "area scaling factor",
    "CORRSCAL": "correction file scaling factor",
    "BACKFILE": "associated background filename",
    "CORRFILE": "associated correction filename",
    "RESPFILE": "associated redistribution matrix filename",
    "ANCRFILE": "associated ancillary response filename",
    "DETCHANS": "total number of possible channels",
    "CHANTYPE": "channel type (PHA, PI etc)",
    "POISSERR": "Poissonian errors to be assumed",
    "STAT_ERR": "no statistical error specified",
    "SYS_ERR": "no systematic error specified",
    "GROUPING": "no grouping of the data has been defined",
    "QUALITY": "no data quality information specified",
    "LO_THRES": "lower threshold used to construct the matrix",
    "NUMGRP": "total number of response groups",
    "NUMELT": "total number of response elements",
}



def header_dict(header):
    """Keywords of ``header`` that describe the data (not the table layout), in file order."""
    out = {}
    for card in header.cards:
        key = card.keyword
        if not key or key in ("COMMENT", "HISTORY") or key in _STRUCTURAL:
            continue
        if key.startswith(_COLUMN_PREFIXES) and key[5:].isdigit():
            continue
        if key.startswith("TLMIN") or key.startswith("TLMAX"):
            continue
        out[key] = card.value
    return out


def set_keys(header, items):
    """Set (key, value) pairs on an astropy header, with standard comments."""
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        comment = _COMMENTS.get(key, "")
        # A comment that does not fit on the card would make astropy warn and truncate it.
        if isinstance(value, str) and len(value) + len(comment) > 60:
            comment = ""
        header[key] = (value, comment)


def module_of(header):
    """'A' / 'B' from INSTRUME (FPMA/FPMB), else None (e.g. ``diag.rmf`` has INSTRUME NONE)."""
    value = str(header.get("INSTRUME", "")).strip().upper()
    return {"FPMA": "A", "A": "A", "FPMB": "B", "B": "B"}.get(value)


def check_module(found, wanted, header, path, ext):
    """Check that a file's module ``found`` (from :func:`module_of`) is the ``wanted`` one.

    ``wanted`` None accepts anything; 'A'/'B'/'FPMA'/'FPMB' are accepted spellings. A file
    with no module in INSTRUME (``found`` None) passes.

    Raises
    ------
    BadConfigError
        ``wanted`` is not a module name.
    BadFileError
        INSTRUME names the other module (names ``path``, ``ext`` and INSTRUME).
    """
    if wanted is None:
        return
    wanted = str(wanted).strip().upper()
    if wanted in ("FPMA", "FPMB"):
        wanted = wanted[-1]
    if wanted not in ("A", "B"):
        raise BadConfigError(f"module must be 'A' or 'B', got {wanted!r}", field="module")
    if found is not None and found != wanted:
        raise BadFileError(
            f"INSTRUME is {header.get('INSTRUME')!r} but module {wanted} (FPM{wanted}) was requested",
            path=path, extension=ext, field="INSTRUME",
        )


def float_keyword(header, key, path, ext, *, default=None, positive=False):
    """Keyword ``key`` as a finite float (``default`` when absent, else a :class:`BadFileError`)."""
    if key not in header:
        if default is None:
            raise BadFileError("required keyword missing", path=path, extension=ext, field=key)
        return default
    try:
        value = float(header[key])
    except (TypeError, ValueError):
        raise BadFileError(f"keyword is not a number ({header[key]!r})", path=path, extension=ext, field=key) from None
    if not np.isfinite(value) or (positive and value <= 0):
        raise BadFileError(f"keyword must be a finite{' positive' if positive else ''} number, got {value}",
                           path=path, extension=ext, field=key)
    return value


def column_tlmin(hdu, name):
    """TLMIN of column ``name`` or None."""
    for i, cname in enumerate(hdu.columns.names, start=1):
        if cname.upper() == name.upper():
            return hdu.header.get(f"TLMIN{i}")
    return None


def find_table(hdul, path, *, names, clas2, what):
    """First binary table with EXTNAME in ``names`` or HDUCLAS2 in ``clas2``."""
    for hdu in hdul:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        name = str(hdu.header.get("EXTNAME", "")).strip().upper()
        c2 = str(hdu.header.get("HDUCLAS2", "")).strip().upper()
        if name in names or c2 in clas2:
            return hdu
    wanted = " or ".join([f"EXTNAME={n}" for n in names] + [f"HDUCLAS2={c}" for c in clas2])
    raise BadFileError(f"no {what} extension found ({wanted}); is this the right kind of file?", path=path)


def native(values):
    """Same values in native byte order (FITS arrays are big-endian)."""
    values = np.asarray(values)
    return values.astype(values.dtype.newbyteorder("=")) if not values.dtype.isnative else values


def is_float32(values):
    """True for float32 data (the writers keep them float32, FITS ``E``)."""
    return np.asarray(values).dtype.kind == "f" and np.asarray(values).dtype.itemsize == 4


def finite(values, path, ext, name):
    """``values`` in native byte order; a :class:`BadFileError` naming column ``name`` if any is NaN/inf."""
    values = native(values)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise BadFileError("non-finite values", path=path, extension=ext, field=name)
    return values

