"""The method's steps after the fit, on in-memory objects: restore a fit, spec, simplify, image.

A fitted :class:`~.analysis.BackgroundAnalysis` is restored from ``NAME.json``
(:func:`load_fit_json`) or from an ``.xcm`` and its bgdinfo.json (:func:`analysis_from_xcm`);
the steps then transfer it to source spectra (:func:`spec_export`, nuskybgd ``spec``), drop the
background groups of such a session (:func:`simplify_session`) and image the model
(:func:`background_images`). The CLI steps and the widgets both drive them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import BackgroundAnalysis
from .constants import band_to_channels
from .errors import BadConfigError
from .export import ExportWriter, group_files
from .fitcache import open_fit, write_sidecar
from .idl import idl_to_nuskybgd, is_idl_session
from .io.files import atomic_output, read_json
from .model.background import BackgroundOptions, add_linked_groups
from .model.folding import FoldedModel
from .model.xcm_model import session_to_state, state_to_session
from .results import FitResult
from .xcm import DataEntry, ParamLine, ResponseEntry, XcmSession, format_xcm, make_block, read_xcm, resolve_values

__all__ = ["load_fit_json", "analysis_from_xcm", "load_fit", "spec_export", "simplify_session",
           "background_images"]


# ---------------------------------------------------------------------------------------------
# Restoring a fit
# ---------------------------------------------------------------------------------------------


def load_fit_json(path):
    """Restore a fit saved by :func:`~.fitcache.save_fit` (or :func:`~.export.save_fit_json`): the analysis
    (from its sidecar when current, else its bgdinfo) at the fitted values."""
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
    if data.get("xcm"):  # continued from an .xcm (nuskybgd-py or IDL): its links and frozen flags
        analysis, rebuild = analysis_from_xcm(data["bgdinfo"], data["xcm"]), None
    else:
        analysis, rebuild = open_fit(path, data, negative_norms)  # the sidecar, else the inputs
    # Record the options of the fit (the check of the free parameters below catches a bgdinfo.json
    # whose other options no longer give the fitted model).
    analysis.options = BackgroundOptions.from_dict(opts)
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
    if rebuild:
        write_sidecar(analysis, path, rebuild)
    return analysis


# ---------------------------------------------------------------------------------------------
# spec, simplify, image
# ---------------------------------------------------------------------------------------------


def spec_export(analysis, source_groups, path, *, statistic=None, overwrite=False):
    """nuskybgd's ``spec`` (§2.10): the fitted model plus source spectra whose background is linked.

    ``source_groups`` are GroupData of the source regions (their weights on the projected maps);
    each gets every background parameter linked to its module's fitted reference (geometric
    factors as in the fit), except fcxb: a free norm at the nominal value, as nuskybgd-py does.
    The source's own apbgd ARF uses *its* detector fractions (fixing §7 item 1).
    """
    state = analysis.state.copy()
    add_linked_groups(state, [g.module for g in source_groups], [g.weights for g in source_groups],
                      analysis.presets, fcxb="nominal",
                      refs={m: analysis.reference_group(m) for m in set(analysis.state.modules)})
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
        ``{module: {"apbgd", "intbgd", "intn", "fcxb", "total": ndarray}}`` on the maps' grid, plus
        ``"grxe"`` when the model has the GRXE source.
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
        r = analysis.reference_group(m)  # the selected observation's, in a several-observation model
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
        if any(s == "grxe" for s, _ in counts):  # the GRXE map scaled so the reference region holds its counts
            if getattr(mp, "grxe", None) is None or not w_r.G:
                raise BadConfigError(f"the model has the GRXE source but FPM{m} has no GRXE map (bgdinfo 'grxe')",
                                     field="grxe")
            per["grxe"] = mp.grxe * (sum(v for (s, _), v in counts.items() if s == "grxe") / w_r.G)
        per["total"] = sum(per[k] for k in per)
        out[m] = per
    return out


def analysis_from_xcm(bgdinfo, xcm_path):
    """The analysis of ``bgdinfo`` at the parameter values of a (possibly hand-edited) ``.xcm``.

    The file is parsed, never executed (Tcl is refused); its data groups must be the bgdinfo
    spectra in order (matched by file name), and its background sources must have the structure
    nuskybgd builds (the bremss stand-in for apec is recognised). Values, frozen states and links
    of the file replace the presets. There is no covariance: ``predict`` needs a fit.
    """
    analysis = BackgroundAnalysis.from_bgdinfo(bgdinfo)
    session = read_xcm(xcm_path)
    if is_idl_session(session):  # IDL nuskybgd: nuabs, powerlaw*highecut, apec last
        session = idl_to_nuskybgd(session)[0]
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
    analysis.source_xcm = Path(xcm_path).resolve()  # a fit of it is restored from this structure
    return analysis


def load_fit(path, bgdinfo=None):
    """A fitted analysis from ``NAME.json`` (with covariance) or from an ``.xcm`` plus its bgdinfo.json."""
    path = Path(path)
    if path.suffix.lower() == ".xcm":
        if bgdinfo is None:
            raise BadConfigError("an .xcm needs the bgdinfo.json it was made from", path=path, field="bgdinfo")
        return analysis_from_xcm(bgdinfo, path)
    return load_fit_json(path)
