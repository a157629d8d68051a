"""Synthetic NuSTAR observations with known truth.

The simulator writes complete observations in the formats of the NuSTAR pipeline (cleaned event
files, ``*_det1.fits`` aspect files, GTI files) from the same model and geometry the engine fits:

* the background is generated **in DET1**, where its components live: the aperture component
  (``apbgd``) with the DET1 aperture map as its spatial template, the focused CXB (``fcxb``)
  flat over active pixels, the internal lines + soft component (``intbgd``) and continuum
  (``intn``) flat within each detector with the ``ratios.json`` per-detector strengths;
* every event gets a time uniformly inside the GTIs, and its DET1 position goes to the sky
  through the aspect track with the engine's own geometry
  (:func:`nuskybgd_engine.maps.projection.roll_angle`, ``nudge``: PA + 1°, mirror flip, nudge),
  so the expected sky distribution is the aspect-projected map the fit uses;
* sources (a point source with a NuSTAR-like PSF, a β-model cluster) are generated on the sky
  and go the other way, to DET1, losing the events that land off the active area;
* photon energies become PI channels by sampling the response matrix row of each photon's
  energy bin, DET1 positions become DET_ID/RAWX/RAWY through the detector and pixel maps.

Normalisation conventions of the truth (all per module ``m``, detector ``n``):

``apbgd``
    cutoffpl(1.29, 41.13) norm per DET1 pixel = ``ap_factor · 0.002353/32 · ap(u, v)`` with
    ``ap`` the DET1 aperture map; a region's norm is ``ap_factor · 7.353125e-5 · W`` (§3.2).
``fcxb``
    cutoffpl(1.29, 41.13) norm per active DET1 pixel = ``fcxb_factor · 1.6455454e-9``.
``intbgd``
    per active DET1 pixel of detector n: ``intbgd_factor[n] · I^k_{m,n} / Ā`` (ratios.json
    ifactors; ``Ā`` = mean number of active DET1 pixels per detector), so a detector's surface
    brightness is proportional to its ifactor — what the model's link factors
    ``Σ_n A_n I_n / Σ_n A_rn I_n`` assume (§3.2). A whole detector holds ≈ ``I^k_{m,n}``
    (the IDL parameter-file convention §3.5, which divides by each detector's own area instead:
    a ≈1 % difference the fitted model could not represent).
``intn``
    the same with ``intn_factor[n] · 25 · J_{m,n}`` (= ratios*.dat values) as the bknpower norm.

Vignetting of the focused components and the PSF's energy dependence are not modelled.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from regions import CirclePixelRegion, PixCoord

from .constants import DET1_NPIX, DET1_REFPIX, PIXEL_ARCSEC, band_to_channels
from .errors import BadConfigError, BadFileError, OutputExistsError
from .io.aspect import AspectTrack, write_aspect
from .io.events import write_events
from .io.files import write_json
from .io.gti import Gti, write_gti
from .io.ogip import fold
from .io.regions import RegionSet, SkyGrid, region_cutout
from .maps.aspecthist import aspect_histogram
from .maps.instrmap import GRADE_WEIGHTS
from .maps.module_calibration import module_calibration
from .maps.projection import nudge, project_maps, roll_angle
from .model.background import APBGD_NORM_PER_W, FCXB_NORM_PER_PIXEL
from .model.components import ApecShape, evaluate

__all__ = [
    "SimulationSpec",
    "default_norms",
    "simulate_observation",
    "SOURCE_KINDS",
    "SimulatedObservation",
    "internal_area",
    "true_norms",
]

SOURCE_KINDS = ("none", "point", "cluster", "both")

#: NuSTAR orbit (s) and the fraction of it that is good time (Earth occultation, SAA).
ORBIT_S = 5800.0
GOOD_FRACTION = 0.62
#: Live-time fraction: EXPOSURE = LIVETIME = ontime × this.
LIVE_FRACTION = 0.95
#: Aspect sampling interval (s); the pipeline's is ≈ 0.23 s.
ASPECT_DT = 0.5
#: Mission time of the simulated observations' start (2020-01-01T00:00:00 TT ≈ 315 532 800 s).
T0 = 315532869.184
#: NuSTAR PSF as a King profile (1 + (r/rc)²)^-1.5 with HPD 58″: rc = 58/(2√3).
PSF_RC_ARCSEC = 58.0 / (2.0 * math.sqrt(3.0))
PSF_RMAX_ARCSEC = 300.0
#: Components' fixed shapes (ratios.json / §2.9).
APBGD_SHAPE = (1.29, 41.13)
BANDS = {"3-20": (3.0, 20.0), "20-50": (20.0, 50.0)}
#: Slices of a per-channel vector (column j = PI channel j) holding each band's channels.
_BAND_SLICES = {band: slice(lo, hi + 1) for band, (lo, hi) in
                ((band, band_to_channels(*e)) for band, e in BANDS.items())}


def default_norms():
    """Truth normalisation factors (1 = the nominal background of the presets).

    Returns
    -------
    dict
        ``{'A': {...}, 'B': {...}}`` with keys ``ap_factor``, ``fcxb_factor``,
        ``intbgd_factor`` (4 values, DET0..3), ``intn_factor`` (4 values).
    """
    return {
        "A": {"ap_factor": 1.0, "fcxb_factor": 1.0, "intbgd_factor": [1.0, 1.0, 1.0, 1.0],
              "intn_factor": [1.0, 1.0, 1.0, 1.0]},
        "B": {"ap_factor": 1.0, "fcxb_factor": 1.0, "intbgd_factor": [1.0, 1.0, 1.0, 1.0],
              "intn_factor": [1.0, 1.0, 1.0, 1.0]},
    }


def _check_norms(norms, source="--norms"):
    out = default_norms()
    if norms is None:
        return out
    if not isinstance(norms, dict):
        raise BadConfigError("must be a JSON object {'A': {...}, 'B': {...}}", path=source)
    for mod, values in norms.items():
        if mod not in out:
            raise BadConfigError(f"unknown module {mod!r} (expected A or B)", path=source, field=mod)
        if not isinstance(values, dict):
            raise BadConfigError("must be an object", path=source, field=mod)
        for key, value in values.items():
            if key not in out[mod]:
                raise BadConfigError(f"unknown key (expected one of {sorted(out[mod])})", path=source,
                                     field=f"{mod}.{key}")
            want_list = isinstance(out[mod][key], list)
            vals = value if want_list else [value]
            if want_list and (not isinstance(value, list) or len(value) != 4):
                raise BadConfigError("must be a list of 4 numbers (DET0..DET3)", path=source, field=f"{mod}.{key}")
            try:
                vals = [float(v) for v in vals]
            except (TypeError, ValueError):
                raise BadConfigError("must be numbers", path=source, field=f"{mod}.{key}") from None
            if any(not math.isfinite(v) or v < 0 for v in vals):
                raise BadConfigError("must be finite and >= 0", path=source, field=f"{mod}.{key}")
            out[mod][key] = vals if want_list else vals[0]
    return out


@dataclass
class SimulationSpec:
    """What to simulate (validated on construction).

    Parameters
    ----------
    obsid : str
        11-digit observation ID.
    seed : int
    exposure : float
        EXPOSURE (= LIVETIME) in s.
    pa : float
        PA_PNT in degrees.
    ra, dec : float
        Nominal pointing (deg); the sky frame's reference value.
    source : {'none', 'point', 'cluster', 'both'}
    norms : dict, optional
        Truth factors (see :func:`default_norms`).
    modules : tuple of str
    """

    obsid: str = "90000000002"
    seed: int = 1
    exposure: float = 50000.0
    pa: float = 30.0
    ra: float = 150.0
    dec: float = 2.2
    source: str = "point"
    norms: dict = field(default_factory=default_norms)
    modules: tuple = ("A", "B")

    def __post_init__(self):
        obsid = str(self.obsid).strip()
        if not obsid.isdigit() or not 1 <= len(obsid) <= 11:
            raise BadConfigError(f"obsid must be up to 11 digits, got {self.obsid!r}", field="obsid")
        self.obsid = obsid.zfill(11)
        try:
            self.seed = int(self.seed)
            self.exposure = float(self.exposure)
            self.pa = float(self.pa)
            self.ra = float(self.ra)
            self.dec = float(self.dec)
        except (TypeError, ValueError) as exc:
            raise BadConfigError(f"invalid number ({exc})", field="simulate") from None
        if self.seed < 0:
            raise BadConfigError(f"must be >= 0, got {self.seed}", field="seed")
        if not (math.isfinite(self.exposure) and 0 < self.exposure <= 5e6):
            raise BadConfigError(f"must be > 0 s (and at most 5 Ms), got {self.exposure:g}", field="exposure")
        if not math.isfinite(self.pa):
            raise BadConfigError("must be finite", field="pa")
        self.pa = self.pa % 360.0
        if not (0.0 <= self.ra < 360.0):
            raise BadConfigError(f"must be in [0, 360), got {self.ra}", field="ra")
        if not (-90.0 < self.dec < 90.0):
            raise BadConfigError(f"must be in (-90, 90), got {self.dec}", field="dec")
        if self.source not in SOURCE_KINDS:
            raise BadConfigError(f"unknown source kind {self.source!r} (expected one of "
                                 f"{', '.join(SOURCE_KINDS)})", field="source")
        self.norms = _check_norms(self.norms)
        mods = tuple(str(m).upper() for m in self.modules)
        if not mods or any(m not in ("A", "B") for m in mods):
            raise BadConfigError(f"modules must be A and/or B, got {self.modules!r}", field="modules")
        self.modules = mods


# ---------------------------------------------------------------------------------------------
# Time line: orbital GTIs and the mast wobble
# ---------------------------------------------------------------------------------------------


def make_gti(exposure, rng, *, t0=T0):
    """Orbital GTIs whose total good time is ``exposure / LIVE_FRACTION`` (the on-time)."""
    ontime = exposure / LIVE_FRACTION
    good = ORBIT_S * GOOD_FRACTION
    n_full = int(ontime // good)
    rest = ontime - n_full * good
    phase = rng.uniform(0.0, ORBIT_S - good)
    starts = t0 + phase + ORBIT_S * np.arange(n_full + (1 if rest > 1e-6 else 0))
    lengths = np.full(len(starts), good)
    if rest > 1e-6:
        lengths[-1] = rest
    return Gti(starts, starts + lengths)


def make_aspect_track(module, gti, centre, rng, *, dt=ASPECT_DT, header=None):
    """Sky position of DET1 (350, 350) vs time: a thermal mast wobble of ~tens of pixels + jitter.

    The track spans TSTART..TSTOP (slightly beyond the GTIs), sampled every ``dt`` seconds.
    """
    tstart, tstop = gti.start[0] - 60.0, gti.stop[-1] + 60.0
    t = np.arange(tstart, tstop, dt)
    # Thermal flexing follows the orbit (day/night), with a slower drift and small jitter.
    phase = rng.uniform(0, 2 * np.pi, 3)
    amp = rng.uniform(8.0, 14.0, 2)
    x = (centre[0] + amp[0] * np.sin(2 * np.pi * t / ORBIT_S + phase[0])
         + 3.0 * np.sin(2 * np.pi * t / 20000.0 + phase[2]) + rng.normal(0, 0.4, t.size))
    y = (centre[1] + amp[1] * np.cos(2 * np.pi * t / ORBIT_S + phase[1])
         + 2.0 * np.cos(2 * np.pi * t / 20000.0 + phase[2]) + rng.normal(0, 0.4, t.size))
    return AspectTrack(t, x, y, module, dict(header or {}))


def _sample_times(gti, n, rng):
    """``n`` times uniform over the good time."""
    lengths = gti.stop - gti.start
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    u = rng.uniform(0.0, cum[-1], n)
    k = np.searchsorted(cum, u, side="right") - 1
    return gti.start[k] + (u - cum[k])


def _aspect_at(track, times):
    """Aspect position used by the projection at each time: the floored sample (§1.6)."""
    k = np.clip(np.searchsorted(track.time, times, side="right") - 1, 0, len(track) - 1)
    return np.floor(track.x[k]), np.floor(track.y[k])


def _roll_matrix(pa):
    a = roll_angle(pa)
    c, s = math.cos(a), math.sin(a)
    return c, s, nudge(pa)


def det1_to_sky(u, v, ax, ay, pa):
    """Continuous 0-based sky position of DET1 position (u, v) when DET1 (350, 350) is at (ax, ay)."""
    c, s, (nx, ny) = _roll_matrix(pa)
    du = np.asarray(u, float) - DET1_REFPIX[0]
    dv = np.asarray(v, float) - DET1_REFPIX[1]
    return ax + (-c * du + s * dv) - nx, ay + (s * du + c * dv) - ny


def sky_to_det1(x, y, ax, ay, pa):
    """Inverse of :func:`det1_to_sky` (the roll matrix is its own inverse)."""
    c, s, (nx, ny) = _roll_matrix(pa)
    dx = np.asarray(x, float) - ax + nx
    dy = np.asarray(y, float) - ay + ny
    return DET1_REFPIX[0] + (-c * dx + s * dy), DET1_REFPIX[1] + (s * dx + c * dy)


def aspect_centre_for(pa, target=(500.0, 500.0), det1_centre=(180.0, 180.0)):
    """Aspect position that puts the DET1 array centre on the sky ``target`` (0-based)."""
    c, s, (nx, ny) = _roll_matrix(pa)
    du = det1_centre[0] - DET1_REFPIX[0]
    dv = det1_centre[1] - DET1_REFPIX[1]
    return target[0] - (-c * du + s * dv) + nx, target[1] - (s * du + c * dv) + ny


# ---------------------------------------------------------------------------------------------
# Spectra: photon spectra -> detected energy bins -> PI channels
# ---------------------------------------------------------------------------------------------


class _Detector:
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


def true_norms(analysis, truth, regions):
    """The simulation's truth for every free norm of a background model built on its regions.

    The conventions above, written in the model's parameters (spec §3.2): for data group ``g`` of
    module ``m`` with region sums ``W`` and ``A_n`` (``truth.json``),

    * apbgd: ``ap_factor · 0.002353/32 · W``;
    * fcxb: ``fcxb_factor · 1.6455454e-9 · Σ_n A_n``;
    * intbgd component k: ``Σ_n intbgd_factor_n · I^k_{m,n} · A_n / Ā``;
    * intn: ``Σ_n intn_factor_n · 25 J_{m,n} · A_n / Ā``.

    The ifactors I and J are the analysis' presets (the simulator's, when both use the same
    ``ratios.json``, the default).

    Parameters
    ----------
    analysis : BackgroundAnalysis
    truth : dict
        The simulation's ``truth.json``.
    regions : sequence of str
        The ``truth.json`` region of each data group, in data-group order.

    Returns
    -------
    dict
        ``{(source, global index): true value}`` of the free norms.
    """
    st, presets = analysis.state, analysis.presets
    regions = list(regions)
    if len(regions) != len(analysis.groups):
        raise BadConfigError(f"{len(regions)} region names for {len(analysis.groups)} data groups", field="regions")
    intbgd = {c.name: c for c in presets.intbgd}
    out = {}
    for g, (grp, reg) in enumerate(zip(analysis.groups, regions), start=1):
        m = grp.module
        try:
            w = truth["regions"][reg]["modules"][m]["weights"]
            f = truth["norms"][m]
            atot = float(truth["modules"][m]["internal_area"])
        except (KeyError, TypeError):
            raise BadConfigError(f"truth has no FPM{m} weights, norms or internal area for region {reg!r}",
                                 field="regions") from None
        A, W = np.asarray(w["A"], dtype=float), float(w["W"])
        for src in st:
            for local in range(1, src.n_par + 1):
                index = src.index(g, local)
                p = src[index]
                if not (p.is_norm and p.free):
                    continue
                if src.name == "apbgd":
                    value = f["ap_factor"] * APBGD_NORM_PER_W * W
                elif src.name == "fcxb":
                    value = f["fcxb_factor"] * FCXB_NORM_PER_PIXEL * A.sum()
                elif src.name == "intn":
                    value = np.sum(25.0 * presets.intn_ifactors[m] * np.asarray(f["intn_factor"]) * A) / atot
                else:
                    ik = np.asarray(intbgd[p.component].ifactors[m]) * np.asarray(f["intbgd_factor"])
                    value = np.sum(ik * A) / atot
                out[(src.name, index)] = float(value)
    return out


def _module_detectors(cal):
    """Sampling pieces of the module RMF and of the identity response intn goes through (§2.9)."""
    return _Detector(cal.rmf), _Detector(cal.diag_rmf)


def simulate_module_events(spec, module, cal, track, gti, rng, sources=(), *, detectors=None, spectra=None):
    """Generate the events of one module (columns in pipeline units, not yet written).

    ``detectors`` (from :func:`_module_detectors`) and ``spectra`` (from
    :func:`component_photon_spectra`) may be passed when already computed for this module.
    """
    det, diag = detectors if detectors is not None else _module_detectors(cal)
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
    times = _sample_times(gti, pix.size, rng)
    ax, ay = _aspect_at(track, times)
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
        t = _sample_times(gti, b.size, rng)
        axs, ays = _aspect_at(track, t)
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


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def _king_radius(n, rng, rc, rmax):
    """Radii from the 2-D profile (1 + (r/rc)²)^-1.5, truncated at ``rmax`` (same units)."""
    fmax = 1.0 - 1.0 / math.sqrt(1.0 + (rmax / rc) ** 2)
    q = rng.uniform(0.0, fmax, n)
    return rc * np.sqrt((1.0 - q) ** -2 - 1.0)


def _source_definitions(spec, grid, cal):
    """The sources of ``spec.source`` with their sky positions (0-based pixels) and spectra."""
    edges = np.concatenate([cal.rmf.energ_lo, cal.rmf.energ_hi[-1:]])
    pix_arcsec = PIXEL_ARCSEC
    out = []
    kinds = {"none": (), "point": ("point",), "cluster": ("cluster",), "both": ("point", "cluster")}[spec.source]
    # The target near the aim point (the array centre), as in a real observation; with both
    # kinds the point source sits 1.2' from the cluster centre.
    places = {"point": (505.0, 496.0), "cluster": (480.0, 515.0)}
    for kind in kinds:
        x0, y0 = places[kind]
        ra, dec = grid.wcs.pixel_to_world_values(x0, y0)
        if kind == "point":
            params = {"model": "powerlaw", "PhoIndex": 1.8, "norm": 4.0e-4, "psf_hpd_arcsec": 58.0}
            flux = evaluate("powerlaw", edges, (params["PhoIndex"], params["norm"]))
            rc, rmax, core = PSF_RC_ARCSEC / pix_arcsec, PSF_RMAX_ARCSEC / pix_arcsec, 0.0
        else:
            params = {"model": "bremss", "kT": 6.0, "norm": 3.0e-3, "beta": 2.0 / 3.0, "rc_arcsec": 45.0,
                      "rmax_arcsec": 360.0}
            flux = evaluate("bremss", edges, (params["kT"], params["norm"]))
            rc, rmax, core = 45.0 / pix_arcsec, 360.0 / pix_arcsec, 1.0

        def sample(n, rng, x0=x0, y0=y0, rc=rc, rmax=rmax, core=core):
            r = _king_radius(n, rng, rc, rmax)
            phi = rng.uniform(0, 2 * np.pi, n)
            x, y = x0 + r * np.cos(phi), y0 + r * np.sin(phi)
            if core:  # the cluster is seen through the PSF too
                r2 = _king_radius(n, rng, PSF_RC_ARCSEC / pix_arcsec, PSF_RMAX_ARCSEC / pix_arcsec)
                p2 = rng.uniform(0, 2 * np.pi, n)
                x, y = x + r2 * np.cos(p2), y + r2 * np.sin(p2)
            return x, y

        params.update({"x": x0, "y": y0, "ra": float(ra), "dec": float(dec)})
        out.append({"name": kind, "photon_flux": flux, "sample": sample, "params": params,
                    "radius_pix": (90.0 if kind == "point" else 150.0) / pix_arcsec})
    return out


# ---------------------------------------------------------------------------------------------
# Regions and truth
# ---------------------------------------------------------------------------------------------


def _suggest_regions(maps_by_module, sources):
    """3–4 background circles on different detectors, away from the sources, and a source circle."""
    maps = maps_by_module[sorted(maps_by_module)[0]]
    radius = 45.0  # pixels (~1.8')
    regions = []
    # Pixels fully exposed by every module.
    exposed_all = None
    for other in maps_by_module.values():
        full = sum(other.det[k] for k in range(4)) > 0.999
        exposed_all = full if exposed_all is None else exposed_all & full
    for n in range(4):
        d = maps.det[n]
        # Candidate centres: pixels fully exposed by this detector (and by every module).
        good = (d > 0.999) & exposed_all
        ys, xs = np.nonzero(good)
        if xs.size == 0:
            continue
        cx, cy = xs.mean(), ys.mean()
        # Move from the detector centroid toward its fully exposed interior, away from sources.
        dist = np.hypot(xs - cx, ys - cy)
        ok = np.ones(xs.size, bool)
        for s in sources:
            ok &= np.hypot(xs - s["params"]["x"], ys - s["params"]["y"]) > s["radius_pix"] + radius + 10
        if not ok.any():
            continue
        # The circle must stay inside the detector's fully exposed area.
        cand = np.argsort(np.where(ok, dist, np.inf))[:400]
        chosen = None
        for k in cand:
            x0, y0 = xs[k], ys[k]
            yy, xx = np.ogrid[int(y0 - radius):int(y0 + radius) + 1, int(x0 - radius):int(x0 + radius) + 1]
            inside = (xx - x0) ** 2 + (yy - y0) ** 2 < radius ** 2
            sub = good[int(y0 - radius):int(y0 + radius) + 1, int(x0 - radius):int(x0 + radius) + 1]
            if sub.shape == inside.shape and np.all(sub[inside]):
                chosen = (float(x0), float(y0))
                break
        if chosen is not None:
            regions.append((f"bgd{len(regions) + 1}", chosen, radius))
    out = {}
    for name, (x0, y0), r in regions:
        rs = RegionSet()
        rs.add(CirclePixelRegion(PixCoord(x0, y0), r), name=name)
        out[name] = rs
    for s in sources:
        p = s["params"]
        rs = RegionSet()
        rs.add(CirclePixelRegion(PixCoord(p["x"], p["y"]), (60.0 if s["name"] == "point" else 120.0) / PIXEL_ARCSEC),
               name=f"src_{s['name']}")
        out[f"src_{s['name']}"] = rs
    return out


def _source_landing(source, track, gti, cal, pa, *, n=400_000, seed=12345):
    """Sky pixels (0-based integers) where a Monte Carlo sample of ``n`` detected photons of a
    source lands on active DET1 pixels: ``(X, Y, n)``, independent of any region."""
    rng = np.random.default_rng(seed)
    x, y = source["sample"](n, rng)
    t = _sample_times(gti, n, rng)
    ax, ay = _aspect_at(track, t)
    du, dv = sky_to_det1(x, y, ax, ay, pa)
    iu, iv = np.rint(du).astype(int), np.rint(dv).astype(int)
    ok = (iu >= 0) & (iu < DET1_NPIX) & (iv >= 0) & (iv < DET1_NPIX)
    ok[ok] = cal.detnum[iv[ok], iu[ok]] >= 0
    X, Y = np.rint(x[ok]).astype(int), np.rint(y[ok]).astype(int)
    return X, Y, n


def _fraction_in_cutout(landing, cut):
    """Fraction of the :func:`_source_landing` sample inside the region cutout ``cut``."""
    X, Y, n = landing
    (sy, sx), mask = cut.slices, cut.mask
    inx = (X >= sx.start) & (X < sx.stop) & (Y >= sy.start) & (Y < sy.stop)
    hit = np.zeros(X.size, bool)
    hit[inx] = mask[Y[inx] - sy.start, X[inx] - sx.start]
    return hit.sum() / n


def source_fractions(source, cut, track, gti, cal, pa, *, n=400_000, seed=12345):
    """Fraction of a source's detected photons that land on active pixels inside a region.

    A large noise-free Monte Carlo of the same sampler and geometry as the events (the PSF /
    β-model and the aspect make this awkward to integrate analytically). For several regions,
    compute :func:`_source_landing` once and apply :func:`_fraction_in_cutout` per region.
    """
    return _fraction_in_cutout(_source_landing(source, track, gti, cal, pa, n=n, seed=seed), cut)


def _unit_channel_counts(cal, module, norms, spectra=None):
    """Counts/s per channel of each background component per unit of its region weight.

    ``apbgd`` per unit W, ``fcxb`` per active pixel, ``intbgd`` and ``intn`` one vector per
    detector DET0..3 (for Ā pixels); ``abar`` is Ā. ``spectra`` from
    :func:`component_photon_spectra` may be passed when already computed.
    """
    if spectra is None:
        spectra = component_photon_spectra(cal, module, norms)
    return {
        "apbgd": fold(cal.rmf, spectra["apbgd"][0], spectra["apbgd"][1]),
        "fcxb": fold(cal.rmf, spectra["fcxb"][0], spectra["fcxb"][1]),
        "intbgd": [fold(cal.rmf, spectra["intbgd"][0][n]) for n in range(4)],
        "intn": [fold(cal.diag_rmf, spectra["intn"][0][n]) for n in range(4)],
        "abar": internal_area(cal.detnum),
    }


def expected_counts(cal, module, norms, maps, region_sums, exposure, *, unit=None):
    """Noise-free expected counts per component in each band for one region.

    ``region_sums`` holds ``W`` (Σ bgdap) and ``A`` (Σ det_n, 4 values) over the region.
    ``unit`` (from :func:`_unit_channel_counts` for this module and norms) may be passed to
    avoid refolding the spectra for every region; ``maps`` is not used.
    """
    if unit is None:
        unit = _unit_channel_counts(cal, module, norms)
    abar = unit["abar"]
    W, A = region_sums["W"], np.asarray(region_sums["A"])
    per_comp = {
        "apbgd": unit["apbgd"] * W,
        "fcxb": unit["fcxb"] * A.sum(),
        "intbgd": sum(unit["intbgd"][n] * A[n] / abar for n in range(4)),
        "intn": sum(unit["intn"][n] * A[n] / abar for n in range(4)),
    }
    return {band: {k: float(v[sl].sum() * exposure) for k, v in per_comp.items()}
            for band, sl in _BAND_SLICES.items()}


# ---------------------------------------------------------------------------------------------
# The whole observation
# ---------------------------------------------------------------------------------------------


@dataclass
class SimulatedObservation:
    """Paths written by :func:`simulate_observation` and the truth dictionary."""

    root: Path
    event_files: dict
    aspect_files: dict
    gti_files: dict
    region_files: dict
    truth: dict

    def __repr__(self):
        n = {m: self.truth["modules"][m]["n_events"] for m in self.truth["modules"]}
        return f"SimulatedObservation({self.root}, events={n}, regions={sorted(self.region_files)})"


def _sky_frame(spec):
    return {"NAXIS1": 1000, "NAXIS2": 1000, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 500.5,
            "CRPIX2": 500.5, "CRVAL1": spec.ra, "CRVAL2": spec.dec, "CDELT1": -6.828076e-4,
            "CDELT2": 6.828076e-4, "CUNIT1": "deg", "CUNIT2": "deg"}


def _time_keywords(spec, gti):
    """Header keywords of the observation (the same for both modules)."""
    mjdref = 55197.00076601852
    tstart, tstop = float(gti.start[0] - 60.0), float(gti.stop[-1] + 60.0)
    iso = lambda t: Time(mjdref + t / 86400.0, format="mjd", scale="tt").isot[:19]  # noqa: E731
    ontime = gti.exposure
    return {
        "OBS_ID": spec.obsid, "OBJECT": f"SIM_{spec.source.upper()}", "TARG_ID": 0,
        "DATE-OBS": iso(tstart), "DATE-END": iso(tstop), "TSTART": tstart, "TSTOP": tstop,
        "TELAPSE": tstop - tstart, "ONTIME": ontime, "EXPOSURE": spec.exposure, "LIVETIME": spec.exposure,
        "DEADC": spec.exposure / ontime, "TIMESYS": "TT", "TIMEUNIT": "s", "TIMEREF": "LOCAL",
        "MJDREFI": 55197, "MJDREFF": 7.6601852e-4, "CLOCKAPP": False,
        "RA_NOM": spec.ra, "DEC_NOM": spec.dec, "RA_PNT": spec.ra, "DEC_PNT": spec.dec, "PA_PNT": spec.pa,
        "RA_OBJ": spec.ra, "DEC_OBJ": spec.dec, "EQUINOX": 2000.0, "RADECSYS": "FK5",
        "CREATOR": "nuskybgd simulate", "ORIGIN": "nuskybgd-widgets",
    }


def simulate_observation(outdir, spec=None, *, calibration=None, overwrite=False, progress=None):
    """Simulate one observation (both modules) and write it under ``outdir/<obsid>``.

    All files are written into a staging directory first and moved into place at the end, so
    a failure leaves nothing behind; an existing ``outdir/<obsid>`` is replaced only with
    ``overwrite=True``.

    Parameters
    ----------
    outdir : path-like
        Existing, writable directory.
    spec : SimulationSpec, optional
    calibration : callable(module) -> ModuleCalibration, optional
        Defaults to :func:`nuskybgd_engine.maps.module_calibration.module_calibration`.
    overwrite : bool
    progress : callable(str), optional
        Receives short progress messages.

    Returns
    -------
    SimulatedObservation
    """
    spec = spec or SimulationSpec()
    say = progress or (lambda msg: None)
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise BadFileError("output directory does not exist", path=outdir)
    if not os.access(outdir, os.W_OK):
        raise BadFileError("output directory is not writable", path=outdir)
    final = outdir / spec.obsid
    if final.exists() and not overwrite:
        raise OutputExistsError(f"already holds observation {spec.obsid} (use --overwrite)", path=final)
    calibration = calibration or module_calibration

    rng = np.random.default_rng(spec.seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.obsid}.", dir=outdir))
    try:
        root = staging / spec.obsid
        evdir = root / "event_cl"
        regdir = root / "regions"
        evdir.mkdir(parents=True)
        regdir.mkdir()
        sky = _sky_frame(spec)
        ref_header = fits.Header()
        ref_header["NAXIS"] = 2
        for k, v in sky.items():
            ref_header[k] = v
        ref_header["PA_PNT"] = spec.pa
        grid = SkyGrid.from_header(ref_header)
        gti = make_gti(spec.exposure, rng)
        keys = _time_keywords(spec, gti)
        centre = aspect_centre_for(spec.pa)
        cals, tracks, maps = {}, {}, {}
        for m in spec.modules:
            say(f"FPM{m}: calibration, aspect and projected maps")
            cals[m] = calibration(m)
            tracks[m] = make_aspect_track(m, gti, centre, rng, header={k: keys[k] for k in (
                "OBS_ID", "OBJECT", "RA_NOM", "DEC_NOM", "TSTART", "TSTOP", "DATE-OBS", "DATE-END", "MJDREFI",
                "MJDREFF", "TIMESYS")})
            hist = aspect_histogram(tracks[m], gti)
            maps[m] = project_maps(ref_header, cals[m].instrument_map, hist, module=m,
                                   aperture=cals[m].aperture_det1)
        sources = _source_definitions(spec, grid, cals[spec.modules[0]])
        truth = {"obsid": spec.obsid, "seed": spec.seed, "exposure": spec.exposure, "pa_pnt": spec.pa,
                 "ra_nom": spec.ra, "dec_nom": spec.dec, "source": spec.source, "norms": spec.norms,
                 "conventions": __doc__.split("Normalisation conventions of the truth")[1].strip(),
                 "sources": [s["params"] for s in sources], "modules": {}, "regions": {},
                 "calibration": {m: cals[m].describe() for m in spec.modules}}
        event_files, aspect_files, gti_files = {}, {}, {}
        unit, source_chan = {}, {}  # per module: folded unit spectra, per-source counts/s per channel
        for m in spec.modules:
            say(f"FPM{m}: events")
            detectors = _module_detectors(cals[m])
            spectra = component_photon_spectra(cals[m], m, spec.norms)
            ev = simulate_module_events(spec, m, cals[m], tracks[m], gti, rng, sources, detectors=detectors,
                                        spectra=spectra)
            unit[m] = _unit_channel_counts(cals[m], m, spec.norms, spectra=spectra)
            source_chan[m] = [detectors[0].channel_counts(s["photon_flux"], cals[m].fcxb_arf) for s in sources]
            stem = f"nu{spec.obsid}{m}"
            event_files[m] = evdir / f"{stem}01_cl.evt"
            write_events(event_files[m], ev.columns, m, keys, sky, gti=gti)
            aspect_files[m] = evdir / f"{stem}_det1.fits"
            write_aspect(tracks[m], aspect_files[m])
            gti_files[m] = evdir / f"{stem}01_gti.fits"
            write_gti(gti, gti_files[m], keywords={k: keys[k] for k in ("TSTART", "TSTOP", "MJDREFI", "MJDREFF",
                                                                         "OBS_ID")})
            truth["modules"][m] = {
                "internal_area": internal_area(cals[m].detnum),
                "n_events": int(ev.columns["TIME"].size),
                "n_by_component": {name: int(np.count_nonzero(ev.component == i))
                                   for i, name in enumerate(COMPONENT_NAMES)},
                "lost": ev.lost,
            }
        say("regions and expected counts")
        region_sets = _suggest_regions(maps, sources)
        # Where each source's Monte Carlo photons land does not depend on the region.
        landing = {m: [_source_landing(s, tracks[m], gti, cals[m], spec.pa) for s in sources]
                   for m in spec.modules}
        region_files = {}
        for name, rs in region_sets.items():
            region_files[name] = regdir / f"{name}.reg"
            rs.write_ds9(region_files[name], coord="fk5", grid=grid)
            entry = {"file": f"regions/{name}.reg", "kind": "source" if name.startswith("src") else "background",
                     "modules": {}}
            cut = region_cutout(rs, grid)
            for m in spec.modules:
                sums = {"W": float(cut.sum(maps[m].bgdap)), "A": [float(cut.sum(d)) for d in maps[m].det]}
                expected = expected_counts(cals[m], m, spec.norms, maps[m], sums, spec.exposure, unit=unit[m])
                for s, land, base in zip(sources, landing[m], source_chan[m]):
                    frac = _fraction_in_cutout(land, cut)
                    chan = base * spec.exposure * frac
                    for band, counts in expected.items():
                        counts[s["name"]] = float(chan[_BAND_SLICES[band]].sum())
                entry["modules"][m] = {"weights": sums, "expected": expected}
            entry["npix"] = int(cut.npix)
            truth["regions"][name] = entry
        write_json(root / "truth.json", truth)
        if final.exists():
            shutil.rmtree(final)
        os.replace(root, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rel = lambda d: {k: final / Path(v).relative_to(root) for k, v in d.items()}  # noqa: E731
    return SimulatedObservation(final, rel(event_files), rel(aspect_files), rel(gti_files), rel(region_files),
                                truth)
