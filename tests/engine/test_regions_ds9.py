"""Every ds9 shape in every frame: our masks against independent masks on a real NuSTAR WCS.

Two oracles that share no code with the engine:

* the exact geometry of each shape, written here: every pixel centre is taken to the region's
  frame with astropy (``WCS.pixel_to_world`` and ``transform_to``), measured from the shape's
  centre as offsets on the sky (east, north in that frame; ds9 draws +x west on a north-up
  image) and tested against the shape's equations; pixel frames test the pixel coordinates;
* pyregion (the parser nuskybgd-py uses), a test-only dependency, where it is right: it
  uses FK4 with obstime J2000 (ds9 and astropy: B1950), turns ``epanda``/``bpanda`` sector
  angles by the frame rotation twice, and has no box annulus and no ds9 ``pie`` wedge.

The sky image is the real FPMA image of OBS_ID 80415201001 (1000×1000, 2.458"/pixel); its
header is given ``LTM = 0.5``, ``LTV = 0.75`` so that ``physical`` is not the identity.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import FK4, FK5, ICRS, Galactic
from astropy.io import fits

from nuskybgd_engine.errors import BadRegionError
from nuskybgd_engine.io.regions import RegionSet, SkyGrid, region_mask

pytestmark = pytest.mark.requires_data

IMAGE = "nustarFittingExample/nu80415201001A06_chu2_S_cl_grade0_sk.img.gz"
LTM, LTV = 0.5, 0.75
FRAMES = {"fk5": FK5(equinox="J2000"), "icrs": ICRS(), "fk4": FK4(equinox="B1950"), "galactic": Galactic()}
ALL_FRAMES = ("fk5", "icrs", "fk4", "galactic", "image", "physical")
WINDOW = 130  # half-size (pixels) of the box around the centre where the oracle is evaluated
CX, CY = 480.3, 510.7  # 0-based pixel centre of the shapes (20" off the image centre)

# Each shape: (ds9 name, parameters). Sizes in pixels, angles in degrees; "p" = 0-based pixel
# positions (polygon). The numbers avoid pixel centres falling exactly on a boundary.
SHAPES = {
    "circle": ("circle", dict(r=40.3)),
    "ellipse": ("ellipse", dict(a=50.3, b=20.2, angle=33.3)),
    "box": ("box", dict(w=50.3, h=20.2, angle=33.3)),
    "polygon": ("polygon", dict(p=[(450.2, 470.1), (520.7, 480.3), (530.1, 550.6), (470.4, 530.2)])),
    "annulus": ("annulus", dict(r1=20.3, r2=45.1)),
    "ellipse_annulus": ("ellipse", dict(a1=20.1, b1=10.05, a2=50.3, b2=25.15, angle=33.3)),
    "box_annulus": ("box", dict(w1=20.1, h1=10.05, w2=50.3, h2=25.15, angle=-21.7)),
    "pie": ("pie", dict(r1=10.3, r2=45.1, a1=30.5, a2=150.2)),  # CIAO / pyregion form
    "pie_wedge": ("pie", dict(a1=200.5, a2=230.2)),  # ds9 / funtools wedge to the image edge
    "panda": ("panda", dict(a1=30.5, a2=250.2, r1=10.3, r2=45.1)),
    "epanda": ("epanda", dict(a1=30.5, a2=250.2, a1_=10.3, b1=5.15, a2_=40.6, b2=20.3, angle=25.2)),
    "bpanda": ("bpanda", dict(a1=300.5, a2=80.2, a1_=10.3, b1=5.15, a2_=40.6, b2=20.3, angle=25.2)),
    "composite": ("composite", dict(r=20.3, w=60.3, h=10.2, angle=12.4)),
}
PYREGION_LACKS = {"box_annulus", "pie_wedge"}


@pytest.fixture(scope="module")
def header(data_dir):
    h = fits.getheader(data_dir / IMAGE)
    h["LTM1_1"] = h["LTM2_2"] = LTM
    h["LTV1"] = h["LTV2"] = LTV
    # the same physical system as the alternate WCS "P" that pyregion reads (NuSTAR writes both)
    for n in (1, 2):
        h[f"CRPIX{n}P"], h[f"CRVAL{n}P"], h[f"CDELT{n}P"] = 1.0, (1.0 - LTV) / LTM, 1.0 / LTM
    return h


@pytest.fixture(scope="module")
def grid(header):
    return SkyGrid.from_header(header)


def _wcs(header):
    from astropy.wcs import WCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real header's RADECSYS is deprecated FITS, read as RADESYS
        return WCS(header)


# ---------------------------------------------------------------------------------------------
# ds9 text of a shape in a frame (astropy for sky positions; nothing from the engine)
# ---------------------------------------------------------------------------------------------


def _writer(frame, header):
    scale = abs(header["CDELT2"]) * 3600.0
    wcs = _wcs(header)
    if frame in FRAMES:
        def pos(x, y):
            c = wcs.pixel_to_world(x, y).transform_to(FRAMES[frame]).spherical
            return f"{c.lon.deg:.10f},{c.lat.deg:+.10f}"

        def size(r):
            return f'{r * scale:.7f}"'
    elif frame == "image":
        def pos(x, y):
            return f"{x + 1:.6f},{y + 1:.6f}"

        def size(r):
            return f"{r:.6f}"
    else:
        def pos(x, y):
            return f"{(x + 1 - LTV) / LTM:.6f},{(y + 1 - LTV) / LTM:.6f}"

        def size(r):
            return f"{r / LTM:.6f}"
    return pos, size


def ds9_text(name, frame, header):
    kind, p = SHAPES[name]
    pos, size = _writer(frame, header)
    c = pos(CX, CY)
    if kind == "circle":
        body = f"circle({c},{size(p['r'])})"
    elif kind == "ellipse" and "a" in p:
        body = f"ellipse({c},{size(p['a'])},{size(p['b'])},{p['angle']})"
    elif kind == "box" and "w" in p:
        body = f"box({c},{size(p['w'])},{size(p['h'])},{p['angle']})"
    elif kind == "polygon":
        body = "polygon(" + ",".join(pos(x, y) for x, y in p["p"]) + ")"
    elif kind == "annulus":
        body = f"annulus({c},{size(p['r1'])},{size(p['r2'])})"
    elif kind == "ellipse":
        body = f"ellipse({c},{size(p['a1'])},{size(p['b1'])},{size(p['a2'])},{size(p['b2'])},{p['angle']})"
    elif kind == "box":
        body = f"box({c},{size(p['w1'])},{size(p['h1'])},{size(p['w2'])},{size(p['h2'])},{p['angle']})"
    elif kind == "pie" and "r1" in p:
        body = f"pie({c},{size(p['r1'])},{size(p['r2'])},{p['a1']},{p['a2']})"
    elif kind == "pie":
        body = f"pie({c},{p['a1']},{p['a2']})"
    elif kind == "panda":
        body = f"panda({c},{p['a1']},{p['a2']},3,{size(p['r1'])},{size(p['r2'])},2)"
    elif kind in ("epanda", "bpanda"):
        body = (f"{kind}({c},{p['a1']},{p['a2']},4,{size(p['a1_'])},{size(p['b1'])},{size(p['a2_'])},"
                f"{size(p['b2'])},2,{p['angle']})")
    else:  # composite: a circle and a rotated box, ORed (ds9 writes members in absolute coordinates)
        body = (f"# composite({c},{p['angle']}) || composite=1 color=red\n"
                f"circle({c},{size(p['r'])}) ||\n"
                f"box({c},{size(p['w'])},{size(p['h'])},{p['angle']})")
    return f"# Region file format: DS9 version 4.1\nglobal color=green include=1\n{frame}\n{body}\n"


# ---------------------------------------------------------------------------------------------
# The geometry oracle
# ---------------------------------------------------------------------------------------------


def _local_xy(frame, header, xs, ys, cx, cy):
    """Offsets of pixel centres from (cx, cy): arcsec on the sky (sky frames) or pixels in the frame."""
    if frame in FRAMES:
        wcs = _wcs(header)
        centre = wcs.pixel_to_world(cx, cy).transform_to(FRAMES[frame])
        pts = wcs.pixel_to_world(xs, ys).transform_to(FRAMES[frame])
        east, north = centre.spherical_offsets_to(pts)
        return -east.to_value(u.arcsec), north.to_value(u.arcsec), abs(header["CDELT2"]) * 3600.0
    if frame == "image":
        return xs - cx, ys - cy, 1.0
    return (xs - cx) / LTM, (ys - cy) / LTM, 1.0 / LTM


def _image_direction(frame, header, angle):
    """Image angle (deg, from +x) of the direction at ds9 angle ``angle`` of ``frame`` at the centre."""
    if frame not in FRAMES:
        return angle
    wcs = _wcs(header)
    centre = wcs.pixel_to_world(CX, CY).transform_to(FRAMES[frame])
    t = math.radians(angle)  # +x is west: east offset -cos, north offset +sin
    bearing = math.degrees(math.atan2(-math.cos(t), math.sin(t)))
    x0, y0 = wcs.world_to_pixel(centre)
    x, y = wcs.world_to_pixel(centre.directional_offset_by(bearing * u.deg, 20 * u.arcsec))
    return math.degrees(math.atan2(float(y - y0), float(x - x0)))


def _rot(x, y, angle):
    t = math.radians(angle)
    return x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)


def _in_sector(x, y, a1, a2):
    span = (a2 - a1) % 360.0 or 360.0
    return (np.degrees(np.arctan2(y, x)) - a1) % 360.0 < span


def _in_polygon(px, py, vx, vy):
    inside = np.zeros(px.shape, dtype=bool)
    j = len(vx) - 1
    for i in range(len(vx)):
        crosses = (vy[i] > py) != (vy[j] > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (vx[j] - vx[i]) * (py - vy[i]) / (vy[j] - vy[i]) + vx[i]
        inside ^= crosses & (px < xint)
        j = i
    return inside


def truth(name, frame, header, shape):
    """The exact mask of a shape (pixel-centre test), on the whole grid."""
    kind, p = SHAPES[name]
    ny, nx = shape
    y0, x0 = int(CY) - WINDOW, int(CX) - WINDOW
    yy, xx = np.mgrid[y0:y0 + 2 * WINDOW, x0:x0 + 2 * WINDOW].astype(float)
    if kind == "pie" and "r1" not in p:  # the wedge reaches the image edge: whole grid
        y0 = x0 = 0
        yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    X, Y, s = _local_xy(frame, header, xx, yy, CX, CY)  # s = units (arcsec or frame pixels) per pixel
    if frame in FRAMES:
        s = abs(header["CDELT2"]) * 3600.0
    elif frame == "physical":
        s = 1.0 / LTM
    if kind == "circle":
        m = X ** 2 + Y ** 2 <= (p["r"] * s) ** 2
    elif kind == "annulus":
        d2 = X ** 2 + Y ** 2
        m = (d2 > (p["r1"] * s) ** 2) & (d2 <= (p["r2"] * s) ** 2)
    elif kind in ("ellipse", "box") and ("a" in p or "w" in p):
        u_, v_ = _rot(X, Y, p["angle"])
        if kind == "ellipse":
            m = (u_ / (p["a"] * s)) ** 2 + (v_ / (p["b"] * s)) ** 2 <= 1
        else:
            m = (np.abs(u_) <= p["w"] * s / 2) & (np.abs(v_) <= p["h"] * s / 2)
    elif kind == "ellipse":
        u_, v_ = _rot(X, Y, p["angle"])
        m = ((u_ / (p["a2"] * s)) ** 2 + (v_ / (p["b2"] * s)) ** 2 <= 1) & \
            ((u_ / (p["a1"] * s)) ** 2 + (v_ / (p["b1"] * s)) ** 2 > 1)
    elif kind == "box":
        u_, v_ = _rot(X, Y, p["angle"])
        outer = (np.abs(u_) <= p["w2"] * s / 2) & (np.abs(v_) <= p["h2"] * s / 2)
        inner = (np.abs(u_) <= p["w1"] * s / 2) & (np.abs(v_) <= p["h1"] * s / 2)
        m = outer & ~inner
    elif kind == "pie" and "r1" not in p:
        # A wedge to the image edge: ds9 turns its angles into image directions at the centre,
        # and its edges are straight lines on the image (hundreds of pixels away, no longer
        # lines of constant bearing on the sky).
        a1 = _image_direction(frame, header, p["a1"])
        m = _in_sector(xx - CX, yy - CY, a1, a1 + (p["a2"] - p["a1"]) % 360)
    elif kind in ("pie", "panda"):
        d2 = X ** 2 + Y ** 2
        m = _in_sector(X, Y, p["a1"], p["a2"])
        if "r1" in p:
            m &= (d2 > (p["r1"] * s) ** 2) & (d2 <= (p["r2"] * s) ** 2)
    elif kind in ("epanda", "bpanda"):
        u_, v_ = _rot(X, Y, p["angle"])
        if kind == "epanda":
            outer = (u_ / (p["a2_"] * s)) ** 2 + (v_ / (p["b2"] * s)) ** 2 <= 1
            inner = (u_ / (p["a1_"] * s)) ** 2 + (v_ / (p["b1"] * s)) ** 2 <= 1
        else:
            outer = (np.abs(u_) <= p["a2_"] * s / 2) & (np.abs(v_) <= p["b2"] * s / 2)
            inner = (np.abs(u_) <= p["a1_"] * s / 2) & (np.abs(v_) <= p["b1"] * s / 2)
        m = outer & ~inner & _in_sector(u_, v_, p["a1"], p["a2"])
    elif kind == "polygon":
        # ds9 joins polygon vertices by straight lines on the image: project them with astropy.
        vx, vy = np.array(p["p"]).T
        if frame in FRAMES:
            wcs = _wcs(header)
            v = wcs.pixel_to_world(vx, vy).transform_to(FRAMES[frame])
            vx, vy = wcs.world_to_pixel(v)
        m = _in_polygon(xx, yy, np.asarray(vx), np.asarray(vy))
    else:  # composite
        u_, v_ = _rot(X, Y, p["angle"])
        m = (X ** 2 + Y ** 2 <= (p["r"] * s) ** 2) | \
            ((np.abs(u_) <= p["w"] * s / 2) & (np.abs(v_) <= p["h"] * s / 2))
    full = np.zeros(shape, dtype=bool)
    full[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
    return full


def ours(text, grid):
    return region_mask(RegionSet.from_string(text, source="t.reg"), grid)


CASES = [(name, frame) for name in SHAPES for frame in ALL_FRAMES]


@pytest.mark.parametrize("name, frame", CASES)
def test_mask_matches_exact_geometry(name, frame, header, grid):
    text = ds9_text(name, frame, header)
    got = ours(text, grid)
    want = truth(name, frame, header, grid.shape)
    assert want.sum() > 300  # the shape is well sampled
    assert np.count_nonzero(got != want) == 0, text


def _pyregion_mask(text, header, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyregion 2.3 uses deprecated pyparsing names
        pyregion = pytest.importorskip("pyregion")
        return pyregion.parse(text).as_imagecoord(header).get_mask(header=header, shape=shape)


PYREGION_CASES = [(n, f) for n, f in CASES if n not in PYREGION_LACKS and f != "fk4"
                  and not (f == "galactic" and n in ("epanda", "bpanda"))]


@pytest.mark.parametrize("name, frame", PYREGION_CASES)
def test_mask_matches_pyregion(name, frame, header, grid):
    text = ds9_text(name, frame, header)
    want = _pyregion_mask(text, header, grid.shape)
    assert want.sum() > 300
    assert np.count_nonzero(ours(text, grid) != want) == 0, text


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("coord", ALL_FRAMES)
@pytest.mark.parametrize("start", ["image", "galactic"])
def test_round_trip_every_shape_and_frame(name, coord, start, header, grid):
    """Our ds9 export → our parser → the same mask, for each shape read in one frame and written in each."""
    rs = RegionSet.from_string(ds9_text(name, start, header))
    text = rs.to_ds9_string(coord, grid=grid)
    assert text.splitlines()[1] == coord
    again = RegionSet.from_string(text)
    assert np.array_equal(region_mask(again, grid), region_mask(rs, grid)), text


# ---------------------------------------------------------------------------------------------
# Syntax: properties, composite, units, separators, skipped shapes
# ---------------------------------------------------------------------------------------------


def test_syntax_forms_give_the_same_mask(grid):
    base = region_mask(RegionSet.from_string("image\ncircle(481.3,511.7,40.3)"), grid)
    for text in [
        "image; circle 481.3 511.7 40.3",
        "image\ncircle(481.3 511.7 40.3) # color=red text={a;b} tag={g 1}",
        "image\n+circle(481.3,511.7,40.3i)",
        "physical\ncircle(961.1,1021.9,80.6p)",  # LTM 0.5, LTV 0.75
        "circle(961.1,1021.9,80.6)",  # no system: physical, as in ds9
        "image\nannulus(481.3,511.7,0,20,40.3)",  # several radii: the rings cover 0..40.3
        "image\nannulus(481.3,511.7,0,40.3,n=4)",
    ]:
        assert np.array_equal(region_mask(RegionSet.from_string(text), grid), base), text


def test_sky_units_and_sexagesimal(grid):
    c = grid.wcs.pixel_to_world(480.3, 510.7).transform_to(FK5(equinox="J2000"))
    r = 40.3 * abs(grid.wcs.wcs.cdelt[1])  # degrees
    forms = [
        f"fk5\ncircle({c.ra.deg},{c.dec.deg},{r})",  # bare numbers are degrees
        f"fk5\ncircle({c.ra.deg}d,{c.dec.deg}d,{r}d)",
        f"fk5\ncircle({c.ra.deg},{c.dec.deg},{r * 60}')",
        f"fk5\ncircle({c.ra.to_string(u.hour, sep=':', precision=6)},"
        f"{c.dec.to_string(u.deg, sep=':', precision=5, alwayssign=True)},{r * 3600}\")",
        f"j2000\ncircle({c.ra.to_string(u.hour, sep='hms', precision=6)},"
        f"{c.dec.to_string(u.deg, sep='dms', precision=5, alwayssign=True)},{math.radians(r)}r)",
    ]
    masks = [region_mask(RegionSet.from_string(t), grid) for t in forms]
    assert masks[0].sum() > 5000
    for t, m in zip(forms[1:], masks[1:]):
        assert np.count_nonzero(m != masks[0]) == 0, t


def test_include_exclude_from_sign_property_global_and_composite(grid):
    text = """# Region file format: DS9 version 4.1
