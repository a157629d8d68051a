"""Speed of the OGIP layer: RMF reading, folding, grouping. Plain script: prints times and ratios.

Run: python benchmarks/bench_ogip.py   (needs ../shared/data; set NUSKYBGD_SHARED otherwise)
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

import nuskybgd_engine.io.ogip as ogip
import nuskybgd_engine.io.ogip.rmf as ogip_rmf
from nuskybgd_engine.io.fitsutil import read_fits
from nuskybgd_engine.spectra.grouping import group_min_counts
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SHARED = Path(os.environ.get("NUSKYBGD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
RMF = SHARED / "data/caldb-rmf-hendrics/nuAdet3_20100101v002.rmf.gz"
PHA = SHARED / "data/nustar_background/nu30001039002_srcA_sr.pha"


def naive_rmf_matrix(hdul):
    """Baseline: row-by-row, group-by-group construction (what a straightforward port does)."""
    d = hdul["MATRIX"].data
    n_chan = len(hdul["EBOUNDS"].data)
    m = sp.lil_matrix((len(d), n_chan), dtype=np.float32)
    for i in range(len(d)):
        f_chan = np.atleast_1d(d["F_CHAN"][i])
        n_ch = np.atleast_1d(d["N_CHAN"][i])
        row = np.asarray(d["MATRIX"][i])
        pos = 0
        for g in range(int(d["N_GRP"][i])):
            vals = row[pos: pos + n_ch[g]]
            nz = np.flatnonzero(vals)
            m.rows[i].extend((f_chan[g] + nz).tolist())
            m.data[i].extend(vals[nz].tolist())
            pos += n_ch[g]
    return m.tocsr()


def main():
    if not RMF.exists():
        print(f"skipped: {RMF} not found (set NUSKYBGD_SHARED)")
        return 0
    print(f"RMF: {RMF.name} ({RMF.stat().st_size / 1e6:.1f} MB gz)")

    t_gunzip, raw = best_time(lambda: gzip.open(RMF).read(), repeat=1)
    print(f"  gunzip alone                         {t_gunzip:7.3f} s  (floor for any reader)")

    def open_from_memory():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = fits.open(io.BytesIO(gzip.open(RMF).read()), memmap=False, lazy_load_hdus=False)
            for hdu in h:
                if hdu.data is not None:
                    np.asarray(hdu.data)
        return h

    t_mem, _ = best_time(open_from_memory, repeat=1)
    t_rf, hdul = best_time(lambda: read_fits(RMF, what="RMF"), repeat=1)
    print(f"  read_fits (gzip seek twice)          {t_rf:7.3f} s")
    print(f"  gunzip once + fits.open(BytesIO)     {t_mem:7.3f} s  "
          f"({t_rf / t_mem:.2f}x faster: suggested read_fits change)")

    t_full, resp = best_time(lambda: ogip.read_rmf(RMF), repeat=1)
    print(f"  read_rmf total                       {t_full:7.3f} s  ({resp.matrix.nnz} non-zero)")

    # Matrix construction only: reuse the loaded HDUList.
    real_read_fits = ogip_rmf.read_fits
    ogip_rmf.read_fits = lambda path, what=None: hdul
    try:
        t_fast, r1 = best_time(lambda: ogip.read_rmf(RMF, fast=True), repeat=3)
        t_slow, r2 = best_time(lambda: ogip.read_rmf(RMF, fast=False), repeat=3)
    finally:
        ogip_rmf.read_fits = real_read_fits
    t_naive, m_naive = best_time(lambda: naive_rmf_matrix(hdul), repeat=1)
    assert (r1.matrix != r2.matrix).nnz == 0 and (r1.matrix != m_naive).nnz == 0
    print(f"  construction, heap (fast=True)       {t_fast:7.3f} s")
    print(f"  construction, astropy VLA (False)    {t_slow:7.3f} s")
    print(f"  construction, naive row loop         {t_naive:7.3f} s  ({t_naive / t_fast:.0f}x slower than fast)")

    rng = np.random.default_rng(0)
    flux = rng.random(4096)
    arf = rng.random(4096) * 300
    n = 50
    t_fold, _ = best_time(lambda: [ogip.fold(resp, flux, arf=arf) for _ in range(n)], repeat=3)
    eff = ogip.effective_matrix(resp, arf)
    t_eff, _ = best_time(lambda: [ogip.fold(eff, flux) for _ in range(n)], repeat=3)
    dense = eff.toarray()
    t_dense, _ = best_time(lambda: [flux @ dense for _ in range(n)], repeat=3)
    t_build, _ = best_time(lambda: ogip.effective_matrix(resp, arf), repeat=3)
    print(f"  fold (float32 RMF x ARF)             {t_fold / n * 1e3:7.2f} ms per call")
    print(f"  fold through cached effective_matrix {t_eff / n * 1e3:7.2f} ms per call "
          f"(effective_matrix build {t_build * 1e3:.0f} ms)")
    print(f"  dense numpy baseline                 {t_dense / n * 1e3:7.2f} ms per call "
          f"(sparse cached is {t_dense / t_eff:.1f}x faster)")

    if PHA.exists():
        from tests.engine.test_grouping import grppha_group_min_reference  # noqa: E402 (run from repo root)

        counts = fits.getdata(PHA, "SPECTRUM")["COUNTS"]
        t_g, _ = best_time(lambda: group_min_counts(counts, 30), repeat=3)
        t_ref, _ = best_time(lambda: grppha_group_min_reference(counts, 30), repeat=1)
        print(f"group min 30, 4096 channels: {t_g * 1e3:.2f} ms; literal grppha loop {t_ref * 1e3:.1f} ms "
              f"({t_ref / t_g:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
