"""The frame of the sky X/Y columns and sky images: celestial (RA/Dec, degrees) or heliocentric (arcsec).

NuSTAR's pipeline writes X/Y on a tangent-plane RA/Dec grid (``RA---TAN``/``DEC--TAN``, 2.458″
pixels given in degrees). Solar observers convert their cleaned events to solar coordinates
(nustar_pysolar ``convert_file`` → ``*_sunpos.evt``): X/Y become offsets from the Sun's centre
in arcsec on a 3000×3000 grid with ``TCRVL = 0``, ``TCDLT = ∓2.458`` (arcsec) — but the column
keywords keep the ``RA---TAN``/``DEC--TAN`` labels and ``TCUNI = 'deg'``. Read literally that is
a 2.458° pixel. :class:`SkyFrame` says what the numbers are:

``celestial``
    RA/Dec tangent plane, pixel size in degrees (< 1°); fk5/icrs/galactic regions are converted
    with the WCS.
``helioprojective``
    Solar X/Y in arcsec (FITS ``HPLN-TAN``/``HPLT-TAN``, as nustar_pysolar's sunpy maps label
    them). Recognised from HPLN/HPLT (or SOLAR-X/Y) CTYPEs, or from RA/Dec labels with ``CUNIT``
    arcsec, or RA/Dec labels with ``CRVAL = (0, 0)`` and a pixel of NuSTAR's 2.458 (the
    nustar_pysolar layout). Images written from such events carry the honest ``HPLN-TAN``/
    ``HPLT-TAN`` keywords in arcsec, which ds9 and sunpy read. The frame is not tied to the sky
    (no ephemeris is used): only image/physical regions apply, and the roll comes from the
    events or ``pa_pnt=``.

Everything else (another CTYPE, a pixel size that is neither) is refused with a one-line error
naming the keyword. The pixel of every frame must be NuSTAR's (the projection maps one sky pixel
onto one DET1 pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import PIXEL_ARCSEC
from ..errors import BadFileError
from .fitsutil import column_index, header_number

__all__ = [
    "SkyFrame",
    "CELESTIAL",
    "HELIOPROJECTIVE",
    "frame_from_columns",
    "frame_from_header",
]

CELESTIAL = "celestial"
HELIOPROJECTIVE = "helioprojective"

#: Relative tolerance on the pixel size of a heliocentric frame (NuSTAR's 2.45810736″).
_PIXEL_TOL = 0.02
_HELIO_CTYPES = (("HPLN", "HPLT"), ("SOLAR-X", "SOLAR-Y"), ("SOLX", "SOLY"))
_UNIT_ARCSEC = {"deg": 3600.0, "degree": 3600.0, "degrees": 3600.0, "arcsec": 1.0, "arcmin": 60.0}


@dataclass(frozen=True)
class SkyFrame:
    """The sky pixel frame of an event file's X/Y columns or of a sky image.

    Attributes
    ----------
    kind : {'celestial', 'helioprojective'}
    ctype : (str, str)
        Honest axis types (``RA---TAN``/``DEC--TAN`` or ``HPLN-TAN``/``HPLT-TAN``).
    crpix : (float, float)
        Reference pixel in image convention (array index 0 is pixel 1).
    crval, cdelt : (float, float)
        Reference value and pixel size, in ``unit``.
    unit : {'deg', 'arcsec'}
    shape : (int, int)
        ``(ny, nx)``.
    origin : int
        Event-column value of array index 0 (TLMIN; 1 for images).
    note : str
        How the frame was recognised (for messages and headers).
    """

    kind: str
    ctype: tuple
    crpix: tuple
    crval: tuple
    cdelt: tuple
    unit: str
    shape: tuple
    origin: int = 1
    note: str = ""
    path: str | None = None

    @property
    def celestial(self):
        """True for an RA/Dec frame (sky regions can be converted with its WCS)."""
        return self.kind == CELESTIAL

    @property
    def pixel_arcsec(self):
        """Pixel size in arcsec (|CDELT2|)."""
        return abs(self.cdelt[1]) * _UNIT_ARCSEC[self.unit]

    def keywords(self):
        """Image WCS keywords ``NAXIS1/2, CTYPE1/2, CRPIX1/2, CRVAL1/2, CDELT1/2, CUNIT1/2``."""
        out = {"NAXIS1": int(self.shape[1]), "NAXIS2": int(self.shape[0])}
        for n in (1, 2):
            out[f"CTYPE{n}"] = self.ctype[n - 1]
            out[f"CRPIX{n}"] = float(self.crpix[n - 1])
            out[f"CRVAL{n}"] = float(self.crval[n - 1])
            out[f"CDELT{n}"] = float(self.cdelt[n - 1])
            out[f"CUNIT{n}"] = self.unit
        return out

    def __repr__(self):
        return (f"SkyFrame({self.kind}, {self.shape[1]}x{self.shape[0]}, {self.ctype[0]}/{self.ctype[1]}, "
                f"{self.pixel_arcsec:.4g}\" pixels)")


def _classify(ctype, cunit, crval, cdelt, *, path, ext, keys):
    """(kind, honest ctypes, unit, crval, cdelt, note) from the raw keywords; raises for anything else.

    ``keys`` names the CTYPE, CUNIT and CDELT keywords of each axis for messages.
    """
    ct = tuple(str(c).strip().upper() for c in ctype)
    units = tuple(str(u or "").strip().lower() for u in cunit)
    for d, key in zip(cdelt, keys["cdelt"]):
        if d == 0:
            raise BadFileError("pixel size is 0", path=path, extension=ext, field=key)
    helio_labels = any(ct[0].startswith(a) and ct[1].startswith(b) for a, b in _HELIO_CTYPES)
    radec = ct[0].startswith("RA-") and ct[1].startswith("DEC-")
    if not (helio_labels or radec):
        raise BadFileError(f"sky axes must be RA---TAN/DEC--TAN or HPLN-TAN/HPLT-TAN, got {ct[0]}/{ct[1]}",
                           path=path, extension=ext, field=keys["ctype"][0])
    if radec and all(u in ("", "deg", "degree", "degrees") for u in units) and all(abs(d) < 1.0 for d in cdelt):
        if not (ct[0].endswith("-TAN") and ct[1].endswith("-TAN")):
            raise BadFileError(f"sky grid must be a RA---TAN/DEC--TAN tangent-plane projection, got {ct[0]}/{ct[1]}",
                               path=path, extension=ext, field=keys["ctype"][0])
        return CELESTIAL, (ct[0], ct[1]), "deg", tuple(crval), tuple(cdelt), "RA/Dec tangent plane (deg)"
    # Heliocentric candidates: arcsec per pixel.
    if helio_labels:
        unit = units[0] or "arcsec"
        if unit not in _UNIT_ARCSEC:
            raise BadFileError(f"unit {unit!r} of a helioprojective axis is not an angle", path=path, extension=ext,
                               field=keys["cunit"][0])
        note = f"helioprojective {ct[0]}/{ct[1]}"
    elif "arcsec" in units:
        unit, note = "arcsec", "RA/Dec labels with arcsec units: read as solar X/Y (arcsec)"
    elif tuple(crval) == (0.0, 0.0) and all(abs(abs(d) - PIXEL_ARCSEC) <= _PIXEL_TOL * PIXEL_ARCSEC for d in cdelt):
        # nustar_pysolar's *_sunpos.evt: X/Y re-centred on the Sun in arcsec, labels left as RA/Dec degrees.
        unit, note = "arcsec", ("RA/Dec labels with TCRVL 0 and 2.458 pixels (nustar_pysolar sunpos layout): "
                                "read as solar X/Y (arcsec)")
    else:
        bad = next(((d, k) for d, k in zip(cdelt, keys["cdelt"]) if abs(d) >= 1.0), (cdelt[0], keys["cdelt"][0]))
        raise BadFileError(f"pixel size {bad[0]} is neither a sky pixel in degrees nor NuSTAR's "
                           f"{PIXEL_ARCSEC:.4f} arcsec of a heliocentric (solar X/Y) file", path=path, extension=ext,
                           field=bad[1])
    scale = _UNIT_ARCSEC[unit]
    cd = tuple(d * scale for d in cdelt)
    cv = tuple(v * scale for v in crval)
    for d, key in zip(cd, keys["cdelt"]):
        if abs(abs(d) - PIXEL_ARCSEC) > _PIXEL_TOL * PIXEL_ARCSEC:
            raise BadFileError(f"heliocentric pixel size {d:g} arcsec is not NuSTAR's {PIXEL_ARCSEC:.4f} arcsec "
                               "(the projection maps one sky pixel onto one DET1 pixel)", path=path, extension=ext,
                               field=key)
    return HELIOPROJECTIVE, ("HPLN-TAN", "HPLT-TAN"), "arcsec", cv, cd, note


def frame_from_columns(header, path=None, *, extension="EVENTS"):
    """The :class:`SkyFrame` of the X/Y columns of an EVENTS header (TCTYP/TCRPX/TCRVL/TCDLT/TLMIN/TLMAX).

    CRPIX = TCRPX − TLMIN + 1, NAXIS = TLMAX − TLMIN + 1 (array index 0 holds column value TLMIN).
    """
    vals = {}
    cols = {}
    for axis in ("X", "Y"):
        n = column_index(header, axis)
        if n is None:
            raise BadFileError("required column missing", path=path, extension=extension, field=axis)
        cols[axis] = n
        for stem in ("TCTYP", "TCRPX", "TCRVL", "TCDLT", "TLMIN", "TLMAX"):
            key = f"{stem}{n}"
            if key not in header:
                raise BadFileError(f"sky WCS keyword of column {axis} missing", path=path, extension=extension,
                                   field=key)
            vals[(stem, axis)] = header[key] if stem == "TCTYP" else header_number(header[key], path, extension, key)
    tlmin = vals[("TLMIN", "X")]
    if tlmin != vals[("TLMIN", "Y")] or tlmin != int(tlmin):
        raise BadFileError(f"X and Y must share one integer TLMIN, got {tlmin} and {vals[('TLMIN', 'Y')]}",
                           path=path, extension=extension, field=f"TLMIN{cols['Y']}")
    origin = int(tlmin)
    shape = (int(vals[("TLMAX", "Y")]) - origin + 1, int(vals[("TLMAX", "X")]) - origin + 1)
    if shape[0] < 1 or shape[1] < 1:
        raise BadFileError(f"sky grid has no pixels (TLMIN {origin}, shape {shape})", path=path, extension=extension,
                           field=f"TLMAX{cols['X']}")
    keys = {k: tuple(f"{stem}{cols[a]}" for a in "XY")
            for k, stem in (("ctype", "TCTYP"), ("cunit", "TCUNI"), ("cdelt", "TCDLT"))}
    kind, ctype, unit, crval, cdelt, note = _classify(
        (vals[("TCTYP", "X")], vals[("TCTYP", "Y")]),
        (header.get(f"TCUNI{cols['X']}"), header.get(f"TCUNI{cols['Y']}")),
        (vals[("TCRVL", "X")], vals[("TCRVL", "Y")]), (vals[("TCDLT", "X")], vals[("TCDLT", "Y")]),
        path=path, ext=extension, keys=keys)
    crpix = (vals[("TCRPX", "X")] - origin + 1, vals[("TCRPX", "Y")] - origin + 1)
    return SkyFrame(kind, ctype, crpix, crval, cdelt, unit, shape, origin=origin, note=note,
                    path=str(path) if path is not None else None)


def frame_from_header(header, path=None, *, extension=None, shape=None):
    """The :class:`SkyFrame` of a 2-D sky image header (CTYPE/CRPIX/CRVAL/CDELT/CUNIT)."""
    ext = extension if extension is not None else header.get("EXTNAME", "PRIMARY")
    if shape is None:
        for key in ("NAXIS1", "NAXIS2"):
            if key not in header:
                raise BadFileError("required keyword missing", path=path, extension=ext, field=key)
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    vals = {}
    for key in ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2"):
        if key not in header:
            raise BadFileError("required keyword missing", path=path, extension=ext, field=key)
        vals[key] = header[key] if key.startswith("CTYPE") else header_number(header[key], path, ext, key)
    keys = {k: (f"{stem}1", f"{stem}2") for k, stem in (("ctype", "CTYPE"), ("cunit", "CUNIT"), ("cdelt", "CDELT"))}
    kind, ctype, unit, crval, cdelt, note = _classify(
        (vals["CTYPE1"], vals["CTYPE2"]), (header.get("CUNIT1"), header.get("CUNIT2")),
        (vals["CRVAL1"], vals["CRVAL2"]), (vals["CDELT1"], vals["CDELT2"]), path=path, ext=ext, keys=keys)
    return SkyFrame(kind, ctype, (vals["CRPIX1"], vals["CRPIX2"]), crval, cdelt, unit,
                    (int(shape[0]), int(shape[1])), origin=1, note=note,
                    path=str(path) if path is not None else None)
