"""GRXE stray-light maps from a galactic-WCS sky map in the IDL auxil layout (``modelrxte_*.fits``)."""

import math

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from nuskybgd_engine.errors import BadFileError
from nuskybgd_engine.maps import AspectHistogram, project_maps
from nuskybgd_engine.maps.aperture import APERTURE_FLOOR
from nuskybgd_engine.maps.grxe import (
    APERTURE_STOP_HEIGHT_MM,
    FOCAL_LENGTH_MM,
    grxe_map_det1,
    project_grxe,
    read_grxe_map,
    stop_axis_det1,
)

RA0, DEC0 = 266.0, -29.5  # near the Galactic centre


def sky_header(pa=30.0):
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"] = 1000
    h["NAXIS2"] = 1000
    h["PA_PNT"] = pa
    for k, v in {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 500.5, "CRPIX2": 500.5, "CRVAL1": RA0, "CRVAL2": DEC0,
                     "CDELT1": -6.828076e-4, "CDELT2": 6.828076e-4, "INSTRUME": "FPMA"}.items():
        h[k] = v
    return h


def synthetic_imap():
    m = np.zeros((360, 360))
    m[182:350, 182:350] = 1
    m[182:352, 15:178] = 2
    m[10:178, 12:180] = 3
    m[12:180, 182:346] = 4
    return m


def synthetic_aperture():
    y, x = np.mgrid[0:360, 0:360]
    return APERTURE_FLOOR + 0.02 + 1e-4 * x + 5e-5 * (359 - y)


def write_grxe_map(path, func, *, step=0.4, nlon=101, nlat=61):
    """An RXTE-style GRXE map: primary image, GLON-CAR/GLAT-CAR, 0.4° pixels centred on (l, b) = (0, 0)."""
    h = fits.Header()
    for k, v in {"CTYPE1": "GLON-CAR", "CTYPE2": "GLAT-CAR", "CRPIX1": (nlon + 1) / 2, "CRPIX2": (nlat + 1) / 2,
                     "CRVAL1": 0.0, "CRVAL2": 0.0, "CDELT1": -step, "CDELT2": step, "CUNIT1": "deg", "CUNIT2": "deg"}.items():
        h[k] = v
    wcs = WCS(h)
    y, x = np.mgrid[0:nlat, 0:nlon]
    lon, lat = wcs.pixel_to_world_values(x, y)
    lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
    data = func(lon, np.asarray(lat)).astype(np.float32)
    fits.PrimaryHDU(data, header=h).writeto(path)
    return path


def test_uniform_map_is_the_aperture_map(tmp_path):
    grxe = read_grxe_map(write_grxe_map(tmp_path / "modelrxte_04deg.fits", lambda l, b: 3.0 + 0 * l))
    ap = synthetic_aperture()
    det1 = grxe_map_det1(grxe, sky_header(), (500, 500), 30.0, aperture=ap)
    np.testing.assert_allclose(det1, 3.0 * (ap - APERTURE_FLOOR), rtol=1e-6)
    hist = AspectHistogram(np.array([[2.0, 1.0], [1.0, 3.0]]), 499, 499, module="A")
    sky = project_grxe(sky_header(), synthetic_imap(), hist, grxe, module="A", aperture=ap)
    ref = project_maps(sky_header(), synthetic_imap(), hist, module="A", aperture=ap - APERTURE_FLOOR).bgdap
    np.testing.assert_allclose(sky, 3.0 * ref, rtol=1e-6, atol=1e-12 * ref.max())
    assert sky.max() > 0


def test_stop_axis_is_the_idl_fpm_origin():
    """grxe2det's grid pixel i is at −35 mm + i·0.12096 mm; projinitbgds shifts it like the aperture
    template (nomapbgdparams: A −3.4/+2.0 mm, B −3.5/+1.6 mm) and crops at 108."""
    assert stop_axis_det1("A") == pytest.approx((35 / 0.12096 - 3.4 / 0.12096 - 108, 35 / 0.12096 + 2.0 / 0.12096 - 108))
    assert stop_axis_det1("B") == pytest.approx((35 / 0.12096 - 3.5 / 0.12096 - 108, 35 / 0.12096 + 1.6 / 0.12096 - 108))
    assert stop_axis_det1("A") == pytest.approx((153.24, 197.89), abs=0.01)


def _blob(l0, b0, sigma):
    def f(lon, lat):
        d2 = ((lon - l0) * math.cos(math.radians(b0))) ** 2 + (lat - b0) ** 2
        return np.exp(-0.5 * d2 / sigma**2)
    return f


