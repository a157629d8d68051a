"""Region responses: mixed per-detector RMFs, detector absorption and the aperture ARF.

What the seed got from HEASoft/CALDB, computed here (spec §2.2, §2.13, §2.15, §7 items 1, 7, 8):

RMF of a region (``region_rmf``)
    With ``$CALDB`` set: the four per-detector RMFs of the module, found through the ``GRPRMF``
    index (product valid at ``DATE-OBS`` with ``CAL_CBD`` ``DEPTHCUT(NOMINAL)``; extension
    ``n + 1`` of that file lists the detector's RMFs; the first row's ``RMFFILE`` is used, relative
    to the GRPRMF file's directory, as nuskybgd-py ``caldb.getRMF``), mixed with weights equal to
    the region's counts per detector (``nuproducts`` semantics): ``R = Σ_n c_n R_n / Σ_n c_n``.
    Without CALDB: the embedded nominal RMF (one response for all detectors, NuSTAR's energy
    resolution; :mod:`~nuskybgd_engine.calibration.nominal`), or an explicit file.
Detector absorption (``apply_detabs``)
    ``R'_{jc} = a_j R_{jc}`` with ``a = Σ_n w_n DETABS_n / Σ_n w_n``: each *energy row* j is scaled
    (nuskybgd-py multiplied a fixed-width MATRIX by a 1-D array, which scales channels, §7.8).
Aperture ARF (``region_arf``)
    ``SPECRESP_j = T_Be,j · Σ_n w_n DETABS_{n,j} / Σ_n w_n`` on the standard 4096-row grid, with
    the Be-window transmission from the CALDB ``BEABSPAR`` file (column ``ATT``) when CALDB has
    it, else ``be.arf`` by row index. The weights are those of *this* region (the seed's ``spec``
    used another region's weights, §7.1); ``getspecnoarf`` passes the region's counts per
    detector, the same weights as its RMF. Unlike nuskybgd-py's ``make_arf``, the weights are
    normalised to sum 1 (the seed relied on the caller passing fractions).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..calibration.caldb import caldb_index_path
from ..calibration.products import load_arf, load_rmf
from ..calibration.resolver import caldb_env_dir, resolve
from ..constants import N_CHANNELS, channel_edges
from ..errors import BadConfigError, BadFileError, CalibrationNotFoundError
from ..io.fitsutil import hdu_name, read_fits, require_columns
from ..io.ogip import Arf, Response, check_module, module_of, read_rmf
from ..io.responsecache import read_response

__all__ = [
    "DetAbs",
    "normalise_weights",
    "mixed_rmf",
    "caldb_available",
    "caldb_detector_rmf_paths",
    "detector_rmfs",
    "nominal_rmf",
    "region_rmf",
    "is_nominal_rmf",
    "read_detabs",
    "detabs_curve",
    "apply_detabs",
    "read_beabs",
    "be_transmission",
    "region_arf",
]


def normalise_weights(weights, n=4, *, field="weights"):
    """Weights as float64 summing to 1; all must be finite and >= 0 with a positive sum."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadConfigError(f"{field} must be {n} numbers, got {weights!r}", field=field) from None
    if w.shape != (n,):
        raise BadConfigError(f"{field} must be {n} numbers, got shape {w.shape}", field=field)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise BadConfigError(f"{field} must be >= 0 with a positive sum, got {w.tolist()}", field=field)
    return w / w.sum()


# --------------------------------------------------------------------------------------
# RMF mixing
# --------------------------------------------------------------------------------------


def _same_grid(a, b, what, path):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-6):
        raise BadFileError(f"{what} differs from the first RMF's; cannot mix", path=path, field=what)


