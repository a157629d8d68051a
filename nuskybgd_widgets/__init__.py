"""nuskybgd_widgets: Jupyter panels over one session state that calls :mod:`nuskybgd_engine`."""

__version__ = "0.1.0"

__all__ = ["Session", "App", "build_app", "__version__"]


def __getattr__(name):
    # Lazy: importing the package must not pull in ipywidgets/bqplot for the paths helpers.
    if name == "Session":
        from .session import (
            Session,  # lazy: the package alone (paths helpers) needs no ipywidgets/bqplot
        )

        return Session
    if name in ("App", "build_app"):
        from . import app  # lazy: as above

        return getattr(app, name)
    raise AttributeError(name)
