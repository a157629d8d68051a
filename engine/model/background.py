"""The four background sources of nuskybgd with their presets and links (spec §2.8, §2.9, §3.2).

For data group ``s`` of module ``m`` with reference group ``r`` (the first group of ``m``),
detector areas ``A[s][n]`` (Σ of the projected detector map over the region), fractions
``f[s][n]`` and aperture weight ``W[s]`` (Σ of the projected aperture map):

========  ======================================  ====================================
source    free value at the reference             link factor of another group ``s``
========  ======================================  ====================================
apbgd     norm = 0.002353/32 · W[r]               W[s] / W[r]
intbgd    norm_k = Σ_n f[r][n] I^k_{m,n}          Σ_n A[s][n] I^k / Σ_n A[r][n] I^k
fcxb      norm = 1.6455454e-9 · Σ_n A[s][n]       none (every group free; optional links)
intn      norm = Σ_n A[r][n] J_{m,n} / 599.75     Σ_n A[s][n] J / Σ_n A[r][n] J
========  ======================================  ====================================

Shapes are frozen at the presets in the reference groups and linked to them elsewhere (intn's
shape is frozen, not linked, in every group, as in nuskybgd-py). Parameter numbers, link
directions and deltas are those of nuskybgd-py, so the exported ``.xcm`` is line-compatible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import PIXEL_ARCSEC
from ..errors import BadConfigError, BadRegionError
from ..io.regions import region_cutout
from ..io.regions import require_pixel_regions
from .components import COMPONENTS, param_specs
from .parameters import Link, ModelState, Parameter, SourceModel

__all__ = [
    "RegionWeights",
    "region_weights",
    "BackgroundOptions",
    "build_background_model",
    "open_norm_limits",
    "SOURCE_NUMBERS",
    "OPTIONAL_SOURCE_NUMBERS",
    "APBGD_NORM_PER_W",
    "FCXB_NORM_PER_PIXEL",
    "INTN_PIXELS_PER_ARCMIN2",
    "SOLAR_COMPONENTS",
]

SOURCE_NUMBERS = {"apbgd": 2, "intbgd": 3, "fcxb": 4, "intn": 5}
#: Sources present only when asked for: the Galactic ridge (IDL ``grxe=``, source 6).
OPTIONAL_SOURCE_NUMBERS = {"grxe": 6}
#: GRXE Fe line (IDL: gauss at 6.7 keV, σ = 0) and the polar-table WD mass (IDL: 0.6, frozen).
GRXE_LINE_KEV = 6.7
GRXE_WDMASS = 0.6
#: Start value of the two GRXE norms per unit GRXE weight G (a start for the fit, not a preset).
GRXE_START_PER_G = 1e-6
#: apbgd norm per unit aperture weight: nominal CXB 0.002353 over 32 counts (10–15 keV, 10⁵ s).
APBGD_NORM_PER_W = 0.002353 / 32.0
#: fcxb norm per sky pixel of detector area: 0.002353 · 1.5 · (2.4581″·1000/3600)² / 10⁶.
FCXB_NORM_PER_PIXEL = 0.002353 * 1.5 * (PIXEL_ARCSEC * 1000.0 / 3600.0) ** 2 / 1e6
#: "Pixels per arcmin²" of the intn preset, (60/2.45)² (spec §1.1: not (60/2.4581)²).
INTN_PIXELS_PER_ARCMIN2 = 599.75
#: The solar-activity pieces zeroed by ``no_solar`` (IDL /no_solar): apec and the 3.54, 4.51, 10.20 keV lines.
SOLAR_COMPONENTS = ("apec", "lorentz", "lorentz_3", "lorentz_4")
#: Line whose norm the others follow with fixed line ratios (19.6 keV, ``lorentz_5``, local parameter 16).
RATIO_ANCHOR = "lorentz_5"
#: Component the solar lines follow with ``solar_ratios`` (apec, local parameter 4).
SOLAR_ANCHOR = "apec"


@dataclass(frozen=True)
class RegionWeights:
    """Geometric weights of one region for one module (spec §2.8)."""

    W: float
    A: tuple  # 4 detector areas (effective sky pixels), DET0..DET3
    module: str
    name: str = ""
    G: float | None = None  # GRXE weight (Σ of the projected GRXE map), None without a GRXE map

    @property
    def total_area(self):
        return float(np.sum(self.A))

    @property
    def fractions(self):
        total = self.total_area
        if not total > 0:
            raise BadRegionError(f"region {self.name or '?'} covers no active detector area of FPM{self.module}",
                                 field="region")
        return np.asarray(self.A, dtype=float) / total

    def __repr__(self):
        a = ", ".join(f"{x:.1f}" for x in self.A)
        return f"RegionWeights({self.name or 'region'}, FPM{self.module}: W={self.W:.4g}, A=({a}))"


def region_weights(regions, grid, maps, *, name="", grxe=None):
    """Weights of ``regions`` (RegionSet) on the projected maps of one module (cutout sums).

    ``grxe`` (the projected GRXE map of the module, optional; default ``maps.grxe``) gives the GRXE
    weight ``G``.
    """
    grxe = grxe if grxe is not None else getattr(maps, "grxe", None)
    require_pixel_regions(regions, grid)  # fk5 shapes on a heliocentric (solar X/Y) grid: one clear line
    cut = region_cutout(regions, grid)
    return RegionWeights(W=float(cut.sum(maps.bgdap)),
                         A=tuple(float(cut.sum(d)) if d is not None else 0.0 for d in maps.det),
                         module=maps.module, name=name, G=None if grxe is None else float(cut.sum(grxe)))


@dataclass
class BackgroundOptions:
    """Choices the user makes about the model (``bgdinfo.json`` keys and the IDL switches).

    Attributes
    ----------
    fcxb_links : list of (int, int)
        ``[i, j]``: the fcxb norm of data group ``j`` equals that of group ``i`` (1-based).
    fix_line_ratios : bool
        Lines 5–29 of each reference group follow the 19.6 keV line with the preset ratios.
    solar_ratios : bool
        The 3.54, 4.51 and 10.20 keV lines of each reference group follow the apec norm with the
        preset ratios: the low-energy "solar" part of intbgd (apec + these lines, spec App. A) is one
        free norm, so it cannot trade shape with the aperture continuum (``bgdinfo`` key
        ``intbgd_fix_solar_ratios``). Ignored for the pieces ``no_solar`` freezes at 0.
    no_solar : bool
        apec and the 3.54/4.51/10.20 keV line norms are 0 and frozen (no solar soft component).
    negative_norms : bool
        Every norm of sources 2–5 may go below 0 (hard and soft minimum ``-1e24``, written so in the
        xcm as XSPEC's ``newpar`` would). Off by default (XSPEC's norms stop at 0). With the limit,
        a weak line whose true norm lies within ~1σ of 0 often ends pegged at 0, which biases it and
        the norms correlated with it; without it the fit is the plain maximum of the likelihood,
        unbiased to first order (the total model is still floored as XSPEC floors it, see ``cstat``).
    """

    fcxb_links: list = field(default_factory=list)
    fix_line_ratios: bool = False
    no_solar: bool = False
    negative_norms: bool = False
    solar_ratios: bool = False

    @classmethod
    def from_bgdinfo(cls, info, negative_norms=None):
        """The options a :class:`~nuskybgd_engine.bgdinfo.BgdInfo` asks for (``negative_norms``, when
        given, overrides the file's, e.g. a saved fit's choice)."""
        return cls(fcxb_links=list(info.fcxb_links), fix_line_ratios=info.fix_line_ratios, no_solar=info.no_solar,
                   negative_norms=bool(info.negative_norms if negative_norms is None else negative_norms),
                   solar_ratios=info.fix_solar_ratios)

    def to_dict(self):
        """The JSON form written into a saved fit (``NAME.json``)."""
        return {"fcxb_links": [list(p) for p in self.fcxb_links], "fix_line_ratios": self.fix_line_ratios,
                "no_solar": self.no_solar, "negative_norms": self.negative_norms, "solar_ratios": self.solar_ratios}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict` (keys missing from older files take their defaults)."""
        return cls(fcxb_links=[tuple(p) for p in data.get("fcxb_links", [])],
                   fix_line_ratios=bool(data.get("fix_line_ratios", False)), no_solar=bool(data.get("no_solar", False)),
                   negative_norms=bool(data.get("negative_norms", False)),
                   solar_ratios=bool(data.get("solar_ratios", False)))


