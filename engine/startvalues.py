"""Starting values of the background fit from the counts image (before any spectrum is fitted).

The presets of nuskybgd (nominal CXB, ratios.json internal strengths) can be off by large
factors for a given observation, and a fit started far away may wander. The counts image
already says how strong the aperture and the internal components are: in a band, the
background image of module ``m`` is (source-masked)

    μ(pixel) = α · T_ap(pixel) + β · T_flat(pixel)

with ``T_ap`` the aperture (apbgd) image and ``T_flat`` the detector-flat image (intbgd + intn +
fcxb, per detector), both predicted by the *current* model values (the presets) through
:func:`~nuskybgd_engine.workflow.background_images`. A Poisson (C-stat) fit of (α, β) to the
image in a soft band (3–10 keV, where the aperture dominates) and a hard band (20–50 keV,
where the internal continuum dominates) gives the factors by which the presets are off:

* apbgd reference norm × α (inverse-variance mean of the two bands);
* intbgd and intn norms × ``s_I``, ``s_N`` solving, with fcxb kept at its value,
  ``s_I I_b + s_N N_b + X_b = β_b (I_b + N_b + X_b)`` for b = soft, hard (``I``, ``N``, ``X`` the
  band counts of the three flat components). When this 2×2 system is ill-conditioned (both
  bands see the same mix) both factors are the weighted mean β.

:func:`poisson_template_fit` is the generic part (also used by :mod:`.suggest` for the local
background of the significance map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .errors import BadConfigError, FitError

__all__ = [
    "TemplateFit",
    "poisson_template_fit",
    "ModuleStart",
    "StartValues",
    "image_start_values",
    "apply_start_values",
    "SOFT_BAND",
    "HARD_BAND",
    "FACTOR_LIMITS",
]

#: Bands of the image fit (keV): the aperture dominates the first, the internal continuum the second.
SOFT_BAND = (3.0, 10.0)
HARD_BAND = (20.0, 50.0)
#: Starting factors are clipped to this range (a factor outside it means the image is not background).
FACTOR_LIMITS = (0.05, 20.0)
#: Image pixels are summed in blocks of this size before the fit (exact for Poisson data; faster).
BLOCK = 4


@dataclass
class TemplateFit:
    """Poisson fit of amplitudes of fixed images: ``μ = Σ_k amplitude_k · template_k``."""

    amplitudes: np.ndarray
    errors: np.ndarray
    covariance: np.ndarray
    cstat: float
    n_bins: int
    counts: float
    converged: bool

    def __repr__(self):
        amps = ", ".join(f"{a:.4g}±{e:.2g}" for a, e in zip(self.amplitudes, self.errors))
        return f"TemplateFit([{amps}], {self.counts:.0f} counts, cstat {self.cstat:.1f}/{self.n_bins} bins)"


def _block_sum(image, block):
    ny, nx = image.shape
    ny2, nx2 = ny - ny % block, nx - nx % block
    a = image[:ny2, :nx2]
    return a.reshape(ny2 // block, block, nx2 // block, block).sum(axis=(1, 3))


def poisson_template_fit(counts, templates, mask=None, *, block=BLOCK):
    """Fit non-negative amplitudes of ``templates`` to a counts image by maximum Poisson likelihood.

    Parameters
    ----------
    counts : ndarray (ny, nx)
        Counts image.
    templates : sequence of ndarray (ny, nx)
        Model images (any scale); amplitude 1 means "as given".
    mask : ndarray of bool (ny, nx), optional
        Pixels to use (default: where any template is > 0).
    block : int
        Pixels are summed in ``block``×``block`` cells first (sums of Poisson counts are Poisson
        with the summed mean, so the likelihood stays exact for the model).

    Returns
    -------
    TemplateFit
    """
    from .fit.native import LinearProblem, fit_linear

    counts = np.asarray(counts, dtype=float)
    tpl = [np.asarray(t, dtype=float) for t in templates]
    if not tpl:
        raise BadConfigError("no templates to fit", field="templates")
    if any(t.shape != counts.shape for t in tpl):
        raise BadConfigError(f"templates must have the image's shape {counts.shape}", field="templates")
    support = sum(tpl) > 0
    mask = support if mask is None else (np.asarray(mask, bool) & support)
    cb = _block_sum(np.where(mask, counts, 0.0), block).ravel()
    cols = [_block_sum(np.where(mask, t, 0.0), block).ravel() for t in tpl]
    keep = sum(cols) > 0
    design = np.stack([c[keep] for c in cols], axis=1)
    data = cb[keep]
    if data.size == 0:
        raise FitError("no image pixels left to fit (mask covers everything)", field="mask")
    # Columns scaled to unit sum: amplitudes of order the counts, well conditioned.
    scale = design.sum(axis=0)
    used = scale > 0
    design = design[:, used] / scale[used]
    problem = LinearProblem([data], [design])
    out = fit_linear(problem, "cstat")
    amps = np.zeros(len(tpl))
    errs = np.full(len(tpl), np.nan)
    cov = np.full((len(tpl), len(tpl)), np.nan)
    amps[used] = out.theta / scale[used]
    c = np.asarray(out.covariance, float) / np.outer(scale[used], scale[used])
    idx = np.flatnonzero(used)
    cov[np.ix_(idx, idx)] = c
    d = np.diag(c)
    errs[used] = np.where(np.isfinite(d) & (d >= 0), np.sqrt(np.abs(d)), np.nan)
    return TemplateFit(amplitudes=amps, errors=errs, covariance=cov, cstat=float(out.stat), n_bins=int(data.size),
                       counts=float(data.sum()), converged=bool(out.converged))


@dataclass
class ModuleStart:
    """Image-based starting factors of one module (multiply the current reference norms)."""

    module: str
    apbgd: float
    intbgd: float
    intn: float
    fits: dict = field(default_factory=dict)  # band name -> TemplateFit (amplitudes α, β)
    notes: list = field(default_factory=list)

    def __repr__(self):
        return (f"ModuleStart(FPM{self.module}: apbgd ×{self.apbgd:.3g}, intbgd ×{self.intbgd:.3g}, "
                f"intn ×{self.intn:.3g})")


@dataclass
class StartValues:
    """Starting factors per module and the bands used."""

    modules: dict
    bands: dict
    applied: bool = False

    def to_dict(self):
        return {"bands": {k: list(v) for k, v in self.bands.items()}, "applied": self.applied,
                "modules": {m: {"apbgd": s.apbgd, "intbgd": s.intbgd, "intn": s.intn, "notes": list(s.notes),
                                "fits": {b: {"alpha": float(f.amplitudes[0]), "beta": float(f.amplitudes[1]),
                                             "alpha_error": float(f.errors[0]), "beta_error": float(f.errors[1]),
                                             "counts": f.counts} for b, f in s.fits.items()}}
                            for m, s in self.modules.items()}}

    def __repr__(self):
        return "StartValues(" + "; ".join(repr(s) for s in self.modules.values()) + ")"


def _source_mask(obs, modules, exclude, detect):
    """True where pixels are usable: not in ``exclude`` regions nor around detected sources."""
    from .io.regions import region_mask

    shape = obs[modules[0]].image.image.shape
    ok = np.ones(shape, bool)
    if exclude is not None:
        ok &= ~region_mask(exclude, obs.grid)
    if detect:
        from .suggest import detect_sources, source_mask

        sources, _sig, _bkg = detect_sources(obs, modules=modules)
        ok &= ~source_mask(sources, shape)
    return ok


def _clip(v):
    lo, hi = FACTOR_LIMITS
    return float(min(max(v, lo), hi)) if np.isfinite(v) else 1.0


def image_start_values(analysis, obs, *, soft=SOFT_BAND, hard=HARD_BAND, exclude=None, detect=True):
    """Starting factors of the reference norms of every module of ``analysis`` from ``obs``'s images.

    Parameters
    ----------
    analysis : BackgroundAnalysis
        Its current values (normally the presets) define the templates; they are not changed.
    obs : ObservationProducts
        Events and projected maps of the same observation (:func:`~.observation.prepare_observation`).
    soft, hard : (float, float)
        Bands (keV) of the two image fits.
    exclude : RegionSet, optional
        Extra regions to leave out (e.g. the source region).
    detect : bool
        Also mask the sources found by :func:`~.suggest.detect_sources`.

    Returns
    -------
    StartValues
    """
    from .maps.images import make_counts_image
    from .workflow import background_images

    modules = sorted(set(analysis.state.modules))
    for m in modules:
        if m not in obs.modules:
            raise BadConfigError(f"the analysis has FPM{m} spectra but the observation has no FPM{m} maps",
                                 field="module")
    usable = _source_mask(obs, modules, exclude, detect)
    proxy = SimpleNamespace(maps={m: obs[m].maps for m in modules}, state=analysis.state, model=analysis.model,
                            presets=analysis.presets, groups=analysis.groups)
    per_band = {}
    for bname, band in (("soft", soft), ("hard", hard)):
        per_band[bname] = (band, background_images(proxy, band))
    out = {}
    for m in modules:
        ref = analysis.groups[analysis.state.modules.index(m)]
        events = obs[m].events
        scale = events.exposure / ref.exposure  # templates are for the reference spectrum's exposure
        det = sum(np.asarray(d) for d in obs[m].maps.det)
        notes, fits, flat_parts = [], {}, {}
        for bname, (band, images) in per_band.items():
            img = images[m]
            counts = make_counts_image(events, *band).image
            t_ap = img["apbgd"] * scale
            t_flat = (img["intbgd"] + img["intn"] + img["fcxb"]) * scale
            mask = usable & (det > 0)
            try:
                fit = poisson_template_fit(counts, [t_ap, t_flat], mask)
            except FitError as exc:
                notes.append(f"{bname} band: {exc.reason}")
                continue
            if fit.counts < 30:
                notes.append(f"{bname} band: only {fit.counts:.0f} counts; ignored")
                continue
            fits[bname] = fit
            sums = {k: float((img[k] * scale)[mask].sum()) for k in ("intbgd", "intn", "fcxb")}
            flat_parts[bname] = sums
        # apbgd: inverse-variance mean of the band estimates of α.
        num = den = 0.0
        for f in fits.values():
            a, e = f.amplitudes[0], f.errors[0]
            if np.isfinite(e) and e > 0:
                num += a / e ** 2
                den += 1 / e ** 2
        alpha = num / den if den > 0 else 1.0
        # Internal: solve the 2x2 system when both bands were fitted and it is well conditioned.
        s_i = s_n = None
        betas = [(f.amplitudes[1], f.errors[1]) for f in fits.values()]
        if "soft" in fits and "hard" in fits:
            rows, rhs = [], []
            for b in ("soft", "hard"):
                p, beta = flat_parts[b], fits[b].amplitudes[1]
                rows.append([p["intbgd"], p["intn"]])
                rhs.append(beta * (p["intbgd"] + p["intn"] + p["fcxb"]) - p["fcxb"])
            M = np.array(rows)
            Mn = M / np.maximum(np.abs(M).sum(axis=1, keepdims=True), 1e-300)
            if abs(np.linalg.det(Mn)) > 0.05:
                s_i, s_n = np.linalg.solve(M, np.array(rhs))
                if not (s_i > 0 and s_n > 0):
                    notes.append("internal factors from the two bands disagree; using the mean scale")
                    s_i = s_n = None
            else:
                notes.append("both bands see the same internal mix; using the mean scale")
        if s_i is None:
            w = [(b, 1 / e ** 2) for b, e in betas if np.isfinite(e) and e > 0]
            beta = sum(b * wt for b, wt in w) / sum(wt for _, wt in w) if w else 1.0
            s_i = s_n = beta
        out[m] = ModuleStart(module=m, apbgd=_clip(alpha), intbgd=_clip(s_i), intn=_clip(s_n), fits=fits,
                             notes=notes)
    return StartValues(modules=out, bands={"soft": tuple(soft), "hard": tuple(hard)})


def apply_start_values(analysis, obs, **kw):
    """Scale the reference norms of ``analysis`` by the image-based factors (see :func:`image_start_values`).

    The apbgd norm of each module's reference group is multiplied by its factor, every free
    intbgd norm of the reference group by the intbgd factor and the intn norm by the intn
    factor; linked values follow. The fcxb norms are kept. Any previous fit result is dropped
    (its covariance no longer belongs to the values).

    Returns
    -------
    StartValues
    """
    start = image_start_values(analysis, obs, **kw)
    state = analysis.state
    for m, s in start.modules.items():
        r = state.modules.index(m) + 1
        factors = {"apbgd": s.apbgd, "intbgd": s.intbgd, "intn": s.intn}
        for source, factor in factors.items():
            src = state[source]
            for k in range(1, src.n_par + 1):
                idx = src.index(r, k)
                p = state[source][idx]
                if p.name != "norm" or p.link is not None or p.frozen:
                    continue
                value = p.value * factor
                if math.isfinite(p.hard_max):
                    value = min(value, p.hard_max)
                p.value = max(value, p.hard_min)
    analysis.model.refresh_links()
    analysis.result = None
    start.applied = True
    return start
