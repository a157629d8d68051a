"""Background predictions for many regions, modules and bands at once (``nuskybgd predict``).

:meth:`~.workflow.BackgroundAnalysis.predict` gives one region, module and band; an observer
scripting predictions for many source regions wants them all from one reopened fit:
:func:`predict_regions` computes every (region, module, band) case and :func:`format_table`
prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import BadConfigError
from .io.regions import RegionSet
from .model.background import region_weights

__all__ = ["RegionPrediction", "predict_regions", "format_table"]

SOURCES = ("apbgd", "intbgd", "fcxb", "intn")


@dataclass
class RegionPrediction:
    """One case: the region's name and file, and its :class:`~.workflow.Prediction`."""

    region: str
    path: str | None
    prediction: object
    notes: tuple = ()  # what the region reader skipped (shapes with no area: point, text ...)

    def to_dict(self):
        return {"region": self.region, "region_file": self.path, **self.prediction.to_dict()}


def predict_regions(analysis, regions, *, modules=None, bands=((3.0, 20.0),), exposure=None, systematic=None):
    """Predicted background of every (region, module, band) case.

    Parameters
    ----------
    analysis : BackgroundAnalysis
        A fitted analysis with its sky grid and projected maps (``from_bgdinfo`` or
        :func:`~.workflow.load_fit_json`).
    regions : list of path-like or (name, RegionSet)
        ds9 region files (named by their stem) or named region sets.
    modules : list of {'A', 'B'}, optional
        Default: every fitted module.
    bands : list of (float, float)
        Energy bands in keV.
    exposure : float, optional
        Exposure in s (default: each module's reference spectrum's).
    systematic : float, optional
        Systematic floor as a fraction of each prediction (default
        :data:`~nuskybgd_engine.uncertainty.SYSTEMATIC_FRACTION`).

    Returns
    -------
    list of RegionPrediction
        In the order region, module, band.
    """
    fitted = sorted(set(analysis.state.modules))
    modules = list(modules) if modules else fitted
    maps = getattr(analysis, "maps", None) or {}
    for m in modules:
        if m not in maps:
            raise BadConfigError(f"the fit has no FPM{m} maps", field="module")
    if not bands:
        raise BadConfigError("give at least one band", field="band")
    named = []
    for r in regions:
        if isinstance(r, tuple):
            named.append((str(r[0]), None, r[1]))
        else:
            named.append((Path(r).stem, str(r), RegionSet.read_ds9(r)))
    out = []
    for name, path, rs in named:
        for m in modules:
            w = region_weights(rs, analysis.grid, maps[m], name=path or name)
            for band in bands:
                pred = analysis.predict(w, band=tuple(band), exposure=exposure, systematic=systematic)
                out.append(RegionPrediction(name, path, pred, tuple(getattr(rs, "notes", ()))))
    return out


def format_table(cases):
    """A text table of :func:`predict_regions` results: one line per case, counts per component."""
    width = max([len("region")] + [len(c.region) for c in cases])
    head = (f"{'region':<{width}}  FPM  {'band keV':>11}  {'exposure s':>10}  {'total':>10}  {'stat':>8}  "
            f"{'sys':>8}  {'stat⊕sys':>9}  " + "  ".join(f"{s:>9}" for s in SOURCES))
    lines = [head]
    for c in cases:
        p = c.prediction
        band = f"{p.band[0]:g}-{p.band[1]:g}"
        comps = "  ".join(f"{p.components.get(s, 0.0):9.2f}" for s in SOURCES)
        lines.append(f"{c.region:<{width}}  {p.module:>3}  {band:>11}  {p.exposure:10.0f}  {p.total:10.2f}  "
                     f"{p.stat_error:8.2f}  {p.sys_error:8.2f}  {p.stat_sys_error:9.2f}  {comps}")
    return "\n".join(lines)
