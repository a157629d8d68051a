"""Background spectrum of a source region as an OGIP PHA file (for XSPEC, Sherpa, jaxspec).

Instead of the nuskybgd route (the background *model* loaded into XSPEC next to the source,
with every parameter linked), the fitted background is written as an ordinary background
spectrum that any fitting package reads through the source spectrum's ``BACKFILE``:

* ``COUNTS``: noise-free model counts per channel of the four components in the source region,
  folded through the **source spectrum's** responses (its RESPFILE, else the nominal RMF; the
  aperture ARF built from the source region's detector fractions) for the source's EXPOSURE.
  Counts are real numbers (a model, not a measurement).
* ``BACKSCAL`` and ``AREASCAL`` equal the source spectrum's, and ``EXPOSURE`` too: the counts are
  already those expected *in the source region*, so the scaling factor XSPEC/Sherpa apply,
  ``(BACKSCAL_src/BACKSCAL_bkg)(AREASCAL_src/AREASCAL_bkg)(EXPOSURE_src/EXPOSURE_bkg)``, is exactly 1.
  (Where the source spectrum has a BACKSCAL column, the column is copied.)
* ``STAT_ERR`` (counts): 1σ error per channel from the fit covariance. The counts are linear in
  the free norms, ``C = J θ`` with ``J`` the folded templates times the link factors, so
  ``STAT_ERR_c = √(J C_θ Jᵀ)_cc`` — the same propagation as
  :meth:`~nuskybgd_engine.analysis.BackgroundAnalysis.predict` (which uses the band sum of ``J``).
  Channels are correlated (the same few norms): the error of a band is :meth:`BackgroundSpectrum.band`,
  not the quadrature sum of STAT_ERR.
* ``SYS_ERR``: the systematic floor as an OGIP fractional error per channel
  (default :data:`~nuskybgd_engine.uncertainty.SYSTEMATIC_FRACTION` = 4 %/1.645, Wik et al. 2014;
  settable); XSPEC adds it in quadrature.
* ``POISSERR = F``: the errors are Gaussian. In XSPEC use ``statistic pgstat`` (Poisson data,
  Gaussian background) or ``chi``; W-stat (cstat with a background) assumes a Poisson background.

Optional Poisson realisations (``draws``) are written as separate type-I files
``<stem>_draw<k>.pha`` (k = 1..N, integer COUNTS, POISSERR = T, no STAT_ERR), not one type-II file:
every package (and this engine's :func:`~nuskybgd_engine.io.ogip.read_pha`) reads type I, and a
loop over files is how such draws are used (refit the source once per draw).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .constants import band_to_channels
from .errors import BadConfigError, BadFileError, BadRegionError, FitError
from .groups import group_from_spectrum_file
from .io.fitsutil import check_writable, find_hdu, read_fits, write_fits
from .io.ogip import Spectrum, build_spectrum_hdu, read_pha, write_pha
from .model.background import add_linked_groups, region_weights
from .model.folding import FoldedModel
from .uncertainty import SYSTEMATIC_FRACTION, check_systematic

__all__ = [
    "BackgroundSpectrum",
    "background_spectrum",
    "write_background_spectrum",
    "poisson_draws",
    "write_draws",
    "set_backfile",
    "default_output",
]


@dataclass(repr=False)
class BackgroundSpectrum:
    """Model background counts per channel of a source region, with their covariance."""

    module: str
    channel: np.ndarray
    counts: np.ndarray
    components: dict
    jacobian: np.ndarray  # (n_channels, n_free): d counts / d free norm
    covariance: np.ndarray  # of the free norms
    free: list
    exposure: float
    backscal: object
    areascal: object
    systematic: float
    e_lo: np.ndarray
    e_hi: np.ndarray
    header: dict = field(default_factory=dict)
    source_path: str | None = None

    @property
    def stat_err(self):
        """1σ statistical error per channel (counts)."""
        v = np.einsum("ij,jk,ik->i", self.jacobian, self.covariance, self.jacobian)
        return np.sqrt(np.maximum(v, 0.0))

    def band(self, band):
        """(total counts, statistical 1σ, systematic 1σ) in ``band`` (keV), correlations included."""
        lo, hi = band_to_channels(*band)
        sel = (self.channel >= lo) & (self.channel <= hi)
        g = self.jacobian[sel].sum(axis=0)
        total = float(self.counts[sel].sum())
        return total, float(math.sqrt(max(g @ self.covariance @ g, 0.0))), self.systematic * total

    def __repr__(self):
        total, stat, sys = self.band((3.0, 20.0))
        return (f"BackgroundSpectrum(FPM{self.module}, {self.exposure:.0f} s: 3-20 keV {total:.1f} ± {stat:.1f} "
                f"(stat) ± {sys:.1f} (sys) counts)")


def _check_covariance(result):
    if result is None:
        raise FitError("fit the background first: no fit result (and so no covariance)", field="fit")
    cov = np.asarray(result.covariance, dtype=float)
    n = len(result.free)
    if n == 0 or cov.shape != (n, n):
        raise FitError("the fit has no covariance of its free parameters (refit with `nuskybgd fit --run`)",
                       field="covariance")
    return cov


def background_spectrum(analysis, regions, source, *, grid=None, maps=None, systematic=None):
    """Background counts per channel of the source spectrum ``source`` in region ``regions``.

    Parameters
    ----------
    analysis : BackgroundAnalysis
        Fitted (``analysis.result`` holds the covariance), e.g. from
        :func:`~nuskybgd_engine.workflow.load_fit_json`.
    regions : RegionSet
        The source region (``regions.source`` names its file in errors).
    source : path-like
        The source spectrum (PHA); its RESPFILE (next to it) gives the channel grid.
    grid, maps : SkyGrid, ProjectedMaps or dict module -> ProjectedMaps, optional
        Default: ``analysis.grid`` and ``analysis.maps`` (set by ``from_bgdinfo``).
    systematic : float, optional
        Fractional systematic error (default :data:`~nuskybgd_engine.uncertainty.SYSTEMATIC_FRACTION`).

    Returns
    -------
    BackgroundSpectrum
    """
    cov = _check_covariance(analysis.result)
    systematic = check_systematic(systematic)
    source = Path(source)
    spec = read_pha(source)
    m = spec.module
    if m not in ("A", "B"):
        raise BadFileError("INSTRUME must be FPMA or FPMB", path=source, field="INSTRUME")
    if m not in analysis.state.modules:
        have = "".join(sorted(set(analysis.state.modules)))
        raise BadFileError(f"source spectrum is FPM{m} but the fit has only FPM{have} background spectra",
                           path=source, field="INSTRUME")
    grid = grid if grid is not None else getattr(analysis, "grid", None)
    maps = maps if maps is not None else getattr(analysis, "maps", None)
    if isinstance(maps, Mapping):  # {module: maps} (a reopened fit reads them when first used)
        if m not in maps:
            raise BadConfigError(f"no FPM{m} projected maps", field="maps")
        maps = maps[m]
    if grid is None or maps is None:
        raise BadConfigError("the sky grid and projected maps are needed (give grid= and maps=)", field="maps")
    if maps.module and maps.module != m:
        raise BadFileError(f"source spectrum is FPM{m} but the maps are FPM{maps.module}", path=source,
                           field="INSTRUME")
    w = region_weights(regions, grid, maps, name=source.name)
    where = getattr(regions, "source", None)
    if not w.total_area > 0:
        raise BadRegionError(f"source region covers no active detector area of FPM{m} (off the detectors?)",
                             path=where, field="region")
    if not w.W > 0:
        raise BadRegionError(f"source region has no aperture weight on FPM{m} (off the field?)", path=where,
                             field="region")
    group = group_from_spectrum_file(source, regions, grid, maps, name=source.name, weights=w)
    state = analysis.state.copy()
    (g_new,) = add_linked_groups(state, [m], [group.weights], analysis.presets, fcxb="linked",
                                 refs={m: analysis.reference_group(m)})
    model = FoldedModel(state, list(analysis.groups) + [group], apec=analysis.apec, ignore=analysis.model.ignore)
    free = list(analysis.result.free)
    column = {key: j for j, key in enumerate(free)}
    n_chan = group.counts.size
    jac = np.zeros((n_chan, len(free)))
    comps = {}
    for src, _c, tpl, inorm in model.components(g_new):
        factor, rs, ri = state.root(src, inorm)
        comps[src] = comps.get(src, 0.0) + state.value(src, inorm) * tpl
        if (rs, ri) in column:
            jac[:, column[(rs, ri)]] += factor * tpl
    used = np.flatnonzero(np.any(jac != 0, axis=0))
    sub = cov[np.ix_(used, used)]
    if not np.all(np.isfinite(sub)):
        bad = [f"{free[j][0]}:p{free[j][1]}" for j in used if not np.all(np.isfinite(cov[j, used]))]
        raise FitError(f"covariance of {', '.join(bad[:3])} is not finite (singular fit): freeze or link them "
                       "and refit", field="covariance")
    counts = sum(comps.values())
    keep = {k: v for k, v in spec.header.items() if k in (
        "TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "RA_OBJ", "DEC_OBJ", "RA_NOM", "DEC_NOM", "DATE-OBS",
        "DATE-END", "TSTART", "TSTOP", "MJDREFI", "MJDREFF", "TIMESYS", "LIVETIME", "FILTER", "CHANTYPE")}
    rmf = group.rmf
    return BackgroundSpectrum(module=m, channel=np.asarray(spec.channel), counts=np.asarray(counts, float),
                              components={k: np.asarray(v, float) for k, v in comps.items()}, jacobian=jac,
                              covariance=np.where(np.isfinite(cov), cov, 0.0), free=free, exposure=float(spec.exposure),
                              backscal=spec.backscal, areascal=spec.areascal, systematic=systematic,
                              e_lo=np.asarray(rmf.e_min, float), e_hi=np.asarray(rmf.e_max, float), header=keep,
                              source_path=str(source))


def default_output(source_path):
    """``<dir>/<stem>_bgd.pha`` for source spectrum ``<dir>/<stem>.pha`` (``.gz``/``.pi`` too)."""
    p = Path(source_path)
    name = p.name
    for suffix in (".gz", ".pha", ".pi", ".fits", ".fit"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return p.with_name(f"{name}_bgd.pha")


def _primary(spec_hdu):
    primary = fits.PrimaryHDU()
    for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "DATE-OBS", "DATE-END", "TSTART", "TSTOP"):
        if k in spec_hdu.header:
            primary.header[k] = spec_hdu.header[k]
    return primary


def _base_spectrum(bspec, counts, *, poisson):
    header = dict(bspec.header)
    header.update({"HDUCLAS2": "BKG", "POISSERR": bool(poisson), "RESPFILE": "none", "ANCRFILE": "none",
                   "BACKFILE": "none", "CORRFILE": "none"})
    return Spectrum(channel=bspec.channel, counts=counts, exposure=bspec.exposure, backscal=bspec.backscal,
                    areascal=bspec.areascal, module=bspec.module, header=header)


def _provenance(header, bspec, fit_path):
    header["NSBSYS"] = (float(bspec.systematic), "systematic fraction (1 sigma) in SYS_ERR")
    if fit_path is not None:
        header["NSBFIT"] = (os.path.basename(str(fit_path))[:68], "nuskybgd fit the background comes from")
    if bspec.source_path:
        header["NSBSRC"] = (os.path.basename(bspec.source_path)[:68], "source spectrum (grid, exposure, BACKSCAL)")
    header["HISTORY"] = "nuskybgd bgdspec: model background counts in the source region, folded through the"
    header["HISTORY"] = "source's responses for its EXPOSURE; BACKSCAL/AREASCAL copied from the source so the"
    header["HISTORY"] = "background scaling is 1. STAT_ERR from the fit covariance; SYS_ERR fractional"
    header["HISTORY"] = f"(default {SYSTEMATIC_FRACTION:.4f} = 4%/1.645, Wik et al.). Use pgstat or chi."


def write_background_spectrum(bspec, path, *, fit_path=None, overwrite=False):
    """Write the model background (COUNTS real, STAT_ERR, SYS_ERR, POISSERR = F) as a type-I PHA file."""
    base = build_spectrum_hdu(_base_spectrum(bspec, np.asarray(bspec.counts, float), poisson=False))
    cols = list(base.columns)
    # Model counts are real numbers: force a float column even when they happen to be integral.
    cols = [fits.Column(name="COUNTS", format="D", unit="count", array=np.asarray(bspec.counts, float))
            if c.name == "COUNTS" else c for c in cols]
    cols.append(fits.Column(name="STAT_ERR", format="D", unit="count", array=bspec.stat_err))
    cols.append(fits.Column(name="SYS_ERR", format="E", array=np.full(bspec.counts.size, bspec.systematic,
                                                                      dtype=np.float32)))
    header = base.header.copy()
    for key in ("STAT_ERR", "SYS_ERR"):  # OGIP: a keyword only when there is no column
        if key in header:
            del header[key]
    hdu = fits.BinTableHDU.from_columns(cols, header=header, name="SPECTRUM")
    _provenance(hdu.header, bspec, fit_path)
    return write_fits(fits.HDUList([_primary(hdu), hdu]), path, overwrite=overwrite)


def poisson_draws(bspec, n, *, seed=None):
    """``n`` Poisson realisations of the model counts (int64 arrays, one per draw)."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise BadConfigError(f"number of draws must be an integer, got {n!r}", field="draws") from None
    if not 0 <= n <= 10000:
        raise BadConfigError(f"number of draws must be 0..10000, got {n}", field="draws")
    rng = np.random.default_rng(seed)
    lam = np.maximum(np.asarray(bspec.counts, float), 0.0)
    return [rng.poisson(lam).astype(np.int64) for _ in range(n)]


