"""ds9 region text: our parser and writer.

The parser reads everything ds9 saves (its region file format 4.1, and the CIAO/pyregion
``pie``): coordinate systems ``fk5``/``j2000``, ``icrs``, ``fk4``/``b1950``, ``galactic``,
``image`` and ``physical`` (the default when a file names none, as in ds9); the shapes
``circle``, ``ellipse`` (and elliptical annuli), ``box``/``rotbox`` (and box annuli),
``polygon``, ``annulus`` (several radii or ``n=``), ``panda``, ``epanda``, ``bpanda`` and
``pie``; ``# composite(...)`` groups (their members are ORed, i.e. listed as shapes of the
composite's include/exclude sign — ds9 writes members in absolute coordinates); ``global``
and per-shape properties (``include=0``, ``text={name}``; the rest — colour, font, tags, ``#
panda=`` layout hints — do not change the selected area and are ignored); units ``"``, ``'``,
``d``, ``r``, ``i``, ``p`` and sexagesimal positions (``h:m:s``/``d:m:s``, ``XhYmZs``).
Shapes that enclose no area (``point``, ``line``, ``vector``, ``text``, ``ruler``, ``compass``,
``projection``, ``segment``) are skipped with a note. Everything else — an unknown shape or
coordinate system, a wrong number of arguments, a number that does not parse — is an error of
one line naming the file and the line.

``pie`` exists in two dialects: ds9/funtools ``pie(x,y,a1,a2[,a3…])`` is a wedge from the
centre to the image edge; CIAO and pyregion (used by nuskybgd-py) write
``pie(x,y,r_in,r_out,a1,a2)``. Four or five arguments are read as the former, six as the latter.
"""

from __future__ import annotations

import math
import re

import numpy as np
from astropy import units as u
from astropy.coordinates import FK4, FK5, ICRS, Galactic, SkyCoord
from regions import (
    CircleAnnulusPixelRegion,
    CircleAnnulusSkyRegion,
    CirclePixelRegion,
    CircleSkyRegion,
    EllipseAnnulusPixelRegion,
    EllipseAnnulusSkyRegion,
    EllipsePixelRegion,
    EllipseSkyRegion,
    PixCoord,
    PolygonPixelRegion,
    PolygonSkyRegion,
    RectangleAnnulusPixelRegion,
    RectangleAnnulusSkyRegion,
    RectanglePixelRegion,
    RectangleSkyRegion,
)

from ...errors import BadConfigError, BadRegionError
from .grid import require_celestial
from .shapes import PandaPixelRegion, PandaSkyRegion, PhysicalRegion, is_sky, shape_name, to_pixel

__all__ = ["parse_ds9", "shape_to_ds9", "SKY_FRAMES", "WRITE_FRAMES", "HEADER"]

HEADER = "# Region file format: DS9 version 4.1"

#: ds9 sky systems we read, with the astropy frame names.
SKY_FRAMES = {"fk5": "fk5", "j2000": "fk5", "icrs": "icrs", "fk4": "fk4", "b1950": "fk4", "galactic": "galactic",
              "wcs": "fk5"}
_PIXEL_FRAMES = ("image", "physical")
_UNSUPPORTED_FRAMES = {
    "ecliptic": "ecliptic", "helioecliptic": "helioecliptic", "supergalactic": "supergalactic",
    "fk4-no-e": "fk4-no-e", "linear": "linear (a non-celestial WCS)", "amplifier": "amplifier (mosaic ATM/ATV)",
    "detector": "detector (mosaic DTM/DTV)",
    **{f"wcs{c}": f"wcs{c} (a secondary WCS)" for c in "abcdefghijklmnopqrstuvwxyz0"},
}
#: Coordinate systems :func:`shape_to_ds9` writes.
WRITE_FRAMES = ("fk5", "icrs", "fk4", "galactic", "image", "physical")
# ds9's frames with their equinoxes spelt out: astropy's transform_to("fk4") would keep the
# J2000 equinox of an FK5 coordinate, which ds9 would then read as B1950.
_ASTROPY_FRAMES = {"fk5": FK5(equinox="J2000"), "icrs": ICRS(), "fk4": FK4(equinox="B1950"), "galactic": Galactic()}

