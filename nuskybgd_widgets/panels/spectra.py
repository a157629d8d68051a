"""Spectra panel: each background spectrum with its model components and residuals; Fit button.

Display only: the noticed bins the engine fits are summed into ~logarithmic display bins
(counts/s/keV); the statistic shown is the engine's on the fitted binning.
"""

from __future__ import annotations

import html
import time

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..geometry import trim_gaps
from ..session import COMPONENTS
from .base import Panel, guarded

__all__ = ["SpectraPanel", "display_bins", "SOURCE_COLOURS"]

SOURCE_COLOURS = {"apbgd": "#e66100", "intbgd": "#c01c28", "fcxb": "#1a5fb4", "intn": "#613583",
                  "source": "#26a269", "total": "black", "data": "#333333"}
N_DISPLAY_BINS = 60


def display_bins(e_lo, e_hi, n=N_DISPLAY_BINS):
    """Index of the display bin of each fit bin: ``n`` log-spaced bins over the noticed range."""
    edges = np.geomspace(float(e_lo.min()), float(e_hi.max()), n + 1)
    centre = 0.5 * (e_lo + e_hi)
    return np.clip(np.searchsorted(edges, centre, side="right") - 1, 0, n - 1), edges


def _positive(values, floor):
    """``values`` for a log scale: zero, negative and non-finite values raised to ``floor``."""
    v = np.asarray(values, float)
    return np.where(np.isfinite(v) & (v > floor), v, floor)


class _SpectrumView:
    """Main figure (data, total, components) and residual figure of one data group."""

    def __init__(self, name):
        self.name = name
        self.x = bq.LogScale()
        self.y = bq.LogScale()
        self.r = bq.LinearScale(min=-5.0, max=5.0)
        self.shade = bq.Lines(x=[0, 0, 0, 0], y=[1, 1, 1, 1], scales={"x": self.x, "y": self.y}, fill="inside",
                              fill_colors=["#999999"], fill_opacities=[0.12], colors=["#ffffff"], stroke_width=0)
        self.err = bq.Lines(x=[], y=[], scales={"x": self.x, "y": self.y}, colors=[SOURCE_COLOURS["data"]],
                            stroke_width=1)
        self.data = bq.Scatter(x=[], y=[], scales={"x": self.x, "y": self.y}, colors=[SOURCE_COLOURS["data"]],
                               default_size=12, marker="circle")
        self.comps = {s: bq.Lines(x=[], y=[], scales={"x": self.x, "y": self.y}, colors=[SOURCE_COLOURS[s]],
                                  stroke_width=1.5, labels=[s], display_legend=True, interpolation="step-after")
                      for s in COMPONENTS}
        self.total = bq.Lines(x=[], y=[], scales={"x": self.x, "y": self.y}, colors=["black"], stroke_width=2,
                              labels=["total"], display_legend=True, interpolation="step-after")
        self.resid = bq.Scatter(x=[], y=[], scales={"x": self.x, "y": self.r}, colors=[SOURCE_COLOURS["data"]],
                                default_size=10)
        self.zero = bq.Lines(x=[1, 200], y=[0, 0], scales={"x": self.x, "y": self.r}, colors=["#888888"],
                             line_style="dashed")
        ax_x = bq.Axis(scale=self.x, label="keV")
        ax_y = bq.Axis(scale=self.y, orientation="vertical", label="counts/s/keV", tick_format=".0e")
        self.figure = bq.Figure(marks=[self.shade, self.err, self.data, *self.comps.values(), self.total],
                                axes=[bq.Axis(scale=self.x, tick_format=".0f"), ax_y], title=name,
                                fig_margin={"top": 30, "bottom": 20, "left": 60, "right": 10},
                                legend_location="top-right",
                                layout=w.Layout(width="420px", height="260px"), animation_duration=0)
        self.figure.add_class("nsb-spectra-figure")
        self.residuals = bq.Figure(marks=[self.zero, self.resid],
                                   axes=[ax_x, bq.Axis(scale=self.r, orientation="vertical", label="(d-m)/σ")],
                                   fig_margin={"top": 5, "bottom": 35, "left": 60, "right": 10},
                                   layout=w.Layout(width="420px", height="120px"), animation_duration=0)
        self.residuals.add_class("nsb-residual-figure")
        self.widget = w.VBox([self.figure, self.residuals])
        self._binning = None

    def update(self, d):
        """Redraw from :meth:`BackgroundAnalysis.spectra_for_plot` output (trait updates only)."""
        e_lo, e_hi = d["e_lo"], d["e_hi"]
        key = (e_lo.size, float(e_lo[0]), float(e_hi[-1]))
        if self._binning is None or self._binning[0] != key:
            idx, edges = display_bins(e_lo, e_hi)
            used = np.bincount(idx, minlength=edges.size - 1) > 0
            self._binning = (key, idx, edges, used)
        _, idx, edges, used = self._binning
        n = edges.size - 1
        width = np.diff(edges)[used]
        scale = 1.0 / (d["exposure"] * width)
        lo, hi = edges[:-1][used], edges[1:][used]
        centre = np.sqrt(lo * hi)

        def rebin(values):
            return np.bincount(idx, weights=values, minlength=n)[used]

        counts = rebin(d["data"])
        model = rebin(d["model"])
        sigma = np.sqrt(np.maximum(counts, 1.0))
        rate, err = counts * scale, sigma * scale
        step_x = np.append(lo, hi[-1])
        tot = model * scale
        pos = rate[rate > 0]
        ymin = float(pos.min()) / 3 if pos.size else 1e-4
        ymax = float(max(rate.max(), tot.max())) * 3 if rate.size else 1.0
        # Only finite, positive values reach the log-scale marks (a NaN, or log(0), is a browser console
        # error per point): empty bins get no point, zeros are drawn below the axis.
        floor = ymin * 1e-3
        with self.figure.hold_sync(), self.residuals.hold_sync():
            seen = counts > 0
            self.data.x, self.data.y = centre[seen], rate[seen]
            ex = np.repeat(centre, 3)
            ey = np.column_stack([np.maximum(rate - err, rate * 1e-3), rate + err, np.full(rate.size, np.nan)])
            ex[2::3] = np.nan
            ex, ey = trim_gaps(ex, ey.ravel())
            self.err.x, self.err.y = ex, np.where(np.isnan(ey), np.nan, np.maximum(ey, floor))
            for s, mark in self.comps.items():
                v = d["sources"].get(s)
                if v is None:
                    mark.x, mark.y = [], []
                    continue
                y = rebin(v) * scale
                mark.x, mark.y = step_x, _positive(np.append(y, y[-1]), floor)
            self.total.x, self.total.y = step_x, _positive(np.append(tot, tot[-1]), floor)
            resid = (counts - model) / sigma
            ok = np.isfinite(resid)
            self.resid.x, self.resid.y = centre[ok], resid[ok]
            self.shade.x = [e_lo.min(), e_lo.min(), e_hi.max(), e_hi.max()]
            self.shade.y = [ymin, ymax, ymax, ymin]
            self.y.min, self.y.max = ymin, ymax
            self.x.min, self.x.max = float(edges[0]) / 1.1, float(edges[-1]) * 1.1
            self.zero.x = [self.x.min, self.x.max]


