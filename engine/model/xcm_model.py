"""Converting the background model to and from an XSPEC session (``.xcm``).

The writer follows spec §4.4 through :mod:`nuskybgd_engine.xcm`. When apec was evaluated with
the documented ``bremss`` stand-in (no AtomDB), the exported intbgd block says ``bremss`` in
apec's place, with apec's norms multiplied by the stand-in factor and parameter numbers
renumbered, so XSPEC reproduces exactly the model that was fitted; a header comment says so.
Reading such a file back restores the apec parameters.
"""

from __future__ import annotations

from ..errors import BadConfigError
from ..xcm import Link as XLink
from ..xcm import ParamLine, ResponseEntry, XcmSession, make_block
from ..xcm import DataEntry
from .background import OPTIONAL_SOURCE_NUMBERS, SOURCE_NUMBERS
from .components import APEC_DEFAULTS, APEC_STANDIN, COMPONENTS, param_specs
from .folding import RESPONSE_OF_SOURCE
from .parameters import Link, ModelState, Parameter, SourceModel

__all__ = ["state_to_session", "session_to_state", "ignore_string"]


def ignore_string(ignore):
    """``**:**-3.0 150.0-**`` (energies, always with decimal points)."""
    lo, hi = (float(v) for v in ignore)
    return f"**:**-{lo!r} {hi!r}-**"


def exported_parameter_map(source, standin):
    """How the parameters of ``source`` are numbered in the exported XSPEC model.

    With ``standin`` (no AtomDB) apec is exported as bremss, which drops apec's Abundanc and
    Redshift; ``fit/pyxspec`` uses the same map to find a parameter in the loaded model.

    Returns
    -------
    mapping : dict
        Local parameter index -> index in the exported model (None = dropped).
    n_par : int
        Number of parameters of the exported source per group.
    """
    mapping, new = {}, 0
    k = 0
    for _cname, ctype in source.components:
        for j in range(len(param_specs(ctype))):
            k += 1
            if ctype == "apec" and standin and j in (1, 2):  # Abundanc, Redshift: not in bremss
                mapping[k] = None
                continue
            new += 1
            mapping[k] = new
        # apec (4) -> bremss (kT, norm)
    return mapping, new


def state_to_session(state, files, *, statistic="cstat", apec=None, ignore=(3.0, 150.0), comments=()):
    """An :class:`~nuskybgd_engine.xcm.XcmSession` for the model ``state``.

    Parameters
    ----------
    state : ModelState
    files : list of dict
        Per data group: ``spectrum``, ``rmf``, ``ap_arf`` (or None), ``fcxb_arf``, ``diag``.
    statistic : {'cstat', 'chi'}
    apec : dict, optional
        :meth:`ApecShape.xspec_component` of the fit; ``evaluated_by='standin'`` exports bremss.
    """
    apec = apec or {"evaluated_by": "standin", "xspec_name": "bremss", "norm_factor": APEC_STANDIN["norm_factor"]}
    standin = apec.get("evaluated_by") != "pyxspec"
    n_groups = len(files)
    session = XcmSession()
    session.settings = {"statistic": statistic, "method": "leven 30000 1e-4", "abund": "angr", "xsect": "vern",
                        "xset delta": "0.01", "systematic": "0"}
    session.data = [DataEntry(g, g, f["spectrum"]) for g, f in enumerate(files, start=1)]
    session.backgrounds = {g: "none" for g in range(1, n_groups + 1)}
    for src in state:
        resp, arf = RESPONSE_OF_SOURCE[src.name]
        for g, f in enumerate(files, start=1):
            session.responses.append(ResponseEntry(src.number, g, f[resp]))
            if arf and f.get(arf):
                session.arfs.append(ResponseEntry(src.number, g, f[arf]))
    session.ignore = [ignore_string(ignore)]
    maps = {s.name: exported_parameter_map(s, standin) for s in state}

    def new_global(source_name, index):
        src = state[source_name]
        mapping, n_new = maps[source_name]
        g, k = divmod(index - 1, src.n_par)
        nk = mapping[k + 1]
        if nk is None:
            raise BadConfigError(f"{source_name}:p{index} has no counterpart in the exported model",
                                 field=f"{source_name}:p{index}")
        return g * n_new + nk

    factor = float(apec.get("norm_factor", 1.0)) if standin else 1.0
    for src in state:
        if src.n_groups != n_groups:
            raise BadConfigError(f"source {src.name} has {src.n_groups} groups, {n_groups} files given",
                                 field=src.name)
        mapping, n_new = maps[src.name]
        types = [("bremss" if (t == "apec" and standin) else t) for _c, t in src.components]
        params = []
        ctypes = dict(src.components)
        for k, p in enumerate(src.params, start=1):
            if mapping[(k - 1) % src.n_par + 1] is None:
                continue
            if p.link is not None:
                params.append(XLink(float(p.link.factor), p.link.source, new_global(p.link.source, p.link.index)))
                continue
            value = p.value
            if standin and p.component == "apec" and p.name == "norm":
                value *= factor
            delta = abs(p.delta) or 0.01
            limits = (p.hard_min, p.soft_min, p.soft_max, p.hard_max)
            if limits != _default_limits(ctypes[p.component], p.name):
                # XSPEC's newpar line with limits, e.g. a norm allowed below 0 (negative_norms).
                params.append(ParamLine(float(value), -delta if p.frozen else delta, *map(float, limits)))
            else:
                params.append(ParamLine(float(value), -delta if p.frozen else delta))
        sizes = [2 if (t == "apec" and standin) else len(param_specs(t)) for _c, t in src.components]
        session.models.append(make_block(src.number, src.name, " + ".join(types), params, component_sizes=sizes))
    notes = list(comments)
    if standin:
        notes.append(f"intbgd: apec replaced by its stand-in bremss(kT={APEC_DEFAULTS['kT']}) with norm = "
                     f"{factor:.6g} x apec norm (no AtomDB where this was fitted); this reproduces the fitted model.")
    session.comments = notes
    return session


