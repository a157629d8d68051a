"""The notebooks in JupyterLab: ``dashboard.ipynb`` run and used in its output, ``quickstart.ipynb`` run.

``jupyter lab`` runs as a subprocess on 127.0.0.1 (a free port, a token, no browser) with its root
in a temporary directory holding copies of ``notebooks/dashboard.ipynb`` and
``notebooks/quickstart.ipynb`` (whatever they write stays there or in a temporary workspace, never
in the checkout), Jupyter config, data and runtime directories of its own, and the test session's
demo observation. Headless Debian chromium, driven by Playwright, opens each notebook, runs it from
the Run menu as a person would, and checks what the outputs show. In the dashboard's output it
clicks Fit, draws a region and drags it on the image, presses Ctrl-Z in and out of the app, and
measures that the app stays within the notebook cell: side by side as in Voila when the cell is
wide, the spectra below the image when it is not. Screenshots go to
``test-artifacts/jupyterlab-*.png``. Each test shuts its notebook's kernel down; stopping the
server stops the rest (``serve_dashboard`` reaps any left).

Needs ``jupyterlab`` (the ``test`` extra), ``/usr/bin/chromium`` and ``playwright``; skipped with
the reason otherwise.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
PlaywrightTimeout = playwright_sync.TimeoutError

from .pages import STEP_MS, drag, fit_done, readout, readout_changes, settled, use_tool, wait_regions

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
NOTEBOOKS = ("dashboard.ipynb", "quickstart.ipynb")

PAGE_MS = 120_000  # JupyterLab's front end loaded and the notebook shown
RUN_MS = 240_000  # Run All until the last cell is done: kernel start, maps, fit (2 busy cores)
SHOWN = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the current tab

pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install -e .[test])")
from jupyterlab.commands import get_app_dir  # noqa: E402

from nuskybgd_widgets.dashboard import jupyter_data_path  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def lab_app_dir():
    """JupyterLab's built front end: under ``sys.prefix``, or, in a virtual environment that uses
    the system's packages, next to the other Jupyter data (where pip put it)."""
    candidates = [Path(get_app_dir())] + [Path(d) / "lab" for d in jupyter_data_path().split(os.pathsep)]
    for d in candidates:
        if (d / "static" / "package.json").is_file():
            return d
    pytest.skip(f"JupyterLab's front end (static/package.json) not found in {[str(d) for d in candidates]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser, serve_dashboard):
    """``python -m jupyterlab`` on copies of the notebooks until the module ends (after the browser,
    so that without one nothing is started)."""
    from nuskybgd_engine.demo import ensure_demo_observation

    base = tmp_path_factory.mktemp("jupyterlab")
    root, workspace = base / "root", base / "workspace"
    for d in (root, workspace):
        d.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, root / name)
    # the test session's demo ($NUSKYBGD_DEMO_DIR, temporary), simulated here if no test did yet
    demo = ensure_demo_observation().parent
    # No news or update prompt over the notebook (and no request for them).
    settings = base / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERLAB_", "NUSKYBGD_DATA_ROOT", "NUSKYBGD_DEMO"))}
    env.update(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_DATA_DIR=str(base / "data"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_PATH=jupyter_data_path(),
               JUPYTERLAB_DIR=str(lab_app_dir()), NUSKYBGD_DEMO_DIR=str(demo), NUSKYBGD_WORKSPACE=str(workspace))
    token = secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", "--allow-root",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    ARTIFACTS.mkdir(exist_ok=True)
    with serve_dashboard(argv, cwd=root, env=env, log=base / "jupyterlab.log") as url:
        yield {"url": url, "token": token, "root": root, "workspace": workspace, "log": base / "jupyterlab.log"}


def run_notebook(open_page, lab, name, viewport):
    """A tab on notebook ``name`` with every cell run (Run ▸ Run All Cells), once all are done."""
    # ?reset: no tab of an earlier test restored next to it (Run All would go to whichever is current)
    p = open_page(f"{lab['url']}lab/tree/{name}?reset&token={lab['token']}", timeout_ms=PAGE_MS, viewport=viewport)
    p.nsb_nan = []  # the plots' "attribute ... NaN" console errors: a value bqplot cannot place
    p.on("console", lambda m: p.nsb_nan.append(m.text) if m.type == "error" and "NaN" in m.text else None)
    p.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").filter(has_text=name).wait_for(timeout=PAGE_MS)
    p.locator(f"{SHOWN} .jp-Cell").first.wait_for(timeout=PAGE_MS)
    # as a person would: once the kernel is up (Run All before that asks which kernel to start)
    p.locator(".jp-StatusBar-Widget").filter(has_text=re.compile(r"\| Idle")).wait_for(timeout=PAGE_MS)
    p.get_by_role("menuitem", name="Run", exact=True).click()
    p.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    prompts = f"() => Array.from(document.querySelectorAll('{SHOWN} .jp-CodeCell .jp-InputPrompt'))" \
              ".map(e => e.textContent.trim())"
    try:
        p.wait_for_function(f"() => {{ const t = ({prompts})();"
                            " return t.length > 0 && t.every(s => /^\\[\\d+\\]:$/.test(s)); }", timeout=RUN_MS)
    except PlaywrightTimeout:
        shot = ARTIFACTS / f"jupyterlab-{name}-not-run.png"
        p.screenshot(path=str(shot))
        pytest.fail(f"{name}: not every cell ran within {RUN_MS / 1000:.0f} s (prompts {p.evaluate(prompts)}; "
                    f"see {shot}); end of the server log:\n{lab['log'].read_text()[-2000:]}")
    return p


@pytest.fixture
def notebook(open_page, lab):
    """Factory ``notebook(name, viewport)``: :func:`run_notebook`; afterwards its tab is closed and
    every kernel of the server shut down (the next notebook runs alone on the cores)."""
    pages = []

    def run(name, viewport):
        pages.append(run_notebook(open_page, lab, name, viewport))
        return pages[-1]

    yield run
    for p in pages:
        p.close()
    kernels = [k for k in psutil.Process(lab["url"].pid).children(recursive=True)
               if any("ipykernel" in a for a in k.cmdline())]
    assert kernels or not pages, "no kernel process found under the server"
    api, auth = f"{lab['url']}api/sessions", {"Authorization": f"token {lab['token']}"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=auth), timeout=30) as r:
        sessions = json.load(r)
    for session in sessions:
        urllib.request.urlopen(urllib.request.Request(f"{api}/{session['id']}", method="DELETE", headers=auth),
                               timeout=60).close()
    _gone, alive = psutil.wait_procs(kernels, timeout=30)
    assert not alive, f"kernels still running after their sessions were shut down: {alive}"


