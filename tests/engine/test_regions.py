"""Tests of engine/io/regions/: sky grid, ds9 parsing/writing, the mask rule and cutouts.

Expected masks are computed here independently of ``regions``: analytic pixel-centre tests for
each shape (circle, ellipse, box, annulus, even-odd point-in-polygon) and, for sky shapes,
angular separations of the pixel centres computed with astropy coordinates.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from regions import (
    CircleAnnulusSkyRegion,
    CirclePixelRegion,
    CircleSkyRegion,
    EllipsePixelRegion,
    EllipseSkyRegion,
    PixCoord,
    PointPixelRegion,
    PolygonPixelRegion,
    PolygonSkyRegion,
    RectanglePixelRegion,
    RectangleSkyRegion,
)

from nuskybgd_engine.constants import PIXEL_ARCSEC, PIXEL_DEG
from nuskybgd_engine.errors import BadConfigError, BadFileError, BadRegionError, OutputExistsError
from nuskybgd_engine.io.fitsutil import read_fits
from nuskybgd_engine.io.regions import (
    Cutout,
    RegionSet,
    SkyGrid,
    region_cutout,
    region_mask,
    select_events,
)

HEAD = "# Region file format: DS9 version 4.1\n"


# ---------------------------------------------------------------------------------------
# fixtures and independent reference masks
# ---------------------------------------------------------------------------------------


def image_header(n=200, crval=(168.3863, 5.01909), naxis=2):
    h = fits.Header()
    h["NAXIS"] = naxis
    h["NAXIS1"] = n
    h["NAXIS2"] = n
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"] = h["CRPIX2"] = n / 2 + 0.5
    h["CRVAL1"], h["CRVAL2"] = crval
    h["CDELT1"], h["CDELT2"] = -PIXEL_DEG, PIXEL_DEG
    h["RADECSYS"] = "FK5"
    h["EQUINOX"] = 2000.0
    return h


def events_hdu(n=1000, tlmin=1, tcrvl=("168.3863", "5.01909"), tcdlt=(-PIXEL_DEG, PIXEL_DEG)):
    cols = [
        fits.Column(name="TIME", format="D", array=np.zeros(3)),
        fits.Column(name="X", format="I", array=np.array([1, 2, 3])),
        fits.Column(name="Y", format="I", array=np.array([1, 2, 3])),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="EVENTS")
    h = hdu.header
    for i, axis in ((2, "X"), (3, "Y")):
        h[f"TCTYP{i}"] = "RA---TAN" if axis == "X" else "DEC--TAN"
        h[f"TCRPX{i}"] = 500.5
        h[f"TCRVL{i}"] = tcrvl[i - 2]  # real files sometimes write it as a string
        h[f"TCDLT{i}"] = tcdlt[i - 2]
        h[f"TLMIN{i}"] = tlmin
        h[f"TLMAX{i}"] = tlmin + n - 1
    h["RADECSYS"] = "FK5"
    h["EQUINOX"] = 2000.0
    return hdu


def events_header(**kw):
    return events_hdu(**kw).header


@pytest.fixture(scope="module")
def grid():
    return SkyGrid.from_header(image_header(200))


def centres(shape):
    """0-based pixel-centre coordinates (x, y) of a grid."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return xx.astype(float), yy.astype(float)


def ref_circle(shape, xc, yc, r):
    x, y = centres(shape)
    return (x - xc) ** 2 + (y - yc) ** 2 < r**2


def ref_rotated(shape, xc, yc, angle_deg):
    x, y = centres(shape)
    t = math.radians(angle_deg)
    dx, dy = x - xc, y - yc
    return dx * math.cos(t) + dy * math.sin(t), -dx * math.sin(t) + dy * math.cos(t)


def ref_even_odd(shape, vx, vy):
    """Even-odd (ray casting) point-in-polygon test on pixel centres, written out here."""
    x, y = centres(shape)
    inside = np.zeros(shape, dtype=bool)
    n = len(vx)
    for i in range(n):
        x1, y1, x2, y2 = vx[i], vy[i], vx[(i + 1) % n], vy[(i + 1) % n]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xint)
    return inside


