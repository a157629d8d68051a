"""OGIP type-I PHA spectra (OGIP/92-007): :class:`Spectrum`, read and write.

Layout of ``nuproducts`` output: primary HDU + ``SPECTRUM`` table (CHANNEL, COUNTS [, GROUPING,
QUALITY]) followed by the GTI and region (``REG00101``) extensions, which are passed through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from ...errors import BadConfigError, BadFileError
from ..fitsutil import hdu_name, read_fits, require_columns, write_fits
from ..gti import Gti, gti_from_hdu
from .keywords import (
    PRIMARY_KEYS,
    check_module,
    finite,
    float_keyword,
    header_dict,
    module_of,
    native,
    set_keys,
)


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
    channel, values = native(cols["CHANNEL"]), native(cols[data_col])
    if values.ndim != 1 or channel.ndim != 1:
        raise BadFileError("vector column: type II PHA files are not supported", path=path, extension=ext,
                           field=data_col)
    if len(channel) == 0:
        raise BadFileError("empty spectrum (no rows)", path=path, extension=ext, field="CHANNEL")
    if channel.dtype.kind not in "iu":
        if not np.all(np.isfinite(channel)) or np.any(channel != np.round(channel)):
            raise BadFileError("channel numbers must be integers", path=path, extension=ext, field="CHANNEL")
        channel = channel.astype(np.int64)
    finite(values, path, ext, data_col)
    found = module_of(hdr)
    check_module(found, module, hdr, path, ext)
    exposure = float_keyword(hdr, "EXPOSURE", path, ext, positive=(data_col == "RATE"))
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
            scales[key] = finite(require_columns(spec, path, [key], extension=ext)[key].astype(float), path, ext, key)
        else:
            scales[key] = float_keyword(hdr, key, path, ext, default=1.0)
    grouping = quality = None
    if "GROUPING" in names:
        grouping = native(require_columns(spec, path, ["GROUPING"], extension=ext)["GROUPING"])
        if not np.all(np.isin(grouping, (-1, 0, 1))):
            raise BadFileError("GROUPING values must be 1, -1 or 0", path=path, extension=ext, field="GROUPING")
    if "QUALITY" in names:
        quality = native(require_columns(spec, path, ["QUALITY"], extension=ext)["QUALITY"])
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
        header=header_dict(hdr),
        path=os.fspath(path),
        gti=gti,
        extra_hdus=extra,
    )


def build_spectrum_hdu(spectrum):
    """Build the SPECTRUM BinTableHDU (nuproducts layout) of ``spectrum``.

    :func:`write_pha` writes it as a file; callers that put a spectrum into a file of their own
    (``bgdspec`` writes several SPECTRUM extensions) use it directly.

    Returns
    -------
    astropy.io.fits.BinTableHDU
    """
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
    set_keys(h, std)
    managed = {k for k, _ in std} | {"HDUCLAS4", "GROUPING", "QUALITY"}
    set_keys(h, [(k, v) for k, v in src.items() if k not in managed and k not in h])
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
    spec_hdu = build_spectrum_hdu(spectrum)
    primary = fits.PrimaryHDU()
    set_keys(primary.header, [(k, spec_hdu.header[k]) for k in PRIMARY_KEYS if k in spec_hdu.header])
    hdus = [primary, spec_hdu]
    names = {str(h.header.get("EXTNAME", "")).upper() for h in spectrum.extra_hdus}
    for h in spectrum.extra_hdus:
        hdus.append(h.copy() if hasattr(h, "copy") else h)
    if spectrum.gti is not None and not names & {"GTI", "STDGTI"}:
        gti = fits.BinTableHDU.from_columns(
            [fits.Column(name="START", format="D", unit="s", array=spectrum.gti.start),
             fits.Column(name="STOP", format="D", unit="s", array=spectrum.gti.stop)], name="GTI")
        set_keys(gti.header, [("HDUCLASS", "OGIP"), ("HDUCLAS1", "GTI"), ("HDUCLAS2", "STANDARD")])
        hdus.append(gti)
    return write_fits(fits.HDUList(hdus), path, overwrite=overwrite)
