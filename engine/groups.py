"""Background data groups from spectra: a spectrum, its responses and its region's weights.

A :class:`~.model.folding.GroupData` is one background spectrum (from a PHA file or straight from
an event list) with its RMF, the aperture (Be window / CALDB DETABS) and fcxb ARFs, and the
geometric weights of its region on the projected maps (:func:`read_projected_maps`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration.products import load_arf, load_diag_rmf, load_rmf
from .errors import BadConfigError, BadFileError
from .io.fitsutil import read_fits
from .io.ogip import read_pha
from .io.responsecache import read_response
from .maps.projection import ProjectedMaps
from .model.background import region_weights
from .model.folding import GroupData
from .spectra.extract import extract_spectrum
from .spectra.grouping import group_min_counts
from .spectra.responses import caldb_available, region_arf, region_rmf

__all__ = ["read_projected_maps", "group_from_spectrum_file", "group_from_events"]


def read_projected_maps(bgdap_path, det_paths, module=None, grxe_path=None):
    """Read ``bgdap<m>.fits``, ``det{0..3}<m>im.fits`` (and ``bgdgrxe<m>.fits``) into a ProjectedMaps."""
    def image(path):
        hdul = read_fits(path, what="projected map")
        data = hdul[0].data
        if data is None or data.ndim != 2:
            raise BadFileError("no 2-D image in the primary HDU", path=path)
        if not np.all(np.isfinite(data)):
            raise BadFileError("map has non-finite pixels", path=path)
        return np.asarray(data, dtype=float), hdul[0].header

    bgdap, header = image(bgdap_path)
    dets = []
    for p in det_paths:
        d, _ = image(p)
        if d.shape != bgdap.shape:
            raise BadFileError(f"shape {d.shape} differs from the aperture map's {bgdap.shape}", path=p)
        dets.append(d)
    if len(dets) != 4:
        raise BadConfigError(f"need 4 detector maps, got {len(dets)}", field="bgddetfiles")
    grxe = None
    if grxe_path is not None:
        grxe, _ = image(grxe_path)
        if grxe.shape != bgdap.shape:
            raise BadFileError(f"GRXE map shape {grxe.shape} differs from the aperture map's {bgdap.shape}",
                               path=grxe_path)
    mod = module or str(header.get("NSB_MOD", header.get("INSTRUME", ""))).upper().removeprefix("FPM") or None
    return ProjectedMaps(bgdap=bgdap, det=dets, header=header, module=mod, exposure=float(header.get("NSB_ASPE", 0)),
                         grxe=grxe)


def _aperture_arf(module, fractions, rmf):
    """apbgd ARF aligned with ``rmf``: Be × DETABS mix with CALDB, else the Be window (be.arf)."""
    if caldb_available():
        try:
            arf, sources = region_arf(module, fractions)
            if len(arf.specresp) == rmf.n_energies:
                return np.asarray(arf.specresp, float), "caldb"
        except Exception:  # noqa: BLE001 - any CALDB gap falls back to the Be window
            pass
    values, source = load_arf("be.arf", rmf)
    return values, source


def _group(name, module, counts, exposure, rmf, weights, *, grouping=None, quality=None, files=None):
    diag, _ = load_diag_rmf()
    ap, ap_src = _aperture_arf(module, weights.fractions, rmf)
    fcxb, fcxb_src = load_arf(f"fcxb{module}.arf", rmf)
    files = dict(files or {})
    files.setdefault("ap_arf_source", ap_src)
    return GroupData(name=name, module=module, counts=counts, exposure=exposure, rmf=rmf, diag=diag, ap_arf=ap,
                     fcxb_arf=fcxb, grouping=grouping, quality=quality, weights=weights, files=files)


def group_from_spectrum_file(spec_path, regions, grid, maps, *, name=None, rmf_cache=None, weights=None):
    """A data group from a PHA file (its RESPFILE next to it) and its region on the projected maps.

    ``rmf_cache`` (a dict) shares one Response between spectra naming the same RESPFILE: a NuSTAR
    RMF is read once (≈ 1 s, 28 MB) and its folded templates are shared by the fit.
    ``weights``: the region's :class:`~.model.background.RegionWeights` when the caller has
    computed them already (they are computed from ``regions`` otherwise).
    """
    spec_path = Path(spec_path)
    spec = read_pha(spec_path)
    if spec.module not in ("A", "B"):
        raise BadFileError("INSTRUME must be FPMA or FPMB", path=spec_path, field="INSTRUME")
    if maps.module and maps.module != spec.module:
        raise BadFileError(f"spectrum is FPM{spec.module} but the maps are FPM{maps.module}", path=spec_path,
                           field="INSTRUME")
    resp = str(spec.header.get("RESPFILE", "") or "").strip()
    files = {"spectrum": str(spec_path)}
    if resp and resp.upper() != "NONE":
        rpath = Path(resp) if Path(resp).is_absolute() else spec_path.parent / resp
        if not rpath.is_file():
            raise BadFileError(f"RESPFILE {resp} not found next to the spectrum", path=spec_path, field="RESPFILE")
        key = (str(rpath.resolve()), spec.module)
        if rmf_cache is not None and key in rmf_cache:
            rmf = rmf_cache[key]
        else:
            rmf = read_response(rpath, module=spec.module)
            if rmf_cache is not None:
                rmf_cache[key] = rmf
        files["rmf"] = str(rpath)
    else:
        rmf, _ = load_rmf(spec.module)
        files["rmf"] = "nominal"
    w = weights if weights is not None else region_weights(regions, grid, maps, name=name or spec_path.stem)
    return _group(name or spec_path.stem, spec.module, spec.counts, spec.exposure, rmf, w,
                  grouping=spec.grouping, quality=spec.quality, files=files)


def group_from_events(events, regions, grid, maps, *, name, group_min=None, rmf=None):
    """A data group straight from an event list and a region (no files): extract, group, respond."""
    rs = extract_spectrum(events, regions, grid=grid)
    spec = rs.spectrum
    if rmf is None:
        rmf, _ = region_rmf(events, rs.det_counts)
    grouping = quality = None
    if group_min:
        grouping, quality = group_min_counts(spec.counts, group_min)
    w = region_weights(regions, grid, maps, name=name)
    return _group(name, spec.module, spec.counts, spec.exposure, rmf, w, grouping=grouping, quality=quality,
                  files={"spectrum": f"{name}_sr.pha", "rmf": f"{name}_sr.rmf"})
