"""The served dashboard in a real browser: draw a region, see the spectra change, fit, export.

``nuskybgd-dashboard`` runs as a subprocess (Voila on 127.0.0.1, a free port) on the demo
observation; headless Debian chromium, driven by Playwright, uses it as a person would: a mouse
drag on the image draws a background region, the Fit button fits, the export button writes an
``.xcm`` that must then exist in the workspace. A path-traversal attempt typed into the data
panel must be refused with a visible message. Screenshots of each step are kept in
``test-artifacts/`` at the repository root.

Needs ``/usr/bin/chromium`` (``.ci/install-browser``) and the ``playwright`` Python package
(never ``playwright install``: the system chromium is used); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from .pages import (STEP_MS, drag, fit_done, readout, readout_changes, settled, sky_to_screen, use_tool,
                    wait_regions)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"

PAGE_READY_MS = 120_000  # first page: kernel start, demo maps and model

pytest.importorskip("voila", reason="voila is not installed")
pytest.importorskip("nuskybgd_widgets.app", reason="the dashboard app (nuskybgd_widgets.app) is not there")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

from nuskybgd_widgets.server import DEFAULT_PREHEAT  # noqa: E402 - after the skips above


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Data root holding the demo observation, a workspace, and a directory outside both."""
    from nuskybgd_engine.demo import ensure_demo_observation

    base = tmp_path_factory.mktemp("dashboard")
    data, workspace, outside = base / "data", base / "workspace", base / "outside"
    for d in (data, workspace, outside):
        d.mkdir()
    (outside / "event_cl").mkdir()  # looks like an observation: refused for where it is, not what it is
    (data / "escape").symlink_to(outside, target_is_directory=True)
    ensure_demo_observation(data)  # simulated here, once, so page loads only prepare the maps
    return {"base": base, "data": data, "workspace": workspace, "outside": outside}


@pytest.fixture(scope="module")
def server(dirs, browser, serve_dashboard):
    """``python -m nuskybgd_widgets.dashboard DATA --demo --workspace WS --port N`` until the module ends
    (after the browser, so that without one nothing is started)."""
    env = dict(os.environ, NUSKYBGD_DEMO_DIR=str(dirs["data"]))
    log = dirs["base"] / "voila.log"
    argv = [sys.executable, "-m", "nuskybgd_widgets.dashboard", dirs["data"], "--demo",
            "--workspace", dirs["workspace"], "--no-browser"]
    with serve_dashboard(argv, cwd=dirs["base"], env=env, log=log) as url:
        yield {"url": url, "log": log, "pid": url.pid, **dirs}


def open_dashboard(browser, url, viewport):
    """A new tab on the dashboard, ready (Fit button and the demo's statistic shown); page errors
    are collected in ``page.nsb_errors``."""
    ARTIFACTS.mkdir(exist_ok=True)
    p = browser.new_page(viewport=viewport)
    errors = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(url, timeout=PAGE_READY_MS)
    p.locator(".nsb-fit-button").wait_for(timeout=PAGE_READY_MS)
    # the demo's regions have spectra and a statistic before the user does anything
    p.wait_for_function("() => /=/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')",
                        timeout=PAGE_READY_MS)
    p.nsb_errors = errors
    return p


@pytest.fixture
def page(browser, server, request):
    """A fresh tab (a fresh kernel and app) on the dashboard, ready; screenshot on the way out."""
    p = open_dashboard(browser, server["url"], {"width": 1600, "height": 1200})
    try:
        yield p
    finally:
        p.screenshot(path=str(ARTIFACTS / f"dashboard-{request.node.name}-final.png"), full_page=True)
        p.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def open_tab(page, title):
    """Click the dashboard tab called ``title`` (Data, Parameters, Links, Export)."""
    page.locator(".nsb-tabs .lm-TabBar-tab, .nsb-tabs .p-TabBar-tab").filter(has_text=title).first.click()


def messages(page):
    return " | ".join(t.strip() for t in page.locator(".nsb-message").all_inner_texts() if t.strip())


