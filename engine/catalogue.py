"""The XSPEC component catalogue: every component type's parameters and default value lines.

One table, read by the model (:mod:`.model.components`, which adds the formulas) and by the
``.xcm`` layer (:mod:`.xcm`, which fills in parameters a script leaves out). The numbers are
XSPEC 12.15's ``model.dat`` (HEASoft 6.35.1): default, hard/soft limits and delta of each
parameter, additive components with the implicit ``norm`` last. A leaf: imports nothing of the
engine.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APEC_PARAMETERS", "NORM", "XSPEC_MODEL_PARAMETERS", "ParamSpec", "canonical_name", "component_parameters"]


@dataclass(frozen=True)
class ParamSpec:
    """One XSPEC parameter with its default value line (model.dat order).

    Attributes
    ----------
    name : str
        XSPEC's parameter name (``PhoIndex``, ``HighECut``, ``norm``, ...).
    default, delta, hard_min, soft_min, soft_max, hard_max : float
        XSPEC's default value line; ``delta < 0`` means frozen by default.
    unit : str
        Unit (``keV`` or empty).
    """

    name: str
    default: float
    delta: float
    hard_min: float
    soft_min: float
    soft_max: float
    hard_max: float
    unit: str = ""

    def value_line(self):
        """The six numbers of an ``.xcm`` value line for the default."""
        return (self.default, self.delta, self.hard_min, self.soft_min, self.soft_max,
                self.hard_max)


#: XSPEC's implicit norm of every additive component.
NORM = ParamSpec("norm", 1.0, 0.01, 0.0, 0.0, 1e24, 1e24)


def _p(name, default, hard_min, soft_min, soft_max, hard_max, delta, unit=""):
    # model.dat column order (default, hard min, soft min, soft max, hard max, delta)
    return ParamSpec(name, default, delta, hard_min, soft_min, soft_max, hard_max, unit)


_PHOINDEX = _p("PhoIndex", 1.0, -3.0, -2.0, 9.0, 10.0, 0.01)
_LINE_E = _p("LineE", 6.5, 0.0, 0.0, 1e6, 1e6, 0.05, "keV")
_REDSHIFT = _p("Redshift", 0.0, -0.999, -0.999, 10.0, 10.0, -0.01)
_NH = _p("nH", 1.0, 0.0, 0.0, 1e5, 1e6, 1e-3)

#: apec's XSPEC parameters (model.dat) -- evaluated only through the model's ``ApecShape``.
APEC_PARAMETERS = (
    _p("kT", 1.0, 0.008, 0.008, 64.0, 64.0, 0.01, "keV"),
    _p("Abundanc", 1.0, 0.0, 0.0, 5.0, 5.0, -0.001),
    _REDSHIFT,
    NORM,
)

#: XSPEC component name -> tuple of ParamSpec (all parameters, ``norm`` last if additive).
XSPEC_MODEL_PARAMETERS = {
    # The components the model evaluates (model/components.py).
    "powerlaw": (_PHOINDEX, NORM),
    "cutoffpl": (_PHOINDEX, _p("HighECut", 15.0, 0.01, 1.0, 500.0, 500.0, 0.01, "keV"), NORM),
    "bknpower": (_p("PhoIndx1", 1.0, -3.0, -2.0, 9.0, 10.0, 0.01), _p("BreakE", 5.0, 0.0, 1e-2, 1e6, 1e6, 0.01, "keV"),
                 _p("PhoIndx2", 2.0, -3.0, -2.0, 9.0, 10.0, 0.01), NORM),
    "lorentz": (_LINE_E, _p("Width", 0.1, 0.0, 0.0, 10.0, 20.0, 0.05, "keV"), NORM),
    "gaussian": (_LINE_E, _p("Sigma", 0.1, 0.0, 0.0, 10.0, 20.0, 0.05, "keV"), NORM),
    "bremss": (_p("kT", 7.0, 1e-4, 1e-4, 100.0, 200.0, 0.05, "keV"), NORM),
    "highecut": (_p("cutoffE", 10.0, 1e-4, 1e-2, 1e6, 1e6, 0.01, "keV"),
                 _p("foldE", 15.0, 1e-4, 1e-2, 1e6, 1e6, 0.01, "keV")),
    "apec": APEC_PARAMETERS,
    # Further components an .xcm may hold (read and written, not evaluated).
    "constant": (_p("factor", 1.0, 0.0, 0.0, 1e10, 1e10, 1e-2),),
    "TBabs": (_NH,),
    "phabs": (_NH,),
    "wabs": (_NH,),
    "zgauss": (_p("LineE", 6.5, 0.0, 0.0, 1e6, 1e6, 0.05), _p("Sigma", 0.1, 0.0, 0.0, 10.0, 20.0, 0.05),
               _REDSHIFT, NORM),
    "zpowerlw": (_p("PhoIndex", 1.0, -3.0, -2.0, 9.0, 10.0, 0.01), _REDSHIFT, NORM),
    # mekal's 5th parameter is a "$switch" (an always-frozen integer flag, default 1).
    "mekal": (_p("kT", 1.0, 0.0808, 0.0808, 79.9, 79.9, 0.01), _p("nH", 1.0, 1e-6, 1e-5, 1e19, 1e20, -0.01),
              _p("Abundanc", 1.0, 0.0, 0.0, 1000.0, 1000.0, -0.01), _REDSHIFT,
              _p("switch", 1.0, 0.0, 0.0, 1.0, 1.0, -0.01), NORM),
    "vapec": ((_p("kT", 6.5, 0.0808, 0.0808, 68.447, 68.447, 0.01),)
              + tuple(_p(el, 1.0, 0.0, 0.0, 1000.0, 1000.0, -0.01)
                      for el in ("He", "C", "N", "O", "Ne", "Mg", "Al", "Si", "S", "Ar", "Ca", "Fe", "Ni"))
              + (_REDSHIFT, NORM)),
}

_CANONICAL = {name.lower(): name for name in XSPEC_MODEL_PARAMETERS}
#: Abbreviations seen in real scripts; each is a unique prefix in XSPEC 12.15's model.dat.
_ALIASES = {"const": "constant", "tbabs": "TBabs"}


def canonical_name(model_type):
    """XSPEC's spelling of a component type written in any case or abbreviated, or ``None``."""
    return _CANONICAL.get(model_type.lower()) or _ALIASES.get(model_type.lower())


#: Table models registered in this process (``atable{file}`` -> ParamSpecs, norm last), filled by
#: :func:`nuskybgd_engine.model.tablemodel.register_table_model`.
TABLE_PARAMETERS = {}


def component_parameters(model_type):
    """The ParamSpec tuple of an XSPEC component type, or ``None`` if unknown here."""
    if model_type in TABLE_PARAMETERS:
        return TABLE_PARAMETERS[model_type]
    key = canonical_name(model_type)
    return XSPEC_MODEL_PARAMETERS.get(key) if key else None
