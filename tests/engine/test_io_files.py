"""Event, aspect, GTI and bad-pixel readers; the FITS helpers they share."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine import BadConfigError, BadFileError, OutputExistsError
from nuskybgd_engine.io.aspect import read_aspect
from nuskybgd_engine.io.events import EVENT_COLUMNS, read_badpix, read_events
from nuskybgd_engine.io.files import numbered_path, read_json, write_json
from nuskybgd_engine.io.fitsutil import atomic_output, read_fits, write_fits
from nuskybgd_engine.io.gti import Gti, read_gti

from ..conftest import make_event_hdul


def truncate(src, dst, fraction=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# --------------------------------------------------------------------------- events


def test_read_synthetic_events(event_file):
    ev = read_events(event_file())
    assert ev.module == "A"
    assert len(ev) == 200
    assert set(ev.columns) == set(EVENT_COLUMNS)
    assert ev.sky["NAXIS1"] == 1000 and ev.sky["CTYPE1"] == "RA---TAN"
    assert ev.sky["CDELT1"] == pytest.approx(-6.828076e-4)
    assert ev.pa_pnt == 30.0
    assert ev.gti.exposure == pytest.approx(900.0)
    assert ev.exposure == 900.0
    hdr = ev.sky_image_header()
    assert hdr["CRPIX1"] == 500.5 and hdr["PA_PNT"] == 30.0 and hdr["INSTRUME"] == "FPMA"


def test_events_wrong_module(event_file):
    with pytest.raises(BadFileError, match="INSTRUME") as err:
        read_events(event_file(module="B"), module="A")
    assert "FPMB" in str(err.value)


def test_events_missing_column(event_file):
    path = event_file(columns=[c for c in EVENT_COLUMNS if c != "PI"])
    with pytest.raises(BadFileError) as err:
        read_events(path)
    assert err.value.field == "PI" and str(path) in str(err.value) and "\n" not in str(err.value)


def test_events_truncated(event_file, tmp_path):
    path = truncate(event_file(n=5000), tmp_path / "cut.evt")
    with pytest.raises(BadFileError, match="cut.evt"):
        read_events(path)


def test_events_header_truncated(event_file, tmp_path):
    path = truncate(event_file(n=5000), tmp_path / "cut2.evt", fraction=0.1)
    with pytest.raises(BadFileError, match="truncated or corrupt"):
        read_events(path)


def test_events_not_fits(tmp_path):
    path = tmp_path / "junk.evt"
    path.write_text("not a fits file at all\n" * 200)
    with pytest.raises(BadFileError, match="junk.evt"):
        read_events(path)


def test_events_missing_file(tmp_path):
    with pytest.raises(BadFileError, match="not found"):
        read_events(tmp_path / "nope.evt")


def test_pa_pnt_null_and_override(event_file):
    path = event_file(pa_pnt=-100.0)
    ev = read_events(path)
    with pytest.raises(BadFileError, match="PA_PNT"):
        _ = ev.pa_pnt
    assert read_events(path, pa_pnt=12.5).pa_pnt == 12.5
    assert read_events(path, pa_pnt=12.5).header_keywords()["PA_PNT"] == 12.5
    with pytest.raises(BadConfigError, match="pa_pnt"):
        read_events(path, pa_pnt="north")


def test_pa_pnt_missing(event_file):
    ev = read_events(event_file(pa_pnt=None))
    with pytest.raises(BadFileError, match="PA_PNT keyword missing"):
        _ = ev.pa_pnt


def test_not_nustar(tmp_path):
    hdul = make_event_hdul()
    hdul[1].header["TELESCOP"] = "XMM"
    hdul.writeto(tmp_path / "x.evt")
    with pytest.raises(BadFileError, match="TELESCOP"):
        read_events(tmp_path / "x.evt")


@pytest.mark.requires_data
def test_real_event_file(data_dir):
    ev = read_events(data_dir / "nustar_sac" / "nu90410111001A06_cl_sunpos.evt")
    assert ev.module == "A" and len(ev) == 9442
    counts = np.bincount(ev["DET_ID"].astype(int), minlength=4)
    assert counts.tolist() == [3109, 1260, 1024, 4049]  # PROVENANCE.md
    # The heliocentric file keeps its column WCS (written with TCRVL as a string).
    assert ev.sky["NAXIS1"] == 3000 and ev.sky["CRVAL1"] == 0.0
    with pytest.raises(BadFileError, match="PA_PNT is -100"):
        _ = ev.pa_pnt


@pytest.mark.requires_data
def test_real_event_file_without_detector_columns(data_dir):
    path = data_dir / "toa_extractor" / "nustar_test.evt.gz"
    with pytest.raises(BadFileError) as err:
        read_events(path)
    assert err.value.field == "X"
    ev = read_events(path, columns=("TIME", "PI"))
    assert len(ev) == 100000 and ev.pa_pnt == pytest.approx(154.131)
    assert [len(b.rawx) for b in ev.badpix] == [6, 20, 4, 15]
    assert len(ev.gti) == 34


# --------------------------------------------------------------------------- bad pixels


@pytest.mark.requires_data
def test_real_badpix_files(data_dir):
    bp = read_badpix(data_dir / "nustarFittingExample" / "nu80415201001A_bp.fits")
    assert [b.detector for b in bp] == [0, 1, 2, 3]
    assert [len(b.rawx) for b in bp] == [2, 11, 1, 5]
    assert bp[0].badflag.shape[1] == 16 and bp[0].tstart is not None
    hp = read_badpix(data_dir / "nustarFittingExample" / "nu80415201001A_hp.fits", module="A")
    assert [len(b.rawx) for b in hp] == [0, 1, 3, 0]
    with pytest.raises(BadFileError, match="expected FPMB"):
        read_badpix(data_dir / "nustarFittingExample" / "nu80415201001A_bp.fits", module="B")


def test_badpix_bad_detnam(tmp_path):
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column(name=n, format=f, array=a) for n, f, a in
         [("RAWX", "B", [1]), ("RAWY", "B", [2]), ("TIME", "D", [0.0]), ("TIME_STOP", "D", [1.0]),
          ("BADFLAG", "16X", np.zeros((1, 16), bool))]], name="BADPIX")
    hdu.header["DETNAM"] = "DET7"
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "NuSTAR"
    prim.header["INSTRUME"] = "FPMA"
    fits.HDUList([prim, hdu]).writeto(tmp_path / "bp.fits")
    with pytest.raises(BadFileError) as err:
        read_badpix(tmp_path / "bp.fits")
    assert err.value.field == "DETNAM"


# --------------------------------------------------------------------------- aspect and GTI


def make_aspect(path, module="A", n=50):
    t = 1e8 + np.arange(n) * 0.25
    cols = [fits.Column(name="TIME", format="D", unit="s", array=t),
            fits.Column(name="X_DET1", format="D", unit="pixel", array=400 + np.sin(t)),
            fits.Column(name="Y_DET1", format="D", unit="pixel", array=380 + np.cos(t))]
    hdu = fits.BinTableHDU.from_columns(cols, name="DET1_REFPOINT")
    hdu.header.update({"HDUCLAS1": "TEMPORALDATA", "TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}",
                       "OBS_ID": "60001001002"})
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def test_aspect_synthetic(tmp_path):
    track = read_aspect(make_aspect(tmp_path / "a_det1.fits"))
    assert len(track) == 50 and track.module == "A"
    assert track.header["OBS_ID"] == "60001001002"
    with pytest.raises(BadFileError, match="expected FPMB"):
        read_aspect(tmp_path / "a_det1.fits", module="B")


def test_aspect_wrong_file(event_file):
    with pytest.raises(BadFileError, match="DET1_REFPOINT"):
        read_aspect(event_file())


@pytest.mark.requires_data
def test_real_aspect_and_gti(data_dir):
    d = data_dir / "nustarFittingExample"
    track = read_aspect(d / "nu80415201001A_det1.fits.gz")
    assert len(track) == 27000 and track.module == "A"
    assert np.all(np.diff(track.time) >= 0)
    gti = read_gti(d / "nu80415201001A06_gti.fits")
    assert len(gti) == 2
    assert gti.exposure == pytest.approx((274284608 - 274283401) + (274286987 - 274285429))
    inside = gti.contains(track.time)
    # The slews (|x| in the thousands) are outside the GTIs (PROVENANCE.md).
    assert np.all(np.abs(track.x[inside] - 500) < 500)
    assert read_gti(data_dir / "heasoft-test-base" / "time_gti.fits").exposure > 0


def test_gti_contains_semantics():
    gti = Gti([10.0, 0.0], [20.0, 5.0])
    assert gti.start.tolist() == [0.0, 10.0]
    assert gti.contains([0.0, 4.999, 5.0, 9.0, 10.0, 19.9, 20.0, -1.0]).tolist() == [
        True, True, False, False, True, True, False, False]
    assert gti.exposure == 15.0


def test_gti_bad_interval(tmp_path):
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="START", format="D", array=[5.0]),
                                         fits.Column(name="STOP", format="D", array=[1.0])], name="STDGTI")
    hdu.header["HDUCLAS1"] = "GTI"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "g.fits")
    with pytest.raises(BadFileError, match="STOP < START"):
        read_gti(tmp_path / "g.fits")


def test_gti_missing_extension(tmp_path):
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(tmp_path / "img.fits")
    with pytest.raises(BadFileError, match="no GTI extension"):
        read_gti(tmp_path / "img.fits")


# --------------------------------------------------------------------------- writing


def test_write_fits_never_clobbers(tmp_path):
    path = tmp_path / "out.fits"
    write_fits(fits.HDUList([fits.PrimaryHDU(np.ones((3, 3)))]), path)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="out.fits"):
        write_fits(fits.HDUList([fits.PrimaryHDU(np.zeros((3, 3)))]), path)
    assert path.read_bytes() == before
    write_fits(fits.HDUList([fits.PrimaryHDU(np.zeros((3, 3)))]), path, overwrite=True)
    assert read_fits(path)[0].data.sum() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits"]  # no temporary left


def test_atomic_output_failure_leaves_nothing(tmp_path):
    path = tmp_path / "x.txt"
    with pytest.raises(RuntimeError):
        with atomic_output(path) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []


def test_write_json_nan_as_null_atomic_and_never_clobbering(tmp_path):
    path = tmp_path / "x.json"
    data = {"a": float("nan"), "b": [np.float64(1.5), np.inf, -np.inf], "c": np.arange(2), "d": np.bool_(True),
            "e": tmp_path, "f": (1, 2)}
    write_json(path, data)
    assert path.read_text() == ('{\n "a": null,\n "b": [\n  1.5,\n  null,\n  null\n ],\n "c": [\n  0,\n  1\n ],\n'
                                f' "d": true,\n "e": "{tmp_path}",\n "f": [\n  1,\n  2\n ]\n}}\n')
    with pytest.raises(OutputExistsError):
        write_json(path, {"a": 1})
    assert read_json(path)["a"] is None
    write_json(path, {"a": 1}, overwrite=True)
    assert read_json(path) == {"a": 1}
    with pytest.raises(BadConfigError, match="cannot be written as JSON"):
        write_json(tmp_path / "y.json", {"a": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temporary, no partial file


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(BadConfigError, match="missing.json.*nope"):
        read_json(tmp_path / "missing.json", not_found="nope")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BadConfigError, match="bad.json.*not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_numbered_path_skips_files_and_dangling_links(tmp_path):
    assert numbered_path(tmp_path, "fit.xcm") == tmp_path / "fit.xcm"
    (tmp_path / "fit.xcm").write_text("x")
    (tmp_path / "fit2.xcm").symlink_to(tmp_path / "nowhere")  # dangling: writing through it is refused
    assert numbered_path(tmp_path, "fit.xcm") == tmp_path / "fit3.xcm"
    with pytest.raises(BadConfigError, match="plain file name"):
        numbered_path(tmp_path, "sub/fit.xcm")


def test_output_directory_missing(tmp_path):
    with pytest.raises(BadFileError, match="does not exist"):
        write_fits(fits.HDUList([fits.PrimaryHDU()]), tmp_path / "no" / "x.fits")


# --------------------------------------------------------------------------- writers (round trips)


def test_events_round_trip(tmp_path):
    from nuskybgd_engine.io.events import BadPixels, write_events

    rng = np.random.default_rng(3)
    n = 500
    cols = {"TIME": np.sort(rng.uniform(0, 100, n)), "X": rng.integers(1, 1001, n).astype(np.int16),
            "Y": rng.integers(1, 1001, n).astype(np.int16), "DET1X": rng.integers(1, 361, n).astype(np.int16),
            "DET1Y": rng.integers(1, 361, n).astype(np.int16), "DET_ID": rng.integers(0, 4, n).astype(np.uint8),
            "RAWX": rng.integers(0, 32, n).astype(np.uint8), "RAWY": rng.integers(0, 32, n).astype(np.uint8),
            "PI": rng.integers(0, 4096, n).astype(np.int32), "GRADE": np.zeros(n, np.int16)}
    sky = {"NAXIS1": 1000, "NAXIS2": 1000, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 500.5,
           "CRPIX2": 500.5, "CRVAL1": 10.0, "CRVAL2": -5.0, "CDELT1": -6.828076e-4, "CDELT2": 6.828076e-4,
           "CUNIT1": "deg", "CUNIT2": "deg"}
    bp = BadPixels(detector=2, rawx=np.array([3]), rawy=np.array([4]), time=np.array([0.0]),
                   time_stop=np.array([100.0]), badflag=np.eye(16, dtype=bool)[[14]], tstart=0.0, tstop=100.0)
    path = write_events(tmp_path / "e.evt", cols, "B", {"OBS_ID": "1", "PA_PNT": 12.0, "EXPOSURE": 99.0}, sky,
                        gti=Gti([0.0], [100.0]), badpix=[bp])
    ev = read_events(path, module="B")
    for k, v in cols.items():
        np.testing.assert_array_equal(ev[k], v)
    assert ev.sky == sky
    assert ev.pa_pnt == 12.0 and ev.exposure == 99.0 and ev.gti.exposure == 100.0
    assert ev.badpix[0].detector == 2 and ev.badpix[0].badflag[0, 14]
    with pytest.raises(OutputExistsError):
        write_events(path, cols, "B", {}, sky)


def test_aspect_and_gti_round_trip(tmp_path):
    from nuskybgd_engine.io.aspect import AspectTrack, write_aspect
    from nuskybgd_engine.io.gti import write_gti

    track = AspectTrack(np.arange(10.0), np.linspace(400, 410, 10), np.linspace(380, 370, 10), "B",
                        {"OBS_ID": "7"})
    back = read_aspect(write_aspect(track, tmp_path / "b_det1.fits"), module="B")
    np.testing.assert_array_equal(back.x, track.x)
    np.testing.assert_array_equal(back.y, track.y)
    assert back.header["OBS_ID"] == "7"
    gti = Gti([0.0, 50.0], [40.0, 90.0])
    g2 = read_gti(write_gti(gti, tmp_path / "g.fits", keywords={"TSTART": 0.0}))
    np.testing.assert_array_equal(g2.start, gti.start)
    np.testing.assert_array_equal(g2.stop, gti.stop)


def test_write_numbered_race_gives_two_files_not_an_error(tmp_path):
    """Two writers racing for one name (two dashboard users exporting at once) both succeed."""
    import threading

    from nuskybgd_engine.io.files import write_numbered

    barrier = threading.Barrier(2)
    results, errors = [], []

    def export(text):
        def write(p):
            barrier.wait(timeout=10)  # both have chosen "nominalA.rmf" and written it: now both claim it
            p.write_text(text)
        try:
            results.append(write_numbered(tmp_path, "nominalA.rmf", write))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(t,)) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    assert sorted(p.name for p in results) == ["nominalA.rmf", "nominalA2.rmf"]
    assert sorted(p.read_text() for p in results) == ["one", "two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nominalA.rmf", "nominalA2.rmf"]  # no temporaries left


def test_write_numbered_never_replaces_and_cleans_up_on_error(tmp_path):
    from nuskybgd_engine.io.files import write_numbered

    (tmp_path / "fit.xcm").write_text("mine")
    assert write_numbered(tmp_path, "fit.xcm", lambda p: p.write_text("new")) == tmp_path / "fit2.xcm"
    assert (tmp_path / "fit.xcm").read_text() == "mine"

    def fail(p):
        p.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_numbered(tmp_path, "fit.xcm", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.xcm", "fit2.xcm"]
    with pytest.raises(BadConfigError):
        write_numbered(tmp_path, "../fit.xcm", lambda p: p.write_text("x"))
