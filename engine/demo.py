"""The embedded demo observation: a simulated NuSTAR observation made on first use and reused.

``nuskybgd demo``, the dashboard's ``--demo`` and the notebooks all open the same observation:
a 40 ks pointing with a point source, simulated with a fixed seed from the embedded nominal
calibration (or the real files when ``NUSKYBGD_AUXIL`` points at them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BadConfigError, BadFileError
from .simulate import SimulationSpec, simulate_observation

__all__ = ["DEMO_SPEC", "DEMO_VISITS", "demo_root", "ensure_demo_observation"]

#: What the demo observation is (changing it changes the cached demo's truth.json).
DEMO_SPEC = {"obsid": "90000000002", "seed": 2026, "exposure": 40000.0, "pa": 30.0, "ra": 150.0, "dec": 2.2,
             "source": "point"}
#: Later visits of the demo field (``Session.load(demo=True, visits=2)``): another OBSID, seed and roll.
DEMO_VISITS = {2: {"obsid": "90000000003", "seed": 2027, "pa": 120.0},
               3: {"obsid": "90000000004", "seed": 2028, "pa": 210.0}}


def demo_root(root=None):
    """Directory holding the demo observation: ``root``, ``$NUSKYBGD_DEMO_DIR`` or the user cache."""
    if root is not None:
        return Path(root)
    env = os.environ.get("NUSKYBGD_DEMO_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nuskybgd" / "demo"


def _matches(obsdir, spec=DEMO_SPEC):
    truth = obsdir / "truth.json"
    try:
        data = json.loads(truth.read_text())
    except (OSError, ValueError):
        return False
    return all(data.get(k) == spec[k] for k in ("obsid", "seed", "exposure", "source"))


def ensure_demo_observation(root=None, *, progress=None, visit=1):
    """Path of the demo observation directory (``<root>/<obsid>``), simulating it if needed.

    ``visit``: 1 (the demo) or a key of :data:`DEMO_VISITS` (the same field at another roll).
    An existing directory of the same name that is not the demo (no matching ``truth.json``)
    is never replaced: an error names it.
    """
    if visit != 1 and visit not in DEMO_VISITS:
        raise BadConfigError(f"demo visit must be 1 or one of {sorted(DEMO_VISITS)}, got {visit!r}", field="visits")
    spec = {**DEMO_SPEC, **DEMO_VISITS.get(visit, {})}
    root = demo_root(root)
    obsdir = root / spec["obsid"]
    if obsdir.is_dir():
        if _matches(obsdir, spec):
            return obsdir
        raise BadFileError("exists but is not the nuskybgd demo observation; choose another directory "
                           "(NUSKYBGD_DEMO_DIR)", path=obsdir)
    root.mkdir(parents=True, exist_ok=True)
    simulate_observation(root, SimulationSpec(**spec), progress=progress)
    return obsdir
