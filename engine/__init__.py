"""nuskybgd_engine: the NuSTAR background method (Wik et al. 2014), pure computation.

The engine never imports the widgets (or ipywidgets/bqplot); data flows one way:
io -> maps/spectra -> model -> fit -> outputs.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: F401  (re-exported public API)
    BadConfigError,
    BadFileError,
    BadRegionError,
    CalibrationNotFoundError,
    FitError,
    NuSkyBgdError,
    OutputExistsError,
)
