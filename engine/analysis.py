"""The background analysis: spectra + the nuskybgd model, fitted, transferred to any region.

:class:`BackgroundAnalysis` holds the background spectra (:class:`~.model.folding.GroupData`,
built by :mod:`.groups`), the model (:class:`~.model.parameters.ModelState` built by
:func:`~.model.background.build_background_model`) and its folded, cached form; it fits
(:mod:`.fit` backends) and predicts the background of any region (:class:`~.results.Prediction`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from .bgdinfo import BgdInfo, observation_subset, read_bgdinfo
from .constants import band_to_channels
from .errors import BadConfigError, FitError
from .fit.degeneracy import degenerate_pairs, describe
from .fit.goodness import cstat_expectation
from .fit.native import GeneralProblem, LinearProblem
from .fit.registry import get_backend
from .fit.statistics import get_statistic
from .idl import apply_bgdinfo_options
from .groups import group_from_spectrum_file, read_projected_maps
from .io.ogip import read_pha
from .io.regions import RegionSet
from .io.regions import grid_from_fits
from .model.background import BackgroundOptions, RegionWeights, add_linked_groups, build_background_model
from .model.components import ApecShape
from .model.joint import ObservationLinks
from .model.folding import DEFAULT_IGNORE, FoldedModel, GroupData
from .model.presets import load_presets
from .model.tablemodel import register_grxe_table
from .results import FitResult, Prediction, std_error
from .spectra.responses import is_nominal_rmf
from .uncertainty import check_systematic

__all__ = ["BackgroundAnalysis", "ObservationView", "replace_group", "DEGENERACY_THRESHOLD", "GOODNESS_WARN"]

#: |correlation| between the apbgd and fcxb norms of a module above which the fit warns.
DEGENERACY_THRESHOLD = 0.9
#: (C-stat − expected)/σ above which the fit warns that the model misses something.
GOODNESS_WARN = 4.0


@dataclass(frozen=True)
class ObservationView:
    """The sky grid and projected maps (``{module: ProjectedMaps}``) of one observation of an analysis."""

    grid: object
    maps: dict


def _single_thread_blas():
    """One BLAS thread during fits: the matrices are small, and on a busy 2-core machine a
    multi-threaded BLAS made each product ~50× slower (measured in benchmarks/bench_model.py)."""
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
    joint : ObservationLinks, optional
        The observation of each group and what observations share (several observations in one model).
    """

    def __init__(self, groups, presets=None, options=None, *, apec_route="auto", ignore=DEFAULT_IGNORE, joint=None):
        if not groups:
            raise BadConfigError("no background spectra", field="bgfiles")
        self.presets = presets or load_presets()
        self.options = options or BackgroundOptions()
        self.groups = list(groups)
        self.state = build_background_model([g.module for g in self.groups], [g.weights for g in self.groups],
                                            self.presets, self.options)
        self.joint = joint
        if joint is not None:  # several observations: what they share (model/joint.py)
            joint.apply(self.state)
        #: ``{key: ObservationView}`` of a several-observation analysis (grid and maps of each), else None.
        self.observations = None
        #: The observation :meth:`use_observation` selected (regions, predictions, images refer to it).
        self.selected = None
        self.apec = ApecShape(route=apec_route)
        self.model = FoldedModel(self.state, self.groups, apec=self.apec, ignore=ignore)
        self.result = None

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_bgdinfo(cls, bgdinfo, *, negative_norms=None, obs=None, **kw):
        """From a ``bgdinfo.json`` (path or :class:`~.bgdinfo.BgdInfo`).

        ``negative_norms`` (bool) overrides the file's ``negative_norms`` (e.g. a saved fit's choice).
        ``obs``: only that observation of a several-observation file (:func:`~.bgdinfo.observation_subset`).
        """
        info = bgdinfo if isinstance(bgdinfo, BgdInfo) else read_bgdinfo(bgdinfo)
        if obs is not None:
            info = observation_subset(info, obs)
        blocks = info.observations or [info]
        if any(b.grxefiles for b in blocks):
            register_grxe_table()  # before the model is built: source 6 uses atable{polarmodel.fits}
        groups, views = [], {}
        rmf_cache = {}
        for b in blocks:
            grid = grid_from_fits(b.refimgf)
            maps = {m: read_projected_maps(b.bgdapfiles[m], b.bgddetfiles[m], m, b.grxefiles.get(m))
                    for m in b.bgdapfiles}
            views[getattr(b, "key", None)] = ObservationView(grid, maps)
            for spec_path, reg_path in zip(b.bgfiles, b.regfiles):
                i = len(groups)
                m = info.modules[i] if info.modules is not None else read_pha(spec_path).module
                if m not in maps:
                    raise BadConfigError(f"{spec_path.name} is FPM{m} but bgdapfiles has no {m} entry",
                                         path=info.path, field=f"bgdapfiles.{m}")
                groups.append(group_from_spectrum_file(spec_path, RegionSet.read_ds9(reg_path), grid, maps[m],
                                                       name=spec_path.name, rmf_cache=rmf_cache))
        options = BackgroundOptions.from_bgdinfo(info, negative_norms)
        joint = None
        if info.observations is not None:
            joint = ObservationLinks(tuple(info.group_observations), internal=info.internal, fcxb=info.fcxb_across,
                                     regions=tuple(str(p.resolve()) for p in info.regfiles))
        obj = cls(groups, options=options, joint=joint, **kw)
        apply_bgdinfo_options(obj, info)  # IDL fitab's fixap/fixfcxb/tieap
        obj.bgdinfo = info
        first = next(iter(views.values()))
        obj.grid, obj.maps = first.grid, first.maps
        if joint is not None:
            obj.observations = views
        return obj

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, statistic="cstat", backend="native", *, max_iter=200, tol=1e-4, on_optimum=None):
        """Fit the free parameters; the model state is updated to the best fit.

        A fit that does not converge raises :class:`FitError` with the reason (and leaves the
        state at the last iterate, so the user can inspect it); it is never silently accepted.
        ``on_optimum(FitOutput)`` (native backend) is called as soon as the fitted values are set,
        before errors, goodness and warnings are derived: a dashboard shows the statistic first.
        """
        if statistic not in ("cstat", "chi"):
            raise BadConfigError(f"statistic must be cstat or chi, got {statistic!r}", field="statistic")
        engine = get_backend(backend)
        with _single_thread_blas():
            return self._fit(engine, statistic, backend, max_iter=max_iter, tol=tol, on_optimum=on_optimum)

    def _fit(self, engine, statistic, backend, *, max_iter, tol, on_optimum=None):
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
        if on_optimum is not None:
            on_optimum(out)
        result = self.result_from_fit(out, free, statistic, backend, design=design)
        self.result = result
        if not out.converged:
            raise FitError(f"fit did not converge: {out.message}", field="fit")
        return result

    def result_from_fit(self, out, free, statistic, backend, design=None):
        """The :class:`FitResult` of a fit backend's output (errors, goodness, degeneracy warnings).

        Called by :meth:`fit` and by backends that fit elsewhere (``fit/pyxspec``) after they set
        the fitted values on the model.

        Parameters
        ----------
        out : FitOutput
            The backend's output (theta, statistic, covariance, ...).
        free : list of (source, index)
            The free parameters, in the order of ``out.theta``.
        statistic : {'cstat', 'chi'}
        backend : str
            Name recorded in the result.
        design : list of ndarray, optional
            The linear fit's design matrices, if at hand (else recomputed for C-stat expectations).

        Returns
        -------
        FitResult
        """
        warnings = []
        if self.apec.evaluated_by != "pyxspec":
            warnings.append("apec evaluated with the bremss stand-in (no AtomDB); exported as bremss")
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
                err = std_error(cov, free, (s.name, k))
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
                res.expected, res.expected_sigma = cstat_expectation(models, design, columns=inside)
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
        stat = get_statistic(statistic)
        total = 0.0
        for g in range(1, len(self.groups) + 1):
            total += float(stat.value(self.model.binned_data(g), self.model.binned_model(g)))
        return total

    # -- transfer ------------------------------------------------------------------------------------

    def predict(self, weights, *, band=(3.0, 20.0), exposure=None, systematic=None, obs=None):
        """Predicted background counts in a region (its :class:`RegionWeights`) and band.

        The region's norms are the fitted reference norms times the geometric factors of
        :func:`~.model.background.add_linked_groups` (fcxb at the fitted surface brightness); the
        spectrum is folded through the module reference's responses for ``exposure`` (default:
        the reference spectrum's). The statistical error propagates the fit covariance (the
        prediction is linear in the free norms); the systematic floor ``systematic`` × total (default
        :data:`~nuskybgd_engine.uncertainty.SYSTEMATIC_FRACTION`, Wik et al. 2014) is reported
        separately, and ``stat_sys_error`` combines the two in quadrature.
        ``obs``: the observation the region is in (required when the analysis holds several; its
        module reference, exposure and fcxb are used).
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
        r = self.reference_group(m, obs)
        ref = self.groups[r - 1]
        exposure = float(exposure if exposure is not None else ref.exposure)
        if not exposure > 0:
            raise BadConfigError("exposure must be > 0", field="exposure")
        state = self.state.copy()
        (g_new,) = add_linked_groups(state, [m], [weights], self.presets, fcxb="linked", refs={m: r})
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

    def reference_group(self, module, obs=None):
        """The data group (1-based) a region of FPM``module`` in observation ``obs`` is predicted from.

        One observation: the module's first group. Several: ``obs`` (default: the one
        :meth:`use_observation` selected) names one of ``joint.keys`` and its first group of the
        module is used (an error when none is named).
        """
        obs = obs if obs is not None else self.selected
        if self.joint is None or len(self.joint.keys) == 1:
            if obs is not None and (self.joint is None or obs not in self.joint.keys):
                have = "a single observation" if self.joint is None else f"observation {self.joint.keys[0]}"
                raise BadConfigError(f"no observation {obs!r}: the model holds {have}", field="obs")
            return self.state.modules.index(module) + 1
        if obs is None:
            raise BadConfigError(f"the model holds several observations ({', '.join(self.joint.keys)}): name one",
                                 field="obs")
        refs = self.joint.references(self.state.modules)
        self.joint.groups_of(obs)  # unknown key: one line listing the keys
        if (obs, module) not in refs:
            raise BadConfigError(f"observation {obs} has no FPM{module} spectrum", field="obs")
        return refs[(obs, module)]

    def use_observation(self, obs):
        """Select observation ``obs``: ``grid``, ``maps`` and every transfer (predict, images, spec,
        bgdspec) then refer to it. Returns ``self``."""
        view = self.observation(obs)
        self.reference_group(self.state.modules[0], obs)  # validates the key against the groups
        self.grid, self.maps, self.selected = view.grid, view.maps, obs
        return self

    def observation(self, obs=None):
        """:class:`ObservationView` (grid, maps) of observation ``obs`` (default: the only one)."""
        if self.observations is None:
            if obs is not None and (self.joint is None or obs not in self.joint.keys):
                raise BadConfigError(f"no observation {obs!r}: the model holds a single observation", field="obs")
            return ObservationView(getattr(self, "grid", None), getattr(self, "maps", None))
        if obs is None:
            if len(self.observations) == 1:
                return next(iter(self.observations.values()))
            raise BadConfigError(f"the model holds several observations ({', '.join(self.observations)}): "
                                 "name one", field="obs")
        if obs not in self.observations:
            raise BadConfigError(f"no observation {obs!r} (have {', '.join(self.observations)})", field="obs")
        return self.observations[obs]

    # -- edits (the widgets' session changes the analysis only through these) -------------------

    def replace_groups(self, replacements):
        """Swap several data groups at once (``{g: GroupData}``, 1-based), all or none.

        :func:`replace_group` for each (free values, freezes and limits kept, the result cleared);
        when one fails (e.g. a group of the wrong module) the analysis is left as it was.
        """
        saved = (self.groups, self.state, self.model, self.result)
        try:
            for g, group in sorted(replacements.items()):
                replace_group(self, g, group)
        except Exception:
            self.groups, self.state, self.model, self.result = saved
            raise
        return self

    def set_value(self, source, index, value):
        """Set unlinked ``source:p<index>`` (validated against its limits) and refresh the links.

        The last fit no longer describes the model: ``result`` is cleared.
        """
        p = self.state[source][index]
        if p.link is not None:
            raise BadConfigError(f"{source}:p{index} is linked ({p.link}); unlink it first",
                                 field=f"{source}:p{index}")
        self.state.set_value(source, index, value)
        self.model.refresh_links()
        self.result = None

    def set_maps(self, maps):
        """The projected maps (``{module: ProjectedMaps}``) :func:`background_images` draws with."""
        missing = sorted(set(self.state.modules) - set(maps))
        if missing:
            raise BadConfigError(f"no projected maps for FPM{', FPM'.join(missing)}", field="maps")
        self.maps = dict(maps)

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
    if analysis.joint is not None:
        analysis.joint.apply(state)
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