def test_draw_fit_export_in_the_browser(page, server):
    shot(page, "1-loaded")
    figures = page.locator(".nsb-spectra-figure")
    assert figures.count() >= 2
    titles_before = figures.all_text_contents()
    readout_before = page.locator(".nsb-stat-readout").inner_text()

    # draw a circle background region by mouse drag on an empty part of the field
    use_tool(page, "circle")
    x0, y0 = sky_to_screen(page, 540, 420)
    x1, y1 = sky_to_screen(page, 565, 420)
    assert x1 - x0 > 10  # a radius of 25 sky pixels is a real drag on screen
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
        page.wait_for_timeout(30)
    page.mouse.up()
    # the new region gets one spectrum per module, shown large, and the statistic changes
    page.wait_for_function("before => Array.from(document.querySelectorAll('.nsb-spectra-figure'))"
                           ".filter(f => !before.includes(f.textContent)).length >= 2", arg=titles_before,
                           timeout=STEP_MS)
    page.wait_for_function("before => document.querySelector('.nsb-stat-readout').innerText !== before",
                           arg=readout_before, timeout=STEP_MS)
    shot(page, "2-region-drawn")
    n_spectra = 2 * (page.locator(".nsb-region-list option").count() - 1)  # all but src_point, A and B

    page.locator(".nsb-fit-button").click()
    readout = fit_done(page)
    assert re.search(r"cstat = [0-9.]+ / \d+ dof", readout), readout
    shot(page, "3-fitted")

    open_tab(page, "Export")
    page.locator(".nsb-export-xcm-button").click()
    page.wait_for_function("() => /\\.xcm/.test(document.querySelector('.nsb-export-list').innerText)",
                           timeout=STEP_MS)
    page.locator(".nsb-export-list").scroll_into_view_if_needed()
    shot(page, "4-exported")
    listed = re.findall(r"[\w.-]+\.xcm", page.locator(".nsb-export-list").inner_text())
    assert listed
    xcm = [p for p in server["workspace"].rglob("*.xcm") if p.name in listed]
    assert xcm, f"{listed} not found under {server['workspace']}"
    assert xcm[0].parent.parent == server["workspace"] and xcm[0].parent.name.startswith("session-")
    lines = xcm[0].read_text().splitlines()
    assert "statistic cstat" in lines
    data_lines = [ln for ln in lines if ln.startswith("data ")]
    assert len(data_lines) == n_spectra  # every spectrum shown, including the drawn region's, is exported
    assert not page.nsb_errors, page.nsb_errors


@pytest.fixture(scope="module")
def refusing(browser, server):
    """One dashboard page for the refused paths below (a refused load leaves the app as it was)."""
    p = open_dashboard(browser, server["url"], {"width": 1600, "height": 1200})
    try:
        yield p
    finally:
        p.screenshot(path=str(ARTIFACTS / "dashboard-refusals-final.png"), full_page=True)
        p.close()


@pytest.mark.parametrize("typed, why", [
    ("../outside", "not allowed"),
    ("escape", "symbolic link"),
    ("{outside}", "outside"),
], ids=["dotdot", "symlink", "absolute"])
def test_path_traversal_is_refused_visibly(refusing, server, typed, why):
    page = refusing
    typed = typed.format(outside=server["outside"])
    open_tab(page, "Data")
    status_before = page.locator(".nsb-data-status").inner_text()
    shown_before = page.locator(".nsb-message").all_inner_texts()
    box = page.locator(".nsb-path-input input")
    box.fill(typed)
    box.press("Enter")
    page.locator(".nsb-load-button").click()
    # a new message naming what was typed and why (the page is shared: an earlier one must not count)
    page.wait_for_function("([why, typed, before]) => Array.from(document.querySelectorAll('.nsb-message'))"
                           ".map(e => e.innerText).some(s => !before.includes(s) && s.includes(typed)"
                           " && s.includes(why))", arg=[why, typed, shown_before], timeout=STEP_MS)
    shot(page, f"5-refused-{why.replace(' ', '-')}")
    assert why in messages(page)
    assert page.locator(".nsb-data-status").inner_text() == status_before  # nothing was opened


# -- one page at 1440x900 driven through every tool (one kernel for the lot) ----------------------

SCREEN = {"width": 1440, "height": 900}


@pytest.fixture(scope="module")
def ui(browser, server):
    """One dashboard page at 1440×900 shared by the UI tests below, in file order."""
    p = open_dashboard(browser, server["url"], SCREEN)
    try:
        yield p
    finally:
        p.close()


def screen_shot(page, name):
    """What the observer sees (the viewport, not the whole page)."""
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"))


def region_names(page):
    return [t.strip() for t in page.locator(".nsb-region-list option").all_text_contents()]


