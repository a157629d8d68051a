"""Spectra and events of one module: photon spectra of the components, detected energies drawn
through the response, DET1 positions, and the event columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import DET1_NPIX
from ..io.ogip import fold
from ..maps.instrmap import GRADE_WEIGHTS
from ..model.background import APBGD_NORM_PER_W, FCXB_NORM_PER_PIXEL
from ..model.components import ApecShape, evaluate
from .spec import APBGD_SHAPE
from .timeline import aspect_at, det1_to_sky, sample_times, sky_to_det1


class Detector:
    """Per-module response pieces used for sampling: RMF rows, ARFs, energy grid."""

    def __init__(self, rmf):
        self.rmf = rmf
        self.matrix = rmf.matrix64  # float64 CSR, cached on the Response
        self.rowsum = np.asarray(self.matrix.sum(axis=1)).ravel()
        self._cum = np.cumsum(self.matrix.data)  # cumulative sums over 7 M elements
        self.chan_offset = int(getattr(rmf, "first_channel", 0) or 0)

    def expected_rate(self, photon_flux, arf=None):
        """Detected counts/s per energy bin (photons × ARF × detection probability)."""
        rate = photon_flux * (1.0 if arf is None else arf)
        return rate * self.rowsum

    def channel_counts(self, photon_flux, arf=None):
        """Expected counts/s per channel (the folded model)."""
        return fold(self.rmf, photon_flux, arf)

    def sample_channels(self, bins, rng):
        """A PI channel for each photon in energy bin ``bins`` (rows sampled by their CDF)."""
        indptr = self.matrix.indptr
        lo = np.where(indptr[bins] > 0, self._cum[np.maximum(indptr[bins] - 1, 0)], 0.0)
        hi = self._cum[indptr[bins + 1] - 1]
        target = lo + rng.uniform(0.0, 1.0, bins.size) * (hi - lo)
        k = np.searchsorted(self._cum, target, side="right")
        k = np.minimum(np.maximum(k, indptr[bins]), indptr[bins + 1] - 1)
        return self.matrix.indices[k] + self.chan_offset


def _draw_bins(rate_per_bin, exposure, rng):
    """Poisson number of detected photons and their energy bins."""
    total = float(rate_per_bin.sum()) * exposure
    n = rng.poisson(total)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    p = rate_per_bin / rate_per_bin.sum()
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.uniform(0.0, 1.0, n), side="right").astype(np.int64)


def component_photon_spectra(cal, module, norms):
    """Photon spectra of the four background components per spatial unit.

    Returns
    -------
    dict
        name -> (photon flux per energy bin, arf or None). The flux is per unit aperture
        weight (``apbgd``), per active DET1 pixel (``fcxb``), or, for ``intbgd`` and ``intn``,
        an array (4, n_e) per detector DET0..3 holding a whole detector's flux for Ā pixels.
    """
    edges = np.concatenate([cal.rmf.energ_lo, cal.rmf.energ_hi[-1:]])
    f = norms[module]
    out = {}
    cut = evaluate("cutoffpl", edges, (*APBGD_SHAPE, 1.0))
    out["apbgd"] = (cut * APBGD_NORM_PER_W * f["ap_factor"], cal.be_arf)
    out["fcxb"] = (cut * FCXB_NORM_PER_PIXEL * f["fcxb_factor"], cal.fcxb_arf)
    lines = cal.ratios["models"][1]["components"]
    intbgd = np.zeros((4, edges.size - 1))
    apec = ApecShape(lines["apec"][module]["kt"], lines["apec"][module]["abundanc"],
                     lines["apec"][module]["redshift"], route="standin")
    for name, comp in lines.items():
        p = comp[module]
        if name == "apec":
            shape = apec.unit_shape(edges)
        else:
            shape = evaluate("lorentz", edges, (p["linee"], p["width"], 1.0))
        intbgd += np.outer(np.asarray(p["ifactors"]) * np.asarray(f["intbgd_factor"]), shape)
    out["intbgd"] = (intbgd, None)
    bkn = cal.ratios["models"][3]["components"]["bknpower"][module]
    shape = evaluate("bknpower", edges, (bkn["phoindx1"], bkn["breake"], bkn["phoindx2"], 1.0))
    out["intn"] = (np.outer(25.0 * np.asarray(bkn["ifactors"]) * np.asarray(f["intn_factor"]), shape), None)
    return out


# ---------------------------------------------------------------------------------------------
# Events of one module
# ---------------------------------------------------------------------------------------------


@dataclass
class ModuleEvents:
    columns: dict
    component: np.ndarray  # index into COMPONENT_NAMES per event (for tests/diagnostics)
    lost: dict


COMPONENT_NAMES = ("apbgd", "intbgd", "fcxb", "intn", "point", "cluster")


def _pixels_from_weights(weights, n, rng):
    """``n`` DET1 pixel indices (flat) drawn ∝ ``weights`` (360×360)."""
    flat = weights.ravel()
    cdf = np.cumsum(flat)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.uniform(0.0, 1.0, n), side="right")


def internal_area(detnum):
    """Ā: mean number of active DET1 pixels per detector (the internal background's area unit)."""
    counts = [np.count_nonzero(np.asarray(detnum) == n) for n in range(4)]
    return float(np.mean([c for c in counts if c > 0])) if any(counts) else 1.0


def module_detectors(cal):
    """Sampling pieces of the module RMF and of the identity response intn goes through (§2.9)."""
    return Detector(cal.rmf), Detector(cal.diag_rmf)


def simulate_module_events(spec, module, cal, track, gti, rng, sources=(), *, detectors=None, spectra=None):
    """Generate the events of one module (columns in pipeline units, not yet written).

    ``detectors`` (from :func:`module_detectors`) and ``spectra`` (from
    :func:`component_photon_spectra`) may be passed when already computed for this module.
    """
    det, diag = detectors if detectors is not None else module_detectors(cal)
    if spectra is None:
        spectra = component_photon_spectra(cal, module, spec.norms)
    detnum, pixmap = cal.detnum, cal.pixmap
    active = detnum >= 0
    abar = internal_area(detnum)

    parts = []  # (flat DET1 pixel, PI channels, component index) for DET1-born events

    def add_det1(comp, flux, arf, weights, response=det):
        bins = _draw_bins(response.expected_rate(flux, arf) * weights.sum(), spec.exposure, rng)
        if bins.size:
            parts.append((_pixels_from_weights(weights, bins.size, rng), response.sample_channels(bins, rng), comp))

    ap_weights = np.where(active, cal.aperture_det1, 0.0)
    add_det1(0, spectra["apbgd"][0], spectra["apbgd"][1], ap_weights)
    add_det1(2, spectra["fcxb"][0], spectra["fcxb"][1], active.astype(float))
    for n in range(4):
        mask = (detnum == n).astype(float) / abar
        add_det1(1, spectra["intbgd"][0][n], None, mask)
        add_det1(3, spectra["intn"][0][n], None, mask, response=diag)

    pix = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, int)
    bins = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, int)
    comp = np.concatenate([np.full(p[0].size, p[2]) for p in parts]) if parts else np.zeros(0, int)
    v, u = np.divmod(pix, DET1_NPIX)
    times = sample_times(gti, pix.size, rng)
    ax, ay = aspect_at(track, times)
    # Sub-pixel position inside the DET1 pixel, so the sky image has no aliasing pattern.
    uu = u + rng.uniform(-0.5, 0.5, u.size)
    vv = v + rng.uniform(-0.5, 0.5, v.size)
    sx, sy = det1_to_sky(uu, vv, ax, ay, spec.pa)

    # Sources: sky positions -> DET1 at the event's time; off-detector events are lost.
    src = [(sx, sy, u, v, bins, comp, times)]
    lost = {}
    for k, source in enumerate(sources):
        flux = source["photon_flux"]
        b = _draw_bins(det.expected_rate(flux, cal.fcxb_arf), spec.exposure, rng)
        x, y = source["sample"](b.size, rng)
        t = sample_times(gti, b.size, rng)
        axs, ays = aspect_at(track, t)
        du, dv = sky_to_det1(x, y, axs, ays, spec.pa)
        iu, iv = np.rint(du).astype(int), np.rint(dv).astype(int)
        ok = (iu >= 0) & (iu < DET1_NPIX) & (iv >= 0) & (iv < DET1_NPIX)
        ok[ok] = active[iv[ok], iu[ok]]
        lost[source["name"]] = int(np.count_nonzero(~ok))
        src.append((x[ok], y[ok], iu[ok], iv[ok], det.sample_channels(b[ok], rng), np.full(np.count_nonzero(ok), COMPONENT_NAMES.index(
            source["name"])), t[ok]))
    sx = np.concatenate([s[0] for s in src])
    sy = np.concatenate([s[1] for s in src])
    u = np.concatenate([s[2] for s in src]).astype(int)
    v = np.concatenate([s[3] for s in src]).astype(int)
    bins = np.concatenate([s[4] for s in src]).astype(np.int64)
    comp = np.concatenate([s[5] for s in src])
    times = np.concatenate([s[6] for s in src])

    # Sky pixels (1-based integers as in the pipeline); events off the 1000x1000 frame are dropped.
    X = np.rint(sx).astype(int) + 1
    Y = np.rint(sy).astype(int) + 1
    on_sky = (X >= 1) & (X <= 1000) & (Y >= 1) & (Y <= 1000)
    lost["off_sky"] = int(np.count_nonzero(~on_sky))
    keep = on_sky
    order = np.argsort(times[keep], kind="stable")

    def sel(a):
        return a[keep][order]

    u, v, bins, comp = sel(u), sel(v), sel(bins), sel(comp)
    raw = pixmap[v, u].astype(int)
    columns = {
        "TIME": sel(times),
        "DET_ID": detnum[v, u].astype(np.uint8),
        "RAWX": (raw % 32).astype(np.uint8),
        "RAWY": (raw // 32).astype(np.uint8),
        "GRADE": rng.choice(GRADE_WEIGHTS.size, size=u.size, p=GRADE_WEIGHTS / GRADE_WEIGHTS.sum()).astype(np.int16),
        "PI": bins.astype(np.int32),
        "DET1X": (u + 1).astype(np.int16),
        "DET1Y": (v + 1).astype(np.int16),
        "X": sel(X).astype(np.int16),
        "Y": sel(Y).astype(np.int16),
    }
    return ModuleEvents(columns, comp, lost)
