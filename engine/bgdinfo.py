"""``bgdinfo.json``: the list of background spectra, their regions and the projected maps (spec §2.7).

Keys (nuskybgd-py): ``bgfiles`` (spectra, XSPEC data-group order), ``regfiles`` (same length),
``refimgf`` (an image with the sky WCS), ``bgdapfiles`` {"A": …, "B": …}, ``bgddetfiles``
{"A": [4 files], "B": [4 files]}; optional ``fcxb_config: {"links": [[i, j], …]}`` and
``intbgd_fix_line_ratios``. Our additions (optional): ``intbgd_fix_solar_ratios`` (bool, the 3.54/4.51/10.20
keV lines follow apec with the preset ratios), ``no_solar`` (bool), ``negative_norms`` (bool, norms
may go below 0, see :class:`~nuskybgd_engine.model.background.BackgroundOptions`) and ``statistic``; the IDL
``nuskybgd_fitab`` switches ``fixap``, ``fixfcxb`` and ``tieap`` (bool, IDL meaning, see
:mod:`nuskybgd_engine.idl`).

Keys we do not know are kept (users' files carry their own; nuskybgd-py ignores them): a
:class:`UnknownKeyWarning` names them and :func:`write_bgdinfo` writes them back unchanged.

Several observations (FPMA/B of several ObsIDs or epochs, each with its own maps, aspect and
exposure) in one model: ``observations``, a list of objects each with ``key`` (a name, default
``obs<i>``) and its own ``bgfiles``, ``regfiles``, ``refimgf``, ``bgdapfiles``, ``bgddetfiles``
(the keys above, which then must not appear at the top level). Spectra are numbered across the
observations in file order (``fcxb_config`` links use these numbers). Across observations:
apbgd has one reference norm per module (the same sky through the aperture); ``internal``
(``"shared"``, the default, or ``"per_observation"``) says whether intbgd and intn share one
reference per module or are free per observation (the internal background drifts slowly over
the mission); ``fcxb`` (``"per_region"``, the default, or ``"free"``) ties the focused CXB of a
region file listed in several observations to one surface brightness per module (norm scaled by
the region's detector area in each). See :mod:`nuskybgd_engine.model.joint`.

Unlike nuskybgd-py (§7 item 9) a module's maps are only required when a spectrum of that module
is listed. Relative paths are relative to the JSON file's directory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import BadConfigError
from .io.files import read_json, write_json
from .io.ogip import read_pha
from .model.joint import FCXB_MODES, INTERNAL_MODES

__all__ = ["BgdInfo", "ObservationFiles", "read_bgdinfo", "observation_subset", "write_bgdinfo", "bgdinfo_dict", "UnknownKeyWarning", "TEMPLATE", "IDL_FIT_OPTIONS"]

TEMPLATE = {
    "bgfiles": ["bgd1A_sr_g30.pha", "bgd1B_sr_g30.pha", "bgd2A_sr_g30.pha", "bgd2B_sr_g30.pha",
                "bgd3A_sr_g30.pha", "bgd3B_sr_g30.pha"],
    "regfiles": ["bgd1.reg", "bgd1.reg", "bgd2.reg", "bgd2.reg", "bgd3.reg", "bgd3.reg"],
    "refimgf": "bgdapA.fits",
    "bgdapfiles": {"A": "bgdapA.fits", "B": "bgdapB.fits"},
    "bgddetfiles": {"A": ["det0Aim.fits", "det1Aim.fits", "det2Aim.fits", "det3Aim.fits"],
                    "B": ["det0Bim.fits", "det1Bim.fits", "det2Bim.fits", "det3Bim.fits"]},
    "fcxb_config": {"links": [[1, 2], [3, 4], [5, 6]]},
    "intbgd_fix_line_ratios": False,
}

#: IDL nuskybgd_fitab keywords accepted as bgdinfo keys (bool) and their defaults here.
IDL_FIT_OPTIONS = {"fixap": False, "fixfcxb": False, "tieap": True}

_KNOWN = {"bgfiles", "regfiles", "refimgf", "bgdapfiles", "bgddetfiles", "fcxb_config", "intbgd_fix_line_ratios",
          "intbgd_fix_solar_ratios", "no_solar", "negative_norms", "statistic", "observations", "internal", "fcxb",
          "grxe", *IDL_FIT_OPTIONS}


class UnknownKeyWarning(UserWarning):
    """A bgdinfo.json key this package does not use (kept, and written back by :func:`write_bgdinfo`)."""


@dataclass
class BgdInfo:
    """Validated contents of a ``bgdinfo.json`` (paths resolved)."""

    path: Path
    bgfiles: list
    regfiles: list
    refimgf: Path
    bgdapfiles: dict
    bgddetfiles: dict
    fcxb_links: list = field(default_factory=list)
    fix_line_ratios: bool = False
    fix_solar_ratios: bool = False
    no_solar: bool = False
    negative_norms: bool = False
    statistic: str | None = None
    #: IDL nuskybgd_fitab switches (see :mod:`nuskybgd_engine.idl`).
    fixap: bool = False
    fixfcxb: bool = False
    tieap: bool = True
    raw: dict = field(default_factory=dict)
    #: Module ('A'/'B') of each spectrum, read from its header; None when read with ``check_files=False``.
    modules: list | None = None
    #: The ``observations`` form: one :class:`ObservationFiles` each (None: a single observation). Then
    #: ``bgfiles``/``regfiles``/``modules`` list every observation's spectra in order (global numbers)
    #: and ``refimgf``/``bgdapfiles``/``bgddetfiles`` are those of the first observation.
    observations: list | None = None
    #: ``internal``: 'shared' or 'per_observation' (see :data:`~.model.joint.INTERNAL_MODES`).
    internal: str = "shared"
    #: ``fcxb``: 'per_region' or 'free' across observations (see :data:`~.model.joint.FCXB_MODES`).
    fcxb_across: str = "per_region"
    #: The observation key when this is one observation taken from a several-observation file
    #: (:func:`observation_subset`); the fit records it to reopen the same spectra.
    subset_of: str | None = None
    #: ``grxe``: projected GRXE map per module (``projbgd --grxe``), empty without the GRXE source;
    #: in the ``observations`` form those of the first observation (each has its own).
    grxefiles: dict = field(default_factory=dict)

    @property
    def group_observations(self):
        """Observation key of each spectrum (None for a single-observation file)."""
        if self.observations is None:
            return None
        return [o.key for o in self.observations for _ in o.bgfiles]

    def __repr__(self):
        obs = f", observations {[o.key for o in self.observations]}" if self.observations else ""
        return f"BgdInfo({self.path.name}: {len(self.bgfiles)} spectra, modules {sorted(self.bgdapfiles)}{obs})"


@dataclass
class ObservationFiles:
    """One observation of a several-observation ``bgdinfo.json`` (paths resolved).

    ``first``: the 0-based global number of its first spectrum (spectra are numbered across
    observations in file order, as ``fcxb_config`` links and the fit's data groups count them).
    """

    key: str
    bgfiles: list
    regfiles: list
    modules: list
    bgdapfiles: dict
    bgddetfiles: dict
    refimgf: Path
    grxefiles: dict = field(default_factory=dict)
    first: int = 0

    @property
    def groups(self):
        """Global data-group numbers (1-based) of this observation's spectra."""
        return list(range(self.first + 1, self.first + len(self.bgfiles) + 1))


def _file(base, value, path, key):
    if not isinstance(value, str) or not value.strip():
        raise BadConfigError("must be a file name", path=path, field=key)
    p = Path(value)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise BadConfigError(f"file not found: {p}", path=path, field=key)
    return p


def _module_of_spectrum(path, key):
    spec = read_pha(path)
    if spec.module not in ("A", "B"):
        raise BadConfigError(f"{path.name}: INSTRUME must be FPMA or FPMB", path=path, field=key)
    return spec.module


def _observation_files(data, base, path, check_files, prefix=""):
    """Spectra, regions and maps of one observation block (the top level of a single-observation file)."""
    for key in ("bgfiles", "regfiles", "bgdapfiles", "bgddetfiles"):
        if key not in data:
            raise BadConfigError("required key missing", path=path, field=prefix + key)
    bg, rg = data["bgfiles"], data["regfiles"]
    if not isinstance(bg, list) or not bg:
        raise BadConfigError("must be a non-empty list of spectra", path=path, field=prefix + "bgfiles")
    if not isinstance(rg, list) or len(rg) != len(bg):
        raise BadConfigError(f"must list one region per spectrum ({len(bg)})", path=path, field=prefix + "regfiles")
    bgfiles = [_file(base, v, path, f"{prefix}bgfiles[{i}]") for i, v in enumerate(bg)]
    regfiles = [_file(base, v, path, f"{prefix}regfiles[{i}]") for i, v in enumerate(rg)]
    modules = [_module_of_spectrum(p, f"{prefix}bgfiles[{i}]") for i, p in enumerate(bgfiles)] if check_files else []
    ap, det = data["bgdapfiles"], data["bgddetfiles"]
    if not isinstance(ap, dict) or not isinstance(det, dict):
        raise BadConfigError('must be an object {"A": ..., "B": ...}', path=path, field=prefix + "bgdapfiles")
    bgdap, bgddet = {}, {}
    for m in sorted(set(modules) | (set(ap) & {"A", "B"})):
        if m not in ap:
            raise BadConfigError(f"spectra of FPM{m} are listed but no FPM{m} aperture map", path=path,
                                 field=f"{prefix}bgdapfiles.{m}")
        if m not in det or not isinstance(det[m], list) or len(det[m]) != 4:
            raise BadConfigError(f"needs 4 detector maps (DET0..DET3) for FPM{m}", path=path,
                                 field=f"{prefix}bgddetfiles.{m}")
        bgdap[m] = _file(base, ap[m], path, f"{prefix}bgdapfiles.{m}")
        bgddet[m] = [_file(base, v, path, f"{prefix}bgddetfiles.{m}[{i}]") for i, v in enumerate(det[m])]
    ref = data.get("refimgf") or next(iter(bgdap.values()), None)
    refimgf = _file(base, ref, path, prefix + "refimgf") if isinstance(ref, str) else ref
    return bgfiles, regfiles, modules, bgdap, bgddet, refimgf, _grxe_files(data, base, path, bgdap, prefix)


def _grxe_files(data, base, path, bgdap, prefix):
    """``grxe``: one projected GRXE map (``bgdgrxe<m>.fits``) per module with an aperture map, or none."""
    if "grxe" not in data:
        return {}
    grxe = data["grxe"]
    if not isinstance(grxe, dict) or not set(grxe) <= {"A", "B"}:
        raise BadConfigError('must be an object {"A": "bgdgrxeA.fits", "B": ...}', path=path, field=prefix + "grxe")
    missing = sorted(set(bgdap) - set(grxe))
    if missing:
        raise BadConfigError(f"every module needs a GRXE map (no FPM{', FPM'.join(missing)} entry)", path=path,
                             field=f"{prefix}grxe.{missing[0]}")
    extra = sorted(set(grxe) - set(bgdap))
    if extra:
        raise BadConfigError(f"FPM{extra[0]} has a GRXE map but no aperture map", path=path,
                             field=f"{prefix}grxe.{extra[0]}")
    return {m: _file(base, grxe[m], path, f"{prefix}grxe.{m}") for m in sorted(grxe)}


def _observations(data, base, path, check_files):
    """The ``observations`` list of a several-observation file: one :class:`ObservationFiles` each."""
    clash = [k for k in ("bgfiles", "regfiles", "bgdapfiles", "bgddetfiles", "refimgf", "grxe")
             if k in data]
    if clash:
        raise BadConfigError(f"give the spectra and maps either per observation or at the top level, not both "
                             f"(found {', '.join(clash)})", path=path, field="observations")
    obs = data["observations"]
    if not isinstance(obs, list) or not obs:
        raise BadConfigError("must be a non-empty list of observations", path=path, field="observations")
    out, first = [], 0
    for i, item in enumerate(obs):
        where = f"observations[{i}]"
        if not isinstance(item, dict):
            raise BadConfigError("must be an object", path=path, field=where)
        extra = sorted(set(item) - {"key", "bgfiles", "regfiles", "refimgf", "bgdapfiles", "bgddetfiles",
                                   "grxe"})
        if extra:
            raise BadConfigError(f"unknown key(s) {', '.join(extra)}", path=path, field=where)
        key = item.get("key", f"obs{i + 1}")
        if not isinstance(key, str) or not key.strip() or any(c.isspace() or c in ",:" for c in key):
            raise BadConfigError(f"key {key!r} must be a non-empty name without spaces, ',' or ':'", path=path,
                                 field=f"{where}.key")
        if key in {o.key for o in out}:
            raise BadConfigError(f"key {key!r} is used twice", path=path, field=f"{where}.key")
        files = _observation_files(item, base, path, check_files, prefix=f"{where}.")
        out.append(ObservationFiles(key, *files, first=first))
        first += len(files[0])
    return out


def read_bgdinfo(path, *, check_files=True):
    """Read and validate ``bgdinfo.json``; every error is one line naming the key."""
    path = Path(path)
    data = read_json(path, not_found="file not found", invalid="not valid JSON ({exc})")
    if not isinstance(data, dict):
        raise BadConfigError("must be a JSON object", path=path)
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        warnings.warn(f"{path.name}: key(s) not used by nuskybgd, kept as they are: {', '.join(unknown)}",
                      UnknownKeyWarning, stacklevel=2)
    base = path.parent
    if "observations" in data:
        observations = _observations(data, base, path, check_files)
        bgfiles = [p for o in observations for p in o.bgfiles]
        regfiles = [p for o in observations for p in o.regfiles]
        modules = [m for o in observations for m in o.modules]
        bgdap, bgddet, refimgf = observations[0].bgdapfiles, observations[0].bgddetfiles, observations[0].refimgf
        grxe = observations[0].grxefiles
    else:
        observations = None
        bgfiles, regfiles, modules, bgdap, bgddet, refimgf, grxe = _observation_files(data, base, path,
                                                                                       check_files)
    bg = bgfiles
    links = []
    cfg = data.get("fcxb_config", {})
    if cfg:
        if not isinstance(cfg, dict) or not isinstance(cfg.get("links", []), list):
            raise BadConfigError('must be {"links": [[i, j], ...]}', path=path, field="fcxb_config")
        for pair in cfg.get("links", []):
            if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(v, int) for v in pair)
                    or not all(1 <= v <= len(bg) for v in pair) or pair[0] == pair[1]):
                raise BadConfigError(f"link {pair!r} must be two different spectrum numbers 1..{len(bg)}",
                                     path=path, field="fcxb_config.links")
            links.append(tuple(pair))
    for key in ("intbgd_fix_line_ratios", "intbgd_fix_solar_ratios", "no_solar", "negative_norms", *IDL_FIT_OPTIONS):
        if key in data and not isinstance(data[key], bool):
            raise BadConfigError("must be true or false", path=path, field=key)
    stat = data.get("statistic")
    if stat is not None and stat not in ("cstat", "chi"):
        raise BadConfigError("must be cstat or chi", path=path, field="statistic")
    for key, modes, default in (("internal", INTERNAL_MODES, "shared"), ("fcxb", FCXB_MODES, "per_region")):
        if data.get(key, default) not in modes:
            raise BadConfigError(f"must be one of {', '.join(modes)}", path=path, field=key)
    return BgdInfo(path=path, bgfiles=bgfiles, regfiles=regfiles, refimgf=refimgf, bgdapfiles=bgdap,
                   bgddetfiles=bgddet, fcxb_links=links, fix_line_ratios=bool(data.get("intbgd_fix_line_ratios")),
                   fix_solar_ratios=bool(data.get("intbgd_fix_solar_ratios")),
                   no_solar=bool(data.get("no_solar")), negative_norms=bool(data.get("negative_norms")),
                   statistic=stat, raw=data, modules=modules if check_files else None,
                   observations=observations, internal=data.get("internal", "shared"),
                   fcxb_across=data.get("fcxb", "per_region"), grxefiles=grxe,
                   **{k: bool(data.get(k, default)) for k, default in IDL_FIT_OPTIONS.items()})


