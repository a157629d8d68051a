"""The session's state objects, driven as a script drives them (set traits, call methods; no panels, no browser)."""

import numpy as np
import pytest
from regions import CirclePixelRegion, PixCoord
from traitlets import TraitError

from nuskybgd_engine.errors import BadConfigError, BadRegionError, NuSkyBgdError
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation
from nuskybgd_widgets.geometry import nearest_hit, scaled, shape_from_drag, translated
from nuskybgd_widgets.session import Session
from nuskybgd_widgets.state import ModelChange, RegionsState
from nuskybgd_widgets.state.model import _snapshot

OBSID = "90000000073"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    simulate_observation(root, SimulationSpec(obsid=OBSID, seed=11, exposure=8000.0, source="none"))
    return root


@pytest.fixture(scope="module")
def circles(data_root):
    """Pixel circles of the simulation's four background regions."""
    s = Session(data_root=data_root)
    s.load(OBSID)
    out = []
    for i in range(1, 5):
        shape = RegionSet.read_ds9(data_root / OBSID / "regions" / f"bgd{i}.reg").to_pixel(s.grid)[0].shape
        out.append(CirclePixelRegion(PixCoord(float(shape.center.x), float(shape.center.y)), float(shape.radius)))
    return out


@pytest.fixture
def session(data_root, tmp_path):
    s = Session(data_root=data_root, workspace=tmp_path / "ws")
    s.load(OBSID)
    return s


def record(state, *names):
    """Every notification of the traits ``names`` of ``state``, as (name, new) in order."""
    seen = []
    state.observe(lambda ch: seen.append((ch["name"], ch["new"])), list(names))
    return seen


def test_regions_state_edits_are_computed_not_committed():
    rs = RegionsState()
    seen = record(rs, "items")
    item, items = rs.added(CirclePixelRegion(PixCoord(10, 10), 5))
    assert item.name == "bgd1" and rs.items == () and seen == []
    rs.items = items
    assert rs.names() == ["bgd1"] and len(seen) == 1
    _src, items = rs.added(CirclePixelRegion(PixCoord(20, 20), 5), role="source")
    rs.items = items
    assert rs.names("source") == ["src1"] and rs.sources_regionset() is not None
    renamed, items = rs.renamed("bgd1", "corner")
    assert renamed.regions is item.regions and [r.name for r in items] == ["corner", "src1"]
    with pytest.raises(BadRegionError, match="exists already"):
        rs.renamed("bgd1", "src1")
    with pytest.raises(BadRegionError, match="non-empty word"):
        rs.added(CirclePixelRegion(PixCoord(1, 1), 2), name="two words")
    with pytest.raises(BadConfigError, match="role must be"):
        rs.with_role("bgd1", "foreground")
    with pytest.raises(BadRegionError, match="no include shape"):
        rs.with_shapes("bgd1", lambda r: r.replace(0, include=False))
    assert rs.names() == ["bgd1", "src1"] and len(seen) == 2


@pytest.mark.slow
def test_region_edit_builds_spectra_before_the_list_changes(session, circles):
    order = []
    session.model.observe(lambda ch: order.append(("spectra", ch["new"])), "spectra")
    session.regions.observe(lambda ch: order.append(("items", len(session.model.spectra))), "items")
    session.add_region(circles[0])
    assert order == [("spectra", ("bgd1A", "bgd1B")), ("items", 2)]
    # A region off the detectors is refused: neither the regions nor the model change.
    analysis = session.model.analysis
    with pytest.raises(NuSkyBgdError):
        session.add_region(CirclePixelRegion(PixCoord(5.0, 5.0), 10.0))
    assert session.region_names() == ["bgd1"] and session.model.analysis is analysis and len(order) == 2


@pytest.mark.slow
def test_moving_a_region_announces_the_groups_to_redraw(session, circles):
    for c in circles[:3]:
        session.add_region(c)
    changes = record(session.model, "change")
    shape = circles[1]
    session.move_region("bgd2", CirclePixelRegion(PixCoord(shape.center.x + 10, shape.center.y), shape.radius))
    (name, change), = changes
    assert isinstance(change, ModelChange) and change.reason == "region"
    # Only the moved groups' rows were rebuilt: the table equals a full one.
    assert session.model.parameters == _snapshot(session.model.analysis)
    assert change.groups == (session.group_index("bgd2", "A"), session.group_index("bgd2", "B"))
    # bgd1 holds each module's reference spectrum: its move changes every spectrum's link factors.
    session.move_region("bgd1", CirclePixelRegion(PixCoord(circles[0].center.x + 5, circles[0].center.y), 30.0))
    assert changes[-1][1].groups == tuple(range(1, 7))
    assert session.model.parameters == _snapshot(session.model.analysis)


