"""The files an ``.xcm`` refers to: spectra (PHA), responses (RMF) and auxiliary responses (ARF).

:class:`ExportWriter` writes each distinct content once into the ``.xcm``'s directory, reuses an
identical file, numbers a different one, and refers to real calibration files by absolute path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..calibration import resolve
from ..constants import channel_edges
from ..errors import BadFileError
from ..io.files import write_numbered
from ..io.fitsutil import read_fits
from ..io.ogip import Arf, Spectrum, write_arf, write_pha, write_rmf
from ..io.responsecache import read_response

__all__ = ["ExportWriter", "group_files"]


def _same_content(path, arrays):
    """True when the FITS file at ``path`` holds exactly ``arrays`` (so it can be reused)."""
    try:
        hdul = read_fits(path)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not reusable
        return False
    for name, values in arrays.items():
        for h in hdul:
            if h.data is not None and hasattr(h, "columns") and name in h.columns.names:
                col = np.asarray(h.data[name], float)
                if col.shape != values.shape or not np.array_equal(col, values):
                    return False
                break
        else:
            return False
    return True


def _same_response(path, resp):
    """True when the RMF file at ``path`` has the same grid and matrix as ``resp``."""
    try:
        other = read_response(path)
    except Exception:  # noqa: BLE001 - unreadable: not reusable
        return False
    if other is resp:
        return True
    return (other.matrix.shape == resp.matrix.shape and np.array_equal(other.energ_lo, resp.energ_lo)
            and np.array_equal(other.e_min, resp.e_min) and abs(other.matrix - resp.matrix).max() == 0)


class ExportWriter:
    """Writes the files an ``.xcm`` needs into one directory, each distinct content once.

    Real auxiliary files are referenced by absolute path; nominal (in-memory) responses and
    in-memory spectra are written next to the ``.xcm``. Existing files are never overwritten:
    an identical file is reused, a different one gets a numbered name.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise BadFileError("output directory does not exist", path=self.directory)
        self.written = []
        self._cache = {}

    def _rel(self, path):
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.directory.resolve()))
        except ValueError:
            return str(path.resolve())

    def arf(self, name, values, module=None):
        key = ("arf", name, hash(np.asarray(values).tobytes()))
        if key in self._cache:
            return self._cache[key]
        found = resolve(name) if name in ("be.arf", "fcxbA.arf", "fcxbB.arf") else None
        if found is not None and found.path is not None:
            out = str(Path(found.path).resolve())
        else:
            edges = channel_edges()
            target = self.directory / name
            if target.exists() and _same_content(target, {"SPECRESP": np.asarray(values, float)}):
                out = name
            else:
                arf = Arf(energ_lo=edges[:-1], energ_hi=edges[1:], specresp=np.asarray(values, float),
                          module=module,
                          header={"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}" if module else "NONE"})
                target = write_numbered(target.parent, target.name, lambda p: write_arf(arf, p))
                self.written.append(target)
                out = target.name
        self._cache[key] = out
        return out

    def response(self, resp, name):
        key = ("rmf", id(resp))
        if key in self._cache:
            return self._cache[key]
        path = getattr(resp, "path", None)
        target = self.directory / name
        if path and Path(path).is_file():
            out = self._rel(path)
        elif target.exists() and _same_response(target, resp):
            out = name
        else:
            target = write_numbered(target.parent, target.name, lambda p: write_rmf(resp, p))
            self.written.append(target)
            out = target.name
        self._cache[key] = out
        return out

    def spectrum(self, group, stem, respfile=None):
        """The group's spectrum file name (relative to the directory), written when it is not a file yet;
        ``respfile`` is written as RESPFILE (a bgdinfo.json's spectra carry their RMF)."""
        src = group.files.get("spectrum")
        if src and Path(src).is_file():
            return self._rel(src)
        target = self.directory / f"{stem}_sr.pha"
        if target.exists() and _same_content(target, {"COUNTS": np.rint(group.counts)}):
            return target.name
        spec = Spectrum(channel=np.arange(group.counts.size), counts=np.rint(group.counts).astype(np.int64),
                        exposure=group.exposure, backscal=1.0, module=group.module, grouping=group.grouping,
                        quality=group.quality, header={"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{group.module}",
                                                       **({"RESPFILE": respfile} if respfile else {})})
        target = write_numbered(target.parent, target.name, lambda p: write_pha(spec, p))
        self.written.append(target)
        return target.name


def group_files(analysis, writer, groups=None):
    """Per-group file names (spectrum, rmf, ap_arf, fcxb_arf, diag) for an .xcm, writing what is missing."""
    out = []
    for g in groups or analysis.groups:
        stem = Path(str(g.name)).name.split(".")[0] or "spec"
        rmf = writer.response(g.rmf, f"nominal{g.module}.rmf" if getattr(g.rmf, "path", None) is None
                              and g.rmf.header.get("NOMINAL") else f"{stem}_sr.rmf")
        ap_name = "be.arf" if g.files.get("ap_arf_source") != "caldb" else f"{stem}_sr_nsb.arf"
        out.append({"spectrum": writer.spectrum(g, stem), "rmf": rmf,
                    "ap_arf": writer.arf(ap_name, g.ap_arf, g.module),
                    "fcxb_arf": writer.arf(f"fcxb{g.module}.arf", g.fcxb_arf, g.module),
                    "diag": writer.response(g.diag, "diag.rmf")})
    return out
