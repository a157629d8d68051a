"""The observation's products cached on disk (engine/productcache.py): a cached load equals a fresh
one exactly, a changed input or setting misses, a damaged file is recomputed, two processes
writing at once leave one whole entry, the size cap and ``off`` hold."""

import dataclasses
import hashlib
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine import productcache
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation

KINDS = ("image", "instrument_map", "aspect", "maps")


@pytest.fixture(scope="module")
def obsdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate_observation(root, SimulationSpec(obsid="90000000077", seed=77, exposure=5000.0, pa=40.0))
    return root / "90000000077"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "products"
    monkeypatch.setenv(productcache.CACHE_ENV, str(d))
    monkeypatch.delenv(productcache.SIZE_ENV, raising=False)
    return d


def fresh(obsdir, monkeypatch, **kw):
    with monkeypatch.context() as m:
        m.setenv(productcache.CACHE_ENV, "off")
        return prepare_observation(obsdir, **kw)


def load(obsdir, **kw):
    said = []
    return prepare_observation(obsdir, progress=said.append, **kw), said


def entries(cache):
    return sorted(cache.glob("*/*.nsbp"))


def same_value(a, b, skip=()):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
            a, b, equal_nan=True)
    if isinstance(a, fits.Header):
        return isinstance(b, fits.Header) and [(c.keyword, c.value, c.comment) for c in a.cards
                                               if c.keyword not in skip] == [
            (c.keyword, c.value, c.comment) for c in b.cards if c.keyword not in skip]
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_products(a, b, skip=("DATE",)):
    """Equal in every field, array and header card; ``skip``: header keywords not compared (by default
    the aspect histogram's DATE, the time it was made: two computations differ there, a cached copy
    keeps the first one's)."""
    assert list(a.modules) == list(b.modules)
    for m in a.modules:
        for kind in KINDS:
            x, y = getattr(a[m], kind), getattr(b[m], kind)
            assert type(x) is type(y)
            for f in dataclasses.fields(x):
                assert same_value(getattr(x, f.name), getattr(y, f.name), skip), (m, kind, f.name)


@pytest.mark.slow
def test_cached_load_equals_a_fresh_one_exactly(obsdir, cache, monkeypatch):
    reference = fresh(obsdir, monkeypatch)
    assert not cache.exists()
    first, said = load(obsdir)
    assert not any("product cache" in s for s in said) and len(entries(cache)) == 2  # one per module
    second, said = load(obsdir)
    assert sum("from the product cache" in s for s in said) == 2
    assert_same_products(reference, first)
    assert_same_products(first, second, skip=())  # the cached copy: every card, DATE included
    maps = second["A"].maps
    assert not maps.bgdap.flags.writeable and not maps.det[0].flags.writeable  # shared read-only
    with pytest.raises(ValueError):
        maps.bgdap[0, 0] = 1.0
    assert second["A"].grid.shape == reference["A"].grid.shape  # the header rebuilds the sky grid
    assert all(f.stat().st_mode & 0o222 == 0 for f in entries(cache))  # written read-only (0444)


@pytest.mark.slow
def test_a_changed_input_or_setting_is_not_served_from_the_cache(obsdir, cache, monkeypatch):
    load(obsdir)
    assert len(entries(cache)) == 2
    # another band, another module selection: other keys
    _, said = load(obsdir, band=(3.0, 30.0), modules=("A",))
    assert not any("product cache" in s for s in said) and len(entries(cache)) == 3
    # the event file rewritten (same bytes, new mtime): the entry of FPMA is not used again
    evt = obsdir / "event_cl" / "nu90000000077A01_cl.evt"
    st = evt.stat()
    os.utime(evt, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    obs, said = load(obsdir)
    assert [s for s in said if "product cache" in s] == ["FPMB: maps from the product cache"]
    assert len(entries(cache)) == 4
    # a user GTI changes the products: another key, and the result is the fresh one
    t0 = float(obs["A"].events.gti.start[0])
    gti = (np.array([t0]), np.array([t0 + 2000.0]))
    from nuskybgd_engine.io.gti import Gti

    cut, said = load(obsdir, gti=Gti(*gti))
    assert not any("product cache" in s for s in said)
    assert_same_products(fresh(obsdir, monkeypatch, gti=Gti(*gti)), cut)
    # another code version: another key
    digest, material = productcache.product_key(obs["A"].files, module="A", band=(3.0, 20.0),
                                                gtis=[obs["A"].events.gti], drop_invalid=False)
    monkeypatch.setattr(productcache, "code_version", lambda: "0+other")
    assert productcache.product_key(obs["A"].files, module="A", band=(3.0, 20.0), gtis=[obs["A"].events.gti],
                                    drop_invalid=False)[0] != digest
    assert material["code"].startswith(productcache.__version__ + "+")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "empty", "other-key"])
