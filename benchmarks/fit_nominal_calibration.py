"""Regenerate engine/calibration/nominal_coeffs.json from the real auxil files and report accuracy.

Usage::

    python benchmarks/fit_nominal_calibration.py ../shared/nustar-auxil \
        ../shared/data/caldb-rmf-hendrics/nuAdet3_20100101v002.rmf.gz [--out PATH] [--check]

``--check`` only measures the current table against the real files (no fit, nothing written).
Every coefficient of the table comes from this script, so its provenance is reproducible.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.ndimage import shift as nd_shift
from scipy.optimize import minimize

from nuskybgd_engine.calibration import nominal as nom
from nuskybgd_engine.io.files import write_json

DET1_PIX_MM = 0.12096


# ------------------------------------------------------------------------------ measurements

def aperture_shift(module, params):
    """(dx, dy) DET1-pixel shift of the aperture template (spec §2.6a)."""
    p = params
    return ((p[4] / DET1_PIX_MM, p[5] / DET1_PIX_MM) if module == "A" else (p[7] / DET1_PIX_MM, p[8] / DET1_PIX_MM))


def aperture_crop(t, module, params):
    """Shift the 576² template as the method does (bilinear, periodic) and crop to DET1."""
    dx, dy = aperture_shift(module, params)
    out = nd_shift(np.asarray(t, float), (dy, dx), order=1, mode="grid-wrap")
    return out[108:468, 108:468]


def aperture_error(real, approx, module, params):
    rel = aperture_crop(approx, module, params) / aperture_crop(real, module, params) - 1
    return float(np.sqrt(np.mean(rel ** 2))), float(np.abs(rel).max())


def layout_agreement(real_num, real_pix, num, pix):
    same = num == real_num
    act = same & (real_num >= 0)
    counts = [(int((real_num == n).sum()), int((num == n).sum())) for n in range(4)]
    rp, ap = real_pix[act].astype(int), pix[act].astype(int)
    near = (np.abs(rp % 32 - ap % 32) <= 1) & (np.abs(rp // 32 - ap // 32) <= 1)
    return {"label": float(same.mean()), "counts": counts,
            "count_err": max(abs(b / a - 1) for a, b in counts),
            "pixmap": float((rp == ap).mean()), "pixmap_near": float(near.mean())}


def arf_error(real, approx):
    """Max relative error over 3-80 keV rows whose value exceeds 1 % of the peak."""
    lo, hi = nom.energy_grid()
    e = 0.5 * (lo + hi)
    sel = (e >= 3) & (e <= 80) & (real > 0.01 * real.max())
    return float(np.abs(approx[sel] / real[sel] - 1).max())


def row_fwhm(r):
    """FWHM (keV) of the main peak of one RMF row, by linear interpolation of the half-maximum."""
    pk = int(np.argmax(r))
    h = r[pk] / 2
    j = pk
    while j > 0 and r[j - 1] >= h:
        j -= 1
    lo = (j - 1) + (h - r[j - 1]) / (r[j] - r[j - 1])
    k = pk
    while k < len(r) - 1 and r[k + 1] >= h:
        k += 1
    hi = k + (r[k] - h) / (r[k] - r[k + 1])
    return (hi - lo) * nom.CHANNEL_DE


def fold_powerlaw(matrix, gamma=1.3):
    """Counts per channel of a unit power law (photons/keV ∝ E^-Γ) through a matrix (no ARF)."""
    lo, hi = nom.energy_grid()
    flux = (lo ** (1 - gamma) - hi ** (1 - gamma)) / (gamma - 1)
    return np.asarray(matrix.T @ flux).ravel()


def band(counts, emin, emax):
    lo, hi = nom.energy_grid()
    sel = (lo >= emin - 1e-6) & (hi <= emax + 1e-6)
    return float(counts[sel].sum())


def rmf_errors(real, approx):
    """FWHM relative errors at 6, 20, 60 keV and folded Γ=1.3 band-count errors."""
    lo, hi = nom.energy_grid()
    e = 0.5 * (lo + hi)
    approx_d = approx.toarray() if hasattr(approx, "toarray") else approx
    out = {}
    for en in (6, 20, 60):
        i = int(np.argmin(np.abs(e - en)))
        out[f"fwhm{en}"] = row_fwhm(approx_d[i]) / row_fwhm(real[i]) - 1
    cr, ca = fold_powerlaw(real), fold_powerlaw(approx)
    for a, b in ((3, 20), (20, 50)):
        out[f"band{a}-{b}"] = band(ca, a, b) / band(cr, a, b) - 1
    return out


def read_rmf_dense(path):
    with fits.open(path) as h:
        return np.vstack([np.asarray(r, dtype=np.float64) for r in h["MATRIX"].data["MATRIX"]])


def read_image(path, ext=0):
    with fits.open(path) as h:
        return np.asarray(h[ext].data, dtype=float)


# ------------------------------------------------------------------------------ fits

def fit_aperture(t, module, params, kmax=4, nmax=4):
    """Polar expansion about a free centre; least squares on relative residuals."""
    dx, dy = aperture_shift(module, params)
    y0, y1 = int(np.floor(108 - dy)) - 1, int(np.ceil(468 - dy)) + 1
    x0, x1 = int(np.floor(108 - dx)) - 1, int(np.ceil(468 - dx)) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    sub = t[y0:y1, x0:x1]

    def solve(c, x, y, d):
        b = nom._polar_basis(x, y, c[0], c[1], kmax, nmax)
        coef, *_ = np.linalg.lstsq(b / d[:, None], np.ones_like(d), rcond=None)
        return coef, (b @ coef) / d - 1

    s = 3
    xs, ys, ds = xx[::s, ::s].ravel(), yy[::s, ::s].ravel(), sub[::s, ::s].ravel()
    j, i = np.unravel_index(np.argmin(t), t.shape)
    best = minimize(lambda c: np.mean(solve(c, xs, ys, ds)[1] ** 2), [i, j], method="Nelder-Mead",
                    options={"xatol": 0.05, "fatol": 1e-10})
    coef, _ = solve(best.x, xx.ravel().astype(float), yy.ravel().astype(float), sub.ravel())
    return {"xc": float(best.x[0]), "yc": float(best.x[1]), "kmax": kmax, "nmax": nmax,
            "coef": [float(v) for v in coef], "floor": float(0.5 * t.min())}


def fit_detectors(num, pix):
    """Affine DET1 -> RAW map per detector (interior pixels), then edge extents by grid search."""
    jj, ii = np.mgrid[0:360, 0:360]
    dets = []
    for n in range(4):
        sel = num == n
        p = pix[sel].astype(int)
        rx, ry = p % 32, p // 32
        inner = (rx > 0) & (rx < 31) & (ry > 0) & (ry < 31)
        a = np.c_[ii[sel], jj[sel], np.ones(sel.sum())][inner]
        ax = np.linalg.lstsq(a, rx[inner] + 0.5, rcond=None)[0]
        ay = np.linalg.lstsq(a, ry[inner] + 0.5, rcond=None)[0]
        u = ax[0] * ii + ax[1] * jj + ax[2]
        v = ay[0] * ii + ay[1] * jj + ay[2]
        grid = np.arange(0, 1.5, 0.02)
        mg = [0.0, 0.0, 0.0, 0.0]
        for side in range(4):
            scores = []
            for g in grid:
                t = list(mg)
                t[side] = g
                reg = (u >= -t[0]) & (u < 32 + t[1]) & (v >= -t[2]) & (v < 32 + t[3])
                scores.append(int((reg == sel).sum()))
            mg[side] = float(grid[int(np.argmax(scores))])
        dets.append({"ax": [float(x) for x in ax], "ay": [float(x) for x in ay], "margin": mg})
    return dets


def fit_arf(s, tol_band=0.015, tol_out=0.05):
    """Greedy knot insertion until the PCHIP(log E, log A) model meets the tolerances."""
    lo, hi = nom.energy_grid()
    e = 0.5 * (lo + hi)
    n = int(np.nonzero(s > 0)[0].max()) + 1
    y = s[:n]
    inb = (e[:n] >= 3) & (e[:n] <= 80) & (y > 0.01 * y.max())
    knots = sorted({0, n - 1, *[int(k) for k in np.searchsorted(e, [2, 3, 5, 10, 20, 40, 70]) if k < n]})
    while True:
        m = nom.eval_knots(knots, y[knots], n)
        rel = np.abs(m / y - 1)
        w = np.where(inb, rel / tol_band, rel / tol_out)
        k = int(np.argmax(w))
        if w[k] < 1:
            break
        knots = sorted(set(knots) | {k})
    return {"nrows": n, "rows": knots, "values": [float(y[k]) for k in knots]}


RMF_KNOTS = [1.6, 3, 5, 8, 12, 16, 20, 24, 26.7, 27.0, 30, 31.8, 32.1, 36, 40, 45, 50, 55, 60, 65, 70, 75,
             80, 90, 100, 110, 120, 130, 140, 150, 160, 165.44]


def fit_rmf(mat):
    """Row sums, FWHM law and component fractions measured on every row of the real RMF."""
    n = mat.shape[0]
    lo, hi = nom.energy_grid()
    e = 0.5 * (lo + hi)
    s = mat.sum(axis=1)
    # Row sums: greedy knots in E with linear interpolation (tolerance 0.5 % of the row sum).
    last = int(np.nonzero(s > 0)[0].max())
    knots = [0, last]
    while True:
        m = np.interp(e[: last + 1], e[knots], s[knots])
        err = np.abs(m - s[: last + 1])
        k = int(np.argmax(err))
        if err[k] < 0.005 * max(s[k], 0.05) or len(knots) > 80:
            break
        knots = sorted(set(knots) | {k})
    rowsum_e = [float(e[k]) for k in knots] + [float(e[last] + 0.02)]
    rowsum = [float(s[k]) for k in knots] + [0.0]
    # FWHM(E) = sqrt(a² + b E + c E²) fitted to the measured widths of rows 2-140 keV.
    rows = [int(np.argmin(np.abs(e - x))) for x in np.arange(2.0, 140.0, 1.0)]
    fw = np.array([row_fwhm(mat[i]) for i in rows])
    ee = e[rows]
    abc = np.linalg.lstsq(np.c_[np.ones_like(ee), ee, ee ** 2], fw ** 2, rcond=None)[0]
    fwhm = [float(np.sqrt(max(abc[0], 1e-6))), float(abc[1]), float(abc[2])]
    # Fractions by channel windows relative to each row's channel.
    ch = np.arange(n)
    frac = {"escape": [[], [], [], []], "shoulder": [], "continuum": []}
    per_row = np.zeros((n, 6))
    for i in range(last + 1):
        r = mat[i]
        tot = r.sum()
        if tot <= 0:
            continue
        core = np.abs(ch - i) <= nom.CORE_HALF
        wins = [(np.abs(ch - (i - round(L / nom.CHANNEL_DE))) <= 10) & ~core for L in nom.ESCAPE_LINES]
        anyw = np.any(wins, axis=0)
        sh = (ch < i - nom.SHOULDER_LO) & (ch >= i - nom.SHOULDER_HI) & ~anyw
        co = (ch < i - nom.SHOULDER_HI) & ~anyw
        per_row[i, :4] = [r[w].sum() / tot for w in wins]
        per_row[i, 4] = r[sh].sum() / tot
        per_row[i, 5] = r[co].sum() / tot
    kn = np.array(RMF_KNOTS)
    mids = np.r_[kn[0], 0.5 * (kn[1:] + kn[:-1]), kn[-1]]
    vals = np.zeros((len(kn), 6))
    for j in range(len(kn)):
        sel = (e >= mids[j]) & (e < mids[j + 1]) & (ch <= last)
        # Just above a K edge, average only above it (the escape peak switches on there).
        for edge in sorted(set(nom.ESCAPE_EDGES)):
            if kn[j] > edge > mids[j]:
                sel &= e > edge
        if sel.any():
            vals[j] = per_row[sel].mean(axis=0)
        else:
            vals[j] = vals[j - 1]
    for k in range(4):
        frac["escape"][k] = [float(v) if kn[j] > nom.ESCAPE_EDGES[k] else 0.0 for j, v in enumerate(vals[:, k])]
    frac["shoulder"] = [float(v) for v in vals[:, 4]]
    frac["continuum"] = [float(v) for v in vals[:, 5]]
    return {"fwhm": fwhm, "rowsum_e": rowsum_e, "rowsum": rowsum, "knots_e": RMF_KNOTS, **frac}


def compact_ratios(d):
    """Presets of ratios.json as a compact table (the numbers of spec §3.1 / Appendix A)."""
    models = d["models"]
    comps = models[1]["components"]
    lines = []
    for k, (name, c) in enumerate((n, c) for n, c in comps.items() if n != "apec"):
        lines.append([name, c["A"]["linee"], c["A"]["width"], c["A"]["ifactors"], c["B"]["ifactors"]])
    ap = comps["apec"]
    bk = models[3]["components"]["bknpower"]
    return {
        "header": {k: v for k, v in d.items() if k != "models"},
        "apbgd_cutoffpl": models[0]["components"]["cutoffpl"]["A"],
        "apec": {"kt": ap["A"]["kt"], "abundanc": ap["A"]["abundanc"], "redshift": ap["A"]["redshift"],
                 "ifactors": {m: ap[m]["ifactors"] for m in "AB"}},
        "lines": lines,
        "intn_bknpower": {"phoindx1": bk["A"]["phoindx1"], "breake": bk["A"]["breake"],
                          "phoindx2": bk["A"]["phoindx2"], "ifactors": {m: bk[m]["ifactors"] for m in "AB"}},
    }


def read_nomap(path):
    vals = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            vals.append(float(line))
    return vals


# ------------------------------------------------------------------------------ main

def measure(auxil, rmf_path):
    """Compare the current table with the real files; print and return the numbers."""
    nom._coeffs.cache_clear()
    nom._layout.cache_clear()
    params = read_nomap(auxil / "nomapbgdparams.dat")
    res = {}
    for m in "AB":
        real = read_image(auxil / f"det{m}_det1.img.gz")
        res[f"aperture{m}"] = aperture_error(real, nom.aperture_det1img(m), m, params)
        rn = read_image(auxil / f"detnum{m}.fits", "INSTRMAP").astype(int)
        rp = read_image(auxil / f"pixmap{m}.fits", "INSTRMAP").astype(int)
        res[f"layout{m}"] = layout_agreement(rn, rp, nom.detnum(m), nom.pixmap(m))
    for name in nom.ARF_NAMES:
        with fits.open(auxil / name) as h:
            real = np.asarray(h[1].data["SPECRESP"], float)
        res[name] = arf_error(real, nom.arf(name)[2])
    t0 = time.perf_counter()
    approx = nom.rmf("A")[4]
    res["rmf_build_s"] = time.perf_counter() - t0
    res["rmf"] = rmf_errors(read_rmf_dense(rmf_path), approx)
    for k, v in res.items():
        print(f"{k}: {v}")
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("auxil", type=Path)
    ap.add_argument("rmf", type=Path)
    ap.add_argument("--out", type=Path, default=nom.COEFF_PATH)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args(argv)
    if not a.check:
        params = read_nomap(a.auxil / "nomapbgdparams.dat")
        table = {"comment": "Generated by benchmarks/fit_nominal_calibration.py from the nuskybgd auxil files "
                            "and nuAdet3_20100101v002.rmf; see engine/calibration/nominal.py.",
                 "aperture": {}, "detectors": {}, "arf": {}}
        for m in "AB":
            t = read_image(a.auxil / f"det{m}_det1.img.gz")
            table["aperture"][m] = fit_aperture(t, m, params)
            rn = read_image(a.auxil / f"detnum{m}.fits", "INSTRMAP").astype(int)
            rp = read_image(a.auxil / f"pixmap{m}.fits", "INSTRMAP").astype(int)
            table["detectors"][m] = fit_detectors(rn, rp)
        for name in nom.ARF_NAMES:
            with fits.open(a.auxil / name) as h:
                table["arf"][name] = fit_arf(np.asarray(h[1].data["SPECRESP"], float))
        table["rmf"] = fit_rmf(read_rmf_dense(a.rmf))
        table["ratios"] = compact_ratios(json.loads((a.auxil / "ratios.json").read_text()))
        table["nomapbgdparams"] = params
        write_json(a.out, table, overwrite=True)
        print(f"wrote {a.out}")
    measure(a.auxil, a.rmf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