def _default_limits(ctype, name):
    """XSPEC's (hard_min, soft_min, soft_max, hard_max) of parameter ``name`` of a ``ctype`` component."""
    spec = next((sp for sp in param_specs(ctype) if sp.name == name), None)
    return None if spec is None else (spec.hard_min, spec.soft_min, spec.soft_max, spec.hard_max)


def _parameter_from_line(line, ctype, local_in_comp, cname):
    spec = param_specs(ctype)[local_in_comp]
    p = Parameter(name=spec.name, component=cname, value=float(spec.default), delta=abs(spec.delta) or 0.01,
                  hard_min=spec.hard_min, soft_min=spec.soft_min, soft_max=spec.soft_max, hard_max=spec.hard_max,
                  unit=spec.unit)
    if isinstance(line, XLink):
        p.link = Link(float(line.factor), line.model, int(line.index))
    else:
        p.value = float(line.value)
        if line.delta is not None:
            p.delta = abs(line.delta) or 0.01
            p.frozen = line.delta < 0
        for attr in ("hard_min", "soft_min", "soft_max", "hard_max"):
            v = getattr(line, attr)
            if v is not None:
                setattr(p, attr, float(v))
    return p


def session_to_state(session):
    """The background sources of an XCM session as a :class:`ModelState`.

    Only the named models ``apbgd``, ``intbgd``, ``fcxb``, ``intn`` (and ``grxe``) are taken; a source-1
    model of the user is ignored. An intbgd block starting with the ``bremss`` stand-in is read
    back as apec (norm divided by the stand-in factor, Abundanc/Redshift restored frozen).
    """
    state = ModelState()
    blocks = {b.name: b for b in session.models if b.name in SOURCE_NUMBERS or b.name in OPTIONAL_SOURCE_NUMBERS}
    missing = [n for n in SOURCE_NUMBERS if n not in blocks]
    if missing:
        raise BadConfigError(f"model(s) {', '.join(missing)} not in the file", field="models")
    remap = {}
    restored = set()  # (source, global index) whose link is already in the restored numbering
    for name, block in blocks.items():
        types = [t for _c, t in block.components]
        standin = name == "intbgd" and types and types[0] == "bremss"
        for t in types:
            if t not in COMPONENTS and t != "apec" and not (standin and t == "bremss"):
                raise BadConfigError(f"component {t!r} of {name} is not a nuskybgd background component",
                                     field=f"model {name}")
        comps = [(c, t) for c, t in block.components]
        if standin:
            comps[0] = ("apec", "apec")
        sizes = [len(param_specs(t)) for _c, t in comps]
        n_par = sum(sizes)
        src = SourceModel(block.source, name, comps, n_par)
        seq, old = [], 0  # new local index -> old local index in the file (None = restored)
        for (_c, t), size in zip(comps, sizes):
            if standin and t == "apec":
                seq += [old + 1, None, None, old + 2]
                old += 2
            else:
                seq += list(range(old + 1, old + size + 1))
                old += size
        remap[name] = (seq, block.n_params_per_group, n_par)
        for g in range(1, block.n_groups + 1):
            local = 0
            for (cname, t), size in zip(comps, sizes):
                for j in range(size):
                    ol = seq[local]
                    local += 1
                    if ol is None:
                        default = APEC_DEFAULTS["Abundanc"] if j == 1 else APEC_DEFAULTS["Redshift"]
                        p = _parameter_from_line(ParamLine(default, -0.01), "apec", j, cname)
                        kt_line = block.param(g, seq[local - 1 - j])
                        if isinstance(kt_line, XLink):  # follow kT: link to the same group's param
                            gt = (kt_line.index - 1) // block.n_params_per_group
                            p.link, p.frozen = Link(1.0, name, gt * n_par + local), False
                            restored.add((name, len(src.params) + 1))
                    else:
                        line = block.param(g, ol)
                        p = _parameter_from_line(line, t, j, cname)
                        if standin and t == "apec" and j == 3 and p.link is None:
                            p.value /= APEC_STANDIN["norm_factor"]
                    src.params.append(p)
        state.add(src)
    # Renumber links into the restored layout.
    for src in state:
        for k, p in enumerate(src.params, start=1):
            if p.link is None:
                continue
            tname = p.link.source
            if tname not in remap:
                raise BadConfigError(f"{src.name}:p{k} links to {tname!r}, not a background source",
                                     field=f"{src.name}:p{k}")
            seq, old_n, new_n = remap[tname]
            if (src.name, k) in restored:
                continue
            g, old_k = divmod(p.link.index - 1, old_n)
            new_k = seq.index(old_k + 1) + 1
            p.link = Link(p.link.factor, tname, g * new_n + new_k)
    state.refresh_links()
    return state

