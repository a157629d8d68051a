"""Good-time intervals: read from GTI files or event files, and interval arithmetic."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ..errors import BadConfigError, BadFileError
from .fitsutil import find_hdu, read_fits, require_columns, write_fits

__all__ = ["Gti", "read_gti", "gti_from_hdu", "gti_paths", "read_gtis", "as_gtis", "intersect_gtis", "apply_gti",
           "deadtime_ratio"]


@dataclass(frozen=True)
class Gti:
    """Sorted good-time intervals ``[start, stop)`` in seconds (mission time)."""

    start: np.ndarray
    stop: np.ndarray

    def __post_init__(self):
        start = np.atleast_1d(np.asarray(self.start, dtype=float))
        stop = np.atleast_1d(np.asarray(self.stop, dtype=float))
        order = np.argsort(start, kind="stable")
        start, stop = start[order], stop[order]
        if len(start) > 1 and np.any(start[1:] < np.maximum.accumulate(stop)[:-1]):
            # Overlapping rows (e.g. a row written twice) would be counted twice and break
            # contains(): merge them. Files without overlaps are kept row for row.
            start, stop = _merge(start, stop)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "stop", stop)

    @property
    def exposure(self):
        """Total good time Σ(stop − start) in seconds."""
        return float(np.sum(self.stop - self.start))

    def __len__(self):
        return len(self.start)

    def contains(self, times):
        """Boolean array: which ``times`` fall in a good interval ``[start, stop)``."""
        times = np.asarray(times, dtype=float)
        idx = np.searchsorted(self.start, times, side="right") - 1
        ok = idx >= 0
        inside = np.zeros(times.shape, dtype=bool)
        inside[ok] = times[ok] < self.stop[idx[ok]]
        return inside

    def intersect(self, other):
        """The good time common to this GTI and ``other`` (a :class:`Gti`)."""
        a0, a1 = _merge(self.start, self.stop)
        b0, b1 = _merge(other.start, other.stop)
        i = j = 0
        lo, hi = [], []
        while i < len(a0) and j < len(b0):
            s, e = max(a0[i], b0[j]), min(a1[i], b1[j])
            if e > s:
                lo.append(s)
                hi.append(e)
            if a1[i] < b1[j]:
                i += 1
            else:
                j += 1
        return Gti(np.array(lo, dtype=float), np.array(hi, dtype=float))

    def __repr__(self):
        return f"Gti({len(self)} intervals, {self.exposure:.1f} s)"


def _merge(start, stop):
    """Sorted, non-overlapping form of intervals (overlapping or touching ones joined, empty ones dropped)."""
    start = np.asarray(start, dtype=float)
    stop = np.asarray(stop, dtype=float)
    keep = stop > start
    start, stop = start[keep], stop[keep]
    if len(start) == 0:
        return start, stop
    order = np.argsort(start, kind="stable")
    start, stop = start[order], stop[order]
    run_stop = np.maximum.accumulate(stop)
    new = np.ones(len(start), dtype=bool)
    new[1:] = start[1:] > run_stop[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(start)) - 1
    return start[first], run_stop[last]


def gti_from_hdu(hdu, path):
    """Build a :class:`Gti` from a GTI table HDU (START/STOP columns), validating it."""
    ext = hdu.header.get("EXTNAME", "GTI")
    cols = require_columns(hdu, path, ["START", "STOP"], extension=ext)
    start, stop = cols["START"].astype(float), cols["STOP"].astype(float)
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(stop))):
        raise BadFileError("non-finite START/STOP values", path=path, extension=ext, field="START")
    if np.any(stop < start):
        raise BadFileError("an interval has STOP < START", path=path, extension=ext, field="STOP")
    return Gti(start, stop)


def read_gti(path):
    """Read the GTI of a file: the first extension with HDUCLAS1 = GTI or EXTNAME STDGTI/GTI."""
    hdul = read_fits(path, what="GTI file")
    hdu = find_hdu(hdul, path, extnames=("STDGTI", "GTI"), hduclas1="GTI", what="GTI extension", table=True)
    return gti_from_hdu(hdu, path)


def gti_hdu(gti, *, extname="STDGTI", keywords=None):
    """A GTI table HDU in the pipeline's layout (START/STOP in s, HDUCLAS1 GTI, HDUCLAS2 STANDARD)."""
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name="START", format="1D", unit="s", array=gti.start),
         fits.Column(name="STOP", format="1D", unit="s", array=gti.stop)], name=extname)
    h = hdu.header
    h["HDUCLASS"] = ("OGIP", "format conforms to OGIP/GSFC conventions")
    h["HDUCLAS1"] = ("GTI", "Extension contains Good Time Intervals")
    h["HDUCLAS2"] = ("STANDARD", "Extension contains Good Time Intervals")
    h["TELESCOP"] = ("NuSTAR", "Mission name")
    h["TIMEZERO"] = 0.0
    for key, value in (keywords or {}).items():
        h[key] = value
    return hdu


def write_gti(gti, path, *, keywords=None, overwrite=False):
    """Write a ``nu<obsid><A|B>01_gti.fits``-style file: empty primary + STDGTI."""
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = ("NuSTAR", "Mission name")
    for key in ("TSTART", "TSTOP", "MJDREFI", "MJDREFF", "OBS_ID", "INSTRUME"):
        if keywords and key in keywords:
            prim.header[key] = keywords[key]
    return write_fits(fits.HDUList([prim, gti_hdu(gti, keywords=keywords)]), path, overwrite=overwrite)


