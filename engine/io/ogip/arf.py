"""OGIP ancillary responses (CAL/GEN/92-002): :class:`Arf` (SPECRESP: ENERG_LO, ENERG_HI,
SPECRESP), read and write."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from ...errors import BadConfigError, BadFileError
from ..fitsutil import hdu_name, read_fits, require_columns, write_fits
from .keywords import (
    check_module,
    find_table,
    finite,
    header_dict,
    is_float32,
    module_of,
    native,
    set_keys,
)


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
    hdu = find_table(hdul, path, names=("SPECRESP",), clas2=("SPECRESP",), what="SPECRESP")
    ext = hdu_name(hdul, hdu)
    cols = require_columns(hdu, path, ["ENERG_LO", "ENERG_HI", "SPECRESP"], extension=ext)
    if len(cols["SPECRESP"]) == 0:
        raise BadFileError("empty ARF (no rows)", path=path, extension=ext, field="SPECRESP")
    for name, values in cols.items():
        if values.ndim != 1:
            raise BadFileError("expected one value per row", path=path, extension=ext, field=name)
        finite(values, path, ext, name)
    check_module(module_of(hdu.header), module, hdu.header, path, ext)
    return Arf(energ_lo=native(cols["ENERG_LO"]), energ_hi=native(cols["ENERG_HI"]),
               specresp=native(cols["SPECRESP"]),
               module=module_of(hdu.header), header=header_dict(hdu.header), path=os.fspath(path))


def write_arf(arf, path, overwrite=False):
    """Write ``arf`` as an OGIP ARF (primary + SPECRESP); float32 data stay float32 (``E``)."""
    if not isinstance(arf, Arf):
        raise BadConfigError(f"expected an Arf, got {type(arf).__name__}", field="arf")

    def fmt(a):
        return "E" if is_float32(a) else "D"

    hdu = fits.BinTableHDU.from_columns([
        fits.Column(name="ENERG_LO", format=fmt(arf.energ_lo), unit="keV", array=arf.energ_lo),
        fits.Column(name="ENERG_HI", format=fmt(arf.energ_hi), unit="keV", array=arf.energ_hi),
        fits.Column(name="SPECRESP", format=fmt(arf.specresp), unit="cm**2", array=arf.specresp),
    ], name="SPECRESP")
    src = dict(arf.header)
    instrume = f"FPM{arf.module}" if arf.module else src.get("INSTRUME", "NONE")
    std = [("HDUCLASS", "OGIP"), ("HDUCLAS1", "RESPONSE"), ("HDUCLAS2", "SPECRESP"), ("HDUVERS", "1.1.0"),
           ("TELESCOP", src.get("TELESCOP", "NuSTAR")), ("INSTRUME", instrume), ("FILTER", src.get("FILTER", "NONE"))]
    set_keys(hdu.header, std)
    set_keys(hdu.header, [(k, v) for k, v in src.items() if k not in hdu.header])
    primary = fits.PrimaryHDU()
    set_keys(primary.header, [(k, hdu.header[k]) for k in ("TELESCOP", "INSTRUME") if k in hdu.header])
    return write_fits(fits.HDUList([primary, hdu]), path, overwrite=overwrite)