def test_one_screen_at_1440x900(ui):
    screen_shot(ui, "1-one-screen")
    for sel in (".nsb-fit-button", ".nsb-spectra-figure", ".nsb-image-figure", ".nsb-residual-figure"):
        box = ui.locator(sel).first.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= SCREEN["height"], (sel, box)
        assert box["x"] + box["width"] <= SCREEN["width"], (sel, box)
    tabs = ui.locator(".nsb-tabs .lm-TabBar-tab, .nsb-tabs .p-TabBar-tab").all_inner_texts()
    assert [t.strip() for t in tabs] == ["Data", "Parameters", "Links & options", "Export"]
    # energy ticks at 3, 5, 10, 20, 50, 100 keV, none overlapping
    ticks = ui.locator(".nsb-residual-figure").first.evaluate("""f => Array.from(f.querySelectorAll('g.axis'))
        .filter(a => /keV/.test(a.textContent)).flatMap(a => Array.from(a.querySelectorAll('g.tick')))
        .map(t => [t.textContent.trim(), t.getBoundingClientRect().x, t.getBoundingClientRect().width])""")
    keV = [(float(t), x, wd) for t, x, wd in ticks if t in ("3", "5", "10", "20", "50", "100")]
    assert [k for k, _x, _w in keV] == [3, 5, 10, 20, 50, 100]
    assert all(x0 + w0 < x1 for (_a, x0, w0), (_b, x1, _w1) in zip(keV, keV[1:]))
    # the observation dropdown lists the data root's observations and the demo
    open_tab(ui, "Data")
    options = ui.locator(".nsb-observation-choice select option").all_inner_texts()
    assert any("demo" in o for o in options) and "90000000002" in options, options
    open_tab(ui, "Parameters")
    assert not ui.nsb_errors, ui.nsb_errors


# Text that does not fit its box: a button, label, HTML cell or tab title wider inside than out
# (scrollWidth > clientWidth), a dropdown whose chosen option is wider than the box, a figure
# clipped by its panel. Hidden elements (other tabs) are skipped: each tab is checked open.
CUT_TEXT_JS = """() => {
  const visible = e => e.offsetParent !== null && e.getClientRects().length > 0;
  const name = e => (e.innerText || e.title || '').trim().slice(0, 60);
  const cut = [];
  for (const e of document.querySelectorAll('.nsb-app button, .nsb-app label, .nsb-app .widget-label,'
      + ' .nsb-app .widget-html, .nsb-app .widget-html-content, .nsb-app .lm-TabBar-tabLabel,'
      + ' .nsb-app .p-TabBar-tabLabel')) {
    if (visible(e) && e.scrollWidth > e.clientWidth + 1) cut.push([name(e), e.scrollWidth, e.clientWidth]);
  }
  const ctx = document.createElement('canvas').getContext('2d');
  for (const s of document.querySelectorAll('.nsb-app select')) {
    if (!visible(s) || s.multiple || s.size > 1 || s.selectedIndex < 0) continue;
    const cs = getComputedStyle(s);
    ctx.font = `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const text = s.options[s.selectedIndex].text;
    const need = ctx.measureText(text).width + parseFloat(cs.paddingLeft) + parseFloat(cs.paddingRight);
    if (need > s.clientWidth) cut.push([text, Math.ceil(need), s.clientWidth]);
  }
  for (const f of document.querySelectorAll('.nsb-app .bqplot.figure')) {
    const box = f.getBoundingClientRect(), panel = f.closest('.nsb-image-panel, .nsb-spectra-panel');
    const outer = panel && panel.getBoundingClientRect();
    if (visible(f) && outer && box.right > outer.right + 1) cut.push(['figure', box.right, outer.right]);
  }
  return cut;
}"""


def test_no_text_cut_at_1440x900(ui):
    for title in ("Data", "Parameters", "Links", "Export"):
        open_tab(ui, title)
        ui.wait_for_timeout(300)  # the tab's widgets laid out
        cut = ui.evaluate(CUT_TEXT_JS)
        ui.locator(".nsb-tabs").screenshot(path=str(ARTIFACTS / f"ui-1-tab-{title.lower()}.png"))
        assert not cut, f"text cut in the {title} tab (text, needed, had): {cut}"
    # the warnings are one line, opened they wrap in full (nothing scrolls in a fixed box)
    warnings = ui.locator(".nsb-fit-warnings")
    if warnings.locator("summary").count():
        height = warnings.bounding_box()["height"]
        warnings.locator("summary").click()
        items = warnings.locator("li")
        assert items.count() >= 1 and all(t.strip() for t in items.all_inner_texts())
        assert warnings.bounding_box()["height"] > height
        assert not ui.evaluate(CUT_TEXT_JS)
        warnings.locator("summary").click()
    open_tab(ui, "Parameters")


