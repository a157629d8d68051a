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

:func:`~.fit.templates.poisson_template_fit` is the generic part (also used by :mod:`.suggest`
for the local background of the significance map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from .errors import BadConfigError, FitError
from .fit.templates import poisson_template_fit
from .io.regions import region_mask
from .maps.images import make_counts_image
from .suggest import detect_sources, source_mask
from .workflow import background_images

__all__ = [
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
    shape = obs[modules[0]].image.image.shape
    ok = np.ones(shape, bool)
    if exclude is not None:
        ok &= ~region_mask(exclude, obs.grid)
    if detect:
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
    modules = sorted(set(analysis.state.modules))
    for m in modules:
        if m not in obs.modules:
            raise BadConfigError(f"the analysis has FPM{m} spectra but the observation has no FPM{m} maps",
                                 field="module")
    usable = _source_mask(obs, modules, exclude, detect)
    proxy = SimpleNamespace(maps={m: obs[m].maps for m in modules}, state=analysis.state, model=analysis.model,
                            presets=analysis.presets, groups=analysis.groups, reference_group=analysis.reference_group)
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
