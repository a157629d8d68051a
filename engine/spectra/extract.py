"""Region spectra from cleaned event files, as ``nuproducts`` makes them (spec §2.2).

Replaces the seed's HEASoft ``nuproducts`` run (``getspecnoarf``). Conventions:

Event selection
    Events are selected with :func:`~nuskybgd_engine.io.regions.select_events`, the same
    pixel-centre mask that gives the model's geometric weights, so spectra and weights agree.
    Only ``GRADE`` 0–26 are kept (nuproducts' default, written as ``DSTYP1 = 'GRADE'``,
    ``DSVAL1 = '0:26'``) and only valid PI channels 0..4095 (the pipeline's null −4095 is dropped).
BACKSCAL
    ``npix / (ny · nx)``: the number of selected sky pixels divided by the size of the sky grid,
    i.e. region pixels / 10⁶ on NuSTAR's 1000×1000 grid (``NPIXSOU`` = 10⁶ is written too, as
    nuproducts does). Purely geometric: nuproducts' own on-ground correction (``NUBACKSC``,
    e.g. 0.0156694 instead of 0.016841 for the 180" circle of the nustar_axions data) depends
    on the exposure map and is not reproduced.
EXPOSURE, LIVETIME
    Copied from the EVENTS header (nuproducts writes the dead-time corrected exposure there). With
    user GTIs (``gti=``, nuproducts ``usrgtifile``) the remaining good time × the file's
    LIVETIME/ONTIME (:func:`~nuskybgd_engine.io.gti.apply_gti`).
Sky frame
    Celestial or heliocentric (solar X/Y, :mod:`~nuskybgd_engine.io.skyframe`); on a heliocentric
    grid only image/physical regions are accepted.
Detector counts
    ``det_counts[n]`` = selected events with ``DET_ID = n``: the nuproducts weights of the
    per-detector RMFs (see :mod:`.responses`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..constants import N_CHANNELS
from ..errors import BadConfigError, BadFileError, BadRegionError
from ..io.gti import apply_gti, gti_hdu
from ..io.ogip import Spectrum
from ..io.regions import Cutout, SkyGrid, as_regionset, region_cutout, select_events
from ..io.regions.cxc import region_hdu
from ..io.regions import grid_from_event_header, require_pixel_regions

__all__ = ["RegionSpectrum", "extract_spectrum", "region_hdu", "GRADE_RANGE", "EmptyRegionWarning"]

#: Event grades kept, inclusive (nuproducts default).
GRADE_RANGE = (0, 26)

#: Columns the extraction reads.
SPECTRUM_COLUMNS = ("X", "Y", "PI", "GRADE", "DET_ID")


class EmptyRegionWarning(UserWarning):
    """A region selected no event and ``allow_empty`` was given."""


@dataclass(eq=False)
class RegionSpectrum:
    """A region spectrum in memory, with what is needed for its responses.

    Attributes
    ----------
    spectrum : Spectrum
        PHA spectrum (channels 0..4095, integer COUNTS, nuproducts keywords, GTI and region
        extensions in ``extra_hdus``). ``RESPFILE`` is set by the caller.
    npix : int
        Selected sky pixels (BACKSCAL = npix / grid size).
    det_counts : ndarray of int64, shape (4,)
        Selected events per detector DET_ID 0..3.
    cutout : Cutout
        The region mask (bounding box form).
    grid : SkyGrid
        Sky grid of the event file.
    """

    spectrum: Spectrum
    npix: int
    det_counts: np.ndarray
    cutout: Cutout
    grid: SkyGrid

    @property
    def det_fractions(self):
        """``det_counts`` normalised to sum 1 (all zero for an empty region)."""
        total = self.det_counts.sum()
        return self.det_counts / total if total else np.zeros(4)

    @property
    def total_counts(self):
        return int(np.sum(self.spectrum.counts))

    def __repr__(self):
        return (f"RegionSpectrum({self.total_counts} counts, {self.npix} pixels, det_counts="
                f"{self.det_counts.tolist()})")


def _column(events, name):
    if name not in events.columns:
        raise BadFileError("required column missing", path=events.path, extension="EVENTS", field=name)
    return np.asarray(events.columns[name])


def _pi_range(pi_range):
    if pi_range is None:
        return 0, N_CHANNELS - 1
    try:
        lo, hi = (int(v) for v in pi_range)
    except (TypeError, ValueError):
        raise BadConfigError(f"pi_range must be two integers, got {pi_range!r}", field="pi_range") from None
    if not (0 <= lo <= hi <= N_CHANNELS - 1):
        raise BadConfigError(f"pi_range must satisfy 0 <= lo <= hi <= {N_CHANNELS - 1}, got {lo} {hi}",
                             field="pi_range")
    return lo, hi


def extract_spectrum(events, regions, *, grid=None, pi_range=None, allow_empty=False, gti=None):
    """Spectrum of the events inside a region (nuproducts semantics, spec §2.2).

    Parameters
    ----------
    events : EventList
        Needs the columns X, Y, PI, GRADE and DET_ID.
    regions : RegionSet (or region object(s))
        Include/exclude shapes in sky or pixel coordinates.
    grid : SkyGrid, optional
        Sky grid of the X/Y columns; default from the event file's column keywords.
    pi_range : (int, int), optional
        Inclusive PI channels to keep (default all, 0..4095); the spectrum always has 4096
        channels, zero outside the range.
    allow_empty : bool
        A region that selects no event is an error (usually a region off the detectors),
        unless this is true: then an empty spectrum is returned with an
        :class:`EmptyRegionWarning`.
    gti : Gti, path, comma-separated paths or list of these, optional
        User GTI(s) (nuproducts ``usrgtifile``): intersected with the event file's GTI; events
        outside are dropped and EXPOSURE/LIVETIME become the remaining good time × the file's
        LIVETIME/ONTIME (:func:`~nuskybgd_engine.io.gti.apply_gti`).

    Returns
    -------
    RegionSpectrum

    Raises
    ------
    BadRegionError
        Region outside the sky grid, selecting no pixel, or (without ``allow_empty``) no event.
    BadFileError
        A required column is missing or DET_ID is outside 0..3.
    """
    if gti is not None:
        events = apply_gti(events, gti)
    if grid is None:
        grid = grid_from_event_header(events.header, path=events.path)
    rs = as_regionset(regions)
    require_pixel_regions(rs, grid)
    x, y = _column(events, "X"), _column(events, "Y")
    pi, grade, det = _column(events, "PI"), _column(events, "GRADE"), _column(events, "DET_ID")
    lo, hi = _pi_range(pi_range)
    cut = region_cutout(rs, grid)  # raises for regions outside the image
    # Region first: the grade/PI tests then run on the (few) events inside only.
    idx = np.flatnonzero(select_events(rs, grid, x, y, cutout=cut))
    sel_pi, sel_grade, sel_det = pi[idx], grade[idx], det[idx]
    keep = (sel_grade >= GRADE_RANGE[0]) & (sel_grade <= GRADE_RANGE[1]) & (sel_pi >= lo) & (sel_pi <= hi)
    sel_pi = sel_pi[keep].astype(np.int64)
    sel_det = sel_det[keep].astype(np.int64)
    if sel_det.size and (sel_det.min() < 0 or sel_det.max() > 3):
        raise BadFileError("DET_ID outside 0..3 for a selected event", path=events.path, extension="EVENTS",
                           field="DET_ID")
    counts = np.bincount(sel_pi, minlength=N_CHANNELS).astype(np.int64)
    det_counts = np.bincount(sel_det, minlength=4).astype(np.int64)
    where = f" ({os.path.basename(rs.source)})" if rs.source else ""
    if counts.sum() == 0:
        msg = (f"region{where} selects no event of grade 0-26 in PI {lo}-{hi} ({cut.npix} sky pixels): "
               "is it on the detectors?")
        if not allow_empty:
            raise BadRegionError(msg + " (allow_empty=yes writes an empty spectrum)", path=rs.source or events.path)
        warnings.warn(msg + "; writing an empty spectrum", EmptyRegionWarning, stacklevel=2)
    ny, nx = grid.shape
    npix = cut.npix
    header = dict(events.header_keywords())
    header.update({
        "HDUCLAS2": "TOTAL",
        "POISSERR": True,
        "DETNAM": "NONE",
        "NPIXSOU": float(ny * nx),
        "DSTYP1": "GRADE",
        "DSVAL1": f"{GRADE_RANGE[0]}:{GRADE_RANGE[1]}",
        "DSTYP2": "POS(X,Y)",
        "DSREF2": ":REG00101",
        "DSVAL2": "TABLE",
        "DSTYP3": "PI",
        "DSVAL3": f"{lo}:{hi}",
        "TOTCTS": int(counts.sum()),
        "CREATOR": "nuskybgd_engine extract_spectrum",
    })
    if events.path:
        header["FILIN001"] = os.path.basename(events.path)
    if "USRGTI" in events.header:
        header["USRGTI"] = events.header["USRGTI"]
    for n in range(4):
        header[f"DETCNTS{n}"] = int(det_counts[n])
    extra = []
    if events.gti is not None:
        copy = {k: events.header[k] for k in ("INSTRUME", "TSTART", "TSTOP", "MJDREFI", "MJDREFF", "EXPOSURE",
                                               "LIVETIME", "ONTIME") if k in events.header}
        extra.append(gti_hdu(events.gti, extname="GTI", keywords=copy))
    extra.append(region_hdu(rs, grid, keywords={k: header[k] for k in ("TELESCOP", "INSTRUME", "OBS_ID")
                                                    if k in header}))
    spectrum = Spectrum(
        channel=np.arange(N_CHANNELS, dtype=np.int32),
        counts=counts,
        exposure=events.exposure,
        backscal=npix / float(ny * nx),
        areascal=1.0,
        module=events.module,
        header=header,
        gti=events.gti,
        extra_hdus=extra,
    )
    return RegionSpectrum(spectrum=spectrum, npix=npix, det_counts=det_counts, cutout=cut, grid=grid)
