"""The background model of a session: spectra of the background regions, options, links, parameters.

:class:`BackgroundModelState` owns the engine's
:class:`~nuskybgd_engine.analysis.BackgroundAnalysis` (``analysis``) and changes it only through
engine methods. What panels show is observable:

``spectra``        names of the background spectra, in data-group order (module-major; with several
                   observations observation-major, each name prefixed ``<key>_``)
``observations``   the observation key of each spectrum (one value per data group)
``fcxb_links``     the user's fcxb norm links, as spectrum-name pairs (they survive region edits)
``fix_line_ratios``, ``no_solar``, ``negative_norms``, ``statistic``, ``internal``
                   model options; setting one rebuilds the model (and is undone if that fails);
                   ``internal`` is the engine's switch for several observations (intbgd/intn
                   ``shared`` across them or free ``per_observation``, see
                   :mod:`nuskybgd_engine.model.joint`)
``parameters``     every parameter as a :class:`ParameterRow` (value, frozen, link, limits): an
                   immutable snapshot replaced on every change (equal snapshots do not notify);
                   :meth:`~BackgroundModelState.restore_parameters` sets one back (undo)
``ignore``         the fitted keV range (lo, hi), XSPEC's ``ignore **-lo hi-**`` (default 3–150)
``change``         a :class:`ModelChange` after every change of the model's values or data, with
                   the data groups whose spectra changed (what a plot must redraw)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from nuskybgd_engine.analysis import BackgroundAnalysis, ObservationView
from nuskybgd_engine.errors import BadConfigError, NuSkyBgdError
from nuskybgd_engine.groups import group_from_events
from nuskybgd_engine.model.background import BackgroundOptions, build_background_model
from nuskybgd_engine.model.joint import INTERNAL_MODES, ObservationLinks
from nuskybgd_engine.workflow import background_images
from traitlets import Any, Bool, Enum, HasTraits, Instance, Tuple, observe

from .data import check_band

__all__ = ["BackgroundModelState", "ModelChange", "ParameterRow", "COMPONENTS"]

#: Background sources of the model, in display order.
COMPONENTS = ("apbgd", "intbgd", "fcxb", "intn")
_OPTIONS = ("fix_line_ratios", "no_solar", "negative_norms", "statistic", "internal")


class ParameterRow(NamedTuple):
    """One model parameter as shown in a table (XSPEC's ``show par``)."""

    source: str  #: apbgd, intbgd, fcxb or intn
    index: int  #: global XSPEC index in the source (``source:p<index>``)
    group: int  #: data group (1-based)
    spectrum: str  #: spectrum name of the data group
    local: int  #: index within the data group (1-based)
    component: str
    name: str
    value: float  #: resolved value (links followed)
    frozen: bool
    link: str | None  #: ``= fcxb:p3`` or None
    state: str  #: free, frozen or linked
    hard_min: float
    hard_max: float


@dataclass(frozen=True, eq=False)
class ModelChange:
    """What changed in the model: ``groups`` (1-based data groups whose spectra or model changed,
    ``None``: all) and ``reason`` (regions, region, values, freeze, options, fit, reset, load)."""

    groups: tuple | None = None
    reason: str = ""


def _snapshot(an, groups=None, previous=()):
    """The ParameterRows of ``an``; with ``groups``, rows of the other data groups are taken from
    ``previous`` (a snapshot of the same layout: a region moved, the other groups unchanged)."""
    if an is None:
        return ()
    if groups is not None and len(previous) != sum(len(s.params) for s in an.state):
        groups = None
    names = [g.name for g in an.groups]
    sources = {s.name: s for s in an.state}
    values = {}

    def value(source, k):  # the engine's ModelState.value, memoised over the whole table
        key = (source, k)
        if key not in values:
            p = sources[source].params[k - 1]
            values[key] = p.value if p.link is None else p.link.factor * value(p.link.source, p.link.index)
        return values[key]

    rows = []
    for s in sources.values():
        for k, p in enumerate(s.params, start=1):
            g, local = divmod(k - 1, s.n_par)
            if groups is not None and g + 1 not in groups:
                rows.append(previous[len(rows)])
                continue
            rows.append(ParameterRow(s.name, k, g + 1, names[g], local + 1, p.component, p.name,
                                     float(value(s.name, k)), bool(p.frozen),
                                     str(p.link) if p.link is not None else None, p.state,
                                     float(p.hard_min), float(p.hard_max)))
    return tuple(rows)


def carry_settings(old, new, renamed=None):
    """Carry the user's values and freezes from analysis ``old`` to ``new`` (other spectra/options).

    Parameters are matched by (source, spectrum name, local index); ``renamed`` maps new spectrum
    names to old ones. Values move where the parameter is free in both models (clipped into the
    new limits: a norm fitted below 0 stays at 0 once the limits close again); freezes move where
    the user changed them from what the presets give the old model, onto unlinked parameters.
    """
    renamed = renamed or {}
    old_names = [g.name for g in old.groups]
    presets = build_background_model(list(old.state.modules), list(old.state.weights), old.presets, old.options)
    freezes = []
    for s in new.state:
        os_, ps = old.state[s.name], presets[s.name]
        for k, p in enumerate(s.params, start=1):
            g, local = divmod(k - 1, s.n_par)
            spec = renamed.get(new.groups[g].name, new.groups[g].name)
            if spec not in old_names:
                continue
            ko = os_.index(old_names.index(spec) + 1, local + 1)
            q = os_[ko]
            if p.free and q.free:
                new.state.set_value(s.name, k, min(max(q.value, p.hard_min), p.hard_max))
            if p.link is None and q.frozen != ps[ko].frozen:
                freezes.append((s.name, k, q.frozen))
    for name, k, frozen in freezes:  # after the values: a parameter the user froze keeps its preset value
        new.state.freeze(name, k, frozen)
    new.model.refresh_links()


class BackgroundModelState(HasTraits):
    """Spectra of the background regions and the model fitted to them.

    Parameters
    ----------
    data : DataState
        The loaded observation (spectra are extracted from its events).
    statistic : {'cstat', 'chi'}
        ``chi`` groups the spectra to ≥ 30 counts per bin.
    """

    analysis = Any(None, allow_none=True)
    spectra = Tuple()
    observations = Tuple()
    fcxb_links = Tuple()
    fix_line_ratios = Bool(False)
    no_solar = Bool(False)
    negative_norms = Bool(False)
    statistic = Enum(("cstat", "chi"), "cstat")
    internal = Enum(tuple(INTERNAL_MODES), "shared")
    parameters = Tuple()
    ignore = Tuple((3.0, 150.0))
    change = Instance(ModelChange, allow_none=True)

    def __init__(self, data, statistic="cstat"):
        super().__init__()
        self.data = data
        self._items = ()  # the region items the spectra were made from
        self._keys = ()  # the observation keys the spectra were made for
        self._regions = ()  # the region name of each data group (fcxb shared per region across observations)
        self._quiet = False  # options being set together: rebuild once, not per trait
        self._images = None  # (key, background images) of the current model
        with self._options_quiet():
            self.statistic = self.check_statistic(statistic)

    @staticmethod
    def check_statistic(statistic):
        """``statistic`` if it is cstat or chi, else BadConfigError."""
        if statistic not in ("cstat", "chi"):
            raise BadConfigError(f"statistic must be cstat or chi, got {statistic!r}", field="statistic")
        return statistic

    # -- spectra ---------------------------------------------------------------------------------

    def need_analysis(self):
        """The BackgroundAnalysis, or BadConfigError asking for background regions."""
        if self.analysis is None:
            raise BadConfigError("add at least one background region first", field="regions")
        return self.analysis

    @property
    def regions_of_groups(self):
        """The background region name of each data group (parallel to ``spectra``)."""
        return self._regions

    def spectrum_name(self, name, module, obs=None, keys=None):
        """Name of region ``name``'s spectrum in ``module`` and observation ``obs`` (default: the
        shown one): ``<name><module>``, prefixed ``<obs>_`` when several observations are loaded
        (``keys``: the loaded keys, default the data's)."""
        keys = self.data.keys if keys is None else keys
        if len(keys) <= 1:
            return f"{name}{module}"
        return f"{obs if obs is not None else self.data.shown}_{name}{module}"

    def group_index(self, name, module, obs=None):
        """1-based data group of background region ``name`` in ``module`` (and observation ``obs``,
        default the shown one)."""
        spec = self.spectrum_name(name, module, obs)
        try:
            return self.spectra.index(spec) + 1
        except ValueError:
            raise BadConfigError(f"no background spectrum {spec}", field="region") from None

    def make_group(self, item, module, obs=None):
        """The spectrum (GroupData with region weights) of region ``item`` in ``module`` of
        observation ``obs`` (default: the shown one)."""
        products = self.data.product(obs)
        mp = products[module]
        return group_from_events(mp.events, item.regions, products.grid, mp.maps,
                                 name=self.spectrum_name(item.name, module, obs),
                                 group_min=30 if self.statistic == "chi" else None)

    def set_regions(self, items, *, renamed=None, regroup=False):
        """Spectra and model for region list ``items``; unchanged regions keep their spectra.

        ``renamed`` maps new region names to old ones (their spectra, values, freezes and links
        follow); ``regroup`` extracts every spectrum again (the statistic changed). On an error
        nothing changes. Returns the spectra renamed, ``{new name: old name}``.
        """
        renamed = renamed or {}
        old_items = {r.name: r for r in self._items}
        have = {} if regroup or self.analysis is None else {g.name: g for g in self.analysis.groups}
        keys = tuple(self.data.keys)
        spec_map, groups, layout = {}, [], []
        for key in keys:  # observation-major: each observation's spectra module-major
            for m in self.data.modules:
                for item in (r for r in items if r.role == "background"):
                    name = self.spectrum_name(item.name, m, key, keys)
                    was_name = renamed.get(item.name, item.name)
                    old_name = self.spectrum_name(was_name, m, key, self._keys) if key in self._keys else None
                    if old_name is not None and old_name != name:
                        spec_map[name] = old_name  # renamed region, or the names gained the observation key
                    was = old_items.get(was_name)
                    old = have.get(old_name)
                    if old is not None and was is not None and was.regions is item.regions:
                        groups.append(old if old.name == name else replace(old, name=name))
                    else:
                        groups.append(self.make_group(item, m, key))
                    layout.append((key, item.name))
        links = self.fcxb_links
        if spec_map:
            back = {v: k for k, v in spec_map.items()}
            links = tuple((back.get(a, a), back.get(b, b)) for a, b in links)
        self._rebuild(groups, links=links, renamed=spec_map, reason="regions", layout=layout)
        self._items = tuple(items)
        return spec_map

    def update_region(self, old, new):
        """Background region ``old`` now has the shapes of ``new``: its spectra are swapped in place
        (the live path of a drag); the spectra whose link factors depend on it are redrawn."""
        an = self.need_analysis()
        groups = {self.group_index(old.name, m, key): self.make_group(new, m, key)
                  for key in self._keys for m in self.data.modules}
        an.replace_groups(groups)
        self._items = tuple(new if r is old else r for r in self._items)
        changed = sorted({h for g in groups for h in an.state.dependent_groups(g)})
        self.announce(changed, "region")

    def clear(self):
        """No spectra (a new observation): the model and the links go, the options stay."""
        self._items, self._keys, self._regions = (), (), ()
        self._publish(None, "load", fcxb_links=(), analysis=None, spectra=(), observations=())

    # -- building the model -------------------------------------------------------------------------

    def _options(self, names, links):
        pairs = [(names.index(a) + 1, names.index(b) + 1) for a, b in links if a in names and b in names]
        return BackgroundOptions(fcxb_links=pairs, fix_line_ratios=self.fix_line_ratios, no_solar=self.no_solar,
                                 negative_norms=self.negative_norms)

    def _rebuild(self, groups=None, *, links=None, renamed=None, keep_values=True, reason="options", layout=None):
        """A new BackgroundAnalysis for ``groups`` (default: the current ones) and the options,
        carrying the user's values and freezes; committed only when it builds.

        ``layout``: ``(observation key, region name)`` of each group (default: the current one).
        With several observations the engine's joint links (:class:`ObservationLinks`) tie them.
        """
        old = self.analysis
        if groups is None:
            groups = list(old.groups) if old is not None else []
        if layout is None:
            keys, regions = tuple(self.observations), self._regions
        else:
            keys, regions = tuple(k for k, _r in layout), tuple(r for _k, r in layout)
        links = self.fcxb_links if links is None else tuple(links)
        an = None
        if groups:
            joint = None
            if len(set(keys)) > 1:
                joint = ObservationLinks(keys, internal=self.internal, regions=regions)
            an = BackgroundAnalysis(groups, options=self._options([g.name for g in groups], links),
                                    ignore=self.ignore, joint=joint)
            if old is not None:
                an.model.share_cache(old.model)  # same response objects: reuse the folded templates
                if keep_values:
                    carry_settings(old, an, renamed)
            self._attach_maps(an)
        self._keys, self._regions = tuple(self.data.keys), regions
        self._publish(None, reason, fcxb_links=links, analysis=an, spectra=tuple(g.name for g in groups),
                      observations=keys)

    def _attach_maps(self, an):
        """The projected maps predictions and model images use: the shown observation's."""
        if an.joint is None:
            obs = self.data.need_observation()
            an.set_maps({m: obs[m].maps for m in self.data.modules})
            return
        an.observations = {k: ObservationView(p.grid, {m: p[m].maps for m in self.data.modules})
                           for k, p in self.data.products.items()}
        an.use_observation(self.data.shown)

    def use_observation(self, key):
        """Predictions and model images refer to observation ``key`` (the one shown)."""
        self.data.product(key)  # validates the key
        self._images = None
        if self.analysis is not None and self.analysis.joint is not None:
            self.analysis.use_observation(key)

    def set_ignore(self, band):
        """Fit only the keV range ``band`` = (lo, hi); the model is rebuilt with the user's values.
        Undone (and raised) when no spectrum has bins in it."""
        band = check_band(band, field="fit range")
        old = self.ignore
        if band == old:
            return
        self.ignore = band
        if self.analysis is None:
            return
        try:
            self._rebuild(reason="ignore")
        except NuSkyBgdError:
            self.ignore = old
            raise

    def announce(self, groups=None, reason="values"):
        """Tell observers the model's values or data changed (``groups``: data groups to redraw,
        None: all); e.g. after a fit changed the values in the engine."""
        self._publish(groups, reason)

    def _publish(self, groups, reason, **traits):
        # Every trait first (observers of one see the others consistent), then the change event.
        self._images = None
        with self.hold_trait_notifications():
            for name, value in traits.items():
                setattr(self, name, value)
            # Without new traits (the same model layout) only the changed groups' rows are rebuilt.
            self.parameters = _snapshot(self.analysis, None if traits or groups is None else set(groups),
                                        self.parameters)
        self.change = ModelChange(tuple(groups) if groups is not None else None, reason)

    def reset(self):
        """Back to the preset model (values, freezes) for the current spectra and options."""
        self._rebuild(keep_values=False, reason="reset")

    # -- options and links ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _options_quiet(self):
        """Options set inside do not rebuild one by one."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    @observe(*_OPTIONS)
    def _option_changed(self, change):
        if not self._quiet:
            self._apply_options({change["name"]: change["old"]})

    def set_options(self, **options):
        """Change several options at once (one rebuild): fix_line_ratios, no_solar, negative_norms
        (bools), statistic ('cstat'/'chi') and internal ('shared'/'per_observation'); ``None``
        values are ignored. Undone on an error."""
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise BadConfigError(f"unknown option(s) {', '.join(unknown)}", field="options")
        options = {k: v for k, v in options.items() if v is not None}
        if "statistic" in options:
            self.check_statistic(options["statistic"])
        if "internal" in options and options["internal"] not in INTERNAL_MODES:
            raise BadConfigError(f"internal must be one of {', '.join(INTERNAL_MODES)}, got {options['internal']!r}",
                                 field="internal")
        old = {k: getattr(self, k) for k in options}
        with self._options_quiet():
            for k, v in options.items():
                setattr(self, k, v if k in ("statistic", "internal") else bool(v))
        changed = {k: v for k, v in old.items() if getattr(self, k) != v}
        if changed:
            self._apply_options(changed)

    def _apply_options(self, old):
        """Rebuild for the options now set; on an error set ``old`` back, rebuild, and raise."""
        if self.data.observation is None:
            return
        try:
            if "statistic" in old:
                self.set_regions(self._items, regroup=True)
            else:
                self._rebuild()
        except NuSkyBgdError:
            with self._options_quiet():
                for k, v in old.items():
                    setattr(self, k, v)
            self.set_regions(self._items, regroup="statistic" in old)
            raise

    def _spec(self, i):
        names = list(self.spectra)
        if isinstance(i, str):
            if i not in names:
                raise BadConfigError(f"no background spectrum {i!r} (have {', '.join(names)})", field="fcxb_links")
            return i
        if not isinstance(i, (int, np.integer)) or not 1 <= int(i) <= len(names):
            raise BadConfigError(f"spectrum index {i!r} not in 1..{len(names)}", field="fcxb_links")
        return names[int(i) - 1]

    def link_pairs(self):
        """fcxb norm links as 1-based data-group pairs ``(i, j)``: group j's norm = group i's."""
        names = list(self.spectra)
        return [(names.index(a) + 1, names.index(b) + 1) for a, b in self.fcxb_links if a in names and b in names]

    def set_fcxb_links(self, pairs):
        """Replace all fcxb links (``[(i, j), ...]``, 1-based indices or spectrum names)."""
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
        self._rebuild(links=new, reason="links")

    def link_fcxb(self, i, j):
        """Link the fcxb norm of spectrum ``j`` to that of ``i`` (indices 1-based or spectrum names)."""
        a, b = self._spec(i), self._spec(j)
        if a == b:
            raise BadConfigError(f"cannot link spectrum {a} to itself", field="fcxb_links")
        if (a, b) not in self.fcxb_links:
            self._rebuild(links=self.fcxb_links + ((a, b),), reason="links")

    def unlink_fcxb(self, i, j):
        """Remove the fcxb link between spectra ``i`` and ``j`` (either direction)."""
        a, b = self._spec(i), self._spec(j)
        self._rebuild(links=[p for p in self.fcxb_links if p not in ((a, b), (b, a))], reason="links")

    # -- parameters -------------------------------------------------------------------------------

    def row(self, source, index):
        """The :class:`ParameterRow` of ``source:p<index>``."""
        self.need_analysis().state[source][index]  # validates
        return next(r for r in self.parameters if r.source == source and r.index == index)

    def restore_parameters(self, rows):
        """Values and freezes back to a ``parameters`` snapshot (e.g. an undo step).

        Rows are matched by (source, spectrum name, local index); rows of spectra no longer in the
        model and linked parameters (they follow their targets) are skipped; values are clipped
        into the current limits. Returns how many parameters changed.
        """
        an = self.need_analysis()
        names = [g.name for g in an.groups]
        n = 0
        for r in rows:
            if r.link is not None or r.spectrum not in names:
                continue
            src = an.state[r.source]
            k = src.index(names.index(r.spectrum) + 1, r.local)
            p = src[k]
            if p.link is not None:
                continue
            changed = False
            if p.frozen != r.frozen:
                an.state.freeze(r.source, k, r.frozen)
                changed = True
            value = min(max(r.value, p.hard_min), p.hard_max)
            if p.value != value:
                an.set_value(r.source, k, value)
                changed = True
            n += changed
        if n:
            self.announce(None, "values")
        return n

    def set_parameter(self, source, index, value):
        """Set ``source:p<index>`` (global XSPEC index) to ``value``; the spectra update."""
        self.need_analysis().set_value(source, index, value)
        self.announce(None, "values")

    def freeze(self, source, index, frozen=True):
        """Freeze (or thaw with ``frozen=False``) ``source:p<index>``; linked parameters are refused."""
        an = self.need_analysis()
        p = an.state[source][index]
        if p.link is not None:
            raise BadConfigError(f"{source}:p{index} is linked ({p.link}); it follows its target",
                                 field=f"{source}:p{index}")
        an.state.freeze(source, index, frozen)
        self.announce(None, "freeze")

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
        an = self.need_analysis()
        src = an.state[source]
        groups = range(1, len(an.groups) + 1) if spectra is None else \
            [self.spectra.index(self._spec(s)) + 1 for s in spectra]
        n = 0
        for g in groups:
            for local in range(1, src.n_par + 1):
                p = src.param(g, local)
                if p.link is None and p.name in names and p.frozen != bool(frozen):
                    an.state.freeze(source, src.index(g, local), bool(frozen))
                    n += 1
        self.announce(None, "freeze")
        return n

    # -- what panels draw ---------------------------------------------------------------------------

    def plot_data(self, g):
        """Noticed-bin data, errors, total and per-source model of data group ``g`` (engine's form)."""
        return self.need_analysis().spectra_for_plot(g)

    def statistic_value(self):
        """The fit statistic of the current values (not fitted)."""
        return self.need_analysis().statistic_value(self.statistic)

    @property
    def apec_standin(self):
        """True when apec is evaluated with the bremss stand-in (no AtomDB): shown with every result."""
        return self.analysis is not None and self.analysis.apec.evaluated_by != "pyxspec"

    def background_images(self, band=None, modules=None):
        """Model background images per module and component (engine ``background_images``), cached
        until the model changes. ``modules``: compute only these; default all fitted."""
        band = check_band(band if band is not None else self.data.band)
        modules = tuple(modules) if modules is not None else None
        key = (band, modules, self.data.shown)  # several observations: the shown one's images
        if self._images is not None and self._images[0] == key:
            return self._images[1]
        images = background_images(self.need_analysis(), band, modules=modules)
        self._images = (key, images)
        return images
