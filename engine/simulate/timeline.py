"""Time line of a simulated observation: orbital GTIs, the mast wobble (aspect track) and the
DET1 ↔ sky mapping through it."""

from __future__ import annotations

import math

import numpy as np

from ..constants import DET1_REFPIX
from ..io.aspect import AspectTrack
from ..io.gti import Gti
from ..maps.projection import nudge, roll_angle
from .spec import ASPECT_DT, GOOD_FRACTION, LIVE_FRACTION, ORBIT_S, T0


def make_gti(exposure, rng, *, t0=T0):
    """Orbital GTIs whose total good time is ``exposure / LIVE_FRACTION`` (the on-time)."""
    ontime = exposure / LIVE_FRACTION
    good = ORBIT_S * GOOD_FRACTION
    n_full = int(ontime // good)
    rest = ontime - n_full * good
    phase = rng.uniform(0.0, ORBIT_S - good)
    starts = t0 + phase + ORBIT_S * np.arange(n_full + (1 if rest > 1e-6 else 0))
    lengths = np.full(len(starts), good)
    if rest > 1e-6:
        lengths[-1] = rest
    return Gti(starts, starts + lengths)


def make_aspect_track(module, gti, centre, rng, *, dt=ASPECT_DT, header=None):
    """Sky position of DET1 (350, 350) vs time: a thermal mast wobble of ~tens of pixels + jitter.

    The track spans TSTART..TSTOP (slightly beyond the GTIs), sampled every ``dt`` seconds.
    """
    tstart, tstop = gti.start[0] - 60.0, gti.stop[-1] + 60.0
    t = np.arange(tstart, tstop, dt)
    # Thermal flexing follows the orbit (day/night), with a slower drift and small jitter.
    phase = rng.uniform(0, 2 * np.pi, 3)
    amp = rng.uniform(8.0, 14.0, 2)
    x = (centre[0] + amp[0] * np.sin(2 * np.pi * t / ORBIT_S + phase[0])
         + 3.0 * np.sin(2 * np.pi * t / 20000.0 + phase[2]) + rng.normal(0, 0.4, t.size))
    y = (centre[1] + amp[1] * np.cos(2 * np.pi * t / ORBIT_S + phase[1])
         + 2.0 * np.cos(2 * np.pi * t / 20000.0 + phase[2]) + rng.normal(0, 0.4, t.size))
    return AspectTrack(t, x, y, module, dict(header or {}))


def sample_times(gti, n, rng):
    """``n`` times uniform over the good time."""
    lengths = gti.stop - gti.start
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    u = rng.uniform(0.0, cum[-1], n)
    k = np.searchsorted(cum, u, side="right") - 1
    return gti.start[k] + (u - cum[k])


def aspect_at(track, times):
    """Aspect position used by the projection at each time: the floored sample (§1.6)."""
    k = np.clip(np.searchsorted(track.time, times, side="right") - 1, 0, len(track) - 1)
    return np.floor(track.x[k]), np.floor(track.y[k])


def _roll_matrix(pa):
    a = roll_angle(pa)
    c, s = math.cos(a), math.sin(a)
    return c, s, nudge(pa)


def det1_to_sky(u, v, ax, ay, pa):
    """Continuous 0-based sky position of DET1 position (u, v) when DET1 (350, 350) is at (ax, ay)."""
    c, s, (nx, ny) = _roll_matrix(pa)
    du = np.asarray(u, float) - DET1_REFPIX[0]
    dv = np.asarray(v, float) - DET1_REFPIX[1]
    return ax + (-c * du + s * dv) - nx, ay + (s * du + c * dv) - ny


def sky_to_det1(x, y, ax, ay, pa):
    """Inverse of :func:`det1_to_sky` (the roll matrix is its own inverse)."""
    c, s, (nx, ny) = _roll_matrix(pa)
    dx = np.asarray(x, float) - ax + nx
    dy = np.asarray(y, float) - ay + ny
    return DET1_REFPIX[0] + (-c * dx + s * dy), DET1_REFPIX[1] + (s * dx + c * dy)


def aspect_centre_for(pa, target=(500.0, 500.0), det1_centre=(180.0, 180.0)):
    """Aspect position that puts the DET1 array centre on the sky ``target`` (0-based)."""
    c, s, (nx, ny) = _roll_matrix(pa)
    du = det1_centre[0] - DET1_REFPIX[0]
    dv = det1_centre[1] - DET1_REFPIX[1]
    return target[0] - (-c * du + s * dv) + nx, target[1] - (s * du + c * dv) + ny
