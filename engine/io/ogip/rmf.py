"""OGIP redistribution matrices (CAL/GEN/92-002): :class:`Response`, read and write.

``MATRIX`` (or ``SPECRESP MATRIX``) with N_GRP/F_CHAN/N_CHAN/MATRIX, the first channel number
given by TLMIN of F_CHAN, plus ``EBOUNDS``. Held in memory as a :class:`scipy.sparse.csr_matrix`
of shape (n_energies, n_channels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

from ...errors import BadConfigError, BadFileError
from ..fitsutil import hdu_name, read_fits, require_columns, write_fits
from .keywords import (
    check_module,
    column_tlmin,
    find_table,
    finite,
    header_dict,
    is_float32,
    module_of,
    native,
    set_keys,
)


@dataclass(eq=False)
class Response:
    """A redistribution matrix (RMF) held as a sparse matrix.

    Attributes
    ----------
    energ_lo, energ_hi : ndarray, shape (n_e,)
        Model energy grid (keV) of the MATRIX rows.
    e_min, e_max : ndarray, shape (n_chan,)
        Channel energy bounds (keV) from EBOUNDS.
    channel : ndarray of int, shape (n_chan,)
        EBOUNDS channel numbers.
    first_channel : int
        Number of the first channel (TLMIN of F_CHAN; 0 for NuSTAR): matrix column ``j`` is
        channel ``first_channel + j``.
    matrix : scipy.sparse.csr_matrix, shape (n_e, n_chan)
        Redistribution probabilities (explicit zeros removed).
    module : {'A', 'B', None}
    header : dict
        MATRIX extension keywords (TELESCOP, INSTRUME, DETNAM, LO_THRES, HDUCLAS3, ...).
    path : str or None
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    e_min: np.ndarray
    e_max: np.ndarray
    matrix: sp.csr_matrix
    channel: np.ndarray | None = None
    first_channel: int = 0
    module: str | None = None
    header: dict = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self):
        self.matrix = sp.csr_matrix(self.matrix)
        n_e, n_chan = self.matrix.shape
        if len(self.energ_lo) != n_e or len(self.energ_hi) != n_e:
            raise BadConfigError(f"energy grid has {len(self.energ_lo)} rows but the matrix {n_e}", field="energ_lo")
        if len(self.e_min) != n_chan or len(self.e_max) != n_chan:
            raise BadConfigError(f"EBOUNDS has {len(self.e_min)} channels but the matrix {n_chan}", field="e_min")
        if self.channel is None:
            self.channel = np.arange(n_chan) + int(self.first_channel)

    @property
    def matrix64(self):
        """The matrix as float64 CSR, made once and cached (scipy would upcast a float32
        matrix on every product, tripling the cost of :func:`fold`)."""
        cached = self.__dict__.get("_matrix64")
        if cached is None or cached[0] is not self.matrix:
            m = self.matrix if self.matrix.dtype == np.float64 else self.matrix.astype(np.float64)
            cached = (self.matrix, m)
            self.__dict__["_matrix64"] = cached
        return cached[1]

    @property
    def n_energies(self):
        return self.matrix.shape[0]

    @property
    def n_channels(self):
        return self.matrix.shape[1]

    def __repr__(self):
        mod = f"FPM{self.module}" if self.module else "module ?"
        name = os.path.basename(self.path) if self.path else "in memory"
        return (f"Response({name}: {mod}, {self.n_energies} energies "
                f"{float(self.energ_lo[0]):g}-{float(self.energ_hi[-1]):g} keV x {self.n_channels} channels "
                f"from {self.first_channel}, {self.matrix.nnz} non-zero)")


