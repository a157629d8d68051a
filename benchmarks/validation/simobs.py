"""Independent event-by-event simulation of a NuSTAR background observation (both modules).

Each background photon is born in DET1 (``apbgd``: aperture map; ``fcxb``: flat over active
pixels; ``intbgd``, ``intn``: flat within each detector with the ratios.json strengths, each
detector's own area as in IDL's parameter files, §3.5), at a continuous position inside its DET1
pixel and a time uniform over the GTIs; it goes to the sky through the aspect solution *at that
time* (our own wobble track, §1.5 mapping), and its energy goes to a PI channel through the
Gaussian response of :mod:`.instrument` (``intn`` deposits its energy directly, as diag.rmf says).
Files written, in the pipeline's layout: ``event_cl/nu<obsid>{A,B}01_cl.evt`` (EVENTS + GTI),
``nu<obsid>{A,B}_det1.fits`` (DET1_REFPOINT), ``nu<obsid>{A,B}01_gti.fits`` (STDGTI), the region
files (ds9, image coordinates), ``gauss{A,B}.rmf`` (the simulator's own response as an OGIP RMF)
and ``truth.json`` with the noise-free expected counts of every component in every region.

Truth normalisations per module ``m`` (``factors``; 1 = the nominal presets):

* apbgd: cutoffpl(1.29, 41.13) norm per DET1 pixel ``ap · 0.002353/32 · ap_map`` (§2.6 a, §3.2);
* fcxb: norm per active DET1 pixel ``fcxb · 1.6455454e-9`` (§2.9);
* intbgd: component k norm per pixel of detector n ``intbgd · I^k_{m,n} / N_n`` (N_n its pixels);
* intn: bknpower norm per pixel ``intn · 25 · J_{m,n} / N_n`` (ratios*.dat continuum values).

Optional Galactic ridge (``ValidationSpec.grxe``, component ``grxe``, IDL source 6): a synthetic sky
map in the IDL auxil layout (``modelrxte_sim.fits``, GLON/GLAT) is seen through the aperture stop
(:func:`.instrument.grxe_det1`); per DET1 pixel the photon spectrum is
``Ω_open · ⟨S⟩ · (K_line · line(6.7 keV) + K_cont · polarmodel(0.6)) · be.arf``. ``grxe['cont']`` and
``grxe['line']`` give the GRXE continuum and line 3–20 keV counts of FPMA as fractions of its apbgd
counts at unit factors; K_line and K_cont (one sky, the same for both modules) follow and are in
``truth.json`` with each region's true GRXE norms (K × Σ Ω⟨S⟩ over the region, time-averaged).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from . import instrument as ins

__all__ = ["BANDS", "COMPONENTS", "GRXE", "REGIONS_DET1", "ValidationSpec", "simulate", "write_gaussian_rmf"]

COMPONENTS = ("apbgd", "intbgd", "fcxb", "intn")
#: The optional Galactic-ridge component (present when ``ValidationSpec.grxe`` is given).
GRXE = "grxe"
BANDS = {"3-20": (3.0, 20.0), "20-50": (20.0, 50.0)}
#: Regions as (DET1 x, y (0-based, module A layout), radius arcsec, kind). bgd23 straddles DET2/DET3.
REGIONS_DET1 = {
    "bgd0": (300.0, 300.0, 70.0, "background"),
    "bgd1": (90.0, 300.0, 80.0, "background"),
    "bgd23": (178.0, 80.0, 90.0, "background"),
    "bgd3": (292.0, 62.0, 100.0, "background"),
    "src_point": (235.0, 235.0, 50.0, "held-out"),
    "src_ext": (85.0, 130.0, 120.0, "held-out"),
}
ORBIT = 5800.0
GOOD = 3500.0
LIVE = 0.95
MJDREF = 55197.00076601852
T0 = 3.2e8


@dataclass
class ValidationSpec:
    """One simulated observation."""

    seed: int = 1
    exposure: float = 50000.0
    pa: float = 37.0
    obsid: str = "91000000001"
    soft_shape: str = "apec_like"
    factors: dict = field(default=None)
    ra: float = 150.0
    dec: float = 2.0
    #: Galactic ridge: {"cont": f, "line": f, "l0": deg, "b_scale": deg, "stop_height": mm or None (the
    #: instrument's)} (see the module docstring) or None.
    grxe: dict = field(default=None)

    def __post_init__(self):
        if self.soft_shape not in ins.SOFT_SHAPES:
            raise ValueError(f"soft_shape must be one of {ins.SOFT_SHAPES}")
        if self.grxe is not None:
            self.grxe = {"cont": 0.5, "line": 0.05, "l0": 20.0, "b_scale": 1.0, "stop_height": None, **self.grxe}
        if self.factors is None:
            self.factors = random_factors(self.seed)


def random_factors(seed):
    """Truth factors per module: each seed's background differs from the presets by 10–25 %."""
    rng = np.random.default_rng(10_000 + seed)
    out = {}
    for m in ("A", "B"):
        out[m] = {"ap": float(rng.uniform(0.9, 1.1)), "fcxb": float(rng.uniform(0.8, 1.2)),
                  "intbgd": float(rng.uniform(0.8, 1.2)), "intn": float(rng.uniform(0.9, 1.1))}
    out["B"]["fcxb"] = out["A"]["fcxb"]  # the sky is the same for both modules
    return out


