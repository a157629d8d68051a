"""Headless tests of the widget application on a small simulated observation (no browser, no kernel)."""

import json

import numpy as np
import pytest
from astropy.io import fits
from regions import CirclePixelRegion, PixCoord

from nuskybgd_engine.errors import BadConfigError, FitError, NuSkyBgdError
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation
from nuskybgd_widgets.app import build_app
from nuskybgd_widgets.geometry import mask_outline
from nuskybgd_widgets.paths import UnsafePathError

OBSID = "90000000007"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    simulate_observation(root, SimulationSpec(obsid=OBSID, seed=7, exposure=15000.0))
    return root


@pytest.fixture(scope="module")
def bgd_centres(data_root):
    """Pixel centres and radii of the simulation's suggested background regions."""
    from nuskybgd_engine.observation import prepare_observation

    obs = prepare_observation(data_root / OBSID)
    out = []
    for i in range(1, 5):
        rs = RegionSet.read_ds9(data_root / OBSID / "regions" / f"bgd{i}.reg")
        shape = rs.to_pixel(obs.grid)[0].shape
        out.append((float(shape.center.x), float(shape.center.y), float(shape.radius)))
    return out


@pytest.fixture
def app(data_root, tmp_path):
    app = build_app(data_root=data_root, workspace=tmp_path / "ws")
    app.panels["data"].path.value = OBSID
    app.panels["data"].load()
    assert app.session.observation is not None, app.panels["data"].message.value
    return app


def draw_circle(app, x, y, r, role="background"):
    im = app.panels["image"]
    im.new_role.value = role
    im.set_mode("circle")
    im.handle_mouse("dragstart", x, y)
    im.handle_mouse("dragmove", x + r / 2, y)
    im.handle_mouse("dragend", x + r, y)


@pytest.mark.slow
def test_contract_and_css_classes(app):
    assert set(app.panels) == {"data", "image", "links", "spectra", "parameters", "export"}
    classes = set()

    def walk(wid):
        classes.update(getattr(wid, "_dom_classes", ()))
        for c in getattr(wid, "children", ()):
            walk(c)

    walk(app.widget)
    for cls in ("nsb-fit-button", "nsb-export-xcm-button", "nsb-image-figure", "nsb-stat-readout",
                "nsb-export-list", "nsb-path-input", "nsb-message", "nsb-draw-circle"):
        assert cls in classes, cls


@pytest.mark.slow
def test_draw_regions_make_spectra_and_live_move(app, bgd_centres):
    s = app.session
    for x, y, r in bgd_centres[:3]:
        draw_circle(app, x, y, r)
    assert s.region_names() == ["bgd1", "bgd2", "bgd3"]
    assert s.spectrum_names() == ["bgd1A", "bgd2A", "bgd3A", "bgd1B", "bgd2B", "bgd3B"]
    shape = s.region("bgd2").shape
    # the drawn circle is where the drag said (radius = drag length)
    assert shape.center.x == pytest.approx(bgd_centres[1][0]) and shape.radius == pytest.approx(bgd_centres[1][2])
    # its spectrum holds exactly the events whose pixel centre is inside the circle
    ev = s.observation["A"].events
    ix, iy, _on = s.grid.event_index(ev["X"], ev["Y"])
    inside = np.hypot(ix - shape.center.x, iy - shape.center.y) < shape.radius
    group = s.analysis.groups[s.group_index("bgd2", "A") - 1]
    assert group.counts.sum() == inside.sum()
    spectra = app.panels["spectra"]
    spectra.layout.value = "all"  # the stacked small views are drawn only while shown
    assert len(spectra.views) == 6
    before = spectra.views["bgd2A"].data.y.copy()
    # drag bgd2 by 15 px in select mode: only its two spectra are redrawn, live
    im = app.panels["image"]
    im.set_mode("select")
    x, y, _r = bgd_centres[1]
    im.handle_mouse("dragstart", x, y)
    im.handle_mouse("dragmove", x + 15, y)
    assert s.region("bgd2").shape.center.x == pytest.approx(x + 15)
    assert spectra.last_redraw == [s.group_index("bgd2", "A"), s.group_index("bgd2", "B")]
    assert not np.array_equal(np.nan_to_num(before), np.nan_to_num(spectra.views["bgd2A"].data.y))
    im.handle_mouse("dragend", x + 15, y)
    # delete through the editor
    im.select("bgd3")
    im.delete_selected()
    assert s.region_names() == ["bgd1", "bgd2"] and len(spectra.views) == 4


