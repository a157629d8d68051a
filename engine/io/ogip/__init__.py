"""OGIP spectral files: PHA type I spectra, RMF response matrices and ARFs (read and write).

Formats follow OGIP memos OGIP/92-007 (PHA) and CAL/GEN/92-002 (RMF, ARF). The NuSTAR
conventions are those of ``nuproducts`` output and the CALDB/auxil files (spec §2.2, §3.4, §5).
One module per format, plus the keywords they share and the folding that joins them:

* :mod:`.pha` — :class:`Spectrum`, :func:`read_pha`, :func:`write_pha`, :func:`build_spectrum_hdu`;
* :mod:`.rmf` — :class:`Response`, :func:`read_rmf`, :func:`write_rmf`;
* :mod:`.arf` — :class:`Arf`, :func:`read_arf`, :func:`write_arf`;
* :mod:`.pairing` — :func:`pair_arf` (by row index, as XSPEC), :func:`effective_matrix`, :func:`fold`;
* :mod:`.keywords` — header keywords, :func:`module_of` / :func:`check_module`, column checks.

Every name is importable from ``nuskybgd_engine.io.ogip``.
"""

from .arf import Arf, read_arf, write_arf
from .keywords import FILE_KEYWORDS, check_module, module_of
from .pairing import ArfPairing, effective_matrix, fold, pair_arf
from .pha import Spectrum, build_spectrum_hdu, read_pha, spectrum_hdus, write_pha
from .rmf import Response, read_rmf, write_rmf

__all__ = [
    "Spectrum",
    "Response",
    "Arf",
    "ArfPairing",
    "spectrum_hdus",
    "build_spectrum_hdu",
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
    "check_module",
    "FILE_KEYWORDS",
]
