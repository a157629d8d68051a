"""Responses read once: RMFs shared in a process and cached on disk by content hash.

A NuSTAR RMF keeps its low-energy tail (28 MB, 7 M non-zero values) and takes ~0.5-1 s to read
through FITS. :func:`read_response` reads each distinct response once:

* a response is identified by the digest of its module, grids, channels and matrix
  (:func:`_response_digest`): every RMF file holding the same response (e.g. the region RMFs of
  one detector mix, which differ only in keywords such as checksums) gives the same
  :class:`~.ogip.Response` object in a process, so the folded model transposes and folds it once;
* on disk (:func:`cache_root`), ``<digest>.npz`` holds the matrix — the float values as stored
  and the structure as runs of consecutive channels (barely more than the values), read back in
  a few tens of milliseconds — and ``files/<sha256 of an RMF file>.txt`` the digest of that
  file's response, so a known file is never parsed again. :func:`remember` records a file
  just written (``getspecnoarf``). A cache file that does not read back whole and consistent
  (zip CRC, shapes, ranges) is reported and rebuilt from the RMF.

File identity (:func:`content_hash`): the sha256 of the content, remembered per (path, size,
mtime_ns, inode) in memory and in the cache, so an unchanged file is hashed once. Any ordinary
rewrite changes mtime_ns (and an atomic replace the inode), so a changed file is hashed again;
only an edit that keeps size and mtime_ns and inode deliberately would go unseen.

The cache lives in ``$NUSKYBGD_RESPONSE_CACHE``, else ``$XDG_CACHE_HOME/nuskybgd/responses``, else
``~/.cache/nuskybgd/responses`` (``$NUSKYBGD_CACHE`` is the auxil cache of ``nuskybgd auxil
fetch``); nothing is ever written next to the user's data. A cache that cannot be written is
not an error: the response is then read from its file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import weakref
import zipfile
from pathlib import Path

import numpy as np

from ..errors import BadFileError, NuSkyBgdError
from .files import atomic_output
from .ogip import Response, check_module, read_rmf, write_rmf

__all__ = ["read_response", "write_response", "cached_response", "remember", "built_response", "content_hash", "cache_root", "LazyResponse",
           "CACHE_ENV", "FORMAT"]

CACHE_ENV = "NUSKYBGD_RESPONSE_CACHE"
#: Version of the cache layout (part of every cache file; another version is rebuilt).
FORMAT = 1

log = logging.getLogger(__name__)

# content hash -> Response: shared while someone holds it, never kept alive by the cache.
_SHARED = weakref.WeakValueDictionary()
# (path, size, mtime_ns, inode) -> sha256 of the file content.
_HASHES = {}
# sha256 of an RMF file -> digest of its response (see _response_digest).
_ALIASES = {}


def cache_root():
    """Directory of the response cache (need not exist yet)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nuskybgd" / "responses"