@pytest.mark.slow
def test_parameters_are_a_table_of_the_engine_model(session, circles):
    session.add_region(circles[0])
    session.add_region(circles[1])
    an = session.model.analysis
    rows = session.model.parameters
    assert len(rows) == sum(len(s.params) for s in an.state)
    for r in rows[::17]:
        assert r.value == pytest.approx(an.state.value(r.source, r.index))
        assert r.spectrum == an.groups[r.group - 1].name
        assert r.state == an.state[r.source][r.index].state
    seen = record(session.model, "parameters")
    session.set_parameter("apbgd", 3, 0.02)
    assert session.parameter("apbgd", 3).value == 0.02 and an.state.value("apbgd", 3) == 0.02
    assert len(seen) == 1
    linked = next(r for r in rows if r.link is not None)
    with pytest.raises(BadConfigError, match="linked"):
        session.set_parameter(linked.source, linked.index, 1.0)
    with pytest.raises(BadConfigError, match="linked"):
        session.model.freeze(linked.source, linked.index)
    session.model.freeze("apbgd", 3)
    assert session.parameter("apbgd", 3).frozen and an.state["apbgd"][3].frozen
    # A snapshot sets everything back (what an undo does).
    assert session.model.restore_parameters(rows) == 1  # apbgd:p3: its value and its freeze
    assert session.model.parameters == rows and not an.state["apbgd"][3].frozen
    assert session.model.restore_parameters(rows) == 0 and len(seen) == 3


@pytest.mark.slow
def test_option_traits_rebuild_the_model(session, circles):
    for c in circles[:2]:
        session.add_region(c)
    session.set_parameter("apbgd", 3, 0.02)
    session.model.fix_line_ratios = True  # set as a checkbox link would
    an = session.model.analysis
    assert an.options.fix_line_ratios and an.state.value("apbgd", 3) == 0.02  # free value carried
    session.model.negative_norms = True
    assert session.model.analysis.state["apbgd"][3].hard_min < 0
    session.model.statistic = "chi"  # regroups every spectrum (>= 30 counts per bin)
    assert all(g.grouping is not None for g in session.model.analysis.groups)
    with pytest.raises(TraitError):
        session.model.statistic = "lstat"
    with pytest.raises(BadConfigError, match="unknown option"):
        session.model.set_options(solar=True)
    assert session.model.statistic == "chi"


def fcxb_norm(session, spectrum):
    return next(r for r in session.model.parameters if r.source == "fcxb" and r.spectrum == spectrum
                and r.name == "norm")


@pytest.mark.slow
def test_freezes_values_and_links_follow_region_edits(session, circles):
    for c in circles[:2]:
        session.add_region(c)
    session.link_fcxb("bgd1A", "bgd2A")
    norm = fcxb_norm(session, "bgd1B")
    session.model.freeze("fcxb", norm.index)
    session.set_parameter("apbgd", 3, 0.03)
    session.add_region(circles[2])  # a new model for three regions: the user's choices carry over
    an = session.model.analysis
    row = fcxb_norm(session, "bgd1B")
    assert row.frozen and an.state["fcxb"][row.index].frozen
    assert session.model.fcxb_links == (("bgd1A", "bgd2A"),)
    session.rename_region("bgd1", "corner")
    assert session.model.fcxb_links == (("cornerA", "bgd2A"),)
    assert session.parameter("apbgd", 3).spectrum == "cornerA" and session.parameter("apbgd", 3).value == 0.03
    row = fcxb_norm(session, "cornerB")
    assert row.frozen
    session.reset_parameters()  # presets again: the freeze and the value go
    row = fcxb_norm(session, "cornerB")
    assert not row.frozen and session.parameter("apbgd", 3).value != 0.03