_AREA_SHAPES = ("circle", "ellipse", "box", "rotbox", "polygon", "annulus", "panda", "cpanda", "epanda", "bpanda",
                "pie")
_NO_AREA = ("point", "line", "vector", "text", "ruler", "compass", "projection", "segment", "circle3d")
_POINT_STYLES = ("circle", "box", "diamond", "cross", "x", "arrow", "boxcircle")

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_RE_NUM = re.compile(rf"^({_NUM})$")
_RE_UNIT = re.compile(rf"^({_NUM})([\"'dripDRIP]?)$")
_RE_SEX = re.compile(r"^([+-]?)(\d+):(\d+):(\d+\.?\d*(?:[eE][+-]?\d+)?)$")
_RE_HMS = re.compile(r"^([+-]?)(\d+\.?\d*)([hd])(\d+\.?\d*)m(\d+\.?\d*)s?$", re.IGNORECASE)
_RE_TEXT = re.compile(r"\btext\s*=\s*(\{[^}]*\}|\"[^\"]*\"|'[^']*')")
_RE_INCLUDE = re.compile(r"\binclude\s*=\s*(\w+)")
_RE_WORD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)")


class _Problem(Exception):
    """A problem on one line (turned into a BadRegionError naming file and line)."""


def _split(text, seps):
    """Split ``text`` at characters in ``seps`` outside braces, quotes and parentheses."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'" and depth == 0 and (not cur or not cur[-1][-1:].isdigit()):
            quote = ch
        elif ch in "{(":
            depth += 1
        elif ch in "})":
            depth = max(depth - 1, 0)
        elif ch in seps and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


def _comment_split(text):
    """(body, comment) at the first ``#`` outside braces and quotes."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth = max(depth - 1, 0)
        elif ch == "#" and depth == 0:
            return text[:i], text[i + 1:]
    return text, ""


def _props(comment):
    """(include or None, text or None) from a property string."""
    include = None
    m = _RE_INCLUDE.search(comment)
    if m:
        word = m.group(1).lower()
        if word in ("1", "yes", "y", "on", "true"):
            include = True
        elif word in ("0", "no", "n", "off", "false"):
            include = False
        else:
            raise _Problem(f"include={m.group(1)} is not 0 or 1")
    m = _RE_TEXT.search(comment)
    name = m.group(1)[1:-1] if m else None
    return include, name


def _number(tok, what):
    m = _RE_NUM.match(tok)
    if not m:
        raise _Problem(f"{what} {tok!r} is not a number")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise _Problem(f"{what} {tok!r} is not finite")
    return value


def _sexagesimal(tok):
    """Value of ``[±]a:b:c`` or ``[±]AhBmCs``/``AdBmCs`` (in the units of the first field), or None."""
    m = _RE_SEX.match(tok)
    if m:
        sign, a, b, c = m.groups()
    else:
        m = _RE_HMS.match(tok)
        if not m:
            return None
        sign, a, _, b, c = m.groups()
    value = float(a) + float(b) / 60 + float(c) / 3600
    return -value if sign == "-" else value


