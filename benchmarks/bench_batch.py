"""Throughput of ``nuskybgd batch``: observations per minute in-process, on 1 and 2 Dask workers,
and the Dask scheduler's overhead per task.

Run: ``python benchmarks/bench_batch.py [N_OBS] [EXPOSURE_S]`` (default 6 observations of 10 ks,
simulated once into a temporary directory). Printed:

* wall time and observations/minute of :func:`nuskybgd_engine.batch.run_batch` serially in this
  process (the baseline), on ``LocalCluster(1)`` and ``LocalCluster(2)`` (one single-threaded
  worker process each; cluster start-up timed separately, not in the throughput), and the
  speed-up ratios against the baseline;
* scheduler overhead per task: mean round trip of 500 no-op tasks submitted together
  (``client.map``) and of 50 submitted one after the other (``submit().result()``).

The machine has 2 cores: 2 workers cannot beat ~2x the serial rate, and anything else running
at the same time shows in the numbers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def _noop(x):
    return x


def make_archive(root, n, exposure):
    from nuskybgd_engine.simulate import SimulationSpec, simulate_observation

    lst = root / "obs.lst"
    names = []
    for i in range(n):
        obsid = f"{90000001000 + i:011d}"
        simulate_observation(root, SimulationSpec(obsid=obsid, seed=500 + i, exposure=exposure, pa=20.0 + 25 * i))
        names.append(obsid)
    lst.write_text("\n".join(names) + "\n")
    return lst


def timed_batch(lst, work, **kw):
    from nuskybgd_engine.batch import run_batch

    t0 = time.perf_counter()
    report = run_batch(lst, work, **kw)
    dt = time.perf_counter() - t0
    assert not report.failed, report.failed
    return dt, report


def main(argv):
    from distributed import Client, LocalCluster

    n = int(argv[1]) if len(argv) > 1 else 6
    exposure = float(argv[2]) if len(argv) > 2 else 10000.0
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        lst = make_archive(root, n, exposure)
        print(f"simulated {n} observations of {exposure / 1e3:g} ks in {time.perf_counter() - t0:.1f} s")

        base, _ = timed_batch(lst, root / "serial")
        print(f"serial (in-process)  : {base:6.1f} s  {60 * n / base:5.2f} obs/min  (baseline)")
        rates = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                client.wait_for_workers(workers)
                start = time.perf_counter() - t0
                client.run(lambda: __import__("nuskybgd_engine.batch"))  # warm imports, as a long run would
                dt, _ = timed_batch(lst, root / f"w{workers}", client=client)
                rates[workers] = 60 * n / dt
                print(f"LocalCluster({workers})      : {dt:6.1f} s  {rates[workers]:5.2f} obs/min  "
                      f"x{base / dt:.2f} vs serial  (cluster start {start:.1f} s)")
                if workers == 2:
                    client.gather(client.map(_noop, range(20), pure=False))  # warm up
                    t1 = time.perf_counter()
                    client.gather(client.map(_noop, range(500), pure=False))
                    batch_ms = (time.perf_counter() - t1) / 500 * 1e3
                    t1 = time.perf_counter()
                    for i in range(50):
                        client.submit(_noop, i, pure=False).result()
                    rt_ms = (time.perf_counter() - t1) / 50 * 1e3
        print(f"2 workers vs 1 worker: x{rates[2] / rates[1]:.2f}")
        print(f"scheduler overhead per task: {batch_ms:.2f} ms (500 no-op tasks in flight), "
              f"{rt_ms:.2f} ms (sequential submit + result round trip)")
        per_obs_s = base / n
        print(f"overhead / work per observation: {rt_ms / 1e3 / per_obs_s:.2e}")


if __name__ == "__main__":
    main(sys.argv)
