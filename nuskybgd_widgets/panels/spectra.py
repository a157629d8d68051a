"""Spectra panel: the selected region's spectra large, or every spectrum stacked by module; Fit.

Display only: the noticed bins the engine fits are grouped into display bins (log-spaced, or
a minimum of counts, or a minimum S/N per bin) and shown in counts/s/keV; the statistic shown is
the engine's on the fitted binning. The fit range (XSPEC's ``ignore``) is a model setting
(:meth:`Session.set_fit_range`), distinct from the band of the counts image.

Only what is on screen is redrawn: the large view of the focused region and, when the stacked
view is open, its small figures; the others are marked stale and drawn when they are shown.
"""

from __future__ import annotations

import contextlib
import html
import time

import bqplot as bq
import ipywidgets as w
import numpy as np

from nuskybgd_engine.errors import BadConfigError

from ..session import COMPONENTS
from .base import Panel, guarded

__all__ = ["SpectraPanel", "display_bins", "group_bins", "residual_range", "residual_ticks", "SOURCE_COLOURS", "ENERGY_TICKS"]

SOURCE_COLOURS = {"apbgd": "#e66100", "intbgd": "#c01c28", "fcxb": "#1a5fb4", "intn": "#613583",
                  "source": "#26a269", "total": "black", "data": "#333333"}
N_DISPLAY_BINS = 60
#: keV ticks of the log energy axis (labels never collide at these).
ENERGY_TICKS = [3, 5, 10, 20, 50, 100]
REBIN = ("log bins", "min counts", "min S/N")


def display_bins(e_lo, e_hi, n=N_DISPLAY_BINS):
    """Index of the display bin of each fit bin: ``n`` log-spaced bins over the noticed range."""
    edges = np.geomspace(float(e_lo.min()), float(e_hi.max()), n + 1)
    centre = 0.5 * (e_lo + e_hi)
    return np.clip(np.searchsorted(edges, centre, side="right") - 1, 0, n - 1), edges


def group_bins(counts, minimum, kind="min counts"):
    """Display-bin index of each fit bin: consecutive bins grouped until each group has
    ``minimum`` counts (``kind`` 'min counts') or S/N = sqrt(counts) >= ``minimum`` ('min S/N');
    a short last group joins the one before (as grppha's GROUP MIN)."""
    need = float(minimum) if kind == "min counts" else float(minimum) ** 2
    if not need > 0:
        raise BadConfigError(f"{kind} must be > 0, got {minimum!r}", field="rebin")
    idx = np.empty(counts.size, dtype=int)
    g, acc = 0, 0.0
    for i, c in enumerate(counts):
        idx[i] = g
        acc += c
        if acc >= need:
            g, acc = g + 1, 0.0
    if 0 < acc < need and g > 0:
        idx[idx == g] = g - 1
    return idx


def residual_range(resid, floor=3.0, cap=10.0):
    """Symmetric residual axis limit: the largest |residual| (95th percentile), at least
    ``floor``σ, at most ``cap``σ (points beyond are drawn as arrows at the edge)."""
    r = np.abs(resid[np.isfinite(resid)])
    if not r.size:
        return floor
    return float(min(max(floor, np.percentile(r, 95) * 1.15), cap))


