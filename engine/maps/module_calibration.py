"""One module's calibration in memory: aperture and pixel maps, responses and presets.

:class:`ModuleCalibration` bundles what the simulator and the model need for FPM A or B, each
product from whichever source serves it (:mod:`nuskybgd_engine.calibration.products`), with
the sources recorded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..calibration.products import environment_key, load_arf, load_diag_rmf, load_ratios, load_rmf
from ..calibration.resolver import resolve
from .aperture import aperture_map_det1
from .instrmap import load_pixel_maps

__all__ = ["ModuleCalibration", "module_calibration"]


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


def _aperture_det1(module):
    """DET1 aperture map (360×360, 10–15 keV counts per pixel per 10⁵ s) and its source."""
    sources = (resolve(f"det{module}_det1.img.gz").source, resolve("nomapbgdparams.dat").source)
    return aperture_map_det1(module), sources


def _pixel_maps(module):
    """(pixmap, detnum) DET1 maps of the module (−1 off the detectors) and their source."""
    pix, det, _ = load_pixel_maps(module)
    return pix, det, resolve(f"detnum{module}.fits").source


@functools.lru_cache(maxsize=8)
def _module_calibration(module, env):
    aperture, ap_src = _aperture_det1(module)
    pixmap, detnum, map_src = _pixel_maps(module)
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
    return _module_calibration(module, environment_key())
