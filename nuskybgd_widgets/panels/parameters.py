"""Parameters panel: every model parameter in one live table (XSPEC's ``show par``).

Rows are the session's :class:`~..state.model.ParameterRow` snapshot, filtered by component,
spectrum, module and a name/detector search, one page at a time (the demo has 808 parameters;
a page of widgets stays fast). Each row: index, spectrum, component.name (full name in the
tooltip), value (editable, 5 significant digits), frozen, ± error of the last fit, limits, link.
Freeze/thaw/link act on a row or on the ticked rows; undo/redo are the session's.
"""

from __future__ import annotations

import html
import math

import ipywidgets as w

from nuskybgd_engine.errors import BadConfigError

from ..state import COMPONENTS
from .base import Panel, SharedLooks, guarded

__all__ = ["ParametersPanel", "format_value"]

PAGE = 30  # rows with widgets on one page
_ALL = "all"


def format_value(v, digits=5):
    """``v`` at ``digits`` significant digits (XSPEC-like): 0.012346, 1.2346e-05, 150."""
    if v is None or not math.isfinite(v):
        return "—" if v is None else str(v)
    return f"{v:.{digits}g}"


# Column widths (px). Read-only neighbours share one HTML cell of fixed-width spans: a widget per
# cell made every row ten browser models; now six (the first view's largest table).
_IDENT = (("param", 92), ("spectrum", 76), ("component.name", 190))
_VALUE, _SELECT, _FROZEN = 96, 24, 60
_TAIL = (("error", 84), ("limits", 120), ("link", 110))
_GAP = 4  # the margins between two widgets of a row (2 px each)
_SPAN = ('<span class="{cls}" title="{tip}" style="display:inline-block;width:{w}px;overflow:hidden;'
         'text-overflow:ellipsis;white-space:nowrap;vertical-align:middle">{text}</span>')


def _spans(cells, tip=""):
    """One HTML string of fixed-width spans: ``cells`` = [(text, width, class)]."""
    return "".join(_SPAN.format(cls=cls, tip=tip, w=width, text=text) for text, width, cls in cells)


def _header():
    gap = _GAP
    cells = [("", _SELECT + gap, "")]
    cells += [(f"<b>{name}</b>", width, "") for name, width in _IDENT[:-1]]
    cells += [(f"<b>{_IDENT[-1][0]}</b>", _IDENT[-1][1] + gap, ""), ("<b>value</b>", _VALUE + gap, ""),
              ("<b>frozen</b>", _FROZEN + gap, "")]
    cells += [(f"<b>{name}</b>", width, "") for name, width in _TAIL]
    return w.HTML(_spans(cells), layout=w.Layout(overflow="hidden")).add_class("nsb-param-head")


class _Row:
    """The widgets of one table row; re-bound to another parameter when the page changes (widgets
    are costly to create, cheap to update). ``error`` is the text of the error column."""

    def __init__(self, panel):
        self.key = None
        self.error = ""
        looks = panel._looks
        self.select = w.Checkbox(indent=False, layout=looks.layout(width=f"{_SELECT}px"),
                                 style=looks.style(w.Checkbox))
        self.ident = w.HTML("", layout=looks.layout(width=f"{sum(x for _, x in _IDENT)}px", overflow="hidden"),
                            style=looks.style(w.HTML))
        self.value = w.Text(continuous_update=False, layout=looks.layout(width=f"{_VALUE}px"),
                            style=looks.style(w.Text)).add_class("nsb-param-value")
        self.frozen = w.Checkbox(indent=False, tooltip="frozen", layout=looks.layout(width=f"{_FROZEN}px"),
                                 style=looks.style(w.Checkbox))
        self.tail = w.HTML("", layout=looks.layout(width=f"{sum(x for _, x in _TAIL)}px", overflow="hidden"),
                           style=looks.style(w.HTML))
        self.value.observe(lambda ch: panel._value_typed(self, ch["new"]), "value")
        self.frozen.observe(lambda ch: panel._frozen_changed(self, ch["new"]), "value")
        self.select.observe(lambda ch: panel._selected(self, ch["new"]), "value")
        self.widget = w.HBox([self.select, self.ident, self.value, self.frozen, self.tail],
                             layout=looks.layout()).add_class("nsb-param-row")

    def bind(self, p, selected):
        """Show parameter ``p`` (a ParameterRow) in this row."""
        self.key = (p.source, p.index)
        full = html.escape(f"{p.source}:p{p.index} {p.component}.{p.name} ({p.spectrum})", quote=True)
        texts = (f"{p.source}:p{p.index}", p.spectrum, f"{p.component}.{p.name}")
        self.ident.value = _spans([(html.escape(t), width, "") for t, (_, width) in zip(texts, _IDENT)], tip=full)
        self.select.value = self.key in selected

    def show(self, p, error):
        self.value.value = format_value(p.value)
        self.value.disabled = p.link is not None
        self.frozen.value = p.frozen
        self.frozen.disabled = p.link is not None
        self.error = f"± {format_value(error, 2)}" if error is not None and math.isfinite(error) else ""
        tail = (self.error, f"[{format_value(p.hard_min, 3)}, {format_value(p.hard_max, 3)}]", p.link or "")
        self.tail.value = _spans([(html.escape(t), width, f"nsb-param-{name}") for t, (name, width) in zip(tail, _TAIL)])


