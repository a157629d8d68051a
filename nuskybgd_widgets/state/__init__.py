"""Small observable state objects of a session (traitlets), one concept each.

The panels observe the traits they show; :class:`~nuskybgd_widgets.session.Session` is a facade
over them. Engine objects are changed only through engine methods.
"""

from .data import DataState
from .export import ExportState
from .fit import FitState
from .history import UndoHistory
from .model import COMPONENTS, BackgroundModelState, ModelChange, ParameterRow
from .regions import ROLES, RegionItem, RegionsState, on_sky

__all__ = ["DataState", "RegionsState", "RegionItem", "ROLES", "BackgroundModelState", "ModelChange",
           "ParameterRow", "COMPONENTS", "FitState", "ExportState", "UndoHistory", "on_sky"]