def test_drawing_tools(ui):
    n = len(region_names(ui))
    use_tool(ui, "ellipse")
    drag(ui, (560, 640), (590, 620))
    wait_regions(ui, n + 1)
    use_tool(ui, "box")
    drag(ui, (640, 560), (680, 600))
    wait_regions(ui, n + 2)
    use_tool(ui, "polygon")
    settled(ui)
    for x, y in ((420, 300), (470, 300), (450, 340)):
        sx, sy = sky_to_screen(ui, x, y)
        ui.mouse.click(sx, sy)
        ui.wait_for_timeout(200)
    ui.get_by_role("button", name="finish polygon").click()
    wait_regions(ui, n + 3)
    screen_shot(ui, "2-drawn-ellipse-box-polygon")
    assert "polygon" not in messages(ui).lower() or "added" in messages(ui)


def test_resize_rename_exclude_delete(ui):
    names = region_names(ui)
    box = names[-2]  # the box drawn above, centred on (660, 580), 40 px wide
    use_tool(ui, "select")
    before = readout(ui)
    drag(ui, (679, 580), (700, 580))  # grab the rim: resize
    readout_changes(ui, before)
    ui.locator(".nsb-region-list select").select_option(box)
    ui.locator(".nsb-region-name input").fill("wide")
    ui.get_by_role("button", name="rename", exact=True).click()
    ui.wait_for_function("() => Array.from(document.querySelectorAll('.nsb-region-list option'))"
                         ".some(o => o.textContent.trim() === 'wide')", timeout=STEP_MS)
    ui.get_by_text("exclude (from selected)").click()
    use_tool(ui, "circle")
    drag(ui, (660, 580), (665, 580))
    ui.wait_for_function("() => Array.from(document.querySelectorAll('.nsb-message'))"
                         ".some(e => /excluded/.test(e.innerText))", timeout=STEP_MS)
    ui.get_by_text("exclude (from selected)").click()
    screen_shot(ui, "3-resized-renamed-excluded")
    n = len(region_names(ui))
    ui.locator(".nsb-region-list select").select_option("wide")
    ui.locator(".nsb-delete-region").click()
    wait_regions(ui, n - 1)
    assert "wide" not in region_names(ui)


def test_module_toggles_and_chi(ui):
    image = ui.locator(".nsb-image-panel")
    image.get_by_role("button", name="B", exact=True).click()
    ui.wait_for_timeout(500)
    screen_shot(ui, "4-fpmb")
    image.get_by_role("button", name="A", exact=True).click()
    before = readout(ui)
    open_tab(ui, "Links")
    ui.locator(".nsb-links-panel").get_by_role("button", name="chi", exact=True).click()
    ui.wait_for_function("() => /^chi/.test(document.querySelector('.nsb-stat-readout').innerText)",
                         timeout=STEP_MS)
    screen_shot(ui, "5-chi")
    ui.locator(".nsb-links-panel").screenshot(path=str(ARTIFACTS / "ui-5-links-tab.png"))
    ui.locator(".nsb-links-panel").get_by_role("button", name="cstat", exact=True).click()
    ui.wait_for_function("() => /^cstat/.test(document.querySelector('.nsb-stat-readout').innerText)",
                         timeout=STEP_MS)
    assert readout(ui).split("(")[0] == before.split("(")[0]


def test_suggest_regions(ui):
    before = region_names(ui)
    ui.locator(".nsb-suggest-button").click()
    ui.wait_for_function("b => { const o = Array.from(document.querySelectorAll('.nsb-region-list option'))"
                         ".map(e => e.textContent.trim()); return o.join() !== b.join(); }", arg=before,
                         timeout=STEP_MS)
    screen_shot(ui, "6-suggested")


def test_parameter_table_edit_fit_and_ctrl_z(ui):
    open_tab(ui, "Parameters")
    cell = ui.locator(".nsb-param-value input").first
    value = float(cell.input_value())
    before = readout(ui)
    cell.fill(repr(value * 3))
    cell.press("Enter")
    readout_changes(ui, before)
    edited = readout(ui)
    screen_shot(ui, "7-table-edited")
    ui.locator(".nsb-parameters-panel").screenshot(path=str(ARTIFACTS / "ui-7-parameter-table.png"))
    figure, fit = ui.locator(".nsb-spectra-figure").first, ui.locator(".nsb-fit-button")

    def offset():  # of the spectra below the Fit button (the page itself may scroll)
        return figure.bounding_box()["y"] - fit.bounding_box()["y"]

    y_before = offset()
    ui.locator(".nsb-fit-button").click()
    fit_done(ui)
    # the statistic is shown first; the table (below the figures) follows with the errors
    ui.wait_for_function("() => /^±/.test(document.querySelector('.nsb-param-error').innerText.trim())",
                         timeout=STEP_MS)
    assert offset() == y_before  # the result and its warnings do not move the spectra
    screen_shot(ui, "8-fitted")
    ui.locator(".nsb-stat-readout").click()  # focus off the text box: Ctrl-Z is the dashboard's
    ui.keyboard.press("Control+z")  # undo the fit
    ui.wait_for_function("e => document.querySelector('.nsb-stat-readout').innerText.split('(')[0] ==="
                         " e.split('(')[0]", arg=edited, timeout=STEP_MS)
    ui.keyboard.press("Control+z")  # undo the edit
    ui.wait_for_function("() => Math.abs(parseFloat(document.querySelector('.nsb-param-value input').value) - "
                         f"{value}) <= 1e-4 * {abs(value)}", timeout=STEP_MS)
    ui.keyboard.press("Control+Shift+z")  # redo the edit
    ui.wait_for_function("() => Math.abs(parseFloat(document.querySelector('.nsb-param-value input').value) - "
                         f"{3 * value}) <= 1e-4 * {abs(3 * value)}", timeout=STEP_MS)
    screen_shot(ui, "9-undo-redo")
    assert not ui.nsb_errors, ui.nsb_errors
