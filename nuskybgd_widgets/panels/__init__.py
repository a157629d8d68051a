"""The dashboard's panels: each a thin view over one :class:`~nuskybgd_widgets.session.Session`."""

from .base import Panel
from .data import DataPanel
from .export import ExportPanel
from .image import ImagePanel
from .links import LinksPanel
from .parameters import ParametersPanel
from .spectra import SpectraPanel

__all__ = ["Panel", "DataPanel", "ImagePanel", "LinksPanel", "SpectraPanel", "ParametersPanel", "ExportPanel"]
