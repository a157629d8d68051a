"""Shared fixtures: where the real files live, and tiny synthetic NuSTAR-like inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_dir():
    """The ``shared`` materials directory: $NUSKYBGD_SHARED or ../shared next to the checkout."""
    env = os.environ.get("NUSKYBGD_SHARED")
    return Path(env) if env else _DEFAULT_SHARED


def pytest_collection_modifyitems(config, items):
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
def event_file(tmp_path):
    """Factory: write a tiny synthetic event file and return its path."""

    def make(name="nu60001001002A01_cl.evt", **kw):
        path = tmp_path / name
        make_event_hdul(**kw).writeto(path)
        return path

    return make


def pytest_configure(config):
    """Keep the tests out of the user's caches: the demo observation and the response cache go to
    temporary directories."""
    import tempfile

    if "NUSKYBGD_DEMO_DIR" not in os.environ:
        os.environ["NUSKYBGD_DEMO_DIR"] = tempfile.mkdtemp(prefix="nuskybgd-demo-tests-")
    if "NUSKYBGD_RESPONSE_CACHE" not in os.environ:
        os.environ["NUSKYBGD_RESPONSE_CACHE"] = tempfile.mkdtemp(prefix="nuskybgd-responses-tests-")
