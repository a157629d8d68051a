"""Projection of DET1 templates to the sky (spec §1.5, §2.6, §6.1 items 3-8, §6.2)."""

import math

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.maps import (
    AspectHistogram,
    aperture_map_det1,
    bilinear_shift,
    det1_coordinates,
    nudge,
    project_maps,
    write_projected_maps,
)
from nuskybgd_engine.maps.projection import check_reference_image, parse_detectors


def sky_header(pa=30.0):
    h = fits.Header()
    h["PA_PNT"] = pa
    for k, v in dict(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRPIX1=500.5, CRPIX2=500.5, CRVAL1=150.0, CRVAL2=2.0,
                     CDELT1=-6.828076e-4, CDELT2=6.828076e-4, INSTRUME="FPMA").items():
        h[k] = v
    return h


def synthetic_imap():
    """Four non-overlapping detectors with gaps, values n+1 (no auxil files needed)."""
    m = np.zeros((360, 360))
    m[182:350, 182:350] = 1  # DET0 upper right
    m[182:352, 15:178] = 2  # DET1 upper left
    m[10:178, 12:180] = 3  # DET2 lower left
    m[12:180, 182:346] = 4  # DET3 lower right
    return m


def synthetic_aperture():
    y, x = np.mgrid[0:360, 0:360]
    return 0.004 + 1e-4 * x + 5e-5 * (359 - y)


def direct_projection(ref_header, imap, ap, hist, x_off, y_off, dets=(0, 1, 2, 3)):
    """Slow, literal §2.6(c)+(d): nearest-pixel templates, then a loop of periodic bilinear shifts.

    Uses scipy.ndimage.shift (grid-wrap) as the independent shift implementation.
    """
    pa = ref_header["PA_PNT"] + 1.0
    a = -pa * np.pi / 180
    c, s = np.cos(a), np.sin(a)
    k = int(np.argmax(hist))
    px, py = k % hist.shape[1] + x_off, k // hist.shape[1] + y_off
    total = hist.sum()
    j, i = np.mgrid[0:1000, 0:1000]
    detx = 350 + np.around(-c * (i - px) + s * (j - py)).astype(int)
    dety = 350 + np.around(s * (i - px) + c * (j - py)).astype(int)
    masks = [(imap == d + 1).astype(float) for d in dets]
    ok = (detx >= 0) & (detx < 360) & (dety >= 0) & (dety < 360)
    dxc, dyc = np.clip(detx, 0, 359), np.clip(dety, 0, 359)
    any_active = np.zeros((1000, 1000), bool)
    for m in masks:
        any_active |= ok & (m[dyc, dxc] > 0)
    ref = [np.where(any_active, ap[dyc, dxc], 0.0) / total]
    ref += [np.where(ok & (m[dyc, dxc] > 0), m[dyc, dxc], 0.0) / total for m in masks]
    nux = 2.7 * np.cos(-a) - 0.8 * np.sin(-a)
    nuy = 2.7 * np.sin(-a) + 0.8 * np.cos(-a)
    out = [np.zeros((1000, 1000)) for _ in ref]
    for y, x in zip(*np.nonzero(hist)):
        dx = x + x_off - px - nux
        dy = y + y_off - py - nuy
        for n, r in enumerate(ref):
            out[n] += hist[y, x] * ndimage.shift(r, (dy, dx), order=1, mode="grid-wrap", prefilter=False)
    return out


def random_hist(n_pos, size, seed):
    rng = np.random.default_rng(seed)
    h = np.zeros((size, size))
    idx = rng.choice(size * size, n_pos, replace=False)
    h.flat[idx] = rng.uniform(1.0, 100.0, n_pos)
    return h


# ---------------------------------------------------------------------------------------------


def test_bilinear_shift_matches_scipy_grid_wrap_and_preserves_sum():
    img = np.random.default_rng(3).uniform(size=(40, 50))
    for dx, dy in [(2.3, -1.7), (-28.108, 16.534), (0.0, 0.5), (-3.0, 4.0), (7.999999, -0.25)]:
        ours = bilinear_shift(img, dx, dy)
        ref = ndimage.shift(img, (dy, dx), order=1, mode="grid-wrap", prefilter=False)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)
        assert ours.sum() == pytest.approx(img.sum(), rel=1e-14)


def test_bilinear_shift_weights_by_hand():
    img = np.zeros((5, 5))
    img[2, 2] = 1.0
    out = bilinear_shift(img, 0.25, 0.5)  # out[y, x] = img[y - 0.5, x - 0.25]
    assert out[2, 2] == pytest.approx(0.75 * 0.5)
    assert out[2, 3] == pytest.approx(0.25 * 0.5)
    assert out[3, 2] == pytest.approx(0.75 * 0.5)
    assert out[3, 3] == pytest.approx(0.25 * 0.5)
    assert bilinear_shift(img, 3, 0)[2, 0] == 1.0  # periodic wrap: x = 2 + 3 -> 0