def mixed_rmf(weights, rmfs):
    """Weighted mean of RMFs on one grid: ``Σ_n w_n R_n / Σ_n w_n``.

    Parameters
    ----------
    weights : sequence of float, one per RMF (>= 0, positive sum)
    rmfs : sequence of Response
        Same energy rows and channels. RMFs with zero weight are not used (may be None).

    Returns
    -------
    Response
        float32 matrix if all used inputs are float32 (as CALDB RMFs), else float64; header
        of the first used RMF with ``DETNAM = 'MIXED'`` (unless one RMF is used) and keywords
        ``RMFWGT<n>`` giving the normalised weights.
    """
    rmfs = list(rmfs)
    w = normalise_weights(weights, len(rmfs))
    used = [i for i in range(len(rmfs)) if w[i] > 0]
    for i in used:
        if not isinstance(rmfs[i], Response):
            raise BadConfigError(f"RMF {i} is not a Response ({type(rmfs[i]).__name__})", field="rmfs")
    first = rmfs[used[0]]
    for i in used[1:]:
        r = rmfs[i]
        if r.matrix.shape != first.matrix.shape:
            raise BadFileError(f"matrix shape {r.matrix.shape} differs from {first.matrix.shape}; cannot mix",
                               path=r.path, field="MATRIX")
        _same_grid(r.energ_lo, first.energ_lo, "ENERG_LO", r.path)
        _same_grid(r.e_min, first.e_min, "E_MIN", r.path)
        if r.first_channel != first.first_channel:
            raise BadFileError("first channel differs; cannot mix", path=r.path, field="F_CHAN")
    f32 = all(rmfs[i].matrix.dtype == np.float32 for i in used)
    distinct = {id(rmfs[i]) for i in used}
    if len(distinct) == 1:
        matrix = first.matrix.copy()  # one response for every detector (nominal): nothing to mix
    else:
        matrix = None
        for i in used:
            term = rmfs[i].matrix64 * w[i]
            matrix = term if matrix is None else matrix + term
        matrix = matrix.tocsr()
        if f32:
            matrix = matrix.astype(np.float32)
    header = dict(first.header)
    if len(distinct) > 1:
        header["DETNAM"] = "MIXED"
    for n, value in enumerate(w):
        header[f"RMFWGT{n}"] = float(value)
    return Response(energ_lo=first.energ_lo.copy(), energ_hi=first.energ_hi.copy(), e_min=first.e_min.copy(),
                    e_max=first.e_max.copy(), matrix=matrix, channel=np.asarray(first.channel).copy(),
                    first_channel=first.first_channel, module=first.module, header=header, path=None)


# --------------------------------------------------------------------------------------
# CALDB per-detector RMFs and the nominal RMF
# --------------------------------------------------------------------------------------


def caldb_available():
    """True when ``$CALDB`` names a directory holding the NuSTAR FPM index."""
    root = caldb_env_dir()
    return root is not None and root.is_dir() and caldb_index_path(root).is_file()


def caldb_detector_rmf_paths(module, date=None):
    """The four per-detector RMF files of a module from CALDB, through the ``GRPRMF`` index.

    Returns
    -------
    list of pathlib.Path
        DET0..DET3.

    Raises
    ------
    CalibrationNotFoundError
        No GRPRMF entry, or the RMF it names is not installed.
    """
    out = []
    for n in range(4):
        found = resolve("GRPRMF", module=module, detector=n, date=date, allow_nominal=False)
        hdul = read_fits(found.path, what="CALDB GRPRMF file")
        ext = found.extension if found.extension is not None else n + 1
        if not 0 < ext < len(hdul):
            raise BadFileError(f"GRPRMF file has no extension {ext} for DET{n}", path=found.path, extension=ext)
        hdu = hdul[ext]
        cols = require_columns(hdu, found.path, ["RMFFILE"], extension=hdu_name(hdul, hdu))
        if len(cols["RMFFILE"]) == 0:
            raise BadFileError(f"no RMF listed for DET{n}", path=found.path, extension=ext, field="RMFFILE")
        name = str(np.char.strip(np.asarray(cols["RMFFILE"]).astype(str))[0])
        path = Path(found.path).parent / name
        if not path.is_file():
            raise CalibrationNotFoundError(f"the GRPRMF file lists {name} for DET{n}, which is not installed",
                                           path=path)
        out.append(path)
    return out