@pytest.mark.slow
def test_region_off_detector_is_refused_and_shown(app, bgd_centres):
    draw_circle(app, *bgd_centres[0])
    draw_circle(app, 5.0, 5.0, 10.0)  # outside the detectors: no aperture/detector area
    assert app.session.region_names() == ["bgd1"]
    assert "nsb-message" in app.panels["image"].message._dom_classes
    assert "is it on the detectors?" in app.panels["image"].message.value


@pytest.mark.slow
def test_polygon_exclude_rename_role(app, bgd_centres):
    s = app.session
    im = app.panels["image"]
    x, y, r = bgd_centres[0]
    im.set_mode("polygon")
    for dx, dy in ((-r, -r), (r, -r), (r, r), (-r, r)):
        im.handle_mouse("click", x + dx, y + dy)
    im.handle_mouse("dblclick", x, y)
    assert s.region_names() == ["bgd1"] and s.region("bgd1").regions[0].kind == "polygon"
    n_before = s.analysis.groups[0].counts.sum()
    im.select("bgd1")
    im.exclude.value = True
    draw_circle(app, x, y, r / 3)
    assert [e.include for e in s.region("bgd1").regions] == [True, False]
    assert s.analysis.groups[0].counts.sum() < n_before
    im.exclude.value = False
    im.rename_selected("corner")
    assert s.spectrum_names() == ["cornerA", "cornerB"]
    im.set_role_selected("source")
    assert s.analysis is None and s.region("corner").role == "source"


@pytest.mark.slow
def test_links_parameters_fit_export(app, bgd_centres, tmp_path):
    s = app.session
    for c in bgd_centres:
        draw_circle(app, *c)
    draw_circle(app, bgd_centres[0][0] + 60, bgd_centres[0][1] - 60, 25, role="source")
    links = app.panels["links"]
    links.toggle_link(1, 2)
    assert s.fcxb_links == [(1, 2)]
    assert str(s.analysis.state["fcxb"][6].link) == "= fcxb:p3"
    links.set_line_ratios(True)
    assert s.fix_line_ratios and links.line_ratios.value
    links.toggle_frozen("fcxb", 5)
    assert s.analysis.state["fcxb"][15].frozen
    links.toggle_frozen("fcxb", 5)
    assert not s.analysis.state["fcxb"][15].frozen
    params = app.panels["parameters"]
    params.select("apbgd", 1)
    row = params.rows[("apbgd", 3)]
    spectra = app.panels["spectra"]
    spectra.layout.value = "all"
    before = spectra.views["bgd1A"].comps["apbgd"].y.copy()
    row.value.value = repr(2 * s.parameter("apbgd", 3).value)  # a typed cell
    # the apbgd curve of spectrum 1 doubles (model is linear in the norm)
    np.testing.assert_allclose(spectra.views["bgd1A"].comps["apbgd"].y, 2 * before, rtol=1e-9)
    params.reset()
    assert not s.fix_line_ratios or True
    # Fit button: the statistic is shown at the optimum (the fit still busy), then with its goodness
    shown = []
    spectra.readout.observe(lambda ch: shown.append((ch["new"], s.fitting.busy)), "value")
    spectra.fit()
    assert s.fit_is_current and s.result.converged
    assert f"{s.result.dof} dof" in spectra.readout.value
    assert f"a correct model gives {s.result.expected:.1f}" in spectra.readout.value
    first = next((text, busy) for text, busy in shown if " dof" in text)
    statistic = f"cstat = {s.result.value:.2f} / {s.result.dof} dof (converged; errors and goodness follow…)"
    assert first == (statistic + spectra._band(), True)
    assert "stand-in" in spectra.warnings.value
    # Export buttons
    ex = app.panels["export"]
    assert ex.source.value == "src1"
    xcm = ex.export_xcm()
    xcm2 = ex.export_xcm()
    assert xcm[0].name == "bgd_fit.xcm" and xcm2[0].name == "bgd_fit2.xcm"  # never overwritten
    text = xcm[0].read_text()
    assert text.count("data ") >= 1 and "bremss" in text
    spec = ex.export_spec()
    simple = ex.export_simplify()
    assert spec[0].name == "src1_spec.xcm" and simple[-1].name == "src1_simple.xcm"
    pred = ex.predict()
    data = json.loads(s.written[-1].read_text())
    for m, p in pred.items():
        assert data["modules"][m]["total"] == pytest.approx(p.total)
        assert p.total == pytest.approx(sum(p.components.values()))
        assert p.error > 0
    bgd = ex.export_bgdspec()
    from nuskybgd_engine.io.ogip import read_pha

    # src1A_sr.pha exists already (written by the spec export): the new one is numbered, never overwritten.
    src_path = next(p for p in bgd if p.name.startswith("src1A_sr") and "bgd" not in p.name and p.suffix == ".pha")
    bgd_path = next(p for p in bgd if p.name.startswith("src1A_sr_bgd"))
    assert src_path.name == "src1A_sr2.pha" and any(p.name.startswith("src1B_sr_bgd") for p in bgd)
    src_a = read_pha(src_path)
    assert src_a.header["BACKFILE"] == bgd_path.name
    back_a = read_pha(bgd_path)
    # The background spectrum's 3-20 keV total equals the panel's prediction for the region.
    lo, hi = 35, 459
    assert back_a.counts[lo:hi + 1].sum() == pytest.approx(pred["A"].total, rel=1e-6)
    imgs = ex.export_images()
    assert len(imgs) == 10
    with fits.open(imgs[0]) as h:
        assert h[0].header["NSB_COMP"] == "total" and h[0].data.shape == (1000, 1000)
    for p in s.written:
        assert p.is_file() and p.resolve().is_relative_to(s.workspace)
    assert f"written ({len(s.written)})" in ex.file_list.value