# --- spectra --------------------------------------------------------------------------------------


def photon_spectra(module, soft_shape):
    """Per-pixel photon spectra (photons s⁻¹ per bin) of each component at unit truth factor.

    Returns ``{'apbgd': per unit ap_map, 'fcxb': per active pixel, 'intbgd': [per pixel of DET n],
    'intn': [per pixel of DET n]}``.
    """
    pre = ins.presets()
    detnum, _ = ins.detector_maps(module)
    npix = np.array([np.count_nonzero(detnum == n) for n in range(4)], float)
    ap = pre[0]["components"]["cutoffpl"][module]
    shape = ins.cutoffpl(ap["phoindex"], ap["highecut"])
    out = {"apbgd": shape * 0.002353 / 32.0 * ins.arf("be", module),
           "fcxb": shape * 1.6455454e-9 * ins.arf("fcxb", module)}
    comps = pre[1]["components"]
    intb = np.zeros((4, ins.N_CHAN))
    for name, c in comps.items():
        c = c[module]
        if name == "apec":
            unit = ins.soft_component(soft_shape, c["kt"])
        else:
            unit = ins.lorentz(c["linee"], c["width"])
        intb += np.asarray(c["ifactors"], float)[:, None] / npix[:, None] * unit[None, :]
    out["intbgd"] = intb
    bk = pre[3]["components"]["bknpower"][module]
    unit = ins.bknpower(bk["phoindx1"], bk["breake"], bk["phoindx2"])
    out["intn"] = 25.0 * np.asarray(bk["ifactors"], float)[:, None] / npix[:, None] * unit[None, :]
    return out


# --- time line and aspect ---------------------------------------------------------------------------


def make_gti(exposure, rng):
    ontime = exposure / LIVE
    n = int(math.ceil(ontime / GOOD))
    start = T0 + rng.uniform(0, ORBIT - GOOD) + ORBIT * np.arange(n)
    length = np.full(n, GOOD)
    length[-1] = ontime - GOOD * (n - 1)
    return start, start + length


def make_track(gti, centre, rng, dt=1.0):
    """Sky position (0-based, continuous) of DET1 (350, 350) vs time: orbital wobble, drift, jitter."""
    t = np.arange(gti[0][0] - 30.0, gti[1][-1] + 30.0, dt)
    ph = rng.uniform(0, 2 * np.pi, 4)
    amp = rng.uniform(6.0, 12.0, 2)
    x = centre[0] + amp[0] * np.sin(2 * np.pi * t / ORBIT + ph[0]) + 2.5 * np.sin(2 * np.pi * t / 31000 + ph[2])
    y = centre[1] + amp[1] * np.sin(2 * np.pi * t / ORBIT + ph[1]) + 2.0 * np.cos(2 * np.pi * t / 27000 + ph[3])
    return t, x + rng.normal(0, 0.3, t.size), y + rng.normal(0, 0.3, t.size)


def _times(gti, n, rng):
    start, stop = gti
    cum = np.concatenate([[0.0], np.cumsum(stop - start)])
    u = rng.uniform(0, cum[-1], n)
    k = np.searchsorted(cum, u, side="right") - 1
    return start[k] + (u - cum[k])