class _Frame:
    """The coordinate system in force on a line, and the rules to read its numbers."""

    def __init__(self, name):
        self.name = name
        self.sky = SKY_FRAMES.get(name)

    def position(self, tok_x, tok_y):
        """(x, y) in degrees (sky) or 1-based pixels."""
        out = []
        for tok, odd in ((tok_x, True), (tok_y, False)):
            sex = _sexagesimal(tok)
            if sex is not None:
                if not self.sky:
                    raise _Problem(f"sexagesimal position {tok!r} in {self.name} coordinates")
                hours = odd and ("h" in tok.lower() or (":" in tok and self.sky != "galactic"))
                out.append(sex * 15.0 if hours else sex)
                continue
            m = _RE_UNIT.match(tok)
            if not m:
                raise _Problem(f"position {tok!r} is not a number")
            value, unit = float(m.group(1)), m.group(2).lower()
            if not math.isfinite(value):
                raise _Problem(f"position {tok!r} is not finite")
            if unit in ("i", "p") or (unit in ("d", "r") and not self.sky) or unit in ("\"", "'"):
                raise _Problem(f"position {tok!r}: unit '{m.group(2)}' cannot be mixed into {self.name} coordinates")
            out.append(math.degrees(value) if unit == "r" else value)
        return tuple(out)

    def size(self, tok):
        """A size: Quantity (sky) or float pixels."""
        m = _RE_UNIT.match(tok)
        if not m:
            raise _Problem(f"size {tok!r} is not a number")
        value, unit = float(m.group(1)), m.group(2).lower()
        if not math.isfinite(value) or value < 0:
            raise _Problem(f"size {tok!r} must be a finite number >= 0")
        if self.sky:
            if unit in ("i", "p"):
                raise _Problem(f"size {tok!r} in pixels cannot be mixed into {self.name} coordinates")
            factor = {"\"": u.arcsec, "'": u.arcmin, "d": u.deg, "": u.deg, "r": u.rad}[unit]
            return value * factor
        if unit not in ("", {"image": "i", "physical": "p"}[self.name]):
            raise _Problem(f"size {tok!r}: unit '{m.group(2)}' cannot be mixed into {self.name} coordinates "
                           "(use pixels)")
        return value


def _angle(tok):
    m = _RE_UNIT.match(tok)
    if not m or m.group(2).lower() not in ("", "d", "r"):
        raise _Problem(f"angle {tok!r} is not a number of degrees")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise _Problem(f"angle {tok!r} is not finite")
    return math.degrees(value) if m.group(2).lower() == "r" else value


def _count(tok, what):
    value = _number(tok, what)
    if value != int(value) or value < 1:
        raise _Problem(f"{what} {tok!r} must be a whole number >= 1")
    return int(value)


def _args(body, word):
    """Argument tokens of a shape after its keyword."""
    rest = body[len(word):].strip()
    if rest.startswith("("):
        close = rest.rfind(")")
        if close < 0:
            raise _Problem(f"{word}: missing ')'")
        rest = rest[1:close]
    rest = re.sub(r"\bn\s*=\s*", "n=", rest, flags=re.IGNORECASE)
    return [t for t in re.split(r"[,\s]+", rest.strip()) if t]


def _n_option(args):
    """(arguments without ``n=#``, n or None)."""
    ns = [a for a in args if a.lower().startswith("n=")]
    if not ns:
        return args, None
    if len(ns) > 1:
        raise _Problem("n= given twice")
    return [a for a in args if not a.lower().startswith("n=")], _count(ns[0][2:], "n=")


def _need(word, args, counts, form):
    if len(args) not in counts:
        raise _Problem(f"{word} takes {form}, got {len(args)} value{'s' if len(args) != 1 else ''}")


