"""Wall time of every ``nuskybgd`` CLI step next to the engine time of the same work.

Run: ``python benchmarks/bench_cli.py [--exposure S] [--batch N] [--keep DIR]`` (default a 50 ks
simulated observation, ``nuskybgd simulate``, in a temporary directory; the response cache goes
to a fresh temporary ``NUSKYBGD_RESPONSE_CACHE`` so that the first steps run cold, as on a new machine).

Printed, one row per step:

* ``cli``: wall time of the command in a new process (Python start-up and imports included), the
  way a user or a script runs it, and ``cli cpu`` its CPU time (user + system; what the wall
  time is on an idle machine, give or take the disk);
* ``engine``: the same work on in-memory objects in this (warm) process — the floor the command
  could reach without start-up, file reading and writing.

Steps: the seed's Quickstart for one observation (``mkimgs``, ``getspecnoarf`` for the 4
background regions and the source of both modules, ``mkinstrmap``, ``aspecthist``, ``projbgd``,
``fit --run``), then from the saved fit: ``fit --run`` again, ``predict`` (one call, best of 3;
8 region×module×band cases in 8 calls and in one call when ``predict`` takes several regions),
``spec``, ``simplify``, ``image``, ``bgdspec``; ``nuskybgd --help``; ``batch`` throughput on one
core (serial, in one process) for ``--batch N`` observations (default 2; 0 skips it).

Targets (issue 19): predict from a saved fit < 1 s per call including start-up; ``fit --run``
< 2 s; the Quickstart < 20 s. The machine has 2 cores shared with others: rerun when loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import best_time  # noqa: E402

NUSKYBGD = [sys.executable, "-m", "nuskybgd_engine"]
ROWS = []


class T(float):
    """A command's wall time (the float) with its CPU time (user + system) in ``cpu``."""

    def __new__(cls, wall, cpu):
        obj = super().__new__(cls, wall)
        obj.cpu = cpu
        return obj

    def __add__(self, other):
        return T(float(self) + float(other), self.cpu + getattr(other, "cpu", 0.0))

    __radd__ = __add__


def cli(*args, cwd, expect=0):
    """Run ``nuskybgd ARGS`` in a new process; its times (:class:`T`) and the finished process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(NUSKYBGD + [str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if expect is not None and proc.returncode != expect:
        raise RuntimeError(f"nuskybgd {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return T(dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)), proc


def row(step, cli_s, engine_s=None, note=""):
    ROWS.append((step, cli_s, engine_s, note))
    eng = f"{engine_s:8.3f}" if engine_s is not None else "       -"
    cpu = f"{cli_s.cpu:8.3f}" if isinstance(cli_s, T) else "       -"
    print(f"{step:<44} {cli_s:8.3f} {cpu} {eng}  {note}", flush=True)


def quickstart(obs, work):
    """The seed's CLI chain for one observation; returns the bgdinfo path and total wall time."""
    obsid = obs.name
    evt = obs / "event_cl"
    total = T(0.0, 0.0)
    t, _ = cli("mkimgs", obs, obsid, 3, 20, cwd=work)
    row("mkimgs (A+B)", t)
    total += t
    t_ext = T(0.0, 0.0)
    stems = []
    for r in ("bgd1", "bgd2", "bgd3", "bgd4", "src_point"):
        for m in ("A", "B"):
            stem = f"{r}{m}"
            t, _ = cli("getspecnoarf", f"nu{obsid}{m}01_cl.evt", f"reg={obs}/regions/{r}.reg", f"indir={evt}",
                       "outdir=.", f"outprefix={stem}", cwd=work)
            t_ext += t
            stems.append(stem)
    row(f"getspecnoarf x{len(stems)}", t_ext, note=f"{t_ext / len(stems):.2f} s each")
    total += t_ext
    for step, argv in (
            ("mkinstrmap x2", [["mkinstrmap", evt / f"nu{obsid}{m}01_cl.evt"] for m in "AB"]),
            ("aspecthist x2", [["aspecthist", evt / f"nu{obsid}{m}_det1.fits", f"gtifile={evt}/nu{obsid}{m}01_gti.fits",
                                f"out=aspecthist{m}.fits"] for m in "AB"]),
            ("projbgd x2", [["projbgd", f"refimg=im{m}3to20keV.fits", f"out=bgdap{m}.fits", f"mod={m}", "det=1234",
                             f"chipmap=newinstrmap{m}.fits", f"aspect=aspecthist{m}.fits"] for m in "AB"])):
        t = sum((cli(*a, cwd=work)[0] for a in argv), T(0.0, 0.0))
        row(step, t)
        total += t
    for r in ("bgd1", "bgd2", "bgd3", "bgd4", "src_point"):
        shutil.copy(obs / "regions" / f"{r}.reg", work / f"{r}.reg")
    bgd = [f"{r}{m}" for m in "AB" for r in ("bgd1", "bgd2", "bgd3", "bgd4")]
    info = {"refimgf": "imA3to20keV.fits",
            "bgfiles": [f"{s}_sr.pha" for s in bgd],
            "regfiles": [f"{s[:-1]}.reg" for s in bgd],
            "bgdapfiles": {m: f"bgdap{m}.fits" for m in "AB"},
            "bgddetfiles": {m: [f"det{n}{m}im.fits" for n in range(4)] for m in "AB"},
            "fcxb_config": {"links": [[i + 1, i + 5] for i in range(4)]}}
    (work / "bgdinfo.json").write_text(json.dumps(info, indent=1))
    t, _ = cli("fit", "bgdinfo.json", "savefile=bgdfit", "--run", cwd=work)
    row("fit --run (first: cold response cache)", t)
    total += t
    row("= Quickstart total (target < 20 s)", total)
    return work / "bgdinfo.json"