def _param(spec, component, value, *, frozen, delta=None):
    return Parameter(name=spec.name, component=component, value=float(value),
                     delta=abs(delta if delta is not None else spec.delta) or 0.01, frozen=frozen,
                     hard_min=spec.hard_min, soft_min=spec.soft_min, soft_max=spec.soft_max,
                     hard_max=spec.hard_max, unit=spec.unit)


def module_references(modules):
    """``{module: first group of that module}``: the reference group the other groups of a module link to."""
    refs = {}
    for g, m in enumerate(modules, start=1):
        refs.setdefault(m, g)
    return refs


def _check_inputs(modules, weights):
    if not modules:
        raise BadConfigError("no spectra to model", field="bgfiles")
    if len(modules) != len(weights):
        raise BadConfigError(f"{len(modules)} spectra but {len(weights)} region weights", field="regfiles")
    for g, (m, w) in enumerate(zip(modules, weights), start=1):
        if m not in ("A", "B"):
            raise BadConfigError(f"spectrum {g}: module must be A or B, got {m!r}", field="INSTRUME")
        if w.module != m:
            raise BadConfigError(f"spectrum {g} is FPM{m} but its weights were computed on FPM{w.module} maps",
                                 field="bgdapfiles")
        w.fractions  # raises when the region misses the detectors
        if not w.W > 0:
            raise BadRegionError(f"spectrum {g}: region {w.name or '?'} has no aperture weight (off the FPM{m} "
                                 "field?)", field="region")