def observation_subset(info, key):
    """The single-observation :class:`BgdInfo` of observation ``key`` of a several-observation file.

    Its spectra are renumbered from 1; ``fcxb_config`` links with both ends in the observation are
    kept (renumbered), the others dropped. Options (line ratios, IDL switches ...) are the file's.
    """
    if info.observations is None:
        raise BadConfigError(f"holds a single observation: there is no observation {key!r} to select",
                             path=info.path, field="obs")
    keys = [o.key for o in info.observations]
    if key not in keys:
        raise BadConfigError(f"no observation {key!r} (have {', '.join(keys)})", path=info.path, field="obs")
    o = info.observations[keys.index(key)]
    lo, hi = o.first + 1, o.first + len(o.bgfiles)
    links = [(i - o.first, j - o.first) for i, j in info.fcxb_links if lo <= i <= hi and lo <= j <= hi]
    return replace(info, bgfiles=list(o.bgfiles), regfiles=list(o.regfiles), refimgf=o.refimgf,
                   bgdapfiles=dict(o.bgdapfiles), bgddetfiles=dict(o.bgddetfiles), fcxb_links=links, grxefiles=dict(o.grxefiles),
                   modules=list(o.modules) if info.modules is not None else None, observations=None, subset_of=key)


def _as_written(value, old_base, new_base):
    """A file entry as the user wrote it, made absolute when the file moves to another directory."""
    if isinstance(value, list):
        return [_as_written(v, old_base, new_base) for v in value]
    if isinstance(value, dict):
        return {k: _as_written(v, old_base, new_base) for k, v in value.items()}
    if not isinstance(value, str) or Path(value).is_absolute() or old_base == new_base:
        return value
    return str((old_base / value).resolve())