def residual_ticks(limit):
    """Ticks of a ±``limit`` residual axis: 0 and multiples of 1, 2 or 5 (at most 3 a side)."""
    step = next(s for s in (1, 2, 5, 10, 20) if limit / s <= 3)
    k = int(limit // step)
    return [float(i * step) for i in range(-k, k + 1)]


class _SpectrumView:
    """Main figure (data, total, components) and residual figure of one data group."""

    def __init__(self, name, width=420, height=260, resid_height=110, legend=False):
        self.name = name
        self.x = bq.LogScale()
        self.y = bq.LogScale()
        self.r = bq.LinearScale(min=-5.0, max=5.0)
        xy, xr = {"x": self.x, "y": self.y}, {"x": self.x, "y": self.r}
        self.shade = bq.Lines(x=[1.0, 1.0, 2.0, 2.0], y=[1.0, 2.0, 2.0, 1.0], scales=xy, fill="inside",
                              fill_colors=["#999999"], fill_opacities=[0.12], colors=["#ffffff"], stroke_width=0)
        self.err = bq.Lines(x=np.zeros((1, 2)), y=np.ones((1, 2)), scales=xy, colors=[SOURCE_COLOURS["data"]],
                            stroke_width=1)
        self.data = bq.Scatter(x=[], y=[], scales=xy, colors=[SOURCE_COLOURS["data"]], default_size=12,
                               marker="circle")
        self.comps = {s: bq.Lines(x=[], y=[], scales=xy, colors=[SOURCE_COLOURS[s]], stroke_width=1.5, labels=[s],
                                  display_legend=legend, interpolation="step-after") for s in COMPONENTS}
        self.total = bq.Lines(x=[], y=[], scales=xy, colors=["black"], stroke_width=2, labels=["total"],
                              display_legend=legend, interpolation="step-after")
        self.resid = bq.Scatter(x=[], y=[], scales=xr, colors=[SOURCE_COLOURS["data"]], default_size=10)
        self.off_hi = bq.Scatter(x=[], y=[], scales=xr, colors=["#b00020"], marker="triangle-up", default_size=28)
        self.off_lo = bq.Scatter(x=[], y=[], scales=xr, colors=["#b00020"], marker="triangle-down", default_size=28)
        self.zero = bq.Lines(x=[1.0, 200.0], y=[0.0, 0.0], scales=xr, colors=["#888888"], line_style="dashed")
        ax_x = bq.Axis(scale=self.x, label="keV", tick_values=ENERGY_TICKS, tick_format=".0f")
        ax_y = bq.Axis(scale=self.y, orientation="vertical", label="counts/s/keV", tick_format=".0e")
        self.figure = bq.Figure(marks=[self.shade, self.err, self.data, *self.comps.values(), self.total],
                                axes=[bq.Axis(scale=self.x, tick_values=ENERGY_TICKS, tick_format=".0f"), ax_y],
                                title=name, fig_margin={"top": 30, "bottom": 20, "left": 64, "right": 10},
                                legend_location="top-right",
                                layout=w.Layout(width=f"{width}px", height=f"{height}px"), animation_duration=0)
        self.figure.add_class("nsb-spectra-figure")
        self.r_axis = bq.Axis(scale=self.r, orientation="vertical", label="(d-m)/σ", tick_values=[-4, -2, 0, 2, 4],
                              tick_format=".0f")
        self.residuals = bq.Figure(marks=[self.zero, self.resid, self.off_hi, self.off_lo], axes=[ax_x, self.r_axis],
                                   fig_margin={"top": 5, "bottom": 35, "left": 64, "right": 10},
                                   layout=w.Layout(width=f"{width}px", height=f"{resid_height}px"),
                                   animation_duration=0)
        self.residuals.add_class("nsb-residual-figure")
        self.widget = w.VBox([self.figure, self.residuals])
        self._binning = None
        # Each model sends its changed traits in one message when an update ends, in this order:
        # the total model first, then the components, data, residuals and the scales and axes.
        self._synced = [self.total, *self.comps.values(), self.data, self.err, self.shade, self.resid, self.off_hi,
                        self.off_lo, self.zero, self.x, self.y, self.r, self.r_axis, self.figure, self.residuals]

    def set_legend(self, on):
        for mark in (*self.comps.values(), self.total):
            mark.display_legend = bool(on)

    def _bins(self, d, rebin):
        e_lo, e_hi = d["e_lo"], d["e_hi"]
        kind, minimum = rebin
        if kind == "log bins":
            key = (kind, e_lo.size, float(e_lo[0]), float(e_hi[-1]))
            if self._binning is None or self._binning[0] != key:
                idx, edges = display_bins(e_lo, e_hi)
                used = np.bincount(idx, minlength=edges.size - 1) > 0
                lo, hi = edges[:-1][used], edges[1:][used]
                self._binning = (key, np.cumsum(used)[idx] - 1, lo, hi)
            return self._binning[1:]
        idx = group_bins(d["data"], minimum, kind)
        n = int(idx[-1]) + 1
        lo = np.full(n, np.inf)
        hi = np.zeros(n)
        np.minimum.at(lo, idx, e_lo)
        np.maximum.at(hi, idx, e_hi)
        return idx, lo, hi

    def update(self, d, rebin=("log bins", 0)):
        """Redraw from :meth:`BackgroundAnalysis.spectra_for_plot` output (trait updates only; no
        NaN is sent: empty bins are left out of the data marks)."""
        e_lo, e_hi = d["e_lo"], d["e_hi"]
        idx, lo, hi = self._bins(d, rebin)
        n = lo.size
        scale = 1.0 / (d["exposure"] * (hi - lo))
        centre = np.sqrt(lo * hi)

        def rebinned(values):
            return np.bincount(idx, weights=values, minlength=n)

        counts = rebinned(d["data"])
        model = rebinned(d["model"])
        sigma = np.sqrt(np.maximum(counts, 1.0))
        rate, err = counts * scale, sigma * scale
        step_x = np.append(lo, hi[-1])
        has = counts > 0
        tot = model * scale
        resid = (counts - model) / sigma
        limit = residual_range(resid)
        with contextlib.ExitStack() as held:
            for model in reversed(self._synced):  # released last in, first out
                held.enter_context(model.hold_sync())
            self.data.x, self.data.y = centre[has], rate[has]
            if has.any():
                self.err.x = np.column_stack([centre[has], centre[has]])
                self.err.y = np.column_stack([np.maximum(rate - err, rate * 1e-3)[has], (rate + err)[has]])
            for s, mark in self.comps.items():
                v = d["sources"].get(s)
                if v is None:
                    mark.x, mark.y = [], []
                    continue
                y = np.maximum(rebinned(v) * scale, 1e-30)  # a zero component stays off the log axis' NaN
                mark.x, mark.y = step_x, np.append(y, y[-1])
            tot_y = np.maximum(tot, 1e-30)
            self.total.x, self.total.y = step_x, np.append(tot_y, tot_y[-1])
            inside = np.abs(resid) <= limit
            self.resid.x, self.resid.y = centre[inside], resid[inside]
            self.off_hi.x, self.off_hi.y = centre[resid > limit], np.full(int((resid > limit).sum()), 0.92 * limit)
            self.off_lo.x, self.off_lo.y = centre[resid < -limit], np.full(int((resid < -limit).sum()), -0.92 * limit)
            self.r.min, self.r.max = -limit, limit
            self.r_axis.tick_values = residual_ticks(limit)
            pos = rate[has]
            ymin = float(pos.min()) / 3 if pos.size else 1e-4
            ymax = float(max(rate.max(), tot.max())) * 3 if rate.size else 1.0
            self.shade.x = [e_lo.min(), e_lo.min(), e_hi.max(), e_hi.max()]
            self.shade.y = [ymin, ymax, ymax, ymin]
            self.y.min, self.y.max = ymin, ymax
            self.x.min, self.x.max = float(lo[0]) / 1.1, float(hi[-1]) * 1.1
            self.zero.x = [self.x.min, self.x.max]


def _warnings_html(items):
    """The warnings as a collapsed list: one summary line (its height does not depend on how many
    or how long they are), each warning wrapped in full when opened."""
    if not items:
        return ""
    body = "".join(f'<li style="white-space:normal">{html.escape(x)}</li>' for x in items)
    n = len(items)
    return (f'<details style="color:#8a5a00"><summary style="cursor:pointer">⚠ {n} warning{"s" if n > 1 else ""} '
            f'(click to read)</summary><ul style="margin:2px 0 4px 0;padding-left:20px">{body}</ul></details>')


def _legend_html():
    items = "".join(f'<span style="margin-right:10px"><span style="display:inline-block;width:14px;height:3px;'
                    f'background:{SOURCE_COLOURS[s]};vertical-align:middle"></span> {s}</span>'
                    for s in (*COMPONENTS, "total"))
    return (f'<div style="font-size:12px" title="grey band: the fitted energy range">{items}'
            '<span>● data</span></div>')


class SpectraPanel(Panel):
    """Background spectra, live: the focused region's spectra large or all stacked; Fit, Undo/Redo,
    fit range, display rebinning, legend, PNG/SVG.

    Scripting API (``user_api``): ``fit()`` (the Fit button), ``undo()``, ``redo()``,
    ``set_fit_range(lo, hi)``, ``set_rebin(kind, minimum)``, ``save_figure(fmt)``; settable
    ``layout`` ('selected' or 'all'), ``focus`` (background region shown large), ``legend``,
    ``observation`` (several observations: the one stacked, '' for all);
    read-only ``readout`` (statistic text), ``warnings`` (warnings shown), ``views`` (spectrum name →
    small view of the stacked layout), ``large`` (spectrum name → large view), ``last_redraw`` (data
    groups whose spectra changed in the last update), ``last_update_seconds``.
    """

    title = "Spectra"
    api_expose = ("fit", "undo", "redo", "set_fit_range", "set_rebin", "save_figure", "layout", "focus", "legend",
                  "observation")
    api_readonly = ("readout", "warnings", "views", "large", "last_redraw", "last_update_seconds")

    def __init__(self, session):
        super().__init__(session)
        s = session
        self.fit_button = w.Button(description="Fit", button_style="success", icon="play",
                                   layout=w.Layout(width="80px")).add_class("nsb-fit-button")
        self.undo_button = w.Button(description="Undo", icon="undo", tooltip="undo the last edit or fit (Ctrl-Z)",
                                    disabled=True, layout=w.Layout(width="80px")).add_class("nsb-undo-button")
        self.redo_button = w.Button(description="Redo", icon="repeat", tooltip="redo (Ctrl-Shift-Z / Ctrl-Y)",
                                    disabled=True, layout=w.Layout(width="80px")).add_class("nsb-redo-button")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="56px"))
        self.readout = w.HTML("", layout=w.Layout(height="40px", overflow="hidden")).add_class("nsb-stat-readout")
        # one line however many warnings (a fit adding some does not move the figures); opened,
        # they wrap below it
        self.warnings = w.HTML("", layout=w.Layout(min_height="28px")).add_class("nsb-message") \
            .add_class("nsb-fit-warnings")
        lo, hi = s.model.ignore
        self.fit_lo = w.BoundedFloatText(value=lo, min=1.6, max=165.0, step=1.0, description="fit keV",
                                         tooltip="fitted range (XSPEC ignore **-lo hi-**)",
                                         style={"description_width": "48px"},
                                         layout=w.Layout(width="120px")).add_class("nsb-fit-lo")
        self.fit_hi = w.BoundedFloatText(value=hi, min=1.6, max=165.0, step=1.0,
                                         layout=w.Layout(width="70px")).add_class("nsb-fit-hi")
        self.layout = w.ToggleButtons(options=[("region", "selected"), ("all A | B", "all")], value="selected",
                                      tooltips=["the spectra of the region picked on the image, large",
                                                "every spectrum, FPMA left and FPMB right"],
                                      style={"button_width": "80px"}).add_class("nsb-spectra-layout")
        self.focus = w.Dropdown(options=[], tooltip="region whose spectra are shown large",
                                layout=w.Layout(width="110px")).add_class("nsb-spectra-focus")
        self.rebin = w.Dropdown(options=REBIN, value="log bins", tooltip="display binning (the fit uses every bin)",
                                layout=w.Layout(width="104px"))
        self.rebin_min = w.BoundedFloatText(value=20.0, min=0.1, max=1e6, layout=w.Layout(width="64px"),
                                            tooltip="minimum counts (or S/N) per display bin")
        # several observations: the stacked layout shows one observation's spectra, or all
        self.observation = w.Dropdown(options=[("all obs", "")], value="", tooltip="observation stacked",
                                      layout=w.Layout(width="150px", display="none")).add_class("nsb-spectra-observation")
        self.observation.observe(lambda _ch: self.layout.value == "all" and self._stacked_views(), "value")
        self.legend = w.Checkbox(value=False, description="legend in plot", indent=False,
                                 layout=w.Layout(width="auto"))
        self.png_button = w.Button(description="PNG", tooltip="save the shown figures as PNG",
                                   layout=w.Layout(width="50px"))
        self.svg_button = w.Button(description="SVG", tooltip="save the shown figures as SVG",
                                   layout=w.Layout(width="50px"))
        self.fit_button.on_click(lambda _b: self.fit())
        self.undo_button.on_click(lambda _b: self.undo())
        self.redo_button.on_click(lambda _b: self.redo())
        self.png_button.on_click(lambda _b: self.save_figure("png"))
        self.svg_button.on_click(lambda _b: self.save_figure("svg"))
        for box in (self.fit_lo, self.fit_hi):
            box.observe(lambda _ch: self._range_typed(), "value")
        self.layout.observe(lambda _ch: self._show_layout(), "value")
        self.focus.observe(lambda _ch: self._show_layout(), "value")
        for box in (self.rebin, self.rebin_min):
            box.observe(lambda _ch: self._redraw_all(), "value")
        self.legend.observe(lambda ch: [v.set_legend(ch["new"]) for v in self._all_views()], "value")
        s.history.observe(self._on_history, ["can_undo", "can_redo"])
        s.model.observe(self._on_ignore, "ignore")
        self.message.layout = w.Layout(min_height="28px")  # one line reserved: no jump after a fit; long errors wrap
        self.views = {}
        self.large = {}
        self._names = None  # spectra the views were laid out for
        self._quiet = False
        self._stale = set()  # (spectrum name, 'small' or 'large') to draw when shown
        self.last_redraw = []
        self.last_update_seconds = 0.0
        # rows keep their figures' height (several observations: many rows scroll, none is squeezed)
        self.stack = w.GridBox(layout=w.Layout(grid_template_columns="repeat(2, 400px)", grid_auto_rows="max-content",
                                               overflow="auto",
                                               height="600px", width="830px"))
        self.focus_box = w.HBox(layout=w.Layout(height="600px", width="830px", overflow="auto"))
        self.body = w.Box([self.focus_box])
        s.model.observe(self._on_model, "change")
        s.fitting.observe(self._on_warnings, "warnings")
        # a fit's statistic is shown as soon as its optimum is found; errors, goodness, the table
        # and the figures follow
        s.fitting.observe(lambda ch: self._readout_optimum(ch["new"]), "optimum")
        s.fitting.observe(lambda _ch: self._readout(), "result")
        self.widget = w.VBox([
            w.HBox([self.fit_button, self.undo_button, self.redo_button, self.progress, self.fit_lo, self.fit_hi,
                    self.layout, self.focus, self.observation], layout=w.Layout(flex_flow="row wrap")),
            self.readout, self.warnings, self.message,
            w.HBox([w.HTML(_legend_html()), self.legend, self.rebin, self.rebin_min, self.png_button,
                    self.svg_button], layout=w.Layout(flex_flow="row wrap")),
            self.body], layout=w.Layout(width="840px", flex="0 0 auto")).add_class("nsb-spectra-panel")
        self._on_model()

    # -- which views are on screen -------------------------------------------------------------------

    def _rebin(self):
        return (self.rebin.value, self.rebin_min.value)

    def _all_views(self):
        return [*self.views.values(), *self.large.values()]

    def _focus_names(self):
        names = self.session.spectrum_names() if self.session.analysis is not None else []
        return [n for n in names if n[:-1] == self.focus.value]

    def _on_model(self, change=None):
        t0 = time.perf_counter()
        s = self.session
        names = s.spectrum_names() if s.analysis is not None else []
        changed = change["new"].groups if change is not None else None
        # the statistic first: its message reaches the browser before the figures' updates
        self._readout()
        self._on_warnings()
        if names != self._names:
            self._names = names
            regions = list(dict.fromkeys(n[:-1] for n in names))
            old, before = self.focus.value, set(self.focus.options)
            # a region just drawn (or renamed) is shown large at once: the figures are drawn for
            # it only, not first for the previous focus
            new = [r for r in regions if r not in before]
            with self._layout_quiet():
                self.focus.options = regions
                # several observations: '<key>_<region>' names; the box grows so that none is cut
                self.focus.layout.width = f"{min(200, max(110, 30 + 8 * max(map(len, regions), default=0)))}px"
                self.focus.value = new[0] if new else (old if old in regions else (regions[0] if regions else None))
            groups = list(range(1, len(names) + 1))
            self._stale = {(n, k) for n in names for k in ("small", "large")}
            self._show_layout(redraw=False)
        else:
            groups = list(changed) if changed is not None else list(range(1, len(names) + 1))
            self._stale |= {(names[g - 1], k) for g in groups for k in ("small", "large")}
        self._draw_visible()
        self.last_redraw = list(groups)
        self.last_update_seconds = time.perf_counter() - t0

    @contextlib.contextmanager
    def _layout_quiet(self):
        """Focus changes inside do not redraw (the caller shows the layout once)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _stacked_views(self):
        """The small views of the stacked layout, made when that layout is shown (two figures per
        new region: costly to create, so not while only the large view is on screen)."""
        names = self._names
        if list(self.views) != names:
            # views of spectra still there are kept (a new region creates two figures, not all)
            self.views = {n: self.views.get(n) or _SpectrumView(n, 390, 180, 80, self.legend.value) for n in names}
        self._fill_stack()

    def _fill_stack(self):
        """Stacked by module: FPMA in the left column, FPMB in the right, one row per region (of the
        chosen observation when several are loaded)."""
        keys = dict(zip(self.session.model.spectra, self.session.model.observations))
        several = len(set(keys.values())) > 1
        options = [("all obs", "")] + [(k, k) for k in dict.fromkeys(keys.values())] if several else [("all obs", "")]
        if list(self.observation.options) != options:
            old = self.observation.value
            self.observation.options = options
            self.observation.value = old if old in [v for _k, v in options] else ""
        key = self.observation.value
        cells = []
        for r in dict.fromkeys(n[:-1] for n in self.views if not key or keys.get(n) == key):
            for m in ("A", "B"):
                cells.append(self.views[f"{r}{m}"].widget if f"{r}{m}" in self.views else w.HTML(""))
        self.stack.children = cells

    def _show_filters(self):
        """The stacked layout of several observations shows the observation filter in place of the
        focused region (which only the large layout uses): the header keeps its width."""
        several = len(set(self.session.model.observations)) > 1
        stacked = several and self.layout.value == "all"
        self.observation.layout.display = None if stacked else "none"
        self.focus.layout.display = "none" if stacked else None

    def _show_layout(self, redraw=True):
        if self._quiet:
            return
        self._show_filters()
        names = self._focus_names()
        if self.layout.value == "all":
            self._stacked_views()
            self.body.children = [self.stack]
        else:
            if list(self.large) != names:
                # two large figures, re-titled for the focused region (creating figures is costly)
                views = list(self.large.values())
                while len(views) < len(names):
                    views.append(_SpectrumView("", 410, 380, 150, self.legend.value))
                self.large = dict(zip(names, views))
                for n, v in self.large.items():
                    v.figure.title = n
                self._stale |= {(n, "large") for n in names}
            self.focus_box.children = [v.widget for v in self.large.values()]
            self.body.children = [self.focus_box]
        if redraw:
            self._draw_visible()

    def _draw_visible(self):
        """Redraw the stale spectra that are on screen; the small views are kept current only
        while the stacked layout is open (hidden figures still cost a message each)."""
        s = self.session
        if s.analysis is None or not self._stale:
            return
        rebin = self._rebin()
        shown = {(n, "large"): v for n, v in self.large.items()}
        if self.layout.value == "all":
            shown.update({(n, "small"): v for n, v in self.views.items()})
        data = {}
        for key in sorted(self._stale & set(shown)):
            name = key[0]
            if name not in data:
                data[name] = s.spectrum_plot_data(s.spectrum_names().index(name) + 1)
            shown[key].update(data[name], rebin)
            self._stale.discard(key)

    def _redraw_all(self):
        if self.session.analysis is not None:
            self._stale = {(n, k) for n in self.session.spectrum_names() for k in ("small", "large")}
            self._guarded_draw()

    @guarded
    def _guarded_draw(self):
        self._draw_visible()

    # -- readouts ------------------------------------------------------------------------------------

    def _band(self):
        lo, hi = self.session.model.ignore
        return f" <span style='color:#555'>(fit {lo:g}–{hi:g} keV)</span>"

    def _fitted(self, statistic, value, dof, converged, more):
        """The readout of a fit: ``cstat = 123.45 / 100 dof (converged<more>) (fit lo–hi keV)``."""
        state = "converged" if converged else "NOT converged"
        return f"{statistic} = {value:.2f} / {dof} dof ({state}{more}){self._band()}"

    def _readout_optimum(self, out):
        """The statistic of the fit under way (a FitOutput), before its goodness is known."""
        if out is not None:
            follow = "errors and goodness follow" if out.statistic == "cstat" else "errors follow"
            self.readout.value = self._fitted(out.statistic, out.stat, out.dof, out.converged, f"; {follow}…")

    def _readout(self):
        s = self.session
        if s.analysis is None:
            self.readout.value = "<i>no background spectra: load data and add background regions</i>"
            return
        if s.fit_is_current:
            r = s.result
            expected = ""
            if r.goodness is not None:  # C-stat: what a correct model would give (Kaastra 2017)
                expected = (f"; a correct model gives {r.expected:.1f} ± {r.expected_sigma:.1f}, "
                            f"this is {r.goodness:+.1f}σ")
            self.readout.value = self._fitted(r.statistic, r.value, r.dof, r.converged, expected)
        else:
            value = s.model.statistic_value()
            note = "changed since the fit" if s.result is not None else "not fitted"
            self.readout.value = f"{s.statistic} = {value:.2f} ({note}){self._band()}"

    def _on_warnings(self, _change=None):
        s = self.session
        items = list(s.warnings)
        standin = "apec evaluated with the bremss stand-in"
        if s.apec_standin and not any(standin in x for x in items):
            items.insert(0, standin + " (no AtomDB); exported as bremss")
        self.warnings.value = _warnings_html(items)

    def _on_history(self, _change=None):
        h = self.session.history
        self.undo_button.disabled, self.redo_button.disabled = not h.can_undo, not h.can_redo
        self.undo_button.tooltip = f"undo {h.undo_label} (Ctrl-Z)" if h.can_undo else "nothing to undo"
        self.redo_button.tooltip = f"redo {h.redo_label} (Ctrl-Shift-Z)" if h.can_redo else "nothing to redo"

    def _on_ignore(self, change):
        self._syncing_range = True
        try:
            self.fit_lo.value, self.fit_hi.value = change["new"]
        finally:
            self._syncing_range = False

    def _range_typed(self):
        if getattr(self, "_syncing_range", False):
            return
        self.set_fit_range(self.fit_lo.value, self.fit_hi.value)

    # -- actions -------------------------------------------------------------------------------------

    @guarded
    def fit(self):
        """Fit (the Fit button): progress bar, statistic/dof readout, warnings in the panel."""
        self.progress.bar_style = "info"
        self.progress.value = 0.3
        self.show("fitting…")
        try:
            result = self.session.fit()
        except Exception:
            self.progress.bar_style = "danger"
            self.progress.value = 1.0
            raise
        self.progress.value = 1.0
        self.progress.bar_style = "success"
        self.show(f"fit done in {result.n_iter} iterations ({result.method or result.backend})")
        return result

    @guarded
    def undo(self):
        """Undo the last parameter edit, freeze or fit (the Undo button, Ctrl-Z)."""
        self.show(f"undid: {self.session.undo()}")

    @guarded
    def redo(self):
        """Redo the last undone step (the Redo button, Ctrl-Shift-Z)."""
        self.show(f"redid: {self.session.redo()}")

    @guarded
    def set_fit_range(self, lo, hi):
        """Fit only lo–hi keV (the 'fit keV' boxes; XSPEC ``ignore **-lo hi-**``)."""
        try:
            self.session.set_fit_range(lo, hi)
        except Exception:
            self._on_ignore({"new": self.session.model.ignore})
            raise
        self.show(f"fit range {lo:g}–{hi:g} keV")

    @guarded
    def set_rebin(self, kind, minimum=20.0):
        """Display rebinning: 'log bins', 'min counts' or 'min S/N' with ``minimum`` per bin."""
        if kind not in REBIN:
            raise BadConfigError(f"rebin must be one of {', '.join(REBIN)}, got {kind!r}", field="rebin")
        if not float(minimum) > 0:
            raise BadConfigError(f"rebin minimum must be > 0, got {minimum!r}", field="rebin")
        with self.rebin.hold_trait_notifications():
            self.rebin_min.value = float(minimum)
            self.rebin.value = kind

    def save_figure(self, fmt="png"):
        """Save the figures on screen as PNG or SVG (the browser downloads ``<spectrum>.<fmt>``)."""
        if fmt not in ("png", "svg"):
            raise BadConfigError(f"figure format must be png or svg, got {fmt!r}", field="format")
        views = self.views if self.layout.value == "all" else self.large
        for name, view in views.items():
            getattr(view.figure, f"save_{fmt}")(f"{name}.{fmt}")
        self.show(f"saved {len(views)} figure(s) as {fmt.upper()}")
        return [f"{n}.{fmt}" for n in views]
