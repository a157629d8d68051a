"""Two observations in the served dashboard (issue 15): the demo plus its second visit, in a real browser.

The dashboard starts on the demo; the Data panel's "+ observation" button adds the demo field's
second visit (another roll), the image panel's "obs" dropdown switches the image to it, and the
spectra panel's "all A | B" layout shows the spectra of both visits (names prefixed with their
keys; its observation filter shows one). Screenshots at 1440x900 are kept in ``test-artifacts/``. Needs chromium and playwright
(skipped otherwise), like ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
PAGE_READY_MS = 120_000
STEP_MS = 90_000
SCREEN = {"width": 1440, "height": 900}

pytest.importorskip("voila", reason="voila is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser, serve_dashboard):
    """The dashboard on the demo, with the demo's first two visits simulated beforehand."""
    from nuskybgd_engine.demo import DEMO_SPEC, DEMO_VISITS, ensure_demo_observation

    base = tmp_path_factory.mktemp("visits")
    data, workspace = base / "data", base / "workspace"
    data.mkdir()
    workspace.mkdir()
    ensure_demo_observation(data)
    ensure_demo_observation(data, visit=2)  # simulated here: the page only prepares its maps
    env = dict(os.environ, NUSKYBGD_DEMO_DIR=str(data))
    argv = [sys.executable, "-m", "nuskybgd_widgets.dashboard", data, "--demo", "--workspace", workspace,
            "--no-browser"]
    with serve_dashboard(argv, cwd=base, env=env, log=base / "voila.log") as url:
        yield {"url": url, "keys": (DEMO_SPEC["obsid"], DEMO_VISITS[2]["obsid"])}


def test_two_observations_switch_image_and_show_all_spectra(browser, server):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport=SCREEN)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    v1, v2 = server["keys"]
    try:
        page.goto(server["url"], timeout=PAGE_READY_MS)
        page.wait_for_function("() => /=/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')",
                               timeout=PAGE_READY_MS)
        assert not page.locator(".nsb-image-observation").is_visible()  # one observation: no switch
        page.locator(".nsb-tabs .lm-TabBar-tab, .nsb-tabs .p-TabBar-tab").filter(has_text="Data").first.click()
        page.locator(".nsb-add-observation").click()  # the demo is chosen: its next visit
        page.wait_for_function("() => /2 observations/.test(document.querySelector('.nsb-data-status')?.innerText)",
                               timeout=STEP_MS)
        # the image switches to the second visit
        switch = page.locator(".nsb-image-observation select")
        switch.wait_for(timeout=STEP_MS)
        switch.select_option(v2)
        page.wait_for_function("k => new RegExp(k + ' shown').test(document.querySelector('.nsb-data-status')"
                               "?.innerText)", arg=v2, timeout=STEP_MS)
        # the spectra panel shows both visits' spectra
        page.locator(".nsb-spectra-layout button").filter(has_text="all A | B").click()
        page.wait_for_function("""keys => {
            const t = Array.from(document.querySelectorAll('.nsb-spectra-figure')).map(f => f.textContent).join(' ');
            return keys.every(k => t.includes(k + '_bgd1A') && t.includes(k + '_bgd1B'));
        }""", arg=[v1, v2], timeout=STEP_MS)
        titles = " ".join(page.locator(".nsb-spectra-figure").all_text_contents())
        for k in (v1, v2):
            assert f"{k}_bgd2A" in titles and f"{k}_bgd2B" in titles
        page.wait_for_timeout(1500)  # the last figures finish drawing before the screenshot
        page.screenshot(path=str(ARTIFACTS / "multi-observation-1440x900.png"))
        # the stacked view's observation filter: only the second visit's spectra
        page.locator(".nsb-spectra-observation select").select_option(v2)
        page.wait_for_function("""k => {
            const t = Array.from(document.querySelectorAll('.nsb-spectra-figure')).map(f => f.textContent).join(' ');
            return t.includes(k + '_bgd1A') && !/_bgd1A/.test(t.split(k + '_bgd1A').join(''));
        }""", arg=v2, timeout=STEP_MS)
        page.screenshot(path=str(ARTIFACTS / "multi-observation-filtered-1440x900.png"))
        # the switch and the status fit on the screen
        for sel in (".nsb-image-observation", ".nsb-image-figure", ".nsb-fit-button"):
            box = page.locator(sel).first.bounding_box()
            assert box and box["x"] + box["width"] <= SCREEN["width"], (sel, box)
        messages = " | ".join(t for t in page.locator(".nsb-message").all_inner_texts() if t.strip())
        assert "error" not in messages.lower(), messages
        assert not errors, errors
    finally:
        page.close()
