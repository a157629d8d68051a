"""Edit → redraw time of the dashboard on the demo observation (bqplot trait updates, no browser).

Live path: a select-mode drag of a background region (image panel) → group_from_events for both
modules → replace_group → the two affected spectra redrawn (bgd2; dragging bgd1, which holds each
module's reference spectrum, changes every spectrum's link factors, so all are redrawn: also timed). Baseline in the same run: rebuild
every spectrum and the whole BackgroundAnalysis, then redraw every spectrum. Also: a parameter
edit (number box) → all spectra redrawn. Target: live path < 200 ms.
"""

import statistics
import tempfile
import time

from nuskybgd_engine.analysis import BackgroundAnalysis
from nuskybgd_engine.groups import group_from_events
from nuskybgd_widgets.app import build_app


def main(n=15):
    with tempfile.TemporaryDirectory() as ws:
        app = build_app(workspace=ws, demo=True)
        s, im, sp = app.session, app.panels["image"], app.panels["spectra"]
        print(s)
        def drag(name):
            shape = s.region(name).regions.to_pixel(s.grid)[0].shape
            x, y = float(shape.center.x), float(shape.center.y)
            im.set_mode("select")
            im.handle_mouse("dragstart", x, y)
            times = []
            for i in range(n):
                t = time.perf_counter()
                im.handle_mouse("dragmove", x + (i % 5) + 1, y)
                times.append(time.perf_counter() - t)
            im.handle_mouse("dragend", x + 1, y)
            return times

        live = drag("bgd2")
        assert sp.last_redraw == [s.group_index("bgd2", "A"), s.group_index("bgd2", "B")]
        live_ref = drag("bgd1")
        assert sp.last_redraw == list(range(1, len(s.spectrum_names()) + 1))

        base = []
        obs = s.observation
        for _ in range(5):
            t = time.perf_counter()
            groups = [group_from_events(obs[m].events, s.region(r).regions, obs.grid, obs[m].maps, name=f"{r}{m}")
                      for m in s.modules for r in s.region_names("background")]
            an = BackgroundAnalysis(groups)
            for g, name in enumerate(s.spectrum_names(), start=1):
                sp.views[name].update(an.spectra_for_plot(g))
            base.append(time.perf_counter() - t)

        params = app.panels["parameters"]
        params.select("apbgd", 1)
        row = params.rows[("apbgd", 3)]
        edit = []
        for i in range(n):
            t = time.perf_counter()
            row.value.value = repr(float(row.value.value) * (1.01 if i % 2 else 0.99))
            edit.append(time.perf_counter() - t)

    med = statistics.median
    print(f"region drag -> 2 spectra redrawn : median {med(live) * 1e3:7.1f} ms  max {max(live) * 1e3:7.1f} ms "
          f"(target < 200 ms)")
    print(f"reference region drag -> all     : median {med(live_ref) * 1e3:7.1f} ms  max {max(live_ref) * 1e3:7.1f} ms")
    print(f"baseline full rebuild + redraw   : median {med(base) * 1e3:7.1f} ms")
    print(f"speed-up vs baseline             : {med(base) / med(live):5.1f}x")
    print(f"parameter edit -> shown redrawn  : median {med(edit) * 1e3:7.1f} ms  max {max(edit) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