def kernels(server):
    """Kernels the server runs, by its health probe, and kernel processes under it, by the process table."""
    with urllib.request.urlopen(server["url"] + "nuskybgd/health", timeout=10) as r:
        reported = json.load(r)
    assert reported["status"] == "ok"
    procs = [p for p in psutil.Process(server["pid"]).children(recursive=True)
             if any("ipykernel" in a for a in p.cmdline())]
    return reported["kernels"], len(procs)


def stable_kernels(server, seconds=180):
    """The kernel count once the server is settled: the pre-heated pool full again (its refill waits for
    quiet, then builds a kernel) and the count unchanged."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        now = kernels(server)
        with urllib.request.urlopen(server["url"] + "nuskybgd/health", timeout=10) as r:
            pool_full = json.load(r)["pool_ready"] >= DEFAULT_PREHEAT
        if now == last and now[0] == now[1] and pool_full:
            return now
        last = now
        time.sleep(3)
    return last


def kernel_process(kernel_id):
    """The live process of the kernel ``kernel_id`` (its connection file names it), or None."""
    for p in psutil.process_iter(["cmdline"]):
        if any(kernel_id in a for a in p.info["cmdline"] or ()):
            return p
    return None


def test_health_probe_starts_no_kernel(server):
    before = stable_kernels(server)
    for _ in range(5):
        assert kernels(server) == before
    time.sleep(2)  # a kernel would be starting by now
    assert kernels(server) == before


def test_closing_the_page_frees_its_kernel(browser, server):
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # a new observer
    p = context.new_page()
    try:
        p.goto(server["url"], timeout=PAGE_READY_MS)
        p.locator(".nsb-fit-button").wait_for(timeout=PAGE_READY_MS)
        kernel_id = p.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent)"
                               ".kernelId")
        assert kernel_process(kernel_id) is not None
        shutdowns = []
        p.on("response", lambda r: shutdowns.append(r.status) if "/voila/api/shutdown/" in r.url else None)
        p.close(run_before_unload=True)  # as a person closing the tab: Voila asks the server to free the kernel
    finally:
        context.close()
    deadline = time.monotonic() + 30
    while kernel_process(kernel_id) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert kernel_process(kernel_id) is None, f"kernel still alive; shutdown responses: {shutdowns}"


def test_load_benchmark_protocol_observer_does_what_a_page_does(server):
    """``benchmarks/bench_load.py``'s protocol observer (the server's part of a first view, without a
    browser) must reach what a page reaches: the demo's statistic in the widget state, a Fit through
    the button's click message, and its kernel freed by Voila's shutdown call."""
    import asyncio
    import concurrent.futures
    import importlib.util

    spec = importlib.util.spec_from_file_location("_nsb_bench_load", REPO / "benchmarks" / "bench_load.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    async def observe():
        observer = bench.ProtocolObserver(server["url"], ["/voila/static/voila.js"])  # one static file as a page
        try:
            await observer.open()
            state = (observer.kernel, observer._readout())
            await observer.fit()
            return state, observer._readout()
        finally:
            await observer.close()

    with concurrent.futures.ThreadPoolExecutor(1) as ex:  # the browser fixture's loop runs in this thread
        (kernel_id, first), fitted = ex.submit(asyncio.run, observe()).result(timeout=300)
    assert re.search(r"cstat = [0-9.]+", first), first
    assert re.search(r"cstat = [0-9.]+ / \d+ dof", fitted) and fitted != first, fitted
    deadline = time.monotonic() + 30
    while kernel_process(kernel_id) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert kernel_process(kernel_id) is None, "the protocol observer's shutdown call left its kernel running"