@pytest.mark.slow
def test_fit_state_reads_currency_from_the_engine(session, circles):
    for c in circles:
        session.add_region(c)
    seen = record(session.fitting, "result", "warnings")
    result = session.fit()
    assert [n for n, _ in seen] == ["result", "warnings"] and seen[0][1] is result
    assert session.fitting.current and session.model.analysis.result is result
    session.model.freeze("apbgd", 3)  # a freeze keeps the fitted values: still current
    assert session.fitting.current
    session.set_parameter("apbgd", 3, session.parameter("apbgd", 3).value * 1.1)
    assert not session.fitting.current and session.fitting.result is result  # the last fit stays shown
    assert session.model.analysis.result is None
    with pytest.raises(NuSkyBgdError, match="changed since the last fit"):
        session.predict("bgd1")
    session.fit()
    pred = session.predict("bgd1")
    assert set(pred) == {"A", "B"} and all(p.total > 0 for p in pred.values())
    session.load(OBSID)
    assert session.fitting.result is None and session.model.analysis is None and session.regions.items == ()


@pytest.mark.slow
def test_exports_record_what_they_write(session, circles):
    session.add_region(circles[0])
    seen = record(session.exports, "written")
    paths = session.export_regions()
    assert [p.name for p in paths] == ["bgd1.reg"] and seen[-1][1] == paths
    assert session.export_regions()[0].name == "bgd12.reg"  # numbered, never overwritten
    assert len(session.written) == 2


@pytest.mark.slow
def test_panel_user_api_exposes_only_what_it_documents(data_root, tmp_path, circles):
    from nuskybgd_widgets.app import build_app

    app = build_app(data_root=data_root, workspace=tmp_path / "ws")
    app.panels["data"].user_api.path = OBSID
    app.panels["data"].user_api.load()
    image = app.panels["image"].user_api
    assert "set_mode" in dir(image) and "view" not in dir(image)
    image.new_role = "source"
    assert app.panels["image"].new_role.value == "source" and image.new_role == "source"
    image.new_role = "background"
    image.set_mode("circle")
    c = circles[0]
    image.handle_mouse("dragstart", float(c.center.x), float(c.center.y))
    image.handle_mouse("dragend", float(c.center.x) + float(c.radius), float(c.center.y))
    assert image.selected == "bgd1" and app.session.region_names() == ["bgd1"]
    with pytest.raises(AttributeError, match="cannot be set"):
        image.selected = "x"
    with pytest.raises(AttributeError, match="no attribute"):
        image._on_data  # noqa: B018 - internal, not part of the API
    links = app.panels["links"].user_api
    links.set_frozen("fcxb", 1, True)
    assert links.norm_states[("fcxb", 1)] == "frozen"
    params = app.panels["parameters"].user_api
    params.select("apbgd", 1)
    params.set_value("apbgd", 3, 0.01)
    assert next(r for r in params.shown if r.index == 3).value == 0.01
    assert "fit" in repr(app.panels["spectra"].user_api)


def test_geometry_of_drawn_and_dragged_shapes():
    assert shape_from_drag("circle", (10, 10), (13, 14)).radius == 5.0
    assert shape_from_drag("circle", (10, 10), (11, 10)) is None  # under 2 px
    box = shape_from_drag("box", (10, 10), (20, 14))
    assert (box.center.x, box.center.y, box.width, box.height) == (15, 12, 10, 4)
    ell = shape_from_drag("ellipse", (0, 0), (3, 2))
    assert (ell.width, ell.height) == (6, 4)
    with pytest.raises(ValueError):
        shape_from_drag("polygon", (0, 0), (5, 5))
    c = CirclePixelRegion(PixCoord(50, 50), 10)
    assert translated(c, 5, -5).center.xy == (55, 45) and scaled(c, 2).radius == 20
    shapes = {"a": c, "b": CirclePixelRegion(PixCoord(60, 50), 10)}
    assert nearest_hit(shapes, 52, 50) == "a" and nearest_hit(shapes, 58, 50) == "b"
    assert nearest_hit(shapes, 90, 90) is None
    assert nearest_hit(shapes, 38.5, 50) == "a"  # within 3 px of the rim
    np.testing.assert_allclose(scaled(c, 0.0).radius, 1.0)  # never below 1 px