class ParametersPanel(Panel):
    """Every parameter in one filterable table.

    Scripting API (``user_api``): ``select(source, g=None)``, ``set_value(source, index, value)``, ``set_frozen(source, index,
    frozen)``, ``freeze_selected()``, ``thaw_selected()``, ``link_selected()``, ``reset()`` (undo/redo: the
    Spectra panel's buttons, Ctrl-Z, ``session.undo()``); settable ``component``, ``spectrum``, ``module``, ``search`` (filters),
    ``free_only``; read-only ``shown`` (ParameterRows passing the filters), ``page_rows`` (those on
    the current page) and ``selected`` (ticked (source, index) keys). ``rows`` maps (source, index)
    to the row widgets (``.value`` Text, ``.frozen`` Checkbox, ``.select`` Checkbox, ``.error``).
    """

    title = "Parameters"
    api_expose = ("select", "set_value", "set_frozen", "freeze_selected", "thaw_selected", "link_selected", "reset",
                  "component", "spectrum", "module", "search", "free_only")
    api_readonly = ("shown", "page_rows", "selected")

    def __init__(self, session):
        super().__init__(session)
        self.component = w.Dropdown(options=[_ALL, *COMPONENTS], value=_ALL, description="component",
                                    style={"description_width": "80px"}, layout=w.Layout(width="200px"))
        self.spectrum = w.Dropdown(options=[_ALL], value=_ALL, description="spectrum",
                                   style={"description_width": "64px"}, layout=w.Layout(width="170px"))
        self.module = w.Dropdown(options=[_ALL, "A", "B"], value=_ALL, description="module",
                                 style={"description_width": "50px"}, layout=w.Layout(width="120px"))
        self.search = w.Text(placeholder="name or detector, e.g. det2", continuous_update=False,
                             layout=w.Layout(width="180px"))
        self.free_only = w.Checkbox(value=True, description="free only", indent=False,
                                    layout=w.Layout(width="80px"))
        self.page = w.BoundedIntText(value=1, min=1, max=1, description="page", style={"description_width": "36px"},
                                     layout=w.Layout(width="100px"))
        self.count = w.HTML("")
        for box in (self.component, self.spectrum, self.module, self.search, self.free_only):
            box.observe(self._filters_changed, "value")
        self.page.observe(lambda _ch: self._build(), "value")
        buttons = {}
        for name, text, tip in (("freeze", "Freeze ticked", "freeze the ticked rows"),
                                ("thaw", "Thaw ticked", "thaw the ticked rows"),
                                ("link", "Link ticked", "link the ticked fcxb norms to the first ticked"),
                                ("all", "Tick page", "tick every row on this page"),
                                ("none", "Untick", "untick every row"),
                                ("reset", "Reset to presets", "every value and freeze back to the presets")):
            buttons[name] = w.Button(description=text, tooltip=tip, layout=w.Layout(width="auto"))
        buttons["reset"].add_class("nsb-reset-button")
        buttons["freeze"].on_click(lambda _b: self.freeze_selected())
        buttons["thaw"].on_click(lambda _b: self.thaw_selected())
        buttons["link"].on_click(lambda _b: self.link_selected())
        buttons["all"].on_click(lambda _b: self._tick_page(True))
        buttons["none"].on_click(lambda _b: self._tick_page(False, everything=True))
        buttons["reset"].on_click(lambda _b: self.reset())
        self.buttons = buttons
        self.selected = set()
        self.rows = {}
        self._pool = []  # row widgets, reused page after page
        self._looks = SharedLooks()  # one layout/style model per column, not per cell
        self.table = w.VBox().add_class("nsb-param-table")
        self._syncing = False
        head = _header()
        # on the model's change event (after its new parameters, after the spectra panel's
        # statistic and figures): the table is below the figures, it follows them
        session.model.observe(self._on_model, "change")
        # a fit always announces a change; a result dropped (new observation, reset) may not
        session.fitting.observe(lambda ch: ch["new"] is None and self._sync(), "result")
        self.widget = w.VBox([
            w.HBox([self.component, self.spectrum, self.module, self.search, self.free_only], layout=w.Layout(flex_flow="row wrap")),
            w.HBox([buttons[k] for k in ("freeze", "thaw", "link", "all", "none", "reset")] + [self.page, self.count],
                   layout=w.Layout(flex_flow="row wrap")),
            self.message, head, self.table]).add_class("nsb-parameters-panel")
        self._on_model()

    # -- filters ------------------------------------------------------------------------------------

    def select(self, source, g=None):
        """Show the parameters of ``source`` (in data group ``g``, 1-based; default every spectrum)."""
        names = list(self.session.model.spectra)
        if g is not None and not 1 <= int(g) <= len(names):
            raise BadConfigError(f"spectrum {g!r} not in 1..{len(names)}", field="spectrum")
        self._syncing = True
        try:
            self.component.value = source
            self.spectrum.value = names[int(g) - 1] if g is not None else _ALL
            self.page.value = 1
        finally:
            self._syncing = False
        self._build()

    @property
    def shown(self):
        """The ParameterRows passing the filters, in XSPEC order."""
        comp, spec, mod = self.component.value, self.spectrum.value, self.module.value
        text = self.search.value.strip().lower()
        free_only = self.free_only.value
        out = []
        for p in self.session.model.parameters:
            if (comp != _ALL and p.source != comp) or (spec != _ALL and p.spectrum != spec) \
                    or (mod != _ALL and not p.spectrum.endswith(mod)) or (free_only and p.state != "free"):
                continue
            if text and text not in f"{p.component}.{p.name} {p.spectrum}".lower():  # spectrum: observation key
                continue
            out.append(p)
        return out

    @property
    def page_rows(self):
        """The shown rows on the current page."""
        start = (self.page.value - 1) * PAGE
        return self.shown[start:start + PAGE]

    def _filters_changed(self, _change=None):
        if self._syncing:
            return
        self._syncing = True
        self.page.value = 1
        self._syncing = False
        self._build()

    def _on_model(self, change=None):
        names = list(self.session.model.spectra)
        options = [_ALL, *names]
        if list(self.spectrum.options) != options:
            self._syncing = True
            try:
                old = self.spectrum.value
                self.spectrum.options = options
                self.spectrum.value = old if old in options else _ALL
            finally:
                self._syncing = False
            self.selected &= {(p.source, p.index) for p in self.session.model.parameters}
            return self._build()
        if change is not None:
            return self._sync()
        return None

    # -- drawing ------------------------------------------------------------------------------------

    def _build(self):
        if self._syncing:
            return
        if self.session.analysis is None:
            self.rows = {}
            self.table.children = [w.Label("no background spectra yet: load data and add background regions")]
            self.count.value = ""
            return
        shown = self.shown
        pages = max(1, math.ceil(len(shown) / PAGE))
        self._syncing = True
        self.page.max = pages
        self._syncing = False
        start = (self.page.value - 1) * PAGE
        page = shown[start:start + PAGE]
        self.count.value = (f"rows {start + 1}–{start + len(page)} of {len(shown)} "
                            f"({len(self.session.model.parameters)} parameters)") if shown else "no parameter matches"
        while len(self._pool) < len(page):
            self._pool.append(_Row(self))
        self._syncing = True
        try:
            for row, p in zip(self._pool, page):
                row.bind(p, self.selected)
        finally:
            self._syncing = False
        self.rows = {row.key: row for row in self._pool[:len(page)]}
        self.table.children = [r.widget for r in self._pool[:len(page)]]
        self._sync()

    def _errors(self):
        s = self.session
        if not s.fit_is_current:
            return {}
        return {(p["source"], p["index"]): p["error"] for p in s.result.parameters}

    def _sync(self):
        if self.session.analysis is None:
            return None
        params = {(p.source, p.index): p for p in self.page_rows}
        if set(params) != set(self.rows):  # filtered rows changed (a freeze with "free only", new layout)
            return self._build()
        errors = self._errors()
        self._syncing = True
        try:
            for key, row in self.rows.items():
                row.show(params[key], errors.get(key))
        finally:
            self._syncing = False
        return None

    # -- handlers -----------------------------------------------------------------------------------

    def _value_typed(self, row, text):
        if self._syncing:
            return
        try:
            value = float(text)
        except ValueError:
            self.show(f"{row.key[0]}:p{row.key[1]}: {text!r} is not a number", "error")
            self._sync()
            return
        current = next((p.value for p in self.page_rows if (p.source, p.index) == row.key), None)
        if current is not None and format_value(current) == format_value(value):
            return  # the shown (rounded) value typed back: no change
        self.set_value(*row.key, value)

    def _frozen_changed(self, row, frozen):
        if not self._syncing:
            self.set_frozen(*row.key, frozen)

    def _selected(self, row, on):
        if on:
            self.selected.add(row.key)
        else:
            self.selected.discard(row.key)

    def _tick_page(self, on, everything=False):
        if everything and not on:
            self.selected = set()
        for row in self.rows.values():
            row.select.value = on

    @guarded
    def set_value(self, source, index, value):
        """Set a parameter (a value cell); the spectra redraw. One undo step."""
        try:
            self.session.set_parameter(source, index, value)
        except Exception:
            self._sync()
            raise
        self.show("")

    @guarded
    def set_frozen(self, source, index, frozen):
        """Freeze or thaw one parameter (its checkbox). One undo step."""
        try:
            if frozen:
                self.session.freeze(source, index)
            else:
                self.session.thaw(source, index)
        except Exception:
            self._sync()
            raise

    def _ticked(self):
        if not self.selected:
            raise BadConfigError("tick some rows first", field="selection")
        rows = [p for p in self.session.model.parameters if (p.source, p.index) in self.selected]
        return [p for p in rows if p.link is None]

    @guarded
    def freeze_selected(self, frozen=True):
        """Freeze (or thaw) the ticked rows, as one undo step; returns how many changed."""
        rows = [p for p in self._ticked() if p.frozen != frozen]
        if rows:
            with self.session.history.step("freeze" if frozen else "thaw"):
                an = self.session.model.need_analysis()
                for p in rows:
                    an.state.freeze(p.source, p.index, frozen)
                self.session.model.announce(None, "freeze")
        self.show(f"{'froze' if frozen else 'thawed'} {len(rows)} parameter(s)")
        return len(rows)

    def thaw_selected(self):
        """Thaw the ticked rows (one undo step)."""
        return self.freeze_selected(False)

    @guarded
    def link_selected(self):
        """Link the fcxb norms of the ticked rows to the first ticked one (XSPEC ``newpar n = m``)."""
        rows = [p for p in self._ticked() if p.source == "fcxb" and p.name == "norm"]
        if len(rows) < 2:
            raise BadConfigError("tick at least two fcxb norms to link (only fcxb norms link across spectra)",
                                 field="selection")
        first = rows[0]
        for p in rows[1:]:
            self.session.link_fcxb(first.spectrum, p.spectrum)
        self.show(f"linked {len(rows) - 1} fcxb norm(s) to {first.spectrum}")

    @guarded
    def reset(self):
        """Back to the preset values and freezes (one undo step)."""
        self.session.reset_parameters()
