"""Coverage of the predicted background's 68 % interval on simulated observations (issue 8).

Run: ``python benchmarks/bench_coverage.py [--seeds 120] [--exposure 20000]``.

One module (FPMA), no source. The geometry (GTIs, aspect track, projected maps) and the
calibration are made once; each seed draws new events (``simulate.simulate_module_events``),
extracts the four background regions of the simulator, fits (C-stat) and predicts the 3-20 keV
background of a held-out circle (r = 60", on the array centre), compared with the noise-free truth
(``simulate.expected_counts``). Printed: the fraction of seeds whose ±1σ interval (statistical
only, and statistical + the 4 %/1.645 systematic floor) covers the truth, target 68 ± 7 %, the
90 % (±1.645σ) coverage, the mean pull and the time per seed.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np


class Setup:
    """Fixed geometry + calibration of one module; ``events(seed, norms)`` gives an EventList."""

    def __init__(self, exposure=20000.0, module="A", pa=30.0):
        from astropy.io import fits

        from nuskybgd_engine.maps.module_calibration import module_calibration
        from nuskybgd_engine.io.regions import SkyGrid
        from nuskybgd_engine.maps.aspecthist import aspect_histogram
        from nuskybgd_engine.maps.projection import project_maps
        from nuskybgd_engine.simulate import (SimulationSpec, sky_frame, suggested_regions, aspect_centre_for,
                                              make_aspect_track, make_gti)

        self.module = module
        self.spec = SimulationSpec(exposure=exposure, modules=(module,), source="none", pa=pa)
        self.cal = module_calibration(module)
        rng = np.random.default_rng(12345)
        self.gti = make_gti(exposure, rng)
        self.track = make_aspect_track(module, self.gti, aspect_centre_for(pa), rng)
        self.sky = sky_frame(self.spec)
        header = fits.Header()
        header["NAXIS"] = 2
        for k, v in self.sky.items():
            header[k] = v
        header["PA_PNT"] = pa
        self.grid = SkyGrid.from_header(header)
        self.maps = project_maps(header, self.cal.instrument_map, aspect_histogram(self.track, self.gti),
                                 module=module, aperture=self.cal.aperture_det1)
        regs = suggested_regions({module: self.maps}, [])
        self.bgd = [regs[k] for k in sorted(regs) if k.startswith("bgd")]
        self.tmp = Path(tempfile.mkdtemp(prefix="nsb-bench-"))

    def events(self, seed, norms=None):
        from dataclasses import replace

        from nuskybgd_engine.io.events import read_events, write_events
        from nuskybgd_engine.simulate import SimulationSpec, time_keywords, simulate_module_events

        spec = self.spec if norms is None else SimulationSpec(**{**self.spec.__dict__, "norms": norms})
        spec = replace(spec, seed=seed)
        ev = simulate_module_events(spec, self.module, self.cal, self.track, self.gti, np.random.default_rng(seed))
        path = self.tmp / f"ev{seed}.evt"
        write_events(path, ev.columns, self.module, time_keywords(spec, self.gti), self.sky,
                     gti=self.gti, overwrite=True)
        out = read_events(path, module=self.module)
        path.unlink()
        return out, spec

    def truth(self, regions, spec, band="3-20"):
        from nuskybgd_engine.io.regions import region_cutout
        from nuskybgd_engine.simulate import expected_counts

        cut = region_cutout(regions, self.grid)
        sums = {"W": cut.sum(self.maps.bgdap), "A": [cut.sum(d) for d in self.maps.det]}
        return sum(expected_counts(self.cal, self.module, spec.norms, self.maps, sums, spec.exposure)[band].values())

    def groups(self, events):
        from nuskybgd_engine.groups import group_from_events

        return [group_from_events(events, rs, self.grid, self.maps, name=f"bgd{k}{self.module}")
                for k, rs in enumerate(self.bgd, start=1)]


def main():
    from regions import CirclePixelRegion, PixCoord

    from nuskybgd_engine.constants import PIXEL_ARCSEC
    from nuskybgd_engine.errors import FitError
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.model.background import region_weights
    from nuskybgd_engine.analysis import BackgroundAnalysis

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=120)
    ap.add_argument("--exposure", type=float, default=20000.0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    setup = Setup(args.exposure)
    held = RegionSet()
    held.add(CirclePixelRegion(PixCoord(500.0, 500.0), 60.0 / PIXEL_ARCSEC), name="heldout")
    w = region_weights(held, setup.grid, setup.maps, name="heldout")
    truth = setup.truth(held, setup.spec)
    print(f"setup {time.perf_counter() - t0:.1f} s; {len(setup.bgd)} background regions, held-out truth "
          f"{truth:.2f} counts (3-20 keV, {args.exposure:.0f} s)")
    pulls, pulls_tot, failed = [], [], 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        events, spec = setup.events(1000 + seed)
        an = BackgroundAnalysis(setup.groups(events))
        try:
            an.fit("cstat")
        except FitError:
            failed += 1
            continue
        p = an.predict(w, band=(3.0, 20.0))
        pulls.append((p.total - truth) / p.stat_error)
        pulls_tot.append((p.total - truth) / p.error)
    dt = time.perf_counter() - t0
    pulls, pulls_tot = np.array(pulls), np.array(pulls_tot)
    n = pulls.size
    se = 100 * math.sqrt(0.68 * 0.32 / max(n, 1))
    c68 = 100 * np.mean(np.abs(pulls) <= 1)
    c68t = 100 * np.mean(np.abs(pulls_tot) <= 1)
    c90 = 100 * np.mean(np.abs(pulls) <= 1.645)
    print(f"{n} fitted seeds ({failed} fits failed), {dt / args.seeds:.2f} s per seed")
    print(f"68 % interval coverage, statistical error:          {c68:5.1f} %  (target 68 ± 7; binomial s.e. {se:.1f})"
          f" -> {'OK' if abs(c68 - 68) <= 7 else 'OFF'}")
    print(f"68 % interval coverage, statistical + systematic:    {c68t:5.1f} %  (the simulation has no systematic)")
    print(f"90 % interval coverage (±1.645σ, statistical):       {c90:5.1f} %")
    print(f"pull mean {pulls.mean():+.3f} ± {pulls.std(ddof=1) / math.sqrt(n):.3f}, pull s.d. {pulls.std(ddof=1):.3f}")


if __name__ == "__main__":
    main()
