"""Speed of region masks: cutout (live widget path) vs full-frame mask, on the 1000×1000 grid.

Run: ``python benchmarks/bench_regions.py``. Prints the median time per call and the ratio to
the full-frame baseline measured in the same run. The live-update target is < 1 ms for a
2′ circle (region edit -> sums of projected maps over the mask).
"""

from __future__ import annotations

import time

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CirclePixelRegion, CircleSkyRegion, EllipsePixelRegion, PixCoord, PolygonPixelRegion

from nuskybgd_engine.constants import PIXEL_ARCSEC, PIXEL_DEG, SKY_NPIX
from nuskybgd_engine.io.regions import _PIXEL_CACHE, RegionSet, SkyGrid, region_cutout, region_mask


def timeit(fn, repeat=200):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3  # ms


def make_grid():
    from astropy.io import fits

    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"] = h["NAXIS2"] = SKY_NPIX
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"] = h["CRPIX2"] = 500.5
    h["CRVAL1"], h["CRVAL2"] = 168.3863, 5.01909
    h["CDELT1"], h["CDELT2"] = -PIXEL_DEG, PIXEL_DEG
    return SkyGrid.from_header(h)


def main():
    grid = make_grid()
    rng = np.random.default_rng(1)
    maps = rng.random((8, SKY_NPIX, SKY_NPIX))  # e.g. 4 detector maps x 2 modules
    r_pix = 120.0 / PIXEL_ARCSEC  # 2' radius

    cases = {}
    rs = RegionSet()
    rs.add(CirclePixelRegion(PixCoord(480.3, 512.7), r_pix), name="src")
    cases["2' circle, pixel"] = rs
    rs = RegionSet()
    rs.add(CircleSkyRegion(SkyCoord(168.39, 5.02, unit="deg", frame="fk5"), 2 * u.arcmin))
    cases["2' circle, fk5"] = rs
    rs = RegionSet()
    rs.add(CirclePixelRegion(PixCoord(480.3, 512.7), r_pix))
    rs.add(CirclePixelRegion(PixCoord(470.0, 520.0), 10.0), include=False)
    rs.add(EllipsePixelRegion(PixCoord(500.0, 500.0), 60.0, 30.0, angle=30 * u.deg), include=False)
    cases["2' circle - 2 excludes"] = rs
    rs = RegionSet()
    rs.add(PolygonPixelRegion(PixCoord([100, 900, 850, 150], [120, 140, 880, 860])))
    cases["large polygon"] = rs

    print("median ms per call; full = region_mask + sums of 8 maps (baseline); cutout = region_cutout;")
    print("uncached = region_cutout with the sky->pixel cache cleared; cut+sum8 = cutout + Cutout.sum of 8 maps")
    print(f"{'case':28s} {'full':>9s} {'uncached':>9s} {'cutout':>9s} {'cut+sum8':>9s} {'speed-up':>9s}  npix")
    for label, rs in cases.items():
        def full():
            m = region_mask(rs, grid)
            return maps[:, m].sum(axis=-1)

        def cut():
            return region_cutout(rs, grid)

        def cut_sum():
            return region_cutout(rs, grid).sum(maps)

        def cut_uncached():
            _PIXEL_CACHE.clear()  # first call after an edit of a sky shape
            return region_cutout(rs, grid)

        t_full = timeit(full, 30)
        t_unc = timeit(cut_uncached, 30)
        t_cut = timeit(cut)
        t_cs = timeit(cut_sum)
        c = region_cutout(rs, grid)
        assert np.allclose(c.sum(maps), full())
        print(f"{label:28s} {t_full:9.3f} {t_unc:9.3f} {t_cut:9.3f} {t_cs:9.3f} {t_full / t_cs:8.1f}x  {c.npix}")


if __name__ == "__main__":
    main()
