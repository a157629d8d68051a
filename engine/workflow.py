"""The method's later steps on in-memory objects: model, fit, transfer, prediction.

:class:`BackgroundAnalysis` holds the background spectra (:class:`~.model.folding.GroupData`),
the model (:class:`~.model.parameters.ModelState` built by
:func:`~.model.background.build_background_model`) and its folded, cached form. The CLI steps
(``fit``, ``spec``, ``simplify``, ``image``, ``predict``) and the widgets both drive it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import band_to_channels
from .errors import BadConfigError, BadFileError, FitError
from .model.background import (
    BackgroundOptions,
    RegionWeights,
    add_linked_groups,
    build_background_model,
    region_weights,
)
from .fit.degeneracy import degenerate_pairs, describe
from .fit.goodness import cstat_expectation
from .model.components import ApecShape
from .model.folding import DEFAULT_IGNORE, FoldedModel, GroupData
from .uncertainty import SYSTEMATIC_FRACTION, check_systematic, combine

__all__ = [
    "BackgroundAnalysis",
    "FitResult",
    "Prediction",
    "group_from_spectrum_file",
    "group_from_events",
    "read_projected_maps",
    "SYSTEMATIC_FRACTION",
    "DEGENERACY_THRESHOLD",
    "GOODNESS_WARN",
]

#: |correlation| between the apbgd and fcxb norms of a module above which the fit warns.
DEGENERACY_THRESHOLD = 0.9
#: (C-stat − expected)/σ above which the fit warns that the model misses something.
GOODNESS_WARN = 4.0


# ---------------------------------------------------------------------------------------------
# Building data groups
# ---------------------------------------------------------------------------------------------


def read_projected_maps(bgdap_path, det_paths, module=None):
    """Read ``bgdap<m>.fits`` and ``det{0..3}<m>im.fits`` into a ProjectedMaps."""
    from .io.fitsutil import read_fits
    from .maps.projection import ProjectedMaps

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
    mod = module or str(header.get("NSB_MOD", header.get("INSTRUME", ""))).upper().removeprefix("FPM") or None
    return ProjectedMaps(bgdap=bgdap, det=dets, header=header, module=mod, exposure=float(header.get("NSB_ASPE", 0)))


def _aperture_arf(module, fractions, rmf):
    """apbgd ARF aligned with ``rmf``: Be × DETABS mix with CALDB, else the Be window (be.arf)."""
    from .calibration.products import load_arf
    from .spectra.responses import caldb_available, region_arf

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
    from .calibration.products import load_arf, load_diag_rmf

    diag, _ = load_diag_rmf()
    ap, ap_src = _aperture_arf(module, weights.fractions, rmf)
    fcxb, fcxb_src = load_arf(f"fcxb{module}.arf", rmf)
    files = dict(files or {})
    files.setdefault("ap_arf_source", ap_src)
    return GroupData(name=name, module=module, counts=counts, exposure=exposure, rmf=rmf, diag=diag, ap_arf=ap,
                     fcxb_arf=fcxb, grouping=grouping, quality=quality, weights=weights, files=files)


def group_from_spectrum_file(spec_path, regions, grid, maps, *, name=None, rmf_cache=None):
    """A data group from a PHA file (its RESPFILE next to it) and its region on the projected maps.

    ``rmf_cache`` (a dict) shares one Response between spectra naming the same RESPFILE: a NuSTAR
    RMF is read once (≈ 1 s, 28 MB) and its folded templates are shared by the fit.
    """
    from .calibration.products import load_rmf
    from .io.ogip import read_pha, read_rmf

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
            rmf = read_rmf(rpath, module=spec.module)
            if rmf_cache is not None:
                rmf_cache[key] = rmf
        files["rmf"] = str(rpath)
    else:
        rmf, _ = load_rmf(spec.module)
        files["rmf"] = "nominal"
    w = region_weights(regions, grid, maps, name=name or spec_path.stem)
    return _group(name or spec_path.stem, spec.module, spec.counts, spec.exposure, rmf, w,
                  grouping=spec.grouping, quality=spec.quality, files=files)


def group_from_events(events, regions, grid, maps, *, name, group_min=None, rmf=None):
    """A data group straight from an event list and a region (no files): extract, group, respond."""
    from .spectra.extract import extract_spectrum
    from .spectra.grouping import group_min_counts
    from .spectra.responses import region_rmf

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


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(repr=False)
class FitResult:
    """Outcome of a background fit, with every parameter of every group."""

    statistic: str
    value: float
    dof: int
    converged: bool
    message: str
    parameters: list
    free: list
    covariance: np.ndarray
    backend: str = "native"
    method: str = ""
    n_iter: int = 0
    warnings: list = field(default_factory=list)
    apec: dict = field(default_factory=dict)
    #: Correlation of the apbgd and fcxb norms of each module's reference group (their degeneracy).
    degeneracy: dict = field(default_factory=dict)
    #: C-stat fits: the statistic a correct model gives on average at the fitted model, and its
    #: standard deviation (Kaastra 2017; :mod:`nuskybgd_engine.fit.goodness`). None for chi.
    expected: float | None = None
    expected_sigma: float | None = None

    @property
    def goodness(self):
        """``(value − expected)/expected_sigma``: beyond ~3 the model does not describe the data."""
        if self.expected is None or not self.expected_sigma:
            return None
        return (self.value - self.expected) / self.expected_sigma

    def error(self, source, index):
        return _std_error(self.covariance, self.free, (source, index))

    def correlation(self, a, b):
        i, j = self.free.index(a), self.free.index(b)
        c = self.covariance
        den = math.sqrt(c[i, i] * c[j, j]) if c[i, i] > 0 and c[j, j] > 0 else 0.0
        return float(c[i, j] / den) if den else float("nan")

    def to_dict(self):
        return {
            "statistic": self.statistic, "value": self.value, "dof": self.dof, "converged": self.converged,
            "message": self.message, "backend": self.backend, "method": self.method, "n_iter": self.n_iter,
            "warnings": list(self.warnings), "apec": dict(self.apec),
            "degeneracy": {m: (None if not np.isfinite(v) else v) for m, v in self.degeneracy.items()},
            "expected": self.expected, "expected_sigma": self.expected_sigma,
            "free": [f"{s}:p{k}" for s, k in self.free],
            "covariance": np.where(np.isfinite(self.covariance), self.covariance, None).tolist(),
            "parameters": self.parameters,
        }

    def __repr__(self):
        head = f"FitResult({self.statistic} = {self.value:.2f} for {self.dof} dof"
        if self.goodness is not None:
            head += f" (expected {self.expected:.1f} ± {self.expected_sigma:.1f})"
        lines = [f"{head}, {'converged' if self.converged else 'NOT converged'}; backend {self.backend})"]
        for p in self.parameters:
            if p["state"] == "free":
                lines.append(f"  {p['source']:>6}:p{p['index']:<4} g{p['group']} {p['component']:>10}.{p['name']:<8}"
                             f" {p['value']:.6g} ± {p['error']:.2g}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return "\n".join(lines)


def _std_error(covariance, free, key):
    """1σ error of free parameter ``key`` from the covariance (0 if not free, NaN if undetermined)."""
    if key not in free:
        return 0.0
    j = free.index(key)
    v = covariance[j, j]
    return float(math.sqrt(v)) if np.isfinite(v) and v >= 0 else float("nan")


@dataclass(repr=False)
class Prediction:
    """Predicted background counts of one region in one band: total and per component, with 1σ."""

    module: str
    band: tuple
    channels: tuple
    exposure: float
    components: dict
    total: float
    stat_error: float
    sys_error: float
    component_errors: dict
    systematic_fraction: float = SYSTEMATIC_FRACTION

    @property
    def stat_sys_error(self):
        """stat ⊕ sys (quadrature): the combined 1σ (see :mod:`~nuskybgd_engine.uncertainty`)."""
        return combine(self.stat_error, self.sys_error)

    #: Alias of :attr:`stat_sys_error` (older name).
    error = stat_sys_error

    def to_dict(self):
        """Every number named for what it is: ``stat_error``, ``sys_error`` and ``stat_sys_error``."""
        return {"module": self.module, "band_keV": list(self.band), "channels": list(self.channels),
                "exposure": self.exposure, "total": self.total, "stat_error": self.stat_error,
                "sys_error": self.sys_error, "stat_sys_error": self.stat_sys_error,
                "systematic_fraction": self.systematic_fraction, "components": self.components,
                "component_errors": self.component_errors}

    def __repr__(self):
        comps = ", ".join(f"{k} {v:.1f}" for k, v in self.components.items())
        return (f"Prediction(FPM{self.module} {self.band[0]:g}-{self.band[1]:g} keV: {self.total:.1f} counts ± "
                f"{self.stat_error:.1f} (stat) ± {self.sys_error:.1f} (sys, {100 * self.systematic_fraction:.2f} %); "
                f"stat ⊕ sys {self.stat_sys_error:.1f}; {comps})")


# ---------------------------------------------------------------------------------------------
# The analysis
# ---------------------------------------------------------------------------------------------


def _single_thread_blas():
    """One BLAS thread during fits: the matrices are small, and on a busy 2-core machine a
    multi-threaded BLAS made each product ~50× slower (measured in benchmarks/bench_model.py)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class BackgroundAnalysis:
    """Background spectra + the nuskybgd model, ready to fit, transfer and export.

    Parameters
    ----------
    groups : list of GroupData
        The background spectra in data-group order.
    presets : Presets, optional
        Default: :func:`~.model.presets.load_presets` (real ratios.json or the embedded copy).
    options : BackgroundOptions, optional
    apec_route : {'auto', 'pyxspec', 'standin'}
    ignore : (float, float)
    """

    def __init__(self, groups, presets=None, options=None, *, apec_route="auto", ignore=DEFAULT_IGNORE):
        from .model.presets import load_presets

        if not groups:
            raise BadConfigError("no background spectra", field="bgfiles")
        self.presets = presets or load_presets()
        self.options = options or BackgroundOptions()
        self.groups = list(groups)
        self.state = build_background_model([g.module for g in self.groups], [g.weights for g in self.groups],
                                            self.presets, self.options)
        self.apec = ApecShape(route=apec_route)
        self.model = FoldedModel(self.state, self.groups, apec=self.apec, ignore=ignore)
        self.result = None

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_bgdinfo(cls, bgdinfo, *, negative_norms=None, **kw):
        """From a ``bgdinfo.json`` (path or :class:`~.bgdinfo.BgdInfo`).

        ``negative_norms`` (bool) overrides the file's ``negative_norms`` (e.g. a saved fit's choice).
        """
        from .bgdinfo import BgdInfo, read_bgdinfo
        from .io.regions import RegionSet, SkyGrid

        info = bgdinfo if isinstance(bgdinfo, BgdInfo) else read_bgdinfo(bgdinfo)
        grid = SkyGrid.from_fits(info.refimgf)
        maps = {m: read_projected_maps(info.bgdapfiles[m], info.bgddetfiles[m], m) for m in info.bgdapfiles}
        groups = []
        rmf_cache = {}
        from .io.ogip import read_pha

        for i, (spec_path, reg_path) in enumerate(zip(info.bgfiles, info.regfiles)):
            m = info.modules[i] if info.modules is not None else read_pha(spec_path).module
            if m not in maps:
                raise BadConfigError(f"{spec_path.name} is FPM{m} but bgdapfiles has no {m} entry", path=info.path,
                                     field=f"bgdapfiles.{m}")
            groups.append(group_from_spectrum_file(spec_path, RegionSet.read_ds9(reg_path), grid, maps[m],
                                                   name=spec_path.name, rmf_cache=rmf_cache))
        if negative_norms is None:
            negative_norms = info.negative_norms
        options = BackgroundOptions(fcxb_links=list(info.fcxb_links), fix_line_ratios=info.fix_line_ratios,
                                    no_solar=info.no_solar, negative_norms=bool(negative_norms),
                                    solar_ratios=info.fix_solar_ratios)
        obj = cls(groups, options=options, **kw)
        obj.bgdinfo = info
        obj.grid = grid
        obj.maps = maps
        return obj

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, statistic="cstat", backend="native", *, max_iter=200, tol=1e-4):
        """Fit the free parameters; the model state is updated to the best fit.

        A fit that does not converge raises :class:`FitError` with the reason (and leaves the
        state at the last iterate, so the user can inspect it); it is never silently accepted.
        """
        from .fit.registry import get_backend

        if statistic not in ("cstat", "chi"):
            raise BadConfigError(f"statistic must be cstat or chi, got {statistic!r}", field="statistic")
        engine = get_backend(backend)
        with _single_thread_blas():
            return self._fit(engine, statistic, backend, max_iter=max_iter, tol=tol)

    def _fit(self, engine, statistic, backend, *, max_iter, tol):
        from .fit.native import GeneralProblem, LinearProblem

        if hasattr(engine, "fit_analysis"):
            result = engine.fit_analysis(self, statistic)
            self.result = result
            return result
        free = self.model.free()
        if not free:
            raise FitError("no free parameters", field="model")
        theta0 = np.array([self.state[s][k].value for s, k in free])
        lower = np.array([self.state[s][k].hard_min for s, k in free])
        upper = np.array([self.state[s][k].hard_max for s, k in free])
        names = [f"{s}:p{k}" for s, k in free]
        design = None
        if self.model.is_linear:
            data, design, offset, _free = self.model.linear_problem()  # same free parameters, same order
            problem = LinearProblem(data, design, offset, lower, upper, names=names)
            design = problem.design
        else:
            data = [self.model.binned_data(g) for g in range(1, len(self.groups) + 1)]

            def model_fn(theta):
                self.model.set_free_values(free, theta)
                return [self.model.binned_model(g) for g in range(1, len(self.groups) + 1)]

            problem = GeneralProblem(model_fn, data, lower, upper, theta0, names=names)
        out = engine.fit(problem, statistic, theta0, max_iter=max_iter, tol=tol)
        self.model.set_free_values(free, out.theta)
        result = self._result(out, free, statistic, backend, design=design)
        self.result = result
        if not out.converged:
            raise FitError(f"fit did not converge: {out.message}", field="fit")
        return result

    def _result(self, out, free, statistic, backend, design=None):
        """The FitResult of fit output ``out``; ``design``: the linear fit's design matrices, if at hand."""
        warnings = []
        if self.apec.evaluated_by != "pyxspec":
            warnings.append("apec evaluated with the bremss stand-in (no AtomDB); exported as bremss")
        from .spectra.responses import is_nominal_rmf

        nominal = [g.name for g in self.groups if is_nominal_rmf(g.rmf)]
        if nominal:
            warnings.append(f"{len(nominal)} of {len(self.groups)} spectra fitted with the embedded nominal RMF (no "
                            "CALDB, no RMF of the observation): the split into components is only as right as that "
                            "response (README: Accuracy); give the spectra their own RESPFILE or set $CALDB")
        cov = np.asarray(out.covariance, dtype=float)
        params = []
        for s in self.state:
            for k, p in enumerate(s.params, start=1):
                group = (k - 1) // s.n_par + 1
                err = _std_error(cov, free, (s.name, k))
                params.append({"source": s.name, "index": k, "group": group, "local": (k - 1) % s.n_par + 1,
                               "component": p.component, "name": p.name, "value": self.state.value(s.name, k),
                               "error": err, "frozen": p.frozen, "state": p.state,
                               "link": str(p.link) if p.link else None})
        res = FitResult(statistic=statistic, value=float(out.stat), dof=int(out.dof), converged=bool(out.converged),
                        message=out.message, parameters=params, free=list(free), covariance=cov, backend=backend,
                        method=out.method, n_iter=int(out.n_iter), warnings=warnings,
                        apec=self.apec.xspec_component())
        if out.singular:
            warnings.append("some parameters are not constrained (singular covariance): freeze or link them")
        if statistic == "cstat":
            models = [self.model.binned_model(g) for g in range(1, len(self.groups) + 1)]
            if self.model.is_linear:
                if design is None:  # fitted elsewhere (pyxspec): the design does not depend on the values
                    design = self.model.linear_problem()[1]
                # Norms inside their limits satisfy the likelihood equations the variance correction uses.
                inside = [j for j, (s, k) in enumerate(free)
                          if self.state[s][k].hard_min < self.state[s][k].value < self.state[s][k].hard_max]
                res.expected, res.expected_sigma = cstat_expectation(models, [x[:, inside] for x in design])
            else:  # shape parameters free: Kaastra's fixed-model spread (larger), mean lowered by p
                res.expected, res.expected_sigma = cstat_expectation(models)
                res.expected -= len(free)
            if res.goodness is not None and res.goodness > GOODNESS_WARN:
                warnings.append(f"C-stat {res.value:.1f} is {res.goodness:.1f}σ above the {res.expected:.1f} ± "
                                f"{res.expected_sigma:.1f} a correct model gives: the model misses something "
                                "(a source in a background region? see the residuals)")
        warnings += [describe(p, self.state) for p in degenerate_pairs(cov, free, self.state)]
        negative = [f"{s}:p{k}" for s, k in free if self.state[s][k].is_norm and self.state.value(s, k) < 0]
        if negative:
            warnings.append(f"{len(negative)} norm(s) fitted below 0 (limits opened): {', '.join(negative)}")
        for m in sorted(set(self.state.modules)):
            r = self.state.modules.index(m) + 1
            a, f = ("apbgd", self.state["apbgd"].index(r, 3)), ("fcxb", self.state["fcxb"].index(r, 3))
            if a in free and f in free:
                rho = res.correlation(a, f)
                res.degeneracy[m] = float(rho)
                if np.isfinite(rho) and abs(rho) > DEGENERACY_THRESHOLD:
                    warnings.append(f"FPM{m}: apbgd and fcxb norms are degenerate (correlation {rho:+.2f}); "
                                    "add regions spanning the aperture gradient or link/freeze fcxb")
            if f in free:
                e = res.error(*f)
                v = self.state.value(*f)
                if v > 0 and np.isfinite(e) and e / v > 0.5:
                    warnings.append(f"FPM{m}: fcxb norm poorly constrained ({v:.3g} ± {e:.2g})")
        return res

    # -- evaluation for display ------------------------------------------------------------------

    def spectra_for_plot(self, g):
        """Binned energies, data, errors, total and per-source model of group ``g`` (noticed bins)."""
        b = self.model.binning[g - 1]
        group = self.groups[g - 1]
        per = {k: b.bin(v) for k, v in self.model.source_counts(g).items()}
        data = b.bin(group.counts)
        total = sum(per.values())
        width = (b.e_hi - b.e_lo)[b.noticed]
        return {"e_lo": b.e_lo[b.noticed], "e_hi": b.e_hi[b.noticed], "width": width, "data": data,
                "error": np.sqrt(np.maximum(data, 1.0)), "model": total, "sources": per,
                "exposure": group.exposure}

    def statistic_value(self, statistic="cstat"):
        from .fit.statistics import get_statistic

        stat = get_statistic(statistic)
        total = 0.0
        for g in range(1, len(self.groups) + 1):
            total += float(stat.value(self.model.binned_data(g), self.model.binned_model(g)))
        return total

    # -- transfer ------------------------------------------------------------------------------------

    def predict(self, weights, *, band=(3.0, 20.0), exposure=None, systematic=None):
        """Predicted background counts in a region (its :class:`RegionWeights`) and band.

        The region's norms are the fitted reference norms times the geometric factors of
        :func:`~.model.background.add_linked_groups` (fcxb at the fitted surface brightness); the
        spectrum is folded through the module reference's responses for ``exposure`` (default:
        the reference spectrum's). The statistical error propagates the fit covariance (the
        prediction is linear in the free norms); the systematic floor ``systematic`` × total (default
        :data:`~nuskybgd_engine.uncertainty.SYSTEMATIC_FRACTION`, Wik et al. 2014) is reported
        separately, and ``stat_sys_error`` combines the two in quadrature.
        """
        if not isinstance(weights, RegionWeights):
            raise BadConfigError("weights must be RegionWeights (see region_weights)", field="region")
        systematic = check_systematic(systematic)
        if self.result is None:
            raise FitError("fit the background before predicting (no covariance yet)", field="fit")
        m = weights.module
        if m not in self.state.modules:
            raise BadConfigError(f"no FPM{m} spectrum was fitted", field="module")
        lo, hi = band_to_channels(*band)
        r = self.state.modules.index(m) + 1
        ref = self.groups[r - 1]
        exposure = float(exposure if exposure is not None else ref.exposure)
        if not exposure > 0:
            raise BadConfigError("exposure must be > 0", field="exposure")
        state = self.state.copy()
        (g_new,) = add_linked_groups(state, [m], [weights], self.presets, fcxb="linked")
        virtual = GroupData(name="prediction", module=m, counts=np.zeros_like(ref.counts), exposure=exposure,
                            rmf=ref.rmf, diag=ref.diag, ap_arf=ref.ap_arf, fcxb_arf=ref.fcxb_arf,
                            weights=weights)
        model = FoldedModel(state, self.groups + [virtual], apec=self.apec, ignore=self.model.ignore)
        # The virtual group uses the reference's responses: share the folded templates.
        model.share_cache(self.model)
        free = self.result.free
        column = {key: j for j, key in enumerate(free)}
        comps, grads = {}, {}
        for source, _c, tpl, inorm in model.components(g_new):
            counts = float(tpl[lo:hi + 1].sum())
            factor, rs, ri = state.root(source, inorm)
            comps[source] = comps.get(source, 0.0) + counts * state.value(source, inorm)
            g = grads.setdefault(source, np.zeros(len(free)))
            if (rs, ri) in column:
                g[column[(rs, ri)]] += factor * counts
        cov = np.nan_to_num(self.result.covariance)
        total_grad = sum(grads.values())
        stat = float(math.sqrt(max(total_grad @ cov @ total_grad, 0.0)))
        comp_err = {k: float(math.sqrt(max(v @ cov @ v, 0.0))) for k, v in grads.items()}
        total = float(sum(comps.values()))
        return Prediction(module=m, band=(float(band[0]), float(band[1])), channels=(lo, hi), exposure=exposure,
                          components=comps, total=total, stat_error=stat, sys_error=systematic * total,
                          component_errors=comp_err, systematic_fraction=systematic)

    def __repr__(self):
        mods = "".join(g.module for g in self.groups)
        return f"BackgroundAnalysis({len(self.groups)} spectra [{mods}], {self.state})"