def _stat_key(path):
    st = os.stat(path)
    return (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def content_hash(path):
    """sha256 (hex) of a file's content, hashed once per file version (see the module notes)."""
    path = Path(path).resolve()
    try:
        key = _stat_key(path)
    except OSError as exc:
        raise BadFileError(f"cannot read ({exc.strerror})", path=path) from None
    digest = _HASHES.get(key)
    if digest is not None:
        return digest
    memo = cache_root() / "hashes" / (hashlib.sha1(repr(key).encode()).hexdigest() + ".txt")
    try:
        text = memo.read_text().strip()
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            digest = text
    except OSError:
        pass
    if digest is None:
        try:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        except OSError as exc:
            raise BadFileError(f"cannot read ({exc.strerror})", path=path) from None
        write_cache_file(memo, lambda tmp: tmp.write_text(digest + "\n"))
    _HASHES[key] = digest
    return digest


def write_cache_file(path, writer):
    """Write a cache file atomically (:func:`~.fitsutil.atomic_output`); a failure only logs."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path, overwrite=True) as tmp:
            writer(tmp)
        return True
    except (OSError, NuSkyBgdError) as exc:
        log.warning("nuskybgd: cannot write the cache file %s (%s); continuing without it", path, exc)
        return False


def _runs(matrix):
    """CSR structure as runs of consecutive columns: (start position in data, first column)."""
    indptr, indices = matrix.indptr, matrix.indices.astype(np.int64)
    new = np.ones(indices.size, dtype=bool)
    if indices.size > 1:
        new[1:] = indices[1:] != indices[:-1] + 1
    new[indptr[:-1][np.diff(indptr) > 0]] = True  # a run never crosses a row boundary
    starts = np.flatnonzero(new)
    return starts, indices[starts]


def _clean_header(header):
    return {k: v for k, v in header.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _response_digest(resp):
    """sha256 of what makes two responses the same for the model: module, grids, channels and matrix.

    Informational keywords (OBS_ID, RMFSRC, checksums) are left out, so e.g. the region RMFs of
    one detector mix share one object and one folding; the shared object keeps the keywords of
    the first file read.
    """
    m = resp.matrix.tocsr()
    m.sum_duplicates()
    h = hashlib.sha256()
    meta = {"shape": list(m.shape), "first_channel": int(resp.first_channel), "module": resp.module,
            "dtype": str(m.data.dtype)}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for a in (resp.energ_lo, resp.energ_hi, resp.e_min, resp.e_max, resp.channel, m.indptr.astype(np.int64),
              m.indices.astype(np.int32), m.data):
        h.update(np.ascontiguousarray(a).view(np.uint8))
    return h.hexdigest()


def _save(path, resp):
    m = resp.matrix.tocsr()
    m.sum_duplicates()
    starts, cols = _runs(m)
    meta = {"format": FORMAT, "shape": list(m.shape), "first_channel": int(resp.first_channel),
            "module": resp.module, "header": _clean_header(resp.header)}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), energ_lo=resp.energ_lo, energ_hi=resp.energ_hi,
                     e_min=resp.e_min, e_max=resp.e_max, channel=np.asarray(resp.channel), data=m.data,
                     indptr=m.indptr.astype(np.int64), run_start=starts, run_col=cols.astype(np.int32))

    return write_cache_file(path, write)


def _load(path, source):
    """The Response stored in cache file ``path``; raises ValueError (with the reason) if it is unusable."""
    import scipy.sparse as sp  # lazy: scipy.sparse only when a response is cached (CLI start-up)

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("meta", "energ_lo", "energ_hi", "e_min", "e_max", "channel", "data",
                                        "indptr", "run_start", "run_col")}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"layout {meta.get('format')}, not {FORMAT}")
    n_e, n_chan = (int(v) for v in meta["shape"])
    data, indptr, starts, cols = arrays["data"], arrays["indptr"], arrays["run_start"], arrays["run_col"]
    nnz = data.size
    lengths = np.diff(np.append(starts, nnz))
    ok = (indptr.shape == (n_e + 1,) and indptr[0] == 0 and indptr[-1] == nnz and np.all(np.diff(indptr) >= 0)
          and starts.shape == cols.shape and (starts.size == 0 or (starts[0] == 0 and np.all(lengths > 0)))
          and (cols.size == 0 or (cols.min() >= 0 and np.max(cols.astype(np.int64) + lengths) <= n_chan))
          and arrays["energ_lo"].shape == (n_e,) and arrays["energ_hi"].shape == (n_e,)
          and arrays["e_min"].shape == (n_chan,) and arrays["e_max"].shape == (n_chan,))
    if not ok:
        raise ValueError("inconsistent sparse structure")
    # Column indices: +1 along a run, a jump at each run start (one cumulative sum, no int64 temporaries).
    step = np.ones(nnz, dtype=np.int32)
    if starts.size:
        step[0] = cols[0]
        step[starts[1:]] = cols[1:] - (cols[:-1] + lengths[:-1].astype(np.int32) - 1)
    indices = np.cumsum(step, dtype=np.int32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n_e, n_chan))
    return Response(energ_lo=arrays["energ_lo"], energ_hi=arrays["energ_hi"], e_min=arrays["e_min"],
                    e_max=arrays["e_max"], matrix=matrix, channel=arrays["channel"],
                    first_channel=int(meta["first_channel"]), module=meta["module"], header=meta["header"],
                    path=os.fspath(source) if source else None)


def _alias_path(file_digest):
    return cache_root() / "files" / f"{file_digest}.txt"


def _matrix_of(file_digest):
    """The response digest recorded for a file content, or None."""
    digest = _ALIASES.get(file_digest)
    if digest is None:
        try:
            text = _alias_path(file_digest).read_text().strip()
        except OSError:
            return None
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            return None
        digest = _ALIASES[file_digest] = text
    return digest


def _from_cache(digest, source):
    """The response of response digest ``digest`` from memory or the disk cache, else None."""
    resp = _SHARED.get(digest)
    if resp is not None:
        return resp
    path = cache_root() / f"{digest}.npz"
    if not path.is_file():
        return None
    try:
        resp = _load(path, source)
        resp.__dict__["_cache_digest"] = digest
    except ValueError as exc:
        log.warning("nuskybgd: response cache file %s is corrupt (%s); rebuilt from %s", path, exc,
                    source or "its RMF")
        return None
    _SHARED[digest] = resp
    return resp


def _share(resp):
    """The shared response equal to ``resp`` (``resp`` itself if it is the first), saved in the
    disk cache; returns (shared response, its digest)."""
    digest = resp.__dict__.get("_cache_digest") or _response_digest(resp)
    shared = _SHARED.get(digest)
    if shared is None:
        cache_file = cache_root() / f"{digest}.npz"
        if not cache_file.is_file():
            _save(cache_file, resp)
        resp.__dict__["_cache_digest"] = digest
        _SHARED[digest] = shared = resp
    return shared, digest


def _alias(file_digest, digest):
    if _ALIASES.get(file_digest) != digest:
        _ALIASES[file_digest] = digest
        write_cache_file(_alias_path(file_digest), lambda tmp: tmp.write_text(digest + "\n"))


def remember(path, resp):
    """Record that RMF file ``path`` holds ``resp`` (e.g. just written), so that reading it is a
    cache hit; returns the shared response of that content (``resp`` if it is the first)."""
    shared, digest = _share(resp)
    _alias(content_hash(path), digest)
    return shared


def write_response(resp, path, overwrite=False):
    """:func:`~.ogip.write_rmf`, serialising each (response, keywords) once.

    The first file written for a response and its keywords is kept in the cache
    (``written/``); later ones are copies of it (a file copy instead of ~0.5 s of FITS
    serialisation: e.g. ``getspecnoarf`` writes the same nominal RMF for every region). The copy
    is hashed and compared with the kept file, so a damaged cache file is never propagated: it
    is written anew. The file is recorded (:func:`remember`) for the steps that read it.
    """
    _shared, digest = _share(resp)
    head = json.dumps(_clean_header(resp.header), sort_keys=True, default=str)
    kept = cache_root() / "written" / (hashlib.sha256((digest + head).encode()).hexdigest() + ".rmf")
    path = Path(path)
    record = kept.with_suffix(".sha256")  # the kept file's hash when it was made
    if kept.is_file() and record.is_file():
        want = record.read_text().strip()
        with atomic_output(path, overwrite=overwrite) as tmp:
            shutil.copyfile(kept, tmp)
        if content_hash(path) == want:
            _alias(want, digest)
            return path
        log.warning("nuskybgd: cached RMF %s is damaged; writing %s anew", kept, path)
        overwrite = True
    write_rmf(resp, path, overwrite=overwrite)
    file_digest = content_hash(path)
    _alias(file_digest, digest)
    if write_cache_file(kept, lambda tmp: shutil.copyfile(path, tmp)):
        write_cache_file(record, lambda tmp: tmp.write_text(file_digest + "\n"))
    return path


def built_response(label, sources, build):
    """A response computed by ``build()`` (e.g. the nominal RMF, ~0.3 s) once, then read from the
    cache: keyed by ``label`` and the content of the files it is computed from (``sources``,
    e.g. the coefficients and the code), so that a change of either builds it again."""
    key = hashlib.sha256(json.dumps([str(label)] + [content_hash(f) for f in sources]).encode()).hexdigest()
    digest = _matrix_of(key)
    if digest is not None:
        resp = _from_cache(digest, None)
        if resp is not None:
            return resp
    resp, digest = _share(build())
    _alias(key, digest)
    return resp


def cached_response(file_digest, source):
    """The response of the RMF content ``file_digest`` (sha256 of the file): shared in memory,
    else from the disk cache, else read from ``source`` (a file with that content) and cached.
    None when ``source`` is None and neither cache has it."""
    digest = _matrix_of(file_digest)
    if digest is not None:
        resp = _from_cache(digest, source)
        if resp is not None:
            return resp
    if source is None:
        return None
    resp = read_rmf(source)
    if content_hash(source) != file_digest:  # the file changed since the caller hashed it
        raise BadFileError("changed while it was being read", path=source)
    return remember(source, resp)


def read_response(path, module=None):
    """:func:`~.ogip.read_rmf` through the process and disk caches.

    Every RMF with the same response (grids, matrix, keywords) gives the same
    :class:`~.ogip.Response` object while one is alive: never modify it. ``module`` is checked
    against INSTRUME as :func:`~.ogip.read_rmf` does.
    """
    path = Path(path)
    resp = cached_response(content_hash(path), path)
    check_module(resp.module, module, resp.header, path, "MATRIX")
    return resp


def _lazy_field(name):
    def get(self):
        known = self.__dict__["_known"]
        return known[name] if name in known else getattr(self.real(), name)

    return property(get, doc=f"``{name}`` of the response (read when first needed if not given).")


class LazyResponse(Response):
    """Stands for a :class:`~.ogip.Response` whose matrix is read only when something needs it.

    A reopened fit (:mod:`~nuskybgd_engine.fitcache`) has every template folded already: its
    responses need their grids (given here) but not their matrices, which come from the
    response cache (content hash ``digest``, else the RMF ``path`` if it still has that
    content) or from ``loader`` on first use of any attribute not given.
    """

    def __init__(self, *, digest=None, loader=None, shape=None, **known):
        self.__dict__.update(_known=known, digest=digest, _loader=loader, _shape=shape, _real=None)

    @classmethod
    def of(cls, loader):
        """A response made by ``loader()`` (returning a Response or a (Response, source) pair) when first used."""
        return cls(loader=loader)

    def real(self):
        """The full response (read on first call)."""
        if self._real is None:
            if self._loader is not None:
                resp = self._loader()
                resp = resp[0] if isinstance(resp, tuple) else resp
            else:
                path = self._known.get("path")
                resp = cached_response(self.digest, path if path and os.path.isfile(path) else None)
                if resp is None:
                    raise BadFileError("response no longer available (not in the response cache and its RMF "
                                       "changed or is gone)", path=path)
            if self._shape is not None and tuple(resp.matrix.shape) != tuple(self._shape):
                raise BadFileError(f"response has shape {resp.matrix.shape}, expected {tuple(self._shape)}",
                                   path=self._known.get("path"))
            self.__dict__["_real"] = resp
        return self._real

    energ_lo = _lazy_field("energ_lo")
    energ_hi = _lazy_field("energ_hi")
    e_min = _lazy_field("e_min")
    e_max = _lazy_field("e_max")
    channel = _lazy_field("channel")
    first_channel = _lazy_field("first_channel")
    module = _lazy_field("module")
    header = _lazy_field("header")
    path = _lazy_field("path")

    @property
    def matrix(self):
        return self.real().matrix

    @property
    def matrix64(self):
        return self.real().matrix64

    @property
    def n_energies(self):
        return int(self._shape[0]) if self._shape is not None else self.real().n_energies

    @property
    def n_channels(self):
        return int(self._shape[1]) if self._shape is not None else self.real().n_channels

    def __repr__(self):
        state = "read" if self._real is not None else "not read yet"
        return f"LazyResponse({self._known.get('path') or self.digest or 'calibration'}, {state})"