global color=green include=1
image
circle(481,511,40) # text={src}
-box(481,511,10,10,0)
circle(481,511,3) # include=0
global include=0
box(400,400,10,10,0)
global include=1
-# composite(600,600,0) || composite=1
circle(600,600,5) ||
box(600,600,30,4,0)
# composite(300,300,0) || composite=1 text={comp}
circle(300,300,5) ||
-box(300,300,4,4,0)
circle(700,700,5)
"""
    rs = RegionSet.from_string(text)
    assert [(e.kind, e.include, e.name) for e in rs] == [
        ("circle", True, "src"), ("box", False, None), ("circle", False, None), ("box", False, None),
        ("circle", False, None), ("box", False, None),
        ("circle", True, "comp"), ("box", False, "comp"), ("circle", True, None),
    ]


def test_no_area_shapes_are_skipped_with_a_note(grid):
    text = """image
point(100,100) # point=circle
circle point(10,10)
# text(200,200) text={hello}
text 200 200 {hello}
line(1,1,50,50) # line=0 0
# vector(100,100,30,45) vector=1
ruler(10,10,90,90) # ruler=image arcsec
circle(481,511,40)
"""
    rs = RegionSet.from_string(text, source="a.reg")
    assert len(rs) == 1
    assert [n.split(":")[0] for n in rs.notes] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7",
                                                    "line 8"]
    assert all("skipped" in n for n in rs.notes)


def test_wedge_pie_reaches_the_image_edge(grid):
    m = region_mask(RegionSet.from_string("image\npie(500.5,500.5,80,100)"), grid)
    assert m[999, 499] and m[600, 499] and not m[400, 499] and not m[999, 100]


def test_physical_on_an_event_grid_is_the_column_value(grid):
    events = SkyGrid(grid.wcs, grid.shape, origin=-3)  # TLMIN = -3: index i holds X = i - 3
    m = region_mask(RegionSet.from_string("physical\ncircle(97,197,3.2)"), events)
    ys, xs = np.nonzero(m)
    assert (round(xs.mean()), round(ys.mean())) == (100, 200)
    assert events.pixel_to_physical(100, 200) == (97.0, 197.0)


@pytest.mark.parametrize("line, words", [
    ("physical\ncircle(10,10,3)", None),
    ("ecliptic\ncircle(10,10,3)", "line 1: coordinate system 'ecliptic' is not supported"),
    ("amplifier\ncircle(10,10,3)", "line 1: coordinate system 'amplifier"),
    ("detector\ncircle(10,10,3)", "line 1: coordinate system 'detector"),
    ("wcsa\ncircle(10,10,3)", "line 1: coordinate system 'wcsa"),
    ("image\nfield()", "line 2: 'field'"),
    ("image\ncircle(10:10:10,10,3)", "line 2: sexagesimal position"),
    ("fk5\ncircle(10,10,3')\n\ncircle(10,10,3)", "line 4: circle radius is 3 deg"),
])
def test_error_lines(line, words, tmp_path):
    path = tmp_path / "u.reg"
    path.write_text(line)
    if words is None:
        assert len(RegionSet.read_ds9(path)) == 1
        return
    with pytest.raises(BadRegionError) as exc:
        RegionSet.read_ds9(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path} ") and words in msg and "\n" not in msg


def test_every_real_region_file_loads(data_dir, grid):
    files = sorted(data_dir.rglob("*.reg"))
    assert len(files) >= 7
    for f in files:
        rs = RegionSet.read_ds9(f)
        assert len(rs) >= 1 and not rs.notes, f


# ---------------------------------------------------------------------------------------------
# The region extension of the spectra (CXC format) describes the same pixels
# ---------------------------------------------------------------------------------------------


def _cxc_mask(table, shape, origin):
    """Evaluate CXC region rows (components ORed, rows of a component ANDed) at the pixel centres."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float) + origin
    out = np.zeros(shape, dtype=bool)
    for comp in np.unique(table["COMPONENT"]):
        m = np.ones(shape, dtype=bool)
        for row in table[table["COMPONENT"] == comp]:
            name = row["SHAPE"].strip()
            neg = name.startswith("!")
            name = name.lstrip("!")
            x, y = np.atleast_1d(row["X"]), np.atleast_1d(row["Y"])
            r, a = np.atleast_1d(row["R"]), np.atleast_1d(row["ROTANG"])
            dx, dy = xx - x[0], yy - y[0]
            u_, v_ = _rot(dx, dy, a[0])
            if name == "CIRCLE":
                s = dx ** 2 + dy ** 2 <= r[0] ** 2
            elif name == "ANNULUS":
                s = (dx ** 2 + dy ** 2 > r[0] ** 2) & (dx ** 2 + dy ** 2 <= r[1] ** 2)
            elif name == "ELLIPSE":
                s = (u_ / r[0]) ** 2 + (v_ / r[1]) ** 2 <= 1
            elif name in ("BOX", "ROTBOX"):
                s = (np.abs(u_) <= r[0] / 2) & (np.abs(v_) <= r[1] / 2)
            elif name == "PIE":
                d2 = dx ** 2 + dy ** 2
                s = (d2 <= r[1] ** 2) & ((d2 > r[0] ** 2) | (r[0] == 0))
                s &= _in_sector(dx, dy, a[0], a[1] if a[1] != a[0] else a[0] + 360)
            else:
                assert name == "POLYGON"
                s = _in_polygon(xx, yy, x, y)
            m &= ~s if neg else s
        out |= m
    return out


