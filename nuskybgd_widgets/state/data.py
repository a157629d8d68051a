"""Where the session reads and writes, and the observations it has open.

:class:`DataState` holds the data root and workspace (fixed for a session) and, as observable
traits, the loaded observations (:class:`~nuskybgd_engine.observation.ObservationProducts` keyed
by a name, ``keys`` in load order), the one shown in the image (``shown``, ``observation``), their
band and modules, a one-line status (with the user GTI applied, if any) and a busy flag.
Several observations are visits of one field fitted jointly (issue 15): every background region
gives spectra in each of them.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from nuskybgd_engine.demo import ensure_demo_observation
from nuskybgd_engine.errors import BadConfigError, NuSkyBgdError
from nuskybgd_engine.io.gti import gti_paths, read_gti
from nuskybgd_engine.observation import prepare_observation
from traitlets import Any, Bool, HasTraits, Tuple, Unicode

from ..paths import numbered_path, resolve_root, resolve_under

__all__ = ["DataState", "check_band", "check_key"]

_OBS_CACHE = OrderedDict()  # (obsdir, band, modules, usrgti, drop_invalid) -> ObservationProducts: a reload is instant
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


def check_key(key):
    """An observation key: a short name without spaces (it prefixes spectrum and file names), else
    BadConfigError."""
    key = str(key).strip()
    if not key or len(key) > 40 or not all(c.isalnum() or c in "-_." for c in key):
        raise BadConfigError(f"observation key must be 1-40 letters, digits, '-', '_' or '.', got {key!r}",
                             field="key")
    return key


class DataState(HasTraits):
    """The observations and the session's folders.

    Parameters
    ----------
    data_root : path-like, optional
        Observations are opened only under this directory (``None``: anywhere, for notebooks).
    workspace : path-like, optional
        Outputs are written only here (created when missing). ``None``: exports refuse to run.
    """

    #: The shown ObservationProducts (None before a load): the image panel draws it.
    observation = Any(None, allow_none=True)
    #: Keys of the loaded observations, in load order (data-group order of the joint model).
    keys = Tuple()
    #: Key of the shown observation ("" before a load).
    shown = Unicode("")
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
        self.products = {}  # key -> ObservationProducts, load order (replaced whole on a change)

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

    def gti_files(self, usrgti):
        """User GTI file(s) (a path, comma-separated paths or a list) resolved under the workspace or
        the data root; each is read once to validate it (a one-line error naming the file)."""
        paths = tuple(self.readable(p) for p in gti_paths(usrgti))
        for p in paths:
            read_gti(p)
        return paths

    def open(self, obsdir=None, *, demo=False, band=None, modules=None, progress=None, usrgti=None,
             drop_invalid=False, visit=1):
        """Prepare (or take from the cache) an observation's products without showing them.

        ``usrgti``: user GTI file(s) (nuproducts ``usrgtifile``; see :meth:`gti_files`) intersected
        with the event GTIs; ``drop_invalid``: leave out events with values outside TLMIN..TLMAX
        instead of refusing the file; ``visit``: which visit of the demo field (see
        :data:`~nuskybgd_engine.demo.DEMO_VISITS`). Returns ``(products, band, modules, path)``; :meth:`show`
        makes them the loaded observation, :meth:`add` one more.
        """
        band = check_band(band if band is not None else self.band)
        modules = _check_modules(modules if modules is not None else self.modules)
        gti_files = self.gti_files(usrgti)  # validated before the long preparation
        if demo:
            path = ensure_demo_observation(self.demo_dir(), progress=progress, visit=visit).resolve()
        else:
            if obsdir is None:
                raise BadConfigError("choose an observation directory", field="obsdir")
            if self.data_root is not None:
                path = resolve_under(self.data_root, obsdir, what="obsdir", must_exist=True)
            else:
                path = Path(obsdir).resolve()
        key = (str(path), band, modules, tuple(map(str, gti_files)), bool(drop_invalid))
        self.busy = True
        try:
            if key in _OBS_CACHE:
                _OBS_CACHE.move_to_end(key)
                obs = _OBS_CACHE[key]
                if progress:
                    progress("cached")
            else:
                obs = prepare_observation(path, band=band, modules=modules, progress=progress,
                                          gti=[str(p) for p in gti_files] or None, drop_invalid=bool(drop_invalid))
                _OBS_CACHE[key] = obs
                while len(_OBS_CACHE) > _OBS_CACHE_SIZE:
                    _OBS_CACHE.popitem(last=False)
        finally:
            self.busy = False
        return obs, band, modules, path

    def show(self, obs, band, modules, key=None):
        """Make ``obs`` the only loaded observation, shown (observers of ``observation`` redraw)."""
        key = check_key(key if key is not None else obs.obsid)
        self.products = {key: obs}
        with self.hold_trait_notifications():
            self.band, self.modules = tuple(band), tuple(modules)
            self.keys, self.shown = (key,), key
            self.observation = obs
            self.status = self._status()

    def add(self, obs, band, modules, key=None):
        """Load ``obs`` as one more observation (same band and modules) under ``key`` (default its
        OBSID); the shown observation stays. Returns the key."""
        if not self.products:
            raise BadConfigError("load an observation first, then add others", field="observation")
        key = check_key(key if key is not None else obs.obsid)
        if key in self.products:
            raise BadConfigError(f"an observation {key!r} is loaded already: give another key", field="key")
        if tuple(modules) != self.modules or tuple(band) != self.band:
            raise BadConfigError(f"load {key} with the modules and band of the others (FPM{'/'.join(self.modules)}, "
                                 f"{self.band[0]:g}-{self.band[1]:g} keV)", field="observation")
        self.products = {**self.products, key: obs}
        with self.hold_trait_notifications():
            self.keys = tuple(self.products)
            self.status = self._status()
        return key

    def remove(self, key):
        """Unload observation ``key`` (not the last one); the first left is shown if it was."""
        self.product(key)
        if len(self.products) == 1:
            raise BadConfigError("cannot remove the only observation: load another instead", field="observation")
        self.products = {k: v for k, v in self.products.items() if k != key}
        with self.hold_trait_notifications():
            self.keys = tuple(self.products)
            if self.shown == key:
                self.shown = self.keys[0]
                self.observation = self.products[self.shown]
            self.status = self._status()

    def select(self, key):
        """Show observation ``key`` in the image (its counts, maps and the regions on its grid)."""
        obs = self.product(key)
        with self.hold_trait_notifications():
            self.shown = key
            self.observation = obs
            self.status = self._status()

    def product(self, key=None):
        """The ObservationProducts of ``key`` (default: the shown one); BadConfigError listing the keys."""
        if key is None:
            return self.need_observation()
        if key not in self.products:
            have = ", ".join(self.products) or "none loaded"
            raise BadConfigError(f"no observation {key!r} (have {have})", field="observation")
        return self.products[key]

    @property
    def several(self):
        """True when more than one observation is loaded (a joint model)."""
        return len(self.products) > 1

    @property
    def mixed_grids(self):
        """True when the loaded observations are on different sky grids (regions then live on the sky)."""
        grids = [p.grid for p in self.products.values()]
        return any(g != grids[0] for g in grids[1:])

    def _status(self):
        obs = self.observation
        mods, (lo, hi) = self.modules, self.band
        text = f"{obs.obsid}: FPM{'/'.join(mods)}, {lo:g}-{hi:g} keV"
        if self.several:
            text = f"{self.shown} shown of {len(self.products)} observations ({', '.join(self.products)}); " + text
        if obs[mods[0]].events.header.get("USRGTI"):  # apply_gti records the user GTI files
            gti = obs[mods[0]].events.gti
            text += f"; usrgti: {len(gti)} interval{'s' if len(gti) != 1 else ''}, {gti.exposure / 1e3:.1f} ks"
        dropped = sum(obs[m].events.dropped.get("total", 0) for m in mods)
        if dropped:
            text += f"; {dropped} invalid events dropped"
        return text

    def need_observation(self):
        """The shown observation, or BadConfigError asking to load one."""
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