@functools.lru_cache(maxsize=4)
def _read_rmf_cached(path, mtime, size, module):
    return read_response(path, module=module)


def _read_rmf(path, module):
    st = os.stat(path)
    return _read_rmf_cached(os.fspath(path), st.st_mtime_ns, st.st_size, module)


def nominal_rmf(module):
    """The embedded nominal RMF of a module (the shared, cached object of the calibration products)."""
    return load_rmf(module)[0]


def is_nominal_rmf(rmf):
    """True for the embedded nominal RMF (also after ``getspecnoarf`` wrote it to a file and it was read back)."""
    header = getattr(rmf, "header", None) or {}
    return bool(header.get("NOMINAL")) or str(header.get("RMFSRC", "")).strip().lower() == "nominal"


def detector_rmfs(module, *, date=None, weights=None):
    """The four per-detector RMFs of a module and their source.

    CALDB (through GRPRMF) when ``$CALDB`` is configured, else the nominal RMF for all four.
    With ``weights``, RMFs of zero weight are not read (None in their place).

    Returns
    -------
    rmfs : list of (Response or None)
    source : str
        ``'caldb'`` or ``'nominal'``.
    """
    if caldb_available():
        paths = caldb_detector_rmf_paths(module, date=date)
        rmfs = [None if (weights is not None and weights[n] <= 0) else _read_rmf(p, module)
                for n, p in enumerate(paths)]
        return rmfs, "caldb"
    rmf = nominal_rmf(module)
    return [rmf] * 4, "nominal"


def region_rmf(events, det_counts, *, rmffile=None):
    """The RMF of a region: per-detector RMFs mixed by the region's counts per detector.

    Parameters
    ----------
    events : EventList
        For the module and ``DATE-OBS`` (CALDB validity).
    det_counts : array of 4 numbers
        Counts per detector in the region (weights). All zero (an empty region): equal weights.
    rmffile : path, optional
        Use this RMF as is (its INSTRUME must match the event file's module).

    Returns
    -------
    rmf : Response
    source : str
        ``'path'``, ``'caldb'`` or ``'nominal'``.
    """
    module = events.module
    if rmffile is not None:
        return read_rmf(rmffile, module=module), "path"
    c = np.asarray(det_counts, dtype=float)
    if c.shape != (4,):
        raise BadConfigError(f"det_counts must have 4 values, got shape {c.shape}", field="det_counts")
    weights = c if c.sum() > 0 else np.ones(4)
    date = events.header.get("DATE-OBS")
    rmfs, source = detector_rmfs(module, date=date, weights=weights)
    if source == "nominal":
        # All four detectors share the nominal response, so the mix is that response itself
        # (returning the cached object also lets the model share its folded templates).
        return rmfs[0], source
    return mixed_rmf(weights, rmfs), source


# --------------------------------------------------------------------------------------
# Detector absorption
# --------------------------------------------------------------------------------------


@dataclass(eq=False)
class DetAbs:
    """CALDB detector absorption (DETABS) of one module.

    Attributes
    ----------
    energ_lo, energ_hi : ndarray (n,)
    detabs : ndarray (4, n)
        Transmission of DET0..DET3 per energy row.
    module : {'A', 'B', None}
    path : str or None
    """

    energ_lo: np.ndarray
    energ_hi: np.ndarray
    detabs: np.ndarray
    module: str | None = None
    path: str | None = None

    def __repr__(self):
        name = os.path.basename(self.path) if self.path else "in memory"
        return f"DetAbs({name}: FPM{self.module or '?'}, 4 x {self.detabs.shape[1]} rows)"


