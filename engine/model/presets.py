"""The model presets of ``ratios.json`` (spec §3.1) as a typed object.

``ratios.json`` lists four entries positionally (0 apbgd, 1 intbgd, 2 fcxb, 3 intn); the intbgd
entry has ``apec`` plus 29 ``lorentz`` components whose XSPEC names are ``lorentz``,
``lorentz_3`` … ``lorentz_30`` (the suffix is the component's position in the expression).
``ifactors`` are nominal whole-detector norms, per module, DET0..DET3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calibration.products import load_ratios
from ..errors import BadConfigError

__all__ = ["Presets", "LinePreset", "presets_from_ratios", "load_presets"]


@dataclass(frozen=True)
class LinePreset:
    """One intbgd component: ``apec`` (energy/width None) or a lorentz line."""

    name: str
    kind: str  # 'apec' or 'lorentz'
    params: dict  # shape parameters by XSPEC name (kT/Abundanc/Redshift or LineE/Width)
    ifactors: dict  # module -> ndarray (4,)


@dataclass(frozen=True)
class Presets:
    """Spectral shapes and detector factors of the four background sources."""

    apbgd: dict  # module -> (PhoIndex, HighECut)
    intbgd: tuple  # LinePreset, apec first then the 29 lines in file order
    intn: dict  # module -> (PhoIndx1, BreakE, PhoIndx2)
    intn_ifactors: dict  # module -> ndarray (4,)
    source: str = "ratios.json"

    @property
    def n_lines(self):
        return sum(1 for c in self.intbgd if c.kind == "lorentz")

    def __repr__(self):
        return f"Presets(apbgd, intbgd = apec + {self.n_lines} lorentz, fcxb, intn; from {self.source})"


def _num(value, field, source):
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BadConfigError(f"expected a number, got {value!r}", path=source, field=field) from None
    if not np.isfinite(out):
        raise BadConfigError("must be finite", path=source, field=field)
    return out


def _factors(values, field, source):
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise BadConfigError("expected 4 ifactors (DET0..DET3)", path=source, field=field)
    return np.array([_num(v, field, source) for v in values])


def presets_from_ratios(data, source="ratios.json"):
    """Build :class:`Presets` from the parsed ``ratios.json`` dict, validating every field."""
    try:
        models = data["models"]
        ap = models[0]["components"]["cutoffpl"]
        ib = models[1]["components"]
        inn = models[3]["components"]["bknpower"]
    except (KeyError, IndexError, TypeError) as exc:
        raise BadConfigError(f"unexpected layout (missing {exc})", path=source, field="models") from None
    apbgd, intn, intn_f = {}, {}, {}
    for m in ("A", "B"):
        try:
            apbgd[m] = (_num(ap[m]["phoindex"], f"apbgd.{m}.phoindex", source),
                        _num(ap[m]["highecut"], f"apbgd.{m}.highecut", source))
            intn[m] = (_num(inn[m]["phoindx1"], f"intn.{m}.phoindx1", source),
                       _num(inn[m]["breake"], f"intn.{m}.breake", source),
                       _num(inn[m]["phoindx2"], f"intn.{m}.phoindx2", source))
            intn_f[m] = _factors(inn[m]["ifactors"], f"intn.{m}.ifactors", source)
        except KeyError as exc:
            raise BadConfigError(f"missing key {exc}", path=source, field=f"module {m}") from None
    comps = []
    if not isinstance(ib, dict):
        raise BadConfigError("intbgd components must be an object", path=source, field="intbgd")
    for name, comp in ib.items():
        kind = "apec" if name == "apec" else "lorentz" if name.startswith("lorentz") else None
        if kind is None:
            raise BadConfigError(f"unknown intbgd component {name!r}", path=source, field="intbgd")
        # A malformed component (missing module or key, wrong type) is a one-line error, not a KeyError.
        try:
            first = comp["A"]
            if kind == "apec":
                params = {"kT": _num(first["kt"], f"{name}.kt", source),
                          "Abundanc": _num(first["abundanc"], f"{name}.abundanc", source),
                          "Redshift": _num(first["redshift"], f"{name}.redshift", source)}
            else:
                params = {"LineE": _num(first["linee"], f"{name}.linee", source),
                          "Width": _num(first["width"], f"{name}.width", source)}
            factors = {m: _factors(comp[m]["ifactors"], f"{name}.{m}.ifactors", source) for m in ("A", "B")}
        except (KeyError, TypeError, IndexError) as exc:
            raise BadConfigError(f"malformed component (missing or invalid {exc})", path=source,
                                 field=f"intbgd.{name}") from None
        comps.append(LinePreset(name, kind, params, factors))
    if not comps or comps[0].kind != "apec":
        raise BadConfigError("intbgd must start with apec", path=source, field="intbgd")
    return Presets(apbgd, tuple(comps), intn, intn_f, source=str(source))


def load_presets(path=None):
    """Presets from ``ratios.json`` (explicit path > NUSKYBGD_AUXIL > cache > embedded nominal copy)."""
    data, src = load_ratios(path)
    return presets_from_ratios(data, source=str(path) if path else src)
