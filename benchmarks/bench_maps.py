"""Benchmark of the map steps (issue 4): projbgd, aspecthist, mkimgs, each against a baseline.

Run: ``python benchmarks/bench_maps.py``. Prints times and ratios measured in this run.
Targets: projbgd (one module, 300 aspect positions) < 0.5 s and ≥ 50× faster than the direct loop;
aspecthist on 400 000 rows < 0.3 s; mkimgs on 10⁶ events < 0.2 s.
"""

from __future__ import annotations

import time

import numpy as np
from astropy.io import fits
from scipy import ndimage

from nuskybgd_engine.io.aspect import AspectTrack
from nuskybgd_engine.io.events import EventList
from nuskybgd_engine.io.gti import Gti
from nuskybgd_engine.maps import AspectHistogram, aspect_histogram, make_counts_image, project_maps
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def sky_header(pa=30.0):
    h = fits.Header()
    h["PA_PNT"] = pa
    for k, v in dict(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=500.5, CRPIX2=500.5, CRVAL1=150.0, CRVAL2=2.0,
                     CDELT1=-6.828076e-4, CDELT2=6.828076e-4).items():
        h[k] = v
    return h


def direct_projbgd(imap, ap, hist, x_off, y_off, pa):
    """The reference algorithm: nearest-pixel templates, then one periodic bilinear shift per position."""
    a = -(pa + 1.0) * np.pi / 180
    c, s = np.cos(a), np.sin(a)
    k = int(np.argmax(hist))
    px, py = k % hist.shape[1] + x_off, k // hist.shape[1] + y_off
    j, i = np.mgrid[0:1000, 0:1000]
    detx = 350 + np.around(-c * (i - px) + s * (j - py)).astype(int)
    dety = 350 + np.around(s * (i - px) + c * (j - py)).astype(int)
    ok = (detx >= 0) & (detx < 360) & (dety >= 0) & (dety < 360)
    dx, dy = np.clip(detx, 0, 359), np.clip(dety, 0, 359)
    act = ok & (imap[dy, dx] > 0)
    refs = [np.where(act, ap[dy, dx], 0) / hist.sum()]
    refs += [np.where(ok & (imap[dy, dx] == n + 1), 1.0, 0) / hist.sum() for n in range(4)]
    nux = 2.7 * np.cos(-a) - 0.8 * np.sin(-a)
    nuy = 2.7 * np.sin(-a) + 0.8 * np.cos(-a)
    out = [np.zeros((1000, 1000)) for _ in refs]
    for y, x in zip(*np.nonzero(hist)):
        for n, r in enumerate(refs):
            out[n] += hist[y, x] * ndimage.shift(r, (y + y_off - py - nuy, x + x_off - px - nux), order=1,
                                                 mode="grid-wrap", prefilter=False)
    return out


def bench_projbgd():
    imap = np.zeros((360, 360))
    imap[182:350, 182:350], imap[182:352, 15:178], imap[10:178, 12:180], imap[12:180, 182:346] = 1, 2, 3, 4
    y, x = np.mgrid[0:360, 0:360]
    ap = 0.004 + 1e-4 * x + 5e-5 * (359 - y)
    rng = np.random.default_rng(0)
    hist = np.zeros((25, 25))
    hist.flat[rng.choice(625, 300, replace=False)] = rng.uniform(1, 300, 300)
    asp = AspectHistogram(hist, 375, 355, module="A")
    t_fast, pm = best_time(lambda: project_maps(sky_header(), imap, asp, module="A", aperture=ap), repeat=3)
    t0 = time.perf_counter()
    ref = direct_projbgd(imap, ap, hist, 375, 355, 30.0)
    t_direct = time.perf_counter() - t0
    err = max(np.abs(pm.bgdap - ref[0]).max(), *(np.abs(pm.det[n] - ref[n + 1]).max() for n in range(4)))
    print(f"projbgd  (1 module, {np.count_nonzero(hist)} aspect positions): fast {t_fast:.3f} s, "
          f"direct loop {t_direct:.1f} s, ratio {t_direct / t_fast:.0f}x, max |diff| {err:.1e}  "
          f"[target < 0.5 s, >= 50x]")


def bench_aspecthist():
    n = 400_000
    rng = np.random.default_rng(1)
    t = 1e8 + np.cumsum(rng.uniform(0.2, 0.26, n))
    xs = 390 + 8 * np.sin(t / 300) + rng.normal(0, 1, n)
    ys = 370 + 6 * np.cos(t / 400) + rng.normal(0, 1, n)
    starts = t[0] + np.arange(0, t[-1] - t[0], 5800.0)
    gti = Gti(starts, starts + 3500.0)
    track = AspectTrack(t, xs, ys, "A", {}, None)
    t_fast, hist = best_time(lambda: aspect_histogram(track, gti), repeat=3)

    def walk():  # the reference's per-sample Python loop
        h = np.zeros((1000, 1000))
        g = 0
        for k in range(n - 1):
            while g < len(gti) and t[k] >= gti.stop[g]:
                g += 1
            if g == len(gti):
                break
            if t[k] >= gti.start[g]:
                h[int(ys[k]), int(xs[k])] += t[k + 1] - t[k]
        return h

    t0 = time.perf_counter()
    h = walk()
    t_loop = time.perf_counter() - t0
    print(f"aspecthist ({n} rows, {len(gti)} GTIs): {t_fast:.3f} s, Python walk {t_loop:.2f} s, "
          f"ratio {t_loop / t_fast:.0f}x, sums {hist.exposure:.3f} vs {h.sum():.3f} s  [target < 0.3 s]")


def bench_mkimgs():
    n = 1_000_000
    rng = np.random.default_rng(2)
    cols = {"X": rng.uniform(1, 1000, n).astype(np.float32), "Y": rng.uniform(1, 1000, n).astype(np.float32),
            "PI": rng.integers(0, 1500, n).astype(np.int32)}
    sky = {"NAXIS1": 1000, "NAXIS2": 1000, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 500.5,
           "CRPIX2": 500.5, "CRVAL1": 150.0, "CRVAL2": 2.0, "CDELT1": -6.828076e-4, "CDELT2": 6.828076e-4}
    hdr = fits.Header({"INSTRUME": "FPMA", "PA_PNT": 30.0, "TTYPE1": "X", "TCRPX1": 500.5, "TTYPE2": "Y",
                       "TCRPX2": 500.5})
    ev = EventList(columns=cols, module="A", header=hdr, sky=sky)
    t_fast, img = best_time(lambda: make_counts_image(ev, 3, 20), repeat=3)

    def hist2d():
        sel = (cols["PI"] >= 35) & (cols["PI"] <= 459)
        return np.histogram2d(cols["Y"][sel], cols["X"][sel], bins=1000, range=[[0.5, 1000.5], [0.5, 1000.5]])[0]

    t_h2d, ref = best_time(hist2d, repeat=3)
    same = np.array_equal(img.image, ref.astype(np.int32))
    print(f"mkimgs   ({n} events): {t_fast:.3f} s, numpy.histogram2d {t_h2d:.3f} s, ratio {t_h2d / t_fast:.1f}x, "
          f"identical: {same}  [target < 0.2 s]")


if __name__ == "__main__":
    bench_mkimgs()
    bench_aspecthist()
    bench_projbgd()