def read_detabs(path, module=None, *, extension_offset=1):
    """Read a CALDB DETABS file: extensions 1..4 (DET0..DET3), column ``DETABS``.

    Extensions are matched to detectors by their ``DETNAM`` when present (else by order).
    """
    hdul = read_fits(path, what="CALDB DETABS file")
    tables = [h for h in hdul[extension_offset:] if hasattr(h, "columns")
              and "DETABS" in [c.upper() for c in h.columns.names]]
    if len(tables) < 4:
        raise BadFileError(f"expected 4 extensions with a DETABS column (DET0..DET3), found {len(tables)}",
                           path=path, field="DETABS")
    tables = tables[:4]
    order = list(range(4))
    names = [str(h.header.get("DETNAM", "")).strip().upper() for h in tables]
    if all(n in ("DET0", "DET1", "DET2", "DET3") for n in names):
        if sorted(names) != ["DET0", "DET1", "DET2", "DET3"]:
            raise BadFileError(f"DETNAM values {names} do not cover DET0..DET3", path=path, field="DETNAM")
        order = [names.index(f"DET{n}") for n in range(4)]
    rows = []
    lo = hi = None
    for n in range(4):
        h = tables[order[n]]
        ext = hdu_name(hdul, h)
        cols = require_columns(h, path, ["ENERG_LO", "ENERG_HI", "DETABS"], extension=ext)
        v = np.asarray(cols["DETABS"], dtype=np.float64)
        if v.ndim != 1 or v.size == 0:
            raise BadFileError("expected one DETABS value per row", path=path, extension=ext, field="DETABS")
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise BadFileError("DETABS values must be finite and >= 0", path=path, extension=ext, field="DETABS")
        if lo is None:
            lo, hi = cols["ENERG_LO"].astype(np.float64), cols["ENERG_HI"].astype(np.float64)
        elif v.size != lo.size:
            raise BadFileError(f"{v.size} rows, DET0 has {lo.size}", path=path, extension=ext, field="DETABS")
        rows.append(v)
        check_module(module_of(h.header), module, h.header, path, ext)
    found = module_of(hdul[0].header) or module_of(tables[0].header)
    return DetAbs(energ_lo=lo, energ_hi=hi, detabs=np.vstack(rows), module=found, path=os.fspath(path))


def detabs_curve(detabs, weights):
    """``Σ_n w_n DETABS_n`` with the weights normalised to sum 1, shape (n_rows,)."""
    w = normalise_weights(weights)
    return w @ detabs.detabs


def apply_detabs(rmf, detabs, weights):
    """RMF with detector absorption: energy row j scaled by ``Σ_n w_n DETABS_{n,j}`` (w normalised).

    Parameters
    ----------
    rmf : Response
    detabs : DetAbs
        Same number of rows as the RMF's energies (applied by row index, as XSPEC applies ARFs).
    weights : 4 numbers

    Returns
    -------
    Response
        New response (input untouched), same dtype; keywords ``DETABSW<n>`` record the weights.
    """
    curve = detabs_curve(detabs, weights)
    if curve.size != rmf.n_energies:
        raise BadFileError(f"DETABS has {curve.size} rows but the RMF {rmf.n_energies} energies", path=detabs.path,
                           field="DETABS")
    m = rmf.matrix.tocsr(copy=True)
    # One factor per stored element, taken from its row: scales energy rows, not channels (§7.8).
    m.data = (m.data * np.repeat(curve, np.diff(m.indptr))).astype(rmf.matrix.dtype, copy=False)
    header = dict(rmf.header)
    for n, value in enumerate(normalise_weights(weights)):
        header[f"DETABSW{n}"] = float(value)
    header["HDUCLAS3"] = "FULL" if str(header.get("HDUCLAS3", "")).upper() == "FULL" else "DETECTOR"
    return Response(energ_lo=rmf.energ_lo, energ_hi=rmf.energ_hi, e_min=rmf.e_min, e_max=rmf.e_max, matrix=m,
                    channel=rmf.channel, first_channel=rmf.first_channel, module=rmf.module, header=header,
                    path=None)


# --------------------------------------------------------------------------------------
# Be window and the aperture ARF
# --------------------------------------------------------------------------------------


