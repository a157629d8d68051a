"""Look-up of NuSTAR CALDB products through the CALDB index (spec §5).

The rule is that of nuskybgd-py (``caldb.CalDB.getcaldbfile``), applied to
``$CALDB/data/nustar/fpm/caldb.indx``:

1. keep the rows with the wanted ``CAL_CNAM``, ``TELESCOP = NUSTAR`` and ``INSTRUME = FPMA/FPMB``
   (module-independent products such as the Be-window parameters are indexed as ``FPM``; they are
   used when the module has no row of its own, or when no module is given);
2. keep the rows whose validity start ``CAL_VSD`` + ``CAL_VST`` is strictly before the
   observation date;
3. for ``GRPRMF``, keep the rows whose ``CAL_CBD`` starts with ``DEPTHCUT(NOMINAL)``;
4. optionally keep the rows of one ``DETNAM`` (``DET0``..``DET3``);
5. keep the rows with ``CAL_QUAL = 0`` (good quality). **The reference ignores CAL_QUAL**; the IDL
   version required it to be 0, and so do we, because CALDB marks withdrawn files that way;
6. take the lexicographically last ``CAL_DIR/CAL_FILE`` (CALDB names carry date and version, so
   this is the newest file).

The index is read once per (path, size, modification time) and kept in memory.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadConfigError, BadFileError, CalibrationNotFoundError
from ..io.fitsutil import find_hdu, read_fits, require_columns

__all__ = [
    "CALDB_PRODUCTS",
    "CaldbMatch",
    "caldb_index_path",
    "read_caldb_index",
    "caldb_lookup",
    "parse_date",
    "instrument_name",
    "detector_name",
]

#: CALDB product names (CAL_CNAM) the method needs (spec §5).
CALDB_PRODUCTS = ("INSTRMAP", "PIXPOS", "BADPIX", "DETABS", "BEABSPAR", "GRPRMF")

#: Index location relative to $CALDB.
INDEX_RELPATH = Path("data") / "nustar" / "fpm" / "caldb.indx"

_REQUIRED = ("TELESCOP", "INSTRUME", "DETNAM", "CAL_CNAM", "CAL_VSD", "CAL_VST", "CAL_DIR", "CAL_FILE")
_OPTIONAL = ("CAL_CBD", "CAL_QUAL", "CAL_XNO")
_CACHE: dict = {}


@dataclass(frozen=True)
class CaldbMatch:
    """The CALDB file selected for a product.

    Attributes
    ----------
    path : pathlib.Path
        Absolute path of the file (``$CALDB/CAL_DIR/CAL_FILE``).
    extension : int or None
        FITS extension number (``CAL_XNO``) when the index gives a single one for the selected
        file and filters, else None (the whole file).
    relpath : str
        ``CAL_DIR/CAL_FILE`` as written in the index.
    candidates : tuple of str
        All ``CAL_DIR/CAL_FILE`` that passed the filters, sorted (the last one was selected).
    """

    path: Path
    extension: int | None
    relpath: str
    candidates: tuple


def caldb_index_path(caldb_dir):
    """Path of the NuSTAR FPM index under a CALDB root directory."""
    return Path(caldb_dir) / INDEX_RELPATH


def _strings(values):
    """Upper-case, stripped strings of a string column (1-D) or of a vector string column (2-D)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "ascii", errors="replace")
    return np.char.upper(np.char.strip(arr.astype(str)))


