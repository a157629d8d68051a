"""The dashboard in a real browser: what an observer waits for, on the demo observation.

Starts ``nuskybgd-dashboard DATA --demo`` (Voila on 127.0.0.1) unless ``--url`` names a running
one, opens it in headless Debian chromium (Playwright, never ``playwright install``) at 1440×900
and prints, over ``--repeat`` page loads (median and max):

* first view      page requested → Fit button and the statistic of the demo's regions shown
* draw→spectra    mouse drag of a new circle → its spectra on screen and the statistic changed
* drag→redraw     drag of that region by 15 sky pixels → the statistic changed
* edit→redraw     a value typed into the parameter table (Enter) → the statistic changed
* Fit→result      click on Fit → "… dof" in the readout (the fit's statistic and dof, shown at the optimum)
* Fit→goodness    click on Fit → the readout with the goodness (errors computed, the result complete)
* Fit→spectra     click on Fit → the large spectrum figure's total model curve redrawn (fitted)
  (the three Fit steps in the page's clock, from the click event to the frame that shows them;
  Fit is clicked once the edit's figures are on screen)
* Fit (harness)   Playwright's click() call → all three seen by the script (its actionability checks,
  scrolling the button into view and polling included: how the Fit steps were timed before)
* kernel memory   RSS of the page's kernel after these steps (MB, from /proc; own server only)

    python benchmarks/bench_browser.py [--repeat 3] [--url http://127.0.0.1:8866/]

Issue 20 measured before this dashboard layout (10 spectra, 2 cores): first view 9.1 s,
draw→spectra 0.9–1.1 s (statistic 2.2–2.4 s), edit→redraw 0.12–0.19 s, Fit→result 2.4–3.0 s,
kernel ~680 MB. Main at 9dd2a2e against the statistic-first / lazy link matrix change, interleaved
on the same busy machine (load average 6–20, 6 rounds): draw→spectra 1.12 → 0.47 s, drag→redraw
0.29 → 0.09 s, edit→redraw 0.18 → 0.15 s, Fit→result 1.26 → 1.19 s, Fit→spectra 1.41 → 1.24 s
(README: the fit's time is the kernel's engine work, scaled by the load).
Main at 3f0637a against the branch that shows the statistic at the optimum (block-sparse linear fit,
C-stat expectation over the non-zero columns), interleaved, load average 4–17, 5 rounds of 3 pages:
Fit→result 0.40–1.17 → 0.11–0.24 s, Fit→goodness (the whole result) 0.40–1.17 → 0.16–0.28 s,
Fit→spectra 0.44–1.20 → 0.20–0.29 s; timed as before (this script before that branch: Playwright's
click() included, Fit clicked while the edit's figures are still drawn), load 3.5–6, 3 rounds:
Fit→result 0.76–1.59 → 0.34–0.81 s. Where the rest goes (kernel trace, load 1–2, its logging
included): from the click event ~0.03 s to reach the kernel, then 0.17 s in it to the statistic
(the analysis' design matrices 0.04 s, the Newton iterations 0.08 s of which 0.05 s the six
A^T W A products, the rest bookkeeping); the goodness 0.04–0.07 s later; the figures 0.05–0.1 s
of Chromium drawing after that.
To compare two trees, run this script with ``PYTHONPATH`` pointing at the other tree's widgets.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _browser_helpers():
    """The tests' browser helpers: chromium path and args, server start/stop (tests/conftest.py),
    sky→screen and picking an image tool (tests/browser/pages.py)."""
    conf = _load("_nsb_conftest", REPO / "tests" / "conftest.py")
    page = _load("_nsb_browser_pages", REPO / "tests" / "browser" / "pages.py")
    return argparse.Namespace(CHROMIUM=conf.CHROMIUM, CHROMIUM_ARGS=conf.CHROMIUM_ARGS, free_port=conf._free_port,
                              stop=conf._stop, wait_listening=conf._wait_listening,
                              sky_to_screen=page.sky_to_screen, use_tool=page.use_tool)


def _kernels(server_pid):
    """{pid: RSS MB} of the ipykernel processes under the server process (from /proc)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {server_pid}, True
    while grew:
        new = {p for p, parent in parents.items() if parent in tree} - tree
        grew = bool(new)
        tree |= new
    out = {}
    for pid in tree - {server_pid}:
        try:
            if b"ipykernel" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[pid] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return out


def _readout(page):
    return page.locator(".nsb-stat-readout").inner_text()


def _until_changed(page, before, timeout=60_000):
    page.wait_for_function("b => { const e = document.querySelector('.nsb-stat-readout');"
                           " return e && e.innerText !== b && /=/.test(e.innerText); }", arg=before, timeout=timeout)


def _figures_quiet(page, ms=300):
    """Wait until no path of the spectrum figures has been redrawn for ``ms`` (an edit's figures
    follow its statistic: the user clicks Fit once they are on screen)."""
    page.evaluate("""() => { window.__nsbDrawn = performance.now();
      const obs = new MutationObserver(() => { window.__nsbDrawn = performance.now(); });
      document.querySelectorAll('.nsb-spectra-figure, .nsb-residual-figure').forEach(f =>
        obs.observe(f, {subtree: true, attributes: true, attributeFilter: ['d']})); }""")
    page.wait_for_function("ms => performance.now() - window.__nsbDrawn > ms", arg=ms, timeout=60_000, polling=50)