@pytest.mark.slow
def test_scripting_api_matches_engine(app, bgd_centres):
    """The session's spectrum equals the engine's group_from_events for the same region."""
    from nuskybgd_engine.groups import group_from_events

    s = app.session
    x, y, r = bgd_centres[3]
    s.add_region(CirclePixelRegion(PixCoord(x, y), r), "b4")
    rs = RegionSet()
    rs.add(CirclePixelRegion(PixCoord(x, y), r))
    ref = group_from_events(s.observation["B"].events, rs, s.grid, s.observation["B"].maps, name="ref")
    np.testing.assert_array_equal(s.analysis.groups[1].counts, ref.counts)
    with pytest.raises(FitError):
        s.predict("b4")
    with pytest.raises(NuSkyBgdError, match="exists already"):
        s.add_region(CirclePixelRegion(PixCoord(x, y), r), "b4")
    with pytest.raises(NuSkyBgdError):
        s.link_fcxb(1, 1)
    with pytest.raises(BadConfigError):
        s.set_parameter("fcxb", 10**6, 1.0)


@pytest.mark.slow
def test_paths_sandboxed_in_panels(app, data_root):
    d = app.panels["data"]
    d.load("../" + OBSID)
    assert "is not allowed" in d.message.value and "obsdir" in d.message.value
    with pytest.raises(UnsafePathError):
        app.session.export_xcm(path="/etc/passwd")
    app.panels["image"].import_regions(str(data_root / OBSID / "regions" / "bgd1.reg"))
    assert app.session.region_names() == ["bgd1"]


def test_mask_outline_square():
    m = np.zeros((5, 5), bool)
    m[1:3, 2:4] = True  # pixels x 2..3, y 1..2
    x, y = mask_outline(m)
    seg = [(x[i], y[i], x[i + 1], y[i + 1]) for i in range(0, len(x), 3)]
    assert len(seg) == 4
    xs = {v for s_ in seg for v in (s_[0], s_[2])}
    ys = {v for s_ in seg for v in (s_[1], s_[3])}
    assert xs == {1.5, 3.5} and ys == {0.5, 2.5}


@pytest.mark.slow
def test_demo_app(tmp_path, monkeypatch, data_root):
    """build_app(demo=True) loads the demo with 4 background and 1 source region (demo dir faked)."""
    import shutil

    from nuskybgd_engine import demo

    fake = tmp_path / "demo"
    fake.mkdir()
    shutil.copytree(data_root / OBSID, fake / demo.DEMO_SPEC["obsid"])
    # the cached demo is recognised by its truth.json: mark the copy as the demo
    truth = fake / demo.DEMO_SPEC["obsid"] / "truth.json"
    t = json.loads(truth.read_text())
    t.update({k: demo.DEMO_SPEC[k] for k in ("obsid", "seed", "exposure", "source")})
    truth.write_text(json.dumps(t))
    src = fake / demo.DEMO_SPEC["obsid"] / "event_cl"
    for p in list(src.iterdir()):
        p.rename(src / p.name.replace(OBSID, demo.DEMO_SPEC["obsid"]))
    monkeypatch.setenv("NUSKYBGD_DEMO_DIR", str(fake))
    app = build_app(workspace=tmp_path / "ws", demo=True)
    s = app.session
    assert s.region_names("background") == ["bgd1", "bgd2", "bgd3", "bgd4"]
    assert s.region_names("source") == ["src_point"]
    app.panels["spectra"].layout.value = "all"  # the small views are made when the stacked layout is shown
    assert len(app.panels["spectra"].views) == 8


