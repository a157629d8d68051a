"""A batch's inputs: the observation list, each observation's input files and its manifest.

``workdir/<obsid>/manifest.json`` (written atomically) records the inputs (path, size, mtime, sha256),
options, status, the one-line error, outputs, timings and the attempt count.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadConfigError, BadFileError, NuSkyBgdError
from ..io.files import write_json
from ..observation import find_observation_files


MANIFEST = "manifest.json"


PRODUCTS = "products"


@dataclass
class BatchEntry:
    """One observation of a batch: its directory, obsid, (optional) own background regions and
    (optional) GRXE sky map (IDL ``modelrxte_*.fits``, as ``projbgd --grxe``)."""

    obsdir: Path
    obsid: str
    region_files: list | None = None
    grxe: Path | None = None

    def to_dict(self):
        return {"obsdir": str(self.obsdir), "obsid": self.obsid,
                "region_files": [str(p) for p in self.region_files] if self.region_files is not None else None,
                "grxe": str(self.grxe) if self.grxe is not None else None}

    @classmethod
    def from_dict(cls, d):
        """The inverse of :meth:`to_dict` (what a Dask task receives)."""
        regions = d.get("region_files")
        return cls(Path(d["obsdir"]), d["obsid"], [Path(r) for r in regions] if regions is not None else None,
                   Path(d["grxe"]) if d.get("grxe") else None)


#: Observation-list token naming an observation's own GRXE sky map.
GRXE_TOKEN = "grxe="


def read_obslist(path):
    """Read an observation list: one observation directory per line, optionally followed by its
    background region files and ``grxe=MAP`` (its GRXE sky map; whitespace-separated); ``#``
    starts a comment; paths are relative to the list file.

    Returns
    -------
    list of BatchEntry

    Raises
    ------
    BadConfigError
        Unreadable or empty list, an obsid listed twice (its products would collide), or a
        ``grxe=`` map that is missing or given twice on a line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadConfigError("observation list not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadConfigError(f"cannot read observation list ({exc})", path=path) from None
    base = path.parent
    entries, seen = [], {}
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        obsdir = _relative(base, tokens[0])
        grxe = [t[len(GRXE_TOKEN):] for t in tokens[1:] if t.lower().startswith(GRXE_TOKEN)]
        regions = [_relative(base, t) for t in tokens[1:] if not t.lower().startswith(GRXE_TOKEN)] or None
        if len(grxe) > 1 or (grxe and not grxe[0]):
            raise BadConfigError("give one GRXE map per observation (grxe=MAP)", path=path, field=f"line {n}")
        grxe = _relative(base, grxe[0]) if grxe else None
        if grxe is not None and not grxe.is_file():
            raise BadConfigError(f"GRXE map {grxe} not found", path=path, field=f"line {n}")
        obsid = obsdir.name
        if obsid in seen:
            raise BadConfigError(f"observation {obsid} listed twice (lines {seen[obsid]} and {n})", path=path,
                                 field=f"line {n}")
        seen[obsid] = n
        entries.append(BatchEntry(obsdir=obsdir, obsid=obsid, region_files=regions, grxe=grxe))
    if not entries:
        raise BadConfigError("no observation directories listed", path=path)
    return entries


def _relative(base, token):
    """A list token as a path: absolute, or relative to the list's directory ``base``."""
    return Path(token) if Path(token).is_absolute() else base / token


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _input_paths(entry, regions):
    """The files an observation's result depends on (events, aspect, GTI, region files, GRXE map)."""
    _obsid, files = find_observation_files(entry.obsdir)
    paths = [p for m in sorted(files) for p in (files[m]["events"], files[m]["det1"], files[m]["gti"])
             if p is not None]
    if regions == "given":
        paths += _given_region_files(entry)
    if entry.grxe is not None:
        paths.append(entry.grxe)
    return [Path(p) for p in paths]


def _given_region_files(entry):
    if entry.region_files is not None:
        return [Path(p) for p in entry.region_files]
    return sorted((Path(entry.obsdir) / "regions").glob("bgd*.reg"))


def observation_inputs(entry, regions="given", *, checksums=True):
    """``{path: {"size", "mtime_ns", "sha256"}}`` of an observation's input files."""
    out = {}
    for p in _input_paths(entry, regions):
        try:
            st = p.stat()
        except OSError:
            raise BadFileError("input file not found", path=p) from None
        out[str(p)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                       "sha256": _sha256(p) if checksums else None}
    return out


def _inputs_unchanged(recorded, entry, regions):
    """True when the recorded inputs are the current ones (same paths; same size and mtime, or
    the same sha256 when the stat differs, e.g. after a copy)."""
    try:
        current = [str(p) for p in _input_paths(entry, regions)]
    except NuSkyBgdError:
        return False
    if sorted(current) != sorted(recorded):
        return False
    for path, rec in recorded.items():
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
            continue
        if st.st_size != rec.get("size") or _sha256(path) != rec.get("sha256"):
            return False
    return True


def _write_json(path, data):
    """Atomic JSON (re)write of a manifest or summary, its directory made first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, overwrite=True)


def read_manifest(workdir, obsid):
    """The manifest of ``obsid`` under ``workdir`` (None when absent or unreadable)."""
    path = Path(workdir) / obsid / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _new_manifest(entry, options):
    return {"obsid": entry.obsid, "obsdir": str(entry.obsdir), "options": options, "inputs": {},
            "status": "pending", "error": None, "outputs": [], "timings": {}, "attempts": 0,
            "started": None, "finished": None}


def _one_line(exc):
    """A one-line description of any exception (engine errors are already one line)."""
    if isinstance(exc, NuSkyBgdError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]