def output_problems(page):
    """Error and stderr outputs, and widgets that failed to display (their text)."""
    bad = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                      ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
    bad += [t for t in page.locator(".jp-OutputArea-output").all_inner_texts() if "Error displaying widget" in t]
    return bad


# Boxes of the app in its output area: the two panels side by side or wrapped, and every figure shown.
LAYOUT_JS = """() => {
    const app = document.querySelector('.jp-OutputArea-output .nsb-app');
    const box = e => { const r = e.getBoundingClientRect();
        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
    const row = app.querySelector(':scope > .widget-hbox');
    return {
        output: box(app.closest('.jp-OutputArea-output')), app: box(app),
        scroll: [app.scrollWidth - app.clientWidth, row.scrollWidth - row.clientWidth],
        image: box(app.querySelector('.nsb-image-panel')), spectra: box(app.querySelector('.nsb-spectra-panel')),
        figures: Array.from(app.querySelectorAll('.bqplot.figure')).filter(f => f.getClientRects().length > 0
            && f.getBoundingClientRect().width > 0).map(f => [f.className.baseVal ?? f.className, box(f)]),
    };
}"""


def within_cell(page):
    """Layout of the app, after checking that nothing of it sticks out of the output area."""
    lay = page.evaluate(LAYOUT_JS)
    out = lay["output"]
    assert lay["scroll"] == [0, 0], f"the app scrolls sideways in its cell: {lay['scroll']}"
    assert len(lay["figures"]) >= 3, lay["figures"]  # the image and the focused region's two spectra
    for name, b in [("app", lay["app"]), ("image panel", lay["image"]), ("spectra panel", lay["spectra"]),
                    *lay["figures"]]:
        assert out["left"] - 1 <= b["left"] and b["right"] <= out["right"] + 1, (name, b, out)
    return lay


