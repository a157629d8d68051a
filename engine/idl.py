"""IDL nuskybgd compatibility: its XSPEC sessions and its ``nuskybgd_fitab`` switches.

**IDL sessions.** IDL ``nuskybgd_fitab`` (NuSTAR/nuskybgd) wrote the background sources as

* before August 2015: ``apbgd``/``fcxb`` = ``nuabs(powerlaw*highecut)`` (8 parameters a group:
  nuabs Pt, CZT, Zn, CdRatio; PhoIndex, norm; cutoffE, foldE), ``intbgd`` =
  ``nuabs(lorentz + … (29) + apec)`` (95), ``intn`` = ``bknpower``;
* later: ``apbgd``/``fcxb`` = ``cutoffpl`` and ``intbgd`` = ``lorentz + … + apec`` (apec **last**).

:func:`idl_to_nuskybgd` rewrites such a session into nuskybgd's layout (``cutoffpl``; ``apec``
first, then the 29 lines), keeping every value, frozen flag, limit and link (links renumbered):

* ``powerlaw*highecut`` with the cut-off energy Ec below the NuSTAR grid (≤ 1.6 keV; IDL used
  1e-4) is exactly ``cutoffpl`` with the same PhoIndex, HighECut = foldE and norm × exp(Ec/foldE)
  (1 + 2.4e-6 for IDL's numbers);
* ``nuabs`` — the local XSPEC model of the detector's Pt contact and CZT dead layer, with per-region
  thicknesses weighted by the detector fractions — is the detector absorption that CALDB DETABS
  (2015) superseded: here it is the region's DETABS mix in the apbgd ARF (see
  :func:`~nuskybgd_engine.spectra.responses.region_arf`). Its parameters are reported
  (:class:`IdlConversion`), not kept. The difference is measured by ``benchmarks/bench_nuabs.py``
  and stated in the README ("Coming from IDL nuskybgd").

**IDL fit switches** (:func:`apply_fit_options`), with ``nuskybgd_fitab.pro``'s meaning:

* ``fixap``: the apbgd norm of each reference spectrum is frozen at its nominal value
  (IDL writes its delta as −1e-4); linked norms follow it.
* ``fixfcxb``: every fcxb norm that is not linked is frozen at its nominal value (IDL: delta −1e-6).
* ``tieap``: IDL gives each observation its own apbgd reference norm unless ``/tieap`` links them
  (by the ratio of aperture weights). Our model has one reference per module for all spectra,
  i.e. tied; ``tieap: false`` unties: the first spectrum of each further observation (``OBS_ID``)
  of a module gets its own free apbgd norm and that observation's other spectra are linked to it.
  With one observation it changes nothing, as in IDL.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import band_to_channels
from .errors import BadConfigError, positive_number
from .io.fitsutil import read_fits
from .io.ogip import Spectrum, read_pha
from .io.regions import region_cutout
from .model.background import add_linked_groups, region_weights
from .xcm import Link, ParamLine, XcmSession, apply_changes, make_block, resolve_values

__all__ = ["is_idl_session", "idl_to_nuskybgd", "IdlConversion", "apply_fit_options", "apply_bgdinfo_options",
           "average_fcxb", "fake_background", "nominal_fcxb_norm", "IDL_EXPFACTOR", "image_background",
           "image_output_names",
           "NUABS_PARAMETERS"]

NUABS_PARAMETERS = ("Pt", "CZT", "Zn", "CdRatio")
_BACKGROUND = ("apbgd", "intbgd", "fcxb", "intn")
#: Highest cut-off energy (keV) for which powerlaw*highecut equals cutoffpl on the NuSTAR grid.
_GRID_LOW = 1.6


@dataclass
class IdlConversion:
    """What :func:`idl_to_nuskybgd` changed.

    Attributes
    ----------
    nuabs : dict
        ``(source name, data group) -> {Pt, CZT, Zn, CdRatio}`` of every dropped nuabs.
    norm_factors : dict
        ``(source name, data group) -> exp(Ec/foldE)`` applied to the powerlaw norm.
    notes : list of str
    """

    nuabs: dict = field(default_factory=dict)
    norm_factors: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _types(block):
    return [t for _c, t in block.components]


def is_idl_session(session):
    """True when a background source of ``session`` has IDL's form (nuabs, powerlaw*highecut, apec last)."""
    for block in session.models:
        if block.name not in _BACKGROUND:
            continue
        types = _types(block)
        if "nuabs" in types or "highecut" in types or (block.name == "intbgd" and types and types[-1] == "apec"
                                                       and types[0] != "apec"):
            return True
    return False