def _interp_track(track, times):
    t, x, y = track
    return np.interp(times, t, x), np.interp(times, t, y)


# --- events -----------------------------------------------------------------------------------------


def _draw(rate, exposure, rng):
    """Poisson number of photons and their energy bins from a photons-per-bin rate vector."""
    n = rng.poisson(float(rate.sum()) * exposure)
    cdf = np.cumsum(rate) / rate.sum()
    return np.minimum(np.searchsorted(cdf, rng.uniform(0, 1, n), side="right"), ins.N_CHAN - 1)


def _detect(bins, rng, direct=False):
    """PI channel of each photon (Gaussian response), −1 when outside 0..4095."""
    e = ins.E_LO[bins] + 0.04 * rng.uniform(0, 1, bins.size)
    if not direct:
        e = e + rng.normal(0, 1, bins.size) * ins.fwhm(e) / 2.3548200450309493
    ch = np.floor((e - 1.6) / 0.04).astype(np.int64)
    return np.where((ch >= 0) & (ch < ins.N_CHAN), ch, -1)


def module_events(module, spec, gti, track, rng, grxe=None):
    """Event columns of one module and the component of each event.

    ``grxe``: ``(weights (360, 360), photons s⁻¹ per bin per unit weight)`` of the GRXE, or None.
    """
    detnum, pixmap = ins.detector_maps(module)
    active = detnum >= 0
    ap_map = np.where(active, ins.aperture_map(module), 0.0)
    sp = photon_spectra(module, spec.soft_shape)
    f = spec.factors[module]
    parts = []

    def add(comp, rate, weights, direct=False):
        bins = _draw(rate * weights.sum(), spec.exposure, rng)
        cdf = np.cumsum(weights.ravel()) / weights.sum()
        pix = np.minimum(np.searchsorted(cdf, rng.uniform(0, 1, bins.size), side="right"), cdf.size - 1)
        parts.append((pix, _detect(bins, rng, direct), np.full(bins.size, (COMPONENTS + (GRXE,)).index(comp))))

    add("apbgd", f["ap"] * sp["apbgd"], ap_map)
    add("fcxb", f["fcxb"] * sp["fcxb"], active.astype(float))
    for n in range(4):
        mask = (detnum == n).astype(float)
        add("intbgd", f["intbgd"] * sp["intbgd"][n], mask)
        add("intn", f["intn"] * sp["intn"][n], mask, direct=True)
    if grxe is not None:
        add(GRXE, grxe[1], np.where(active, grxe[0], 0.0))
    pix, pi, comp = (np.concatenate([p[i] for p in parts]) for i in range(3))
    v, u = np.divmod(pix, 360)
    times = _times(gti, pix.size, rng)
    px, py = _interp_track(track, times)
    sx, sy = ins.det1_to_sky(u + rng.uniform(-0.5, 0.5, u.size), v + rng.uniform(-0.5, 0.5, v.size), px, py,
                             spec.pa)
    X, Y = np.rint(sx).astype(int) + 1, np.rint(sy).astype(int) + 1
    keep = (pi >= 0) & (X >= 1) & (X <= 1000) & (Y >= 1) & (Y <= 1000)
    order = np.argsort(times[keep], kind="stable")
    sel = lambda a: a[keep][order]
    u, v, raw = sel(u), sel(v), sel(pixmap[v, u])
    cols = {"TIME": sel(times), "X": sel(X), "Y": sel(Y), "DET1X": u + 1, "DET1Y": v + 1,
            "DET_ID": detnum[v, u], "RAWX": raw % 32, "RAWY": raw // 32, "PI": sel(pi),
            "GRADE": np.zeros(u.size, int)}
    return cols, sel(comp)


# --- expected counts in a region (the truth) --------------------------------------------------------