def _build(word, args, frame):
    """The shape of one ds9 shape command (a ``regions`` object or ours)."""
    sky = frame.sky
    args, n = _n_option(args)
    if n is not None and word not in ("annulus", "ellipse", "box"):
        raise _Problem(f"n= is not an option of {word}")
    if word != "polygon":
        if len(args) < 2:
            raise _Problem(f"{word} needs a centre x, y")
        x, y = frame.position(args[0], args[1])
        center = SkyCoord(x * u.deg, y * u.deg, frame=sky) if sky else PixCoord(x - 1.0, y - 1.0)
        rest = args[2:]
    if word == "circle":
        _need(word, rest, (1,), "x, y, radius")
        r = frame.size(rest[0])
        return (CircleSkyRegion if sky else CirclePixelRegion)(center, r)
    if word == "annulus":
        if n is not None:
            _need(word, rest, (2,), "x, y, inner, outer, n=#")
        elif len(rest) < 2:
            raise _Problem("annulus takes x, y and at least two radii")
        radii = [frame.size(t) for t in rest]
        inner, outer = min(radii), max(radii)  # the rings together cover inner..outer
        if not outer > inner:
            raise _Problem("annulus outer radius must be larger than the inner one")
        if inner == 0:
            return (CircleSkyRegion if sky else CirclePixelRegion)(center, outer)
        return (CircleAnnulusSkyRegion if sky else CircleAnnulusPixelRegion)(center, inner, outer)
    if word in ("ellipse", "box", "rotbox"):
        ellipse = word == "ellipse"
        angle = _angle(rest[-1]) if len(rest) % 2 == 1 else 0.0
        pairs_tok = rest[:-1] if len(rest) % 2 == 1 else rest
        form = "x, y, r1, r2[, angle]" if ellipse else "x, y, width, height[, angle]"
        if len(pairs_tok) < 2 or (n is not None and len(pairs_tok) != 4) or (word == "rotbox" and len(pairs_tok) != 2):
            raise _Problem(f"{word} takes {form} (or more size pairs for an annulus), got {len(rest)} values")
        scale = 2.0 if ellipse else 1.0  # ds9 ellipses take semi-axes, regions full axes
        pairs = [(frame.size(pairs_tok[i]) * scale, frame.size(pairs_tok[i + 1]) * scale)
                 for i in range(0, len(pairs_tok), 2)]
        pairs.sort(key=lambda p: (p[0], p[1]))
        ang = angle * u.deg
        (w1, h1), (w2, h2) = pairs[0], pairs[-1]
        if len(pairs) == 1 or (w1 == 0 and h1 == 0):
            center, ang = _equatorial(center, ang, sky)
            cls = (EllipseSkyRegion if sky else EllipsePixelRegion) if ellipse else \
                (RectangleSkyRegion if sky else RectanglePixelRegion)
            return cls(center, w2, h2, angle=ang)
        if not (w2 > w1 and h2 > h1):
            raise _Problem(f"{word} annulus: the outer sizes must both be larger than the inner ones")
        cls = (EllipseAnnulusSkyRegion if sky else EllipseAnnulusPixelRegion) if ellipse else \
            (RectangleAnnulusSkyRegion if sky else RectangleAnnulusPixelRegion)
        center, ang = _equatorial(center, ang, sky)
        return cls(center, w1, w2, h1, h2, angle=ang)
    if word == "polygon":
        if len(args) < 6 or len(args) % 2:
            raise _Problem(f"polygon takes at least three x, y pairs, got {len(args)} values")
        pts = [frame.position(args[i], args[i + 1]) for i in range(0, len(args), 2)]
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        if sky:
            return PolygonSkyRegion(SkyCoord(xs * u.deg, ys * u.deg, frame=sky))
        return PolygonPixelRegion(PixCoord(xs - 1.0, ys - 1.0))
    cls = PandaSkyRegion if sky else PandaPixelRegion
    if word in ("panda", "cpanda"):
        _need(word, rest, (6,), "x, y, start angle, stop angle, n angles, inner, outer, n radii")
        a1, a2 = _angle(rest[0]), _angle(rest[1])
        _count(rest[2], "number of angles"), _count(rest[5], "number of radii")
        r1, r2 = frame.size(rest[3]), frame.size(rest[4])
        _check_radii(word, r1, r2)
        return cls(center, (r1, r1), (r2, r2), a1, a2, kind="circle")
    if word in ("epanda", "bpanda"):
        _need(word, rest, (8, 9), "x, y, start, stop, n angles, inner major, inner minor, outer major, outer minor, "
                                  "n radii[, angle]")
        a1, a2 = _angle(rest[0]), _angle(rest[1])
        _count(rest[2], "number of angles"), _count(rest[7], "number of radii")
        inner = (frame.size(rest[3]), frame.size(rest[4]))
        outer = (frame.size(rest[5]), frame.size(rest[6]))
        _check_radii(word, inner[0], outer[0])
        _check_radii(word, inner[1], outer[1])
        angle = _angle(rest[8]) if len(rest) == 9 else 0.0
        return cls(center, inner, outer, a1, a2, angle, kind="ellipse" if word == "epanda" else "box")
    if word == "pie":
        if len(rest) == 4:  # CIAO / pyregion: inner, outer radius, start, stop
            r1, r2 = frame.size(rest[0]), frame.size(rest[1])
            _check_radii(word, r1, r2)
            return cls(center, (r1, r1), (r2, r2), _angle(rest[2]), _angle(rest[3]), kind="circle")
        if len(rest) in (2, 3):  # ds9 / funtools wedge out to the image edge
            angles = [_angle(t) for t in rest]
            zero = 0.0 * u.deg if sky else 0.0
            return cls(center, (zero, zero), None, angles[0], angles[-1], kind="circle")
        raise _Problem("pie takes x, y, start, stop angles (a wedge to the image edge) or x, y, inner, outer, "
                       f"start, stop (CIAO/pyregion), got {len(args)} values")
    raise _Problem(f"unknown shape {word!r}")  # pragma: no cover - callers pass known words only


