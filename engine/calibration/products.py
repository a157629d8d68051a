"""Calibration products as in-memory objects, whatever source serves them.

Every loader asks the resolver (:func:`~nuskybgd_engine.calibration.resolve`) where a file
comes from — explicit path > ``$NUSKYBGD_AUXIL`` > ``$CALDB`` > user cache > embedded nominal
calibration — reads the real file when there is one and otherwise evaluates the nominal
approximation (:mod:`~nuskybgd_engine.calibration.nominal`); each loader returns the source
with the product, so results can say what they were computed with. The bundle of one module's
products (maps included) is :func:`nuskybgd_engine.maps.module_calibration.module_calibration`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from ..errors import BadFileError
from ..io.ogip import Response, pair_arf, read_arf, read_rmf
from ..io.responsecache import built_response
from . import nominal
from .resolver import resolve

__all__ = [
    "environment_key",
    "load_ratios",
    "load_arf",
    "load_rmf",
    "load_diag_rmf",
]


def load_ratios(path=None):
    """The model presets (ratios.json) as a dict; returns (presets, source)."""
    found = resolve("ratios.json", path=path)
    if found.source == "nominal":
        return nominal.ratios(), found.source
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


def load_diag_rmf(path=None):
    """The identity response ``diag.rmf`` as a :class:`~nuskybgd_engine.io.ogip.Response` (cached)."""
    return _load_diag_rmf(None if path is None else str(path), environment_key())


@functools.lru_cache(maxsize=4)
def _load_diag_rmf(path, env):
    found = resolve("diag.rmf", path=path)
    if found.source != "nominal":
        return read_rmf(found.path), found.source
    lo, hi, emin, emax, matrix = nominal.diag_rmf()
    return Response(energ_lo=lo, energ_hi=hi, e_min=emin, e_max=emax, matrix=matrix, first_channel=0,
                    header={"TELESCOP": "NONE", "INSTRUME": "NONE", "NOMINAL": True}), "nominal"


def load_rmf(module, path=None):
    """A module RMF: an explicit file, else the nominal NuSTAR response.

    (Region RMFs mixed from the CALDB per-detector RMFs are built by the spectral products.)
    """
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
    def build():
        lo, hi, emin, emax, matrix = nominal.rmf(module)
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
    found = resolve(name, path=path)
    if found.source == "nominal":
        lo, hi, values = nominal.arf(name)
        if len(values) != rmf.n_energies:
            raise BadFileError(f"nominal {name} has {len(values)} rows, the RMF {rmf.n_energies}", field=name)
        return np.asarray(values, dtype=float), "nominal"
    pairing = pair_arf(rmf, read_arf(found.path), path=found.path)
    return np.asarray(pairing.specresp, dtype=float), found.source


def environment_key():
    """The calibration environment (variables that change where files come from): a cache key."""
    return (os.environ.get("NUSKYBGD_AUXIL"), os.environ.get("CALDB"), os.environ.get("NUSKYBGD_CACHE"),
            os.environ.get("XDG_CACHE_HOME"))
