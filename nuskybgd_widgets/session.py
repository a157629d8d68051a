"""One session of a background analysis, shared by every panel and scriptable from a notebook.

:class:`Session` is a thin facade over small state objects whose user-visible fields are
observable traitlets (what the panels observe), in the manner of glue-jupyter's state classes:

``session.data``     :class:`~.state.data.DataState` — folders, ``observation``, ``band``, ``modules``, ``status``
``session.regions``  :class:`~.state.regions.RegionsState` — ``items`` (named regions, their roles)
``session.model``    :class:`~.state.model.BackgroundModelState` — ``analysis``, ``spectra``, options,
                     ``fcxb_links``, ``parameters`` (table rows) and ``change`` (what to redraw)
``session.fitting``  :class:`~.state.fit.FitState` — ``result``, ``warnings``; ``current``
``session.exports``  :class:`~.state.export.ExportState` — ``written``
``session.history``  :class:`~.state.history.UndoHistory` — ``can_undo``, ``can_redo``

All science is done by :mod:`nuskybgd_engine`; engine objects change only through engine methods.
The session coordinates edits that touch several states (a region edit makes spectra before the
region list changes) and keeps the scripting API of the buttons.

Scripting API (what the buttons do)
-----------------------------------
>>> s = Session(workspace="work")                        # doctest: +SKIP
>>> s.load(demo=True)                                    # or s.load("90000000002") under data_root
>>> s.add_observation("90000000003")                     # a second visit: one joint model
>>> s.show_observation("90000000003")                    # the image shows that visit
>>> s.add_region(CirclePixelRegion(PixCoord(380, 520), 45), "bgd5")
>>> s.move_region("bgd5", CirclePixelRegion(PixCoord(390, 520), 45))
>>> s.link_fcxb(1, 2); s.set_options(fix_line_ratios=True)
>>> s.set_parameter("apbgd", 3, 0.01); s.freeze("apbgd", 3); s.thaw("apbgd", 3)
>>> s.fit()                                              # FitResult; warnings in s.warnings
>>> s.undo(); s.redo()                                   # parameter edits, freezes and fits
>>> s.set_fit_range(3, 79)                               # XSPEC ignore **-3 79-**
>>> s.predict("src_point")                               # {module: Prediction}
>>> s.export_xcm(); s.export_spec("src_point"); s.export_simplify("src_point")
>>> s.export_images(); s.export_prediction("src_point"); s.export_bgdinfo(); s.written
"""

from __future__ import annotations

from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.suggest import suggest_regions
from traitlets import HasTraits, List

from .state import (
    COMPONENTS,
    ROLES,
    BackgroundModelState,
    DataState,
    ExportState,
    FitState,
    RegionItem,
    RegionsState,
    UndoHistory,
    on_sky,
)
from .state.data import check_key

__all__ = ["Session", "RegionItem", "ROLES", "COMPONENTS"]


def _forward(state, name):
    """A session method that calls ``session.<state>.<name>`` (same signature and docstring)."""

    def method(self, *args, **kwargs):
        return getattr(getattr(self, state), name)(*args, **kwargs)

    target = getattr({"data": DataState, "regions": RegionsState, "model": BackgroundModelState,
                      "fitting": FitState, "exports": ExportState}[state], name)
    method.__name__ = name
    method.__doc__ = f"{target.__doc__}\n\n(``session.{state}.{name}``)"
    return method


def _recorded(state, name, label):
    """A forwarded method whose change of the parameters is one undo step (``label``)."""
    forward = _forward(state, name)

    def method(self, *args, **kwargs):
        with self.history.step(label):
            return forward(self, *args, **kwargs)

    method.__name__, method.__doc__ = name, forward.__doc__ + "\n\nUndone by :meth:`Session.undo`."
    return method


def _view(state, name, doc):
    return property(lambda self: getattr(getattr(self, state), name), doc=f"{doc} (``session.{state}.{name}``)")


