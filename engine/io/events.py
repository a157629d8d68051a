"""Cleaned NuSTAR event files (``nu<obsid><A|B>01_cl.evt``): events, sky frame, PA, GTI, bad pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits

from ..errors import BadConfigError, BadFileError
from .fitsutil import column_index, find_hdu, module_from_header, read_fits, require_columns, write_fits
from .gti import Gti, gti_from_hdu, gti_hdu
from .skyframe import frame_from_columns

__all__ = [
    "EVENT_COLUMNS",
    "RANGE_CHECKED_COLUMNS",
    "invalid_rows",
    "column_index",
    "EventList",
    "BadPixels",
    "read_events",
    "read_badpix",
    "sky_frame_from_columns",
    "HEADER_COPY_KEYWORDS",
]

#: Columns a cleaned event file must carry for the whole method.
EVENT_COLUMNS = ("TIME", "X", "Y", "DET1X", "DET1Y", "DET_ID", "RAWX", "RAWY", "PI", "GRADE")

#: Columns whose values are checked against the file's TLMIN/TLMAX when read.
RANGE_CHECKED_COLUMNS = ("PI", "X", "Y", "DET1X", "DET1Y", "RAWX", "RAWY", "DET_ID", "GRADE")
# Ranges used where a file declares none (the pipeline leaves RAWX/RAWY/DET_ID without TLMIN/TLMAX);
# the engine indexes detector arrays with these values.
_KNOWN_RANGES = {"RAWX": (0, 31), "RAWY": (0, 31), "DET_ID": (0, 3)}

#: Keywords copied from the EVENTS header into products (images, spectra).
HEADER_COPY_KEYWORDS = (
    "TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "TARG_ID", "DATE-OBS", "DATE-END", "TSTART", "TSTOP",
    "MJDREFI", "MJDREFF", "TIMESYS", "EXPOSURE", "LIVETIME", "ONTIME", "RA_NOM", "DEC_NOM", "RA_PNT",
    "DEC_PNT", "RA_OBJ", "DEC_OBJ", "PA_PNT", "EQUINOX", "RADECSYS",
)

#: A PA_PNT of -100 means "no pointing" (solar observations).
_NULL_PA = -100.0


def sky_frame_from_columns(header, path=None, *, extension="EVENTS"):
    """Image WCS keywords of the sky X/Y grid from the event table's column keywords.

    TCTYP→CTYPE, TCRPX→CRPIX, TCRVL→CRVAL, TCDLT→CDELT, NAXIS = TLMAX − TLMIN + 1 (spec §1.4), as
    the frame really is: heliocentric files (solar X/Y in arcsec) get ``HPLN-TAN``/``HPLT-TAN``
    in arcsec (see :mod:`nuskybgd_engine.io.skyframe`).

    Returns
    -------
    dict
        ``NAXIS1/2, CTYPE1/2, CRPIX1/2, CRVAL1/2, CDELT1/2, CUNIT1/2`` for an image whose pixel 1
        is sky pixel TLMIN.
    """
    return frame_from_columns(header, path, extension=extension).keywords()


@dataclass
class BadPixels:
    """Bad-pixel rows of one detector (one BADPIX extension)."""

    detector: int
    rawx: np.ndarray
    rawy: np.ndarray
    time: np.ndarray
    time_stop: np.ndarray
    badflag: np.ndarray  # (n, 16) bool, bit 0 first as stored
    tstart: float | None = None
    tstop: float | None = None
    module: str | None = None
    source: str | None = None

    def __repr__(self):
        return f"BadPixels(FPM{self.module} DET{self.detector}, {len(self.rawx)} rows, from {self.source})"


@dataclass
class EventList:
    """A cleaned event list of one module.

    Attributes
    ----------
    columns : dict of str -> ndarray
        The event columns that were read.
    module : 'A' or 'B'
    header : astropy.io.fits.Header
        The EVENTS extension header.
    sky : dict
        Image WCS keywords of the sky grid (see :func:`sky_frame_from_columns`).
    gti : Gti or None
    badpix : list of BadPixels
    dropped : dict of str -> int
        With ``read_events(..., drop_invalid=True)``: events left out because a column was outside
        its TLMIN..TLMAX, per column (``"total"``: events left out), empty when none were.
    """

    columns: dict
    module: str
    header: fits.Header
    sky: dict
    gti: Gti | None = None
    badpix: list = field(default_factory=list)
    path: str | None = None
    pa_override: float | None = None
    dropped: dict = field(default_factory=dict)

    def __len__(self):
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name):
        return self.columns[name]

    @property
    def exposure(self):
        """EXPOSURE (s) of the EVENTS header (LIVETIME if EXPOSURE is absent)."""
        for key in ("EXPOSURE", "LIVETIME"):
            if key in self.header:
                return float(self.header[key])
        raise BadFileError("no EXPOSURE or LIVETIME keyword", path=self.path, extension="EVENTS", field="EXPOSURE")

    @property
    def obsid(self):
        return str(self.header.get("OBS_ID", "")).strip()

    @property
    def pa_pnt(self):
        """Roll angle PA_PNT in degrees, or the explicit override.

        Solar pointings carry PA_PNT = −100 (no pointing): the projection cannot be done from
        such a file without an explicit ``pa_pnt=`` override.
        """
        if self.pa_override is not None:
            return float(self.pa_override)
        if "PA_PNT" not in self.header:
            raise BadFileError("PA_PNT keyword missing; pass pa_pnt= to override", path=self.path,
                               extension="EVENTS", field="PA_PNT")
        pa = float(self.header["PA_PNT"])
        if not np.isfinite(pa) or pa == _NULL_PA:
            raise BadFileError(f"PA_PNT is {pa:g} (no pointing, e.g. a solar observation); pass pa_pnt= to override",
                               path=self.path, extension="EVENTS", field="PA_PNT")
        return pa

    @property
    def frame(self):
        """The :class:`~nuskybgd_engine.io.skyframe.SkyFrame` of the X/Y columns (celestial or heliocentric)."""
        return frame_from_columns(self.header, self.path)

    def header_keywords(self):
        """Keywords to copy into products, as (key, value) pairs (PA_PNT resolved)."""
        out = {k: self.header[k] for k in HEADER_COPY_KEYWORDS if k in self.header}
        if self.pa_override is not None:
            out["PA_PNT"] = float(self.pa_override)
        return out

    def sky_image_header(self):
        """An image header with the sky WCS and the copied observation keywords."""
        hdr = fits.Header()
        for k, v in self.sky.items():
            if not k.startswith("NAXIS"):
                hdr[k] = v
        for k, v in self.header_keywords().items():
            hdr[k] = v
        return hdr

    def dropped_note(self):
        """One line saying how many events were left out as invalid, or ``""`` when none were."""
        if not self.dropped:
            return ""
        per = ", ".join(f"{k} {v}" for k, v in self.dropped.items() if k != "total")
        return (f"{self.path}: dropped {self.dropped['total']} of {len(self) + self.dropped['total']} events with "
                f"values outside TLMIN..TLMAX ({per})")

    def __repr__(self):
        return (f"EventList(FPM{self.module}, obsid={self.obsid!r}, {len(self)} events, "
                f"columns={list(self.columns)})")


def _badpix_from_hdu(hdu, path, module, *, use_times=True):
    ext = hdu.header.get("EXTNAME", "BADPIX")
    detnam = str(hdu.header.get("DETNAM", "")).strip().upper()
    if detnam not in ("DET0", "DET1", "DET2", "DET3"):
        raise BadFileError(f"DETNAM is {detnam!r}, expected DET0..DET3", path=path, extension=ext, field="DETNAM")
    cols = require_columns(hdu, path, ["RAWX", "RAWY", "TIME", "BADFLAG"], extension=ext)
    n = len(cols["RAWX"])
    # CALDB and some user files have no TIME_STOP: bad from TIME on.
    cols["TIME_STOP"] = (np.asarray(hdu.data["TIME_STOP"], float) if "TIME_STOP" in hdu.columns.names
                         else np.full(n, np.inf))
    flag = np.asarray(cols["BADFLAG"], dtype=bool).reshape(n, -1) if n else np.zeros((0, 16), dtype=bool)
    rawx = cols["RAWX"].astype(int)
    rawy = cols["RAWY"].astype(int)
    if np.any((rawx < 0) | (rawx > 31) | (rawy < 0) | (rawy > 31)):
        raise BadFileError("RAWX/RAWY outside 0..31", path=path, extension=ext, field="RAWX")
    h = hdu.header
    return BadPixels(
        detector=int(detnam[3]), rawx=rawx, rawy=rawy,
        time=cols["TIME"].astype(float), time_stop=cols["TIME_STOP"].astype(float), badflag=flag,
        tstart=float(h["TSTART"]) if use_times and "TSTART" in h else None,
        tstop=float(h["TSTOP"]) if use_times and "TSTOP" in h else None,
        module=module, source=str(path),
    )


def _badpix_hdus(hdul):
    return [
        h for h in hdul
        if isinstance(h, fits.BinTableHDU) and "BADPIX" in str(h.header.get("EXTNAME", "")).upper()
    ]


def read_badpix(path, *, module=None, caldb=False):
    """Read every BADPIX extension of a file (event file, ``*_bp.fits``, ``*_hp.fits``, CALDB BADPIX).

    Files whose TELESCOP is not NuSTAR are rejected. A missing TIME_STOP column means "bad from
    TIME on" (+inf). With ``caldb=True`` the extensions' TSTART/TSTOP are ignored: CALDB rows
    are judged by their flags only (the duration rule needs the observation's times).
    Returns a list of :class:`BadPixels`.
    """
    hdul = read_fits(path, what="bad-pixel file")
    tele = str(hdul[0].header.get("TELESCOP", hdul[-1].header.get("TELESCOP", ""))).strip().upper()
    if tele and tele != "NUSTAR":
        raise BadFileError(f"TELESCOP is {tele!r}, expected NuSTAR", path=path, field="TELESCOP")
    hdus = _badpix_hdus(hdul)
    if not hdus:
        raise BadFileError("no BADPIX extension", path=path)
    hdr = hdul[0].header if "INSTRUME" in hdul[0].header else hdus[0].header
    mod = module_from_header(hdr, path)
    if module is not None and mod != module:
        raise BadFileError(f"bad-pixel file is for FPM{mod}, expected FPM{module}", path=path, field="INSTRUME")
    return [_badpix_from_hdu(h, path, mod, use_times=not caldb) for h in hdus]


def _limit(header, key, path, name):
    if key not in header:
        return None
    try:
        return float(header[key])
    except (TypeError, ValueError):
        raise BadFileError(f"non-numeric {key} of column {name}", path=path, extension="EVENTS", field=key) from None


def invalid_rows(header, columns, path=None):
    """Rows whose value of a checked column lies outside the column's TLMIN..TLMAX.

    Values equal to the column's TNULL are nulls (the pipeline writes DET1X = -4095 for events it
    could not place on DET1), not values out of range. RAWX, RAWY and DET_ID, which the pipeline
    writes without limits, are held to the detectors' 0..31 and 0..3.

    Parameters
    ----------
    header : astropy.io.fits.Header
        EVENTS header (TTYPEn, TLMINn, TLMAXn, TNULLn).
    columns : dict of str -> ndarray
        Columns as read; those of :data:`RANGE_CHECKED_COLUMNS` present are checked.
    path : path-like, optional
        For messages.

    Returns
    -------
    dict of str -> (ndarray of bool, float or None, float or None)
        Per checked column with invalid rows: the mask of those rows and the limits.
    """
    out = {}
    for name in RANGE_CHECKED_COLUMNS:
        if name not in columns:
            continue
        n = column_index(header, name)
        lo, hi = (_limit(header, f"{k}{n}", path, name) for k in ("TLMIN", "TLMAX")) if n else (None, None)
        if lo is None and hi is None:
            lo, hi = _KNOWN_RANGES.get(name, (None, None))
        if lo is None and hi is None:
            continue
        values = np.asarray(columns[name])
        values = values.astype(values.dtype.newbyteorder("="), copy=False)  # FITS is big-endian: swap once
        if values.dtype.kind in "iu":  # compare in the column's own type (no float copies)
            info = np.iinfo(values.dtype)
            lo = None if lo is None else int(np.clip(np.ceil(lo), info.min, info.max))
            hi = None if hi is None else int(np.clip(np.floor(hi), info.min, info.max))
        if lo is not None and hi is not None:
            bad = (values < lo) | (values > hi)
        else:
            bad = values < lo if lo is not None else values > hi
        null = header.get(f"TNULL{n}") if n else None
        if null is not None and bad.any():
            bad &= values != null
        if bad.any():
            out[name] = (bad, lo, hi)
    return out


def _drop_or_refuse(header, cols, path, drop_invalid):
    """Apply :func:`invalid_rows`: error naming the first bad column, or the columns without those rows."""
    bad = invalid_rows(header, cols, path)
    if not bad:
        return cols, {}
    if not drop_invalid:
        name, (mask, lo, hi) = next(iter(bad.items()))
        row = int(np.argmax(mask))
        rng = f"{'' if lo is None else f'{lo:g}'}..{'' if hi is None else f'{hi:g}'}"
        raise BadFileError(f"{int(mask.sum())} events have {name} outside TLMIN..TLMAX = {rng} (first: row {row + 1}, "
                           f"{name} = {cols[name][row]}); damaged file? --drop-invalid (drop_invalid=True, the "
                           "dashboard's 'drop invalid events') leaves them out", path=path, extension="EVENTS", field=name)
    any_bad = np.logical_or.reduce([mask for mask, _, _ in bad.values()])
    keep = ~any_bad
    dropped = {name: int(mask.sum()) for name, (mask, _, _) in bad.items()}
    dropped["total"] = int(any_bad.sum())
    return {k: np.asarray(v)[keep] for k, v in cols.items()}, dropped


def read_events(path, *, columns=EVENT_COLUMNS, module=None, pa_pnt=None, drop_invalid=False):
    """Read a cleaned event file.

    Parameters
    ----------
    path : path-like
    columns : sequence of str
        Columns that must be present and are read (default: all the method needs).
    module : {'A', 'B'}, optional
        Expected module; a file of the other module is rejected.
    pa_pnt : float, optional
        Explicit roll angle overriding the header (needed when PA_PNT is −100 or missing).
    drop_invalid : bool
        Events with a value outside its column's TLMIN..TLMAX (see :func:`invalid_rows`) are an
        error by default; with ``True`` they are left out and counted in ``EventList.dropped``.

    Returns
    -------
    EventList
    """
    hdul = read_fits(path, what="event file")
    hdu = find_hdu(hdul, path, extnames=("EVENTS",), hduclas1="EVENTS", what="EVENTS extension", table=True)
    tele = str(hdu.header.get("TELESCOP", "")).strip().upper()
    if tele != "NUSTAR":
        raise BadFileError(f"TELESCOP is {tele or 'missing'!r}, expected NuSTAR", path=path, extension="EVENTS",
                           field="TELESCOP")
    mod = module_from_header(hdu.header, path, extension="EVENTS")
    if module is not None and mod != module:
        raise BadFileError(f"event file is for FPM{mod}, expected FPM{module}", path=path, extension="EVENTS",
                           field="INSTRUME")
    cols = require_columns(hdu, path, list(columns), extension="EVENTS")
    cols, dropped = _drop_or_refuse(hdu.header, cols, path, drop_invalid)
    sky = sky_frame_from_columns(hdu.header, path) if ("X" in columns or "Y" in columns) else {}
    gti = None
    try:
        gti_hdu = find_hdu(hdul, path, extnames=("GTI", "STDGTI"), hduclas1="GTI", table=True)
        gti = gti_from_hdu(gti_hdu, path)
    except BadFileError:
        gti = None
    badpix = [_badpix_from_hdu(h, path, mod) for h in _badpix_hdus(hdul)]
    if pa_pnt is not None:
        try:
            pa_pnt = float(pa_pnt)
        except (TypeError, ValueError):
            raise BadConfigError(f"pa_pnt must be a number, got {pa_pnt!r}", field="pa_pnt") from None
    return EventList(columns=cols, module=mod, header=hdu.header.copy(), sky=sky, gti=gti, badpix=badpix,
                     path=str(path), pa_override=pa_pnt, dropped=dropped)


#: Column formats, units and nulls of the NuSTAR pipeline's cleaned event files.
_PIPELINE_COLUMNS = {
    "TIME": ("D", "s", None), "DET_ID": ("B", None, None), "RAWX": ("B", None, None), "RAWY": ("B", None, None),
    "GRADE": ("I", None, None), "PI": ("J", "chan", -4095), "DET1X": ("I", "pixel", -4095),
    "DET1Y": ("I", "pixel", -4095), "X": ("I", "pixel", -1), "Y": ("I", "pixel", -1),
}


def events_hdulist(columns, module, keywords, sky, *, gti=None, badpix=()):
    """Build a cleaned event file (primary, EVENTS, GTI, BADPIX…) in the pipeline's layout.

    Parameters
    ----------
    columns : dict of str -> array
        Event columns; the standard ones get the pipeline formats, others are written as given.
    module : {'A', 'B'}
    keywords : dict
        Header keywords of EVENTS (OBS_ID, EXPOSURE, PA_PNT, …).
    sky : dict
        Sky grid keywords as returned by :func:`sky_frame_from_columns` (NAXISn, CTYPEn, CRPIXn, CRVALn, CDELTn).
    gti : Gti, optional
    badpix : sequence of BadPixels
    """
    cols = []
    for name, array in columns.items():
        fmt, unit, null = _PIPELINE_COLUMNS.get(name, (None, None, None))
        if fmt is None:
            cols.append(fits.Column(name=name, format=_fits_format(array), array=array))
        else:
            cols.append(fits.Column(name=name, format=fmt, unit=unit, null=null, array=array))
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    h = hdu.header
    h["HDUCLASS"] = ("OGIP", "Format conforms to OGIP standards")
    h["HDUCLAS1"] = ("EVENTS", "Event extension")
    h["HDUCLAS2"] = ("ALL", "No event filtering")
    h["TELESCOP"] = ("NuSTAR", "Telescope (mission) name")
    h["INSTRUME"] = (f"FPM{module}", "Instrument name")
    names = list(columns)
    for axis, name in ((1, "X"), (2, "Y")):
        if name not in names:
            continue
        n = names.index(name) + 1
        size = int(sky[f"NAXIS{axis}"])
        h[f"TLMIN{n}"] = 1
        h[f"TLMAX{n}"] = size
        h[f"TCRPX{n}"] = float(sky[f"CRPIX{axis}"])
        h[f"TCRVL{n}"] = float(sky[f"CRVAL{axis}"])
        h[f"TCDLT{n}"] = float(sky[f"CDELT{axis}"])
        h[f"TCTYP{n}"] = sky[f"CTYPE{axis}"]
        h[f"TCUNI{n}"] = sky.get(f"CUNIT{axis}", "deg")
    for name, (lo, hi) in {"PI": (0, 4095), "DET1X": (1, 360), "DET1Y": (1, 360), "GRADE": (0, 32)}.items():
        if name in names:
            n = names.index(name) + 1
            h[f"TLMIN{n}"] = lo
            h[f"TLMAX{n}"] = hi
    for key, value in keywords.items():
        if key not in ("TELESCOP", "INSTRUME"):
            h[key] = value
    prim = fits.PrimaryHDU()
    for key in ("TELESCOP", "INSTRUME", "OBS_ID", "OBJECT", "DATE-OBS", "DATE-END", "TSTART", "TSTOP"):
        if key in h:
            prim.header[key] = h[key]
    out = [prim, hdu]
    if gti is not None:
        copy = {k: h[k] for k in ("INSTRUME", "TSTART", "TSTOP", "MJDREFI", "MJDREFF", "EXPOSURE", "LIVETIME",
                                  "ONTIME") if k in h}
        out.append(gti_hdu(gti, extname="GTI", keywords=copy))
    for bp in badpix:
        t = fits.BinTableHDU.from_columns([
            fits.Column(name="RAWX", format="1B", unit="pixel", array=bp.rawx),
            fits.Column(name="RAWY", format="1B", unit="pixel", array=bp.rawy),
            fits.Column(name="TIME", format="1D", unit="s", array=bp.time),
            fits.Column(name="TIME_STOP", format="1D", unit="s", array=bp.time_stop),
            fits.Column(name="BADFLAG", format="16X", array=np.asarray(bp.badflag, dtype=bool).reshape(-1, 16)),
        ], name="BADPIX")
        t.header["DETNAM"] = f"DET{bp.detector}"
        t.header["TELESCOP"] = "NuSTAR"
        t.header["INSTRUME"] = f"FPM{module}"
        if bp.tstart is not None:
            t.header["TSTART"] = bp.tstart
            t.header["TSTOP"] = bp.tstop
        out.append(t)
    return fits.HDUList(out)


def _fits_format(array):
    kind = np.asarray(array).dtype
    return {"f8": "D", "f4": "E", "i8": "K", "i4": "J", "i2": "I", "u1": "B", "b1": "L"}.get(kind.str[1:], "D")


def write_events(path, columns, module, keywords, sky, *, gti=None, badpix=(), overwrite=False):
    """Write a cleaned event file atomically (see :func:`events_hdulist`)."""
    return write_fits(events_hdulist(columns, module, keywords, sky, gti=gti, badpix=badpix), path,
                      overwrite=overwrite)
