"""The parameter table, undo/redo, the fit range and display rebinning, driven without a browser
(widget values set as a click or a keystroke sets them; assertions on the session and the marks)."""

import numpy as np
import pytest
from regions import CirclePixelRegion, PixCoord

from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation
from nuskybgd_widgets.app import build_app
from nuskybgd_widgets.panels.parameters import PAGE, format_value
from nuskybgd_widgets.panels.spectra import group_bins, residual_range, residual_ticks

OBSID = "90000000021"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    simulate_observation(root, SimulationSpec(obsid=OBSID, seed=21, exposure=8000.0, source="none"))
    return root


@pytest.fixture
def app(data_root, tmp_path):
    """The app with the simulation's first two background regions (4 spectra)."""
    app = build_app(data_root=data_root, workspace=tmp_path / "ws")
    app.panels["data"].path.value = OBSID
    app.panels["data"].load()
    s = app.session
    for i in (1, 2):
        shape = RegionSet.read_ds9(data_root / OBSID / "regions" / f"bgd{i}.reg").to_pixel(s.grid)[0].shape
        s.add_region(CirclePixelRegion(PixCoord(float(shape.center.x), float(shape.center.y)), float(shape.radius)),
                     f"bgd{i}")
    return app


def test_format_value_and_residual_axis():
    assert format_value(0.0123456789) == "0.012346" and format_value(1.23456e-5) == "1.2346e-05"
    assert format_value(150.0) == "150" and format_value(None) == "—"
    assert residual_range(np.array([0.5, -1.0, 1.2])) == 3.0  # never narrower than ±3σ
    assert residual_range(np.full(50, 40.0)) == 10.0  # capped: the rest are off-scale markers
    assert 4.0 < residual_range(np.r_[np.zeros(10), np.full(40, 4.0)]) < 5.0
    assert residual_ticks(3.0) == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert residual_ticks(10.0) == [-10.0, -5.0, 0.0, 5.0, 10.0]


def test_group_bins_reach_the_minimum():
    counts = np.array([1, 0, 3, 10, 0, 0, 2, 25, 1])
    idx = group_bins(counts, 5)
    sums = np.bincount(idx, weights=counts)
    assert np.all(sums >= 5) and np.all(np.diff(idx) >= 0) and idx[0] == 0
    assert sums.sum() == counts.sum()
    # S/N 3 needs 9 counts a bin; the short tail joins the last full bin
    idx = group_bins(counts, 3, "min S/N")
    assert np.all(np.bincount(idx, weights=counts) >= 9)
    with pytest.raises(BadConfigError):
        group_bins(counts, 0)