# What the spectra shown large draw: curves and data point positions (they change with the region).
MARKS_JS = """() => Array.from(document.querySelectorAll('.nsb-spectra-figure')).filter(f => f.getClientRects().length)
    .map(f => Array.from(f.querySelectorAll('path.line, g.object_grp')).map(e => e.getAttribute('d')
        || e.getAttribute('transform')).join()).join('|')"""


def spectra_marks(page):
    return page.evaluate(MARKS_JS)


def test_dashboard_notebook_fit_and_drag_in_jupyterlab(notebook):
    p = notebook("dashboard.ipynb", (1920, 1080))
    app = p.locator(".jp-OutputArea-output .nsb-app")
    app.wait_for(timeout=STEP_MS)
    p.wait_for_function("() => /=/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')",
                        timeout=STEP_MS)
    assert not output_problems(p), output_problems(p)
    assert p.locator(".nsb-image-figure").is_visible() and p.locator(".nsb-spectra-figure").first.is_visible()
    p.locator(".nsb-image-figure").scroll_into_view_if_needed()
    settled(p)
    # a wide cell: image and spectra side by side as in Voila, all within the cell
    lay = within_cell(p)
    image, spectra = lay["image"], lay["spectra"]
    assert spectra["left"] >= image["right"] - 1 and abs(spectra["top"] - image["top"]) < 2, lay
    p.screenshot(path=str(ARTIFACTS / "jupyterlab-dashboard-1-run.png"))

    p.locator(".nsb-fit-button").click()
    fit_done(p)
    assert re.search(r"cstat = [0-9.]+ / \d+ dof", readout(p)), readout(p)

    # draw a circle by a mouse drag on an empty part of the field: its spectra are shown
    n = p.locator(".nsb-region-list option").count()
    titles = p.locator(".nsb-spectra-figure").all_text_contents()
    before = readout(p)
    use_tool(p, "circle")
    drag(p, (540, 420), (565, 420))
    wait_regions(p, n + 1)
    p.wait_for_function("before => Array.from(document.querySelectorAll('.nsb-spectra-figure'))"
                        ".filter(f => !before.includes(f.textContent)).length >= 2", arg=titles, timeout=STEP_MS)
    readout_changes(p, before)
    # drag the new region elsewhere: the statistic and its spectra follow
    before, marks = readout(p), spectra_marks(p)
    use_tool(p, "select")
    drag(p, (540, 420), (570, 450))
    readout_changes(p, before)
    p.wait_for_function(f"m => ({MARKS_JS})() !== m", arg=marks, timeout=STEP_MS)
    p.screenshot(path=str(ARTIFACTS / "jupyterlab-dashboard-2-drawn-dragged.png"))

    # Ctrl-Z acts on the app holding the focus: not from another cell; from the app it undoes the fit
    p.locator(".nsb-fit-button").click()
    fit_done(p)
    fitted = readout(p)
    p.evaluate("() => { window.__nsbUndo = 0; document.addEventListener('click', e => {"
               " if (e.target.closest && e.target.closest('.nsb-undo-button')) window.__nsbUndo++; }, true); }")
    p.locator(".jp-MarkdownCell").first.click()
    p.keyboard.press("Control+z")
    assert p.evaluate("() => window.__nsbUndo") == 0
    p.locator(".nsb-stat-readout").click()
    p.keyboard.press("Control+z")
    assert p.evaluate("() => window.__nsbUndo") == 1
    readout_changes(p, fitted)
    assert " dof" not in readout(p)

    # a narrower cell (1440×900 with the file browser open): the spectra wrap below the image, in the cell
    p.set_viewport_size({"width": 1440, "height": 900})
    p.wait_for_function("""() => { const a = document.querySelector('.nsb-image-panel').getBoundingClientRect();
        const b = document.querySelector('.nsb-spectra-panel').getBoundingClientRect();
        return b.top >= a.bottom - 1; }""", timeout=STEP_MS)
    within_cell(p)
    p.locator(".nsb-spectra-panel").scroll_into_view_if_needed()
    p.screenshot(path=str(ARTIFACTS / "jupyterlab-dashboard-3-narrow-cell.png"))
    assert not output_problems(p), output_problems(p)
    assert not p.nsb_errors, p.nsb_errors
    assert not p.nsb_nan, p.nsb_nan[:5]
    assert not p.nsb_external, p.nsb_external
    assert not p.nsb_http_errors, p.nsb_http_errors