def write_draws(bspec, path, n, *, seed=None, fit_path=None, overwrite=False):
    """Write ``n`` Poisson realisations as ``<stem of path>_draw<k>.pha`` (POISSERR = T); returns the paths."""
    path = Path(path)
    stem = path.name[:-4] if path.name.lower().endswith(".pha") else path.stem
    targets = [path.with_name(f"{stem}_draw{k}.pha") for k in range(1, int(n) + 1)]
    for t in targets:  # fail before writing any
        check_writable(t, overwrite=overwrite)
    out = []
    for t, counts in zip(targets, poisson_draws(bspec, n, seed=seed)):
        spec = _base_spectrum(bspec, counts, poisson=True)
        spec.header["NSBDRAW"] = t.name[:68]
        out.append(write_pha(spec, t, overwrite=overwrite))
    return out


def set_backfile(source_path, backfile):
    """Set BACKFILE of the source spectrum's SPECTRUM extension, rewriting the file atomically.

    ``backfile`` is written relative to the source's directory when it lies there (or below),
    else as an absolute path. Every other byte of content (columns, keywords, extensions) is kept.
    """
    source_path = Path(source_path)
    hdul = read_fits(source_path, what="PHA spectrum")
    hdu = find_hdu(hdul, source_path, extnames=("SPECTRUM",), hduclas1="SPECTRUM", what="SPECTRUM extension",
                   table=True)
    back = Path(backfile)
    try:
        value = str(back.resolve().relative_to(source_path.resolve().parent))
    except ValueError:
        value = str(back.resolve())
    if len(value) > 68:
        raise BadConfigError(f"BACKFILE path longer than 68 characters ({value}); put the background next to the "
                             "source spectrum", path=source_path, field="BACKFILE")
    hdu.header["BACKFILE"] = (value, "associated background filename")
    write_fits(hdul, source_path, overwrite=True)
    return value