class SpectraPanel(Panel):
    """All background spectra, live; Fit button, statistic readout and fit warnings.

    Scripting API (``user_api``): ``fit()`` (the Fit button); read-only ``readout`` (statistic text),
    ``warnings`` (warnings shown), ``views`` (spectrum name → view with ``figure``), ``last_redraw``
    (data groups redrawn by the last update), ``last_update_seconds``.
    """

    title = "Spectra"
    api_expose = ("fit",)
    api_readonly = ("readout", "warnings", "views", "last_redraw", "last_update_seconds")

    def __init__(self, session):
        super().__init__(session)
        self.fit_button = w.Button(description="Fit", button_style="success", icon="play").add_class("nsb-fit-button")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="160px"))
        self.readout = w.HTML("").add_class("nsb-stat-readout")
        self.warnings = w.HTML("").add_class("nsb-message").add_class("nsb-fit-warnings")
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns="repeat(2, 440px)"))
        self.views = {}
        self.last_redraw = []
        self.last_update_seconds = 0.0
        self.fit_button.on_click(lambda _b: self.fit())
        session.model.observe(self._on_model, "change")
        session.fitting.observe(self._on_warnings, "warnings")
        self.widget = w.VBox([w.HBox([self._header(), self.fit_button, self.progress, self.readout]),
                              self.warnings, self.message, self.grid]).add_class("nsb-spectra-panel")
        self._on_model()

    def _on_model(self, change=None):
        t0 = time.perf_counter()
        s = self.session
        names = s.spectrum_names() if s.analysis is not None else []
        changed = change["new"].groups if change is not None else None
        if list(self.views) != names:
            self.views = {n: _SpectrumView(n) for n in names}
            self.grid.children = [v.widget for v in self.views.values()]
            groups = list(range(1, len(names) + 1))
        else:
            groups = list(changed) if changed is not None else list(range(1, len(names) + 1))
        for g in groups:
            self.views[names[g - 1]].update(s.spectrum_plot_data(g))
        self.last_redraw = list(groups)
        self._readout()
        self._on_warnings()
        self.last_update_seconds = time.perf_counter() - t0

    def _readout(self):
        s = self.session
        if s.analysis is None:
            self.readout.value = "<i>no background spectra: load data and add background regions</i>"
            return
        if s.fit_is_current:
            r = s.result
            state = "converged" if r.converged else "NOT converged"
            expected = ""
            if r.goodness is not None:  # C-stat: what a correct model would give (Kaastra 2017)
                expected = (f"; a correct model gives {r.expected:.1f} ± {r.expected_sigma:.1f}, "
                            f"this is {r.goodness:+.1f}σ")
            self.readout.value = f"{r.statistic} = {r.value:.2f} / {r.dof} dof ({state}{expected})"
        else:
            value = s.model.statistic_value()
            note = "changed since the fit" if s.result is not None else "not fitted"
            self.readout.value = f"{s.statistic} = {value:.2f} ({note})"

    def _on_warnings(self, _change=None):
        s = self.session
        items = list(s.warnings)
        standin = "apec evaluated with the bremss stand-in"
        if s.apec_standin and not any(standin in x for x in items):
            items.insert(0, standin + " (no AtomDB); exported as bremss")
        self.warnings.value = "".join(f'<div style="color:#8a5a00">⚠ {html.escape(x)}</div>' for x in items)

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