def test_a_damaged_cache_file_is_recomputed_never_used(obsdir, cache, monkeypatch, damage, caplog):
    reference = fresh(obsdir, monkeypatch, modules=("A",))
    load(obsdir, modules=("A",))
    (path,) = entries(cache)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-100] ^= 0x01  # inside the last array
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "header":
        data[20:40] = b"x" * 20
    elif damage == "empty":
        data = b""
    else:  # a whole file written for other inputs, under this name
        head = data.index(b'"module": "A"')
        data[head:head + 13] = b'"module": "B"'
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="nuskybgd_engine.productcache"):
        obs, said = load(obsdir, modules=("A",))
    assert not any("product cache" in s for s in said)
    assert "damaged product cache file" in caplog.text
    assert_same_products(reference, obs)
    again, said = load(obsdir, modules=("A",))  # the file was replaced by a whole one
    assert said.count("FPMA: maps from the product cache") == 1
    assert_same_products(reference, again)


_CHILD = """
import hashlib, sys
from nuskybgd_engine.observation import prepare_observation
obs = prepare_observation(sys.argv[1])
h = hashlib.sha256()
for m in obs.modules:
    p = obs[m]
    for a in (p.image.image, p.instrument_map.data, p.aspect.image, p.maps.bgdap, *p.maps.det):
        h.update(a.tobytes())
print(h.hexdigest())
"""


def digest(obs):
    h = hashlib.sha256()
    for m in obs.modules:
        p = obs[m]
        for a in (p.image.image, p.instrument_map.data, p.aspect.image, p.maps.bgdap, *p.maps.det):
            h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_two_processes_writing_at_once_leave_one_whole_entry(obsdir, cache, monkeypatch):
    reference = digest(fresh(obsdir, monkeypatch))
    env = dict(os.environ, **{productcache.CACHE_ENV: str(cache)})
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(obsdir)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert [o[0].strip() for o in outs] == [reference, reference]
    assert len(entries(cache)) == 2 and not list(cache.glob("*/.*"))  # no temporary file left
    obs, said = load(obsdir)
    assert said.count("FPMA: maps from the product cache") == 1 and digest(obs) == reference


@pytest.mark.slow
def test_size_cap_and_off(obsdir, cache, monkeypatch):
    monkeypatch.setenv(productcache.SIZE_ENV, "1")  # 1 MB: only the entry just written stays
    load(obsdir, modules=("A",))
    first = entries(cache)
    load(obsdir, modules=("A",), band=(5.0, 10.0))
    assert len(entries(cache)) == 1 and entries(cache) != first
    monkeypatch.setenv(productcache.CACHE_ENV, "off")
    assert productcache.cache_root() is None
    _, said = load(obsdir, modules=("B",))
    assert not any("product cache" in s for s in said)
    assert len(entries(cache)) == 1


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv(productcache.CACHE_ENV, str(tmp_path / "c"))
    assert productcache.cache_root() == tmp_path / "c"
    monkeypatch.delenv(productcache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert productcache.cache_root() == tmp_path / "xdg" / "nuskybgd" / "products"
    monkeypatch.setenv(productcache.SIZE_ENV, "lots")
    assert productcache._size_cap() == productcache.DEFAULT_SIZE_MB * 2**20