def bgdinfo_dict(info):
    """The JSON object of ``info``: the file as read (unknown keys included) with the options of ``info``."""
    data = dict(info.raw)
    if "observations" in data:  # copied per observation: rewriting paths must not touch info.raw
        data["observations"] = [dict(o) if isinstance(o, dict) else o for o in data["observations"]]
    data["intbgd_fix_line_ratios"] = bool(info.fix_line_ratios)
    if info.fcxb_links or "fcxb_config" in data:
        cfg = dict(data.get("fcxb_config") or {})
        cfg["links"] = [list(p) for p in info.fcxb_links]
        data["fcxb_config"] = cfg
    for key in ("no_solar", "negative_norms", *IDL_FIT_OPTIONS):
        value = bool(getattr(info, key))
        if key in data or value != IDL_FIT_OPTIONS.get(key, False):
            data[key] = value
    if info.statistic is not None:
        data["statistic"] = info.statistic
    for key, value, default in (("internal", info.internal, "shared"), ("fcxb", info.fcxb_across, "per_region")):
        if key in data or value != default:
            data[key] = value
    return data


def write_bgdinfo(info, path, *, overwrite=False):
    """Write ``info`` as a bgdinfo.json at ``path`` (atomic; never replaces a file unless ``overwrite``).

    Every key of the file it was read from is kept, including the ones nuskybgd does not use;
    relative file names are kept when ``path`` is in the same directory, else made absolute.
    """
    path = Path(path)
    data = bgdinfo_dict(info)
    old_base, new_base = info.path.parent.resolve(), path.parent.resolve()
    files = ("bgfiles", "regfiles", "refimgf", "bgdapfiles", "bgddetfiles", "grxe")
    for block in [data] + [o for o in data.get("observations", []) if isinstance(o, dict)]:
        for key in files:
            if key in block:
                block[key] = _as_written(block[key], old_base, new_base)
    return write_json(path, data, overwrite=overwrite, indent=4)