class Session(HasTraits):
    """State of one background analysis, observed by the panels.

    Parameters
    ----------
    data_root, workspace : path-like, optional
        Where observations are read and outputs written (see :class:`~.state.data.DataState`).
    statistic : {'cstat', 'chi'}
    """

    #: ``[(level, text)]`` of recent errors and notes (level: 'error', 'warning', 'info').
    messages = List()

    def __init__(self, data_root=None, workspace=None, *, statistic="cstat"):
        super().__init__()
        self.data = DataState(data_root, workspace)
        self.regions = RegionsState()
        self.model = BackgroundModelState(self.data, statistic)
        self.fitting = FitState(self.model, say=self.say)
        self.exports = ExportState(self.regions, self.model, self.fitting)
        self.history = UndoHistory(self.model)

    def say(self, text, level="info"):
        """Append a message shown in the panels (keeps the last 20)."""
        self.messages = (list(self.messages) + [(level, str(text))])[-20:]

    # -- read-only views of the states -----------------------------------------------------------

    data_root = _view("data", "data_root", "Observations are opened only under this directory")
    workspace = _view("data", "workspace", "Outputs are written only here")
    observation = _view("data", "observation", "The shown ObservationProducts")
    observation_keys = _view("data", "keys", "Keys of the loaded observations (several: one joint model)")
    shown = _view("data", "shown", "Key of the observation shown in the image")
    band = _view("data", "band", "keV band of the counts image")
    modules = _view("data", "modules", "Modules loaded")
    status = _view("data", "status", "One line about what is loaded")
    grid = _view("data", "grid", "The sky pixel grid (SkyGrid) of the loaded observation")
    analysis = _view("model", "analysis", "The engine's BackgroundAnalysis (None without background regions)")
    statistic = _view("model", "statistic", "Fit statistic")
    fix_line_ratios = _view("model", "fix_line_ratios", "Line ratios fixed")
    no_solar = _view("model", "no_solar", "Solar components off")
    negative_norms = _view("model", "negative_norms", "Norms may go below 0")
    apec_standin = _view("model", "apec_standin", "apec evaluated with the bremss stand-in")
    fcxb_links = property(lambda self: self.model.link_pairs(),
                          doc="fcxb norm links as 1-based data-group pairs (i, j): group j's norm = group i's")
    fit_range = _view("model", "ignore", "Fitted keV range (lo, hi)")
    result = _view("fitting", "result", "FitResult of the last fit")
    fit_is_current = _view("fitting", "current", "True when the last fit belongs to the current model")
    warnings = _view("fitting", "warnings", "Warnings of the last fit")
    written = _view("exports", "written", "Paths written by the exports, oldest first")

    # -- observation -----------------------------------------------------------------------------

    observation_dirs = _forward("data", "observation_dirs")
    demo_dir = _forward("data", "demo_dir")
    need_observation = _forward("data", "need_observation")

    def load(self, obsdir=None, *, demo=False, band=None, modules=None, progress=None, demo_regions=True,
             usrgti=None, drop_invalid=False, key=None, visits=1):
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
        usrgti : path-like or list, optional
            User GTI file(s) under the workspace or the data root (nuproducts ``usrgtifile``),
            intersected with the event GTIs for the images, spectra, aspect and exposure.
        drop_invalid : bool
            Leave out events with values outside their columns' TLMIN..TLMAX (a damaged file)
            instead of refusing the file.
        key : str, optional
            Name of the observation (default its OBSID): it prefixes the spectra names when
            several observations are loaded.
        visits : int
            With ``demo``: load this many visits of the demo field (1, 2 or 3; the later ones at
            other rolls, see :data:`~nuskybgd_engine.demo.DEMO_VISITS`), fitted jointly.
        """
        if visits != 1 and not demo:
            raise BadConfigError("visits is for the demo; add other observations with add_observation",
                                 field="visits")
        if key is not None:
            check_key(key)
        obs, band, modules, path = self.data.open(obsdir, demo=demo, band=band, modules=modules, progress=progress,
                                                  usrgti=usrgti, drop_invalid=drop_invalid)
        self.model.clear()
        self.fitting.clear()
        self.history.clear()
        self.regions.items = ()
        self.data.show(obs, band, modules, key)
        for visit in range(2, int(visits) + 1):
            self.add_observation(demo=visit, progress=progress)
        if demo and demo_regions:
            items = [RegionItem(reg.stem, "background", RegionSet.read_ds9(reg))
                     for reg in sorted((path / "regions").glob("bgd*.reg"))]
            src = path / "regions" / "src_point.reg"
            if src.is_file():
                items.append(RegionItem("src_point", "source", RegionSet.read_ds9(src)))
            self._commit(items)
        return obs

    def add_observation(self, obsdir=None, *, demo=False, key=None, usrgti=None, drop_invalid=False, progress=None):
        """Load one more observation (another visit of the field) with the band and modules of the
        first: every background region gets spectra in it too, fitted jointly with the engine's
        links across observations (:mod:`nuskybgd_engine.model.joint`; see ``set_options(internal=)``).
        The shown observation stays. ``demo``: a visit number of the demo field (2 or 3).

        Returns
        -------
        str
            The observation's key (default its OBSID).
        """
        self.data.need_observation()
        if key is not None:
            check_key(key)
        visit = int(demo) if demo else 1
        obs, band, modules, _path = self.data.open(obsdir, demo=bool(demo), band=self.data.band,
                                                   modules=self.data.modules, progress=progress, usrgti=usrgti,
                                                   drop_invalid=drop_invalid, visit=visit)
        before = self.data.products
        first = next(iter(before.values())).grid
        items = list(self.regions.items)
        if obs.grid != first:  # regions are sky regions across grids: pixel shapes go through the first grid
            items = [on_sky(r, first) for r in items]
        key = self.data.add(obs, band, modules, key)
        try:
            self._commit(items)
        except Exception:
            self.data.remove(key)  # the model did not change: the spectra are built before it
            raise
        self.say(f"added observation {key}: {len(self.data.keys)} observations fitted jointly")
        return key

    def show_observation(self, key):
        """Show observation ``key`` in the image (counts, maps, regions on its grid); predictions,
        model images and exports of source regions then refer to it."""
        self.model.use_observation(key)
        self.data.select(key)
        return key

    # -- regions (each edit: spectra first, then the region list) ----------------------------------

    region = _forward("regions", "region")

    def region_names(self, role=None):
        """Names of the regions (of one role), in order."""
        return self.regions.names(role)

    def _sky(self, items):
        """Several observations on different sky grids: pixel shapes (drawn on the shown image) as sky shapes."""
        if not self.data.mixed_grids:
            return items
        return [on_sky(r, self.data.grid) for r in items]

    def _commit(self, items, renamed=None):
        self.data.need_observation()
        items = self._sky(items)
        self.history.rename(self.model.set_regions(items, renamed=renamed))  # undo steps follow renamed spectra
        self.regions.items = tuple(items)

    def _update(self, old, new, items):
        """Region ``old`` became ``new`` (same name and role): swap its spectra in place (fast path)."""
        if self.data.mixed_grids:
            new, items = on_sky(new, self.data.grid), tuple(on_sky(r, self.data.grid) if r is new else r
                                                            for r in items)
        if new.role == "background" and self.model.analysis is not None:
            self.model.update_region(old, new)
        self.regions.items = items
        return new

    def add_region(self, shape, name=None, role="background"):
        """Add a named region (a ``regions`` shape or a RegionSet); background regions get spectra.

        Returns
        -------
        RegionItem
        """
        self.data.need_observation()
        item, items = self.regions.added(shape, name, role)
        self._commit(items)
        return item

    def add_shape(self, name, shape, include=True):
        """Add one more shape to region ``name`` (e.g. an exclude over a point source)."""
        old = self.regions.region(name)
        new, items = self.regions.with_shapes(name, lambda rs: rs.add(shape, include=include,
                                                                          name=name if include else None))
        return self._update(old, new, items)

    def move_region(self, name, shape, index=0):
        """Replace shape ``index`` of region ``name`` (a move or resize): the live-update path."""
        old = self.regions.region(name)
        return self._update(old, *self.regions.moved(name, shape, index))

    def set_include(self, name, include, index=0):
        """Mark shape ``index`` of region ``name`` include (True) or exclude (False)."""
        old = self.regions.region(name)
        return self._update(old, *self.regions.with_shapes(name, lambda rs: rs.replace(index, include=bool(include))))

    def remove_shape(self, name, index):
        """Delete shape ``index`` of region ``name`` (the whole region when it is the last one)."""
        old = self.regions.region(name)
        if len(old.regions) == 1:
            return self.remove_region(name)
        return self._update(old, *self.regions.with_shapes(name, lambda rs: rs.remove(index), field="index"))

    def remove_region(self, name):
        """Delete region ``name`` (its spectra leave the model)."""
        self._commit(self.regions.removed(name))

    def rename_region(self, name, new_name):
        """Rename a region (its spectra are renamed; values, freezes and links follow)."""
        if new_name == name:
            return self.regions.region(name)
        new, items = self.regions.renamed(name, new_name)
        self._commit(items, renamed={new_name: name})
        return new

    def set_role(self, name, role):
        """Make region ``name`` a background or a source region."""
        if role != self.regions.region(name).role:
            self._commit(self.regions.with_role(name, role)[1])
        return self.regions.region(name)

    def import_regions(self, path, role="background", name=None):
        """Read a ds9 file (under the workspace or the data root) as one named region."""
        rs, name = self.regions.read_ds9(self.data.readable(path), name)
        return self.add_region(rs, name, role)

    def suggest_regions(self, n=4, *, replace=False):
        """Add ``n`` suggested background regions (source-free, on active area, spanning the aperture
        gradient and the four detectors); with ``replace`` the current background regions go first.

        Returns the names of the new regions (editable like drawn ones).
        """
        obs = self.data.need_observation()
        sugg = suggest_regions(obs, modules=self.data.modules, n=n, exclude=self.regions.sources_regionset())
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
        self._commit(items)
        for text in sugg.warnings:
            self.say(text, "warning")
        self.say(f"suggested {len(names)} background regions: {', '.join(names)}")
        return names

    # -- model -----------------------------------------------------------------------------------

    def spectrum_names(self):
        """Names of the background spectra in data-group order (module-major: all A, then all B)."""
        return list(self.model.spectra)

    group_index = _forward("model", "group_index")
    link_fcxb = _forward("model", "link_fcxb")
    unlink_fcxb = _forward("model", "unlink_fcxb")
    set_fcxb_links = _forward("model", "set_fcxb_links")
    set_parameter = _recorded("model", "set_parameter", "edit")
    freeze = _recorded("model", "freeze", "freeze")
    freeze_component = _recorded("model", "freeze_component", "freeze")
    spectrum_plot_data = _forward("model", "plot_data")
    background_images = _forward("model", "background_images")

    def set_options(self, *, fix_line_ratios=None, no_solar=None, negative_norms=None, statistic=None,
                    internal=None):
        """Change model options (rebuilds the model, keeping free values) or the fit statistic.

        ``internal`` (several observations): 'shared' (intbgd and intn one reference per module for
        all observations) or 'per_observation' (free in each; the internal background drifts).

        ``negative_norms`` opens the norms' lower limit (see
        :class:`~nuskybgd_engine.model.background.BackgroundOptions`); closing it again clips
        negative norms to 0.
        """
        self.model.set_options(fix_line_ratios=fix_line_ratios, no_solar=no_solar, negative_norms=negative_norms,
                               statistic=statistic, internal=internal)

    def parameter(self, source, index):
        """``source:p<index>`` as a :class:`~.state.model.ParameterRow` (value, frozen, link, limits)."""
        return self.model.row(source, index)

    def thaw(self, source, index):
        """Let ``source:p<index>`` vary in the fit."""
        with self.history.step("thaw"):
            self.model.freeze(source, index, False)

    def reset_parameters(self):
        """Back to the preset model (values, freezes) for the current spectra and options; the last
        fit is forgotten (the next fit starts from the counts image again)."""
        with self.history.step("reset"):
            self.fitting.clear()
            self.model.reset()

    def undo(self):
        """Undo the last parameter edit, freeze/thaw, reset or fit (values and freezes back);
        returns what was undone ('edit', 'fit', ...). BadConfigError when there is nothing to undo."""
        return self.history.undo()

    def redo(self):
        """Do the last undone step again; BadConfigError when there is nothing to redo."""
        return self.history.redo()

    def set_fit_range(self, lo, hi):
        """Fit only lo–hi keV (XSPEC ``ignore **-lo hi-**``; default 3–150); the model is rebuilt
        with the values kept. Distinct from the band of the counts image."""
        self.model.set_ignore((lo, hi))

    # -- fit, prediction, exports ------------------------------------------------------------------

    fit = _recorded("fitting", "fit", "fit")

    def predict(self, region_name, band=(3.0, 20.0)):
        """Predicted background counts (± 1σ, stat ⊕ sys) in a region, per module (``{module: Prediction}``)."""
        return self.fitting.predict(self.regions.region(region_name), band)

    export_xcm = _forward("exports", "export_xcm")
    export_bgdinfo = _forward("exports", "export_bgdinfo")
    export_spec = _forward("exports", "export_spec")
    export_simplify = _forward("exports", "export_simplify")
    export_bgdspec = _forward("exports", "export_bgdspec")
    export_images = _forward("exports", "export_images")
    export_prediction = _forward("exports", "export_prediction")
    export_regions = _forward("exports", "export_regions")

    def __repr__(self):
        obs = self.observation.obsid if self.observation is not None else "no observation"
        return (f"Session({obs}; {len(self.regions)} regions, {len(self.model.spectra)} spectra; "
                f"{'fitted' if self.fit_is_current else 'not fitted'})")
