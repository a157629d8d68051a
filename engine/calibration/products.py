"""Calibration products as in-memory objects, whatever source serves them.

Every loader asks the resolver (:func:`~nuskybgd_engine.calibration.resolve`) where a file
comes from — explicit path > ``$NUSKYBGD_AUXIL`` > ``$CALDB`` > user cache > embedded nominal
calibration — reads the real file when there is one and otherwise evaluates the nominal
approximation (:mod:`~nuskybgd_engine.calibration.nominal`). The source of each product is kept
in :attr:`ModuleCalibration.sources` so results can say what they were computed with.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadFileError
from .resolver import resolve

__all__ = [
    "ModuleCalibration",
    "module_calibration",
    "load_ratios",
    "load_aperture_det1",
    "load_pixel_maps",
    "load_arf",
    "load_rmf",
    "load_diag_rmf",
]


def _nominal():
    from . import nominal

    return nominal


def load_ratios(path=None):
    """The model presets (ratios.json) as a dict; returns (presets, source)."""
    found = resolve("ratios.json", path=path)
    if found.source == "nominal":
        return _nominal().ratios(), found.source
    try:
        with open(found.path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BadFileError(f"cannot read the model presets: {exc}", path=found.path) from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or len(models) != 4:
        raise BadFileError("expected a 'models' list of 4 entries (apbgd, intbgd, fcxb, intn)", path=found.path,
                           field="models")
    return data, found.source


def load_aperture_det1(module):
    """DET1 aperture map (360×360, 10–15 keV counts per pixel per 10⁵ s) and its source."""
    from ..maps.aperture import aperture_map_det1

    sources = (resolve(f"det{module}_det1.img.gz").source, resolve("nomapbgdparams.dat").source)
    return aperture_map_det1(module), sources


def load_pixel_maps(module):
    """(pixmap, detnum) DET1 maps of the module (−1 off the detectors) and their source."""
    from ..maps.instrmap import load_pixel_maps as _load

    pix, det, _ = _load(module)
    return pix, det, resolve(f"detnum{module}.fits").source


def load_diag_rmf(path=None):
    """The identity response ``diag.rmf`` as a :class:`~nuskybgd_engine.io.ogip.Response` (cached)."""
    return _load_diag_rmf(None if path is None else str(path), _env_key())


@functools.lru_cache(maxsize=4)
def _load_diag_rmf(path, env):
    from ..io.ogip import Response, read_rmf

    found = resolve("diag.rmf", path=path)
    if found.source != "nominal":
        return read_rmf(found.path), found.source
    lo, hi, emin, emax, matrix = _nominal().diag_rmf()
    return Response(energ_lo=lo, energ_hi=hi, e_min=emin, e_max=emax, matrix=matrix, first_channel=0,
                    header={"TELESCOP": "NONE", "INSTRUME": "NONE", "NOMINAL": True}), "nominal"


def load_rmf(module, path=None):
    """A module RMF: an explicit file, else the nominal NuSTAR response.

    (Region RMFs mixed from the CALDB per-detector RMFs are built by the spectral products.)
    """
    from ..io.ogip import read_rmf

    if path is not None:
        return read_rmf(path, module=module), "path"
    return _nominal_rmf(module), "nominal"


@functools.lru_cache(maxsize=2)
def _nominal_rmf(module):
    """The nominal RMF of a module, built once (~0.3 s, 7 M elements; then read from the response
    cache in ~0.05 s) and shared by every caller.

    Stored as float32, as the CALDB RMFs (halves the size of written region RMFs); callers that
    accumulate over it (folding, sampling) convert to float64 themselves. Never modify it.
    """
    from ..io.ogip import Response
    from ..io.responsecache import built_response

    def build():
        lo, hi, emin, emax, matrix = _nominal().rmf(module)
        return Response(energ_lo=lo, energ_hi=hi, e_min=emin, e_max=emax, matrix=matrix.astype(np.float32),
                        first_channel=0, module=module,
                        header={"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "NOMINAL": True})

    # Read back from the response cache (keyed by the coefficients and the code that make it).
    here = Path(__file__).parent
    return built_response(f"nominal RMF FPM{module}", [here / "nominal.py", here / "nominal_coeffs.json"], build)


def load_arf(name, rmf, path=None):
    """ARF values of auxil file ``name`` aligned to the RMF's energy rows (by row index, as XSPEC).

    Returns
    -------
    values : ndarray (n_e,)
    source : str
    """
    from ..io.ogip import pair_arf, read_arf

    found = resolve(name, path=path)
    if found.source == "nominal":
        lo, hi, values = _nominal().arf(name)
        if len(values) != rmf.n_energies:
            raise BadFileError(f"nominal {name} has {len(values)} rows, the RMF {rmf.n_energies}", field=name)
        return np.asarray(values, dtype=float), "nominal"
    pairing = pair_arf(rmf, read_arf(found.path), path=found.path)
    return np.asarray(pairing.specresp, dtype=float), found.source


@dataclass
class ModuleCalibration:
    """Everything the simulator and the model need for one module, in memory."""

    module: str
    aperture_det1: np.ndarray
    pixmap: np.ndarray
    detnum: np.ndarray
    rmf: object
    diag_rmf: object
    be_arf: np.ndarray
    fcxb_arf: np.ndarray
    ratios: dict
    sources: dict = field(default_factory=dict)

    @property
    def instrument_map(self):
        """Instrument map values: detector + 1 on active pixels, 0 elsewhere (no bad pixels)."""
        return np.where(self.detnum >= 0, self.detnum + 1, 0).astype(np.float64)

    @property
    def nominal(self):
        """True when any product comes from the embedded nominal calibration."""
        return any("nominal" in str(v) for v in self.sources.values())

    def describe(self):
        return {k: str(v) for k, v in self.sources.items()}

    def __repr__(self):
        return f"ModuleCalibration(FPM{self.module}, sources={self.describe()})"


def _env_key():
    return (os.environ.get("NUSKYBGD_AUXIL"), os.environ.get("CALDB"), os.environ.get("NUSKYBGD_CACHE"),
            os.environ.get("XDG_CACHE_HOME"))


@functools.lru_cache(maxsize=8)
def _module_calibration(module, env):
    aperture, ap_src = load_aperture_det1(module)
    pixmap, detnum, map_src = load_pixel_maps(module)
    rmf, rmf_src = load_rmf(module)
    diag, diag_src = load_diag_rmf()
    be, be_src = load_arf("be.arf", rmf)
    fcxb, fcxb_src = load_arf(f"fcxb{module}.arf", rmf)
    ratios, ratio_src = load_ratios()
    for arr in (aperture, pixmap, detnum, be, fcxb):
        arr.setflags(write=False)
    return ModuleCalibration(module, aperture, pixmap, detnum, rmf, diag, be, fcxb, ratios, {
        "aperture": "/".join(ap_src), "pixel_maps": map_src, "rmf": rmf_src, "diag_rmf": diag_src,
        "be_arf": be_src, "fcxb_arf": fcxb_src, "ratios": ratio_src})


def module_calibration(module):
    """The :class:`ModuleCalibration` of FPM ``module`` (cached per calibration environment)."""
    module = str(module).upper().removeprefix("FPM")
    return _module_calibration(module, _env_key())