def gti_paths(value):
    """GTI file names from ``usrgti=`` values: one string with commas, or a list (repeated option).

    Empty items and ``NONE`` (nuproducts' "no user GTI") are dropped.
    """
    if value is None:
        return []
    items = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
    out = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if part and part.upper() != "NONE":
                out.append(part)
    return out


def read_gtis(value):
    """Read every GTI file named by ``value`` (see :func:`gti_paths`); returns ``[(name, Gti)]``."""
    return [(p, read_gti(p)) for p in gti_paths(value)]


def as_gtis(value):
    """``[(name, Gti)]`` from a :class:`Gti`, a file name, a comma-separated string or a list of these."""
    if value is None:
        return []
    if isinstance(value, Gti):
        return [("gti", value)]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return read_gtis(value)
    out = []
    for k, item in enumerate(value, start=1):
        out.extend([(f"gti {k}", item)] if isinstance(item, Gti) else read_gtis(item))
    return out


def intersect_gtis(named, *, base=None, base_name=None):
    """Intersection of several GTIs (``[(name, Gti)]``), optionally with a ``base`` GTI first.

    Raises
    ------
    BadConfigError
        The intersection is empty: "no good time left", naming every input and its time range.
    """
    parts = ([(base_name or "event file GTI", base)] if base is not None else []) + list(named)
    if not parts:
        raise BadConfigError("no GTI given", field="usrgti")
    out = parts[0][1]
    for _, g in parts[1:]:
        out = out.intersect(g)
    if out.exposure <= 0:
        def span(g):
            return f"{g.start.min():.1f}-{g.stop.max():.1f} s" if len(g) else "empty"

        listed = "; ".join(f"{name}: {span(g)} ({g.exposure:.1f} s)" for name, g in parts)
        raise BadConfigError(f"no good time left: the GTIs do not overlap ({listed})", field="usrgti")
    return out


def deadtime_ratio(header, gti=None, *, path=None):
    """LIVETIME/ONTIME of an events header (nuproducts scales the exposure of a sub-GTI by it).

    Falls back to EXPOSURE / Σ GTI when ONTIME or LIVETIME is missing.
    """
    def num(key):
        try:
            v = float(header[key])
        except (KeyError, TypeError, ValueError):
            return None
        return v if np.isfinite(v) else None

    live, on = num("LIVETIME"), num("ONTIME")
    if live is not None and on is not None and on > 0:
        ratio, how = live / on, "LIVETIME/ONTIME"
    elif num("EXPOSURE") is not None and gti is not None and gti.exposure > 0:
        ratio, how = num("EXPOSURE") / gti.exposure, "EXPOSURE/GTI"
    else:
        raise BadFileError("cannot scale the exposure to the user GTI: no LIVETIME and ONTIME (or EXPOSURE and "
                           "GTI)", path=path, extension="EVENTS", field="LIVETIME")
    if not 0 < ratio <= 1.0 + 1e-6:
        raise BadFileError(f"dead-time ratio {how} = {ratio:g} is not in (0, 1]", path=path, extension="EVENTS",
                           field="LIVETIME")
    return min(ratio, 1.0)


def apply_gti(events, gti, *, names=()):
    """The events inside the user GTI(s), with the exposure of the remaining good time (nuproducts ``usrgtifile``).

    Parameters
    ----------
    events : EventList
    gti : Gti, path, comma-separated paths or a list of these
        Intersected with the event file's own GTI (every one of them must overlap it).
    names : sequence of str
        Names of the GTI files for the header (default: the paths given).

    Returns
    -------
    EventList
        A copy: events with TIME outside the intersection dropped, ``gti`` the intersection,
        ONTIME = Σ intersection, LIVETIME = EXPOSURE = ONTIME × (LIVETIME/ONTIME of the original),
        ``USRGTI``/HISTORY recording the files. The original is unchanged.
    """
    named = as_gtis(gti)
    if not named:
        return events
    base = events.gti
    ratio = deadtime_ratio(events.header, base, path=events.path)
    new = intersect_gtis(named, base=base, base_name=f"GTI of {events.path}" if events.path else None)
    if "TIME" not in events.columns:
        raise BadFileError("required column missing for a user GTI", path=events.path, extension="EVENTS",
                           field="TIME")
    keep = new.contains(np.asarray(events.columns["TIME"], dtype=float))
    columns = {k: np.asarray(v)[keep] for k, v in events.columns.items()}
    header = events.header.copy()
    ontime = new.exposure
    header["ONTIME"] = (ontime, "[s] sum of the good time (event GTI x user GTI)")
    header["LIVETIME"] = (ontime * ratio, "[s] ONTIME x original LIVETIME/ONTIME")
    header["EXPOSURE"] = (ontime * ratio, "[s] ONTIME x original LIVETIME/ONTIME")
    label = ",".join(names) if names else ",".join(os.path.basename(n) for n, _ in named)
    header["USRGTI"] = label[:68]  # file names; the full list is in HISTORY
    header["HISTORY"] = f"nuskybgd: user GTI {label} applied; dead-time ratio {ratio:.6f}"
    return dataclasses.replace(events, columns=columns, header=header, gti=new)
