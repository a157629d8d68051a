"""Where the session reads and writes, and the observation it has open.

:class:`DataState` holds the data root and workspace (fixed for a session) and, as observable
traits, the loaded observation (:class:`~nuskybgd_engine.observation.ObservationProducts`), its
band and modules, a one-line status and a busy flag.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from nuskybgd_engine.demo import ensure_demo_observation
from nuskybgd_engine.errors import BadConfigError, NuSkyBgdError
from nuskybgd_engine.observation import prepare_observation
from traitlets import Any, Bool, HasTraits, Tuple, Unicode

from ..paths import numbered_path, resolve_root, resolve_under

__all__ = ["DataState", "check_band"]

_OBS_CACHE = OrderedDict()  # (obsdir, band, modules) -> ObservationProducts: a reload is instant
_OBS_CACHE_SIZE = 3


def check_band(band, field="band"):
    """``band`` as (low, high) keV floats with 1.6 <= low < high <= 165, else BadConfigError
    naming ``field``."""
    try:
        lo, hi = (float(b) for b in band)
    except (TypeError, ValueError):
        raise BadConfigError(f"{field} must be two numbers (keV), got {band!r}", field=field) from None
    if not (1.6 <= lo < hi <= 165.0):
        raise BadConfigError(f"{field} {lo:g}-{hi:g} keV must satisfy 1.6 <= low < high <= 165", field=field)
    return (lo, hi)


def _check_modules(modules):
    modules = tuple(modules)
    if not modules or any(m not in ("A", "B") for m in modules) or len(set(modules)) != len(modules):
        raise BadConfigError(f"modules must be A and/or B, got {modules!r}", field="modules")
    return modules


class DataState(HasTraits):
    """The observation and the session's folders.

    Parameters
    ----------
    data_root : path-like, optional
        Observations are opened only under this directory (``None``: anywhere, for notebooks).
    workspace : path-like, optional
        Outputs are written only here (created when missing). ``None``: exports refuse to run.
    """

    #: The loaded ObservationProducts (None before a load).
    observation = Any(None, allow_none=True)
    #: keV band of the counts image.
    band = Tuple((3.0, 20.0))
    #: Modules loaded ('A', 'B').
    modules = Tuple(("A", "B"))
    #: One line about what is loaded.
    status = Unicode("")
    #: True while an observation is being prepared.
    busy = Bool(False)

    def __init__(self, data_root=None, workspace=None):
        super().__init__()
        self.data_root = resolve_root(data_root, what="data root") if data_root is not None else None
        self.workspace = resolve_root(workspace, what="workspace", create=True) if workspace is not None else None

    # -- finding and opening observations ------------------------------------------------------------

    def observation_dirs(self):
        """Observation directories (holding ``event_cl/``) directly under the data root, sorted."""
        if self.data_root is None:
            return []
        out = []
        for p in sorted(self.data_root.iterdir()):
            try:
                if p.is_dir() and (p / "event_cl").is_dir() and p.resolve().is_relative_to(self.data_root):
                    out.append(p.name)
            except OSError:
                continue
        return out

    def demo_dir(self):
        """Where the demo lives: ``$NUSKYBGD_DEMO_DIR``, else ``<workspace>/demo``, else the user cache."""
        if os.environ.get("NUSKYBGD_DEMO_DIR"):
            return None  # ensure_demo_observation reads it
        return self.workspace / "demo" if self.workspace is not None else None

    def open(self, obsdir=None, *, demo=False, band=None, modules=None, progress=None):
        """Prepare (or take from the cache) an observation's products without showing them.

        Returns ``(products, band, modules, path)``; :meth:`show` makes them the loaded observation.
        """
        band = check_band(band if band is not None else self.band)
        modules = _check_modules(modules if modules is not None else self.modules)
        if demo:
            path = ensure_demo_observation(self.demo_dir(), progress=progress).resolve()
        else:
            if obsdir is None:
                raise BadConfigError("choose an observation directory", field="obsdir")
            if self.data_root is not None:
                path = resolve_under(self.data_root, obsdir, what="obsdir", must_exist=True)
            else:
                path = Path(obsdir).resolve()
        key = (str(path), band, modules)
        self.busy = True
        try:
            if key in _OBS_CACHE:
                _OBS_CACHE.move_to_end(key)
                obs = _OBS_CACHE[key]
                if progress:
                    progress("cached")
            else:
                obs = prepare_observation(path, band=band, modules=modules, progress=progress)
                _OBS_CACHE[key] = obs
                while len(_OBS_CACHE) > _OBS_CACHE_SIZE:
                    _OBS_CACHE.popitem(last=False)
        finally:
            self.busy = False
        return obs, band, modules, path

    def show(self, obs, band, modules):
        """Make ``obs`` the loaded observation (observers of ``observation`` redraw)."""
        with self.hold_trait_notifications():
            self.band, self.modules = tuple(band), tuple(modules)
            self.status = f"{obs.obsid}: FPM{'/'.join(modules)}, {band[0]:g}-{band[1]:g} keV"
            self.observation = obs

    def need_observation(self):
        """The loaded observation, or BadConfigError asking to load one."""
        if self.observation is None:
            raise BadConfigError("load an observation first", field="observation")
        return self.observation

    @property
    def grid(self):
        """The sky pixel grid (SkyGrid) of the loaded observation."""
        return self.need_observation().grid

    # -- the folders ----------------------------------------------------------------------------------

    def readable(self, path):
        """``path`` resolved under the workspace or the data root (anywhere when neither is set)."""
        roots = [r for r in (self.workspace, self.data_root) if r is not None]
        if not roots:
            return Path(path)
        error = None
        for root in roots:
            try:
                return resolve_under(root, path, what="path", must_exist=True)
            except NuSkyBgdError as exc:
                error = error or exc
        raise error

    def outdir(self):
        """The workspace, or BadConfigError when exports are disabled."""
        if self.workspace is None:
            raise BadConfigError("no workspace folder: exports are disabled", field="workspace")
        return self.workspace

    def output_path(self, path, default):
        """Where to write: ``default`` (or ``path``) in the workspace, numbered when the name is taken."""
        if path is None:
            return numbered_path(self.outdir(), default)
        p = resolve_under(self.outdir(), path, what="path")
        if p.exists():
            return numbered_path(p.parent, p.name)
        return p