def _layout(block, values):
    """(new expression, [(old local or None, kind)] in new order, per-group norm factor, nuabs locals).

    kind is 'copy' or 'norm' (scaled by exp(Ec/foldE) of the group).
    """
    types = _types(block)
    sizes = block.component_sizes
    starts, k = [], 1
    for s in sizes:
        starts.append(k)
        k += s
    comp = dict(zip(range(len(types)), zip(types, starts, sizes)))
    nuabs = [i for i, t in enumerate(types) if t == "nuabs"]
    if len(nuabs) > 1 or (nuabs and nuabs[0] != 0):
        raise BadConfigError(f"nuabs must multiply the whole model ({block.expression})", field=f"model {block.name}")
    rest = [i for i in range(len(types)) if i not in nuabs]
    rest_types = [types[i] for i in rest]
    nuabs_locals = list(range(1, sizes[0] + 1)) if nuabs else []
    if block.name in ("apbgd", "fcxb"):
        if rest_types == ["cutoffpl"]:
            _t, s0, _n = comp[rest[0]]
            return "cutoffpl", [(s0, "copy"), (s0 + 1, "copy"), (s0 + 2, "copy")], None, nuabs_locals
        if rest_types != ["powerlaw", "highecut"]:
            raise BadConfigError(f"expected IDL's nuabs(powerlaw*highecut) or cutoffpl, found {block.expression}",
                                 field=f"model {block.name}")
        p0 = comp[rest[0]][1]  # powerlaw: PhoIndex, norm
        h0 = comp[rest[1]][1]  # highecut: cutoffE, foldE
        factors = {}
        for g in range(1, block.n_groups + 1):
            ec = values[(block.name, block.global_index(g, h0))]
            ef = values[(block.name, block.global_index(g, h0 + 1))]
            if not (ec <= _GRID_LOW and ef > 0):
                raise BadConfigError(f"group {g}: highecut cutoffE {ec:g} keV is inside the NuSTAR band; only "
                                     f"cutoffE <= {_GRID_LOW} keV equals cutoffpl", field=f"model {block.name}")
            line = block.param(g, h0)
            if not (isinstance(line, Link) or line.frozen):
                raise BadConfigError(f"group {g}: highecut cutoffE is free; cutoffpl has no such parameter",
                                     field=f"model {block.name}")
            factors[g] = math.exp(ec / ef)
        return "cutoffpl", [(p0, "copy"), (h0 + 1, "copy"), (p0 + 1, "norm")], factors, nuabs_locals + [h0]
    if block.name == "intbgd":
        if rest_types and rest_types[0] == "apec" and all(t == "lorentz" for t in rest_types[1:]):
            order = rest
        elif rest_types and rest_types[-1] == "apec" and all(t == "lorentz" for t in rest_types[:-1]):
            order = [rest[-1]] + rest[:-1]
        else:
            raise BadConfigError(f"expected lorentz lines and one apec, found {block.expression}",
                                 field=f"model {block.name}")
        seq = []
        for i in order:
            _t, s0, n = comp[i]
            seq += [(s0 + j, "copy") for j in range(n)]
        return " + ".join(types[i] for i in order), seq, None, nuabs_locals
    if block.name == "intn":
        if rest_types != ["bknpower"]:
            raise BadConfigError(f"expected bknpower, found {block.expression}", field="model intn")
        _t, s0, n = comp[rest[0]]
        return "bknpower", [(s0 + j, "copy") for j in range(n)], None, nuabs_locals
    raise BadConfigError(f"not a background source: {block.name}", field=f"model {block.name}")