@pytest.mark.slow
def test_suggested_regions_button(app):
    s = app.session
    names = app.panels["image"].suggest()
    assert names and all(n.startswith("sugg") for n in names)
    assert set(names) <= set(s.region_names("background"))
    # each suggested region made one spectrum per module, and the model covers them
    assert len(s.spectrum_names()) == 2 * len(s.region_names("background"))
    assert s.analysis is not None and len(s.analysis.groups) == len(s.spectrum_names())


@pytest.mark.slow
def test_negative_norms_checkbox(app, bgd_centres):
    s = app.session
    for c in bgd_centres[:3]:
        draw_circle(app, *c)
    links = app.panels["links"]
    links.negative_norms.value = True  # the checkbox, as a click sets it
    assert s.negative_norms and s.analysis.options.negative_norms
    norms = [(src.name, k) for src in s.analysis.state for k, p in enumerate(src.params, start=1) if p.is_norm]
    assert all(s.analysis.state[n][k].hard_min == -1e24 for n, k in norms)
    s.set_parameter("intbgd", 7, -1e-5)  # the 4.51 keV line of spectrum 1 below 0
    assert s.analysis.state.value("intbgd", 7) == -1e-5
    app.panels["spectra"].fit()
    assert s.result.converged
    text = app.panels["export"].export_xcm()[0].read_text()
    assert "-1e+24 -1e+24 1e+24 1e+24" in text
    s.set_parameter("intbgd", 7, -1e-5)
    links.set_negative_norms(False)
    assert not links.negative_norms.value and not s.negative_norms
    p = s.analysis.state["intbgd"][7]
    assert p.hard_min == 0.0 and p.value == 0.0  # clipped back into the limits
    with pytest.raises(NuSkyBgdError):
        s.set_parameter("intbgd", 7, -1e-5)


@pytest.mark.slow
def test_dragging_a_reference_region_redraws_its_module(app, bgd_centres):
    """bgd1 holds each module's reference spectrum: the other spectra's link factors are area ratios
    to it, so moving it changes their models too, and the panel must redraw them."""
    s = app.session
    for c in bgd_centres[:3]:
        draw_circle(app, *c)
    spectra = app.panels["spectra"]
    spectra.layout.value = "all"
    im = app.panels["image"]
    im.set_mode("select")
    x, y, _r = bgd_centres[0]
    im.handle_mouse("dragstart", x, y)
    im.handle_mouse("dragmove", x + 15, y)
    im.handle_mouse("dragend", x + 15, y)
    assert spectra.last_redraw == list(range(1, len(s.spectrum_names()) + 1))
    for g, name in enumerate(s.spectrum_names(), start=1):
        shown = spectra.views[name].total.y.copy()
        spectra.views[name].update(s.analysis.spectra_for_plot(g))
        np.testing.assert_array_equal(spectra.views[name].total.y, shown, err_msg=name)
    # A non-reference region still redraws only its own two spectra.
    x, y, _r = bgd_centres[1]
    im.handle_mouse("dragstart", x, y)
    im.handle_mouse("dragmove", x + 15, y)
    assert spectra.last_redraw == [s.group_index("bgd2", "A"), s.group_index("bgd2", "B")]


@pytest.mark.slow
def test_link_matrix_is_rebuilt_only_while_its_tab_is_open(app, bgd_centres):
    s, links = app.session, app.panels["links"]
    tabs = app.widget.children[1]
    assert tabs.get_title(tabs.selected_index) != links.title  # the app opens on another tab
    draw_circle(app, *bgd_centres[0])
    rows = list(links.matrix.children)
    draw_circle(app, *bgd_centres[1])
    assert list(links.matrix.children) == rows  # hidden: a new region builds no matrix
    tabs.selected_index = [tabs.get_title(i) for i in range(len(tabs.children))].index(links.title)
    n = len(s.spectrum_names())
    assert len(links.matrix.children) == n + 1 and len(links.freeze_grid.children) == n + 1
    assert set(links.link_boxes) == {(i, j) for i in range(1, n + 1) for j in range(1, n + 1)}
    draw_circle(app, *bgd_centres[2])  # shown: rebuilt at once
    assert len(links.matrix.children) == len(s.spectrum_names()) + 1


def test_one_image_tool_is_always_pressed():
    image = build_app().panels["image"]
    image.mode_buttons["circle"].value = True  # a click on 'circle'
    assert image.mode == "circle" and [m for m, b in image.mode_buttons.items() if b.value] == ["circle"]
    assert image.view.figure.interaction is image.view.mouse
    image.mode_buttons["circle"].value = False  # clicked again: stays the tool
    assert image.mode == "circle" and image.mode_buttons["circle"].value
    image.mode_buttons["pan"].value = True
    assert [m for m, b in image.mode_buttons.items() if b.value] == ["pan"]
    assert image.view.figure.interaction is image.view.panzoom
