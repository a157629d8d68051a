"""Suggested background regions: find the sources in the counts image and place circles around them.

Picking background regions by hand in ds9 is where nuskybgd users lose most time, and badly
placed regions make the fit degenerate: the aperture (apbgd, ∝ the aperture map ``W``) and the
focused CXB (fcxb, ∝ the detector area ``A``) have the same spectral shape up to their ARFs, so
they are only told apart when the regions sample different ``W/A`` (the aperture gradient), and
the per-detector internal strengths need every detector. The steps:

1. **Local background** of each module: a Poisson fit of the projected aperture map and the four
   detector maps (:func:`~.fit.templates.poisson_template_fit`) to the counts image, sources masked.
2. **Significance map**: counts and background summed in a ``box``×``box`` cell around every
   pixel (all modules added), Poisson significance ``sign(N−B)·√(2(N ln(N/B) − (N−B)))``.
3. **Sources**: connected pixels above ``threshold`` σ; each gets an exclusion circle of its
   above-threshold extent plus ``margin``. Steps 1–3 are repeated with the sources masked.
4. **Regions**: circles of ``radius`` on a grid of centres, kept when the mean detector coverage
   (Σ_n det_n, every module) inside is ≥ ``min_coverage`` and they clear every source; then a
   deterministic greedy choice of ``n`` circles that first covers all four detectors and, at
   each step, takes the candidate whose aperture ratio ``W/A`` is farthest from those chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from regions import CirclePixelRegion, PixCoord
from scipy.ndimage import label, maximum_position, uniform_filter

from .constants import PIXEL_ARCSEC
from .errors import BadConfigError, BadRegionError, FitError
from .fit.templates import poisson_template_fit
from .io.regions import RegionSet, region_mask

__all__ = [
    "DetectedSource",
    "RegionChoice",
    "Suggestion",
    "significance_map",
    "local_background",
    "detect_sources",
    "source_mask",
    "suggest_regions",
    "apbgd_fcxb_correlation",
]

#: Defaults: detection threshold (σ), cell size (pixels, ≈ the PSF core), source margin (arcsec),
#: region radius (arcsec), coverage of active detector area, spacing of candidate centres (pixels).
THRESHOLD = 5.0
BOX = 13
MARGIN_ARCSEC = 60.0
RADIUS_ARCSEC = 110.0
MIN_COVERAGE = 0.95
STEP = 6


@dataclass
class DetectedSource:
    """A source found in the significance map (0-based pixel position on the sky grid)."""

    x: float
    y: float
    radius: float  # exclusion radius (pixels)
    significance: float  # peak
    npix: int  # pixels above threshold

    def __repr__(self):
        return f"DetectedSource(({self.x:.1f}, {self.y:.1f}), r={self.radius:.1f} px, {self.significance:.1f}σ)"


@dataclass
class RegionChoice:
    """One suggested circle and why it was chosen."""

    name: str
    x: float
    y: float
    radius: float
    detector: int  # detector holding most of the circle
    purity: float  # fraction of the circle's detector area on that detector
    coverage: float  # mean Σ det over the circle (lowest over modules)
    aperture_ratio: float  # W/A (aperture weight per unit detector area, first module)


@dataclass
class Suggestion:
    """Suggested background regions (``regions``: one RegionSet per circle, named bgd1, bgd2 ...)."""

    regions: list
    choices: list
    sources: list
    significance: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)
    modules: tuple = ()
    warnings: list = field(default_factory=list)

    def write(self, outdir, grid, *, prefix="bgd", coord="fk5", overwrite=False):
        """Write ``<outdir>/<prefix><k>.reg`` (ds9) for every region; returns the paths."""
        outdir = Path(outdir)
        paths = [outdir / f"{prefix}{k}.reg" for k in range(1, len(self.regions) + 1)]
        for rs, p in zip(self.regions, paths):
            rs.write_ds9(p, coord=coord, grid=grid, overwrite=overwrite)
        return paths

    def __repr__(self):
        dets = sorted({c.detector for c in self.choices})
        return (f"Suggestion({len(self.regions)} regions on detectors {dets}, {len(self.sources)} sources, "
                f"W/A {min(c.aperture_ratio for c in self.choices):.3g}-"
                f"{max(c.aperture_ratio for c in self.choices):.3g})")


def _disk(radius):
    r = int(math.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return ((xx ** 2 + yy ** 2) < radius ** 2).astype(float)


def _box_sum(image, box):
    return uniform_filter(np.asarray(image, float), size=box, mode="constant") * box * box


def significance_map(counts, background, *, box=BOX):
    """Poisson significance of the counts over the background in ``box``×``box`` cells.

    ``S = sign(N−B) √(2 (N ln(N/B) − (N − B)))`` (likelihood ratio of a Poisson count ``N`` with
    known mean ``B``); 0 where ``B`` is 0.
    """
    n = np.maximum(_box_sum(counts, box), 0.0)
    b = np.maximum(_box_sum(background, box), 0.0)
    ok = b > 1e-12
    s = np.zeros_like(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / np.where(ok, b, 1.0)), 0.0) - (n - b)
    s[ok] = np.sign(n[ok] - b[ok]) * np.sqrt(np.maximum(2.0 * term[ok], 0.0))
    return s


def local_background(counts, maps, mask=None):
    """Background image of one module: Poisson fit of its aperture and four detector maps."""
    templates = [np.asarray(maps.bgdap, float)] + [np.asarray(d, float) for d in maps.det if d is not None]
    fit = poisson_template_fit(counts, templates, mask)
    return sum(a * t for a, t in zip(fit.amplitudes, templates))


def source_mask(sources, shape):
    """Boolean image, True inside the exclusion circle of any source."""
    out = np.zeros(shape, bool)
    if not sources:
        return out
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    for s in sources:
        out |= (xx - s.x) ** 2 + (yy - s.y) ** 2 < s.radius ** 2
    return out


def _module_list(obs, modules):
    mods = tuple(modules) if modules else tuple(obs.modules)
    for m in mods:
        if m not in obs.modules:
            raise BadConfigError(f"module {m!r} not loaded (have {', '.join(obs.modules)})", field="module")
    if not mods:
        raise BadConfigError("no module to use", field="module")
    return mods


def detect_sources(obs, *, modules=None, threshold=THRESHOLD, box=BOX, margin=MARGIN_ARCSEC, iterations=3):
    """Sources in the counts images of ``obs`` (modules added).

    Returns
    -------
    (list of DetectedSource, significance ndarray, background ndarray)
    """
    mods = _module_list(obs, modules)
    if not threshold > 0:
        raise BadConfigError(f"threshold must be > 0, got {threshold}", field="threshold")
    counts = sum(np.asarray(obs[m].image.image, float) for m in mods)
    active = sum(sum(np.asarray(d) for d in obs[m].maps.det if d is not None) for m in mods) > 0
    margin_pix = float(margin) / PIXEL_ARCSEC
    sources = []
    sig = bkg = None
    for _ in range(iterations):
        mask = active & ~source_mask(sources, counts.shape)
        bkg = sum(local_background(obs[m].image.image, obs[m].maps, mask) for m in mods)
        sig = significance_map(counts, bkg, box=box)
        sig[~active] = 0.0
        labels, n = label(sig > threshold)
        found = []
        if n:
            idx = np.arange(1, n + 1)
            peaks = maximum_position(sig, labels, idx)
            sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            for (py, px), npix in zip(peaks, sizes):
                radius = math.sqrt(npix / math.pi) + margin_pix
                found.append(DetectedSource(x=float(px), y=float(py), radius=radius,
                                            significance=float(sig[py, px]), npix=int(npix)))
        found.sort(key=lambda s: (-s.significance, s.y, s.x))
        same = len(found) == len(sources) and all(
            abs(a.x - b.x) < 1 and abs(a.y - b.y) < 1 and abs(a.radius - b.radius) < 1 for a, b in zip(found, sources))
        sources = found
        if same:
            break
    return sources, sig, bkg


def _conv(image, kernel):
    from scipy.signal import (
        fftconvolve,  # lazy: scipy.signal (+ scipy.stats) costs ~0.5 s of every dashboard kernel's start
    )

    out = fftconvolve(np.asarray(image, float), kernel, mode="same")
    out[np.abs(out) < 1e-9] = 0.0
    return out


def suggest_regions(obs, *, modules=None, n=4, radius=RADIUS_ARCSEC, threshold=THRESHOLD, margin=MARGIN_ARCSEC,
                    min_coverage=MIN_COVERAGE, exclude=None, step=STEP, prefix="bgd"):
    """Propose ``n`` (3–6) background circles for ``obs`` (deterministic).

    Parameters
    ----------
    obs : ObservationProducts
    modules : sequence of {'A', 'B'}, optional
        Modules whose detector coverage and counts are used (default: all loaded).
    n : int
        Number of regions, 3 to 6.
    radius : float
        Circle radius in arcsec.
    threshold : float
        Source detection threshold (σ).
    margin : float
        Extra clearance around each source (arcsec).
    min_coverage : float
        Minimum mean Σ_n det_n inside a circle, for every module (1 = fully on active pixels).
    exclude : RegionSet, optional
        Areas the circles must not touch (e.g. a known extended source).

    Returns
    -------
    Suggestion
    """
    mods = _module_list(obs, modules)
    try:
        n = int(n)
        radius_pix = float(radius) / PIXEL_ARCSEC
        min_coverage = float(min_coverage)
    except (TypeError, ValueError):
        raise BadConfigError("n, radius and min_coverage must be numbers", field="suggest") from None
    if not 3 <= n <= 6:
        raise BadConfigError(f"number of regions must be 3 to 6, got {n}", field="n")
    if not 5 <= radius_pix <= 200:
        raise BadConfigError(f"radius must be {5 * PIXEL_ARCSEC:.0f}-{200 * PIXEL_ARCSEC:.0f} arcsec, got {radius}",
                             field="radius")
    if not 0 < min_coverage <= 1:
        raise BadConfigError(f"min_coverage must be in (0, 1], got {min_coverage}", field="min_coverage")
    sources, sig, bkg = detect_sources(obs, modules=mods, threshold=threshold, margin=margin)
    kernel = _disk(radius_pix)
    npix = kernel.sum()
    shape = sig.shape
    cover = None
    for m in mods:
        c = _conv(sum(np.asarray(d) for d in obs[m].maps.det if d is not None), kernel) / npix
        cover = c if cover is None else np.minimum(cover, c)
    first = obs[mods[0]].maps
    det_conv = np.stack([_conv(d, kernel) for d in first.det])
    area = det_conv.sum(axis=0)
    ap_conv = _conv(first.bgdap, kernel)
    # Candidate centres on a regular grid: inside the frame, covered, away from sources.
    r = int(math.ceil(radius_pix))
    ys, xs = np.mgrid[r:shape[0] - r:step, r:shape[1] - r:step]
    ys, xs = ys.ravel(), xs.ravel()
    ok = cover[ys, xs] >= min_coverage
    for s in sources:
        ok &= np.hypot(xs - s.x, ys - s.y) >= s.radius + radius_pix
    if exclude is not None:
        grown = _conv(region_mask(exclude, obs.grid).astype(float), kernel) > 0.5
        ok &= ~grown[ys, xs]
    ys, xs = ys[ok], xs[ok]
    if xs.size == 0:
        raise BadRegionError(f"no {radius:g}\" circle fits on the active area away from the sources; use a "
                             "smaller radius or a lower min_coverage", field="radius")
    dets = det_conv[:, ys, xs]
    detector = np.argmax(dets, axis=0)
    purity = dets.max(axis=0) / np.maximum(area[ys, xs], 1e-12)
    ratio = ap_conv[ys, xs] / np.maximum(area[ys, xs], 1e-12)
    span = ratio.max() - ratio.min()
    q = (ratio - ratio.min()) / span if span > 0 else np.zeros_like(ratio)
    # Prefer circles on one detector (cleaner per-detector internal weights) when there are enough.
    pure = purity >= 0.9
    if len(set(detector[pure])) >= min(4, len(set(detector))):
        ys, xs, detector, purity, ratio, q = (a[pure] for a in (ys, xs, detector, purity, ratio, q))
    chosen = []
    min_sep = 2 * radius_pix + 2
    while len(chosen) < n:
        free = np.ones(xs.size, bool)
        for j in chosen:
            free &= np.hypot(xs - xs[j], ys - ys[j]) >= min_sep
        if not free.any():
            break
        covered = {int(detector[j]) for j in chosen}
        new_det = np.array([int(d) not in covered for d in detector], float)
        if chosen:
            dq = np.min(np.abs(q[:, None] - q[chosen][None, :]), axis=1)
        else:
            dq = q.copy()  # start at the highest aperture ratio
        score = 10.0 * new_det + dq + 0.01 * purity
        score[~free] = -np.inf
        chosen.append(int(np.argmax(score)))
    if len(chosen) < 3:
        raise BadRegionError(f"only {len(chosen)} non-overlapping {radius:g}\" circles fit on the active area away "
                             "from the sources (need 3); use a smaller radius", field="radius")
    warnings = []
    dets_used = sorted({int(detector[j]) for j in chosen})
    if len(dets_used) < 4:
        warnings.append(f"regions cover only detectors {dets_used}: the internal background of the others is "
                        "extrapolated from the presets")
    if len(chosen) < n:
        warnings.append(f"only {len(chosen)} of {n} regions fit")
    choices, region_sets = [], []
    for k, j in enumerate(chosen, start=1):
        name = f"{prefix}{k}"
        x0, y0 = float(xs[j]), float(ys[j])
        rs = RegionSet()
        rs.add(CirclePixelRegion(PixCoord(x0, y0), radius_pix), name=name)
        region_sets.append(rs)
        choices.append(RegionChoice(name=name, x=x0, y=y0, radius=radius_pix, detector=int(detector[j]),
                                    purity=float(purity[j]), coverage=float(cover[int(y0), int(x0)]),
                                    aperture_ratio=float(ratio[j])))
    return Suggestion(regions=region_sets, choices=choices, sources=sources, significance=sig, background=bkg,
                      modules=mods, warnings=warnings)


def apbgd_fcxb_correlation(analysis):
    """Correlation of the apbgd and fcxb reference norms of each module in the last fit.

    The quantity behind the fit's degeneracy warning (``analysis.DEGENERACY_THRESHOLD``):
    ``{module: rho}`` (NaN when either norm is not free).
    """
    res = analysis.result
    if res is None:
        raise FitError("no fit yet", field="fit")
    out = {}
    state = analysis.state
    for m in sorted(set(state.modules)):
        r = state.modules.index(m) + 1
        a, f = ("apbgd", state["apbgd"].index(r, 3)), ("fcxb", state["fcxb"].index(r, 3))
        out[m] = res.correlation(a, f) if a in res.free and f in res.free else float("nan")
    return out
