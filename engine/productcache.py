"""An observation's maps cached on disk and shared read-only between processes.

:func:`~nuskybgd_engine.observation.prepare_observation` spends most of its time projecting the
aperture and detector maps through the aspect histogram. Every kernel of a served dashboard (and
every ``nuskybgd`` run) that opens the same observation gets the same products, so each module's
counts image, instrument map, aspect histogram and projected maps are written once to one cache
file and later mapped into memory read-only (``mmap``): the pages are the operating system's file
cache, shared by every process that opens the observation, not a private copy per kernel.

Key (:func:`product_key`): the identity of every input file (resolved path, size, mtime_ns,
inode: any rewrite changes mtime_ns, an atomic replace the inode), the module, the energy band,
the good-time intervals actually applied (the event file's, intersected with any user GTI),
``drop_invalid``, the calibration environment (``$NUSKYBGD_AUXIL``, ``$CALDB``, ...) and the code
version (the engine version and a digest of the sources that make the products, so an edited
engine never reads products of another). A changed input gives another key: the old entry is
never read again and leaves with the size cap.

File (``<key>.nsbp``): magic, a JSON header (format, the key material, the dataclass fields,
each array's dtype, shape, offset and CRC-32), then the arrays, 64-byte aligned. It is written
complete under a temporary name and renamed (:func:`~.io.responsecache.write_cache_file`), so
several processes writing the same entry at once leave one whole file, and a reader never sees
a partial one; nothing writes into an existing file. A file that does not read back whole and
consistent (magic, format, key material, sizes, CRC of every array) is reported and the
products are computed again (and the file replaced): a cache can cost time, never give a
wrong result. A cache that cannot be written is not an error either.

Location: ``$NUSKYBGD_PRODUCT_CACHE`` (``off`` disables the cache), else
``$XDG_CACHE_HOME/nuskybgd/products``, else ``~/.cache/nuskybgd/products``. Size cap:
``$NUSKYBGD_PRODUCT_CACHE_MB`` (default 2048); after each write the least recently written
entries beyond it are removed (a process that has one mapped keeps reading it).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import mmap
import os
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from . import __version__
from .calibration.products import environment_key
from .io.responsecache import write_cache_file
from .maps import AspectHistogram, CountsImage, InstrumentMap, ProjectedMaps

__all__ = ["CACHE_ENV", "SIZE_ENV", "DEFAULT_SIZE_MB", "FORMAT", "cache_root", "code_version", "file_identity",
           "product_key", "load_products", "store_products"]

CACHE_ENV = "NUSKYBGD_PRODUCT_CACHE"
SIZE_ENV = "NUSKYBGD_PRODUCT_CACHE_MB"
DEFAULT_SIZE_MB = 2048
#: Layout version of a cache file (part of the key: another version is never read).
FORMAT = 1

log = logging.getLogger(__name__)

_MAGIC = b"NSBPROD\x01"
_ALIGN = 64
_SUFFIX = ".nsbp"
# The parts of ModuleProducts cached, by name, and their classes.
_KINDS = {"image": CountsImage, "instrument_map": InstrumentMap, "aspect": AspectHistogram, "maps": ProjectedMaps}
# Sources whose code makes the products (a digest of them is part of the key).
_SOURCES = ("maps", "calibration", "io", "observation.py", "constants.py", "productcache.py")


class _Uncacheable(Exception):
    """A value the file format does not hold (the products are then simply not cached)."""


def cache_root():
    """Directory of the product cache (need not exist yet), or None when ``$NUSKYBGD_PRODUCT_CACHE=off``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nuskybgd" / "products"


def _size_cap():
    try:
        return max(0.0, float(os.environ.get(SIZE_ENV, DEFAULT_SIZE_MB))) * 2**20
    except ValueError:
        log.warning("nuskybgd: $%s is not a number of MB; using %d", SIZE_ENV, DEFAULT_SIZE_MB)
        return DEFAULT_SIZE_MB * 2**20


