"""Independent validation of nuskybgd-widgets: a simulator written from the method spec alone.

Nothing in this package imports ``nuskybgd_engine`` (a test checks it): the geometry, the energy
response, the component spectra and the aspect mapping are re-implemented here from
``../shared/spec/method.md``, so that what the engine and this simulator share is only the
published method and the public nuskybgd auxiliary files, not code.
"""

from .simobs import BANDS, COMPONENTS, GRXE, REGIONS_DET1, ValidationSpec, simulate, write_gaussian_rmf

__all__ = ["BANDS", "COMPONENTS", "GRXE", "REGIONS_DET1", "ValidationSpec", "simulate", "write_gaussian_rmf"]
