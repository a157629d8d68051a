"""Links panel: fcxb norm links (spectra × spectra), line ratios, no_solar, negative norms, statistic,
freeze/thaw grid."""

from __future__ import annotations

import ipywidgets as w

from ..state import COMPONENTS
from .base import Panel, SharedLooks, guarded

__all__ = ["LinksPanel"]


class LinksPanel(Panel):
    """Model options.

    Scripting API (``user_api``): ``toggle_link(i, j)`` (the matrix checkbox of row i, column j),
    ``set_link(i, j, linked)``, ``set_line_ratios(bool)``, ``set_no_solar(bool)``,
    ``set_negative_norms(bool)``, ``set_statistic(name)``, ``toggle_frozen(source, g)`` (grid button of
    spectrum g), ``set_frozen(source, g, frozen)``, ``freeze_all(source, frozen)``; read-only
    ``norm_states`` ({(source, g): 'free'/'frozen'/'linked'} of the norms; a component without norms is absent).
    ``link_boxes[(i, j)]`` and ``freeze_buttons[(source, g)]`` are the widgets.
    """

    title = "Links & options"
    api_expose = ("toggle_link", "set_link", "set_line_ratios", "set_no_solar", "set_negative_norms",
                  "set_statistic", "toggle_frozen", "set_frozen", "freeze_all")
    api_readonly = ("norm_states",)

    def __init__(self, session):
        super().__init__(session)
        s = session
        self.line_ratios = w.Checkbox(value=s.fix_line_ratios, description="fix line ratios", indent=False)
        self.no_solar = w.Checkbox(value=s.no_solar, description="no solar (apec + 3 lines off)", indent=False)
        self.negative_norms = w.Checkbox(value=s.negative_norms, description="norms may go below 0",
                                         indent=False, tooltip="unbiased weak lines; XSPEC stops norms at 0")
        self.statistic = w.ToggleButtons(options=["cstat", "chi"], value=s.statistic, description="statistic")
        self.line_ratios.observe(lambda ch: self.set_line_ratios(ch["new"]), "value")
        self.no_solar.observe(lambda ch: self.set_no_solar(ch["new"]), "value")
        self.negative_norms.observe(lambda ch: self.set_negative_norms(ch["new"]), "value")
        self.statistic.observe(lambda ch: self.set_statistic(ch["new"]), "value")
        self.matrix = w.VBox()
        self.freeze_grid = w.VBox()
        self._link_boxes, self._freeze_buttons = {}, {}
        self._names = None
        self._box_pool, self._button_pool, self._pool = {}, {}, {}  # widgets reused across builds
        self._looks = SharedLooks()  # one layout/style model for all alike cells
        head = [w.Label("", layout=w.Layout(width="70px"))]
        for src in COMPONENTS:
            b = w.Button(description=f"{src}: freeze all", layout=w.Layout(width="130px"))
            b.on_click(lambda _b, src=src: self.freeze_all(src, True))
            t = w.Button(description="thaw all", layout=w.Layout(width="70px"))
            t.on_click(lambda _b, src=src: self.freeze_all(src, False))
            head.append(w.HBox([b, t]))
        self._freeze_head = w.HBox(head)
        self._syncing = False
        self._visible, self._behind = True, False  # hidden (another tab): grids built when shown
        s.model.observe(self._on_model, ["spectra", "fcxb_links", "parameters"])
        s.model.observe(lambda _ch: self._sync(), ["fix_line_ratios", "no_solar", "negative_norms", "statistic"])
        self.widget = w.VBox([self._header(), w.HBox([self.line_ratios, self.no_solar, self.negative_norms]), self.statistic,
                              w.HTML("<i>fcxb norm links: row spectrum's norm drives the column's</i>"), self.matrix,
                              w.HTML("<i>norms free / frozen per component and spectrum</i>"), self.freeze_grid,
                              self.message]).add_class("nsb-links-panel")
        self._on_model()

    # -- building the grids ---------------------------------------------------------------------

    def set_visible(self, on):
        """The panel is on screen (True) or hidden in a tab (False): while hidden the grids are not
        rebuilt on every model change (a region drawn costs no link matrix); shown, they catch up."""
        self._visible = bool(on)
        if self._visible and self._behind:
            self._on_model()

    def _on_model(self, _change=None):
        if not self._visible:
            self._behind = True
            return
        self._catch_up()

    def _catch_up(self):
        self._behind = False
        names = self.session.spectrum_names()
        if names != self._names:
            self._names = names
            self._build(names)
        self._sync()

    @property
    def link_boxes(self):
        """{(i, j): Checkbox} of the fcxb link matrix (brought up to date first if the panel was hidden)."""
        if self._behind:
            self._catch_up()
        return self._link_boxes

    @property
    def freeze_buttons(self):
        """{(source, g): ToggleButton} of the freeze grid (brought up to date first if the panel was hidden)."""
        if self._behind:
            self._catch_up()
        return self._freeze_buttons

    def _build(self, names):
        # Every widget is positional and kept from the last build: a new region adds a row and a
        # column (a few new widgets) instead of a whole new matrix (300 widgets for 12 spectra,
        # 0.2 s in the kernel and as many models for the browser to create).
        n = len(names)
        self._link_boxes = {}
        for k, name in enumerate(names, start=1):
            self._label(("col", k), "60px").value = name
            self._label(("row", k), "60px").value = name
            self._label(("grid", k), "70px").value = name
        head = [self._label(("col", 0), "60px")] + [self._pool[("col", j)] for j in range(1, n + 1)]
        rows = [self._row("head", head)]
        for i in range(1, n + 1):
            row = [self._pool[("row", i)]]
            for j in range(1, n + 1):
                box = self._box_pool.get((i, j))
                if box is None:
                    box = self._box_pool[(i, j)] = w.Checkbox(value=False, indent=False, disabled=i == j,
                                                              layout=self._looks.layout(width="60px"),
                                                              style=self._looks.style(w.Checkbox))
                    box.observe(lambda ch, i=i, j=j: self._box_changed(i, j, ch["new"]), "value")
                self._link_boxes[(i, j)] = box
                row.append(box)
            rows.append(self._row(("matrix", i), row))
        self.matrix.children = rows
        self._freeze_buttons = {}
        grid = [self._freeze_head]
        for g in range(1, n + 1):
            row = [self._pool[("grid", g)]]
            for src in COMPONENTS:
                btn = self._button_pool.get((src, g))
                if btn is None:
                    btn = self._button_pool[(src, g)] = w.ToggleButton(value=False, description="free",
                                                                       layout=w.Layout(width="200px"))
                    btn.observe(lambda ch, src=src, g=g: self._frozen_changed(src, g, ch["new"]), "value")
                self._freeze_buttons[(src, g)] = btn
                row.append(btn)
            grid.append(self._row(("grid", g), row))
        self.freeze_grid.children = grid

    def _label(self, key, width):
        """The pooled Label ``key`` (created once)."""
        if key not in self._pool:
            self._pool[key] = w.Label("", layout=self._looks.layout(width=width), style=self._looks.style(w.Label))
        return self._pool[key]

    def _row(self, key, children):
        """The pooled HBox ``key`` holding ``children`` (only a changed list is sent)."""
        box = self._pool.get(("hbox", key))
        if box is None:
            box = self._pool[("hbox", key)] = w.HBox()
        if list(box.children) != children:
            box.children = children
        return box

    def _sync(self):
        """Widgets from the session (without firing the handlers)."""
        s = self.session
        self._syncing = True
        try:
            links = set(s.fcxb_links)
            for (i, j), box in self._link_boxes.items():
                box.value = (i, j) in links
            states = self.norm_states
            for (src, g), btn in self._freeze_buttons.items():
                state = states.get((src, g), "none")
                btn.value = state == "frozen"
                btn.description = state
                btn.disabled = state in ("linked", "none")
            self.line_ratios.value = s.fix_line_ratios
            self.no_solar.value = s.no_solar
            self.negative_norms.value = s.negative_norms
            self.statistic.value = s.statistic
        finally:
            self._syncing = False

    @property
    def norm_states(self):
        """{(source, g): state} of the norms of each component and spectrum: 'free' when one is free,
        else 'frozen' when one is frozen, else 'linked'."""
        found = {}
        for r in self.session.model.parameters:
            if r.name == "norm":
                found.setdefault((r.source, r.group), set()).add(r.state)
        return {key: next(x for x in ("free", "frozen", "linked") if x in states) for key, states in found.items()}

    # -- handlers ------------------------------------------------------------------------------

    def _box_changed(self, i, j, value):
        if not self._syncing:
            self.set_link(i, j, value)

    def _frozen_changed(self, src, g, value):
        if not self._syncing:
            self.set_frozen(src, g, value)

    @guarded
    def set_link(self, i, j, linked=True):
        """Link (or unlink) the fcxb norm of spectrum j to spectrum i (1-based)."""
        try:
            if linked:
                self.session.link_fcxb(i, j)
            else:
                self.session.unlink_fcxb(i, j)
        finally:
            self._sync()  # also when nothing changed (link already there) or the link was refused

    def toggle_link(self, i, j):
        """What clicking matrix cell (i, j) does."""
        self.link_boxes[(i, j)].value = not self.link_boxes[(i, j)].value

    @guarded
    def set_frozen(self, src, g, frozen):
        """Freeze or thaw the unlinked norms of ``src`` in spectrum ``g``."""
        try:
            self.session.freeze_component(src, frozen, spectra=[g])  # success: parameters -> _on_model syncs
        except Exception:
            self._sync()
            raise

    def toggle_frozen(self, src, g):
        """What clicking the grid button of (component, spectrum) does."""
        btn = self.freeze_buttons[(src, g)]
        btn.value = not btn.value

    @guarded
    def freeze_all(self, src, frozen=True):
        """Freeze or thaw the unlinked norms of ``src`` in every spectrum."""
        try:
            self.session.freeze_component(src, frozen)  # success: parameters -> _on_model syncs
        except Exception:
            self._sync()
            raise

    @guarded
    def set_line_ratios(self, value):
        if not self._syncing:
            self.session.set_options(fix_line_ratios=value)

    @guarded
    def set_no_solar(self, value):
        if not self._syncing:
            self.session.set_options(no_solar=value)

    @guarded
    def set_negative_norms(self, value):
        if not self._syncing:
            self.session.set_options(negative_norms=value)

    @guarded
    def set_statistic(self, value):
        if not self._syncing:
            self.session.set_options(statistic=value)