# Arms the Fit watch, in the page's clock: the click event on the Fit button (what the user does;
# Playwright's actionability checks before it are not the dashboard's), then the frame in which the
# readout first shows the dof (the statistic), the goodness (the result complete) and the total
# model (the black curve) of the large spectrum figure is redrawn with new values (the fitted model
# on screen; paths redrawn unchanged, e.g. when a scale moves, do not count).
_WATCH_FIT = """() => { const t = window.__nsbFit = {};
  const now = () => performance.now();
  const at = (key) => { if (!(key in t)) { t[key] = null; requestAnimationFrame(() => { t[key] = now(); }); } };
  document.querySelector('.nsb-fit-button').addEventListener('click', () => { t.click = t.click || now(); },
                                                             {capture: true, once: true});
  const ro = document.querySelector('.nsb-stat-readout');
  new MutationObserver(() => { if (!t.click) return; const text = ro.innerText;
    if (/ dof/.test(text)) at('result');
    if (/correct model gives/.test(text)) at('goodness'); })
    .observe(ro, {subtree: true, childList: true, characterData: true});
  const fig = document.querySelector('.nsb-spectra-figure');
  new MutationObserver((ms) => { if (t.click && ms.some(m => m.target.style.stroke === 'black'
                                                         && m.target.getAttribute('d') !== m.oldValue)) at('spectra'); })
    .observe(fig, {subtree: true, attributes: true, attributeFilter: ['d'], attributeOldValue: true}); }"""


def one_session(h, browser, url, server_pid, shots=None):
    """One page load and the five user steps; returns {step: seconds} and kernel MB."""
    out = {}
    old_kernels = set(_kernels(server_pid)) if server_pid else set()
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    try:
        t = time.perf_counter()
        page.goto(url, timeout=120_000)
        page.locator(".nsb-fit-button").wait_for(timeout=120_000)
        page.wait_for_function("() => /=/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')",
                               timeout=120_000)
        out["first view"] = time.perf_counter() - t
        if shots:
            page.screenshot(path=str(shots / "bench-first-view.png"))

        h.use_tool(page, "circle")
        x0, y0 = h.sky_to_screen(page, 540, 420)
        x1, y1 = h.sky_to_screen(page, 565, 420)
        before = _readout(page)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=5)
        t = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("() => Array.from(document.querySelectorAll('.nsb-spectra-figure'))"
                               ".some(f => /bgd5/.test(f.textContent))", timeout=60_000)
        _until_changed(page, before)
        out["draw→spectra"] = time.perf_counter() - t

        h.use_tool(page, "select")
        before = _readout(page)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + (x1 - x0) * 0.6, y0, steps=5)
        t = time.perf_counter()
        page.mouse.up()
        _until_changed(page, before)
        out["drag→redraw"] = time.perf_counter() - t

        page.locator(".nsb-tabs .lm-TabBar-tab, .nsb-tabs .p-TabBar-tab").filter(has_text="Parameters").click()
        cell = page.locator(".nsb-param-value input").first
        value = float(cell.input_value())
        before = _readout(page)
        cell.fill(repr(value * 1.5))
        t = time.perf_counter()
        cell.press("Enter")
        _until_changed(page, before)
        out["edit→redraw"] = time.perf_counter() - t

        _figures_quiet(page)
        page.evaluate(_WATCH_FIT)
        t = time.perf_counter()
        page.locator(".nsb-fit-button").click()
        page.wait_for_function("() => { const t = window.__nsbFit; return t.result && t.goodness && t.spectra; }",
                               timeout=120_000)
        wall = time.perf_counter() - t
        marks = page.evaluate("() => window.__nsbFit")
        for step in ("result", "goodness", "spectra"):
            out[f"Fit→{step}"] = (marks[step] - marks["click"]) / 1000
        out["Fit (harness)"] = wall  # from Playwright's click() call to all three shown (polling included)
        if shots:
            page.screenshot(path=str(shots / "bench-fitted.png"))
        # this page's kernel (the ones of earlier pages may still be alive: issue 20 item 4)
        mem = sum(v for k, v in _kernels(server_pid).items() if k not in old_kernels) if server_pid else 0.0
    finally:
        page.close()
    return out, mem


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="page loads (default 3)")
    ap.add_argument("--url", help="a running dashboard (default: start one on the demo)")
    ap.add_argument("--shots", type=Path, help="save screenshots into this folder")
    args = ap.parse_args(argv)
    h = _browser_helpers()
    from playwright.sync_api import sync_playwright

    from nuskybgd_engine.demo import ensure_demo_observation

    proc = None
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        url, pid = args.url, None
        if url is None:
            data, ws = Path(tmp) / "data", Path(tmp) / "ws"
            data.mkdir()
            ensure_demo_observation(data)
            port = h.free_port()
            env = dict(os.environ, NUSKYBGD_DEMO_DIR=str(data))
            proc = subprocess.Popen([sys.executable, "-m", "nuskybgd_widgets.dashboard", str(data), "--demo",
                                     "--port", str(port), "--workspace", str(ws), "--no-browser"],
                                    cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            pid, url = proc.pid, f"http://127.0.0.1:{port}/"
            h.wait_listening(port, proc)
        try:
            runs, mems = [], []
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(h.CHROMIUM), args=h.CHROMIUM_ARGS, headless=True)
                try:
                    for i in range(args.repeat):
                        r, mem = one_session(h, browser, url, pid, args.shots if i == 0 else None)
                        runs.append(r)
                        mems.append(mem)
                finally:
                    browser.close()
        finally:
            if proc is not None:
                h.stop(proc)
    print(f"dashboard in headless chromium, 1440x900, {args.repeat} page load(s), demo observation; "
          f"load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} cores)")
    for step in runs[0]:
        values = [r[step] for r in runs]
        print(f"  {step:<14} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")
    if pid is not None:
        print(f"  kernel memory  median {statistics.median(mems):6.0f} MB  max {max(mems):6.0f} MB (RSS)")


if __name__ == "__main__":
    main()