def _row_prefix(column, counts, path, ext, name):
    """Concatenate the first ``counts[i]`` values of every row of a table column.

    Handles scalar columns (one value per row), fixed-width vector columns and
    variable-length (P/Q) columns.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if isinstance(column, np.ndarray) and column.dtype != object:
        if column.ndim == 1:
            if counts.size and counts.max() > 1:
                raise BadFileError("scalar column but a row needs more than one value", path=path,
                                   extension=ext, field=name)
            return column[counts == 1]
        width = column.shape[1]
        flat2 = column.reshape(len(column), -1)
        if counts.size and counts.max() > flat2.shape[1]:
            raise BadFileError(f"a row needs {counts.max()} values but the column holds {width}",
                               path=path, extension=ext, field=name)
        return flat2[np.arange(flat2.shape[1])[None, :] < counts[:, None]]
    rows = [np.asarray(r).ravel() for r in column]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if np.any(lengths < counts):
        i = int(np.argmax(lengths < counts))
        raise BadFileError(f"row {i + 1} holds {lengths[i]} values but needs {counts[i]}", path=path,
                           extension=ext, field=name)
    flat = np.concatenate(rows) if rows else np.zeros(0)
    if np.array_equal(lengths, counts):
        return flat
    pos = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return flat[pos < np.repeat(counts, lengths)]


def _vla_fast(hdu, name, counts):
    """Values of a variable-length column read straight from the heap, or None.

    Avoids astropy's per-row conversion (0.3 s on a full 4096x4096 RMF). Uses astropy's
    raw descriptors and heap; any surprise returns None and the caller takes the public path.
    """
    try:
        data = hdu.data
        idx = [c.upper() for c in hdu.columns.names].index(name.upper())
        fmt = hdu.columns[idx].format
        letter = str(fmt).lstrip("0123456789")[:1].upper()
        if letter not in ("P", "Q"):
            return None
        code = str(fmt).lstrip("0123456789")[1:2].upper()
        dtype = {"E": ">f4", "D": ">f8", "J": ">i4", "I": ">i2", "K": ">i8"}.get(code)
        if dtype is None:
            return None
        desc = np.asarray(np.rec.recarray.field(data, hdu.columns.names[idx]))
        if desc.ndim != 2 or desc.shape[1] != 2:
            return None
        nelem = desc[:, 0].astype(np.int64)
        offset = desc[:, 1].astype(np.int64)
        heap = np.asarray(data._get_heap_data())
        size = np.dtype(dtype).itemsize
        if np.any(nelem < counts) or np.any(offset % size):
            return None
        if np.any(offset + nelem * size > heap.size):
            return None
        values = heap[: heap.size - heap.size % size].view(dtype)
        counts = np.asarray(counts, dtype=np.int64)
        start = offset // size
        total = int(counts.sum())
        if total == 0:
            return values[:0].astype(dtype[1:])
        if np.all(start[1:] == start[:-1] + counts[:-1]):
            out = values[start[0]: start[0] + total]  # rows stored back to back (the usual case)
        else:
            pos = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            out = values[np.repeat(start, counts) + pos]
        return out.astype(dtype[1:])
    except Exception:  # private astropy API changed: use the public path
        return None


def read_rmf(path, module=None, *, fast=True):
    """Read an OGIP RMF (MATRIX or SPECRESP MATRIX + EBOUNDS) into a :class:`Response`.

    Parameters
    ----------
    path : str or os.PathLike
    module : {'A', 'B'}, optional
        If given and INSTRUME names the other module, raise :class:`BadFileError`.
    fast : bool
        Read variable-length MATRIX values straight from the FITS heap (default). ``False``
        uses astropy's row-by-row arrays (same result, slower; kept for testing).

    Returns
    -------
    Response
    """
    hdul = read_fits(path, what="RMF")
    mat = find_table(hdul, path, names=("MATRIX", "SPECRESP MATRIX"), clas2=("RSP_MATRIX",), what="MATRIX")
    ext = hdu_name(hdul, mat)
    # MATRIX is checked by name only: converting it through astropy costs 0.5 s on a full RMF.
    colnames = {c.upper(): c for c in mat.columns.names}
    for name in ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"):
        if name not in colnames:
            raise BadFileError("required column missing", path=path, extension=ext, field=name)
    cols = require_columns(mat, path, ["ENERG_LO", "ENERG_HI", "N_GRP"], extension=ext)
    ebo = find_table(hdul, path, names=("EBOUNDS",), clas2=("EBOUNDS",), what="EBOUNDS")
    eext = hdu_name(hdul, ebo)
    ecols = require_columns(ebo, path, ["CHANNEL", "E_MIN", "E_MAX"], extension=eext)
    check_module(module_of(mat.header), module, mat.header, path, ext)

    energ_lo = finite(cols["ENERG_LO"], path, ext, "ENERG_LO")
    energ_hi = finite(cols["ENERG_HI"], path, ext, "ENERG_HI")
    e_min = finite(ecols["E_MIN"], path, eext, "E_MIN")
    e_max = finite(ecols["E_MAX"], path, eext, "E_MAX")
    n_e, n_chan = len(energ_lo), len(e_min)
    if n_e == 0 or n_chan == 0:
        raise BadFileError("empty response", path=path, extension=ext if n_e == 0 else eext,
                           field="ENERG_LO" if n_e == 0 else "CHANNEL")
    n_grp = native(cols["N_GRP"])
    if n_grp.ndim != 1 or n_grp.dtype.kind not in "iu" or np.any(n_grp < 0):
        raise BadFileError("N_GRP must be a non-negative integer per row", path=path, extension=ext, field="N_GRP")
    n_grp = n_grp.astype(np.int64)
    # F_CHAN/N_CHAN may be scalar, fixed-width or variable-length: take N_GRP values per row.
    raw_f = mat.data[colnames["F_CHAN"]]
    raw_n = mat.data[colnames["N_CHAN"]]
    f_chan = _row_prefix(raw_f, n_grp, path, ext, "F_CHAN").astype(np.int64)
    n_chan_g = _row_prefix(raw_n, n_grp, path, ext, "N_CHAN").astype(np.int64)
    if np.any(n_chan_g < 0):
        raise BadFileError("negative N_CHAN", path=path, extension=ext, field="N_CHAN")
    grp_row = np.repeat(np.arange(n_e), n_grp)
    per_row = np.bincount(grp_row, weights=n_chan_g, minlength=n_e).astype(np.int64)
    values = None
    if fast:
        values = _vla_fast(mat, "MATRIX", per_row)
    if values is None:
        raw_m = mat.data[colnames["MATRIX"]]
        values = _row_prefix(raw_m, per_row, path, ext, "MATRIX")
    values = finite(values, path, ext, "MATRIX")

    tlmin = column_tlmin(mat, "F_CHAN")
    if tlmin is None:
        # OGIP default is 1; EBOUNDS tells us better when TLMIN is absent.
        tlmin = int(ecols["CHANNEL"][0]) if len(ecols["CHANNEL"]) else 1
    first = int(tlmin)
    # Work on the non-zero elements only (a full NuSTAR RMF stores 16.8 M values, 7 M non-zero).
    gstart = np.cumsum(n_chan_g) - n_chan_g  # offset of each group in ``values``
    elem = np.flatnonzero(values)
    grp = np.searchsorted(gstart, elem, side="right") - 1
    # An empty group shares its offset with the next one; side="right" picks the last group
    # starting at or before each element, which is the non-empty one.
    values = values[elem]
    col_idx = (f_chan - first)[grp] + (elem - gstart[grp])
    if col_idx.size and (col_idx.min() < 0 or col_idx.max() >= n_chan):
        raise BadFileError(
            f"channel numbers {col_idx.min() + first}..{col_idx.max() + first} outside the "
            f"{n_chan} EBOUNDS channels starting at {first}", path=path, extension=ext, field="F_CHAN")
    per_row = np.bincount(grp_row[grp], minlength=n_e)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    matrix = sp.csr_matrix((values, col_idx.astype(np.int32), indptr.astype(np.int64)), shape=(n_e, n_chan))
    if not matrix.has_sorted_indices or not matrix.has_canonical_format:
        matrix.sum_duplicates()
    header = header_dict(mat.header)
    return Response(
        energ_lo=energ_lo, energ_hi=energ_hi, e_min=e_min, e_max=e_max, matrix=matrix,
        channel=native(ecols["CHANNEL"]), first_channel=first, module=module_of(mat.header),
        header=header, path=os.fspath(path),
    )


def write_rmf(response, path, overwrite=False):
    """Write ``response`` as an OGIP RMF: variable-length MATRIX + EBOUNDS.

    Each row's non-zero elements are stored as groups of consecutive channels (N_GRP,
    F_CHAN, N_CHAN as variable-length arrays; MATRIX as ``PE``/``PD`` depending on the
    dtype), TLMIN4 = first channel. Reading the file back gives the same sparse matrix.
    """
    if not isinstance(response, Response):
        raise BadConfigError(f"expected a Response, got {type(response).__name__}", field="response")
    m = response.matrix.tocsr(copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    n_e, n_chan = m.shape
    indptr, indices, data = m.indptr, m.indices.astype(np.int64), m.data
    row_of = np.repeat(np.arange(n_e), np.diff(indptr))
    # A group starts at each row's first element and wherever the channel index jumps.
    new = np.ones(indices.size, dtype=bool)
    if indices.size > 1:
        new[1:] = (row_of[1:] != row_of[:-1]) | (indices[1:] != indices[:-1] + 1)
    starts = np.flatnonzero(new)
    lengths = np.diff(np.append(starts, indices.size))
    grp_row = row_of[starts]
    n_grp = np.bincount(grp_row, minlength=n_e)
    first = int(response.first_channel)
    gsplit = np.cumsum(n_grp)[:-1]
    f_rows = np.split((indices[starts] + first).astype(np.int32), gsplit)
    n_rows = np.split(lengths.astype(np.int32), gsplit)
    mdtype = np.float32 if is_float32(data) else np.float64
    m_rows = np.split(data.astype(mdtype), indptr[1:-1])
    ngrp_fmt = "I" if n_grp.max(initial=0) < 32767 else "J"
    edtype = "E" if is_float32(response.energ_lo) else "D"
    mfmt = "PE()" if mdtype == np.float32 else "PD()"
    cols = [
        fits.Column(name="ENERG_LO", format=edtype, unit="keV", array=response.energ_lo),
        fits.Column(name="ENERG_HI", format=edtype, unit="keV", array=response.energ_hi),
        fits.Column(name="N_GRP", format=ngrp_fmt, array=n_grp),
        fits.Column(name="F_CHAN", format="PJ()", array=np.array(f_rows + [None], dtype=object)[:-1]),
        fits.Column(name="N_CHAN", format="PJ()", array=np.array(n_rows + [None], dtype=object)[:-1]),
        fits.Column(name="MATRIX", format=mfmt, array=np.array(m_rows + [None], dtype=object)[:-1]),
    ]
    mat = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    src = dict(response.header)
    instrume = f"FPM{response.module}" if response.module else src.get("INSTRUME", "NONE")
    common = [
        ("TELESCOP", src.get("TELESCOP", "NuSTAR" if response.module else "NONE")),
        ("INSTRUME", instrume),
        ("DETNAM", src.get("DETNAM")),
        ("FILTER", src.get("FILTER", "NONE")),
        ("CHANTYPE", src.get("CHANTYPE", "PI")),
        ("DETCHANS", n_chan),
    ]
    mat.header["TLMIN4"] = (first, "first channel number")
    mat.header["TLMAX4"] = (first + n_chan - 1, "last channel number")
    set_keys(mat.header, [
        ("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "RSP_MATRIX"),
        ("HDUCLAS3", src.get("HDUCLAS3", "REDIST")), ("HDUVERS", "1.3.0"), *common,
        ("LO_THRES", float(src.get("LO_THRES", 0.0))), ("NUMGRP", int(n_grp.sum())), ("NUMELT", int(m.nnz)),
    ])
    managed = {"NUMGRP", "NUMELT", "HDUVERS", "HDUCLASS", "HDUCLAS1", "HDUCLAS2"}
    set_keys(mat.header, [(k, v) for k, v in src.items() if k not in mat.header and k not in managed])
    chan = np.asarray(response.channel)
    efmt = "E" if is_float32(response.e_min) else "D"
    short = chan.max(initial=0) <= 32767 and chan.min(initial=0) >= -32768
    ebo = fits.BinTableHDU.from_columns([
        fits.Column(name="CHANNEL", format="I" if short else "J", array=chan),
        fits.Column(name="E_MIN", format=efmt, unit="keV", array=response.e_min),
        fits.Column(name="E_MAX", format=efmt, unit="keV", array=response.e_max),
    ], name="EBOUNDS")
    set_keys(ebo.header, [("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "EBOUNDS"),
                           ("HDUVERS", "1.2.0"), *common])
    primary = fits.PrimaryHDU()
    set_keys(primary.header, [(k, mat.header[k]) for k in ("TELESCOP", "INSTRUME") if k in mat.header])
    return write_fits(fits.HDUList([primary, mat, ebo]), path, overwrite=overwrite)
