"""Applying an ARF to an RMF and folding a photon spectrum through them.

XSPEC applies an ARF to an RMF by row index, so :func:`pair_arf` does the same (``be.arf`` has
corrupt energy columns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ...errors import BadConfigError, BadFileError
from .arf import Arf


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