def idl_to_nuskybgd(session):
    """An IDL nuskybgd session rewritten in nuskybgd's layout (see the module docstring).

    Returns
    -------
    (XcmSession, IdlConversion)
    """
    if session.newpars:
        session = apply_changes(session)
    values = resolve_values(session)
    conv = IdlConversion()
    layouts = {}
    for block in session.models:
        if block.name in _BACKGROUND:
            expr, seq, factors, dropped = _layout(block, values)
            new_local = {old: new for new, (old, _k) in enumerate(seq, start=1)}
            layouts[block.name] = (block, expr, seq, factors or {}, new_local, dropped)
    out = XcmSession(settings=dict(session.settings), data=list(session.data), backgrounds=dict(session.backgrounds),
                     responses=list(session.responses), arfs=list(session.arfs), ignore=list(session.ignore),
                     notice=list(session.notice), comments=list(session.comments))

    def mapped(name, index):
        """(new global index, norm factor) of ``name:p<index>``; None when the parameter is dropped."""
        block, _e, seq, factors, new_local, _d = layouts[name]
        g, old = divmod(index - 1, block.n_params_per_group)
        g += 1
        old += 1
        if old not in new_local:
            return None
        nl = new_local[old]
        scale = factors.get(g, 1.0) if seq[nl - 1][1] == "norm" else 1.0
        return (g - 1) * len(seq) + nl, scale

    for block in session.models:
        if block.name not in layouts:
            out.models.append(block)  # the user's own sources (source 1, …) pass through
            continue
        _b, expr, seq, factors, _nl, dropped = layouts[block.name]
        params = []
        for g in range(1, block.n_groups + 1):
            if dropped and "nuabs" in _types(block):
                conv.nuabs[(block.name, g)] = {n: values[(block.name, block.global_index(g, k))]
                                               for n, k in zip(NUABS_PARAMETERS, range(1, 5))}
            if g in factors:
                conv.norm_factors[(block.name, g)] = factors[g]
            for old, kind in seq:
                line = block.param(g, old)
                scale = factors.get(g, 1.0) if kind == "norm" else 1.0
                if isinstance(line, Link):
                    if line.model not in layouts:
                        raise BadConfigError(f"{block.name}:p{block.global_index(g, old)} links to {line.model!r}, "
                                             "not a background source", field=f"model {block.name}")
                    target = mapped(line.model, line.index)
                    if target is None:
                        raise BadConfigError(f"{block.name}:p{block.global_index(g, old)} links to "
                                             f"{line.model}:p{line.index}, which has no nuskybgd counterpart",
                                             field=f"model {block.name}")
                    index, t_scale = target
                    params.append(Link(line.factor * scale / t_scale, line.model, index))
                else:
                    params.append(ParamLine(line.value * scale, line.delta, line.hard_min, line.soft_min,
                                            line.soft_max, line.hard_max))
        out.models.append(make_block(block.source, block.name, expr, params))
    if conv.nuabs:
        conv.notes.append("nuabs (IDL detector absorption) replaced by the regions' DETABS in the apbgd ARF")
    if conv.norm_factors:
        f = max(conv.norm_factors.values())
        conv.notes.append(f"powerlaw*highecut -> cutoffpl (norm x exp(cutoffE/foldE), at most {f:.7f})")
    if "intbgd" in layouts and _types(layouts["intbgd"][0])[-1] == "apec":
        conv.notes.append("intbgd: apec moved before the 29 lines (IDL put it last)")
    out.comments.append("converted from an IDL nuskybgd session: " + "; ".join(conv.notes))
    out.notes = list(session.notes) + conv.notes
    return out, conv


# ---------------------------------------------------------------------------------------------
# nuskybgd_fitab switches
# ---------------------------------------------------------------------------------------------


def _norm_indices(src):
    return [k for k, p in enumerate(src.params, start=1) if p.name == "norm"]


def apply_fit_options(state, *, fixap=False, fixfcxb=False, tieap=True, obsids=None):
    """Apply IDL ``nuskybgd_fitab``'s ``fixap``, ``fixfcxb`` and ``tieap`` to a built model ``state``.

    Parameters
    ----------
    state : ModelState
        As built by :func:`~nuskybgd_engine.model.background.build_background_model` (changed in place).
    obsids : list of str, optional
        ``OBS_ID`` of each data group; needed for ``tieap=False`` (groups with an equal or missing
        OBS_ID count as one observation).

    Returns
    -------
    list of str
        What was changed, one line each.
    """
    changes = []
    ap = state["apbgd"]
    if not tieap and obsids is not None:
        if len(obsids) != ap.n_groups:
            raise BadConfigError(f"{len(obsids)} OBS_IDs for {ap.n_groups} spectra", field="tieap")
        ref_obs = {}
        first = {}
        for g, (m, obs) in enumerate(zip(state.modules, obsids), start=1):
            ref_obs.setdefault(m, obs)
            if obs == ref_obs[m]:
                continue
            k = ap.index(g, 3)
            w = state.weights[g - 1].W
            if (m, obs) not in first:
                first[(m, obs)] = (g, w)
                state.unlink("apbgd", k)
                state.freeze("apbgd", k, False)
                changes.append(f"apbgd:p{k} (spectrum {g}, OBS_ID {obs}) untied: own reference of FPM{m}")
            else:
                g0, w0 = first[(m, obs)]
                state.link("apbgd", k, "apbgd", ap.index(g0, 3), w / w0 if w0 > 0 else 0.0)
    for name, on in (("apbgd", fixap), ("fcxb", fixfcxb)):
        if not on:
            continue
        src = state[name]
        for k in _norm_indices(src):
            p = src.params[k - 1]
            if p.link is None and not p.frozen:
                p.frozen = True
                changes.append(f"{name}:p{k} frozen at {p.value:.6g} ({'fixap' if name == 'apbgd' else 'fixfcxb'})")
    state.refresh_links()
    return changes


