"""The embedded demo observation: a simulated NuSTAR observation made on first use and reused.

``nuskybgd demo``, the dashboard's ``--demo`` and the notebooks all open the same observation:
a 40 ks pointing with a point source, simulated with a fixed seed from the embedded nominal
calibration (or the real files when ``NUSKYBGD_AUXIL`` points at them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import BadFileError
from .simulate import SimulationSpec, simulate_observation

__all__ = ["DEMO_SPEC", "demo_root", "ensure_demo_observation"]

#: What the demo observation is (changing it changes the cached demo's truth.json).
DEMO_SPEC = {"obsid": "90000000002", "seed": 2026, "exposure": 40000.0, "pa": 30.0, "ra": 150.0, "dec": 2.2,
             "source": "point"}


def demo_root(root=None):
    """Directory holding the demo observation: ``root``, ``$NUSKYBGD_DEMO_DIR`` or the user cache."""
    if root is not None:
        return Path(root)
    env = os.environ.get("NUSKYBGD_DEMO_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nuskybgd" / "demo"


def _matches(obsdir):
    truth = obsdir / "truth.json"
    try:
        data = json.loads(truth.read_text())
    except (OSError, ValueError):
        return False
    return all(data.get(k) == v for k, v in (("obsid", DEMO_SPEC["obsid"]), ("seed", DEMO_SPEC["seed"]),
                                               ("exposure", DEMO_SPEC["exposure"]), ("source", DEMO_SPEC["source"])))


def ensure_demo_observation(root=None, *, progress=None):
    """Path of the demo observation directory (``<root>/<obsid>``), simulating it if needed.

    An existing directory of the same name that is not the demo (no matching ``truth.json``)
    is never replaced: an error names it.
    """
    root = demo_root(root)
    obsdir = root / DEMO_SPEC["obsid"]
    if obsdir.is_dir():
        if _matches(obsdir):
            return obsdir
        raise BadFileError("exists but is not the nuskybgd demo observation; choose another directory "
                           "(NUSKYBGD_DEMO_DIR)", path=obsdir)
    root.mkdir(parents=True, exist_ok=True)
    simulate_observation(root, SimulationSpec(**DEMO_SPEC), progress=progress)
    return obsdir
