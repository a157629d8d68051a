"""Noise-free reference spectra of the aperture and focused-CXB components (``imrefspec``, spec §2.14).

nuskybgd-py ran XSPEC ``fakeit`` (no Poisson noise, 10⁹ s) of ``cutoffpl(1.29, 41.13, 0.002353)``
through each detector RMF with detector absorption (``det{n}{A|B}.rmf`` from ``absrmf``) and
``be.arf`` (aperture) or ``fcxb{A|B}.arf`` (focused CXB). Here the same folding is computed
directly (spec §3.4): ``C_c = T Σ_j F_j a_j R_jc`` with F the bin-integrated photon flux on the
RMF energy grid and a the ARF applied by row index.
"""

from __future__ import annotations

import numpy as np

from ..constants import N_CHANNELS
from ..errors import BadConfigError
from ..io.ogip import Spectrum, fold
from ..model.components import evaluate

__all__ = ["REFERENCE_CUTOFFPL", "REFERENCE_EXPOSURE", "reference_spectrum", "reference_spectra", "output_names"]

#: cutoffpl parameters of the reference spectra (PhoIndex, HighECut keV, norm), nuskybgd-py imrefspec.
REFERENCE_CUTOFFPL = (1.29, 41.13, 0.002353)
#: Exposure (s) of the reference spectra.
REFERENCE_EXPOSURE = 1.0e9


def output_names(module, detector):
    """``(aperbgd{A}_det{n}.pha, fcxbbgd{A}_det{n}.pha)`` — the seed's names."""
    return f"aperbgd{module}_det{detector}.pha", f"fcxbbgd{module}_det{detector}.pha"


def reference_spectrum(rmf, area, *, params=REFERENCE_CUTOFFPL, exposure=REFERENCE_EXPOSURE, module=None,
                       header=None):
    """Noise-free folded cutoffpl spectrum (counts per channel, float).

    Parameters
    ----------
    rmf : Response
    area : array (n_e,)
        ARF values aligned to the RMF rows (cm², by row index).
    params : (PhoIndex, HighECut, norm)
    exposure : float (s)
    module : {'A', 'B'}, optional
    header : dict, optional
        Extra SPECTRUM keywords (RESPFILE, ANCRFILE ...).

    Returns
    -------
    Spectrum
    """
    try:
        exposure = float(exposure)
    except (TypeError, ValueError):
        raise BadConfigError(f"exposure must be a number, got {exposure!r}", field="exposure") from None
    if not np.isfinite(exposure) or exposure <= 0:
        raise BadConfigError(f"exposure must be positive, got {exposure}", field="exposure")
    edges = np.append(np.asarray(rmf.energ_lo, float), float(rmf.energ_hi[-1]))
    flux = evaluate("cutoffpl", edges, tuple(float(p) for p in params))
    rate = fold(rmf, flux, np.asarray(area, dtype=np.float64))
    hdr = {"TELESCOP": "NuSTAR", "HDUCLAS2": "TOTAL", "POISSERR": False, "CREATOR": "nuskybgd_engine refspec",
           "MODEL": f"cutoffpl({params[0]:g},{params[1]:g},{params[2]:g})", "LIVETIME": exposure}
    hdr.update(header or {})
    channel = np.asarray(rmf.channel) if rmf.channel is not None else np.arange(N_CHANNELS)
    return Spectrum(channel=channel, counts=rate * exposure, exposure=exposure, backscal=1.0, areascal=1.0,
                    module=module, header=hdr)


def reference_spectra(module, rmf, be_area, fcxb_area, *, detector=None, params=REFERENCE_CUTOFFPL,
                      exposure=REFERENCE_EXPOSURE, rmf_name=None, be_name="be.arf", fcxb_name=None):
    """The aperture (``be.arf``) and focused-CXB (``fcxb``) reference spectra of one detector RMF.

    Returns
    -------
    (Spectrum, Spectrum)
        Aperture and fcxb spectra; RESPFILE/ANCRFILE name the files used.
    """
    common = {"DETNAM": f"DET{detector}" if detector is not None else "NONE"}
    if rmf_name:
        common["RESPFILE"] = rmf_name
    aper = reference_spectrum(rmf, be_area, params=params, exposure=exposure, module=module,
                              header={**common, "ANCRFILE": be_name})
    fcxb = reference_spectrum(rmf, fcxb_area, params=params, exposure=exposure, module=module,
                              header={**common, "ANCRFILE": fcxb_name or f"fcxb{module}.arf"})
    return aper, fcxb