def replace_group(analysis, g, group):
    """Swap data group ``g`` (1-based) for ``group`` (e.g. after its region moved), keeping the fit.

    The model is rebuilt from the new weights (link factors change with the region) and every
    free parameter keeps its current value; folded templates are reused when the responses are
    the same objects. Cost: region extraction aside, a few milliseconds.
    """
    if not 1 <= g <= len(analysis.groups):
        raise BadConfigError(f"data group {g} not in 1..{len(analysis.groups)}", field="group")
    if group.module != analysis.groups[g - 1].module:
        raise BadConfigError(f"group {g} is FPM{analysis.groups[g - 1].module}; the new one is FPM{group.module}",
                             field="module")
    old = analysis.state
    groups = list(analysis.groups)
    groups[g - 1] = group
    state = build_background_model([x.module for x in groups], [x.weights for x in groups], analysis.presets,
                                   analysis.options)
    for s in old:
        new_src = state[s.name]
        for k, p in enumerate(s.params, start=1):
            q = new_src[k]
            q.frozen = p.frozen
            # Limits the user set (e.g. negative norms from a hand-edited xcm) survive the rebuild.
            q.hard_min, q.soft_min, q.soft_max, q.hard_max = p.hard_min, p.soft_min, p.soft_max, p.hard_max
            if p.link is None and q.link is None:
                q.value = p.value
    state.refresh_links()
    folded = FoldedModel(state, groups, apec=analysis.apec, ignore=analysis.model.ignore)
    folded.share_cache(analysis.model)  # same responses: keep the folded templates
    analysis.groups, analysis.state, analysis.model = groups, state, folded
    analysis.result = None
    return analysis