def build_background_model(modules, weights, presets, options=None):
    """The four sources for data groups 1..N.

    Parameters
    ----------
    modules : sequence of {'A', 'B'}
        Module of each data group, in data-group order.
    weights : sequence of RegionWeights
    presets : Presets
    options : BackgroundOptions, optional

    Returns
    -------
    ModelState
    """
    options = options or BackgroundOptions()
    modules = [str(m).upper().removeprefix("FPM") for m in modules]
    _check_inputs(modules, weights)
    refs = module_references(modules)
    state = ModelState()
    _apbgd(state, modules, weights, presets, refs)
    _intbgd(state, modules, weights, presets, refs, options)
    _fcxb(state, modules, weights, refs, options.fcxb_links)
    _intn(state, modules, weights, presets, refs)
    if any(w.G is not None for w in weights):
        _grxe(state, modules, weights, refs)
    if options.negative_norms:
        open_norm_limits(state)
    state.refresh_links()  # the resolved value in every linked parameter (what XSPEC shows)
    state.modules = list(modules)
    state.weights = list(weights)
    return state


NEGATIVE_NORM_MIN = -1e24


def open_norm_limits(state):
    """Let every norm of ``state`` go below 0 (hard and soft minimum ``-1e24``)."""
    for src in state:
        for p in src.params:
            if p.is_norm:
                p.hard_min = p.soft_min = NEGATIVE_NORM_MIN


def _apbgd(state, modules, weights, presets, refs):
    spec = COMPONENTS["cutoffpl"].parameters
    src = state.add(SourceModel(SOURCE_NUMBERS["apbgd"], "apbgd", [("cutoffpl", "cutoffpl")], 3))
    for g, (m, w) in enumerate(zip(modules, weights), start=1):
        r = refs[m]
        if g == r:
            gamma, ecut = presets.apbgd[m]
            src.params += [_param(spec[0], "cutoffpl", gamma, frozen=True),
                           _param(spec[1], "cutoffpl", ecut, frozen=True),
                           _param(spec[2], "cutoffpl", APBGD_NORM_PER_W * w.W, frozen=False)]
        else:
            ref = src.param(r, 3)
            src.params += [_linked(spec[0], "cutoffpl", "apbgd", src.index(r, 1), 1.0, state),
                           _linked(spec[1], "cutoffpl", "apbgd", src.index(r, 2), 1.0, state),
                           _linked(spec[2], "cutoffpl", "apbgd", src.index(r, 3), w.W / weights[r - 1].W, state,
                                   value=ref.value * w.W / weights[r - 1].W)]