def _equatorial(center, angle, sky):
    """(centre, angle) of a rotated ``regions`` sky shape expressed in ICRS.

    ``regions`` turns a sky angle into a pixel angle with the grid's (equatorial) north, while
    ds9 measures a galactic or fk4 shape's angle from that frame's own north (galactic north is
    ~60° away from equatorial north in places): restate the shape in ICRS, angle included.
    """
    if sky in ("fk5", "icrs", None):
        return center, angle
    return center.transform_to(ICRS()), angle + _frame_turn(center, ICRS()) * u.deg


def _check_radii(word, inner, outer):
    if not outer > inner:
        raise _Problem(f"{word}: the outer size must be larger than the inner one")


def parse_ds9(text):
    """Parse ds9 region text.

    Returns
    -------
    shapes : list of (shape, include, name, line)
        Shapes in file order (``physical`` ones wrapped in :class:`PhysicalRegion`).
    notes : list of str
        What was skipped and why (shapes with no area).

    Raises
    ------
    BadRegionError
        With ``field = "line N"``; the caller adds the file name.
    """
    frame = _Frame("physical")  # ds9's default when a file names no system
    default_include = True
    shapes, notes = [], []
    composite = None  # (include, name) while the members of a composite are read
    for lineno, raw in enumerate(text.splitlines(), start=1):
        try:
            for command in _split(raw, ";"):
                frame, default_include, composite = _command(
                    command.strip(), frame, default_include, composite, shapes, notes, lineno)
        except _Problem as exc:
            raise BadRegionError(str(exc), field=f"line {lineno}") from None
        except BadRegionError as exc:
            raise BadRegionError(exc.reason, field=f"line {lineno}") from None
        except (ValueError, TypeError) as exc:  # a regions/astropy constructor refused a value
            raise BadRegionError(str(exc).split("\n")[0], field=f"line {lineno}") from None
    return shapes, notes


