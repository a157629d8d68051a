"""nuskybgd_widgets: Jupyter panels over one session state that calls :mod:`nuskybgd_engine`."""

__version__ = "0.1.0"