def _grxe(state, modules, weights, refs):
    """Source 6: gaussian (6.7 keV, σ = 0) + atable{polarmodel.fits} (WD mass frozen), norms × G[s]/G[r]."""
    table = next((name for name in COMPONENTS if name.startswith("atable{polarmodel")), None)
    if table is None:
        raise BadConfigError("the GRXE source needs the table model polarmodel.fits: register it with "
                             "nuskybgd_engine.model.tablemodel.register_table_model", field="grxe")
    for g, w in enumerate(weights, start=1):
        if w.G is None or not w.G > 0:
            raise BadRegionError(f"spectrum {g}: region {w.name or '?'} has no GRXE weight (every spectrum needs "
                                 "one when a GRXE map is given)", field="grxe")
    gauss = COMPONENTS["gaussian"].parameters
    tab = COMPONENTS[table].parameters
    comps = [("gaussian", "gaussian"), (table, table)]
    src = state.add(SourceModel(OPTIONAL_SOURCE_NUMBERS["grxe"], "grxe", comps, 5))
    for g, (m, w) in enumerate(zip(modules, weights), start=1):
        r = refs[m]
        if g == r:
            src.params += [_param(gauss[0], "gaussian", GRXE_LINE_KEV, frozen=True),
                           _param(gauss[1], "gaussian", 0.0, frozen=True),
                           _param(gauss[2], "gaussian", GRXE_START_PER_G * w.G, frozen=False),
                           _param(tab[0], table, GRXE_WDMASS, frozen=True),
                           _param(tab[1], table, GRXE_START_PER_G * w.G, frozen=False)]
        else:
            f = w.G / weights[r - 1].G
            src.params += [_linked(gauss[0], "gaussian", "grxe", src.index(r, 1), 1.0, state),
                           _linked(gauss[1], "gaussian", "grxe", src.index(r, 2), 1.0, state),
                           _linked(gauss[2], "gaussian", "grxe", src.index(r, 3), f, state),
                           _linked(tab[0], table, "grxe", src.index(r, 4), 1.0, state),
                           _linked(tab[1], table, "grxe", src.index(r, 5), f, state)]


def _linked(spec, component, source, index, factor, state, value=None):
    p = _param(spec, component, value if value is not None else 0.0, frozen=False)
    p.link = Link(float(factor), source, int(index))
    return p


def _area_factor(w_s, w_r, factors, what):
    num = float(np.dot(w_s.A, factors))
    den = float(np.dot(w_r.A, factors))
    if den == 0:
        raise BadRegionError(f"reference region {w_r.name or '?'} gives zero {what} (Σ A·I = 0)", field="region")
    return num / den