def region_geometry(module, spec, gti, track, mask_pixels, nt=400, grxe_weights=None):
    """Time-averaged DET1 weights of a sky region: Σ over the region of each per-DET1-pixel template.

    For ``nt`` times spread evenly over the good time, every sky pixel of the region (2×2
    sub-points) is mapped back to DET1 at that time's aspect; the templates (aperture map, the
    active pixels of each detector) are read at the nearest DET1 pixel. Returns
    ``{'ap': Σ ap_map, 'det': [pixels of DET n]}`` in DET1-pixel units averaged over time, and
    ``'grxe'``: Σ of ``grxe_weights`` (Ω_open ⟨S⟩ per DET1 pixel) when given.
    """
    detnum, _ = ins.detector_maps(module)
    ap_map = np.where(detnum >= 0, ins.aperture_map(module), 0.0)
    start, stop = gti
    cum = np.concatenate([[0.0], np.cumsum(stop - start)])
    q = (np.arange(nt) + 0.5) / nt * cum[-1]
    k = np.searchsorted(cum, q, side="right") - 1
    times = start[k] + (q - cum[k])
    px, py = _interp_track(track, times)
    ys, xs = mask_pixels
    off = np.array([-0.25, 0.25])
    sx = np.broadcast_to(xs[:, None, None] + off[None, :, None], (xs.size, 2, 2)).ravel()
    sy = np.broadcast_to(ys[:, None, None] + off[None, None, :], (ys.size, 2, 2)).ravel()
    ap_sum, det_sum, g_sum = 0.0, np.zeros(4), 0.0
    g_map = None if grxe_weights is None else np.where(detnum >= 0, grxe_weights, 0.0)
    for x0, y0 in zip(px, py):
        u, v = ins.sky_to_det1(sx, sy, x0, y0, spec.pa)
        iu, iv = np.rint(u).astype(int), np.rint(v).astype(int)
        ok = (iu >= 0) & (iu < 360) & (iv >= 0) & (iv < 360)
        iu, iv = iu[ok], iv[ok]
        ap_sum += ap_map[iv, iu].sum()
        if g_map is not None:
            g_sum += g_map[iv, iu].sum()
        d = detnum[iv, iu]
        det_sum += np.bincount(d[d >= 0], minlength=4)
    scale = 1.0 / (nt * off.size ** 2)
    out = {"ap": ap_sum * scale, "det": (det_sum * scale).tolist()}
    if g_map is not None:
        out["grxe"] = g_sum * scale
    return out


def expected_counts(module, spec, geom, grxe_k=None):
    """Noise-free expected counts of each component in each band for a region's geometry.

    ``grxe_k``: (K_line, K_cont) of the GRXE (adds ``grxe``, ``grxe_line``, ``grxe_cont``), or None.
    """
    sp = photon_spectra(module, spec.soft_shape)
    f = spec.factors[module]
    out = {}
    for band, (lo, hi) in BANDS.items():
        p = ins.band_probability(lo, hi)
        c_lo, c_hi = ins.band_channels(lo, hi)
        direct = np.zeros(ins.N_CHAN)
        direct[c_lo:c_hi + 1] = 1.0
        det = np.asarray(geom["det"])
        out[band] = {
            "apbgd": f["ap"] * geom["ap"] * float(sp["apbgd"] @ p) * spec.exposure,
            "fcxb": f["fcxb"] * det.sum() * float(sp["fcxb"] @ p) * spec.exposure,
            "intbgd": f["intbgd"] * float(det @ (sp["intbgd"] @ p)) * spec.exposure,
            "intn": f["intn"] * float(det @ (sp["intn"] @ direct)) * spec.exposure,
        }
        if grxe_k is not None:
            be = ins.arf("be", module)
            line = grxe_k[0] * geom["grxe"] * float((ins.grxe_line() * be) @ p) * spec.exposure
            cont = grxe_k[1] * geom["grxe"] * float((ins.polar_table() * be) @ p) * spec.exposure
            out[band].update({GRXE: line + cont, "grxe_line": line, "grxe_cont": cont})
    return out


