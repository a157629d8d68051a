"""Summary rows of a fitted observation and the summary tables (CSV, Parquet).

One row per observation, module and region (``kind`` = ``background`` for the fitted regions,
``source`` for source regions, ``detector`` for each whole detector) with fitted norms,
statistic, and the model or predicted background in the band.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..constants import band_to_channels
from ..io.files import atomic_output
from ..model.background import RegionWeights, region_weights
from .inputs import PRODUCTS


SUMMARY_COLUMNS = [
    "obsid", "module", "region", "kind", "band_lo", "band_hi", "exposure", "counts", "model", "model_error",
    "apbgd", "intbgd", "fcxb", "intn", "apbgd_norm", "fcxb_norm", "intn_norm", "statistic", "stat_value", "dof",
    "converged", "n_warnings", "apec", "grxe",
]


#: The sources of the count columns; ``grxe`` (the optional Galactic ridge) is 0 without a GRXE map.
_SOURCES = ("apbgd", "intbgd", "fcxb", "intn", "grxe")


_TEXT_COLUMNS = ("obsid", "module", "region", "kind", "statistic", "apec")


_FLOAT_COLUMNS = frozenset(SUMMARY_COLUMNS) - set(_TEXT_COLUMNS) - {"dof", "n_warnings", "converged"}


def _detector_weights(maps, n):
    """RegionWeights of the whole of detector ``n``: its projected exposure map, and the aperture
    weight of each sky pixel split between the detectors by their exposure fractions."""
    det = [np.asarray(d, float) if d is not None else None for d in maps.det]
    if det[n] is None:
        return None
    cover = sum(d for d in det if d is not None)
    share = np.divide(det[n], cover, out=np.zeros_like(det[n]), where=cover > 0)
    A = [0.0, 0.0, 0.0, 0.0]
    A[n] = float(det[n].sum())
    grxe = getattr(maps, "grxe", None)
    return RegionWeights(W=float((maps.bgdap * share).sum()), A=tuple(A), module=maps.module, name=f"DET{n}",
                         G=None if grxe is None else float((grxe * share).sum()))


def _band_counts(analysis, g, lo, hi):
    """Model counts of each source of data group ``g`` in channels ``lo..hi``."""
    per = analysis.model.source_counts(g)
    return {s: float(np.sum(np.asarray(per[s])[lo:hi + 1])) if s in per else 0.0 for s in _SOURCES}


def summary_rows(analysis, obs, band, *, obsid, source_regions=(), group_obsids=None):
    """Summary rows of a fitted analysis (see :data:`SUMMARY_COLUMNS`).

    ``group_obsids`` (joint fits) gives the observation of each data group; predictions
    (source regions, detectors) are made per observation from its first group of the module.
    """
    lo_c, hi_c = band_to_channels(*band)
    res = analysis.result
    common = {"band_lo": float(band[0]), "band_hi": float(band[1]), "statistic": res.statistic,
              "stat_value": float(res.value), "dof": int(res.dof), "converged": bool(res.converged),
              "n_warnings": len(res.warnings), "apec": analysis.apec.evaluated_by}
    state = analysis.state
    rows = []
    for g, grp in enumerate(analysis.groups, start=1):
        comps = _band_counts(analysis, g, lo_c, hi_c)
        norms = {}
        for s in ("apbgd", "fcxb", "intn"):
            src = state[s]
            k = next(i for i, p in enumerate(src.params[:src.n_par], start=1) if p.name == "norm")
            norms[f"{s}_norm"] = float(state.value(s, src.index(g, k)))
        rows.append({"obsid": group_obsids[g - 1] if group_obsids else obsid, "module": grp.module,
                     "region": str(grp.name)[:-1] if str(grp.name).endswith(grp.module) else str(grp.name),
                     "kind": "background", "exposure": float(grp.exposure),
                     "counts": float(np.sum(grp.counts[lo_c:hi_c + 1])), "model": float(sum(comps.values())),
                     "model_error": float("nan"), **comps, **norms, **common})
    if obs is not None and not group_obsids:
        for m in obs.modules:
            if m not in state.modules:
                continue
            targets = [(name, "source", region_weights(rs, obs.grid, obs[m].maps, name=name))
                       for name, rs in source_regions]
            targets += [(f"DET{n}", "detector", _detector_weights(obs[m].maps, n)) for n in range(4)]
            for name, kind, w in targets:
                if w is None or not (w.total_area > 0 and w.W > 0):
                    continue
                pred = analysis.predict(w, band=band)
                rows.append({"obsid": obsid, "module": m, "region": name, "kind": kind, "exposure": pred.exposure,
                             "counts": float("nan"), "model": pred.total, "model_error": pred.error,
                             **{s: float(pred.components.get(s, 0.0)) for s in _SOURCES},
                             "apbgd_norm": float("nan"), "fcxb_norm": float("nan"), "intn_norm": float("nan"),
                             **common})
    return [{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows]


def _stored_rows(workdir, obsid):
    data = json.loads((Path(workdir) / obsid / PRODUCTS / "summary.json").read_text(encoding="utf-8"))
    # JSON has no NaN (written as null): the numeric columns get their NaN back.
    return [{c: (math.nan if v is None and c in _FLOAT_COLUMNS else v) for c, v in r.items()} for r in data["rows"]]


def _write_csv(rows, path, columns):
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c]))
                        for c in columns})


def write_summary(rows, stem):
    """``<stem>.csv`` and ``<stem>.parquet`` (atomic) of summary rows; Parquet needs pyarrow.

    Floats are written with ``repr`` in the CSV, so they read back exactly.

    Returns
    -------
    (Path, Path or None)
    """
    stem = Path(stem)
    csv_path = stem.with_suffix(".csv")
    _write_csv(rows, csv_path, SUMMARY_COLUMNS)
    try:
        import pyarrow as pa  # lazy: pyarrow is optional (the CSV is written without it)
        import pyarrow.parquet as pq
    except ImportError:
        stem.with_suffix(".parquet").unlink(missing_ok=True)  # never leave a stale table next to the CSV
        return csv_path, None
    types = {c: pa.float64() for c in SUMMARY_COLUMNS}
    types.update({c: pa.string() for c in _TEXT_COLUMNS})
    types.update(dof=pa.int64(), n_warnings=pa.int64(), converged=pa.bool_())
    schema = pa.schema([(c, types[c]) for c in SUMMARY_COLUMNS])
    table = pa.Table.from_pylist([{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows], schema=schema)
    pq_path = stem.with_suffix(".parquet")
    with atomic_output(pq_path, overwrite=True) as tmp:
        pq.write_table(table, tmp)
    return csv_path, pq_path

