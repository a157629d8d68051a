"""OGIP spectral files: PHA type I spectra, RMF response matrices and ARFs (read and write).

Formats follow OGIP memos OGIP/92-007 (PHA) and CAL/GEN/92-002 (RMF, ARF). The NuSTAR
conventions are those of ``nuproducts`` output and the CALDB/auxil files (spec §2.2, §3.4, §5):

* PHA: primary HDU + ``SPECTRUM`` table (CHANNEL, COUNTS [, GROUPING, QUALITY]) followed
  by the GTI and region (``REG00101``) extensions, which are passed through unchanged.
* RMF: ``MATRIX`` (or ``SPECRESP MATRIX``) with N_GRP/F_CHAN/N_CHAN/MATRIX, the first
  channel number given by TLMIN of F_CHAN, plus ``EBOUNDS``. Held in memory as a
  :class:`scipy.sparse.csr_matrix` of shape (n_energies, n_channels).
* ARF: ``SPECRESP`` with ENERG_LO, ENERG_HI, SPECRESP. XSPEC applies an ARF to an RMF by
  row index, so :func:`pair_arf` does the same (``be.arf`` has corrupt energy columns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

from ..errors import BadConfigError, BadFileError
from .fitsutil import hdu_name, read_fits, require_columns, write_fits
from .gti import Gti, gti_from_hdu

__all__ = [
    "Spectrum",
    "Response",
    "Arf",
    "ArfPairing",
    "spectrum_hdus",
    "read_pha",
    "write_pha",
    "read_rmf",
    "write_rmf",
    "read_arf",
    "write_arf",
    "pair_arf",
    "effective_matrix",
    "fold",
    "module_of",
    "FILE_KEYWORDS",
]

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
_PRIMARY_KEYS = (
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


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _header_dict(header):
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


def _set_keys(header, items):
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


def _check_module(found, wanted, header, path, ext):
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


def _float_keyword(header, key, path, ext, *, default=None, positive=False):
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


def _col_tlmin(hdu, name):
    """TLMIN of column ``name`` or None."""
    for i, cname in enumerate(hdu.columns.names, start=1):
        if cname.upper() == name.upper():
            return hdu.header.get(f"TLMIN{i}")
    return None


def _find_table(hdul, path, *, names, clas2, what):
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


def _native(values):
    """Same values in native byte order (FITS arrays are big-endian)."""
    values = np.asarray(values)
    return values.astype(values.dtype.newbyteorder("=")) if not values.dtype.isnative else values


def _is_f32(values):
    return np.asarray(values).dtype.kind == "f" and np.asarray(values).dtype.itemsize == 4


def _finite(values, path, ext, name):
    values = _native(values)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise BadFileError("non-finite values", path=path, extension=ext, field=name)
    return values


# --------------------------------------------------------------------------------------
# PHA type I
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class Spectrum:
    """An OGIP type-I PHA spectrum.

    Attributes
    ----------
    channel : ndarray of int
        Channel numbers (PI 0..4095 for NuSTAR).
    counts : ndarray
        Counts per channel (int from a COUNTS column, float when read from RATE × EXPOSURE).
    exposure : float
        EXPOSURE keyword (s).
    backscal, areascal : float or ndarray
        BACKSCAL/AREASCAL keyword, or per-channel column when the file has one.
    module : {'A', 'B', None}
        From INSTRUME.
    grouping, quality : ndarray of int16 or None
        OGIP GROUPING (1 start, -1 continuation, 0 none) and QUALITY (0 good, 2/5 bad).
    header : dict
        Keywords of the SPECTRUM extension (OBS_ID, TELESCOP, INSTRUME, RESPFILE, ...), not
        including the table layout keywords.
    path : str or None
    gti : Gti or None
        Parsed GTI extension, if any.
    extra_hdus : list of astropy HDUs
        Extensions after SPECTRUM (GTI, region), written back unchanged by :func:`write_pha`.
    """

    channel: np.ndarray
    counts: np.ndarray
    exposure: float
    backscal: object = 1.0
    areascal: object = 1.0
    module: str | None = None
    grouping: np.ndarray | None = None
    quality: np.ndarray | None = None
    header: dict = field(default_factory=dict)
    path: str | None = None
    gti: Gti | None = None
    extra_hdus: list = field(default_factory=list)

    def __post_init__(self):
        self.channel = np.asarray(self.channel)
        self.counts = np.asarray(self.counts)
        if self.channel.shape != self.counts.shape or self.channel.ndim != 1:
            raise BadConfigError(
                f"channel and counts must be 1-D arrays of the same length, got {self.channel.shape} "
                f"and {self.counts.shape}", field="counts")
        for name in ("grouping", "quality"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.int16)
                if value.shape != self.counts.shape:
                    raise BadConfigError(f"{name} must have one value per channel", field=name)
                setattr(self, name, value)

    @property
    def total_counts(self):
        return float(np.sum(self.counts))

    def __repr__(self):
        mod = f"FPM{self.module}" if self.module else "module ?"
        grp = ", grouped" if self.grouping is not None else ""
        name = os.path.basename(self.path) if self.path else "in memory"
        return (f"Spectrum({name}: {mod}, OBS_ID {self.header.get('OBS_ID', '?')}, {len(self.channel)} channels, "
                f"{self.total_counts:g} counts, exposure {self.exposure:.6g} s{grp})")


def spectrum_hdus(hdul, path=None):
    """The SPECTRUM extensions of an HDUList (binary tables with HDUCLAS1 or EXTNAME = SPECTRUM).

    If ``path`` is given, a file with none raises :class:`BadFileError` naming ``path``.
    """
    out = []
    for hdu in hdul:
        if not isinstance(hdu, fits.BinTableHDU):
            continue
        if (str(hdu.header.get("HDUCLAS1", "")).strip().upper() == "SPECTRUM"
                or str(hdu.header.get("EXTNAME", "")).strip().upper() == "SPECTRUM"):
            out.append(hdu)
    if not out and path is not None:
        raise BadFileError("no SPECTRUM extension found (EXTNAME or HDUCLAS1 = SPECTRUM); not a PHA file?", path=path)
    return out


def read_pha(path, module=None):
    """Read a type-I OGIP PHA spectrum.

    Parameters
    ----------
    path : str or os.PathLike
    module : {'A', 'B'}, optional
        If given and INSTRUME names the other module, raise :class:`BadFileError`
        (files with no module in INSTRUME are accepted).

    Returns
    -------
    Spectrum
    """
    hdul = read_fits(path, what="PHA spectrum")
    spec = spectrum_hdus(hdul, path)[0]
    hdr = spec.header
    ext = hdu_name(hdul, spec)
    names = {n.upper() for n in spec.columns.names}
    if str(hdr.get("HDUCLAS4", "")).strip().upper() == "TYPE:II":
        raise BadFileError("type II PHA files (several spectra in one table) are not supported", path=path,
                           extension=ext, field="HDUCLAS4")
    data_col = "COUNTS" if "COUNTS" in names else "RATE" if "RATE" in names else None
    if data_col is None:
        raise BadFileError("required column missing (neither COUNTS nor RATE)", path=path, extension=ext,
                           field="COUNTS")
    cols = require_columns(spec, path, ["CHANNEL", data_col], extension=ext)
    channel, values = _native(cols["CHANNEL"]), _native(cols[data_col])
    if values.ndim != 1 or channel.ndim != 1:
        raise BadFileError("vector column: type II PHA files are not supported", path=path, extension=ext,
                           field=data_col)
    if len(channel) == 0:
        raise BadFileError("empty spectrum (no rows)", path=path, extension=ext, field="CHANNEL")
    if channel.dtype.kind not in "iu":
        if not np.all(np.isfinite(channel)) or np.any(channel != np.round(channel)):
            raise BadFileError("channel numbers must be integers", path=path, extension=ext, field="CHANNEL")
        channel = channel.astype(np.int64)
    _finite(values, path, ext, data_col)
    found = module_of(hdr)
    _check_module(found, module, hdr, path, ext)
    exposure = _float_keyword(hdr, "EXPOSURE", path, ext, positive=(data_col == "RATE"))
    if exposure < 0:
        raise BadFileError(f"EXPOSURE must not be negative, got {exposure}", path=path, extension=ext, field="EXPOSURE")
    if data_col == "RATE":
        counts = values.astype(np.float64) * exposure
    else:
        counts = values
        if counts.dtype.kind in "iu":
            counts = counts.astype(np.int64) if counts.dtype.kind == "u" else counts
        if np.any(counts < 0):
            raise BadFileError("negative counts", path=path, extension=ext, field="COUNTS")
    scales = {}
    for key in ("BACKSCAL", "AREASCAL"):
        if key in names:
            scales[key] = _finite(require_columns(spec, path, [key], extension=ext)[key].astype(float), path, ext, key)
        else:
            scales[key] = _float_keyword(hdr, key, path, ext, default=1.0)
    grouping = quality = None
    if "GROUPING" in names:
        grouping = _native(require_columns(spec, path, ["GROUPING"], extension=ext)["GROUPING"])
        if not np.all(np.isin(grouping, (-1, 0, 1))):
            raise BadFileError("GROUPING values must be 1, -1 or 0", path=path, extension=ext, field="GROUPING")
    if "QUALITY" in names:
        quality = _native(require_columns(spec, path, ["QUALITY"], extension=ext)["QUALITY"])
        if quality.dtype.kind not in "iu":
            raise BadFileError("QUALITY must be integer", path=path, extension=ext, field="QUALITY")
    gti = None
    extra = []
    for hdu in hdul[1:]:
        if hdu is spec:
            continue
        extra.append(hdu)
        name = str(hdu.header.get("EXTNAME", "")).strip().upper()
        if gti is None and name in ("GTI", "STDGTI") and isinstance(hdu, fits.BinTableHDU):
            gti = gti_from_hdu(hdu, path)
    return Spectrum(
        channel=channel,
        counts=counts,
        exposure=exposure,
        backscal=scales["BACKSCAL"],
        areascal=scales["AREASCAL"],
        module=found,
        grouping=grouping,
        quality=quality,
        header=_header_dict(hdr),
        path=os.fspath(path),
        gti=gti,
        extra_hdus=extra,
    )


def _spectrum_hdu(spectrum):
    """Build the SPECTRUM BinTableHDU (nuproducts layout) of ``spectrum``."""
    channel = np.asarray(spectrum.channel)
    counts = np.asarray(spectrum.counts)
    if counts.dtype.kind in "iu" or (np.all(np.isfinite(counts)) and np.all(counts == np.round(counts))
                                      and np.all(np.abs(counts) < 2**31)):
        counts_col = fits.Column(name="COUNTS", format="J", unit="count", array=counts.astype(np.int32))
    else:
        # Non-integer counts (e.g. a model spectrum) are kept exactly.
        counts_col = fits.Column(name="COUNTS", format="D", unit="count", array=counts.astype(np.float64))
    cols = [fits.Column(name="CHANNEL", format="J", array=channel.astype(np.int32)), counts_col]
    if spectrum.grouping is not None:
        cols.append(fits.Column(name="GROUPING", format="I", array=np.asarray(spectrum.grouping, np.int16)))
    if spectrum.quality is not None:
        cols.append(fits.Column(name="QUALITY", format="I", array=np.asarray(spectrum.quality, np.int16)))
    for key in ("BACKSCAL", "AREASCAL"):
        value = getattr(spectrum, key.lower())
        if np.ndim(value) > 0:
            cols.append(fits.Column(name=key, format="E", array=np.asarray(value, np.float32)))
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    h = hdu.header
    src = dict(spectrum.header)
    first = int(channel.min()) if len(channel) else 0
    detchans = int(src.get("DETCHANS", len(channel)))
    h["TLMIN1"] = (first, "lowest legal channel number")
    h["TLMAX1"] = (first + detchans - 1, "highest legal channel number")
    if spectrum.module is not None:
        instrume = f"FPM{spectrum.module}"
    else:
        instrume = src.get("INSTRUME", "UNKNOWN")
    std = [
        ("HDUCLASS", "OGIP"),
        ("HDUCLAS1", "SPECTRUM"),
        ("HDUVERS", src.get("HDUVERS", "1.2.1")),
        ("HDUCLAS2", src.get("HDUCLAS2", "TOTAL")),
        ("HDUCLAS3", "COUNT"),
        ("TELESCOP", src.get("TELESCOP", "NuSTAR")),
        ("INSTRUME", instrume),
        ("FILTER", src.get("FILTER", "NONE")),
        ("EXPOSURE", float(spectrum.exposure)),
        ("LIVETIME", src.get("LIVETIME")),
        ("AREASCAL", None if np.ndim(spectrum.areascal) else float(spectrum.areascal)),
        ("BACKSCAL", None if np.ndim(spectrum.backscal) else float(spectrum.backscal)),
        ("CORRSCAL", src.get("CORRSCAL", 1.0)),
        ("BACKFILE", src.get("BACKFILE", "none")),
        ("CORRFILE", src.get("CORRFILE", "none")),
        ("RESPFILE", src.get("RESPFILE", "none")),
        ("ANCRFILE", src.get("ANCRFILE", "none")),
        ("DETCHANS", detchans),
        ("CHANTYPE", src.get("CHANTYPE", "PI")),
        ("POISSERR", bool(src.get("POISSERR", True))),
        ("STAT_ERR", 0),
        ("SYS_ERR", 0),
        ("GROUPING", 0 if spectrum.grouping is None else None),
        ("QUALITY", 0 if spectrum.quality is None else None),
    ]
    _set_keys(h, std)
    managed = {k for k, _ in std} | {"HDUCLAS4", "GROUPING", "QUALITY"}
    _set_keys(h, [(k, v) for k, v in src.items() if k not in managed and k not in h])
    return hdu


def write_pha(spectrum, path, overwrite=False):
    """Write ``spectrum`` as a type-I PHA file in the nuproducts layout.

    Primary HDU (identification keywords), SPECTRUM (CHANNEL int32, COUNTS int32, optional
    GROUPING/QUALITY int16, OGIP keywords), then ``spectrum.extra_hdus`` (GTI, region) as
    read; a GTI extension is built from ``spectrum.gti`` when no GTI HDU is passed through.
    Atomic; never replaces an existing file unless ``overwrite``.

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(spectrum, Spectrum):
        raise BadConfigError(f"expected a Spectrum, got {type(spectrum).__name__}", field="spectrum")
    spec_hdu = _spectrum_hdu(spectrum)
    primary = fits.PrimaryHDU()
    _set_keys(primary.header, [(k, spec_hdu.header[k]) for k in _PRIMARY_KEYS if k in spec_hdu.header])
    hdus = [primary, spec_hdu]
    names = {str(h.header.get("EXTNAME", "")).upper() for h in spectrum.extra_hdus}
    for h in spectrum.extra_hdus:
        hdus.append(h.copy() if hasattr(h, "copy") else h)
    if spectrum.gti is not None and not names & {"GTI", "STDGTI"}:
        gti = fits.BinTableHDU.from_columns(
            [fits.Column(name="START", format="D", unit="s", array=spectrum.gti.start),
             fits.Column(name="STOP", format="D", unit="s", array=spectrum.gti.stop)], name="GTI")
        _set_keys(gti.header, [("HDUCLASS", "OGIP"), ("HDUCLAS1", "GTI"), ("HDUCLAS2", "STANDARD")])
        hdus.append(gti)
    return write_fits(fits.HDUList(hdus), path, overwrite=overwrite)


