"""One session state shared by every panel, scriptable from a notebook.

:class:`Session` holds the observation (both modules, with their maps), the named regions,
the background spectra (one data group per background region and module), the model
(:class:`~nuskybgd_engine.workflow.BackgroundAnalysis`), the last fit and the user's options.
All science is done by :mod:`nuskybgd_engine`; the session only keeps things consistent and
announces changes through integer traitlets that panels observe::

    data_version      observation loaded
    regions_version   a region was added, moved, renamed, removed or its role changed
    model_version     spectra or model values changed (region move, parameter, option, fit)
    fit_version       a fit finished (successfully or not)
    export_version    files were written (see ``written``)

``changed_groups`` tells observers which data groups (1-based) the last ``model_version`` bump
touched (``None``: all), so a region move redraws only its two spectra.

Scripting API (what the buttons do)
-----------------------------------
>>> s = Session(workspace="work")                        # doctest: +SKIP
>>> s.load(demo=True)                                    # or s.load("90000000002") under data_root
>>> s.add_region(CirclePixelRegion(PixCoord(380, 520), 45), "bgd5")
>>> s.move_region("bgd5", CirclePixelRegion(PixCoord(390, 520), 45))
>>> s.link_fcxb(1, 2); s.set_options(fix_line_ratios=True)
>>> s.set_parameter("apbgd", 3, 0.01); s.freeze("apbgd", 3); s.thaw("apbgd", 3)
>>> s.fit()                                              # FitResult; warnings in s.warnings
>>> s.predict("src_point")                               # {module: Prediction}
>>> s.export_xcm(); s.export_spec("src_point"); s.export_simplify("src_point")
>>> s.export_images(); s.export_prediction("src_point"); s.written
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from traitlets import Bool, HasTraits, Int, List, Unicode

from nuskybgd_engine.errors import BadConfigError, BadRegionError, FitError, NuSkyBgdError
from nuskybgd_engine.io.regions import Region, RegionSet

from .paths import numbered_path, resolve_root, resolve_under

__all__ = ["Session", "RegionItem", "ROLES", "COMPONENTS"]

ROLES = ("background", "source")
#: Background sources of the model, in display order.
COMPONENTS = ("apbgd", "intbgd", "fcxb", "intn")
_OBS_CACHE = OrderedDict()  # (obsdir, band, modules) -> ObservationProducts: a reload is instant
_OBS_CACHE_SIZE = 3


@dataclass
class RegionItem:
    """A named region: a :class:`~nuskybgd_engine.io.regions.RegionSet` (include/exclude shapes) and its role."""

    name: str
    role: str
    regions: RegionSet

    @property
    def shape(self):
        """The first shape (what the image panel drags)."""
        return self.regions[0].shape


def _as_regionset(shape, name):
    if isinstance(shape, RegionSet):
        if len(shape) == 0:
            raise BadRegionError(f"region {name!r} has no shapes", field="shape")
        return shape.copy()
    if isinstance(shape, Region):
        rs = RegionSet()
        rs.add(shape, include=True, name=name)
        return rs
    raise BadRegionError(f"region {name!r}: expected a regions shape or RegionSet, got {type(shape).__name__}",
                         field="shape")


class Session(HasTraits):
    """State of one background analysis, observed by the panels.

    Parameters
    ----------
    data_root : path-like, optional
        Observations are opened only under this directory (``None``: anywhere, for notebooks).
    workspace : path-like, optional
        Outputs are written only here (created when missing). ``None``: exports refuse to run.
    statistic : {'cstat', 'chi'}
    """

    data_version = Int(0)
    regions_version = Int(0)
    model_version = Int(0)
    fit_version = Int(0)
    export_version = Int(0)
    busy = Bool(False)
    status = Unicode("")
    #: ``[(level, text)]`` of recent errors and notes (level: 'error', 'warning', 'info').
    messages = List()
    #: Warnings of the current model/fit (apec stand-in, fcxb poorly constrained, non-convergence).
    warnings = List()
    #: Paths written by the exports, oldest first.
    written = List()

    def __init__(self, data_root=None, workspace=None, *, statistic="cstat"):
        super().__init__()
        self.data_root = resolve_root(data_root, what="data root") if data_root is not None else None
        self.workspace = resolve_root(workspace, what="workspace", create=True) if workspace is not None else None
        self.observation = None
        self.regions = []  # RegionItem, display order
        self.analysis = None
        self.result = None
        self.band = (3.0, 20.0)
        self.modules = ("A", "B")
        self.statistic = self._check_statistic(statistic)
        self.fix_line_ratios = False
        self.no_solar = False
        self.negative_norms = False
        self.changed_groups = None
        self._groups = {}  # (region name, module) -> GroupData
        self._fcxb_links = []  # [(spectrum name, spectrum name)]: survive region add/remove
        self._frozen = {}  # (source, spectrum name, local index) -> bool: user freeze/thaw overrides
        self._bgd_images = None  # cache of background_images for the current model
        self._fit_stale = False
        self._start_values_applied = False  # image-based starts are used once, before the first fit

    # ------------------------------------------------------------------------------------------
    # Messages
    # ------------------------------------------------------------------------------------------

    def say(self, text, level="info"):
        """Append a message shown in the panels (keeps the last 20)."""
        self.messages = (list(self.messages) + [(level, str(text))])[-20:]

    @staticmethod
    def _check_statistic(statistic):
        if statistic not in ("cstat", "chi"):
            raise BadConfigError(f"statistic must be cstat or chi, got {statistic!r}", field="statistic")
        return statistic

    # ------------------------------------------------------------------------------------------
    # Observation
    # ------------------------------------------------------------------------------------------

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
        import os

        if os.environ.get("NUSKYBGD_DEMO_DIR"):
            return None  # ensure_demo_observation reads it
        return self.workspace / "demo" if self.workspace is not None else None

    def load(self, obsdir=None, *, demo=False, band=None, modules=None, progress=None, demo_regions=True):
        """Open an observation: counts images, instrument maps, aspect histograms, projected maps.

        Parameters
        ----------
        obsdir : path-like, optional
            Observation directory, relative to (or inside) the data root when one is set.
        demo : bool
            Open the embedded demo observation instead (simulated on first use) and, with
            ``demo_regions``, its four suggested background regions and the source region.
        band : (float, float), optional
            keV band of the counts image (default: the current, 3–20).
        modules : sequence of {'A', 'B'}, optional
        progress : callable(str), optional
            Called with a short text before each step.
        """
        from nuskybgd_engine.demo import ensure_demo_observation
        from nuskybgd_engine.observation import prepare_observation

        band = self._check_band(band if band is not None else self.band)
        modules = tuple(modules) if modules is not None else self.modules
        if not modules or any(m not in ("A", "B") for m in modules) or len(set(modules)) != len(modules):
            raise BadConfigError(f"modules must be A and/or B, got {modules!r}", field="modules")
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
        self.observation, self.band, self.modules = obs, band, modules
        self.regions, self._groups, self._fcxb_links, self._frozen = [], {}, [], {}
        self.analysis = self.result = self._bgd_images = None
        self._start_values_applied = False
        self.warnings = []
        self.status = f"{obs.obsid}: FPM{'/'.join(modules)}, {band[0]:g}-{band[1]:g} keV"
        self.data_version += 1
        self.regions_version += 1
        self._bump_model(None)
        if demo and demo_regions:
            self._load_demo_regions(path)
        return obs

    def _load_demo_regions(self, path):
        items = []
        for reg in sorted((path / "regions").glob("bgd*.reg")):
            items.append(RegionItem(reg.stem, "background", RegionSet.read_ds9(reg)))
        src = path / "regions" / "src_point.reg"
        if src.is_file():
            items.append(RegionItem("src_point", "source", RegionSet.read_ds9(src)))
        self._set_regions(items)

    @staticmethod
    def _check_band(band):
        try:
            lo, hi = (float(b) for b in band)
        except (TypeError, ValueError):
            raise BadConfigError(f"band must be two numbers (keV), got {band!r}", field="band") from None
        if not (1.6 <= lo < hi <= 165.0):
            raise BadConfigError(f"band {lo:g}-{hi:g} keV must satisfy 1.6 <= low < high <= 165", field="band")
        return (lo, hi)

    def _need_observation(self):
        if self.observation is None:
            raise BadConfigError("load an observation first", field="observation")
        return self.observation

    @property
    def grid(self):
        """The sky pixel grid (SkyGrid) of the loaded observation."""
        return self._need_observation().grid

    # ------------------------------------------------------------------------------------------
    # Regions
    # ------------------------------------------------------------------------------------------

    def region(self, name):
        """The :class:`RegionItem` called ``name``."""
        for item in self.regions:
            if item.name == name:
                return item
        raise BadConfigError(f"no region named {name!r} (have {', '.join(self.region_names()) or 'none'})",
                             field="region")

    def region_names(self, role=None):
        """Names of the regions (of one role), in order."""
        return [r.name for r in self.regions if role is None or r.role == role]

    def _new_name(self, role):
        stem = "bgd" if role == "background" else "src"
        n = 1
        while f"{stem}{n}" in self.region_names():
            n += 1
        return f"{stem}{n}"

    @staticmethod
    def _check_role(role):
        if role not in ROLES:
            raise BadConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
        return role

    def _check_new_name(self, name):
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "{}\n\r/\\ "):
            raise BadRegionError(f"region name {name!r} must be a non-empty word (no spaces, braces or slashes)",
                                 field="name")
        if name in self.region_names():
            raise BadRegionError(f"a region named {name!r} exists already", field="name")
        return name

    def add_region(self, shape, name=None, role="background"):
        """Add a named region (a ``regions`` shape or a RegionSet); background regions get spectra.

        Returns
        -------
        RegionItem
        """
        self._need_observation()
        self._check_role(role)
        name = self._check_new_name(name if name is not None else self._new_name(role))
        item = RegionItem(name, role, _as_regionset(shape, name))
        self._set_regions(self.regions + [item])
        return item

    def add_shape(self, name, shape, include=True):
        """Add one more shape to region ``name`` (e.g. an exclude over a point source)."""
        item = self.region(name)
        rs = item.regions.copy()
        rs.add(shape, include=include, name=name if include else None)
        self._update_region(item, rs)
        return item

    def move_region(self, name, shape, index=0):
        """Replace shape ``index`` of region ``name`` (a move or resize): the live-update path."""
        item = self.region(name)
        rs = item.regions.copy()
        if not 0 <= index < len(rs):
            raise BadConfigError(f"region {name!r} has shapes 0..{len(rs) - 1}, not {index}", field="index")
        rs.replace(index, shape=shape)
        self._update_region(item, rs)
        return item

    def set_include(self, name, include, index=0):
        """Mark shape ``index`` of region ``name`` include (True) or exclude (False)."""
        item = self.region(name)
        rs = item.regions.copy()
        rs.replace(index, include=bool(include))
        if not rs.includes:
            raise BadRegionError(f"region {name!r} would have no include shape left", field="include")
        self._update_region(item, rs)
        return item

    def remove_shape(self, name, index):
        """Delete shape ``index`` of region ``name`` (the whole region when it is the last one)."""
        item = self.region(name)
        if len(item.regions) == 1:
            return self.remove_region(name)
        rs = item.regions.copy()
        rs.remove(index)
        if not rs.includes:
            raise BadRegionError(f"region {name!r} would have no include shape left", field="index")
        self._update_region(item, rs)
        return item

    def remove_region(self, name):
        """Delete region ``name`` (its spectra leave the model)."""
        item = self.region(name)
        self._set_regions([r for r in self.regions if r is not item])

    def rename_region(self, name, new_name):
        """Rename a region (its spectra are renamed; links and freezes follow)."""
        item = self.region(name)
        if new_name == name:
            return item
        self._check_new_name(new_name)
        old_spec = {f"{name}{m}": f"{new_name}{m}" for m in self.modules}
        self._fcxb_links = [(old_spec.get(a, a), old_spec.get(b, b)) for a, b in self._fcxb_links]
        self._frozen = {(s, old_spec.get(g, g), k): v for (s, g, k), v in self._frozen.items()}
        new = RegionItem(new_name, item.role, item.regions)
        self._set_regions([new if r is item else r for r in self.regions])
        return new

    def set_role(self, name, role):
        """Make region ``name`` a background or a source region."""
        item = self.region(name)
        self._check_role(role)
        if role != item.role:
            self._set_regions([RegionItem(r.name, role, r.regions) if r is item else r for r in self.regions])
        return self.region(name)

    def import_regions(self, path, role="background", name=None):
        """Read a ds9 file (under the workspace or the data root) as one named region."""
        p = self._readable(path)
        rs = RegionSet.read_ds9(p)
        first = rs[0].name
        default = first if first and first not in self.region_names() and " " not in first else Path(p).stem
        return self.add_region(rs, name if name is not None else default, role)

    def export_regions(self, names=None, coord="fk5"):
        """Write each region to ``<workspace>/<name>.reg`` (numbered if taken); returns the paths."""
        grid = self.grid
        out = []
        for n in names if names is not None else self.region_names():
            item = self.region(n)
            path = numbered_path(self._outdir(), f"{n}.reg")
            item.regions.write_ds9(path, coord=coord, grid=grid)
            out.append(path)
        self._record(out)
        return out

    def _readable(self, path):
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

    # -- keeping spectra and the model in step with the regions -----------------------------------

    def _bgd_items(self, items=None):
        return [r for r in (self.regions if items is None else items) if r.role == "background"]

    def _make_group(self, item, module):
        from nuskybgd_engine.groups import group_from_events

        obs = self._need_observation()
        mp = obs[module]
        return group_from_events(mp.events, item.regions, obs.grid, mp.maps, name=f"{item.name}{module}",
                                 group_min=30 if self.statistic == "chi" else None)

    def _set_regions(self, items):
        """Replace the region list; rebuild spectra of new background regions and the model."""
        self._need_observation()
        groups = {}
        for item in self._bgd_items(items):
            for m in self.modules:
                old = self._groups.get((item.name, m))
                groups[(item.name, m)] = old if old is not None and self._same_regions(item) \
                    else self._make_group(item, m)
        old_state = (self.regions, self._groups, self.analysis)
        self.regions, self._groups = list(items), groups
        try:
            self._rebuild()
        except NuSkyBgdError:
            self.regions, self._groups, self.analysis = old_state
            raise
        self.regions_version += 1

    def _same_regions(self, item):
        try:
            return self.region(item.name).regions is item.regions
        except BadConfigError:
            return False

    def _update_region(self, item, rs):
        """Region ``item`` now has shapes ``rs``: swap its spectra in place (fast path)."""
        from nuskybgd_engine.analysis import replace_group

        new = RegionItem(item.name, item.role, rs)
        idx = self.regions.index(item)
        if item.role != "background" or self.analysis is None:
            self.regions[idx] = new
            self.regions_version += 1
            return new
        groups = {m: self._make_group(new, m) for m in self.modules}
        changed = [self.group_index(item.name, m) for m in self.modules]
        an = self.analysis
        saved = (list(an.groups), an.state, an.model, an.result)
        try:
            for m, g in zip(self.modules, changed):
                replace_group(an, g, groups[m])
        except NuSkyBgdError:
            an.groups, an.state, an.model, an.result = saved
            raise
        self._apply_frozen()
        # A moved reference region changes the link factors of its module's other spectra too.
        changed = sorted({h for g in changed for h in an.state.dependent_groups(g)})
        self.regions[idx] = new
        for m in self.modules:
            self._groups[(item.name, m)] = groups[m]
        self._fit_stale = self.result is not None
        self.regions_version += 1
        self._bump_model(changed)
        return new

    def spectrum_names(self):
        """Names of the background spectra in data-group order (module-major: all A, then all B)."""
        return [f"{r.name}{m}" for m in self.modules for r in self._bgd_items()]

    def group_index(self, name, module):
        """1-based data group of background region ``name`` in ``module``."""
        try:
            return self.spectrum_names().index(f"{name}{module}") + 1
        except ValueError:
            raise BadConfigError(f"no background spectrum {name}{module}", field="region") from None

    def _options(self):
        from nuskybgd_engine.model.background import BackgroundOptions

        names = self.spectrum_names()
        links = [(names.index(a) + 1, names.index(b) + 1) for a, b in self._fcxb_links if a in names and b in names]
        return BackgroundOptions(fcxb_links=links, fix_line_ratios=self.fix_line_ratios, no_solar=self.no_solar,
                                 negative_norms=self.negative_norms)

    def _rebuild(self, keep_values=True):
        """A new BackgroundAnalysis for the current spectra and options, keeping free values."""
        from nuskybgd_engine.analysis import BackgroundAnalysis

        names = self.spectrum_names()
        if not names:
            self.analysis = None
            self._bump_model(None)
            return
        groups = [self._groups[(n[:-1], n[-1])] for n in names]
        old = self.analysis
        an = BackgroundAnalysis(groups, options=self._options())
        if old is not None:
            # Same response objects: reuse the folded templates (what replace_group does too).
            an.model.share_cache(old.model)
            if keep_values:
                self._carry_values(old, an)
        self.analysis = an
        self._apply_frozen()
        self._fit_stale = self.result is not None
        self._bump_model(None)

    @staticmethod
    def _carry_values(old, new):
        """Copy values of parameters free in both models, matched by (source, spectrum, local)."""
        old_names = [g.name for g in old.groups]
        for s in new.state:
            os_ = old.state[s.name]
            for k, p in enumerate(s.params, start=1):
                g, local = divmod(k - 1, s.n_par)
                spec = new.groups[g].name
                if spec not in old_names or not p.free:
                    continue
                q = os_.param(old_names.index(spec) + 1, local + 1)
                if q.free:
                    # Clipped: a norm fitted below 0 stays at 0 once the limits close again.
                    p.value = min(max(q.value, p.hard_min), p.hard_max)
        new.model.refresh_links()

    def _apply_frozen(self):
        an = self.analysis
        if an is None:
            return
        names = [g.name for g in an.groups]
        for (src, spec, local), frozen in self._frozen.items():
            if spec in names:
                p = an.state[src].param(names.index(spec) + 1, local)
                if p.link is None:
                    p.frozen = frozen

    def _bump_model(self, changed):
        self._bgd_images = None
        self.changed_groups = changed
        self.model_version += 1

    # ------------------------------------------------------------------------------------------
    # Model: options, links, parameters
    # ------------------------------------------------------------------------------------------

    def _need_analysis(self):
        if self.analysis is None:
            raise BadConfigError("add at least one background region first", field="regions")
        return self.analysis

    @property
    def fcxb_links(self):
        """fcxb norm links as 1-based data-group pairs ``(i, j)``: group j's norm = group i's."""
        return list(self._options().fcxb_links)

    def _spec(self, i):
        names = self.spectrum_names()
        if isinstance(i, str):
            if i not in names:
                raise BadConfigError(f"no background spectrum {i!r} (have {', '.join(names)})", field="fcxb_links")
            return i
        if not isinstance(i, (int, np.integer)) or not 1 <= int(i) <= len(names):
            raise BadConfigError(f"spectrum index {i!r} not in 1..{len(names)}", field="fcxb_links")
        return names[int(i) - 1]

    def link_fcxb(self, i, j):
        """Link the fcxb norm of spectrum ``j`` to that of ``i`` (indices 1-based or spectrum names)."""
        a, b = self._spec(i), self._spec(j)
        if a == b:
            raise BadConfigError(f"cannot link spectrum {a} to itself", field="fcxb_links")
        if (a, b) in self._fcxb_links:
            return
        self._set_links(self._fcxb_links + [(a, b)])

    def unlink_fcxb(self, i, j):
        """Remove the fcxb link between spectra ``i`` and ``j`` (either direction)."""
        a, b = self._spec(i), self._spec(j)
        self._set_links([p for p in self._fcxb_links if p not in ((a, b), (b, a))])

    def set_fcxb_links(self, pairs):
        """Replace all fcxb links (``[(i, j), ...]``, as in ``fcxb_config.links``)."""
        new = []
        for pair in pairs:
            try:
                i, j = pair
            except (TypeError, ValueError):
                raise BadConfigError(f"a link is a pair (i, j), got {pair!r}", field="fcxb_links") from None
            a, b = self._spec(i), self._spec(j)
            if a == b:
                raise BadConfigError(f"cannot link spectrum {a} to itself", field="fcxb_links")
            new.append((a, b))
        self._set_links(new)

    def _set_links(self, links):
        old = self._fcxb_links
        self._fcxb_links = list(links)
        try:
            self._rebuild()
        except NuSkyBgdError:
            self._fcxb_links = old
            self._rebuild()
            raise

    def set_options(self, *, fix_line_ratios=None, no_solar=None, negative_norms=None, statistic=None):
        """Change model options (rebuilds the model, keeping free values) or the fit statistic.

        ``negative_norms`` opens the norms' lower limit (see
        :class:`~nuskybgd_engine.model.background.BackgroundOptions`); closing it again clips
        negative norms to 0.
        """
        regroup = statistic is not None and self._check_statistic(statistic) != self.statistic
        if statistic is not None:
            self.statistic = statistic
        if fix_line_ratios is not None:
            self.fix_line_ratios = bool(fix_line_ratios)
        if no_solar is not None:
            self.no_solar = bool(no_solar)
        if negative_norms is not None:
            self.negative_norms = bool(negative_norms)
        if self.observation is None:
            return
        if regroup:
            self._groups = {}
            self._set_regions(list(self.regions))
        else:
            self._rebuild()

    def parameter(self, source, index):
        """The :class:`~nuskybgd_engine.model.parameters.Parameter` ``source:p<index>``."""
        return self._need_analysis().state[source][index]

    def set_parameter(self, source, index, value):
        """Set ``source:p<index>`` (global XSPEC index) to ``value``; the spectra update."""
        an = self._need_analysis()
        p = an.state[source][index]
        if p.link is not None:
            raise BadConfigError(f"{source}:p{index} is linked ({p.link}); unlink it first",
                                 field=f"{source}:p{index}")
        an.state.set_value(source, index, value)
        an.model.refresh_links()
        self._fit_stale = self.result is not None
        self._bump_model(None)

    def _key(self, source, index):
        an = self._need_analysis()
        src = an.state[source]
        src[index]  # validates
        g, local = divmod(index - 1, src.n_par)
        return (source, an.groups[g].name, local + 1)

    def freeze(self, source, index, frozen=True):
        """Freeze (or thaw with ``frozen=False``) ``source:p<index>``; linked parameters are refused."""
        p = self.parameter(source, index)
        if p.link is not None:
            raise BadConfigError(f"{source}:p{index} is linked ({p.link}); it follows its target",
                                 field=f"{source}:p{index}")
        p.frozen = bool(frozen)
        self._frozen[self._key(source, index)] = bool(frozen)
        self._bump_model(None)

    def thaw(self, source, index):
        """Let ``source:p<index>`` vary in the fit."""
        self.freeze(source, index, False)

    def freeze_component(self, source, frozen=True, *, spectra=None, names=("norm",)):
        """Freeze/thaw the unlinked parameters called ``names`` of ``source`` in some spectra.

        Parameters
        ----------
        source : {'apbgd', 'intbgd', 'fcxb', 'intn'}
        frozen : bool
        spectra : list of int or str, optional
            Data groups (1-based or spectrum names); default all.
        names : tuple of str
            Parameter names affected (default the norms, the parameters the method fits).

        Returns
        -------
        int
            How many parameters changed.
        """
        an = self._need_analysis()
        src = an.state[source]
        groups = range(1, len(an.groups) + 1) if spectra is None else \
            [self.spectrum_names().index(self._spec(s)) + 1 for s in spectra]
        n = 0
        for g in groups:
            for local in range(1, src.n_par + 1):
                p = src.param(g, local)
                if p.link is None and p.name in names and p.frozen != bool(frozen):
                    p.frozen = bool(frozen)
                    self._frozen[(source, an.groups[g - 1].name, local)] = bool(frozen)
                    n += 1
        self._bump_model(None)
        return n

    def reset_parameters(self):
        """Back to the preset model (values, freezes) for the current spectra and options."""
        self._frozen = {}
        self.result = None
        self._start_values_applied = False
        self._rebuild(keep_values=False)

    def spectrum_plot_data(self, g):
        """Noticed-bin data, errors, total and per-source model of data group ``g`` (engine's form)."""
        return self._need_analysis().spectra_for_plot(g)

    # ------------------------------------------------------------------------------------------
    # Fit and prediction
    # ------------------------------------------------------------------------------------------

    @property
    def fit_is_current(self):
        """True when the last fit belongs to the current regions and parameter values."""
        return self.result is not None and not self._fit_stale

    def fit(self):
        """Fit the background model (statistic ``self.statistic``).

        Returns the FitResult; its warnings (and the apec stand-in flag) go to ``warnings``.
        A fit that does not converge raises FitError; its message is in ``warnings`` too.
        """
        an = self._need_analysis()
        self.busy = True
        try:
            if self.result is None and not self._start_values_applied:
                # First fit of these regions: start from the counts image, not from the presets.
                from nuskybgd_engine.startvalues import apply_start_values

                try:
                    apply_start_values(an, self._need_observation())
                    self._start_values_applied = True
                except NuSkyBgdError as exc:
                    self.say(f"image-based starting values not used: {exc}", "warning")
            result = an.fit(self.statistic)
        except FitError as exc:
            self.result = an.result
            self._fit_stale = False
            self.warnings = [str(exc)] + list(getattr(an.result, "warnings", []) or [])
            self.fit_version += 1
            self._bump_model(None)
            raise
        finally:
            self.busy = False
        self.result = result
        self._fit_stale = False
        self.warnings = list(result.warnings)
        self.fit_version += 1
        self._bump_model(None)
        return result

    @property
    def apec_standin(self):
        """True when apec is evaluated with the bremss stand-in (no AtomDB): shown with every result."""
        return self.analysis is not None and self.analysis.apec.evaluated_by != "pyxspec"

    def _fitted(self):
        an = self._need_analysis()
        if not self.fit_is_current or an.result is None:
            raise FitError("fit the background first (regions or parameters changed since the last fit)"
                           if self.result is not None else "fit the background first", field="fit")
        return an

    def predict(self, region_name, band=(3.0, 20.0)):
        """Predicted background counts (± 1σ, stat ⊕ sys) in a region, per module.

        Returns
        -------
        dict
            ``{module: Prediction}`` for each module with fitted spectra.
        """
        from nuskybgd_engine.model.background import region_weights

        an = self._fitted()
        band = self._check_band(band)
        item = self.region(region_name)
        obs = self._need_observation()
        out = {}
        for m in self.modules:
            if m in an.state.modules:
                w = region_weights(item.regions, obs.grid, obs[m].maps, name=f"{item.name}{m}")
                out[m] = an.predict(w, band=band)
        return out

    def background_images(self, band=None, modules=None):
        """Model background images per module and component (engine ``background_images``), cached.

        ``modules``: compute only these (e.g. the one the image panel shows); default all fitted.
        """
        from nuskybgd_engine.workflow import background_images

        band = self._check_band(band if band is not None else self.band)
        modules = tuple(modules) if modules is not None else None
        key = (band, modules)
        if self._bgd_images is not None and self._bgd_images[0] == key:
            return self._bgd_images[1]
        an = self._need_analysis()
        an.maps = {m: self.observation[m].maps for m in self.modules}
        images = background_images(an, band, modules=modules)
        self._bgd_images = (key, images)
        return images

    # ------------------------------------------------------------------------------------------
    # Exports (workspace only, numbered names, listed in ``written``)
    # ------------------------------------------------------------------------------------------

    def _outdir(self):
        if self.workspace is None:
            raise BadConfigError("no workspace folder: exports are disabled", field="workspace")
        return self.workspace

    def _record(self, paths):
        self.written = list(self.written) + [Path(p) for p in paths]
        self.export_version += 1
        return list(paths)

    def _out(self, path, default):
        if path is None:
            return numbered_path(self._outdir(), default)
        p = resolve_under(self._outdir(), path, what="path")
        if p.exists():
            return numbered_path(p.parent, p.name)
        return p

    def export_xcm(self, path=None):
        """The background model as an XSPEC ``.xcm`` (+ responses it needs) in the workspace."""
        from nuskybgd_engine.export import export_fit_xcm

        out = self._out(path, "bgd_fit.xcm")
        an = self._need_analysis()
        return self._record(export_fit_xcm(an, out, statistic=self.statistic))

    def _source_groups(self, name):
        item = self.region(name)
        return [self._make_group(item, m) for m in self.modules]

    def export_spec(self, source_name, path=None):
        """nuskybgd ``spec``: the fitted background plus the source region's spectra, linked."""
        from nuskybgd_engine.workflow import spec_export

        an = self._need_analysis()
        groups = self._source_groups(source_name)
        return self._record(spec_export(an, groups, self._out(path, f"{source_name}_spec.xcm"),
                                        statistic=self.statistic))

    def export_simplify(self, source_name, path=None):
        """nuskybgd ``simplify``: the ``spec`` session with the background spectra dropped, frozen."""
        from nuskybgd_engine.workflow import simplify_session
        from nuskybgd_engine.xcm import read_xcm, write_xcm

        written = self.export_spec(source_name)
        session = simplify_session(read_xcm(written[0]), len(self.analysis.groups))
        out = self._out(path, f"{source_name}_simple.xcm")
        write_xcm(session, out, overwrite=False)
        return written + self._record([out])

    def export_bgdspec(self, source_name, path=None):
        """Background spectra (OGIP PHA, model counts with STAT_ERR/SYS_ERR) of a source region.

        For each module the source spectrum is extracted from the events and written with its RMF,
        the background spectrum for that region from the fit is written next to it, and the source's
        BACKFILE points at it, so XSPEC/Sherpa load both with ``data src.pha``.
        """
        from nuskybgd_engine.bgdspec import background_spectrum, set_backfile, write_background_spectrum
        from nuskybgd_engine.io.ogip import write_pha
        from nuskybgd_engine.spectra.extract import extract_spectrum
        from nuskybgd_engine.spectra.responses import region_rmf
        from nuskybgd_engine.export import ExportWriter

        self._fitted()
        item = self.region(source_name)
        obs = self._need_observation()
        writer = ExportWriter(self._outdir())
        out = []
        for m in self.modules:
            # What group_from_events does, without extracting twice: the spectrum and its region RMF.
            rs = extract_spectrum(obs[m].events, item.regions, grid=obs.grid)
            region_response, _ = region_rmf(obs[m].events, rs.det_counts)
            rmf = writer.response(region_response, f"nominal{m}.rmf" if region_response.header.get("NOMINAL")
                                  else f"{source_name}{m}_sr.rmf")
            spec = rs.spectrum
            spec.header["RESPFILE"] = rmf
            src = self._out(None if path is None else f"{Path(path).stem}{m}.pha", f"{source_name}{m}_sr.pha")
            write_pha(spec, src)
            bspec = background_spectrum(self.analysis, item.regions, src, grid=obs.grid, maps=obs[m].maps)
            bgd = numbered_path(self._outdir(), f"{source_name}{m}_sr_bgd.pha")
            write_background_spectrum(bspec, bgd)
            set_backfile(src, bgd)
            out += [src, bgd]
        return self._record(list(writer.written) + out)

    def suggest_regions(self, n=4, *, replace=False):
        """Add ``n`` suggested background regions (source-free, on active area, spanning the aperture
        gradient and the four detectors); with ``replace`` the current background regions go first.

        Returns the names of the new regions (editable like drawn ones).
        """
        from nuskybgd_engine.suggest import suggest_regions

        obs = self._need_observation()
        exclude = None
        sources = [r for r in self.regions if r.role == "source"]
        if sources:
            from nuskybgd_engine.io.regions import RegionSet

            exclude = RegionSet([e for r in sources for e in r.regions])
        sugg = suggest_regions(obs, modules=self.modules, n=n, exclude=exclude)
        keep = [r for r in self.regions if not (replace and r.role == "background")]
        taken = {r.name for r in keep}
        items, names = list(keep), []
        for k, rs in enumerate(sugg.regions, start=1):
            name = f"sugg{k}"
            while name in taken:
                name += "_"
            taken.add(name)
            items.append(RegionItem(name, "background", rs))
            names.append(name)
        self._set_regions(items)
        for text in sugg.warnings:
            self.say(text, "warning")
        self.say(f"suggested {len(names)} background regions: {', '.join(names)}")
        return names

    def export_images(self, band=None, components=("total",) + COMPONENTS):
        """Background model images (counts per pixel) per module and component, as FITS."""
        from astropy.io import fits

        from nuskybgd_engine.io.fitsutil import write_fits

        band = self._check_band(band if band is not None else self.band)
        images = self.background_images(band)
        out = []
        for m, per in images.items():
            header = self.observation[m].image.header.copy()
            header["NSB_COMP"] = ("background model component", "")
            for comp in components:
                if comp not in per:
                    raise BadConfigError(f"no background component {comp!r}", field="components")
                h = header.copy()
                h["NSB_COMP"] = comp
                h["NSB_EMIN"], h["NSB_EMAX"] = band
                h["BUNIT"] = "count"
                path = numbered_path(self._outdir(), f"bgd_{comp}{m}_{band[0]:g}to{band[1]:g}keV.fits")
                write_fits(fits.PrimaryHDU(np.asarray(per[comp], dtype=np.float32), header=h), path)
                out.append(path)
        return self._record(out)

    def export_prediction(self, region_name, band=(3.0, 20.0), path=None):
        """Predicted background of a region (counts ± σ per module and component) as JSON."""
        from nuskybgd_engine.io.fitsutil import atomic_output

        pred = self.predict(region_name, band)
        out = self._out(path, f"{region_name}_bgd_predict.json")
        data = {"region": region_name, "apec_evaluated_by": self.analysis.apec.evaluated_by,
                "modules": {m: p.to_dict() for m, p in pred.items()}}
        with atomic_output(out, overwrite=False) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1, default=float) + "\n")
        return self._record([out])

    def __repr__(self):
        obs = self.observation.obsid if self.observation is not None else "no observation"
        return (f"Session({obs}; {len(self.regions)} regions, {len(self.spectrum_names())} spectra; "
                f"{'fitted' if self.fit_is_current else 'not fitted'})")
