"""The truth of a simulation: its regions, the norms the model should recover, and the counts
expected in a region.

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

import numpy as np
from regions import CirclePixelRegion, PixCoord

from ..constants import DET1_NPIX, PIXEL_ARCSEC
from ..errors import BadConfigError
from ..io.ogip import fold
from ..io.regions import RegionSet
from ..model.background import APBGD_NORM_PER_W, FCXB_NORM_PER_PIXEL
from .events import component_photon_spectra, internal_area
from .spec import BAND_SLICES
from .timeline import aspect_at, sample_times, sky_to_det1

#: The conventions above, recorded in every ``truth.json``.
CONVENTIONS = __doc__.split("Normalisation conventions of the truth")[1].strip()


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


# ---------------------------------------------------------------------------------------------
# Regions and truth
# ---------------------------------------------------------------------------------------------


def suggested_regions(maps_by_module, sources):
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


def source_landing(source, track, gti, cal, pa, *, n=400_000, seed=12345):
    """Sky pixels (0-based integers) where a Monte Carlo sample of ``n`` detected photons of a
    source lands on active DET1 pixels: ``(X, Y, n)``, independent of any region."""
    rng = np.random.default_rng(seed)
    x, y = source["sample"](n, rng)
    t = sample_times(gti, n, rng)
    ax, ay = aspect_at(track, t)
    du, dv = sky_to_det1(x, y, ax, ay, pa)
    iu, iv = np.rint(du).astype(int), np.rint(dv).astype(int)
    ok = (iu >= 0) & (iu < DET1_NPIX) & (iv >= 0) & (iv < DET1_NPIX)
    ok[ok] = cal.detnum[iv[ok], iu[ok]] >= 0
    X, Y = np.rint(x[ok]).astype(int), np.rint(y[ok]).astype(int)
    return X, Y, n


def fraction_in_cutout(landing, cut):
    """Fraction of the :func:`source_landing` sample inside the region cutout ``cut``."""
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
    compute :func:`source_landing` once and apply :func:`fraction_in_cutout` per region.
    """
    return fraction_in_cutout(source_landing(source, track, gti, cal, pa, n=n, seed=seed), cut)


def unit_channel_counts(cal, module, norms, spectra=None):
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
    ``unit`` (from :func:`unit_channel_counts` for this module and norms) may be passed to
    avoid refolding the spectra for every region; ``maps`` is not used.
    """
    if unit is None:
        unit = unit_channel_counts(cal, module, norms)
    abar = unit["abar"]
    W, A = region_sums["W"], np.asarray(region_sums["A"])
    per_comp = {
        "apbgd": unit["apbgd"] * W,
        "fcxb": unit["fcxb"] * A.sum(),
        "intbgd": sum(unit["intbgd"][n] * A[n] / abar for n in range(4)),
        "intn": sum(unit["intn"][n] * A[n] / abar for n in range(4)),
    }
    return {band: {k: float(v[sl].sum() * exposure) for k, v in per_comp.items()}
            for band, sl in BAND_SLICES.items()}
