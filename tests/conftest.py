"""Shared fixtures: where the real files live, and tiny synthetic NuSTAR-like inputs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_dir():
    """The ``shared`` materials directory: $NUSKYBGD_SHARED or ../shared next to the checkout."""
    env = os.environ.get("NUSKYBGD_SHARED")
    return Path(env) if env else _DEFAULT_SHARED


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """The whole suite (``python -m pytest``, no paths given) runs on three pytest-xdist workers, one test file
    per worker at a time (its module fixtures built once), the longest files first (:data:`LONGEST_FIRST`).

    Much of the suite's time is spent waiting on other processes (browser pages, servers, kernels, CLI
    runs, a virtual environment's install): on 2 cores, measured, one worker 12-20 min, two 9.5 min, three
    6.1 min (the cores still 24 % idle). Runs given paths, ``-n``,
    ``--pdb`` or ``--collect-only`` are left as asked (``-n 0``: one process). Runs before xdist's own hook
    (both ``tryfirst``; a conftest registers later).
    """
    opt = config.option
    if (not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput")
            or config.args_source != pytest.Config.ArgsSource.TESTPATHS or opt.numprocesses is not None
            or opt.dist != "no" or opt.collectonly or opt.usepdb):
        return
    opt.numprocesses, opt.dist, opt.loadscopereorder = 3, "loadfile", False


#: The modules that take longest (about 30 s to 3 min each), longest first. They are run first, so that the
#: workers (:func:`pytest_cmdline_main`) end together instead of one of them starting a long module when the
#: others have nothing left. Only the order changes: every test still runs.
LONGEST_FIRST = (
    "browser/test_dashboard_browser.py", "browser/test_fresh_install.py", "engine/test_seed_quickstart.py",
    "engine/test_batch.py", "browser/test_jupyterlab.py", "engine/test_fitcache.py", "widgets/test_notebooks.py",
    "engine/test_productcache.py", "engine/test_observations.py", "engine/test_regions_ds9.py",
    "engine/test_idl.py", "browser/test_multi_observation_browser.py", "engine/test_recovery.py",
    "widgets/test_multi_observation.py", "engine/test_batch_grxe.py", "engine/test_workflow.py",
    "engine/test_maps_projection.py", "widgets/test_widgets_app.py", "engine/test_grxe_end_to_end.py",
)


def _module_rank(item):
    path = item.path.as_posix()
    return next((i for i, m in enumerate(LONGEST_FIRST) if path.endswith("/tests/" + m)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_module_rank)  # stable: the tests of a module keep their order
    data = shared_dir() / "data"
    if data.is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"real NuSTAR files not found at {data} (set NUSKYBGD_SHARED to the shared materials)"
    )
    for item in items:
        if "requires_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared():
    """Path of the shared materials; skips the test when absent."""
    path = shared_dir()
    if not (path / "data").is_dir():
        pytest.skip(f"real NuSTAR files not found at {path} (set NUSKYBGD_SHARED)")
    return path


@pytest.fixture(scope="session")
def data_dir(shared):
    return shared / "data"


@pytest.fixture(scope="session")
def auxil_dir(shared):
    path = shared / "nustar-auxil"
    if not path.is_dir():
        pytest.skip(f"nuskybgd auxil files not found at {path}")
    return path


@pytest.fixture(scope="session")
def solar_events(data_dir):
    """The real solar X/Y event file (nustar_sac ``*_sunpos.evt``): (path, raw columns, EVENTS header).

    The raw columns are read here with astropy, for expectations independent of the engine.
    """
    import warnings

    from astropy.io import fits

    path = data_dir / "nustar_sac/nu90410111001A06_cl_sunpos.evt"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    with warnings.catch_warnings(), fits.open(path) as hdul:
        # The file's TCRVL is the string '0.0': astropy warns about it when it builds the columns.
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        raw = {k: np.asarray(hdul["EVENTS"].data[k]) for k in ("TIME", "X", "Y", "PI", "GRADE", "DET_ID")}
        header = hdul["EVENTS"].header.copy()
    return path, raw, header


# ---------------------------------------------------------------------------------------------
# Tiny synthetic NuSTAR-like files (made fresh in tmp_path; no real data needed)
# ---------------------------------------------------------------------------------------------

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402

SKY_COLUMN_KEYS = {"TCTYP": ("RA---TAN", "DEC--TAN"), "TCRPX": (500.5, 500.5), "TCRVL": (150.0, 2.0),
                   "TCDLT": (-6.828076e-4, 6.828076e-4), "TLMIN": (1, 1), "TLMAX": (1000, 1000)}


def make_event_hdul(n=200, module="A", seed=1, pa_pnt=30.0, columns=None, obsid="60001001002"):
    """An in-memory cleaned event file with the layout of the NuSTAR pipeline (tiny)."""
    rng = np.random.default_rng(seed)
    data = {
        "TIME": np.sort(rng.uniform(1e8, 1e8 + 1000.0, n)),
        "X": rng.uniform(300, 700, n).astype(np.float32),
        "Y": rng.uniform(300, 700, n).astype(np.float32),
        "DET1X": rng.integers(1, 361, n).astype(np.int16),
        "DET1Y": rng.integers(1, 361, n).astype(np.int16),
        "DET_ID": rng.integers(0, 4, n).astype(np.uint8),
        "RAWX": rng.integers(0, 32, n).astype(np.uint8),
        "RAWY": rng.integers(0, 32, n).astype(np.uint8),
        "PI": rng.integers(0, 1000, n).astype(np.int32),
        "GRADE": rng.integers(0, 27, n).astype(np.int16),
    }
    formats = {"TIME": "D", "X": "E", "Y": "E", "DET1X": "I", "DET1Y": "I", "DET_ID": "B", "RAWX": "B",
               "RAWY": "B", "PI": "J", "GRADE": "I"}
    names = list(columns) if columns is not None else list(data)
    cols = [fits.Column(name=k, format=formats[k], array=data[k]) for k in names]
    ev = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    h = ev.header
    h["HDUCLAS1"] = "EVENTS"
    for i, name in enumerate(names, start=1):
        if name in ("X", "Y"):
            axis = 0 if name == "X" else 1
            for key, vals in SKY_COLUMN_KEYS.items():
                h[f"{key}{i}"] = vals[axis]
    for key, val in {"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "OBS_ID": obsid, "OBJECT": "SYNTH",
                     "DATE-OBS": "2020-01-01T00:00:00", "TSTART": 1e8, "TSTOP": 1e8 + 1000.0,
                     "EXPOSURE": 900.0, "LIVETIME": 900.0, "ONTIME": 1000.0, "RA_NOM": 150.0, "DEC_NOM": 2.0,
                     "PA_PNT": pa_pnt, "MJDREFI": 55197, "MJDREFF": 7.6601852e-4}.items():
        if val is not None:
            h[key] = val
    gti = fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="D", array=[1e8, 1e8 + 600]),
         fits.Column(name="STOP", format="D", array=[1e8 + 500, 1e8 + 1000])], name="GTI")
    gti.header["HDUCLAS1"] = "GTI"
    gti.header["TELESCOP"] = "NuSTAR"
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = f"FPM{module}"
    return fits.HDUList([prim, ev, gti])


@pytest.fixture
def event_hdul():
    """Factory: the in-memory event file of :func:`make_event_hdul`, to alter before writing."""
    return make_event_hdul


@pytest.fixture
def event_file(tmp_path):
    """Factory: write a tiny synthetic event file and return its path."""

    def make(name="nu60001001002A01_cl.evt", **kw):
        path = tmp_path / name
        make_event_hdul(**kw).writeto(path)
        return path

    return make


_MADE_HERE = []  # the temporary directories this process made (removed when it ends)


def _temporary(prefix):
    path = tempfile.mkdtemp(prefix=prefix)
    _MADE_HERE.append(path)
    return path


def pytest_configure(config):
    """Keep the tests out of the user's caches: the demo observation, the response cache and the
    product cache go to temporary directories, removed at the end (a product cache holds up to 2 GiB)."""
    # One demo directory per test process: pytest-xdist workers simulating the demo into the same
    # directory would race (one sees the other's half-written observation). The caches are shared: their
    # writes are atomic.
    process = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if "NUSKYBGD_DEMO_DIR" not in os.environ or os.environ.get("NUSKYBGD_TESTS_DEMO_OF", process) != process:
        os.environ["NUSKYBGD_DEMO_DIR"] = _temporary("nuskybgd-demo-tests-")
        os.environ["NUSKYBGD_TESTS_DEMO_OF"] = process
    if "NUSKYBGD_RESPONSE_CACHE" not in os.environ:
        os.environ["NUSKYBGD_RESPONSE_CACHE"] = _temporary("nuskybgd-responses-tests-")
    if "NUSKYBGD_PRODUCT_CACHE" not in os.environ:
        os.environ["NUSKYBGD_PRODUCT_CACHE"] = _temporary("nuskybgd-products-tests-")


def pytest_unconfigure(config):
    """Remove the temporary directories of :func:`pytest_configure` (xdist's main process ends after its
    workers, so the shared caches go last)."""
    for path in _MADE_HERE:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The served dashboard in headless chromium (tests/test_dashboard_browser.py, test_fresh_install.py)
# ---------------------------------------------------------------------------------------------

import contextlib  # noqa: E402
import ipaddress  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import psutil  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 90  # Voila + kernel start, bounded


def _free_port():
    """A TCP port free on 127.0.0.1 now (the server is told to fail rather than move if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, timeout=20):
    """Stop a server and everything in its process group: TERM, then KILL after ``timeout``; then
    its descendants in sessions of their own (Jupyter starts kernels so), which a server stopped
    by TERM shuts down itself: any still alive after ``timeout`` are killed."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    _gone, alive = psutil.wait_procs(descendants, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


class ServedURL(str):
    """The address of a served dashboard, with the server's process id (``.pid``)."""

    def __new__(cls, url, pid):
        obj = super().__new__(cls, url)
        obj.pid = pid
        return obj