def test_table_lists_filters_and_edits_every_parameter(app):
    s, table, spectra = app.session, app.panels["parameters"], app.panels["spectra"]
    n_all = len(s.model.parameters)
    table.free_only.value = False
    assert len(table.shown) == n_all and len(table.rows) == min(PAGE, n_all)
    assert f"of {n_all}" in table.count.value
    table.component.value = "fcxb"
    table.module.value = "B"
    assert table.shown and all(p.source == "fcxb" and p.spectrum.endswith("B") for p in table.shown)
    table.module.value = "all"
    table.search.value = "norm"
    assert all(p.name == "norm" for p in table.shown)
    # pages: the last page holds the rest
    table.component.value, table.search.value = "intbgd", ""
    pages = table.page.max
    assert pages == -(-len(table.shown) // PAGE) and pages > 1
    table.page.value = pages
    assert len(table.rows) == len(table.shown) - (pages - 1) * PAGE
    # a typed value: the model and the large spectrum follow
    table.select("apbgd", 1)
    p = next(r for r in table.page_rows if r.name == "norm")
    row = table.rows[(p.source, p.index)]
    assert row.value.value == format_value(p.value)
    app.panels["image"].region_list.value = p.spectrum[:-1]  # its region picked: shown large
    view = spectra.large[p.spectrum]
    before = view.comps["apbgd"].y.copy()
    row.value.value = repr(2 * p.value)
    assert s.parameter(p.source, p.index).value == pytest.approx(2 * p.value)
    np.testing.assert_allclose(view.comps["apbgd"].y, np.maximum(2 * before, 1e-30), rtol=1e-9)
    row.value.value = "not a number"
    assert "not a number" in table.message.value and s.parameter(p.source, p.index).value == pytest.approx(2 * p.value)
    assert row.value.value == format_value(2 * p.value)
    # freeze by row, then by selection
    row.frozen.value = True
    assert s.parameter(p.source, p.index).frozen
    table.free_only.value = True
    assert (p.source, p.index) not in table.rows
    table.spectrum.value = "all"
    table._tick_page(True)
    assert table.selected
    n = table.freeze_selected()
    assert n == len(table.selected) and all(s.parameter(*k).frozen for k in table.selected)
    assert table.shown == []
    table.free_only.value = False
    table.thaw_selected()
    assert not any(s.parameter(*k).frozen for k in table.selected)


def test_errors_after_a_fit_and_undo_redo(app):
    s, table, spectra = app.session, app.panels["parameters"], app.panels["spectra"]
    assert not s.history.can_undo and spectra.undo_button.disabled
    with pytest.raises(BadConfigError, match="nothing to undo"):
        s.undo()
    start = s.model.parameters
    s.set_parameter("apbgd", 3, 0.02)
    assert s.history.can_undo and not spectra.undo_button.disabled
    spectra.fit()
    fitted = s.model.parameters
    table.select("apbgd")
    errors = [r.error for r in table.rows.values()]
    assert all(e.startswith("± ") for e in errors), errors
    # undo the fit: the edited values; undo the edit: the start; redo both
    assert s.undo() == "fit"
    assert s.parameter("apbgd", 3).value == 0.02 and not s.fit_is_current
    assert all(r.error == "" for r in table.rows.values())  # no error for values not fitted
    spectra.undo_button.click()
    assert s.model.parameters == start and "undid: edit" in spectra.message.value
    assert s.redo() == "edit" and s.parameter("apbgd", 3).value == 0.02
    spectra.redo_button.click()
    assert s.model.parameters == fitted and not s.history.can_redo
    # a new step clears what could be redone; a freeze is a step too
    s.undo()
    s.freeze("apbgd", 3)
    assert not s.history.can_redo and s.history.undo_label == "freeze"
    s.undo()
    assert not s.parameter("apbgd", 3).frozen
    # a step that fails is not recorded
    n = len(s.history._undo)
    with pytest.raises(BadConfigError):
        s.set_parameter("apbgd", 3, -1.0)
    assert len(s.history._undo) == n


def test_fit_range_is_the_models_ignore(app, tmp_path):
    s, spectra = app.session, app.panels["spectra"]
    assert s.fit_range == (3.0, 150.0) and "fit 3–150 keV" in spectra.readout.value
    value = s.parameter("apbgd", 3).value * 1.3
    s.set_parameter("apbgd", 3, value)
    n_bins = s.analysis.spectra_for_plot(1)["e_lo"].size
    spectra.fit_hi.value = 79.0  # the box, as typed
    assert s.fit_range == (3.0, 79.0) and s.analysis.model.ignore == (3.0, 79.0)
    d = s.analysis.spectra_for_plot(1)
    assert d["e_hi"].max() <= 79.0 + 0.04 and d["e_lo"].size < n_bins
    assert s.parameter("apbgd", 3).value == pytest.approx(value)  # the user's values survive the rebuild
    assert "fit 3–79 keV" in spectra.readout.value
    xcm = s.export_xcm()[0].read_text()
    assert "79.0-**" in xcm or "79-**" in xcm, xcm
    spectra.set_fit_range(50, 20)  # refused, the boxes go back
    assert "fit range" in spectra.message.value and s.fit_range == (3.0, 79.0)
    assert (spectra.fit_lo.value, spectra.fit_hi.value) == (3.0, 79.0)
    # distinct from the image band
    assert s.band == (3.0, 20.0)


def test_layouts_rebinning_and_figure_export(app):
    s, spectra = app.session, app.panels["spectra"]
    # the region added last is shown large (its figures are drawn once, not first the previous one's)
    assert list(spectra.large) == ["bgd2A", "bgd2B"] and spectra.layout.value == "selected"
    app.panels["image"].region_list.value = "bgd1"  # picked on the image: the spectra follow
    assert list(spectra.large) == ["bgd1A", "bgd1B"]
    app.panels["image"].region_list.value = "bgd2"
    assert list(spectra.large) == ["bgd2A", "bgd2B"]
    view = spectra.large["bgd2A"]
    n_log = len(view.data.x)
    spectra.set_rebin("min counts", 200)
    d = s.analysis.spectra_for_plot(s.group_index("bgd2", "A"))
    assert 0 < len(view.data.x) < n_log and np.all(np.isfinite(view.data.y))
    assert len(view.data.x) <= d["data"].sum() // 200
    assert spectra.set_rebin("median", 3) is None and "rebin must be" in spectra.message.value
    assert spectra.set_rebin("min counts", -1) is None and "must be &gt; 0" in spectra.message.value
    # no NaN reaches a mark
    for mark in (*view.comps.values(), view.total, view.data, view.resid):
        assert np.all(np.isfinite(np.asarray(mark.y, dtype=float)))
    # residual range adapts, points beyond it are arrows at the edge
    limit = spectra.large["bgd2A"].r.max
    assert 3.0 <= limit <= 10.0 and np.all(np.abs(view.resid.y) <= limit)
    # the stacked view: FPMA left, FPMB right, drawn when shown
    spectra.layout.value = "all"
    assert [c.children[0].title for c in spectra.stack.children] == ["bgd1A", "bgd1B", "bgd2A", "bgd2B"]
    assert all(len(v.data.x) for v in spectra.views.values())
    assert sorted(spectra.save_figure("svg")) == ["bgd1A.svg", "bgd1B.svg", "bgd2A.svg", "bgd2B.svg"]
    with pytest.raises(BadConfigError):
        spectra.save_figure("gif")
    spectra.legend.value = True
    assert all(v.total.display_legend for v in spectra.views.values())


def test_observation_dropdown_lists_the_data_root(app, data_root):
    choice = app.panels["data"].choice
    values = [v for _k, v in choice.options]
    assert OBSID in values and any("demo" in k for k, _v in choice.options)
    assert choice.value == OBSID  # what is loaded
    assert not app.session.history.can_undo  # a load starts a new history


def test_rows_share_their_layouts_and_styles(app):
    """A page of rows sends one layout and one style model per column, not one per cell (each is a
    model the browser must create on the first view); editing a row still changes that row only."""
    table = app.panels["parameters"]
    rows = list(table.rows.values())
    assert len(rows) == PAGE
    cells = [c for r in rows for c in r.widget.children]
    layouts = {id(c.layout) for c in cells} | {id(r.widget.layout) for r in rows}
    styles = {id(c.style) for c in cells}
    assert len(layouts) <= len(rows[0].widget.children) + 1 and len(styles) <= 3
    first, second = next((a, b) for a, b in zip(rows, rows[1:]) if not a.value.disabled and a.key != b.key)
    kept, old = second.value.value, app.session.model.row(*first.key).value
    first.value.value = format_value(0.5 * old if old else 1e-3)
    assert app.session.model.row(*first.key).value != old and second.value.value == kept