def _intbgd(state, modules, weights, presets, refs, options):
    comps = presets.intbgd
    components = [(c.name, c.kind) for c in comps]
    n_par = sum(len(param_specs(c.kind)) for c in comps)
    src = state.add(SourceModel(SOURCE_NUMBERS["intbgd"], "intbgd", components, n_par))
    # Local parameter number of each component's norm.
    norm_local, k = {}, 0
    for c in comps:
        k += len(param_specs(c.kind))
        norm_local[c.name] = k
    if options.fix_line_ratios and RATIO_ANCHOR not in norm_local:
        raise BadConfigError(f"fixed line ratios need the {RATIO_ANCHOR} (19.6 keV) line", field="ratios.json")
    line_names = [c.name for c in comps if c.kind == "lorentz"]
    # Norms that follow an anchor with the preset ratio: component -> (anchor, bgdinfo key, anchor's description).
    tied = {}
    if options.fix_line_ratios:
        tied.update({name: (RATIO_ANCHOR, "intbgd_fix_line_ratios", "the 19.6 keV line") for name in line_names[4:]})
    if options.solar_ratios and not options.no_solar:
        if SOLAR_ANCHOR not in norm_local:
            raise BadConfigError(f"fixed solar ratios need the {SOLAR_ANCHOR} component", field="ratios.json")
        tied.update({name: (SOLAR_ANCHOR, "intbgd_fix_solar_ratios", "apec") for name in SOLAR_COMPONENTS[1:]})

    for g, (m, w) in enumerate(zip(modules, weights), start=1):
        r = refs[m]
        f = w.fractions
        nominal = {c.name: float(np.dot(f, c.ifactors[m])) for c in comps}
        local = 0
        for c in comps:
            *shape_specs, norm_spec = param_specs(c.kind)
            shape = list(zip(shape_specs, ("kT", "Abundanc", "Redshift") if c.kind == "apec" else ("LineE", "Width")))
            for spec, key in shape:
                local += 1
                if g == r:
                    delta = 0.05 if c.kind == "lorentz" else (0.001 if key == "Abundanc" else 0.01)
                    src.params.append(_param(spec, c.name, c.params[key], frozen=True, delta=delta))
                else:
                    src.params.append(_linked(spec, c.name, "intbgd", src.index(r, local), 1.0, state,
                                              value=c.params[key]))
            local += 1
            if g == r:
                value = nominal[c.name]
                p = _param(norm_spec, c.name, value, frozen=False)
                if options.no_solar and c.name in SOLAR_COMPONENTS:
                    p.value, p.frozen = 0.0, True
                elif c.name in tied:
                    anchor, key, what = tied[c.name]
                    if nominal[anchor] == 0:
                        raise BadRegionError(f"the {what} preset is 0 in this region: cannot fix its ratios", field=key)
                    p.link = Link(value / nominal[anchor], "intbgd", src.index(r, norm_local[anchor]))
                src.params.append(p)
            else:
                factor = _area_factor(w, weights[r - 1], c.ifactors[m], f"intbgd {c.name}")
                src.params.append(_linked(norm_spec, c.name, "intbgd", src.index(r, local), factor, state))


def _fcxb(state, modules, weights, refs, links):
    spec = COMPONENTS["cutoffpl"].parameters
    src = state.add(SourceModel(SOURCE_NUMBERS["fcxb"], "fcxb", [("cutoffpl", "cutoffpl")], 3))
    ap = state["apbgd"]
    for g, (m, w) in enumerate(zip(modules, weights), start=1):
        r = refs[m]
        src.params += [_linked(spec[0], "cutoffpl", "apbgd", ap.index(r, 1), 1.0, state),
                       _linked(spec[1], "cutoffpl", "apbgd", ap.index(r, 2), 1.0, state),
                       _param(spec[2], "cutoffpl", FCXB_NORM_PER_PIXEL * w.total_area, frozen=False)]
    n = len(modules)
    for pair in links or []:
        try:
            i, j = (int(v) for v in pair)
        except (TypeError, ValueError):
            raise BadConfigError(f"fcxb link {pair!r} must be a pair of spectrum numbers", field="fcxb_config.links")
        if not (1 <= i <= n and 1 <= j <= n) or i == j:
            raise BadConfigError(f"fcxb link [{i}, {j}] must name two different spectra among 1..{n}",
                                 field="fcxb_config.links")
        state.link("fcxb", src.index(j, 3), "fcxb", src.index(i, 3), 1.0)