@functools.lru_cache(maxsize=1)
def code_version():
    """The engine version and a digest of the sources (and embedded calibration) that make the products."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for name in _SOURCES:
        top = here / name
        files = sorted(p for p in top.rglob("*") if p.is_file() and p.suffix in (".py", ".json")) \
            if top.is_dir() else [top]
        for p in files:
            h.update(str(p.relative_to(here)).encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:16]}"


def file_identity(path):
    """``[resolved path, size, mtime_ns, inode]`` of an input file, or None for no file."""
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns, st.st_ino]


def product_key(files, *, module, band, gtis, drop_invalid):
    """``(digest, material)`` naming one module's products.

    Parameters
    ----------
    files : dict
        The module's input files (``events``, ``det1``, ``gti``: paths or None).
    module : 'A' or 'B'
    band : (float, float)
    gtis : sequence of Gti
        The good-time intervals applied (to the events and to the aspect, after any user GTI).
    drop_invalid : bool
    """
    h = hashlib.sha256()
    for gti in gtis:
        h.update(np.ascontiguousarray(gti.start, dtype="<f8").tobytes() + b"|"
                 + np.ascontiguousarray(gti.stop, dtype="<f8").tobytes() + b";")
    material = {"format": FORMAT, "code": code_version(), "module": module,
                "band": [float(band[0]), float(band[1])], "drop_invalid": bool(drop_invalid), "gti": h.hexdigest(),
                "files": {k: file_identity(v) for k, v in sorted(files.items())},
                "calibration": list(environment_key())}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return digest, material


# -- encoding of the dataclass fields ----------------------------------------------------------------


def _encode(value, arrays):
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise _Uncacheable("object array")
        arrays.append(value)
        return {"a": len(arrays) - 1}
    if isinstance(value, fits.Header):
        return {"h": [[c.keyword, _encode(c.value, arrays), c.comment] for c in value.cards]}
    if isinstance(value, np.generic):
        return {"n": value.dtype.str, "v": value.item()}
    if isinstance(value, tuple):
        return {"t": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return {"l": [_encode(v, arrays) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise _Uncacheable(f"a {type(value).__name__} value")


def _decode(value, arrays):
    if not isinstance(value, dict):
        return value
    if "a" in value:
        return arrays[value["a"]]
    if "h" in value:
        return fits.Header([(k, _decode(v, arrays), c) for k, v, c in value["h"]])
    if "n" in value:
        return np.dtype(value["n"]).type(value["v"])
    if "t" in value:
        return tuple(_decode(v, arrays) for v in value["t"])
    return [_decode(v, arrays) for v in value["l"]]


# -- the file ------------------------------------------------------------------------------------------


def _path(root, digest):
    return root / digest[:2] / (digest + _SUFFIX)


def store_products(digest, material, products):
    """Write ``products`` (``{'image': CountsImage, 'instrument_map': ..., 'aspect': ..., 'maps': ...}``)
    under ``digest``; True when written. Never raises for a cache problem (logged)."""
    root = cache_root()
    if root is None:
        return False
    arrays = []
    try:
        fields = {kind: {f.name: _encode(getattr(products[kind], f.name), arrays)
                         for f in dataclasses.fields(_KINDS[kind])} for kind in _KINDS}
    except _Uncacheable as exc:
        log.info("nuskybgd: products not cached (%s)", exc)
        return False
    table, offset = [], 0
    for a in arrays:
        a = np.ascontiguousarray(a)
        offset = -(-offset // _ALIGN) * _ALIGN
        table.append({"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes,
                      "crc32": zlib.crc32(memoryview(a).cast("B"))})
        offset += a.nbytes
    head = json.dumps({"key": material, "fields": fields, "arrays": table}).encode()
    start = -(-(len(_MAGIC) + 8 + len(head)) // _ALIGN) * _ALIGN

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(_MAGIC + len(head).to_bytes(8, "little") + head)
            for a, rec in zip(arrays, table):
                f.seek(start + rec["offset"])
                f.write(memoryview(np.ascontiguousarray(a)).cast("B"))
            f.truncate(start + offset)
        os.chmod(tmp, 0o444)  # read-only for every process that maps it

    path = _path(root, digest)
    ok = write_cache_file(path, write)
    if ok:
        _evict(root, keep=path)
    return ok


def _read(path, material):
    """The products in ``path`` (arrays mapped read-only), or raise ValueError/OSError when it is not whole."""
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("not a product cache file")
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size < 2**26:
            raise ValueError("bad header size")
        head = json.loads(f.read(size).decode())
        if head.get("key") != material:
            raise ValueError("written for other inputs")
        start = -(-(len(_MAGIC) + 8 + size) // _ALIGN) * _ALIGN
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    arrays = []
    for rec in head["arrays"]:
        dtype = np.dtype(rec["dtype"])
        count = int(np.prod(rec["shape"], dtype=np.int64))
        lo = start + int(rec["offset"])
        if dtype.hasobject or count * dtype.itemsize != rec["nbytes"] or lo + rec["nbytes"] > len(mm):
            raise ValueError("array table inconsistent with the file")
        if zlib.crc32(memoryview(mm)[lo:lo + rec["nbytes"]]) != rec["crc32"]:
            raise ValueError("array checksum mismatch")
        arrays.append(np.frombuffer(mm, dtype=dtype, count=count, offset=lo).reshape(rec["shape"]))
    return {kind: cls(**{name: _decode(v, arrays) for name, v in head["fields"][kind].items()})
            for kind, cls in _KINDS.items()}


def load_products(digest, material):
    """The cached products under ``digest`` (dict as given to :func:`store_products`), or None.

    A file that is not whole and consistent is reported and ignored (the caller computes the
    products again and replaces it).
    """
    root = cache_root()
    if root is None:
        return None
    path = _path(root, digest)
    try:
        return _read(path, material)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("nuskybgd: ignoring the damaged product cache file %s (%s); computing the products again",
                    path, exc)
        return None


def _evict(root, keep):
    """Remove the oldest entries while the cache is over its size cap (never ``keep``)."""
    cap = _size_cap()
    entries = []
    for p in root.glob(f"*/*{_SUFFIX}"):
        try:
            st = p.stat()
        except OSError:
            continue
        entries.append((st.st_mtime_ns, st.st_size, p))
    total = sum(e[1] for e in entries)
    for _, size, p in sorted(entries):
        if total <= cap:
            break
        if p == keep:
            continue
        try:
            p.unlink()
            total -= size
        except OSError:
            continue
