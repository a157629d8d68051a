"""The aspect solution and roll measured from the events themselves (DET1X/DET1Y against X/Y).

A solar observation converted to solar X/Y (nustar_pysolar ``*_sunpos.evt``) has no aspect file
in its frame (``nu<obsid>_det1.fits`` tracks DET1 (350, 350) in RA/Dec pixels, and the Sun moves
across that frame), and its PA_PNT is −100 (and would be the celestial roll, not the roll relative
to solar north). Every event, however, carries both its DET1 pixel and its sky pixel, and the two
are related by the map the projection uses (:func:`~.projection.det1_coordinates`):

    sky − P(t) = M(a) · (det − ref),   M(a) = [[−cos a, sin a], [sin a, cos a]]

with P(t) the sky pixel of DET1 reference pixel ``ref`` = (350, 350) at time t and
``a = −(PA + 1°)·π/180``. M is a reflection (M² = 1). So:

Roll
    With events grouped in short time bins (the pointing is constant within a bin), the centred
    vectors satisfy s̃ = M(a)·d̃; the least-squares a maximises Σ s̃·M(a)d̃, i.e.
    ``cos a ∝ Σ(s̃y d̃y − s̃x d̃x)``, ``sin a ∝ Σ(s̃x d̃y + s̃y d̃x)`` (closed form, no iteration).
    The effective PA is ``−a·180/π − 1°`` (what PA_PNT would be in this frame).
Track
    P in each bin is the mean of ``sky − M(a)(det − ref)`` over its events; bins without events
    are interpolated. The track is returned as an :class:`~nuskybgd_engine.io.aspect.AspectTrack`
    whose positions include the projection's nudge ν (so that the projection, which shifts by
    −ν, reproduces the events' own DET1↔sky relation) and +0.5 (the histogram floors positions;
    this rounds them to the nearest sky pixel).

The fit's RMS residual (in pixels; ~0.5-1 from the pixel randomisation of X/Y and DET1) is kept
so a bad frame (e.g. a mirror-flipped one, which no roll fits) is refused instead of projected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..constants import DET1_NPIX, DET1_REFPIX, PA_OFFSET_DEG
from ..errors import BadFileError
from ..io.aspect import AspectTrack
from .projection import nudge

__all__ = ["EventAspect", "aspect_from_events", "MAX_RESIDUAL_PIX"]

#: Largest RMS residual (sky pixels) of the DET1↔sky fit accepted (randomisation gives ≲ 1).
MAX_RESIDUAL_PIX = 2.0
#: Fewest usable events for a roll measurement.
MIN_EVENTS = 20


@dataclass
class EventAspect:
    """Aspect solution measured from the events.

    Attributes
    ----------
    track : AspectTrack
        Sky position (0-based pixels, nudge and +0.5 included, see the module notes) per time bin.
    pa : float
        Effective PA_PNT (degrees) of the frame: the roll the projection must use.
    residual : float
        RMS residual (sky pixels) of the events about the fitted map.
    n_events : int
        Events used.
    bin_seconds : float
    """

    track: AspectTrack
    pa: float
    residual: float
    n_events: int
    bin_seconds: float

    def __repr__(self):
        return (f"EventAspect(FPM{self.track.module}, PA {self.pa:.3f} deg, {self.n_events} events, "
                f"rms {self.residual:.2f} px, {len(self.track)} samples of {self.bin_seconds:g} s)")


def _reflection(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[-c, s], [s, c]])


def aspect_from_events(events, gti=None, *, bin_seconds=1.0, pa_pnt=None):
    """Measure the roll and the aspect track of an observation from its events.

    Parameters
    ----------
    events : EventList
        Needs TIME, X, Y, DET1X, DET1Y.
    gti : Gti, optional
        Only events inside these intervals are used (default: the event file's GTI, else all).
    bin_seconds : float
        Time bin over which the pointing is taken as constant.
    pa_pnt : float, optional
        Use this roll instead of measuring it (the track is still measured).

    Returns
    -------
    EventAspect

    Raises
    ------
    BadFileError
        Too few events with valid DET1 and sky positions, or no roll fits the events (RMS
        residual above :data:`MAX_RESIDUAL_PIX`).
    """
    for name in ("TIME", "X", "Y", "DET1X", "DET1Y"):
        if name not in events.columns:
            raise BadFileError("required column missing for the aspect from events", path=events.path,
                               extension="EVENTS", field=name)
    if not bin_seconds > 0:
        raise BadFileError(f"bin_seconds must be > 0, got {bin_seconds!r}", path=events.path)
    frame = events.frame
    t = np.asarray(events["TIME"], dtype=float)
    sx = np.asarray(events["X"], dtype=float) - frame.origin
    sy = np.asarray(events["Y"], dtype=float) - frame.origin
    dx = np.asarray(events["DET1X"], dtype=float) - 1.0 - DET1_REFPIX[0]
    dy = np.asarray(events["DET1Y"], dtype=float) - 1.0 - DET1_REFPIX[1]
    det1x = np.asarray(events["DET1X"])
    det1y = np.asarray(events["DET1Y"])
    ok = np.isfinite(t) & (det1x >= 1) & (det1x <= DET1_NPIX) & (det1y >= 1) & (det1y <= DET1_NPIX)
    ok &= (sx >= 0) & (sx < frame.shape[1]) & (sy >= 0) & (sy < frame.shape[0])
    gti = gti if gti is not None else events.gti
    if gti is not None:
        ok &= gti.contains(t)
    n = int(ok.sum())
    if n < MIN_EVENTS:
        raise BadFileError(f"only {n} events with valid DET1X/DET1Y and sky X/Y inside the good times: cannot "
                           f"measure the aspect from the events (need {MIN_EVENTS})", path=events.path,
                           extension="EVENTS", field="DET1X")
    t, sx, sy, dx, dy = t[ok], sx[ok], sy[ok], dx[ok], dy[ok]
    t0 = float(t.min())
    b = np.floor((t - t0) / bin_seconds).astype(np.int64)
    nb = int(b.max()) + 1
    cnt = np.bincount(b, minlength=nb).astype(float)

    def centred(v):
        return v - (np.bincount(b, weights=v, minlength=nb) / np.maximum(cnt, 1))[b]

    csx, csy, cdx, cdy = centred(sx), centred(sy), centred(dx), centred(dy)
    if pa_pnt is None:
        cos_part = float(np.sum(csy * cdy - csx * cdx))
        sin_part = float(np.sum(csx * cdy + csy * cdx))
        if math.hypot(cos_part, sin_part) == 0:
            raise BadFileError("the events do not constrain the roll (no spread within a time bin)", path=events.path,
                               extension="EVENTS", field="DET1X")
        a = math.atan2(sin_part, cos_part)
        pa = -math.degrees(a) - PA_OFFSET_DEG
    else:
        pa = float(pa_pnt)
        a = -math.radians(pa + PA_OFFSET_DEG)
    m = _reflection(a)
    md = m @ np.vstack([dx, dy])
    px, py = sx - md[0], sy - md[1]
    bx = np.bincount(b, weights=px, minlength=nb) / np.maximum(cnt, 1)
    by = np.bincount(b, weights=py, minlength=nb) / np.maximum(cnt, 1)
    resid = math.sqrt(float(np.mean((px - bx[b]) ** 2 + (py - by[b]) ** 2)))
    if resid > MAX_RESIDUAL_PIX:
        raise BadFileError(f"no roll maps the events' DET1X/DET1Y onto their X/Y (rms residual {resid:.1f} sky "
                           f"pixels at PA {pa:.2f} deg): is the sky frame mirrored or are the columns wrong?",
                           path=events.path, extension="EVENTS", field="X")
    filled = cnt > 0
    centres = t0 + (np.arange(nb) + 0.5) * bin_seconds
    grid_t = np.arange(nb + 1) * bin_seconds + t0
    if gti is not None and len(gti):
        lo, hi = min(float(gti.start.min()), t0), max(float(gti.stop.max()), float(grid_t[-1]))
        grid_t = np.arange(lo, hi + bin_seconds, bin_seconds)
    nu_x, nu_y = nudge(pa)
    x = np.interp(grid_t, centres[filled], bx[filled]) + nu_x + 0.5
    y = np.interp(grid_t, centres[filled], by[filled]) + nu_y + 0.5
    header = {k: events.header[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TSTART", "TSTOP",
                                            "MJDREFI", "MJDREFF", "TIMESYS", "DATE-OBS", "DATE-END")
              if k in events.header}
    header["ASPSRC"] = "events"
    header["PA_EVT"] = pa
    track = AspectTrack(grid_t, x, y, events.module, header, events.path)
    return EventAspect(track=track, pa=pa, residual=resid, n_events=n, bin_seconds=float(bin_seconds))