def _wait_listening(port, proc, timeout=SERVER_START_S):
    """Wait until ``proc`` listens on ``port`` (RuntimeError if it exits or takes over ``timeout`` s).
    The page itself is not fetched: that would start a kernel."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"did not listen on port {port} within {timeout} s")
        time.sleep(0.5)


def _is_loopback(url):
    """Whether ``url`` stays on this machine (loopback host, or no network at all: data:, blob:, ...)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss", "ftp"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="session")
def serve_dashboard():
    """Factory of context managers: ``with serve_dashboard(argv, cwd=..., env=..., log=...) as url``
    runs the dashboard command line ``argv`` (``--port N`` appended, N free) until the block ends.

    Fails the test, with the end of the server log, if the server exits or does not listen within
    ``SERVER_START_S``. The page itself is not fetched here (that would start a kernel).
    """

    @contextlib.contextmanager
    def serve(argv, *, cwd, env, log):
        port = _free_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen([*map(str, argv), "--port", str(port)], cwd=cwd, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            try:
                _wait_listening(port, proc)
            except RuntimeError as exc:
                pytest.fail(f"{argv[0]}: {exc}:\n{Path(log).read_text()[-3000:]}")
            yield ServedURL(url, proc.pid)
        finally:
            _stop(proc)

    return serve


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (never ``playwright install``); skips without them."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: run .ci/install-browser (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e .[test]; the system "
                                          "chromium is used, never `playwright install`)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def open_page(browser):
    """Factory: a new tab that records what the page asks of the network, then goes to ``url``.

    The page gets ``nsb_external`` (every request or web socket to a host other than this
    machine), ``nsb_http_errors`` (responses with status >= 500, as ``"STATUS URL"``),
    ``nsb_errors`` (uncaught JavaScript errors) and ``nsb_status`` (status of ``url`` itself).
    """

    def open_(url, *, timeout_ms, viewport=(1600, 1200)):
        p = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        p.nsb_external, p.nsb_http_errors, p.nsb_errors = [], [], []
        p.on("request", lambda r: None if _is_loopback(r.url) else p.nsb_external.append(r.url))
        p.on("websocket", lambda ws: None if _is_loopback(ws.url) else p.nsb_external.append(ws.url))
        p.on("response", lambda r: p.nsb_http_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None)
        p.on("pageerror", lambda exc: p.nsb_errors.append(str(exc)))
        response = p.goto(url, timeout=timeout_ms)
        p.nsb_status = response.status if response is not None else None
        return p

    return open_


def _write_xspec_table(path, grid, e_edges, spectra, *, method=0, addmodel=True):
    """An OGIP/92-009 additive table, laid out as polarmodel.fits."""
    n = len(grid)
    primary = fits.PrimaryHDU()
    primary.header["MODLNAME"] = "toy"
    primary.header["MODLUNIT"] = "photons/cm^2/s"
    primary.header["ADDMODEL"] = addmodel
    primary.header["HDUCLAS1"] = "XSPEC TABLE MODEL"
    par = fits.BinTableHDU.from_columns([
        fits.Column("NAME", "12A", array=["mass"]), fits.Column("METHOD", "J", array=[method]),
        fits.Column("INITIAL", "E", array=[grid[1]]), fits.Column("DELTA", "E", array=[0.01]),
        fits.Column("MINIMUM", "E", array=[0.0]), fits.Column("BOTTOM", "E", array=[0.0]),
        fits.Column("TOP", "E", array=[10.0]), fits.Column("MAXIMUM", "E", array=[10.0]),
        fits.Column("NUMBVALS", "J", array=[n]), fits.Column("VALUE", f"{n}E", array=[np.asarray(grid)]),
    ], name="PARAMETERS")
    par.header["NINTPARM"] = 1
    par.header["NADDPARM"] = 0
    en = fits.BinTableHDU.from_columns([fits.Column("ENERG_LO", "E", array=e_edges[:-1]),
                                        fits.Column("ENERG_HI", "E", array=e_edges[1:])], name="ENERGIES")
    sp = fits.BinTableHDU.from_columns([fits.Column("PARAMVAL", "1E", array=np.asarray(grid)),
                                        fits.Column("INTPSPEC", f"{len(e_edges) - 1}E", array=spectra,
                                                    unit="photons/cm^2/s")], name="SPECTRA")
    fits.HDUList([primary, par, en, sp]).writeto(path)
    return path


@pytest.fixture
def write_table():
    """Writer of a synthetic OGIP additive XSPEC table model (the layout of polarmodel.fits)."""
    return _write_xspec_table


import json  # noqa: E402

from nuskybgd_engine.calibration.products import load_rmf  # noqa: E402
from nuskybgd_engine.io.ogip import write_pha, write_rmf  # noqa: E402
from nuskybgd_engine.io.regions import RegionSet  # noqa: E402
from nuskybgd_engine.spectra.extract import extract_spectrum  # noqa: E402


def write_demo_inputs(d, obsdir, obs, *, add_counts=None, **keys):
    """RMFs, bgd1/bgd2 spectra of both modules, regions and bgdinfo.json of the demo observation in ``d``.

    The projected maps (``bgdap<m>.fits``, ``det<n><m>im.fits``) are the caller's. ``add_counts(name, module,
    regions, spectrum)`` may return extra counts for a spectrum; ``keys`` are added to bgdinfo.json.
    """
    for m in ("A", "B"):
        write_rmf(load_rmf(m)[0], d / f"resp{m}.rmf")
    bgfiles, regfiles = [], []
    for name in ("bgd1", "bgd2", "src_point"):
        shutil.copy(obsdir / "regions" / f"{name}.reg", d / f"{name}.reg")
    for name in ("bgd1", "bgd2"):
        for m in ("A", "B"):
            regions = RegionSet.read_ds9(d / f"{name}.reg")
            spec = extract_spectrum(obs[m].events, regions, grid=obs.grid).spectrum
            if add_counts is not None:
                spec.counts = spec.counts + add_counts(name, m, regions, spec)
            spec.header["RESPFILE"] = f"resp{m}.rmf"
            write_pha(spec, d / f"{name}{m}_sr.pha")
            bgfiles.append(f"{name}{m}_sr.pha")
            regfiles.append(f"{name}.reg")
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "bgdapA.fits",
            "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
            "bgddetfiles": {m: [f"det{n}{m}im.fits" for n in range(4)] for m in ("A", "B")},
            "fcxb_config": {"links": [[1, 2], [3, 4]]}, "intbgd_fix_line_ratios": True, **keys}
    (d / "bgdinfo.json").write_text(json.dumps(info, indent=1))
    return d / "bgdinfo.json"