@pytest.mark.parametrize("pa", [0.0, 30.0, 123.0])
def test_localized_map_brightens_the_side_facing_it(tmp_path, pa):
    centre = SkyCoord(RA0 * u.deg, DEC0 * u.deg, frame="icrs")
    # A blob 2.5° east of the pointing: the field brightens towards it.
    blob = centre.directional_offset_by(90 * u.deg, 2.5 * u.deg).galactic
    path = write_grxe_map(tmp_path / "g.fits", _blob(blob.l.wrap_at(180 * u.deg).deg, blob.b.deg, 0.8))
    grxe = read_grxe_map(path)
    ap = np.full((360, 360), APERTURE_FLOOR + 0.05)
    hist = AspectHistogram(np.array([[1.0]]), 500, 500, module="A")
    sky = project_grxe(sky_header(pa), synthetic_imap(), hist, grxe, module="A", aperture=ap, pa_pnt=pa)
    seen = sky > 0
    wcs = WCS(sky_header(pa), naxis=2)
    y, x = np.mgrid[0:1000, 0:1000]
    x0, y0 = x[seen].mean(), y[seen].mean()  # DET1 (350, 350) is at the aspect peak, not the field centre
    # The stop axis (FPM origin) is focused at sky s_a = peak + M·(axis − 350) (spec §1.5); the field
    # centre sees, past the stop, the sky around s_a + (F/z)·(x0 − s_a): the blob's direction from
    # there is the expected gradient.
    a = -math.radians(pa + 1.0)
    du, dv = np.subtract(stop_axis_det1("A"), 350.0)
    sax, say = 500 - math.cos(a) * du + math.sin(a) * dv, 500 + math.sin(a) * du + math.cos(a) * dv
    mag = FOCAL_LENGTH_MM / APERTURE_STOP_HEIGHT_MM
    bx, by = wcs.world_to_pixel(blob)
    dx, dy = bx - (sax + mag * (x0 - sax)), by - (say + mag * (y0 - say))
    ex, ey = dx / math.hypot(dx, dy), dy / math.hypot(dx, dy)
    along = (x - x0) * ex + (y - y0) * ey
    east = sky[seen & (along > 60)].mean()
    west = sky[seen & (along < -60)].mean()
    assert east > 1.5 * west
    # The fitted gradient of log(brightness) points at the blob (within ~10°).
    across = -(x - x0) * ey + (y - y0) * ex
    design = np.column_stack([np.ones(seen.sum()), along[seen], across[seen]])
    _, g_along, g_across = np.linalg.lstsq(design, np.log(sky[seen]), rcond=None)[0]
    assert g_along > 0
    assert abs(g_across) < 0.18 * g_along


@pytest.mark.slow
@pytest.mark.parametrize("sigma, per_pixel, of_max, on_sum", [(2.0, 0.01, 0.002, 0.002), (0.8, 0.12, 0.015, 0.015)])
def test_sampling_accuracy(tmp_path, sigma, per_pixel, of_max, on_sum):
    """Default sampling (8-px nodes, 256 points per disc) against a dense one (4-px, 512 points).

    A blob of σ = 2° (smooth like the RXTE ridge model): ≤ 0.4 % per pixel, 0.1 % on the sum; a steep
    σ = 0.8° one (steep across the field): 1 % of the maximum, 1 % on the sum.
    """
    centre = SkyCoord(RA0 * u.deg, DEC0 * u.deg, frame="icrs").galactic
    grxe = read_grxe_map(write_grxe_map(tmp_path / "g.fits", _blob(centre.l.wrap_at(180 * u.deg).deg + 1.5,
                                                                     centre.b.deg, sigma)))
    ap = np.full((360, 360), APERTURE_FLOOR + 0.05)
    # The aspect peak that puts the stop axis at the field centre (500, 500) (inverse of spec §1.5).
    a = -math.radians(31.0)
    du, dv = np.subtract(stop_axis_det1("A"), 350.0)
    peak = (500 + math.cos(a) * du - math.sin(a) * dv, 500 - math.sin(a) * du - math.cos(a) * dv)
    coarse = grxe_map_det1(grxe, sky_header(), peak, 30.0, aperture=ap)
    dense = grxe_map_det1(grxe, sky_header(), peak, 30.0, aperture=ap, det1_bin=4, disc_samples=512)
    assert dense.max() / dense.min() > 3  # the map is not flat, so the check means something
    assert np.abs(coarse / dense - 1).max() < per_pixel
    assert np.abs(coarse - dense).max() < of_max * dense.max()
    assert abs(coarse.sum() / dense.sum() - 1) < on_sum


def test_bad_maps(tmp_path):
    nowcs = tmp_path / "nowcs.fits"
    fits.PrimaryHDU(np.ones((5, 5), dtype=np.float32)).writeto(nowcs)
    with pytest.raises(BadFileError, match="celestial WCS"):
        read_grxe_map(nowcs)
    nan = write_grxe_map(tmp_path / "nan.fits", lambda l, b: np.where(l > 0, np.nan, 1.0))
    with pytest.raises(BadFileError, match="non-finite"):
        read_grxe_map(nan)
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("A", "E", array=[1.0])])]).writeto(table)
    with pytest.raises(BadFileError, match="2-D primary image"):
        read_grxe_map(table)