# ---------------------------------------------------------------------------------------------
# Files for XSPEC: spectra, responses and the auxiliary responses next to an .xcm
# ---------------------------------------------------------------------------------------------


def _numbered(path):
    """``path`` if free, else ``stem2.ext``, ``stem3.ext`` … (never overwrite a user's file)."""
    path = Path(path)
    if not path.exists():
        return path
    for n in range(2, 10000):
        cand = path.with_name(f"{path.stem}{n}{path.suffix}")
        if not cand.exists():
            return cand
    raise BadFileError("no free numbered name", path=path)


def _same_content(path, arrays):
    """True when the FITS file at ``path`` holds exactly ``arrays`` (so it can be reused)."""
    from .io.fitsutil import read_fits

    try:
        hdul = read_fits(path)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not reusable
        return False
    for name, values in arrays.items():
        for h in hdul:
            if h.data is not None and hasattr(h, "columns") and name in h.columns.names:
                col = np.asarray(h.data[name], float)
                if col.shape != values.shape or not np.array_equal(col, values):
                    return False
                break
        else:
            return False
    return True


def _same_response(path, resp):
    """True when the RMF file at ``path`` has the same grid and matrix as ``resp``."""
    from .io.ogip import read_rmf

    try:
        other = read_rmf(path)
    except Exception:  # noqa: BLE001 - unreadable: not reusable
        return False
    return (other.matrix.shape == resp.matrix.shape and np.array_equal(other.energ_lo, resp.energ_lo)
            and np.array_equal(other.e_min, resp.e_min) and abs(other.matrix - resp.matrix).max() == 0)


