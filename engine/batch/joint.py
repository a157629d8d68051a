"""Joint fits over observations: several observations' spectra in one analysis, sharing
the named background sources (``fcxb``, the focused sky, is never shared).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..analysis import BackgroundAnalysis
from ..errors import BadConfigError
from ..io.files import read_json
from ..model.joint import JOINT_SHARES
from ..model.joint import unshare_observations as _unshare
from .inputs import _one_line
from .observation import _options, _write_products, observation_groups, prepare_with_grxe
from .summary import summary_rows, write_summary


def read_joint_config(config, obsids=None):
    """Validate a joint-fit configuration.

    ``{"joint": [{"name": "epoch1", "observations": ["<obsid>", ...], "share": ["intbgd_lines"]}]}``
    (a path to such a JSON file, or the dict). ``share`` names keys of :data:`JOINT_SHARES`;
    everything not shared is fitted per observation. ``obsids``: the batch's observations.

    Returns
    -------
    list of dict
        ``name``, ``observations``, ``share`` of each joint fit.
    """
    source = None
    if isinstance(config, (str, os.PathLike)):
        source = Path(config)
        config = read_json(source, not_found="joint-fit configuration not found", invalid="not valid JSON ({exc})")
    if not isinstance(config, dict) or not isinstance(config.get("joint"), list):
        raise BadConfigError("must be an object with a list 'joint'", path=source, field="joint")
    out, names = [], set()
    for i, item in enumerate(config["joint"]):
        where = f"joint[{i}]"
        if not isinstance(item, dict):
            raise BadConfigError("must be an object", path=source, field=where)
        obs = item.get("observations")
        if not isinstance(obs, list) or len(obs) < 2 or not all(isinstance(o, str) for o in obs):
            raise BadConfigError("needs 'observations': a list of at least 2 obsids", path=source,
                                 field=f"{where}.observations")
        if len(set(obs)) != len(obs):
            raise BadConfigError("an observation is listed twice", path=source, field=f"{where}.observations")
        if obsids is not None:
            missing = [o for o in obs if o not in obsids]
            if missing:
                raise BadConfigError(f"not in the observation list: {', '.join(missing)}", path=source,
                                     field=f"{where}.observations")
        share = item.get("share", [])
        if not isinstance(share, list) or not all(isinstance(s, str) for s in share):
            raise BadConfigError("'share' must be a list of names", path=source, field=f"{where}.share")
        for s in share:
            if s not in JOINT_SHARES:
                hint = (" (line ratios with a free scale per observation are not linear links; share "
                        "'intbgd_lines' instead)" if "ratio" in s else "")
                raise BadConfigError(f"cannot share {s!r}; choose from {', '.join(JOINT_SHARES)}{hint}",
                                     path=source, field=f"{where}.share")
        name = str(item.get("name") or f"joint{i + 1}")
        if name in names or not name.replace("-", "").replace("_", "").isalnum():
            raise BadConfigError(f"name {name!r} must be unique and alphanumeric", path=source, field=f"{where}.name")
        names.add(name)
        out.append({"name": name, "observations": list(obs), "share": sorted(set(share))})
    return out


def joint_fit(entries, workdir, share, *, name="joint", regions="given", band=(3.0, 20.0), statistic="cstat"):
    """Fit several observations' background spectra in one analysis, sharing ``share``.

    Writes ``workdir/joint/<name>/`` (``bgd_fit.xcm``, ``bgd_fit.json``, ``summary.json``) and
    returns the summary rows (``background`` rows of every observation; the per-observation
    norms in ``*_norm`` are those of the joint fit).
    """
    opts = _options(regions, band, statistic)
    band = tuple(opts["band"])
    for s in share:
        if s not in JOINT_SHARES:
            raise BadConfigError(f"cannot share {s!r}; choose from {', '.join(JOINT_SHARES)}", field="share")
    groups, group_obs = [], []
    for e in entries:
        obs = prepare_with_grxe(e.obsdir, band, e.grxe)
        gs, _notes, _sets = observation_groups(obs, regions=regions, region_files=e.region_files, obsdir=e.obsdir,
                                        statistic=statistic)
        groups += gs
        group_obs += [e.obsid] * len(gs)
    analysis = BackgroundAnalysis(groups)
    _unshare(analysis.state, group_obs, set(share))
    analysis.model.refresh_links()
    analysis.fit(statistic)
    rows = summary_rows(analysis, None, band, obsid=name, group_obsids=group_obs)
    _write_products(analysis, rows, Path(workdir) / "joint" / name,
                    {"name": name, "observations": [e.obsid for e in entries], "share": sorted(share),
                     "options": opts})
    return rows


def _joint_task(cfg, entries, workdir, options):
    try:
        rows = joint_fit(entries, workdir, cfg["share"], name=cfg["name"], regions=options["regions"],
                         band=options["band"], statistic=options["statistic"])
        return {"name": cfg["name"], "rows": rows, "error": None}
    except Exception as exc:  # noqa: BLE001 - a failed joint fit is reported, not fatal
        return {"name": cfg["name"], "rows": [], "error": _one_line(exc)}


def _run_joint(configs, entries, workdir, options, client):
    by_id = {e.obsid: e for e in entries}
    jobs = [(cfg, [by_id[o] for o in cfg["observations"]]) for cfg in configs]
    if client is None:
        results = [_joint_task(cfg, es, str(workdir), options) for cfg, es in jobs]
    else:
        futs = [client.submit(_joint_task, cfg, es, str(workdir), options, pure=False) for cfg, es in jobs]
        results = client.gather(futs)
    out, rows = {}, []
    for res in results:
        out[res["name"]] = res["error"] or res["rows"]
        for r in res["rows"]:
            rows.append({**r, "kind": f"joint:{res['name']}"})
    if rows:
        write_summary(rows, Path(workdir) / "joint_summary")
    return out