def test_mapping_is_an_involution_with_determinant_minus_one():
    a = -(30.0 + 1.0) * math.pi / 180
    c, s = math.cos(a), math.sin(a)
    m = np.array([[-c, s], [s, c]])
    assert np.linalg.det(m) == pytest.approx(-1.0)
    np.testing.assert_allclose(m @ m, np.eye(2), atol=1e-15)


def test_mapping_at_pa_minus_one_is_a_mirror_in_x():
    i = np.array([400, 380, 420])
    j = np.array([400, 410, 385])
    detx, dety = det1_coordinates(i, j, (400, 400), -1.0)
    np.testing.assert_array_equal(detx, 350 - (i - 400))
    np.testing.assert_array_equal(dety, 350 + (j - 400))
    assert nudge(-1.0) == pytest.approx((2.7, 0.8))


def test_single_position_pa_minus_one_is_mirrored_map_shifted_by_nudge():
    imap = synthetic_imap()
    ap = synthetic_aperture()
    hist = AspectHistogram(np.array([[5.0]]), 500, 500, module="A")
    pm = project_maps(sky_header(-1.0), imap, hist, module="A", aperture=ap)
    # Expected: sky(i, j) = ap[350 + (j - 500), 350 - (i - 500)] on active pixels, then shifted by -nudge.
    j, i = np.mgrid[0:1000, 0:1000]
    dx, dy = 350 - (i - 500), 350 + (j - 500)
    ok = (dx >= 0) & (dx < 360) & (dy >= 0) & (dy < 360)
    ref = np.zeros((1000, 1000))
    ref[ok] = np.where(imap[dy[ok], dx[ok]] > 0, ap[dy[ok], dx[ok]], 0) / 5.0
    expected = ndimage.shift(ref, (-0.8, -2.7), order=1, mode="grid-wrap", prefilter=False) * 5.0
    np.testing.assert_allclose(pm.bgdap, expected, atol=1e-12)


@pytest.mark.parametrize("n_pos,size,x_off,y_off,pa,seed", [
    pytest.param(90, 12, 381, 359, 30.0, 1, marks=pytest.mark.slow),
    pytest.param(8, 30, 450, 420, 154.131, 2, marks=pytest.mark.slow),
    pytest.param(10, 9, 700, 150, 271.5, 3, marks=pytest.mark.slow),
])
def test_fast_projection_equals_direct_loop(n_pos, size, x_off, y_off, pa, seed):
    imap = synthetic_imap()
    ap = synthetic_aperture()
    h = random_hist(n_pos, size, seed)
    hist = AspectHistogram(h, x_off, y_off, module="A")
    pm = project_maps(sky_header(pa), imap, hist, module="A", aperture=ap)
    ref = direct_projection(sky_header(pa), imap, ap, h, x_off, y_off)
    np.testing.assert_allclose(pm.bgdap, ref[0], rtol=0, atol=1e-10)
    for n in range(4):
        np.testing.assert_allclose(pm.det[n], ref[n + 1], rtol=0, atol=1e-10)


