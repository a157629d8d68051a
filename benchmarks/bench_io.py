"""Cost of the read-time checks on a large event file: CHECKSUM/DATASUM and TLMIN/TLMAX.

Writes a pipeline-layout event file of N events (default 3 million, ~100 MB; a long NuSTAR
observation of a bright source) with checksums into a temporary directory, then times
``read_fits`` with and without the checksum pass and ``read_events`` with and without the
range check. Plain script: prints times and the fraction the checks add.

Run: python benchmarks/bench_io.py [N]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

import nuskybgd_engine.io.events as events
import nuskybgd_engine.io.fitsutil as fitsutil
from _timing import best_time  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def make_file(path, n, seed=3):
    rng = np.random.default_rng(seed)
    cols = {
        "TIME": np.sort(rng.uniform(0, 1e5, n)), "DET_ID": rng.integers(0, 4, n).astype(np.uint8),
        "RAWX": rng.integers(0, 32, n).astype(np.uint8), "RAWY": rng.integers(0, 32, n).astype(np.uint8),
        "GRADE": rng.integers(0, 27, n).astype(np.int16), "PI": rng.integers(0, 4096, n).astype(np.int32),
        "DET1X": rng.integers(1, 361, n).astype(np.int16), "DET1Y": rng.integers(1, 361, n).astype(np.int16),
        "X": rng.integers(1, 1001, n).astype(np.int16), "Y": rng.integers(1, 1001, n).astype(np.int16),
    }
    sky = {"NAXIS1": 1000, "NAXIS2": 1000, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 500.5,
           "CRPIX2": 500.5, "CRVAL1": 150.0, "CRVAL2": 2.0, "CDELT1": -6.8e-4, "CDELT2": 6.8e-4}
    events.write_events(path, cols, "A", {"OBS_ID": "60001001002", "EXPOSURE": 1e5}, sky)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 3_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nu60001001002A01_cl.evt"
        make_file(path, n)
        size = path.stat().st_size / 2**20
        t_full, _ = best_time(lambda: fitsutil.read_fits(path), repeat=3)
        with mock.patch.object(fitsutil, "verify_checksums", lambda *a, **k: None):
            t_bare, _ = best_time(lambda: fitsutil.read_fits(path), repeat=3)
        print(f"{n} events, {size:.0f} MiB")
        print(f"read_fits with checksums {t_full:.3f} s, without {t_bare:.3f} s: "
              f"+{t_full - t_bare:.3f} s ({(t_full / t_bare - 1) * 100:.0f} %), "
              f"{size / max(t_full - t_bare, 1e-9):.0f} MiB/s")
        t_ev, _ = best_time(lambda: events.read_events(path), repeat=3)
        with mock.patch.object(events, "invalid_rows", lambda *a, **k: {}):
            t_ev_bare, _ = best_time(lambda: events.read_events(path), repeat=3)
        print(f"read_events with range checks {t_ev:.3f} s, without {t_ev_bare:.3f} s: "
              f"+{t_ev - t_ev_bare:.3f} s ({(t_ev / t_ev_bare - 1) * 100:.0f} %)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
