"""XSPEC additive table models (``atable{file}``, OGIP/92-009), e.g. the GRXE ``polarmodel.fits``.

The file has a primary header (``ADDMODEL = T``), ``PARAMETERS`` (one row per parameter: NAME,
METHOD 0 linear / 1 logarithmic, INITIAL, DELTA, MINIMUM, BOTTOM, TOP, MAXIMUM, NUMBVALS,
VALUE), ``ENERGIES`` (ENERG_LO, ENERG_HI, keV) and ``SPECTRA`` (PARAMVAL, INTPSPEC: photons
cm⁻² s⁻¹ per energy bin). As XSPEC does, the spectrum at a parameter value is interpolated
between the two bracketing tabulated spectra and redistributed onto the requested bins in
proportion to the overlap (flat within a table bin); bins outside the table get 0. One
interpolation parameter is supported (``polarmodel.fits`` has one, ``wdmass``); values
outside the tabulated range are refused rather than extrapolated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..calibration.resolver import resolve
from ..catalogue import NORM, TABLE_PARAMETERS, ParamSpec
from ..errors import BadConfigError, BadFileError, CalibrationNotFoundError
from ..io.fitsutil import read_fits
from .components import COMPONENTS, ComponentSpec

__all__ = [
    "TableModel",
    "read_table_model",
    "register_table_model",
    "table_component",
    "table_key",
    "unregister_table_model",
]


@dataclass(frozen=True, eq=False)
class TableModel:
    """An additive table model in memory (one interpolation parameter)."""

    name: str
    path: str
    parameter: ParamSpec
    method: int
    grid: np.ndarray = field(repr=False)
    e_lo: np.ndarray = field(repr=False)
    e_hi: np.ndarray = field(repr=False)
    spectra: np.ndarray = field(repr=False)

    def tabulated(self, value):
        """Photons cm⁻² s⁻¹ per table energy bin at parameter ``value`` (norm 1)."""
        v = float(value)
        g = self.grid
        if not g[0] <= v <= g[-1]:
            raise BadConfigError(f"{self.parameter.name} = {v:g} is outside the tabulated range "
                                 f"[{g[0]:g}, {g[-1]:g}] of {Path(self.path).name}",
                                 field=f"atable.{self.parameter.name}")
        k = int(np.clip(np.searchsorted(g, v, side="right") - 1, 0, len(g) - 2))
        if self.method == 1:
            t = np.log(v / g[k]) / np.log(g[k + 1] / g[k])
        else:
            t = (v - g[k]) / (g[k + 1] - g[k])
        return (1.0 - t) * self.spectra[k] + t * self.spectra[k + 1]

    def spectrum(self, edges, value):
        """The spectrum on the bin ``edges`` (keV), norm 1: overlap-weighted rebinning."""
        edges = np.asarray(edges, dtype=np.float64)
        tab = self.tabulated(value)
        # Cumulative flux at the table edges, linear inside a bin (flat density), then differenced.
        tab_edges = np.append(self.e_lo, self.e_hi[-1])
        cum = np.concatenate([[0.0], np.cumsum(tab)])
        return np.diff(np.interp(edges, tab_edges, cum, left=0.0, right=cum[-1]))


def table_key(path):
    """The component name XSPEC writes, ``atable{<file name>}``."""
    return f"atable{{{Path(path).name}}}"


def _column(hdul, ext, name, path):
    try:
        return np.asarray(hdul[ext].data[name], dtype=np.float64)
    except (KeyError, TypeError, IndexError):
        raise BadFileError(f"missing column {name}", path=path, extension=ext, field=name) from None


def read_table_model(path):
    """Read and validate an additive XSPEC table model (one interpolation parameter).

    Raises
    ------
    BadFileError
        Missing extension/column, not additive, more than one parameter, grid or energies not
        increasing, spectra of the wrong shape or non-finite.
    """
    hdul = read_fits(path, what="XSPEC table model")
    for ext in ("PARAMETERS", "ENERGIES", "SPECTRA"):
        if ext not in hdul:
            raise BadFileError(f"missing extension {ext}", path=path, extension=ext)
    if not hdul[0].header.get("ADDMODEL", False):
        raise BadFileError("not an additive table model (ADDMODEL is not T)", path=path, extension=0,
                           field="ADDMODEL")
    pars = hdul["PARAMETERS"].data
    if pars is None or len(pars) != 1 or int(hdul["PARAMETERS"].header.get("NADDPARM", 0)) != 0:
        raise BadFileError("only tables with one interpolation parameter are supported", path=path,
                           extension="PARAMETERS", field="NINTPARM")
    row = pars[0]
    try:
        name = str(row["NAME"]).strip()
        method = int(row["METHOD"])
        nvals = int(row["NUMBVALS"])
        grid = np.asarray(row["VALUE"], dtype=np.float64).ravel()[:nvals]
        initial, delta = float(row["INITIAL"]), float(row["DELTA"])
        bottom, top = float(row["BOTTOM"]), float(row["TOP"])
    except (KeyError, ValueError):
        raise BadFileError("PARAMETERS lacks NAME/METHOD/INITIAL/DELTA/BOTTOM/TOP/NUMBVALS/VALUE", path=path,
                           extension="PARAMETERS") from None
    if method not in (0, 1) or len(grid) != nvals or nvals < 2 or not np.all(np.diff(grid) > 0) \
            or (method == 1 and grid[0] <= 0):
        raise BadFileError("parameter grid must be increasing (positive for METHOD 1), METHOD 0 or 1",
                           path=path, extension="PARAMETERS", field="VALUE")
    e_lo = _column(hdul, "ENERGIES", "ENERG_LO", path)
    e_hi = _column(hdul, "ENERGIES", "ENERG_HI", path)
    if len(e_lo) < 1 or np.any(e_hi <= e_lo) or np.any(e_lo[1:] < e_hi[:-1]) or e_lo[0] < 0:
        raise BadFileError("energy bins must be increasing and not overlap", path=path, extension="ENERGIES")
    if np.any(e_lo[1:] != e_hi[:-1]):
        raise BadFileError("energy bins must be contiguous", path=path, extension="ENERGIES")
    spectra = _column(hdul, "SPECTRA", "INTPSPEC", path)
    spectra = spectra.reshape(len(spectra), -1)  # a one-bin table reads as a vector
    paramval = _column(hdul, "SPECTRA", "PARAMVAL", path).reshape(len(spectra), -1)[:, 0]
    if spectra.shape != (nvals, len(e_lo)) or not np.all(np.isfinite(spectra)):
        raise BadFileError(f"INTPSPEC must be {nvals}x{len(e_lo)} finite values, got {spectra.shape}",
                           path=path, extension="SPECTRA", field="INTPSPEC")
    if not np.allclose(paramval, grid, rtol=1e-6, atol=0):
        raise BadFileError("PARAMVAL does not follow the PARAMETERS grid", path=path, extension="SPECTRA",
                           field="PARAMVAL")
    # Hard limits = the tabulated range (no extrapolation); soft limits BOTTOM/TOP clipped to it.
    lo, hi = float(grid[0]), float(grid[-1])
    spec = ParamSpec(name, float(np.clip(initial, lo, hi)), delta, lo, max(bottom, lo), min(top, hi), hi)
    return TableModel(str(hdul[0].header.get("MODLNAME", name)).strip(), str(path), spec, method, grid,
                      e_lo, e_hi, spectra)


def table_component(table):
    """The additive :class:`ComponentSpec` ``atable{file}`` of a :class:`TableModel`."""
    key = table_key(table.path)
    return ComponentSpec(key, key, "add", (table.parameter, NORM), table.spectrum,
                         note=f"XSPEC table model {table.name} ({Path(table.path).name})")


def register_table_model(path):
    """Read ``path`` and register it in the component catalogue as ``atable{<file name>}``.

    Returns
    -------
    ComponentSpec
    """
    comp = table_component(read_table_model(path))
    COMPONENTS[comp.name] = comp
    TABLE_PARAMETERS[comp.name] = comp.parameters  # the .xcm reader/writer's parameter count and defaults
    return comp


#: The GRXE spectral table (IDL source 6), a file of nuskybgd's auxil directory.
GRXE_TABLE_FILE = "polarmodel.fits"


def register_grxe_table(cache=None):
    """Register :data:`GRXE_TABLE_FILE`, found by the calibration resolver, for the GRXE source.

    Raises
    ------
    CalibrationNotFoundError
        Neither ``$NUSKYBGD_AUXIL`` nor the auxil cache (``nuskybgd auxil fetch``) holds it.
    """
    try:
        found = resolve(GRXE_TABLE_FILE, allow_nominal=False, cache=cache)
    except CalibrationNotFoundError as exc:
        raise CalibrationNotFoundError(f"the GRXE source needs {GRXE_TABLE_FILE}: {exc.reason}",
                                       field="grxe") from None
    return register_table_model(found.path)


def unregister_table_model(name):
    """Remove ``atable{…}`` ``name`` from the catalogue (no error if absent)."""
    COMPONENTS.pop(name, None)
    TABLE_PARAMETERS.pop(name, None)
