"""What to simulate: :class:`SimulationSpec`, the true norms' defaults and the simulator's constants."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..constants import band_to_channels
from ..errors import BadConfigError

SOURCE_KINDS = ("none", "point", "cluster", "both")

#: NuSTAR orbit (s) and the fraction of it that is good time (Earth occultation, SAA).
ORBIT_S = 5800.0
GOOD_FRACTION = 0.62
#: Live-time fraction: EXPOSURE = LIVETIME = ontime × this.
LIVE_FRACTION = 0.95
#: Aspect sampling interval (s); the pipeline's is ≈ 0.23 s.
ASPECT_DT = 0.5
#: Mission time of the simulated observations' start (2020-01-01T00:00:00 TT ≈ 315 532 800 s).
T0 = 315532869.184
#: NuSTAR PSF as a King profile (1 + (r/rc)²)^-1.5 with HPD 58″: rc = 58/(2√3).
PSF_RC_ARCSEC = 58.0 / (2.0 * math.sqrt(3.0))
PSF_RMAX_ARCSEC = 300.0
#: Components' fixed shapes (ratios.json / §2.9).
APBGD_SHAPE = (1.29, 41.13)
BANDS = {"3-20": (3.0, 20.0), "20-50": (20.0, 50.0)}
#: Slices of a per-channel vector (column j = PI channel j) holding each band's channels.
BAND_SLICES = {band: slice(lo, hi + 1) for band, (lo, hi) in
                ((band, band_to_channels(*e)) for band, e in BANDS.items())}


def default_norms():
    """Truth normalisation factors (1 = the nominal background of the presets).

    Returns
    -------
    dict
        ``{'A': {...}, 'B': {...}}`` with keys ``ap_factor``, ``fcxb_factor``,
        ``intbgd_factor`` (4 values, DET0..3), ``intn_factor`` (4 values).
    """
    return {
        "A": {"ap_factor": 1.0, "fcxb_factor": 1.0, "intbgd_factor": [1.0, 1.0, 1.0, 1.0],
              "intn_factor": [1.0, 1.0, 1.0, 1.0]},
        "B": {"ap_factor": 1.0, "fcxb_factor": 1.0, "intbgd_factor": [1.0, 1.0, 1.0, 1.0],
              "intn_factor": [1.0, 1.0, 1.0, 1.0]},
    }


def check_norms(norms, source="--norms"):
    """``norms`` (as read from a ``--norms`` JSON file) merged over :func:`default_norms`, validated;
    a :class:`BadConfigError` naming ``source`` and the field otherwise."""
    out = default_norms()
    if norms is None:
        return out
    if not isinstance(norms, dict):
        raise BadConfigError("must be a JSON object {'A': {...}, 'B': {...}}", path=source)
    for mod, values in norms.items():
        if mod not in out:
            raise BadConfigError(f"unknown module {mod!r} (expected A or B)", path=source, field=mod)
        if not isinstance(values, dict):
            raise BadConfigError("must be an object", path=source, field=mod)
        for key, value in values.items():
            if key not in out[mod]:
                raise BadConfigError(f"unknown key (expected one of {sorted(out[mod])})", path=source,
                                     field=f"{mod}.{key}")
            want_list = isinstance(out[mod][key], list)
            vals = value if want_list else [value]
            if want_list and (not isinstance(value, list) or len(value) != 4):
                raise BadConfigError("must be a list of 4 numbers (DET0..DET3)", path=source, field=f"{mod}.{key}")
            try:
                vals = [float(v) for v in vals]
            except (TypeError, ValueError):
                raise BadConfigError("must be numbers", path=source, field=f"{mod}.{key}") from None
            if any(not math.isfinite(v) or v < 0 for v in vals):
                raise BadConfigError("must be finite and >= 0", path=source, field=f"{mod}.{key}")
            out[mod][key] = vals if want_list else vals[0]
    return out


@dataclass
class SimulationSpec:
    """What to simulate (validated on construction).

    Parameters
    ----------
    obsid : str
        11-digit observation ID.
    seed : int
    exposure : float
        EXPOSURE (= LIVETIME) in s.
    pa : float
        PA_PNT in degrees.
    ra, dec : float
        Nominal pointing (deg); the sky frame's reference value.
    source : {'none', 'point', 'cluster', 'both'}
    norms : dict, optional
        Truth factors (see :func:`default_norms`).
    modules : tuple of str
    """

    obsid: str = "90000000002"
    seed: int = 1
    exposure: float = 50000.0
    pa: float = 30.0
    ra: float = 150.0
    dec: float = 2.2
    source: str = "point"
    norms: dict = field(default_factory=default_norms)
    modules: tuple = ("A", "B")

    def __post_init__(self):
        obsid = str(self.obsid).strip()
        if not obsid.isdigit() or not 1 <= len(obsid) <= 11:
            raise BadConfigError(f"obsid must be up to 11 digits, got {self.obsid!r}", field="obsid")
        self.obsid = obsid.zfill(11)
        try:
            self.seed = int(self.seed)
            self.exposure = float(self.exposure)
            self.pa = float(self.pa)
            self.ra = float(self.ra)
            self.dec = float(self.dec)
        except (TypeError, ValueError) as exc:
            raise BadConfigError(f"invalid number ({exc})", field="simulate") from None
        if self.seed < 0:
            raise BadConfigError(f"must be >= 0, got {self.seed}", field="seed")
        if not (math.isfinite(self.exposure) and 0 < self.exposure <= 5e6):
            raise BadConfigError(f"must be > 0 s (and at most 5 Ms), got {self.exposure:g}", field="exposure")
        if not math.isfinite(self.pa):
            raise BadConfigError("must be finite", field="pa")
        self.pa = self.pa % 360.0
        if not (0.0 <= self.ra < 360.0):
            raise BadConfigError(f"must be in [0, 360), got {self.ra}", field="ra")
        if not (-90.0 < self.dec < 90.0):
            raise BadConfigError(f"must be in (-90, 90), got {self.dec}", field="dec")
        if self.source not in SOURCE_KINDS:
            raise BadConfigError(f"unknown source kind {self.source!r} (expected one of "
                                 f"{', '.join(SOURCE_KINDS)})", field="source")
        self.norms = check_norms(self.norms)
        mods = tuple(str(m).upper() for m in self.modules)
        if not mods or any(m not in ("A", "B") for m in mods):
            raise BadConfigError(f"modules must be A and/or B, got {self.modules!r}", field="modules")
        self.modules = mods