# The positions of a figure's data points and the paths of its curves (legend symbols left out):
# a mark given a zero on a log axis is placed at NaN, that is, not drawn.
DRAWN_JS = r"""fig => { const marks = sel => Array.from(fig.querySelectorAll(sel)).filter(e => !e.closest('.g_legend'));
    const num = '\\s*-?[0-9.]+(e[-+]?[0-9]+)?\\s*', dot = new RegExp(`^translate\\(${num},${num}\\)$`);
    return {dots: marks('g.object_grp').filter(e => dot.test(e.getAttribute('transform') || '')).length,
            lines: marks('path.line').filter(e => /^M[-0-9.e]+,[-0-9.e]+L/.test(e.getAttribute('d') || '')
                && !/NaN/.test(e.getAttribute('d'))).length}; }"""


def test_quickstart_notebook_runs_in_jupyterlab(notebook, lab):
    p = notebook("quickstart.ipynb", (1600, 1000))
    # the last cells' outputs may still be rendering when the prompts are all numbered (busy cores)
    try:
        p.wait_for_function("() => { const t = Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                            ".map(e => e.innerText).join(' ');"
                            " return t.includes('predicted') && t.includes('wrote'); }", timeout=STEP_MS)
    except PlaywrightTimeout:
        text = " ".join(p.locator(".jp-OutputArea-output").all_inner_texts())
        pytest.fail(f"the quickstart's outputs lack 'predicted' or 'wrote': {text[-2000:]}")
    assert not output_problems(p), output_problems(p)
    fig = p.locator(".jp-OutputArea-output .bqplot.figure")
    fig.scroll_into_view_if_needed()
    assert fig.is_visible()
    # the data points and the five curves (model, four components) drawn, not an empty frame
    try:
        p.wait_for_function(f"f => {{ const m = ({DRAWN_JS})(f); return m.dots >= 10 && m.lines >= 5; }}",
                            arg=fig.element_handle(), timeout=STEP_MS)
    except PlaywrightTimeout:
        pytest.fail(f"the quickstart's figure draws {fig.evaluate(DRAWN_JS)} (want >= 10 dots, 5 lines); "
                    f"console: {p.nsb_nan[:3]}")
    finally:
        fig.screenshot(path=str(ARTIFACTS / "jupyterlab-quickstart-figure.png"))
        p.screenshot(path=str(ARTIFACTS / "jupyterlab-quickstart.png"))
    assert list(lab["workspace"].glob("*.xcm")), "the quickstart's export is missing"
    assert not p.nsb_errors, p.nsb_errors
    assert not p.nsb_nan, p.nsb_nan[:5]
    assert not p.nsb_external, p.nsb_external
