"""Aspect histogram (spec §2.5, §6.1 items 1-2, §7 item 4)."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.errors import BadFileError, OutputExistsError
from nuskybgd_engine.io.aspect import AspectTrack, read_aspect
from nuskybgd_engine.io.gti import Gti, read_gti
from nuskybgd_engine.maps import aspect_histogram, read_aspect_histogram, write_aspect_histogram


def track(t, x, y, module="A"):
    return AspectTrack(np.asarray(t, float), np.asarray(x, float), np.asarray(y, float), module,
                       {"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}", "OBS_ID": "1"}, "asp.fits")


def direct_histogram(t, x, y, start, stop):
    """The reference walk of §2.5 step 3, literally (pointer over sorted GTIs)."""
    order = np.argsort(start)
    start, stop = np.asarray(start)[order], np.asarray(stop)[order]
    h = {}
    g = 0
    for k in range(len(t) - 1):
        while g < len(start) and t[k] >= stop[g]:
            g += 1
        if g == len(start):
            break
        if t[k] >= start[g]:
            key = (int(np.floor(y[k])), int(np.floor(x[k])))
            h[key] = h.get(key, 0.0) + t[k + 1] - t[k]
    return h


def test_matches_reference_walk_and_gti_exposure():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.05, 0.15, 20000))
    x = 400 + 5 * np.sin(t / 50) + rng.normal(0, 0.8, t.size)
    y = 380 + 4 * np.cos(t / 70) + rng.normal(0, 0.8, t.size)
    start, stop = np.array([700.0, 100.0, 1500.0]), np.array([1200.0, 500.0, 1900.0])
    hist = aspect_histogram(track(t, x, y), Gti(start, stop))
    ref = direct_histogram(t, x, y, start, stop)
    full = {(yy + hist.y_off, xx + hist.x_off): v for (yy, xx), v in np.ndenumerate(hist.image) if v > 0}
    assert set(full) == set(ref)
    for key, value in ref.items():
        assert full[key] == pytest.approx(value, rel=1e-12)
    assert hist.exposure == pytest.approx((stop - start).sum(), abs=3 * 0.15)
    assert hist.header["EXPOSURE"] == pytest.approx(float(np.float32(hist.exposure)))
    ys, xs = zip(*ref)
    assert (hist.x_off, hist.y_off) == (min(xs), min(ys))
    peak_key = max(ref, key=ref.get)
    assert hist.peak == (peak_key[1], peak_key[0])


def test_decreasing_track_and_single_sample_crop():
    # nuskybgd-py's if/elif bounding box leaves x_max = 0 for a decreasing track (spec §7 item 4).
    t = np.arange(6.0)
    hist = aspect_histogram(track(t, [505.5, 504.5, 503.5, 502.5, 501.5, 500.5], [300.2] * 6), Gti([0.0], [10.0]))
    assert (hist.x_off, hist.y_off) == (501, 300)
    np.testing.assert_array_equal(hist.image, np.ones((1, 5)))  # samples k = 0..4 each 1 s
    one = aspect_histogram(track([0.0, 2.5], [10.7, 99.0], [20.2, 99.0]), Gti([0.0], [1.0]))
    assert one.image.shape == (1, 1) and one.image[0, 0] == 2.5 and (one.x_off, one.y_off) == (10, 20)


def test_gti_semantics_start_inclusive_stop_exclusive():
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    hist = aspect_histogram(track(t, np.arange(5) + 100.0, np.full(5, 50.0)), Gti([1.0], [3.0]))
    assert hist.x_off == 101 and hist.image.shape == (1, 2)  # samples at t=1, 2 kept; t=3 not


def test_no_overlap_is_an_error():
    t = np.arange(10.0)
    with pytest.raises(BadFileError, match=r"asp\.fits.*gti\.fits"):
        aspect_histogram(track(t, np.full(10, 5.0), np.full(10, 5.0)), Gti([100.0], [200.0]), gti_path="gti.fits")


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.uniform(0.1, 0.3, 500))
    hist = aspect_histogram(track(t, 300 + rng.normal(0, 2, 500), 310 + rng.normal(0, 2, 500)), Gti([0.0], [1e9]))
    path = write_aspect_histogram(hist, tmp_path / "aspecthistA.fits")
    back = read_aspect_histogram(path)
    np.testing.assert_array_equal(back.image, hist.image)
    assert (back.x_off, back.y_off, back.module) == (hist.x_off, hist.y_off, "A")
    with fits.open(path) as h:
        assert h[0].header["EXTNAME"] == "ASPECT_HISTOGRAM" and h[0].header["OBS_ID"] == "1"
    with pytest.raises(OutputExistsError):
        write_aspect_histogram(hist, path)


def test_read_rejects_empty(tmp_path):
    path = tmp_path / "h.fits"
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(path)
    with pytest.raises(BadFileError, match=r"h\.fits.*empty"):
        read_aspect_histogram(path)


@pytest.mark.requires_data
@pytest.mark.parametrize("module", ["A", "B"])
def test_real_solar_pointing_with_slews(data_dir, module):
    base = data_dir / "nustarFittingExample"
    trk = read_aspect(base / f"nu80415201001{module}_det1.fits.gz")
    gti = read_gti(base / f"nu80415201001{module}06_gti.fits")
    hist = aspect_histogram(trk, gti)
    assert hist.exposure == pytest.approx(gti.exposure, rel=1e-3)
    # Only GTI samples count: the slews (down to x ≈ −8300) are outside the crop.
    assert trk.x.min() < -1000
    assert 0 <= hist.x_off and hist.x_off + hist.image.shape[1] <= 1000
    assert 0 <= hist.y_off and hist.y_off + hist.image.shape[0] <= 1000
    assert np.any(hist.image[0] > 0)  # tight crop: every border row/column is filled
    assert np.any(hist.image[:, 0] > 0) and np.any(hist.image[:, -1] > 0) and np.any(hist.image[-1] > 0)