def grxe_setup(root, spec, tracks):
    """Write the GRXE sky map; per module the DET1 weights Ω_open⟨S⟩ at the mean aspect; K_line, K_cont.

    Returns ``(weights {m: (360, 360)}, (K_line, K_cont), map file name)``.
    """
    name = "modelrxte_sim.fits"
    g = spec.grxe
    sky_map = ins.grxe_sky_map(ins.write_grxe_sky_map(root / name, g["l0"], b_scale=g["b_scale"]))
    kw = _sky_keywords(spec)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crpix = list(kw["CTYPE"]), list(kw["CRPIX"])
    wcs.wcs.crval, wcs.wcs.cdelt = list(kw["CRVAL"]), list(kw["CDELT"])
    weights = {}
    for m, (_, x, y) in tracks.items():
        # The disc moves ~12 px per focused px: at the mean of a ~10 px wobble the error is ~5' of a 2° disc.
        weights[m] = ins.open_solid_angle(m) * ins.grxe_det1(m, sky_map, wcs, float(x.mean()), float(y.mean()),
                                                               spec.pa, stop_height=g["stop_height"])
    # K from FPMA: GRXE continuum (line) 3-20 keV counts = cont (line) × apbgd counts at unit factors.
    detnum, _ = ins.detector_maps("A")
    active = detnum >= 0
    p = ins.band_probability(3.0, 20.0)
    be = ins.arf("be", "A")
    ap_counts = ins.aperture_map("A")[active].sum() * float(photon_spectra("A", spec.soft_shape)["apbgd"] @ p)
    w_sum = weights["A"][active].sum()
    k_line = g["line"] * ap_counts / (w_sum * float((ins.grxe_line() * be) @ p))
    k_cont = g["cont"] * ap_counts / (w_sum * float((ins.polar_table() * be) @ p))
    return weights, (k_line, k_cont), name


def grxe_rate(module, k):
    """GRXE photons s⁻¹ per bin per unit weight (Ω_open⟨S⟩) of ``module``."""
    return (k[0] * ins.grxe_line() + k[1] * ins.polar_table()) * ins.arf("be", module)


# --- files ------------------------------------------------------------------------------------------


def _sky_keywords(spec):
    return {"CTYPE": ("RA---TAN", "DEC--TAN"), "CRPIX": (500.5, 500.5), "CRVAL": (spec.ra, spec.dec),
            "CDELT": (-ins.PIXEL_DEG, ins.PIXEL_DEG)}


def _header_keys(spec, gti):
    tstart, tstop = float(gti[0][0] - 30.0), float(gti[1][-1] + 30.0)
    iso = lambda t: Time(MJDREF + t / 86400.0, format="mjd", scale="tt").isot[:19]
    ontime = float(np.sum(gti[1] - gti[0]))
    return {"TELESCOP": "NuSTAR", "OBS_ID": spec.obsid, "OBJECT": "VALIDATION", "DATE-OBS": iso(tstart),
            "DATE-END": iso(tstop), "TSTART": tstart, "TSTOP": tstop, "ONTIME": ontime,
            "EXPOSURE": spec.exposure, "LIVETIME": spec.exposure, "MJDREFI": 55197, "MJDREFF": 7.6601852e-4,
            "TIMESYS": "TT", "TIMEUNIT": "s", "RA_NOM": spec.ra, "DEC_NOM": spec.dec, "RA_PNT": spec.ra,
            "DEC_PNT": spec.dec, "PA_PNT": spec.pa, "EQUINOX": 2000.0, "RADECSYS": "FK5"}


def _gti_hdu(gti, name, keys):
    hdu = fits.BinTableHDU.from_columns([fits.Column("START", "D", unit="s", array=gti[0]),
                                         fits.Column("STOP", "D", unit="s", array=gti[1])], name=name)
    hdu.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "GTI", "HDUCLAS2": "STANDARD", "TELESCOP": "NuSTAR",
                       "TSTART": keys["TSTART"], "TSTOP": keys["TSTOP"]})
    return hdu