EXCLUDES = {  # partly overlapping the shapes above, in image coordinates
    "box": "-box(495.3,520.7,30.3,12.2,15)",
    "ellipse_annulus": "-ellipse(470.3,500.7,8.1,4.05,30.3,15.15,-20)",
    "epanda": "-epanda(490.3,505.7,100,300,2,5.3,3.1,35.6,20.3,1,40.2)",
}


@pytest.mark.parametrize("excluded", list(EXCLUDES))
@pytest.mark.parametrize("name", list(SHAPES))
def test_cxc_region_extension_selects_the_same_pixels(name, excluded, header, grid):
    from nuskybgd_engine.io.regions.cxc import region_hdu

    rs = RegionSet.from_string(ds9_text(name, "image", header) + EXCLUDES[excluded] + "\n")
    want = region_mask(rs, grid)
    table = region_hdu(rs, grid).data
    assert np.count_nonzero(_cxc_mask(table, grid.shape, grid.origin) != want) == 0


@pytest.mark.parametrize("name", ["pie", "panda", "epanda", "bpanda", "ellipse_annulus", "box_annulus"])
def test_outline_encloses_the_mask(name, header, grid):
    """The outline offered for display encloses the same pixels as the mask (up to its chords)."""
    from nuskybgd_engine.io.regions.shapes import outline

    rs = RegionSet.from_string(ds9_text(name, "image", header))
    x, y = outline(rs.to_pixel(grid)[0].shape, n=180)
    y0, x0 = int(CY) - WINDOW, int(CX) - WINDOW
    yy, xx = np.mgrid[y0:y0 + 2 * WINDOW, x0:x0 + 2 * WINDOW].astype(float)
    inside = np.zeros(xx.shape, dtype=bool)
    for curve in np.split(np.arange(x.size), np.flatnonzero(np.isnan(x))):
        cx, cy = x[curve[~np.isnan(x[curve])]], y[curve[~np.isnan(y[curve])]]
        assert cx[0] == cx[-1] and cy[0] == cy[-1]  # closed
        inside ^= _in_polygon(xx, yy, cx[:-1], cy[:-1])  # even-odd: the inner curve makes the hole
    mask = region_mask(rs, grid)
    window = mask[y0:y0 + 2 * WINDOW, x0:x0 + 2 * WINDOW]
    assert window.sum() == mask.sum()
    assert np.count_nonzero(inside != window) <= 0.02 * mask.sum()
