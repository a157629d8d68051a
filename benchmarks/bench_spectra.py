"""Benchmark: one region spectrum + RMF from a 10^6-event file (target < 0.5 s, issue 5).

Prints the time of each step and compares the extraction with a naive baseline in the same run
(full-frame mask indexed per event + np.histogram). Run: ``python benchmarks/bench_spectra.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_event_hdul  # noqa: E402

from nuskybgd_engine.io.events import read_events  # noqa: E402
from nuskybgd_engine.io.ogip import write_pha, write_rmf  # noqa: E402
from nuskybgd_engine.io.regions import RegionSet, SkyGrid, region_mask  # noqa: E402
from nuskybgd_engine.spectra.extract import extract_spectrum  # noqa: E402
from nuskybgd_engine.spectra.responses import nominal_rmf, region_rmf  # noqa: E402
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ev.evt"
        hdul = make_event_hdul(n=1_000_000, seed=2)
        d = hdul["EVENTS"].data
        d["X"] = np.round(d["X"])
        d["Y"] = np.round(d["Y"])
        hdul.writeto(path)
        t_read, ev = best_time(lambda: read_events(path), repeat=2)
        rs = RegionSet.from_string('fk5\ncircle(150.0,2.0,180")\n-circle(150.01,2.0,30")\n')
        grid = SkyGrid.from_event_columns(ev.header)
        extract_spectrum(ev, rs)  # warm the sky->pixel cache
        t_ext, res = best_time(lambda: extract_spectrum(ev, rs))

        def naive():
            mask = region_mask(rs, grid)
            ix, iy, inside = grid.event_index(ev["X"], ev["Y"])
            sel = np.zeros(len(ev), bool)
            sel[inside] = mask[iy[inside], ix[inside]]
            sel &= (ev["GRADE"] <= 26) & (ev["PI"] >= 0)
            return np.histogram(ev["PI"][sel], bins=np.arange(4097))[0]

        t_naive, counts = best_time(naive)
        assert np.array_equal(counts, res.spectrum.counts)
        t0 = time.perf_counter()
        nominal_rmf(ev.module)
        t_nom_build = time.perf_counter() - t0
        t_rmf, (rmf, source) = best_time(lambda: region_rmf(ev, res.det_counts))
        t_write_pha, _ = best_time(lambda: write_pha(res.spectrum, Path(tmp) / "s.pha", overwrite=True), repeat=3)
        t_write_rmf, _ = best_time(lambda: write_rmf(rmf, Path(tmp) / "s.rmf", overwrite=True), repeat=2)
    print(f"events: {len(ev)}, region counts {res.total_counts}, npix {res.npix}, RMF {source}")
    print(f"read_events (not part of the target)   {t_read * 1e3:8.1f} ms")
    print(f"extract_spectrum                       {t_ext * 1e3:8.1f} ms")
    print(f"  naive baseline (full mask+histogram) {t_naive * 1e3:8.1f} ms  (ratio {t_naive / t_ext:.2f}x)")
    print(f"nominal RMF build (once per process)   {t_nom_build * 1e3:8.1f} ms")
    print(f"region_rmf (nominal, cached)           {t_rmf * 1e3:8.1f} ms")
    total = t_ext + t_rmf
    print(f"spectrum + RMF in memory               {total * 1e3:8.1f} ms  (target < 500 ms: "
          f"{'OK' if total < 0.5 else 'MISSED'})")
    print(f"write_pha                              {t_write_pha * 1e3:8.1f} ms")
    print(f"write_rmf (7M elements)                {t_write_rmf * 1e3:8.1f} ms")
    print(f"spectrum + RMF incl. writing           {(total + t_write_pha + t_write_rmf) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