def sky_separation_mask(grid, center, radius):
    """Pixels whose centre is within ``radius`` of ``center`` on the sky (direct formula)."""
    x, y = centres(grid.shape)
    world = grid.wcs.pixel_to_world(x, y)
    return world.separation(center) < radius


def write(tmp_path, text, name="r.reg"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------
# SkyGrid
# ---------------------------------------------------------------------------------------


def test_grid_from_header_reference_pixel(grid):
    assert grid.shape == (200, 200)
    # CRPIX 100.5 (1-based FITS) is 0-based pixel coordinate 99.5.
    x, y = grid.wcs.world_to_pixel(SkyCoord(168.3863, 5.01909, unit="deg", frame="fk5"))
    assert x == pytest.approx(99.5, abs=1e-9) and y == pytest.approx(99.5, abs=1e-9)
    # One pixel east-west is 2.458" on the sky.
    a, b = grid.wcs.pixel_to_world([99.5, 100.5], [99.5, 99.5])
    assert a.separation(b).arcsec == pytest.approx(PIXEL_ARCSEC, rel=1e-6)
    assert "200x200" in repr(grid)


@pytest.mark.parametrize(
    "key, value, field",
    [
        ("NAXIS", 3, "NAXIS"),
        ("CTYPE1", "RA---SIN", "CTYPE1"),
        ("CTYPE2", "GLAT-TAN", "CTYPE2"),
        ("CDELT1", 2.45810736, "CDELT1"),  # arcsec, not degrees
        ("CDELT2", 0.0, "CDELT2"),
        ("CRVAL1", "abc", "CRVAL1"),
        ("CD1_1", 1e-4, "CD1_1"),
    ],
)
def test_grid_from_header_rejects(key, value, field):
    h = image_header()
    h[key] = value
    with pytest.raises(BadFileError) as exc:
        SkyGrid.from_header(h, path="img.fits")
    assert exc.value.field == field and "img.fits" in str(exc.value)


def test_grid_from_fits_image_and_events(tmp_path):
    img = tmp_path / "img.fits"
    fits.PrimaryHDU(np.zeros((200, 200), dtype=np.int32), header=image_header(200)).writeto(img)
    assert SkyGrid.from_fits(img) == SkyGrid.from_header(image_header(200))
    evt = tmp_path / "evt.fits"
    fits.HDUList([fits.PrimaryHDU(), events_hdu()]).writeto(evt)
    g = SkyGrid.from_fits(evt)
    assert g.shape == (1000, 1000) and g.path == str(evt)
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(BadFileError, match="EVENTS") as exc:
        SkyGrid.from_fits(empty)
    assert "empty.fits" in str(exc.value)


def test_grid_from_header_missing_keyword():
    h = image_header()
    del h["CRVAL2"]
    with pytest.raises(BadFileError, match="CRVAL2") as exc:
        SkyGrid.from_header(h, path="img.fits")
    assert exc.value.path == "img.fits"


def test_grid_from_event_columns_matches_image():
    ev = SkyGrid.from_event_columns(events_header(), path="evt.fits")
    im = SkyGrid.from_header(image_header(1000))
    assert ev.shape == (1000, 1000) and ev.origin == 1
    assert ev == im
    x, y = centres((3, 3))
    assert np.allclose(ev.wcs.all_pix2world(x * 300, y * 300, 0), im.wcs.all_pix2world(x * 300, y * 300, 0))


def test_grid_from_event_columns_tlmin_offset():
    # TLMIN 0: column value TCRPX (500.5) is array coordinate 500.5 - 0 = 500.5.
    g = SkyGrid.from_event_columns(events_header(n=1001, tlmin=0))
    assert g.shape == (1001, 1001) and g.origin == 0
    x, y = g.wcs.world_to_pixel(SkyCoord(168.3863, 5.01909, unit="deg", frame="fk5"))
    assert x == pytest.approx(500.5) and y == pytest.approx(500.5)
    ix, iy, inside = g.event_index([0, 1000], [0, 1000])
    assert list(ix) == [0, 1000] and inside.all()


def test_grid_from_event_columns_explicit_columns_and_errors():
    h = events_header()
    g = SkyGrid.from_event_columns(h, x_column=2, y_column=3)
    assert g.shape == (1000, 1000)
    bad = h.copy()
    del bad["TCRVL3"]
    with pytest.raises(BadFileError) as exc:
        SkyGrid.from_event_columns(bad, path="evt.fits")
    assert exc.value.field == "TCRVL3" and "evt.fits" in str(exc.value)
    bad = h.copy()
    bad["TTYPE2"] = "XX"
    with pytest.raises(BadFileError) as exc:
        SkyGrid.from_event_columns(bad, path="evt.fits")
    assert exc.value.field == "X"
    with pytest.raises(BadFileError) as exc:
        SkyGrid.from_event_columns(events_header(tcdlt=(-2.458, 2.458)), path="evt.fits")
    assert exc.value.field == "TCDLT2"


def test_event_index_nearest_pixel_centre():
    g = SkyGrid.from_event_columns(events_header())
    x = np.array([1, 1000, 1.49, 1.5, 0.4, 1000.6, np.nan, 500])
    ix, iy, inside = g.event_index(x, np.full(x.shape, 10.0))
    assert list(inside) == [True, True, True, True, False, False, False, True]
    assert list(ix[inside]) == [0, 999, 0, 1, 499]
    assert (iy[inside] == 9).all()


# ---------------------------------------------------------------------------------------
# Parsing, conventions and each shape against an analytic mask
# ---------------------------------------------------------------------------------------


def test_image_coordinates_are_one_based(grid):
    rs = RegionSet.from_string(HEAD + "image\ncircle(100,100,10.3)\n")
    shape = rs[0].shape
    assert (shape.center.x, shape.center.y) == (99.0, 99.0)
    m = region_mask(rs, grid)
    assert m[99, 99]
    yy, xx = np.nonzero(m)
    assert xx.mean() == pytest.approx(99.0) and yy.mean() == pytest.approx(99.0)
    assert (m == ref_circle(grid.shape, 99.0, 99.0, 10.3)).all()


def test_image_circle_500_500_on_1000_grid():
    # The brief's example: ds9 (500,500) is 0-based (499,499).
    g = SkyGrid.from_header(image_header(1000))
    m = region_mask(RegionSet.from_string("image\ncircle(500,500,5.5)"), g)
    yy, xx = np.nonzero(m)
    assert (xx.mean(), yy.mean()) == (499.0, 499.0)


@pytest.mark.parametrize(
    "line, reference",
    [
        ("circle(101.3,81.7,17.3)", lambda s: ref_circle(s, 100.3, 80.7, 17.3)),
        (
            "annulus(101.3,81.7,8.2,20.7)",
            lambda s: ref_circle(s, 100.3, 80.7, 20.7) & ~ref_circle(s, 100.3, 80.7, 8.2),
        ),
        (
            # ds9 ellipse takes semi-axes
            "ellipse(91.2,111.6,25.3,12.1,30)",
            lambda s: (lambda uv: (uv[0] / 25.3) ** 2 + (uv[1] / 12.1) ** 2 < 1)(ref_rotated(s, 90.2, 110.6, 30)),
        ),
        (
            # ds9 box takes full sides
            "box(71.4,61.2,40.3,20.7,25)",
            lambda s: (lambda uv: (np.abs(uv[0]) < 40.3 / 2) & (np.abs(uv[1]) < 20.7 / 2))(
                ref_rotated(s, 70.4, 60.2, 25)
            ),
        ),
        (
            # concave polygon (vertices shifted by -1 in the reference)
            "polygon(21.3,21.1,151.2,31.7,91.6,71.4,161.1,151.3,31.2,121.8)",
            lambda s: ref_even_odd(s, [20.3, 150.2, 90.6, 160.1, 30.2], [20.1, 30.7, 70.4, 150.3, 120.8]),
        ),
    ],
    ids=["circle", "annulus", "ellipse", "box", "polygon"],
)
def test_pixel_shapes_match_analytic_pixel_centre_test(grid, line, reference):
    rs = RegionSet.from_string(HEAD + "image\n" + line + "\n")
    m = region_mask(rs, grid)
    ref = reference(grid.shape)
    assert ref.sum() > 100
    assert (m == ref).all(), f"{np.count_nonzero(m != ref)} pixels differ"


def test_fk5_and_icrs_circle_match_angular_separation(grid):
    center = grid.wcs.pixel_to_world(80.3, 120.6)
    for frame in ("fk5", "icrs"):
        c = center.transform_to(frame)
        text = f"{frame}\ncircle({c.ra.deg:.10f},{c.dec.deg:.10f},40\")"
        m = region_mask(RegionSet.from_string(text), grid)
        ref = sky_separation_mask(grid, center, 40 * u.arcsec)
        assert m.sum() == ref.sum()
        # regions maps the sky circle to a pixel circle with the local scale; at 4' from the
        # tangent point the TAN distortion moves the edge by << 0.01 px.
        assert np.count_nonzero(m != ref) <= 2


def test_sky_shapes_all_rasterise(grid):
    c = grid.wcs.pixel_to_world(100.0, 100.0)
    rs = RegionSet()
    rs.add(CircleSkyRegion(c, 20 * u.arcsec), name="c")
    rs.add(EllipseSkyRegion(c, 60 * u.arcsec, 30 * u.arcsec, angle=10 * u.deg))
    rs.add(RectangleSkyRegion(c, 60 * u.arcsec, 30 * u.arcsec, angle=10 * u.deg))
    rs.add(CircleAnnulusSkyRegion(c, 30 * u.arcsec, 50 * u.arcsec))
    rs.add(PolygonSkyRegion(grid.wcs.pixel_to_world([60.0, 140.0, 100.0], [60.0, 70.0, 150.0])))
    for e in rs:
        sub = RegionSet()
        sub.add(e.shape)
        assert region_cutout(sub, grid).npix > 50, e.kind


def test_names_and_excludes_parsed():
    rs = RegionSet.from_string(
        HEAD + "fk5\ncircle(168.39,5.02,60\") # text={source A}\n-circle(168.39,5.02,10\") # text={pt}\n"
    )
    assert [(e.kind, e.include, e.name) for e in rs] == [("circle", True, "source A"), ("circle", False, "pt")]
    assert len(rs.includes) == 1 and len(rs.excludes) == 1
    text = repr(rs)
    assert "+circle 'source A'" in text and "-circle 'pt'" in text


# ---------------------------------------------------------------------------------------
# The combination rule
# ---------------------------------------------------------------------------------------

A = "circle(51,51,30.5)"  # 0-based centre (50,50)
B = "-circle(51,51,10.5)"  # hole, inside A
C = "circle(56,51,4.2)"  # inside B: centre (55,50), 5 + 4.2 < 10.5


def test_union_minus_exclude_rule_and_pyregion_difference(grid):
    m = region_mask(RegionSet.from_string("image\n" + "\n".join([A, B, C])), grid)
    a = ref_circle(grid.shape, 50, 50, 30.5)
    b = ref_circle(grid.shape, 50, 50, 10.5)
    c = ref_circle(grid.shape, 55, 50, 4.2)
    assert (c & ~b).sum() == 0  # C lies inside the hole
    # Ours: (A | C) & ~B = A & ~B, whatever the order.
    assert (m == ((a | c) & ~b)).all()
    assert m.sum() == a.sum() - b.sum()
    # pyregion would render in file order: ((A & ~B) | C) puts C back into the hole.
    pyregion = (a & ~b) | c
    assert pyregion.sum() == a.sum() - b.sum() + c.sum()
    assert pyregion[50, 55] and not m[50, 55]


def test_mask_is_order_independent(grid):
    masks = {
        perm: region_mask(RegionSet.from_string("image\n" + "\n".join(perm)), grid)
        for perm in itertools.permutations([A, B, C])
    }
    first = next(iter(masks.values()))
    for perm, m in masks.items():
        assert (m == first).all(), perm


def test_union_of_includes_overlapping(grid):
    m = region_mask(RegionSet.from_string("image\ncircle(61,61,20.5)\ncircle(81,61,20.5)\n"), grid)
    ref = ref_circle(grid.shape, 60, 60, 20.5) | ref_circle(grid.shape, 80, 60, 20.5)
    assert (m == ref).all()


# ---------------------------------------------------------------------------------------
# Cutouts, sums and events
# ---------------------------------------------------------------------------------------


def test_cutout_sum_matches_full_frame(grid):
    rs = RegionSet.from_string("image\n" + "\n".join([A, B, "box(150,150,30,20,15)"]))
    cut = region_cutout(rs, grid)
    assert isinstance(cut, Cutout)
    full = region_mask(rs, grid)
    assert (cut.to_full() == full).all()
    assert cut.mask.shape == (cut.slices[0].stop - cut.slices[0].start, cut.slices[1].stop - cut.slices[1].start)
    yy, xx = np.nonzero(full)
    sy, sx = cut.slices
    assert sy.start <= yy.min() and yy.max() < sy.stop and sx.start <= xx.min() and xx.max() < sx.stop
    assert cut.mask.size < full.size
    rng = np.random.default_rng(3)
    img = rng.random(grid.shape)
    assert cut.sum(img) == pytest.approx(img[full].sum(), rel=1e-12)
    stack = rng.random((2, 3) + grid.shape)
    out = cut.sum(stack)
    assert out.shape == (2, 3)
    assert np.allclose(out, stack[..., full].sum(axis=-1), rtol=1e-12)
    assert cut.npix == full.sum()
    with pytest.raises(BadConfigError) as exc:
        cut.sum(np.ones((10, 10)))
    assert exc.value.field == "image"


def test_partially_outside_is_clipped(grid):
    m = region_mask(RegionSet.from_string("image\ncircle(-4,51,20.5)"), grid)  # 0-based (-5, 50)
    assert (m == ref_circle(grid.shape, -5, 50, 20.5)).all()
    assert 0 < m.sum() < math.pi * 20.5**2 / 2


def test_select_events_uses_same_mask():
    g = SkyGrid.from_event_columns(events_header())
    rs = RegionSet.from_string("image\ncircle(500,500,10)\n-circle(500,500,3.5)")
    # Column values: (500,500) centre -> in the hole; 509.4 -> pixel 509 (1-based), 9 px
    # from the centre -> in; 511 -> 11 px -> out; 504.6 -> pixel 505, 5 px -> in; NaN -> out.
    x = np.array([500, 509.4, 511, 504.6, np.nan, 502])
    y = np.array([500, 500, 500, 500, 500, 500])
    assert list(select_events(rs, g, x, y)) == [False, True, False, True, False, False]
    # and agrees with the weights' mask at the event pixels
    rng = np.random.default_rng(0)
    ex, ey = rng.integers(470, 530, 2000), rng.integers(470, 530, 2000)
    m = region_mask(rs, g)
    assert (select_events(rs, g, ex, ey) == m[ey - 1, ex - 1]).all()


# ---------------------------------------------------------------------------------------
# Writing and round trips
# ---------------------------------------------------------------------------------------


def mixed_set(grid):
    c = grid.wcs.pixel_to_world(100.2, 90.7)
    rs = RegionSet()
    rs.add(CircleSkyRegion(c, 80 * u.arcsec), name="src")
    rs.add(EllipsePixelRegion(PixCoord(60.3, 70.1), 40.2, 20.6, angle=33 * u.deg), name="ell")
    rs.add(RectanglePixelRegion(PixCoord(140.7, 120.2), 30.3, 14.4, angle=-12 * u.deg))
    rs.add(PolygonPixelRegion(PixCoord([20.1, 60.2, 45.3], [150.3, 160.4, 190.2])), name="tri")
    rs.add(CircleAnnulusSkyRegion(grid.wcs.pixel_to_world(150.0, 50.0), 10 * u.arcsec, 40 * u.arcsec))
    rs.add(CirclePixelRegion(PixCoord(100.5, 95.3), 6.6), include=False, name="pt src")
    rs.add(RectangleSkyRegion(grid.wcs.pixel_to_world(142.0, 121.0), 15 * u.arcsec, 8 * u.arcsec,
                              angle=20 * u.deg), include=False)
    return rs


@pytest.mark.parametrize("coord", ["fk5", "icrs", "image"])
def test_round_trip_string(grid, coord):
    rs = mixed_set(grid)
    text = rs.to_ds9_string(coord=coord, grid=grid)
    assert text.splitlines()[1] == coord
    assert text.count("\n-") == 2
    back = RegionSet.from_string(text)
    assert [(e.kind, e.include, e.name) for e in back] == [(e.kind, e.include, e.name) for e in rs]
    assert (region_mask(back, grid) == region_mask(rs, grid)).all()


def test_write_ds9_round_trip_and_no_clobber(grid, tmp_path):
    rs = mixed_set(grid)
    path = tmp_path / "out.reg"
    assert rs.write_ds9(path, grid=grid) == path
    back = RegionSet.read_ds9(path)
    assert back.source == str(path)
    assert (region_mask(back, grid) == region_mask(rs, grid)).all()
    with pytest.raises(OutputExistsError):
        rs.write_ds9(path, grid=grid)
    rs2 = RegionSet.from_string("image\ncircle(10,10,3)")
    rs2.write_ds9(path, coord="image", overwrite=True)
    assert len(RegionSet.read_ds9(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.reg"]  # no temporary left behind


def test_writing_needs_grid_for_conversions(grid):
    rs = mixed_set(grid)
    with pytest.raises(BadConfigError) as exc:
        rs.to_ds9_string("fk5")
    assert exc.value.field == "grid"
    with pytest.raises(BadConfigError):
        rs.to_ds9_string("ecliptic", grid=grid)


def test_programmatic_edits(grid):
    rs = RegionSet()
    rs.add(CirclePixelRegion(PixCoord(50, 50), 10), name="a")
    n1 = region_cutout(rs, grid).npix
    rs.replace(0, CirclePixelRegion(PixCoord(50, 50), 20))
    assert rs[0].name == "a"
    assert region_cutout(rs, grid).npix == ref_circle(grid.shape, 50, 50, 20).sum() > n1
    rs.add(CirclePixelRegion(PixCoord(50, 50), 5), include=False)
    rs.replace(1, include=True)
    assert rs[1].include
    rs.remove(1)
    assert len(rs) == 1
    with pytest.raises(BadRegionError) as exc:
        rs.add(PointPixelRegion(PixCoord(1, 1)))
    assert "point" in str(exc.value) and exc.value.field == "shape"
    with pytest.raises(BadRegionError):
        rs.add(CirclePixelRegion(PixCoord(1, 1), 2), name="bad}name")


def test_sky_conversion_cache_follows_shape_changes(grid):
    # regions shapes are mutable: the sky->pixel cache must key on values, not identity.
    shape = CircleSkyRegion(grid.wcs.pixel_to_world(100.0, 100.0), 20 * u.arcsec)
    rs = RegionSet()
    rs.add(shape)
    n1 = region_cutout(rs, grid).npix
    shape.radius = 40 * u.arcsec
    n2 = region_cutout(rs, grid).npix
    assert n2 == sky_separation_mask(grid, shape.center, 40 * u.arcsec).sum() > n1


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("fk5\ncircle(1,2", "line 2: circle: missing ')'"),
        ("fk5\ncircle(a,b,c)", "line 2: position 'a' is not a number"),
        ("fk5\nfoo(1,2,3)", "line 2: unknown shape 'foo'"),
        ("image\npoint(10,10)", "point skipped"),
        ("ecliptic\ncircle(10,10,3)", "line 1: coordinate system 'ecliptic' is not supported"),
        ("linear\ncircle(10,10,3)", "line 1: coordinate system 'linear"),
        ("image\nellipse(10,10,5,3,3,6,0)", "line 2: ellipse annulus: the outer sizes"),
        ("image\npanda(10,10,0,90,1,5,3,1)", "line 2: panda: the outer size must be larger"),
        ("image\npie(10,10,1,2,3,4,5)", "line 2: pie takes"),
        ("image\ncircle(10,10,3,4)", "line 2: circle takes x, y, radius, got 2 values"),
        ("image\ncircle(10,10,3\")", "line 2: size '3\"'"),
        ("fk5\ncircle(10,10,3p)", "line 2: size '3p' in pixels"),
        ("image\ncircle(10,10,3) # include=maybe", "line 2: include=maybe"),
        ("tile 2\nimage\ncircle(10,10,3)", "line 1: only 'tile 1'"),
        ("", "no region"),
        ("# Region file format: DS9 version 4.1\nglobal color=green\nfk5\n", "no region"),
        ("image\npolygon(1,2,3,4)", "line 2: polygon takes at least three x, y pairs"),
        ("image\ncircle(10,10,-3)", "line 2: size '-3' must be"),
        ("fk5\ncircle(1,95,3\")", "line 2: Latitude"),
        ("fk5\ncircle(168.39,5.02,60)", "degrees"),
    ],
)
def test_bad_region_files_name_the_file(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(BadRegionError) as exc:
        RegionSet.read_ds9(path)
    assert str(path) in str(exc.value)
    assert words in str(exc.value)


def test_only_excludes_and_off_image(tmp_path, grid):
    path = write(tmp_path, "image\n-circle(50,50,10)\n-box(10,10,3,3,0)")
    rs = RegionSet.read_ds9(path)
    with pytest.raises(BadRegionError, match="no include region") as exc:
        region_mask(rs, grid)
    assert exc.value.path == str(path)
    path = write(tmp_path, "image\ncircle(50,50,10)\ncircle(400,400,10) # text={far}", "off.reg")
    with pytest.raises(BadRegionError, match="outside the image") as exc:
        region_cutout(RegionSet.read_ds9(path), grid)
    assert str(path) in str(exc.value) and "far" in str(exc.value)
    # A shape whose bounding box touches the grid but covers no pixel centre of it.
    path = write(tmp_path, "image\ncircle(-0.6,-0.6,1.5)", "corner.reg")
    with pytest.raises(BadRegionError, match="outside the image"):
        region_mask(RegionSet.read_ds9(path), grid)
    path = write(tmp_path, "image\ncircle(50,50,5)\n-circle(50,50,10)", "covered.reg")
    with pytest.raises(BadRegionError, match="no pixel") as exc:
        region_mask(RegionSet.read_ds9(path), grid)
    assert str(path) in str(exc.value)


def test_sky_region_on_far_side_of_sky(grid, tmp_path):
    path = write(tmp_path, "fk5\ncircle(348.39,-5.02,60\")")  # antipode of the tangent point
    with pytest.raises(BadRegionError, match="outside the image") as exc:
        region_mask(RegionSet.read_ds9(path), grid)
    assert str(path) in str(exc.value)


def test_missing_and_non_text_files(tmp_path):
    with pytest.raises(BadRegionError, match="not found") as exc:
        RegionSet.read_ds9(tmp_path / "nope.reg")
    assert "nope.reg" in str(exc.value)
    p = tmp_path / "bin.reg"
    p.write_bytes(b"\xff\xfe\x00\x81\x00")
    with pytest.raises(BadRegionError, match="not text"):
        RegionSet.read_ds9(p)
    with pytest.raises(BadRegionError, match="directory"):
        RegionSet.read_ds9(tmp_path)


# ---------------------------------------------------------------------------------------
# Real files
# ---------------------------------------------------------------------------------------


@pytest.mark.requires_data
def test_real_sun_center_region_pixel_count(data_dir):
    """The 180" circle of nustar_axions on the real 1000x1000 WCS of imA3to20keV.

    Independent checks: (1) the direct count of pixel centres within 180" on the sky
    (astropy separations); (2) the extractor's own sky->pixel conversion stored in the
    REG00101 extension of the nuproducts spectrum made with this region; (3) the lattice
    count of a disc of radius r differs from pi r^2 by less than pi (sqrt(2) r + 1/2), since the
    unit squares of the counted pixel centres lie inside the disc of radius r + sqrt(2)/2 and
    cover the disc of radius r - sqrt(2)/2 (for this centre, near a lattice point, the typical
    Gauss-circle error is a few pixels).
    """
    hdul = read_fits(data_dir / "nustar_axions/images/imA3to20keV.fits.gz")
    grid = SkyGrid.from_header(hdul[0].header, path="imA3to20keV.fits.gz")
    assert grid.shape == (1000, 1000)
    rs = RegionSet.read_ds9(data_dir / "nustar_axions/images/sun_center.reg")
    cut = region_cutout(rs, grid)
    npix = cut.npix
    assert npix == 16841

    center = rs[0].shape.center
    direct = sky_separation_mask(grid, center, 180 * u.arcsec)
    assert direct.sum() == npix
    assert (cut.to_full() == direct).all()

    r = 180.0 / PIXEL_ARCSEC
    assert abs(npix - math.pi * r**2) < math.pi * (math.sqrt(2) * r + 0.5)
    assert math.pi * r**2 == pytest.approx(16846, abs=1)

    pha = read_fits(data_dir / "nustar_axions/nu20211002001_sun_centerA_sr.pha")
    reg = pha["REG00101"].data[0]
    pix = rs.to_pixel(grid)[0].shape
    assert pix.center.x + 1 == pytest.approx(reg["X"], abs=1e-3)
    assert pix.center.y + 1 == pytest.approx(reg["Y"], abs=1e-3)
    assert pix.radius == pytest.approx(reg["R"], abs=1e-3)
    # BACKSCAL = npix / 1e6 = 0.016841 (geometric); nuproducts wrote 0.0156694 with
    # NUBACKSC = T (corrected for detector gaps/bad pixels), so it is not comparable.
    assert pha["SPECTRUM"].header["NUBACKSC"] is True


@pytest.mark.requires_data
def test_real_region_files_all_load(data_dir):
    files = sorted(data_dir.rglob("*.reg"))
    assert len(files) >= 7
    kinds = set()
    for f in files:
        rs = RegionSet.read_ds9(f)
        assert len(rs) >= 1 and rs.includes
        kinds.add(rs[0].is_sky)
    assert kinds == {True, False}  # fk5 and image coordinates both present


@pytest.mark.requires_data
def test_real_fk5_region_on_its_image(data_dir):
    base = data_dir / "nustarFittingExample"
    hdul = read_fits(base / "nu80415201001A06_chu2_S_cl_grade0_sk.img.gz")
    grid = SkyGrid.from_header(hdul[0].header)
    rs = RegionSet.read_ds9(base / "fpma.reg")
    m = region_mask(rs, grid)
    ref = sky_separation_mask(grid, rs[0].shape.center, 90.310 * u.arcsec)
    assert np.count_nonzero(m != ref) <= 2 and m.sum() > 0
    # BACKSCAL of the nuproducts spectrum made with this region (0.0042392, independent of
    # this code) is the geometric fraction up to nuproducts' own rasterisation and
    # corrections; we get 4246 pixels = 0.004246 (0.2 % apart).
    pha = read_fits(base / "nu80415201001A06_chu2_S_cl_grade0_sr.pha")
    assert m.sum() / 1e6 == pytest.approx(pha["SPECTRUM"].header["BACKSCAL"], rel=0.01)
    # Same observation, A and B images share the WCS (spec §1.4).
    grid_b = SkyGrid.from_header(read_fits(base / "nu80415201001B06_chu2_S_cl_grade0_sk.img.gz")[0].header)
    assert grid_b == grid


@pytest.mark.requires_data
def test_real_image_region_clipped_and_far_region_rejected(data_dir):
    grid = SkyGrid.from_header(read_fits(data_dir / "nustar_axions/images/imA3to20keV.fits.gz")[0].header)
    rs = RegionSet.read_ds9(data_dir / "nustar-gen-utils/30002041016A_StrayCatsI_704.reg")
    m = region_mask(rs, grid)  # circle(87,-91,211.6): centre below the image, partly on it
    assert (m == ref_circle(grid.shape, 86, -92, 211.63423)).all()
    far = data_dir / "nustar-gen-utils/srcA01.reg"  # LMC X-1, not in this solar field
    with pytest.raises(BadRegionError, match="outside the image") as exc:
        region_mask(RegionSet.read_ds9(far), grid)
    assert "srcA01.reg" in str(exc.value)


@pytest.mark.requires_data
def test_real_heliocentric_event_columns_rejected(data_dir):
    path = data_dir / "nustar_sac/nu90410111001A06_cl_sunpos.evt"
    hdul = read_fits(path)
    with pytest.raises(BadFileError) as exc:
        SkyGrid.from_event_columns(hdul["EVENTS"].header, path=path)
    assert exc.value.field == "TCDLT13" and "nu90410111001A06_cl_sunpos.evt" in str(exc.value)