def _intn(state, modules, weights, presets, refs):
    spec = COMPONENTS["bknpower"].parameters
    src = state.add(SourceModel(SOURCE_NUMBERS["intn"], "intn", [("bknpower", "bknpower")], 4))
    for g, (m, w) in enumerate(zip(modules, weights), start=1):
        r = refs[m]
        shape = presets.intn[m]
        src.params += [_param(spec[k], "bknpower", shape[k], frozen=True) for k in range(3)]
        J = presets.intn_ifactors[m]
        if g == r:
            src.params.append(_param(spec[3], "bknpower", float(np.dot(w.A, J)) / INTN_PIXELS_PER_ARCMIN2,
                                     frozen=False))
        else:
            factor = _area_factor(w, weights[r - 1], J, "intn")
            src.params.append(_linked(spec[3], "bknpower", "intn", src.index(r, 4), factor, state))


def add_linked_groups(state, modules, weights, presets, *, fcxb="linked", refs=None):
    """Append data groups whose background parameters are all links to the fitted references.

    This is nuskybgd's ``spec`` step (§2.10) and the basis of ``predict``: a new region of module
    ``m`` gets apbgd = W/W_r × ref, intbgd/intn = Σ A·I / Σ A_r·I × ref, shapes linked to the
    reference. ``fcxb='nominal'`` gives it a free fcxb norm at the nominal ``1.6455e-9 ΣA`` (as
    nuskybgd-py's ``spec``); ``'linked'`` links it to the reference's fcxb norm scaled by the
    detector area (the fitted surface brightness), which is what a prediction needs. ``refs``
    (``{module: data group}``) names other reference groups, e.g. one observation's of a joint model.

    Returns
    -------
    list of int
        The new data-group numbers.
    """
    if fcxb not in ("linked", "nominal"):
        raise BadConfigError(f"fcxb must be 'linked' or 'nominal', got {fcxb!r}", field="fcxb")
    n_old = state["apbgd"].n_groups
    old_modules = _group_modules(state, n_old)
    refs = {**module_references(old_modules), **(refs or {})}
    new = []
    for m, w in zip(modules, weights):
        m = str(m).upper().removeprefix("FPM")
        if m not in refs:
            raise BadConfigError(f"no fitted FPM{m} spectrum to transfer the background from", field="module")
        if w.module != m:
            raise BadConfigError(f"weights are for FPM{w.module}, region is FPM{m}", field="module")
        w.fractions
        r = refs[m]
        w_r = _ref_weights(state, r)
        g = n_old + len(new) + 1
        for s in state:
            base = s.index(r, 0)
            for k in range(1, s.n_par + 1):
                ref = s[base + k]
                p = Parameter(**{**ref.__dict__, "link": None, "frozen": False})
                target = (s.name, base + k)
                if ref.link is not None and s.name == "fcxb" and k < 3:
                    target = (ref.link.source, ref.link.index)
                factor = 1.0
                if p.name == "norm":
                    factor = _norm_factor(s.name, ref.component, w, w_r, presets, m)
                    if s.name == "fcxb" and fcxb == "nominal":
                        p.value = FCXB_NORM_PER_PIXEL * w.total_area
                        s.params.append(p)
                        continue
                p.link = Link(factor, *target)
                s.params.append(p)
        new.append(g)
    state.modules = list(state.modules) + [str(m).upper().removeprefix("FPM") for m in modules]
    state.weights = list(state.weights) + list(weights)
    state.refresh_links()
    return new


def _group_modules(state, n):
    mods = getattr(state, "modules", None)
    if mods is None or len(mods) < n:
        raise BadConfigError("the model does not record the module of its data groups", field="modules")
    return list(mods[:n])


def _ref_weights(state, r):
    return state.weights[r - 1]


def _norm_factor(source, component, w, w_r, presets, m):
    if source == "apbgd":
        return w.W / w_r.W
    if source == "fcxb":
        return w.total_area / w_r.total_area
    if source == "grxe":
        if w.G is None or w_r.G is None or not w_r.G > 0:
            raise BadRegionError(f"region {w.name or '?'} has no GRXE weight", field="grxe")
        return w.G / w_r.G
    if source == "intn":
        return _area_factor(w, w_r, presets.intn_ifactors[m], "intn")
    comp = next(c for c in presets.intbgd if c.name == component)
    return _area_factor(w, w_r, comp.ifactors[m], f"intbgd {component}")