# --------------------------------------------------------------------------------------
# RMF
# --------------------------------------------------------------------------------------


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
    mat = _find_table(hdul, path, names=("MATRIX", "SPECRESP MATRIX"), clas2=("RSP_MATRIX",), what="MATRIX")
    ext = hdu_name(hdul, mat)
    # MATRIX is checked by name only: converting it through astropy costs 0.5 s on a full RMF.
    colnames = {c.upper(): c for c in mat.columns.names}
    for name in ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX"):
        if name not in colnames:
            raise BadFileError("required column missing", path=path, extension=ext, field=name)
    cols = require_columns(mat, path, ["ENERG_LO", "ENERG_HI", "N_GRP"], extension=ext)
    ebo = _find_table(hdul, path, names=("EBOUNDS",), clas2=("EBOUNDS",), what="EBOUNDS")
    eext = hdu_name(hdul, ebo)
    ecols = require_columns(ebo, path, ["CHANNEL", "E_MIN", "E_MAX"], extension=eext)
    _check_module(module_of(mat.header), module, mat.header, path, ext)

    energ_lo = _finite(cols["ENERG_LO"], path, ext, "ENERG_LO")
    energ_hi = _finite(cols["ENERG_HI"], path, ext, "ENERG_HI")
    e_min = _finite(ecols["E_MIN"], path, eext, "E_MIN")
    e_max = _finite(ecols["E_MAX"], path, eext, "E_MAX")
    n_e, n_chan = len(energ_lo), len(e_min)
    if n_e == 0 or n_chan == 0:
        raise BadFileError("empty response", path=path, extension=ext if n_e == 0 else eext,
                           field="ENERG_LO" if n_e == 0 else "CHANNEL")
    n_grp = _native(cols["N_GRP"])
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
    values = _finite(values, path, ext, "MATRIX")

    tlmin = _col_tlmin(mat, "F_CHAN")
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
    header = _header_dict(mat.header)
    return Response(
        energ_lo=energ_lo, energ_hi=energ_hi, e_min=e_min, e_max=e_max, matrix=matrix,
        channel=_native(ecols["CHANNEL"]), first_channel=first, module=module_of(mat.header),
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
    mdtype = np.float32 if _is_f32(data) else np.float64
    m_rows = np.split(data.astype(mdtype), indptr[1:-1])
    ngrp_fmt = "I" if n_grp.max(initial=0) < 32767 else "J"
    edtype = "E" if _is_f32(response.energ_lo) else "D"
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
    _set_keys(mat.header, [
        ("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "RSP_MATRIX"),
        ("HDUCLAS3", src.get("HDUCLAS3", "REDIST")), ("HDUVERS", "1.3.0"), *common,
        ("LO_THRES", float(src.get("LO_THRES", 0.0))), ("NUMGRP", int(n_grp.sum())), ("NUMELT", int(m.nnz)),
    ])
    managed = {"NUMGRP", "NUMELT", "HDUVERS", "HDUCLASS", "HDUCLAS1", "HDUCLAS2"}
    _set_keys(mat.header, [(k, v) for k, v in src.items() if k not in mat.header and k not in managed])
    chan = np.asarray(response.channel)
    efmt = "E" if _is_f32(response.e_min) else "D"
    short = chan.max(initial=0) <= 32767 and chan.min(initial=0) >= -32768
    ebo = fits.BinTableHDU.from_columns([
        fits.Column(name="CHANNEL", format="I" if short else "J", array=chan),
        fits.Column(name="E_MIN", format=efmt, unit="keV", array=response.e_min),
        fits.Column(name="E_MAX", format=efmt, unit="keV", array=response.e_max),
    ], name="EBOUNDS")
    _set_keys(ebo.header, [("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "EBOUNDS"),
                           ("HDUVERS", "1.2.0"), *common])
    primary = fits.PrimaryHDU()
    _set_keys(primary.header, [(k, mat.header[k]) for k in ("TELESCOP", "INSTRUME") if k in mat.header])
    return write_fits(fits.HDUList([primary, mat, ebo]), path, overwrite=overwrite)


# --------------------------------------------------------------------------------------
# ARF
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class Arf:
    """An ancillary response (effective area per model energy bin).

    Attributes
    ----------
    energ_lo, energ_hi : ndarray (keV)
    specresp : ndarray (cm^2)
    module : {'A', 'B', None}
    header : dict
        SPECRESP extension keywords.
    path : str or None
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    specresp: np.ndarray
    module: str | None = None
    header: dict = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self):
        n = len(self.specresp)
        if len(self.energ_lo) != n or len(self.energ_hi) != n:
            raise BadConfigError("energ_lo, energ_hi and specresp must have the same length", field="specresp")

    def __repr__(self):
        mod = f"FPM{self.module}" if self.module else "module ?"
        name = os.path.basename(self.path) if self.path else "in memory"
        return (f"Arf({name}: {mod}, {len(self.specresp)} rows {float(self.energ_lo[0]):g}-"
                f"{float(self.energ_hi[-1]):g} keV, max {float(np.max(self.specresp)):.4g} cm^2)")


def read_arf(path, module=None):
    """Read an OGIP ARF (SPECRESP extension: ENERG_LO, ENERG_HI, SPECRESP).

    Energy columns are not checked for monotonicity: ``be.arf`` has rounded, partly
    zero-width bins and is still used, by row index (see :func:`pair_arf`).
    """
    hdul = read_fits(path, what="ARF")
    hdu = _find_table(hdul, path, names=("SPECRESP",), clas2=("SPECRESP",), what="SPECRESP")
    ext = hdu_name(hdul, hdu)
    cols = require_columns(hdu, path, ["ENERG_LO", "ENERG_HI", "SPECRESP"], extension=ext)
    if len(cols["SPECRESP"]) == 0:
        raise BadFileError("empty ARF (no rows)", path=path, extension=ext, field="SPECRESP")
    for name, values in cols.items():
        if values.ndim != 1:
            raise BadFileError("expected one value per row", path=path, extension=ext, field=name)
        _finite(values, path, ext, name)
    _check_module(module_of(hdu.header), module, hdu.header, path, ext)
    return Arf(energ_lo=_native(cols["ENERG_LO"]), energ_hi=_native(cols["ENERG_HI"]),
               specresp=_native(cols["SPECRESP"]),
               module=module_of(hdu.header), header=_header_dict(hdu.header), path=os.fspath(path))


def write_arf(arf, path, overwrite=False):
    """Write ``arf`` as an OGIP ARF (primary + SPECRESP); float32 data stay float32 (``E``)."""
    if not isinstance(arf, Arf):
        raise BadConfigError(f"expected an Arf, got {type(arf).__name__}", field="arf")

    def fmt(a):
        return "E" if _is_f32(a) else "D"

    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="ENERG_LO", format=fmt(arf.energ_lo), unit="keV", array=arf.energ_lo),
        fits.Column(name="ENERG_HI", format=fmt(arf.energ_hi), unit="keV", array=arf.energ_hi),
        fits.Column(name="SPECRESP", format=fmt(arf.specresp), unit="cm**2", array=arf.specresp),
    ], name="SPECRESP")
    src = dict(arf.header)
    instrume = f"FPM{arf.module}" if arf.module else src.get("INSTRUME", "NONE")
    std = [("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "SPECRESP"), ("HDUVERS", "1.1.0"),
           ("TELESCOP", src.get("TELESCOP", "NuSTAR")), ("INSTRUME", instrume), ("FILTER", src.get("FILTER", "NONE"))]
    _set_keys(hdu.header, std)
    _set_keys(hdu.header, [(k, v) for k, v in src.items() if k not in hdu.header])
    primary = fits.PrimaryHDU()
    _set_keys(primary.header, [(k, hdu.header[k]) for k in ("TELESCOP", "INSTRUME") if k in hdu.header])
    return write_fits(fits.HDUList([primary, hdu]), path, overwrite=overwrite)


# --------------------------------------------------------------------------------------
# Pairing and folding
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class ArfPairing:
    """An ARF aligned to an RMF's energy rows.

    Attributes
    ----------
    specresp : ndarray of float64, shape (n_e,)
        Effective area of RMF row ``i`` = ARF row ``i``.
    energies_match : bool
        False when the ARF energy columns differ from the RMF's by more than float32 rounding.
    note : str or None
        A one-line explanation to show the user when ``energies_match`` is False.
    max_offset_kev : float
        Largest |ΔE| between the ARF and RMF bin edges.
    """

    specresp: np.ndarray
    energies_match: bool
    note: str | None = None
    max_offset_kev: float = 0.0

    def __repr__(self):
        state = "energies match" if self.energies_match else f"energies differ by up to {self.max_offset_kev:.3g} keV"
        return f"ArfPairing({len(self.specresp)} rows, {state})"


def pair_arf(rmf, arf, path=None, *, rtol=1e-5, atol_kev=1e-5):
    """Align an ARF to the RMF energy rows **by row index**, as XSPEC does.

    XSPEC multiplies RMF row ``i`` by ARF row ``i`` and only requires the same number of
    rows. ``be.arf`` (nuskybgd auxil) has its energy columns rounded to 3 significant
    figures above 10 keV (2921 zero-width bins, spec §5) yet is correct by row, so a
    disagreement in energies is accepted but reported through ``energies_match`` /
    ``note`` (no Python warning is emitted) for the caller to show.

    Parameters
    ----------
    rmf : Response
    arf : Arf
    path : str, optional
        ARF file name for messages (default ``arf.path``).
    rtol, atol_kev : float
        Tolerance of the energy comparison (float32 storage gives ~1e-7 relative).

    Returns
    -------
    ArfPairing

    Raises
    ------
    BadFileError
        If the row counts differ.
    """
    path = path if path is not None else arf.path
    n_rmf, n_arf = rmf.n_energies, len(arf.specresp)
    if n_rmf != n_arf:
        raise BadFileError(
            f"ARF has {n_arf} energy rows but the RMF{' ' + os.path.basename(rmf.path) if rmf.path else ''} has "
            f"{n_rmf}; XSPEC pairs them row by row", path=path, field="SPECRESP")
    lo_a, hi_a = np.asarray(arf.energ_lo, float), np.asarray(arf.energ_hi, float)
    lo_r, hi_r = np.asarray(rmf.energ_lo, float), np.asarray(rmf.energ_hi, float)
    d = np.maximum(np.abs(lo_a - lo_r), np.abs(hi_a - hi_r))
    tol = atol_kev + rtol * np.maximum(np.abs(lo_r), np.abs(hi_r))
    bad = d > tol
    note = None
    if np.any(bad):
        zero_width = int(np.sum(hi_a <= lo_a))
        note = (f"{os.path.basename(path) if path else 'ARF'}: energy columns differ from the RMF grid in "
                f"{int(bad.sum())} of {n_rmf} rows (up to {float(d.max()):.3g} keV; {zero_width} zero-width bins); "
                f"applied by row index as XSPEC does")
    return ArfPairing(specresp=np.asarray(arf.specresp, dtype=np.float64), energies_match=not np.any(bad),
                      note=note, max_offset_kev=float(d.max()) if d.size else 0.0)


def _area(rmf, arf):
    if arf is None:
        return None
    if isinstance(arf, ArfPairing):
        area = arf.specresp
    elif isinstance(arf, Arf):
        area = pair_arf(rmf, arf).specresp
    else:
        area = np.asarray(arf, dtype=np.float64)
    if area.shape != (rmf.n_energies,):
        raise BadConfigError(f"ARF must have {rmf.n_energies} values (one per RMF energy row), got {area.shape}",
                             field="arf")
    return area


def effective_matrix(rmf, arf=None):
    """Folding matrix: RMF rows scaled by the ARF (cm^2 × probability), as CSR.

    ``counts_per_s = flux @ effective_matrix(rmf, arf)`` for a photon flux per energy bin
    (photons cm^-2 s^-1). ``arf`` may be an :class:`Arf`, an :class:`ArfPairing`, an array
    of ``n_e`` areas, or None (matrix returned as float64 copy). Model code caches the result.
    """
    m = rmf.matrix.tocsr().astype(np.float64, copy=True)
    area = _area(rmf, arf)
    if area is not None:
        m.data *= np.repeat(area, np.diff(m.indptr))
    return m


def fold(response, photon_flux_per_bin, arf=None):
    """Fold a photon spectrum through the response: counts s^-1 per channel.

    ``C_c = Σ_j F_j a_j R_jc`` (spec §3.4) with F the bin-integrated photon flux on the
    RMF energy grid and a the ARF (1 if None). Multiply by the exposure for counts.

    Parameters
    ----------
    response : Response, or a CSR matrix from :func:`effective_matrix` (then ``arf`` must be None)
    photon_flux_per_bin : array, shape (n_e,)
    arf : Arf, ArfPairing, array or None

    Returns
    -------
    ndarray of float64, shape (n_chan,)
    """
    if sp.issparse(response):
        if arf is not None:
            raise BadConfigError("arf must be None when folding through a precomputed matrix", field="arf")
        matrix = response
    else:
        matrix = response.matrix64
    flux = np.asarray(photon_flux_per_bin, dtype=np.float64)
    if flux.shape != (matrix.shape[0],):
        raise BadConfigError(f"flux must have {matrix.shape[0]} values (one per energy row), got {flux.shape}",
                             field="flux")
    if arf is not None:
        flux = flux * _area(response, arf)
    return np.asarray(matrix.T @ flux, dtype=np.float64)