class ExportWriter:
    """Writes the files an ``.xcm`` needs into one directory, each distinct content once.

    Real auxiliary files are referenced by absolute path; nominal (in-memory) responses and
    in-memory spectra are written next to the ``.xcm``. Existing files are never overwritten:
    an identical file is reused, a different one gets a numbered name.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise BadFileError("output directory does not exist", path=self.directory)
        self.written = []
        self._cache = {}

    def _rel(self, path):
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.directory.resolve()))
        except ValueError:
            return str(path.resolve())

    def arf(self, name, values, module=None):
        key = ("arf", name, hash(np.asarray(values).tobytes()))
        if key in self._cache:
            return self._cache[key]
        from .calibration import resolve
        from .io.ogip import Arf, write_arf
        from .constants import channel_edges

        found = resolve(name) if name in ("be.arf", "fcxbA.arf", "fcxbB.arf") else None
        if found is not None and found.path is not None:
            out = str(Path(found.path).resolve())
        else:
            edges = channel_edges()
            target = self.directory / name
            if target.exists() and _same_content(target, {"SPECRESP": np.asarray(values, float)}):
                out = name
            else:
                target = _numbered(target)
                arf = Arf(energ_lo=edges[:-1], energ_hi=edges[1:], specresp=np.asarray(values, float),
                          module=module,
                          header={"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}" if module else "NONE"})
                write_arf(arf, target)
                self.written.append(target)
                out = target.name
        self._cache[key] = out
        return out

    def response(self, resp, name):
        key = ("rmf", id(resp))
        if key in self._cache:
            return self._cache[key]
        from .io.ogip import write_rmf

        path = getattr(resp, "path", None)
        target = self.directory / name
        if path and Path(path).is_file():
            out = self._rel(path)
        elif target.exists() and _same_response(target, resp):
            out = name
        else:
            target = _numbered(target)
            write_rmf(resp, target)
            self.written.append(target)
            out = target.name
        self._cache[key] = out
        return out

    def spectrum(self, group, stem):
        src = group.files.get("spectrum")
        if src and Path(src).is_file():
            return self._rel(src)
        from .io.ogip import Spectrum, write_pha

        target = self.directory / f"{stem}_sr.pha"
        if target.exists() and _same_content(target, {"COUNTS": np.rint(group.counts)}):
            return target.name
        target = _numbered(target)
        spec = Spectrum(channel=np.arange(group.counts.size), counts=np.rint(group.counts).astype(np.int64),
                        exposure=group.exposure, backscal=1.0, module=group.module, grouping=group.grouping,
                        quality=group.quality, header={"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{group.module}"})
        write_pha(spec, target)
        self.written.append(target)
        return target.name


def group_files(analysis, writer, groups=None):
    """Per-group file names (spectrum, rmf, ap_arf, fcxb_arf, diag) for an .xcm, writing what is missing."""
    out = []
    for g in groups or analysis.groups:
        stem = Path(str(g.name)).name.split(".")[0] or "spec"
        rmf = writer.response(g.rmf, f"nominal{g.module}.rmf" if getattr(g.rmf, "path", None) is None
                              and g.rmf.header.get("NOMINAL") else f"{stem}_sr.rmf")
        ap_name = "be.arf" if g.files.get("ap_arf_source") != "caldb" else f"{stem}_sr_nsb.arf"
        out.append({"spectrum": writer.spectrum(g, stem), "rmf": rmf,
                    "ap_arf": writer.arf(ap_name, g.ap_arf, g.module),
                    "fcxb_arf": writer.arf(f"fcxb{g.module}.arf", g.fcxb_arf, g.module),
                    "diag": writer.response(g.diag, "diag.rmf")})
    return out


# ---------------------------------------------------------------------------------------------
# Saving and restoring fits, and the XSPEC exports (fit, spec, simplify)
# ---------------------------------------------------------------------------------------------


def export_fit_xcm(analysis, path, *, statistic=None, overwrite=False):
    """Write the background model as an ``.xcm`` (and any response it needs) next to ``path``.

    Returns the list of files written (the ``.xcm`` first). File names inside the ``.xcm`` are
    relative to its directory (start XSPEC there) or absolute for real calibration files.
    """
    from .io.fitsutil import atomic_output
    from .model.xcm_model import state_to_session
    from .xcm import format_xcm

    path = Path(path)
    statistic = statistic or (analysis.result.statistic if analysis.result else "chi")
    writer = ExportWriter(path.parent)
    files = group_files(analysis, writer)
    session = state_to_session(analysis.state, files, statistic=statistic, apec=analysis.apec.xspec_component(),
                               ignore=analysis.model.ignore,
                               comments=[f"nuskybgd-widgets background model ({len(files)} spectra); paths are "
                                         "relative to this file's directory"])
    text = format_xcm(session)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return [path] + writer.written


def save_fit_json(analysis, path, *, overwrite=False):
    """``NAME.json``: statistic, value, dof and every parameter (source, group, name, value, error,
    frozen, link), plus what is needed to restore the fit (bgdinfo path, covariance)."""
    import json

    from .io.fitsutil import atomic_output

    if analysis.result is None:
        raise FitError("no fit to save", field="fit")
    data = analysis.result.to_dict()
    info = getattr(analysis, "bgdinfo", None)
    data["bgdinfo"] = str(info.path.resolve()) if info is not None else None
    data["spectra"] = [g.name for g in analysis.groups]
    data["modules"] = [g.module for g in analysis.groups]
    data["options"] = {"fcxb_links": [list(p) for p in analysis.options.fcxb_links],
                       "fix_line_ratios": analysis.options.fix_line_ratios, "no_solar": analysis.options.no_solar,
                       "negative_norms": analysis.options.negative_norms,
                       "solar_ratios": analysis.options.solar_ratios}
    data["ignore"] = list(analysis.model.ignore)
    # An undetermined parameter has error NaN (and NaN covariance, already None in to_dict): JSON
    # has no NaN, so write null (json.dumps(allow_nan=False) would raise a raw ValueError).
    data["parameters"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in p.items()}
                          for p in data["parameters"]]
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=1, allow_nan=False, default=float) + "\n")
    return Path(path)


def load_fit_json(path):
    """Restore a fit saved by :func:`save_fit_json`: the analysis (from its bgdinfo) at the fitted values."""
    from .io.jsonfile import read_json

    path = Path(path)
    data = read_json(path, not_found="fit file not found", invalid="not a valid fit JSON ({exc})")
    for key in ("bgdinfo", "parameters", "free", "covariance", "statistic", "value", "dof"):
        if key not in data:
            raise BadConfigError("required key missing (not a `nuskybgd fit --run` result?)", path=path, field=key)
    if not data["bgdinfo"]:
        raise BadConfigError("the fit was not made from a bgdinfo.json; cannot restore its spectra", path=path,
                             field="bgdinfo")
    opts = data.get("options", {})
    negative_norms = bool(opts.get("negative_norms", False))
    analysis = BackgroundAnalysis.from_bgdinfo(data["bgdinfo"], negative_norms=negative_norms)
    # Record the options of the fit (the check of the free parameters below catches a bgdinfo.json
    # whose other options no longer give the fitted model).
    analysis.options = BackgroundOptions(fcxb_links=[tuple(p) for p in opts.get("fcxb_links", [])],
                                         fix_line_ratios=opts.get("fix_line_ratios", False),
                                         no_solar=opts.get("no_solar", False), negative_norms=negative_norms,
                                         solar_ratios=opts.get("solar_ratios", False))
    if [g.name for g in analysis.groups] != data.get("spectra", [g.name for g in analysis.groups]):
        raise BadConfigError("the spectra of the bgdinfo.json differ from the fitted ones", path=path,
                             field="spectra")
    try:
        for p in data["parameters"]:
            par = analysis.state[p["source"]][int(p["index"])]
            par.frozen = bool(p["frozen"])
            if p["state"] == "free" or (p["state"] == "frozen" and p["link"] is None):
                par.link = None
                par.value = float(p["value"])
        free = []
        for text in data["free"]:
            src, k = text.split(":p")
            free.append((src, int(k)))
        cov = np.array([[np.nan if v is None else v for v in row] for row in data["covariance"]], dtype=float)
    except (KeyError, ValueError, TypeError) as exc:
        raise BadConfigError(f"malformed parameter table ({exc})", path=path, field="parameters") from None
    analysis.model.refresh_links()
    if cov.shape != (len(free), len(free)):
        raise BadConfigError("covariance does not match the free parameters", path=path, field="covariance")
    # The model is rebuilt from the bgdinfo.json: if that file changed since the fit (links, fixed
    # line ratios, spectra), the covariance no longer belongs to the model's free parameters.
    if analysis.state.free_parameters() != free:
        raise BadConfigError("the model built from the bgdinfo.json does not have the fitted free parameters "
                             "(was bgdinfo.json edited after the fit?)", path=path, field="free")
    for p in data["parameters"]:
        if p.get("error") is None:
            p["error"] = float("nan")
    analysis.result = FitResult(statistic=data["statistic"], value=float(data["value"]), dof=int(data["dof"]),
                                converged=bool(data.get("converged", True)), message=data.get("message", ""),
                                parameters=data["parameters"], free=free, covariance=cov,
                                backend=data.get("backend", "native"), warnings=list(data.get("warnings", [])),
                                apec=data.get("apec", {}), expected=data.get("expected"),
                                expected_sigma=data.get("expected_sigma"))
    return analysis


def spec_export(analysis, source_groups, path, *, statistic=None, overwrite=False):
    """nuskybgd's ``spec`` (§2.10): the fitted model plus source spectra whose background is linked.

    ``source_groups`` are GroupData of the source regions (their weights on the projected maps);
    each gets every background parameter linked to its module's fitted reference (geometric
    factors as in the fit), except fcxb: a free norm at the nominal value, as nuskybgd-py does.
    The source's own apbgd ARF uses *its* detector fractions (fixing §7 item 1).
    """
    from .io.fitsutil import atomic_output
    from .model.xcm_model import state_to_session
    from .xcm import format_xcm

    state = analysis.state.copy()
    add_linked_groups(state, [g.module for g in source_groups], [g.weights for g in source_groups],
                      analysis.presets, fcxb="nominal")
    writer = ExportWriter(Path(path).parent)
    files = group_files(analysis, writer) + group_files(analysis, writer, source_groups)
    statistic = statistic or (analysis.result.statistic if analysis.result else "chi")
    session = state_to_session(state, files, statistic=statistic, apec=analysis.apec.xspec_component(),
                               ignore=analysis.model.ignore,
                               comments=[f"background of {', '.join(g.name for g in source_groups)} linked to the "
                                         f"fit of {len(analysis.groups)} background spectra (nuskybgd spec)"])
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(format_xcm(session))
    return [Path(path)] + writer.written


def simplify_session(session, n_drop):
    """nuskybgd's ``simplify`` (§2.11) on an XCM session: drop the first ``n_drop`` data groups,
    evaluate every link numerically first, and freeze every background parameter left."""
    from .xcm import DataEntry, ParamLine, ResponseEntry, XcmSession, make_block, resolve_values

    n = session.n_groups
    if not 0 < n_drop < n:
        raise BadConfigError(f"cannot drop {n_drop} of {n} data groups (the source spectra must remain)",
                             field="n_drop")
    values = resolve_values(session)
    out = XcmSession(settings=dict(session.settings), ignore=list(session.ignore), notice=list(session.notice),
                     comments=list(session.comments) + [f"simplified: background spectra 1-{n_drop} removed, "
                                                        "background parameters frozen at their values"])
    keep = range(n_drop + 1, n + 1)
    renum = {g: i for i, g in enumerate(keep, start=1)}
    out.data = [DataEntry(renum[d.group], renum[d.spectrum], d.file) for d in session.data if d.group in renum]
    out.backgrounds = {renum[k]: v for k, v in session.backgrounds.items() if k in renum}
    out.responses = [ResponseEntry(r.source, renum[r.spectrum], r.file) for r in session.responses
                     if r.spectrum in renum]
    out.arfs = [ResponseEntry(r.source, renum[r.spectrum], r.file) for r in session.arfs if r.spectrum in renum]
    for block in session.models:
        params = []
        for g in keep:
            for k in range(1, block.n_params_per_group + 1):
                idx = block.global_index(g, k)
                line = block.params[idx - 1]
                delta = abs(line.delta) if isinstance(line, ParamLine) and line.delta else 0.01
                params.append(ParamLine(float(values[(block.key, idx)]), -delta))
        out.models.append(make_block(block.source, block.name, block.expression, params,
                                     component_sizes=block.component_sizes))
    return out


def background_images(analysis, band, modules=None):
    """Model background images (counts per sky pixel in ``band`` for each module's reference
    spectrum exposure), nuskybgd's ``image`` (§2.12) with the fcxb image per module.

    ``modules``: the modules ('A', 'B') to compute (those fitted among them); default all fitted.

    Returns
    -------
    dict
        ``{module: {"apbgd", "intbgd", "intn", "fcxb", "total": ndarray}}`` on the maps' grid.
    """
    maps = getattr(analysis, "maps", None)
    if not maps:
        raise BadConfigError("the analysis has no projected maps (build it with from_bgdinfo or give maps)",
                             field="maps")
    lo, hi = band_to_channels(*band)
    out = {}
    todo = sorted(set(analysis.state.modules))
    if modules is not None:
        wanted = set(modules)
        todo = [m for m in todo if m in wanted]
    for m in todo:
        r = analysis.state.modules.index(m) + 1
        w_r = analysis.state.weights[r - 1]
        mp = maps[m]
        det = [np.asarray(d) for d in mp.det]
        per = {"apbgd": 0.0, "intbgd": 0.0, "intn": 0.0, "fcxb": 0.0}
        counts = {}
        for source, cname, tpl, inorm in analysis.model.components(r):
            c = float(tpl[lo:hi + 1].sum()) * analysis.state.value(source, inorm)
            counts[(source, cname)] = c
        # apbgd: the aperture map scaled so the reference region holds its counts.
        per["apbgd"] = mp.bgdap * (sum(v for (s, _), v in counts.items() if s == "apbgd") / w_r.W)
        # intbgd/intn: per-detector flat, distributed with the component's detector factors.
        for source in ("intbgd", "intn"):
            img = np.zeros_like(mp.bgdap)
            for (s, cname), c in counts.items():
                if s != source:
                    continue
                if s == "intn":
                    fac = analysis.presets.intn_ifactors[m]
                else:
                    fac = next(x for x in analysis.presets.intbgd if x.name == cname).ifactors[m]
                den = float(np.dot(fac, w_r.A))
                if den > 0:
                    for n in range(4):
                        img += det[n] * (c * fac[n] / den)
            per[source] = img
        # fcxb: flat over the detector area, at the mean fitted surface brightness of this module.
        groups = [g for g in range(1, len(analysis.groups) + 1) if analysis.state.modules[g - 1] == m]
        rate = sum(sum(float(t[lo:hi + 1].sum()) * analysis.state.value(s, i)
                       for s, _c, t, i in analysis.model.components(g) if s == "fcxb") / analysis.groups[g - 1].exposure
                   for g in groups)  # counts/s of all regions (each at its own exposure)
        tot_a = sum(analysis.state.weights[g - 1].total_area for g in groups)
        per["fcxb"] = sum(det) * (rate * analysis.groups[r - 1].exposure / tot_a if tot_a > 0 else 0.0)
        per["total"] = sum(per[k] for k in ("apbgd", "intbgd", "intn", "fcxb"))
        out[m] = per
    return out


def analysis_from_xcm(bgdinfo, xcm_path):
    """The analysis of ``bgdinfo`` at the parameter values of a (possibly hand-edited) ``.xcm``.

    The file is parsed, never executed (Tcl is refused); its data groups must be the bgdinfo
    spectra in order (matched by file name), and its background sources must have the structure
    nuskybgd builds (the bremss stand-in for apec is recognised). Values, frozen states and links
    of the file replace the presets. There is no covariance: ``predict`` needs a fit.
    """
    from .model.xcm_model import session_to_state
    from .xcm import read_xcm

    analysis = BackgroundAnalysis.from_bgdinfo(bgdinfo)
    session = read_xcm(xcm_path)
    names = [Path(d.file).name for d in sorted(session.data, key=lambda d: d.spectrum)]
    want = [Path(g.name).name for g in analysis.groups]
    if names[: len(want)] != want or len(names) != len(want):
        raise BadConfigError(f"its spectra {names} are not the bgdinfo spectra {want}", path=xcm_path, field="data")
    state = session_to_state(session)
    for s in analysis.state:
        other = state[s.name]
        if other.n_par != s.n_par or other.n_groups != s.n_groups or \
                [t for _c, t in other.components] != [t for _c, t in s.components]:
            raise BadConfigError(f"model {s.name} does not have nuskybgd's structure ({other.expression})",
                                 path=xcm_path, field=f"model {s.name}")
    state.modules, state.weights = analysis.state.modules, analysis.state.weights
    analysis.state = state
    analysis.model = FoldedModel(state, analysis.groups, apec=analysis.apec, ignore=analysis.model.ignore)
    return analysis


def load_fit(path, bgdinfo=None):
    """A fitted analysis from ``NAME.json`` (with covariance) or from an ``.xcm`` plus its bgdinfo.json."""
    path = Path(path)
    if path.suffix.lower() == ".xcm":
        if bgdinfo is None:
            raise BadConfigError("an .xcm needs the bgdinfo.json it was made from", path=path, field="bgdinfo")
        return analysis_from_xcm(bgdinfo, path)
    return load_fit_json(path)