def _obs_id(path):
    return str(read_pha(path).header.get("OBS_ID", "")).strip()


def apply_bgdinfo_options(analysis, info):
    """:func:`apply_fit_options` with the switches of a :class:`~nuskybgd_engine.bgdinfo.BgdInfo`.

    Returns the list of changes (empty with IDL's defaults).
    """
    fixap, fixfcxb, tieap = (bool(getattr(info, k, d)) for k, d in (("fixap", False), ("fixfcxb", False),
                                                                      ("tieap", True)))
    if not (fixap or fixfcxb or not tieap):
        return []
    obsids = [_obs_id(p) for p in info.bgfiles] if not tieap else None
    changes = apply_fit_options(analysis.state, fixap=fixap, fixfcxb=fixfcxb, tieap=tieap, obsids=obsids)
    analysis.model.refresh_links()
    return changes


# ---------------------------------------------------------------------------------------------
# nuskybgd_spec options: expfactor, perfect, avgfcxb
# ---------------------------------------------------------------------------------------------

#: nuskybgd_spec's default ``expfactor``.
IDL_EXPFACTOR = 100.0
#: Sky pixel of the 1000x1000 grid in degrees (nuskybgd_spec: 2.45810736 arcsec).
_PIXEL_DEG = 2.45810736 / 3600.0


def nominal_fcxb_norm(npix):
    """nuskybgd_spec ``/avgfcxb``: the expected fcxb norm of a region of ``npix`` sky pixels,
    ``0.002353 (2.45810736/3600·1000)² · npix/1000²`` (the CXB at 1 keV times the solid angle)."""
    return 0.002353 * (_PIXEL_DEG * 1000.0) ** 2 * float(npix) / 1000.0**2


def average_fcxb(bspec, analysis, regions):
    """``bspec`` with its fcxb at the nominal CXB (IDL ``/avgfcxb``) instead of the fitted one.

    The fcxb counts are scaled by nominal/fitted norm; the fcxb norms leave the error propagation
    (the component is then fixed, as in IDL).

    Returns
    -------
    (BackgroundSpectrum, fitted norm, nominal norm)
    """

    m = bspec.module
    w = region_weights(regions, analysis.grid, analysis.maps[m], name="source")
    state = analysis.state.copy()
    (g,) = add_linked_groups(state, [m], [w], analysis.presets, fcxb="linked")
    fitted = state.value("fcxb", state["fcxb"].index(g, 3))
    nominal = nominal_fcxb_norm(region_cutout(regions, analysis.grid).npix)
    out = copy.deepcopy(bspec)
    old = np.asarray(out.components.get("fcxb", 0.0), float)
    new = old * (nominal / fitted) if fitted > 0 else old * 0.0
    out.components["fcxb"] = new
    out.counts = np.asarray(out.counts, float) - old + new
    for j, (src, _k) in enumerate(out.free):
        if src == "fcxb":
            out.jacobian[:, j] = 0.0
    return out, fitted, nominal