def read_beabs(path, extension=None):
    """Be-window transmission ``ATT`` of a CALDB ``BEABSPAR`` file (first table with ATT)."""
    hdul = read_fits(path, what="CALDB BEABSPAR file")
    candidates = [hdul[extension]] if extension is not None and extension < len(hdul) else hdul[1:]
    for h in candidates:
        if hasattr(h, "columns") and "ATT" in [c.upper() for c in h.columns.names]:
            v = np.asarray(require_columns(h, path, ["ATT"], extension=hdu_name(hdul, h))["ATT"], dtype=np.float64)
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise BadFileError("ATT must be one finite value per row", path=path, field="ATT")
            return v
    raise BadFileError("no table with an ATT column", path=path, field="ATT")


def _standard_grid():
    edges = channel_edges()
    return edges[:-1], edges[1:]


def be_transmission(module=None, *, date=None, path=None, be_arf=None):
    """Be-window transmission on the standard 4096-row grid and its source.

    Order: explicit BEABSPAR ``path`` > CALDB ``BEABSPAR`` > ``be.arf`` (explicit ``be_arf``,
    auxil directory, cache or nominal), the latter by row index (its energy columns are corrupt, §5).
    """
    if path is not None:
        return read_beabs(path), "path"
    if caldb_available():
        try:
            found = resolve("BEABSPAR", module=module, date=date, allow_nominal=False)
        except CalibrationNotFoundError:
            found = None
        if found is not None:
            return read_beabs(found.path, found.extension), "caldb"

    lo, hi = _standard_grid()
    grid = SimpleNamespace(n_energies=N_CHANNELS, energ_lo=lo, energ_hi=hi, path=None)
    values, src = load_arf("be.arf", grid, path=be_arf)
    return values, f"{src} be.arf"


def region_arf(module, weights, *, detabs=None, be=None, date=None):
    """Aperture-component ARF of a region: Be transmission × weighted DETABS (spec §2.15).

    Parameters
    ----------
    module : {'A', 'B'}
    weights : 4 numbers
        Detector weights of this region (normalised here); ``getspecnoarf`` uses its counts per
        detector.
    detabs : DetAbs or path, optional
        Default: CALDB ``DETABS`` of the module (there is no nominal substitute: an error
        without CALDB).
    be : array (4096,) or path of a BEABSPAR file, optional
        Default: :func:`be_transmission`.
    date : str, optional
        ``DATE-OBS`` for CALDB validity.

    Returns
    -------
    arf : Arf
        On the standard 1.6–165.44 keV, 0.04 keV grid (4096 rows); keywords ``DETABSW<n>``.
    sources : dict
    """
    w = normalise_weights(weights)
    sources = {}
    if detabs is None:
        found = resolve("DETABS", module=module, date=date, allow_nominal=False)
        detabs = read_detabs(found.path, module=module)
        sources["detabs"] = str(found.path)
    elif not isinstance(detabs, DetAbs):
        detabs = read_detabs(detabs, module=module)
        sources["detabs"] = str(detabs.path)
    else:
        sources["detabs"] = str(detabs.path or "in memory")
    if be is None:
        trans, sources["be"] = be_transmission(module, date=date)
    elif isinstance(be, (str, os.PathLike)):
        trans, sources["be"] = read_beabs(be), str(be)
    else:
        trans, sources["be"] = np.asarray(be, dtype=np.float64), "given"
    lo, hi = _standard_grid()
    curve = detabs_curve(detabs, weights)
    for name, arr in (("DETABS", curve), ("ATT", trans)):
        if arr.shape != (N_CHANNELS,):
            raise BadFileError(f"{name} has {arr.size} rows, expected {N_CHANNELS} (standard grid)",
                               path=detabs.path if name == "DETABS" else None, field=name)
    header = {"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "CREATOR": "nuskybgd_engine region_arf",
              "BESOURCE": os.path.basename(str(sources["be"]))[:60],
              "DETABSRC": os.path.basename(str(sources["detabs"]))[:60]}
    for n, value in enumerate(w):
        header[f"DETABSW{n}"] = float(value)
    arf = Arf(energ_lo=lo.astype(np.float32), energ_hi=hi.astype(np.float32),
              specresp=(trans * curve).astype(np.float32), module=module, header=header)
    return arf, sources