def _command(cmd, frame, default_include, composite, shapes, notes, lineno):
    """Handle one ``;``-separated command; returns the updated (frame, include default, composite)."""
    if not cmd:
        return frame, default_include, composite
    sign = None
    if cmd[0] in "+-":
        sign, cmd = cmd[0] == "+", cmd[1:].lstrip()
    body, comment = _comment_split(cmd)
    body = body.strip()
    if not body:  # a comment line, perhaps a ds9 non-shape (# composite, # text, # vector ...)
        c = comment.strip()
        if c[:1] in "+-":
            sign, c = c[0] == "+", c[1:].lstrip()
        m = _RE_WORD.match(c)
        word = m.group(1).lower() if m else ""
        if word == "composite":  # "# composite(x,y,angle) || composite=1 text={..}": properties follow
            close = c.find(")")
            props = c[close + 1:] if close >= 0 else ""
            include, name = _props(props)
            inc = sign if sign is not None else (include if include is not None else default_include)
            return frame, default_include, ((inc, name) if props.lstrip().startswith("|") else None)
        if word in _NO_AREA and "(" in c[len(word):len(word) + 2]:
            notes.append(f"line {lineno}: {word} skipped (it encloses no area)")
        return frame, default_include, composite
    m = _RE_WORD.match(body)
    if not m:
        raise _Problem(f"cannot read {body[:30]!r}: expected a shape or a coordinate system")
    word = m.group(1).lower()
    conj = body.rstrip().endswith("||") or body.rstrip().endswith("|")
    body = body.rstrip().rstrip("|").rstrip()
    if word in SKY_FRAMES or word in _PIXEL_FRAMES:
        if body.lower() != word:
            raise _Problem(f"unexpected text after the coordinate system: {body!r}")
        return _Frame(word), default_include, composite
    if word in _UNSUPPORTED_FRAMES:
        raise _Problem(f"coordinate system '{_UNSUPPORTED_FRAMES[word]}' is not supported "
                       "(use fk5, icrs, fk4, galactic, image or physical)")
    if word == "global":
        include, _ = _props(body[6:] + " " + comment)
        return frame, (default_include if include is None else include), composite
    if word == "tile":
        parts = body.split()
        if len(parts) != 2 or parts[1] != "1":
            raise _Problem("only 'tile 1' is supported (a region file for a single image)")
        return frame, default_include, composite
    if word == "version" or word == "debug":
        return frame, default_include, composite
    after = body[len(word):].lstrip().lower()
    if word in _NO_AREA or (word in _POINT_STYLES and after.startswith("point")):
        notes.append(f"line {lineno}: {word if word in _NO_AREA else 'point'} skipped (it encloses no area)")
        return frame, default_include, (composite if conj else None)
    if word == "field":
        raise _Problem("'field' (the whole image) is not supported; draw a box over the image instead")
    if word not in _AREA_SHAPES:
        raise _Problem(f"unknown shape '{word}' (supported: circle, ellipse, box, polygon, annulus, pie, panda, "
                       "epanda, bpanda; point, line, text, ruler etc. are skipped)")
    include, name = _props(comment)
    shape = _build(word, _args(body, word), frame)
    if frame.name == "physical":
        shape = PhysicalRegion(shape)
    inc = sign if sign is not None else (include if include is not None else default_include)
    if composite is not None:
        comp_include, comp_name = composite
        inc = inc and comp_include
        name = name if name is not None else comp_name
    shapes.append((shape, bool(inc), name, lineno))
    return frame, default_include, (composite if (composite is not None and conj) else None)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _g(v):
    """Compact float text with enough digits for a loss-free round trip of masks."""
    return f"{float(v):.10g}"


def _frame_turn(coord, frame):
    """Angle (deg) to add to a sky angle of ``coord``'s frame to express it in ``frame``.

    ds9 sky angles run counter-clockwise from +longitude; the old frame's north has position
    angle ``pa`` in the new one, so every direction turns by ``pa``.
    """
    frame = _ASTROPY_FRAMES[frame] if isinstance(frame, str) else frame
    here = coord.transform_to(frame)
    north = coord.directional_offset_by(0 * u.deg, 1 * u.arcsec).transform_to(frame)
    return here.position_angle(north).to_value(u.deg)


def _lonlat(c):
    sph = c.spherical
    return f"{sph.lon.deg:.10f},{sph.lat.deg:+.10f}"


def _body(s, c, size, ang):
    """ds9 text of a non-polygon shape: ``c`` the centre text, ``size`` formats a size, ``ang`` in degrees."""
    name = shape_name(s)
    if name == "circle":
        return f"circle({c},{size(s.radius)})"
    if name == "annulus":
        return f"annulus({c},{size(s.inner_radius)},{size(s.outer_radius)})"
    if isinstance(s, (PandaPixelRegion, PandaSkyRegion)):
        a1, a2 = s.start_angle, s.start_angle + s.span
        if s.kind == "circle":  # ds9 panda/pie have no rotation: fold it into the angles
            a1, a2 = a1 + ang, a2 + ang
            if s.outer is None:
                return f"pie({c},{_g(a1)},{_g(a2)})"
            return f"panda({c},{_g(a1)},{_g(a2)},1,{size(s.inner[0])},{size(s.outer[0])},1)"
        (i1, i2), (o1, o2) = s.inner, s.outer
        return f"{s.ds9_name}({c},{_g(a1)},{_g(a2)},1,{size(i1)},{size(i2)},{size(o1)},{size(o2)},1,{_g(ang)})"
    if name in ("ellipse", "box"):  # ds9 ellipses take semi-axes, regions full axes
        half = 2.0 if name == "ellipse" else 1.0
        return f"{name}({c},{size(s.width / half)},{size(s.height / half)},{_g(ang)})"
    half = 2.0 if name == "ellipse annulus" else 1.0
    return (f"{name.split()[0]}({c},{size(s.inner_width / half)},{size(s.inner_height / half)},"
            f"{size(s.outer_width / half)},{size(s.outer_height / half)},{_g(ang)})")


