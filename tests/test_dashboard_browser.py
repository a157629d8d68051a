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
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

SERVER_START_S = 90  # Voila + kernel start, bounded
PAGE_READY_MS = 120_000  # first page: kernel start, demo maps and model
STEP_MS = 60_000  # one user action (draw, fit, export) until its visible effect

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found: run .ci/install-browser (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e .[test]; the system chromium "
                                      "is used, never `playwright install`)")
pytest.importorskip("voila", reason="voila is not installed")
pytest.importorskip("nuskybgd_widgets.app", reason="the dashboard app (nuskybgd_widgets.app) is not there")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port():
    """A TCP port free on 127.0.0.1 now (the server is told to fail rather than move if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, timeout=20):
    """Stop the server and everything in its process group: TERM, then KILL after ``timeout``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


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
def server(dirs):
    """``python -m nuskybgd_widgets.dashboard DATA --demo --workspace WS --port N`` until the module ends."""
    port = free_port()
    env = dict(os.environ, NUSKYBGD_DEMO_DIR=str(dirs["data"]))
    log_path = dirs["base"] / "voila.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nuskybgd_widgets.dashboard", str(dirs["data"]), "--demo", "--port", str(port),
             "--workspace", str(dirs["workspace"]), "--no-browser"],
            cwd=dirs["base"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nuskybgd-dashboard exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:  # listening: the page itself is not fetched here, that would start a kernel
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nuskybgd-dashboard did not answer on {url} within {SERVER_START_S} s:\n"
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "log": log_path, "pid": proc.pid, **dirs}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh tab (a fresh kernel and app) on the dashboard, ready; screenshot on the way out."""
    ARTIFACTS.mkdir(exist_ok=True)
    p = browser.new_page(viewport={"width": 1600, "height": 1200})
    errors = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.goto(server["url"], timeout=PAGE_READY_MS)
    p.locator(".nsb-fit-button").wait_for(timeout=PAGE_READY_MS)
    # the demo's regions have spectra and a statistic before the user does anything
    p.wait_for_function("() => /=/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')",
                        timeout=PAGE_READY_MS)
    p.nsb_errors = errors
    try:
        yield p
    finally:
        p.screenshot(path=str(ARTIFACTS / f"dashboard-{request.node.name}-final.png"), full_page=True)
        p.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def sky_to_screen(page, x, y):
    """Page coordinates of sky pixel (x, y) on the image figure, from its axis tick labels."""
    axes = page.locator(".nsb-image-figure").evaluate("""fig => Array.from(fig.querySelectorAll('g.axis')).map(ax =>
        Array.from(ax.querySelectorAll('g.tick')).map(t => {
            const r = (t.querySelector('text') || t).getBoundingClientRect();
            return [parseFloat(t.textContent), r.x + r.width / 2, r.y + r.height / 2];
        }).filter(v => isFinite(v[0])))""")
    fits = {}
    for ticks in axes:
        if len(ticks) < 2:
            continue
        (v0, x0, y0), (v1, x1, y1) = ticks[0], ticks[-1]
        horizontal = abs(x1 - x0) > abs(y1 - y0)
        a, b = (x0, x1) if horizontal else (y0, y1)
        fits["x" if horizontal else "y"] = (a, (b - a) / (v1 - v0), v0)
    assert set(fits) == {"x", "y"}, f"image figure axes not found: {axes}"
    (ax, sx, vx), (ay, sy, vy) = fits["x"], fits["y"]
    return ax + (x - vx) * sx, ay + (y - vy) * sy


def messages(page):
    return " | ".join(t.strip() for t in page.locator(".nsb-message").all_inner_texts() if t.strip())


def test_draw_fit_export_in_the_browser(page, server):
    shot(page, "1-loaded")
    figures = page.locator(".nsb-spectra-figure")
    n_before = figures.count()
    assert n_before >= 2
    readout_before = page.locator(".nsb-stat-readout").inner_text()

    # draw a circle background region by mouse drag on an empty part of the field
    page.locator(".nsb-draw-circle").click()
    x0, y0 = sky_to_screen(page, 540, 420)
    x1, y1 = sky_to_screen(page, 565, 420)
    assert x1 - x0 > 10  # a radius of 25 sky pixels is a real drag on screen
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + (x1 - x0) * k / 10, y0 + (y1 - y0) * k / 10)
        page.wait_for_timeout(30)
    page.mouse.up()
    # the new region gets one spectrum per module, and the statistic changes
    page.wait_for_function(f"() => document.querySelectorAll('.nsb-spectra-figure').length >= {n_before + 2}",
                           timeout=STEP_MS)
    page.wait_for_function("before => document.querySelector('.nsb-stat-readout').innerText !== before",
                           arg=readout_before, timeout=STEP_MS)
    shot(page, "2-region-drawn")
    n_spectra = figures.count()

    page.locator(".nsb-fit-button").click()
    page.wait_for_function("() => / dof/.test(document.querySelector('.nsb-stat-readout').innerText)",
                           timeout=STEP_MS)
    readout = page.locator(".nsb-stat-readout").inner_text()
    assert re.search(r"cstat = [0-9.]+ / \d+ dof", readout), readout
    shot(page, "3-fitted")

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


@pytest.mark.parametrize("typed, why", [
    ("../outside", "not allowed"),
    ("escape", "symbolic link"),
    ("{outside}", "outside"),
], ids=["dotdot", "symlink", "absolute"])
def test_path_traversal_is_refused_visibly(page, server, typed, why):
    typed = typed.format(outside=server["outside"])
    status_before = page.locator(".nsb-data-status").inner_text()
    box = page.locator(".nsb-path-input input")
    box.fill(typed)
    box.press("Enter")
    page.locator(".nsb-load-button").click()
    page.wait_for_function("why => Array.from(document.querySelectorAll('.nsb-message'))"
                           ".some(e => e.innerText.includes(why))", arg=why, timeout=STEP_MS)
    shot(page, f"5-refused-{why.replace(' ', '-')}")
    assert why in messages(page)
    assert page.locator(".nsb-data-status").inner_text() == status_before  # nothing was opened


def kernels(server):
    """Kernels the server runs, by its health probe, and kernel processes under it, by the process table."""
    with urllib.request.urlopen(server["url"] + "nuskybgd/health", timeout=10) as r:
        reported = json.load(r)
    assert reported["status"] == "ok"
    procs = [p for p in psutil.Process(server["pid"]).children(recursive=True)
             if any("ipykernel" in a for a in p.cmdline())]
    return reported["kernels"], len(procs)


def stable_kernels(server, seconds=60):
    """The kernel count once the server is settled (a pre-heated pool may be refilling)."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        now = kernels(server)
        if now == last and now[0] == now[1]:
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
    assert f"Kernel shutdown: {kernel_id}" in server["log"].read_text()