def fake_background(bspec, *, expfactor=IDL_EXPFACTOR, perfect=False, seed=None):
    """The background spectrum nuskybgd_spec's ``fakeit`` run writes.

    Counts for ``expfactor`` × the source exposure (EXPOSURE set so), Poisson-drawn unless
    ``perfect`` (then the noise-free real-valued model counts); BACKSCAL and AREASCAL are the
    source's, so XSPEC scales the background by 1/expfactor back to the source exposure.

    Returns
    -------
    Spectrum
        Ready for :func:`~nuskybgd_engine.io.ogip.write_pha`.
    """

    expfactor = positive_number(expfactor, field="expfactor", what="expfactor")
    lam = np.maximum(np.asarray(bspec.counts, float), 0.0) * expfactor
    counts = lam if perfect else np.random.default_rng(seed).poisson(lam).astype(np.int64)
    header = dict(bspec.header)
    header.update({"HDUCLAS2": "BKG", "POISSERR": not perfect, "RESPFILE": "none", "ANCRFILE": "none",
                   "BACKFILE": "none", "CORRFILE": "none",
                   "NSBEXPF": expfactor, "NSBPERF": bool(perfect)})  # IDL expfactor, /perfect
    return Spectrum(channel=np.asarray(bspec.channel), counts=counts, exposure=float(bspec.exposure) * expfactor,
                    backscal=bspec.backscal, areascal=bspec.areascal, module=bspec.module, header=header)


# ---------------------------------------------------------------------------------------------
# nuskybgd_image: background image of a counts image, and the background-subtracted image
# ---------------------------------------------------------------------------------------------


def image_background(analysis, images, image_path, band):
    """nuskybgd_image's outputs for the counts image ``image_path``: ``(module, header, data, bgd)``.

    ``bgd`` is the total model background (``images[module]['total']`` of
    :func:`~nuskybgd_engine.workflow.background_images`) rescaled from the reference spectrum's
    exposure to the image's LIVETIME (EXPOSURE when absent), as IDL scales to the image LIVETIME;
    ``data - bgd`` is IDL's ``<image>bsub`` image. The image must be on the maps' sky grid and, when
    it records its channels (PILOW/PIHIGH of ``nuskybgd mkimgs``), in the same band.
    """

    hdul = read_fits(image_path, what="counts image")
    hdr = hdul[0].header
    data = hdul[0].data
    if data is None or data.ndim != 2:
        raise BadConfigError("primary HDU is not a 2-D image", path=image_path)
    inst = str(hdr.get("INSTRUME", "")).strip().upper()
    m = inst[-1:] if inst in ("FPMA", "FPMB") else None
    if m is None:
        raise BadConfigError("INSTRUME must be FPMA or FPMB", path=image_path, field="INSTRUME")
    if m not in images:
        raise BadConfigError(f"an FPM{m} image, but the fit has no FPM{m} spectra", path=image_path, field="INSTRUME")
    bgd_ref = images[m]["total"]
    if data.shape != bgd_ref.shape:
        raise BadConfigError(f"image is {data.shape[1]}x{data.shape[0]}, the projected maps "
                             f"{bgd_ref.shape[1]}x{bgd_ref.shape[0]}", path=image_path, field="NAXIS")
    ref = analysis.maps[m].header
    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2"):
        if key in ref and (key not in hdr or not np.isclose(float(hdr[key]), float(ref[key]), rtol=1e-9, atol=1e-9)):
            raise BadConfigError(f"{key} = {hdr.get(key)!r} differs from the projected maps' {ref[key]!r} (not the "
                                 "same sky grid)", path=image_path, field=key)
    if "PILOW" in hdr and "PIHIGH" in hdr:
        lo, hi = band_to_channels(*band)
        if (int(hdr["PILOW"]), int(hdr["PIHIGH"])) != (lo, hi):
            raise BadConfigError(f"image has PI {hdr['PILOW']}-{hdr['PIHIGH']}, the band {band[0]:g}-{band[1]:g} keV "
                                 f"is PI {lo}-{hi}", path=image_path, field="PILOW")
    exposure = hdr.get("LIVETIME", hdr.get("EXPOSURE"))
    if exposure is None or not float(exposure) > 0:
        raise BadConfigError("no LIVETIME or EXPOSURE > 0", path=image_path, field="LIVETIME")
    r = analysis.reference_group(m)
    bgd = bgd_ref * (float(exposure) / analysis.groups[r - 1].exposure)
    return m, hdr, np.asarray(data, float), bgd


def image_output_names(image_path):
    """IDL's names: ``bgd<image name>`` and ``<image stem>bsub.<ext>``, next to the image."""
    p = Path(image_path)
    stem, dot, ext = p.name.rpartition(".")
    if not dot:
        stem, ext = p.name, "fits"
    return p.with_name("bgd" + p.name), p.with_name(f"{stem}bsub.{ext}")