def engine_times(obs, work):
    """Engine time of each step's work on in-memory objects (warm process)."""
    from nuskybgd_engine.io.events import read_events
    from nuskybgd_engine.io.regions import RegionSet
    from nuskybgd_engine.maps.aspecthist import aspect_histogram_from_files
    from nuskybgd_engine.maps.images import make_counts_image
    from nuskybgd_engine.maps.instrmap import make_instrument_map
    from nuskybgd_engine.maps.projection import project_maps
    from nuskybgd_engine.model.background import region_weights
    from nuskybgd_engine.spectra.extract import extract_spectrum
    from nuskybgd_engine.spectra.responses import region_rmf
    from nuskybgd_engine.analysis import BackgroundAnalysis
    from nuskybgd_engine.workflow import background_images, load_fit_json

    obsid = obs.name
    evt = obs / "event_cl"
    out = {}
    events = {m: read_events(evt / f"nu{obsid}{m}01_cl.evt") for m in "AB"}
    out["mkimgs"], images = best_time(lambda: {m: make_counts_image(events[m], 3, 20) for m in "AB"}, 3)
    regs = {r: RegionSet.read_ds9(obs / "regions" / f"{r}.reg") for r in ("bgd1", "bgd2", "bgd3", "bgd4", "src_point")}

    def extract_all():
        for m in "AB":
            for rs in regs.values():
                res = extract_spectrum(events[m], rs)
                region_rmf(events[m], res.det_counts)

    out["getspecnoarf"], _ = best_time(extract_all, 1)
    out["mkinstrmap"], imaps = best_time(lambda: {m: make_instrument_map(evt / f"nu{obsid}{m}01_cl.evt")
                                                  for m in "AB"}, 1)
    out["aspecthist"], hists = best_time(lambda: {m: aspect_histogram_from_files(evt / f"nu{obsid}{m}_det1.fits",
                                                                                 evt / f"nu{obsid}{m}01_gti.fits")
                                                  for m in "AB"}, 1)
    out["projbgd"], _ = best_time(lambda: [project_maps(images[m].header, imaps[m], hists[m], module=m)
                                           for m in "AB"], 1)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        out["from_bgdinfo"], analysis = best_time(lambda: BackgroundAnalysis.from_bgdinfo(work / "bgdinfo.json"), 1)
        out["fit"], _ = best_time(lambda: analysis.fit("cstat"), 3)
        w = region_weights(regs["src_point"], analysis.grid, analysis.maps["A"], name="src")
        out["predict"], _ = best_time(lambda: analysis.predict(w, band=(3, 20)), 5)
        ws = [region_weights(regs[r], analysis.grid, analysis.maps[m], name=r) for r in ("src_point", "bgd1")
              for m in "AB"]
        out["predict8"], _ = best_time(lambda: [analysis.predict(x, band=b) for x in ws
                                                for b in ((3, 20), (10, 30))], 3)
        out["image"], _ = best_time(lambda: background_images(analysis, (3, 20)), 3)
        out["load_fit_json"], _ = best_time(lambda: load_fit_json(work / "bgdfit.json"), 3)
    finally:
        os.chdir(cwd)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exposure", type=float, default=50000.0)
    ap.add_argument("--batch", type=int, default=2, help="observations for the batch throughput (0: skip)")
    ap.add_argument("--keep", default=None, help="work in this (new or empty) directory and keep it")
    args = ap.parse_args(argv)
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-cli-"))
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NUSKYBGD_RESPONSE_CACHE", str(tmp / "cache"))
    try:
        run(tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def run(tmp, args):
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"NUSKYBGD_RESPONSE_CACHE={os.environ['NUSKYBGD_RESPONSE_CACHE']}")
    print(f"{'step':<44} {'cli s':>8} {'cli cpu':>8} {'engine s':>8}")
    sim = tmp / "sim"
    sim.mkdir()
    t, _ = cli("simulate", sim, "--exposure", args.exposure, cwd=tmp)
    row(f"simulate ({args.exposure / 1000:g} ks, set-up)", t)
    obs = next(sim.iterdir())
    work = tmp / "bgd"
    work.mkdir()
    t, _ = cli("--help", cwd=work)
    row("nuskybgd --help", t)
    t, _ = cli("predict", "--help", cwd=work)
    row("nuskybgd predict --help", t)
    quickstart(obs, work)
    eng = engine_times(obs, work)
    for k in ("mkimgs", "getspecnoarf", "mkinstrmap", "aspecthist", "projbgd", "from_bgdinfo", "load_fit_json"):
        print(f"  engine {k:<36} {'':8} {'':8} {eng[k]:8.3f}")

    t, _ = cli("fit", "bgdinfo.json", "savefile=bgdfit2", "--run", cwd=work)
    row("fit --run (target < 2 s)", t, eng["fit"], "engine: the fit alone")
    times = [cli("predict", "bgdfit.json", "src_point.reg", "--module", "A", "--band", 3, 20, cwd=work)[0]
             for _ in range(3)]
    row("predict, first call (sidecar built if new)", times[0], eng["predict"])
    row("predict (best of 3; target < 1 s)", min(times[1:], key=float), eng["predict"])
    cases = [(r, m, b) for r in ("src_point.reg", "bgd1.reg") for m in "AB" for b in ((3, 20), (10, 30))]
    t8 = sum((cli("predict", "bgdfit.json", r, "--module", m, "--band", *b, cwd=work)[0] for r, m, b in cases),
             T(0.0, 0.0))
    row("predict 8 cases in 8 calls", t8, eng["predict8"])
    t, proc = cli("predict", "bgdfit.json", "src_point.reg", "bgd1.reg", "--module", "A", "B", "--band", 3, 20,
                  "--band", 10, 30, cwd=work, expect=None)
    if proc.returncode == 0:
        row("predict 8 cases in one call", t, eng["predict8"])
    else:
        row("predict 8 cases in one call", float("nan"), note="not supported by this version")
    t, _ = cli("spec", "bgdfit.json", "src_point.reg,src_point.reg", "src_pointA_sr.pha,src_pointB_sr.pha", cwd=work)
    row("spec", t)
    t, _ = cli("simplify", "bgd_src_point.xcm", "bgdinfo.json", cwd=work)
    row("simplify", t)
    t, _ = cli("image", "bgdfit.json", 3, 20, cwd=work)
    row("image", t, eng["image"])
    t, _ = cli("bgdspec", "bgdfit.json", "src_point.reg", "src_pointA_sr.pha", cwd=work)
    row("bgdspec", t)

    if args.batch:
        arch = tmp / "archive"
        arch.mkdir()
        names = []
        for i in range(args.batch):
            obsid = f"{90000002000 + i:011d}"
            cli("simulate", arch, "--obsid", obsid, "--seed", 700 + i, "--exposure", args.exposure, cwd=tmp)
            names.append(str(arch / obsid))
        (tmp / "obs.lst").write_text("\n".join(names) + "\n")
        t, _ = cli("batch", tmp / "obs.lst", "--workdir", tmp / "batchwork", cwd=tmp)
        row(f"batch {args.batch} obs, serial (1 core)", t,
            note=f"{60 * args.batch / t:.1f} obs/min per core, {t / args.batch:.1f} s/obs")


if __name__ == "__main__":
    main()