def write_events(path, module, cols, spec, gti, keys):
    fmt = {"TIME": "D", "X": "I", "Y": "I", "DET1X": "I", "DET1Y": "I", "DET_ID": "B", "RAWX": "B", "RAWY": "B",
           "PI": "J", "GRADE": "I"}
    units = {"TIME": "s", "X": "pixel", "Y": "pixel", "DET1X": "pixel", "DET1Y": "pixel", "PI": "chan"}
    hdu = fits.BinTableHDU.from_columns([fits.Column(n, fmt[n], unit=units.get(n), array=a) for n, a in cols.items()],
                                        name="EVENTS")
    h = hdu.header
    names = list(cols)
    sky = _sky_keywords(spec)
    for axis, name in enumerate(("X", "Y")):
        n = names.index(name) + 1
        h[f"TLMIN{n}"], h[f"TLMAX{n}"] = 1, 1000
        for kw, col_kw in (("CTYPE", "TCTYP"), ("CRPIX", "TCRPX"), ("CRVAL", "TCRVL"), ("CDELT", "TCDLT")):
            h[f"{col_kw}{n}"] = sky[kw][axis]
        h[f"TCUNI{n}"] = "deg"
    for name, (lo, hi) in {"PI": (0, 4095), "DET1X": (1, 360), "DET1Y": (1, 360), "GRADE": (0, 32)}.items():
        n = names.index(name) + 1
        h[f"TLMIN{n}"], h[f"TLMAX{n}"] = lo, hi
    h.update({"HDUCLASS": "OGIP", "HDUCLAS1": "EVENTS", "HDUCLAS2": "ALL", "INSTRUME": f"FPM{module}"})
    h.update(keys)
    prim = fits.PrimaryHDU()
    prim.header.update({"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "OBS_ID": spec.obsid})
    fits.HDUList([prim, hdu, _gti_hdu(gti, "GTI", keys)]).writeto(path)


def write_aspect(path, module, track, keys):
    t, x, y = track
    # The pipeline's columns are floored to 0-based indices by nuskybgd (§1.6): write the
    # continuous position + 0.5 so that the floor is the nearest pixel of the true position.
    hdu = fits.BinTableHDU.from_columns([fits.Column("TIME", "D", unit="s", array=t),
                                         fits.Column("X_DET1", "D", unit="pixel", array=x + 0.5),
                                         fits.Column("Y_DET1", "D", unit="pixel", array=y + 0.5)],
                                        name="DET1_REFPOINT")
    hdu.header.update({"HDUCLASS": "OGIP", "HDUCLAS1": "TEMPORALDATA", "TELESCOP": "NuSTAR",
                       "INSTRUME": f"FPM{module}", "OBS_ID": keys["OBS_ID"], "TSTART": keys["TSTART"],
                       "TSTOP": keys["TSTOP"]})
    prim = fits.PrimaryHDU()
    prim.header.update({"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}"})
    fits.HDUList([prim, hdu]).writeto(path)


def write_gti(path, module, gti, keys):
    prim = fits.PrimaryHDU()
    prim.header.update({"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}"})
    fits.HDUList([prim, _gti_hdu(gti, "STDGTI", keys)]).writeto(path)


def write_gaussian_rmf(path, module):
    """The simulator's Gaussian response as an OGIP RMF (MATRIX + EBOUNDS), for RESPFILE use."""
    rows = ins.gaussian_rmf_rows()
    mat = np.empty(len(rows), dtype=object)
    for j, (_, r) in enumerate(rows):
        mat[j] = r.astype(np.float32)
    cols = [fits.Column("ENERG_LO", "E", unit="keV", array=ins.E_LO),
            fits.Column("ENERG_HI", "E", unit="keV", array=ins.E_HI),
            fits.Column("N_GRP", "I", array=np.ones(len(rows), np.int16)),
            fits.Column("F_CHAN", "J", array=np.array([r[0] for r in rows], np.int32)),
            fits.Column("N_CHAN", "J", array=np.array([r[1].size for r in rows], np.int32)),
            fits.Column("MATRIX", "PE()", array=mat)]
    m = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    common = {"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "CHANTYPE": "PI", "DETCHANS": ins.N_CHAN,
              "HDUCLASS": "OGIP", "HDUCLAS1": "RESPONSE", "HDUVERS": "1.3.0", "TLMIN4": 0}
    m.header.update(common)
    m.header.update({"HDUCLAS2": "RSP_MATRIX", "HDUCLAS3": "REDIST", "LO_THRES": 1e-7})
    eb = fits.BinTableHDU.from_columns([fits.Column("CHANNEL", "J", array=np.arange(ins.N_CHAN, dtype=np.int32)),
                                        fits.Column("E_MIN", "E", unit="keV", array=ins.E_LO),
                                        fits.Column("E_MAX", "E", unit="keV", array=ins.E_HI)], name="EBOUNDS")
    eb.header.update(common)
    eb.header.update({"HDUCLAS2": "EBOUNDS"})
    fits.HDUList([fits.PrimaryHDU(), m, eb]).writeto(path)


def _region_pixels(x0, y0, r_pix):
    """0-based (y, x) indices of the 1000×1000 sky pixels whose centres lie inside the circle."""
    yy, xx = np.mgrid[int(y0 - r_pix) - 1:int(y0 + r_pix) + 2, int(x0 - r_pix) - 1:int(x0 + r_pix) + 2]
    inside = (xx - x0) ** 2 + (yy - y0) ** 2 <= r_pix ** 2
    return yy[inside], xx[inside]


def simulate(outdir, spec=None, *, with_rmf=True, truth_times=400):
    """Write one observation under ``outdir/<obsid>``; return the truth dictionary."""
    spec = spec or ValidationSpec()
    rng = np.random.default_rng(spec.seed)
    root = Path(outdir) / spec.obsid
    evdir = root / "event_cl"
    evdir.mkdir(parents=True)
    gti = make_gti(spec.exposure, rng)
    keys = _header_keys(spec, gti)
    # Pointing: DET1 array centre (180, 180) at sky (500, 500); FPMB's mast aspect a few px away.
    m, nu = ins.roll(spec.pa)
    centre = np.array([499.5, 499.5]) + nu - m @ (np.array([180.0, 180.0]) - ins.DET1_REF)
    tracks = {"A": make_track(gti, centre, rng), "B": make_track(gti, centre + rng.uniform(-3, 3, 2), rng)}
    truth = {"spec": asdict(spec), "regions": {}, "modules": {}, "files": {}}
    g_w, g_k = {}, None
    if spec.grxe is not None:
        g_w, g_k, g_name = grxe_setup(root, spec, tracks)
        truth["files"]["grxe_map"] = g_name
        truth["grxe"] = {"k_line": g_k[0], "k_cont": g_k[1]}
    for mod in ("A", "B"):
        g = (g_w[mod], grxe_rate(mod, g_k)) if g_k is not None else None
        cols, comp = module_events(mod, spec, gti, tracks[mod], rng, grxe=g)
        stem = f"nu{spec.obsid}{mod}"
        write_events(evdir / f"{stem}01_cl.evt", mod, cols, spec, gti, keys)
        write_aspect(evdir / f"{stem}_det1.fits", mod, tracks[mod], keys)
        write_gti(evdir / f"{stem}01_gti.fits", mod, gti, keys)
        if with_rmf:
            write_gaussian_rmf(root / f"gauss{mod}.rmf", mod)
            truth["files"][f"rmf{mod}"] = f"gauss{mod}.rmf"
        names = COMPONENTS + ((GRXE,) if g is not None else ())
        by_comp = {c: int(np.count_nonzero(comp == i)) for i, c in enumerate(names)}
        truth["modules"][mod] = {"n_events": int(comp.size), "by_component": by_comp}
    # Regions at the mean aspect of FPMA; truth from the time-resolved geometry of each module.
    mx, my = tracks["A"][1].mean(), tracks["A"][2].mean()
    regdir = root / "regions"
    regdir.mkdir()
    for name, (u, v, r_arcsec, kind) in REGIONS_DET1.items():
        x0, y0 = (float(c) for c in ins.det1_to_sky(u, v, mx, my, spec.pa))
        r_pix = r_arcsec / 3600.0 / ins.PIXEL_DEG
        (regdir / f"{name}.reg").write_text(
            "# Region file format: DS9 version 4.1\nimage\n"
            f"circle({x0 + 1:.4f},{y0 + 1:.4f},{r_pix:.4f})\n")
        pix = _region_pixels(x0, y0, r_pix)
        entry = {"file": f"regions/{name}.reg", "kind": kind, "npix": int(pix[0].size), "modules": {}}
        for mod in ("A", "B"):
            geom = region_geometry(mod, spec, gti, tracks[mod], pix, nt=truth_times, grxe_weights=g_w.get(mod))
            entry["modules"][mod] = {"geometry": geom, "expected": expected_counts(mod, spec, geom, g_k)}
            if g_k is not None:
                entry["modules"][mod]["grxe_norms"] = {"line": g_k[0] * geom["grxe"], "cont": g_k[1] * geom["grxe"]}
        truth["regions"][name] = entry
    (root / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