def _sky_body(s, frame):
    """ds9 text of a sky shape in ``frame`` (an astropy frame name), sizes in arcsec."""
    frame = _ASTROPY_FRAMES[frame]
    if isinstance(s, PolygonSkyRegion):
        v = s.vertices.transform_to(frame).spherical
        xy = ",".join(f"{lo:.10f},{la:+.10f}" for lo, la in zip(np.atleast_1d(v.lon.deg), np.atleast_1d(v.lat.deg)))
        return f"polygon({xy})"
    ang = u.Quantity(getattr(s, "angle", 0.0), u.deg).value + _frame_turn(s.center, frame)
    return _body(s, _lonlat(s.center.transform_to(frame)),
                 lambda q: f'{u.Quantity(q).to_value(u.arcsec):.6f}"', ang)


def _pixel_body(s, pos, scale):
    """ds9 text of a pixel shape; ``pos(x, y)`` gives the written position text, ``scale`` the size factor."""
    if isinstance(s, PolygonPixelRegion):
        vx, vy = np.atleast_1d(s.vertices.x), np.atleast_1d(s.vertices.y)
        return "polygon(" + ",".join(pos(x, y) for x, y in zip(vx, vy)) + ")"
    return _body(s, pos(s.center.x, s.center.y), lambda v: _g(v * scale),
                 u.Quantity(getattr(s, "angle", 0.0), u.deg).value)


def shape_to_ds9(shape, coord, grid=None, *, index=0, source=None):
    """ds9 text of one shape in the coordinate system ``coord`` (one of :data:`WRITE_FRAMES`).

    Sky shapes are written in degrees with sizes in arcsec; ``image`` in 1-based pixels;
    ``physical`` through the grid's LTM/LTV. A ``grid`` is needed to change between sky and
    pixel coordinates (and for ``physical``).
    """
    if coord not in WRITE_FRAMES:
        raise BadConfigError(f"coord must be one of {', '.join(WRITE_FRAMES)}, got {coord!r}", field="coord")
    unbounded = getattr(getattr(shape, "shape", shape), "outer", 0) is None  # a pie to the image edge
    if coord in ("image", "physical") or not is_sky(shape):
        plain_pixel = not is_sky(shape) and not isinstance(shape, PhysicalRegion)
        if grid is None and not (coord == "image" and plain_pixel):
            kind = "physical" if isinstance(shape, PhysicalRegion) else ("sky" if is_sky(shape) else "pixel")
            raise BadConfigError(f"region {index + 1} is in {kind} coordinates: a SkyGrid is needed to write "
                                 f"{coord}", field="grid")
        pix = to_pixel(shape, grid, source, index)
        if unbounded:
            pix = pix.copy(outer=None)
        if coord == "image":
            return _pixel_body(pix, lambda x, y: f"{_g(x + 1)},{_g(y + 1)}", 1.0)
        if coord == "physical":
            def pos(x, y):
                px, py = grid.pixel_to_physical(x, y)
                return f"{_g(px)},{_g(py)}"

            return _pixel_body(pix, pos, 1.0 / grid.ltm[0])
        require_celestial(grid, source, f"cannot write {coord} regions on a heliocentric (solar X/Y) sky grid: "
                                        "write them with coord='image' or 'physical'")
        shape = pix.to_sky(grid.wcs)
    return _sky_body(shape, coord)
