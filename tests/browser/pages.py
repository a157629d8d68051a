"""What the browser tests do on the dashboard, in Voila or in a JupyterLab notebook output: find sky
pixels on the image figure, drag between them once the layout has settled, and wait for the
statistic readout or the region list to change (one dashboard on the page)."""

from __future__ import annotations

STEP_MS = 60_000  # one user action (draw, fit, export) until its visible effect


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


def readout(page):
    return page.locator(".nsb-stat-readout").inner_text()


def fit_done(page):
    """Wait until the readout shows a fit's whole result and return it: the statistic is shown first, at the
    optimum ("… dof (converged; errors and goodness follow…)"), then replaced by the result with its goodness."""
    page.wait_for_function("() => { const t = document.querySelector('.nsb-stat-readout').innerText;"
                           " return / dof/.test(t) && !/follow…/.test(t); }", timeout=STEP_MS)
    return readout(page)


def readout_changes(page, before):
    page.wait_for_function("b => { const e = document.querySelector('.nsb-stat-readout');"
                           " return e && e.innerText !== b && /=/.test(e.innerText); }", arg=before, timeout=STEP_MS)


def settled(page, timeout_ms=STEP_MS):
    """Wait until the image figure stops moving (figures still resizing after a render shift the
    sky→screen mapping a drag relies on)."""
    page.wait_for_function("""() => {
        const r = document.querySelector('.nsb-image-figure')?.getBoundingClientRect();
        if (!r) return false;
        const now = [r.x, r.y, r.width, r.height].join();
        const same = window.__nsbLastRect === now;
        window.__nsbLastRect = now;
        return same;
    }""", timeout=timeout_ms, polling=300)


def drag(page, start, end, steps=6):
    """A mouse drag between two sky pixels on the image (once the layout has settled)."""
    settled(page)
    x0, y0 = sky_to_screen(page, *start)
    x1, y1 = sky_to_screen(page, *end)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def wait_regions(page, n):
    page.wait_for_function("n => document.querySelectorAll('.nsb-region-list option').length === n", arg=n,
                           timeout=STEP_MS)


def use_tool(page, mode):
    """Click the image tool ``mode`` and wait until the kernel took it (the other tools released:
    the figure's interaction is switched before them), so that a drag right after is not a pan."""
    page.locator(f".nsb-draw-{mode}").click()
    page.wait_for_function("""m => { const on = Array.from(document.querySelectorAll('.nsb-image-panel button'))
        .filter(b => /nsb-draw-/.test(b.className) && b.classList.contains('mod-active'));
        return on.length === 1 && on[0].classList.contains('nsb-draw-' + m); }""", arg=mode, timeout=STEP_MS)