def read_caldb_index(path):
    """Read a CALDB index (``caldb.indx``) into a dict of column arrays.

    Parameters
    ----------
    path : str or os.PathLike
        The index file (a FITS binary table, EXTNAME ``CIF`` in real CALDBs).

    Returns
    -------
    dict
        Column name -> numpy array; string columns are stripped and upper-cased, except
        ``CAL_DIR`` and ``CAL_FILE``, which keep their case. Optional columns (``CAL_CBD``,
        ``CAL_QUAL``, ``CAL_XNO``) are present only if the index has them.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise BadFileError("CALDB index not found", path=path) from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    hdul = read_fits(path, what="CALDB index")
    try:  # real indexes name the table CIF; accept any binary table otherwise
        hdu = find_hdu(hdul, path, extnames=("CIF",), what="CALDB index table", table=True)
    except BadFileError:
        hdu = find_hdu(hdul, path, what="CALDB index table", table=True)
    ext = hdu.header.get("EXTNAME", 1)
    cols = require_columns(hdu, path, _REQUIRED, extension=ext)
    have = {c.upper(): c for c in hdu.columns.names}
    for name in _OPTIONAL:
        if name in have:
            cols[name] = np.asarray(hdu.data[have[name]])
    out = {}
    for name, values in cols.items():
        if name in ("CAL_DIR", "CAL_FILE"):
            arr = np.asarray(values)
            if arr.dtype.kind == "S":
                arr = np.char.decode(arr, "ascii", errors="replace")
            out[name] = np.char.strip(arr.astype(str))
        elif name in ("CAL_QUAL", "CAL_XNO"):
            arr = np.asarray(values)
            if arr.dtype.kind not in "iuf":
                raise BadFileError("expected an integer column", path=path, extension=ext, field=name)
            out[name] = arr.astype(np.int64)
        else:
            out[name] = _strings(values)
    if len(_CACHE) > 8:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def parse_date(date, *, field="date"):
    """Observation date as a naive UTC :class:`datetime.datetime`.

    Accepts ``None`` (returned as None: no date filter), a datetime/date, or an ISO string such as
    a ``DATE-OBS`` value (``2015-03-23T10:20:30``, fractional seconds and a trailing ``Z`` allowed,
    or just ``2015-03-23``).
    """
    if date is None:
        return None
    if isinstance(date, _dt.datetime):
        return date.replace(tzinfo=None)
    if isinstance(date, _dt.date):
        return _dt.datetime(date.year, date.month, date.day)
    text = str(date).strip()
    if text.endswith("Z"):
        text = text[:-1]
    try:
        return _dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        raise BadConfigError(f"cannot read date {date!r} (expected YYYY-MM-DDThh:mm:ss)", field=field) from None


def instrument_name(module):
    """``'FPMA'``/``'FPMB'`` from a module given as A/B/FPMA/FPMB (any case); None stays None."""
    if module is None:
        return None
    value = str(module).strip().upper()
    if value in ("A", "FPMA"):
        return "FPMA"
    if value in ("B", "FPMB"):
        return "FPMB"
    raise BadConfigError(f"module must be A or B, got {module!r}", field="module")


def detector_name(detector):
    """``'DETn'`` from a detector given as 0..3 or ``'DETn'``; None stays None."""
    if detector is None:
        return None
    text = str(detector).strip().upper()
    if text.startswith("DET"):
        text = text[3:]
    if text in ("0", "1", "2", "3"):
        return f"DET{text}"
    raise BadConfigError(f"detector must be 0, 1, 2 or 3 (or DET0..DET3), got {detector!r}", field="detector")


def _row_dates(index, rows, path):
    out = []
    for i in rows:
        text = f"{index['CAL_VSD'][i]}T{index['CAL_VST'][i]}"
        try:
            out.append(_dt.datetime.fromisoformat(text))
        except ValueError:
            raise BadFileError(f"unreadable validity start {text!r} in row {i + 1}", path=path,
                               field="CAL_VSD") from None
    return out


def _depthcut_nominal(cbd):
    """True if a CAL_CBD entry (one string or a vector of boundary strings) starts with DEPTHCUT(NOMINAL)."""
    values = np.atleast_1d(cbd)
    return bool(values.size) and str(values[0]).startswith("DEPTHCUT(NOMINAL)")


def caldb_lookup(caldb_dir, cnam, module=None, *, detector=None, date=None):
    """Select the CALDB file of product ``cnam`` for a module, detector and date.

    Parameters
    ----------
    caldb_dir : str or os.PathLike
        The CALDB root (what ``$CALDB`` points to).
    cnam : str
        Product name (``CAL_CNAM``), e.g. ``'INSTRMAP'``.
    module : {'A', 'B', 'FPMA', 'FPMB'} or None
        Focal-plane module. Rows indexed under the module-independent instrument ``FPM`` are used
        when the module has none (or when no module is given).
    detector : int or str, optional
        0..3 or ``'DET0'``..``'DET3'``: keep only rows with that ``DETNAM``.
    date : str or datetime, optional
        Observation date (``DATE-OBS``); rows valid from this instant or later are dropped. None
        applies no date filter (the newest file wins).

    Returns
    -------
    CaldbMatch

    Raises
    ------
    CalibrationNotFoundError
        No row passes the filters, or the selected file is not installed. The message says which
        filter removed the last candidates.
    BadFileError
        The index is missing, unreadable or lacks a required column.
    """
    cnam = str(cnam).strip().upper()
    instrume = instrument_name(module)
    detnam = detector_name(detector)
    when = parse_date(date)
    index_path = caldb_index_path(caldb_dir)
    index = read_caldb_index(index_path)
    what = f"{cnam} ({instrume or 'FPM'}{', ' + detnam if detnam else ''})"

    base = (index["CAL_CNAM"] == cnam) & (index["TELESCOP"] == "NUSTAR")
    rows = np.flatnonzero(base & (index["INSTRUME"] == instrume)) if instrume else np.array([], int)
    if rows.size == 0:
        rows = np.flatnonzero(base & (index["INSTRUME"] == "FPM"))
    if rows.size == 0:
        raise CalibrationNotFoundError(f"{what}: no entry in the CALDB index", path=index_path)
    if when is not None:
        starts = _row_dates(index, rows, index_path)
        rows = rows[np.array([s < when for s in starts], dtype=bool)]
        if rows.size == 0:
            raise CalibrationNotFoundError(f"{what}: no CALDB entry valid before {when.isoformat()}",
                                           path=index_path)
    if cnam == "GRPRMF":
        if "CAL_CBD" not in index:
            raise BadFileError("column needed to select GRPRMF is missing", path=index_path, field="CAL_CBD")
        rows = rows[np.array([_depthcut_nominal(index["CAL_CBD"][i]) for i in rows], dtype=bool)]
        if rows.size == 0:
            raise CalibrationNotFoundError(f"{what}: no CALDB entry with CAL_CBD DEPTHCUT(NOMINAL)",
                                           path=index_path)
    if detnam is not None:
        rows = rows[index["DETNAM"][rows] == detnam]
        if rows.size == 0:
            raise CalibrationNotFoundError(f"{what}: no CALDB entry with DETNAM {detnam}", path=index_path)
    if "CAL_QUAL" in index:
        rows = rows[index["CAL_QUAL"][rows] == 0]
        if rows.size == 0:
            raise CalibrationNotFoundError(f"{what}: every matching CALDB entry has CAL_QUAL != 0",
                                           path=index_path)
    names = np.array([f"{index['CAL_DIR'][i]}/{index['CAL_FILE'][i]}" for i in rows])
    order = sorted(set(names.tolist()))
    chosen = order[-1]
    extension = None
    if "CAL_XNO" in index:
        xnos = set(index["CAL_XNO"][rows[names == chosen]].tolist())
        if len(xnos) == 1:
            extension = int(xnos.pop())
    path = Path(caldb_dir) / chosen
    if not path.is_file():
        raise CalibrationNotFoundError(f"{what}: the CALDB index selects {chosen}, which is not installed",
                                       path=os.fspath(path))
    return CaldbMatch(path=path, extension=extension, relpath=chosen, candidates=tuple(order))
