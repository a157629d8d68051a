"""Writing results for XSPEC and for later steps: ``.xcm`` + the files it needs, ``NAME.json``.

Below :mod:`nuskybgd_engine.fit` in the layering (it never imports the fit or the analysis).
"""

from .fit import export_fit_xcm, save_fit_json
from .writer import ExportWriter, group_files

__all__ = ["ExportWriter", "export_fit_xcm", "group_files", "save_fit_json"]