def test_fast_projection_wraps_like_the_periodic_loop_near_the_frame_edge():
    imap = synthetic_imap()
    ap = synthetic_aperture()
    h = random_hist(6, 8, 5)
    # Peak near the edge: the footprint is cut by the frame and the bilinear shift wraps.
    hist = AspectHistogram(h, 992, 3, module="A")
    pm = project_maps(sky_header(10.0), imap, hist, module="A", aperture=ap)
    ref = direct_projection(sky_header(10.0), imap, ap, h, 992, 3)
    np.testing.assert_allclose(pm.bgdap, ref[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(pm.det[1], ref[2], rtol=0, atol=1e-10)


def test_invariants_and_scale_invariance():
    imap = synthetic_imap()
    ap = synthetic_aperture()
    h = random_hist(60, 15, 7)
    pm = project_maps(sky_header(30.0), imap, AspectHistogram(h, 380, 360, module="A"), module="A", aperture=ap)
    stack = np.array(pm.det)
    assert stack.min() >= 0 and stack.max() <= 1 + 1e-12
    assert stack.sum(axis=0).max() == pytest.approx(1.0, abs=1e-12)
    active = [(imap == n + 1).sum() for n in range(4)]
    for n in range(4):
        assert stack[n].sum() == pytest.approx(active[n], rel=1e-3)
    assert pm.bgdap.sum() == pytest.approx(ap[imap > 0].sum(), rel=1e-3)
    assert pm.exposure == pytest.approx(h.sum())
    pm2 = project_maps(sky_header(30.0), imap, AspectHistogram(h * 7.5, 380, 360, module="A"), module="A",
                       aperture=ap)
    np.testing.assert_allclose(pm2.bgdap, pm.bgdap, atol=1e-14)
    np.testing.assert_allclose(pm2.det[2], pm.det[2], atol=1e-14)


def test_detector_subset():
    imap = synthetic_imap()
    ap = synthetic_aperture()
    hist = AspectHistogram(random_hist(10, 5, 2), 400, 400, module="A")
    pm = project_maps(sky_header(), imap, hist, module="A", aperture=ap, detectors="13")
    assert pm.detectors == (0, 2) and pm.det[1] is None and pm.det[3] is None
    # bgdap covers only the requested detectors' active pixels.
    assert pm.bgdap.sum() == pytest.approx(ap[(imap == 1) | (imap == 3)].sum(), rel=1e-3)


@pytest.mark.parametrize("text,expected", [("1234", (0, 1, 2, 3)), ("31", (0, 2)), ("4", (3,))])
def test_parse_detectors(text, expected):
    assert parse_detectors(text) == expected


@pytest.mark.parametrize("bad", ["", "12a", "05", "1 2"])
def test_parse_detectors_rejects(bad):
    with pytest.raises(BadConfigError, match="det"):
        parse_detectors(bad)


def test_reference_image_checks():
    with pytest.raises(BadFileError, match=r"ref\.fits.*1000x1000"):
        check_reference_image(sky_header(), (500, 500), "ref.fits")
    h = sky_header()
    del h["CRPIX2"]
    with pytest.raises(BadFileError, match=r"ref\.fits.*CRPIX2"):
        check_reference_image(h, (1000, 1000), "ref.fits")
    with pytest.raises(BadFileError, match="PA_PNT"):
        check_reference_image(sky_header(-100.0), (1000, 1000), "ref.fits")


def test_peak_outside_frame_is_an_error():
    hist = AspectHistogram(np.array([[1.0]]), 1200, 10, module="A", path="asp.fits")
    with pytest.raises(BadFileError, match=r"asp\.fits.*outside"):
        project_maps(sky_header(), synthetic_imap(), hist, module="A", aperture=synthetic_aperture())


def test_writer_round_trip_and_det_images_next_to_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sub = tmp_path / "bgd"
    sub.mkdir()
    hist = AspectHistogram(random_hist(10, 5, 4), 400, 400, module="A")
    pm = project_maps(sky_header(), synthetic_imap(), hist, module="A", aperture=synthetic_aperture())
    written = write_projected_maps(pm, sub / "bgdapA.fits")
    assert sorted(p.name for p in written) == ["bgdapA.fits", "det0Aim.fits", "det1Aim.fits", "det2Aim.fits",
                                               "det3Aim.fits"]
    assert not list(tmp_path.glob("det*im.fits"))  # not in the current directory
    with fits.open(sub / "bgdapA.fits") as h:
        np.testing.assert_array_equal(h[0].data, pm.bgdap)
        assert h[0].header["PA_PNT"] == 30.0 and h[0].header["CTYPE1"] == "RA---TAN"
    with fits.open(sub / "det2Aim.fits") as h:
        np.testing.assert_array_equal(h[0].data, pm.det[2])


# ---------------------------------------------------------------------------------------------
# With the real auxil maps: the check values of spec §1.5 and §6.2
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detnum_imap(auxil_dir):
    det = fits.getdata(auxil_dir / "detnumA.fits", "INSTRMAP")
    return np.where(det >= 0, det + 1, 0).astype(float)


@pytest.mark.requires_data
def test_spec_detector_sums_and_bgdap_total(detnum_imap, auxil_dir):
    # §6.2: PA_PNT 30, FPMA, detnum-based instrument map. Σ det_n and Σ bgdap do not depend on the
    # aspect histogram (shifts and convolution preserve sums), so any histogram reproduces them.
    ap = aperture_map_det1("A", auxil_dir=auxil_dir)
    hist = AspectHistogram(random_hist(90, 12, 11), 381, 359, module="A")
    pm = project_maps(sky_header(30.0), detnum_imap, hist, module="A", aperture=ap)
    sums = [pm.det[n].sum() for n in range(4)]
    np.testing.assert_allclose(sums, [26741, 26795, 27144, 26803], atol=1e-6)
    assert pm.bgdap.sum() == pytest.approx(2829.196, abs=2e-3)
    assert np.array(pm.det).sum(axis=0).max() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.requires_data
def test_spec_detector_centroids(detnum_imap, auxil_dir):
    # §1.5: PA_PNT 30, peak (387, 365). A single aspect position at the peak: each centroid equals
    # peak + M·(DET1 centroid − 350) − ν (hand formula, 0.1 px); the spec quotes values 0.1–0.35 px
    # larger in x, measured with a wobbling synthetic histogram whose mean lies off its peak.
    pm = project_maps(sky_header(30.0), detnum_imap, AspectHistogram(np.array([[1.0]]), 387, 365, module="A"),
                      module="A", aperture=np.ones((360, 360)))
    a = -31.0 * np.pi / 180
    c, s = np.cos(a), np.sin(a)
    nux, nuy = nudge(30.0)
    yy, xx = np.mgrid[0:1000, 0:1000]
    spec = [(505.0, 332.6), (644.9, 418.1), (730.5, 277.7), (590.1, 192.4)]
    for n in range(4):
        v, u = np.nonzero(detnum_imap == n + 1)
        du, dv = u.mean() - 350, v.mean() - 350
        hand = (387 + (-c * du + s * dv) - nux, 365 + (s * du + c * dv) - nuy)
        m = pm.det[n]
        got = ((m * xx).sum() / m.sum(), (m * yy).sum() / m.sum())
        assert got == pytest.approx(hand, abs=0.1)
        assert got == pytest.approx(spec[n], abs=0.5)
