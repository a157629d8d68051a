"""Counts images (spec §2.1, §1.7) and the four map commands of the CLI."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.events import read_events
from nuskybgd_engine.maps import make_counts_image, make_det1_image, write_counts_image


def test_counts_image_by_hand(event_file):
    ev = read_events(event_file())
    img = make_counts_image(ev, 3, 20)
    assert img.channels == (35, 459)  # exact; the seed's formula gives 36
    pi, x, y = ev["PI"], ev["X"], ev["Y"]
    sel = (pi >= 35) & (pi <= 459)
    expected = np.zeros((1000, 1000), int)
    for xx, yy in zip(x[sel], y[sel]):
        expected[int(np.floor(yy + 0.5)) - 1, int(np.floor(xx + 0.5)) - 1] += 1
    np.testing.assert_array_equal(img.image, expected)
    h = img.header
    assert (h["PILOW"], h["PIHIGH"]) == (35, 459)
    assert h["EMIN"] == pytest.approx(3.0) and h["EMAX"] == pytest.approx(20.0)
    assert h["PA_PNT"] == 30.0 and h["INSTRUME"] == "FPMA" and h["EXPOSURE"] == 900.0
    assert h["CRPIX1"] == 500.5 and h["CDELT1"] < 0 and h["CTYPE2"] == "DEC--TAN"


def test_det1_image_drops_raw_edges(event_file):
    ev = read_events(event_file(n=500))
    img = make_det1_image(ev, 1.6, 165.44)
    keep = (ev["RAWX"] >= 1) & (ev["RAWX"] <= 30) & (ev["RAWY"] >= 1) & (ev["RAWY"] <= 30)
    assert img.image.sum() == keep.sum()
    k = np.flatnonzero(keep)[0]
    assert img.image[ev["DET1Y"][k] - 1, ev["DET1X"][k] - 1] >= 1


def test_bad_band(event_file):
    with pytest.raises(BadConfigError, match="band"):
        make_counts_image(event_file(), 20, 3)


def test_counts_image_round_trip(tmp_path, event_file):
    img = make_counts_image(event_file(), 3, 20)
    path = write_counts_image(img, tmp_path / "imA3to20keV.fits")
    with fits.open(path) as h:
        np.testing.assert_array_equal(h[0].data, img.image)
        assert h[0].header["PIHIGH"] == 459 and h[0].header["PA_PNT"] == 30.0


def test_cli_mkimgs_dir_obsid_and_files(tmp_path, event_file, capsys):
    obs = tmp_path / "obs" / "60001001002" / "event_cl"
    obs.mkdir(parents=True)
    a = event_file("nu60001001002A01_cl.evt")
    b = event_file("nu60001001002B01_cl.evt", module="B", seed=2)
    a.rename(obs / a.name)
    b.rename(obs / b.name)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["mkimgs", str(tmp_path / "obs"), "60001001002", "3", "20", f"outdir={out}", "det1=yes"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["imA3to20keV.fits", "imA3to20keVdet.fits", "imB3to20keV.fits",
                                                     "imB3to20keVdet.fits"]
    assert main(["mkimgs", str(obs / a.name), "3", "20", f"outdir={out}"]) == 2  # exists, no overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["mkimgs", str(obs / a.name), "3", "20", f"outdir={out}", "--overwrite"]) == 0



def test_cli_mkimgs_seed_and_idl_forms(tmp_path, event_file, monkeypatch, capsys):
    """IDL/seed README `mkimgs ./ OBSID 3 20` writes into OBSID/event_cl (comma band lists as IDL);
    nuskybgd-py's `mkimgs EVT OUTNAME 3 20` writes OUTNAME.fits and OUTNAMEdet.fits."""
    obs = tmp_path / "60001001002" / "event_cl"
    obs.mkdir(parents=True)
    a = event_file("nu60001001002A01_cl.evt")
    a.rename(obs / a.name)
    monkeypatch.chdir(tmp_path)
    assert main(["mkimgs", "./", "60001001002", "3,20", "20,40"]) == 0
    assert sorted(p.name for p in obs.glob("im*")) == ["imA20to40keV.fits", "imA3to20keV.fits"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["60001001002"]
    assert main(["mkimgs", str(obs / a.name), "myim", "3", "20"]) == 0
    assert (tmp_path / "myim.fits").is_file() and (tmp_path / "myimdet.fits").is_file()
    assert main(["mkimgs", str(obs / a.name), "missing_B01_cl.evt", "3", "20"]) == 2  # a file, not a name
    assert main(["mkimgs", "./", "60001001002", "3,20", "20"]) == 2
    capsys.readouterr()

def _aspect_file(path, module="A", t0=1e8):
    t = t0 + np.arange(0, 1000, 0.25)
    rng = np.random.default_rng(0)
    cols = [fits.Column(name="TIME", format="D", array=t, unit="s"),
            fits.Column(name="X_DET1", format="D", array=390 + rng.normal(0, 2, t.size), unit="pixel"),
            fits.Column(name="Y_DET1", format="D", array=370 + rng.normal(0, 2, t.size), unit="pixel")]
    h = fits.BinTableHDU.from_columns(cols, name="DET1_REFPOINT")
    h.header.update(HDUCLAS1="TEMPORALDATA", TELESCOP="NuSTAR", INSTRUME=f"FPM{module}", OBS_ID="60001001002")
    fits.HDUList([fits.PrimaryHDU(), h]).writeto(path)
    return path


def _gti_file(path, start, stop):
    h = fits.BinTableHDU.from_columns([fits.Column(name="START", format="D", array=start, unit="s"),
                                       fits.Column(name="STOP", format="D", array=stop, unit="s")], name="STDGTI")
    h.header.update(HDUCLAS1="GTI", TELESCOP="NuSTAR")
    fits.HDUList([fits.PrimaryHDU(), h]).writeto(path)
    return path


def _synthetic_auxil(tmp_path):
    det = np.full((360, 360), -1.0, np.float32)
    det[182:350, 182:350], det[182:352, 15:178], det[10:178, 12:180], det[12:180, 182:346] = 0, 1, 2, 3
    pix = np.where(det >= 0, 0, -1).astype(np.float32)
    aux = tmp_path / "auxil"
    aux.mkdir()
    for name, data in (("detnumA.fits", det), ("pixmapA.fits", pix)):
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="INSTRMAP")]).writeto(aux / name)
    fits.PrimaryHDU(np.full((576, 576), 1e5, np.float32)).writeto(aux / "detA_det1.img.gz")
    (aux / "nomapbgdparams.dat").write_text("0.32\n0.32\n0\n0\n-3.4\n2.0\n0\n-3.5\n1.6\n0\n")
    return aux


def test_cli_pipeline_mkinstrmap_aspecthist_projbgd(tmp_path, event_file, monkeypatch):
    monkeypatch.delenv("CALDB", raising=False)
    monkeypatch.chdir(tmp_path)
    aux = _synthetic_auxil(tmp_path)
    evt = event_file()
    assert main(["mkimgs", str(evt), "3", "20"]) == 0
    assert main(["mkinstrmap", str(evt), f"auxil_dir={aux}", "prefix=bgd_"]) == 0
    asp = _aspect_file(tmp_path / "nu60001001002A_det1.fits")
    gti = _gti_file(tmp_path / "gti.fits", [1e8 + 100], [1e8 + 600])
    assert main(["aspecthist", str(asp), f"gtifile={gti}", "out=aspecthistA.fits"]) == 0
    with fits.open("aspecthistA.fits") as h:
        assert h[0].header["EXPOSURE"] == pytest.approx(500.0, abs=0.5)
    out = tmp_path / "bgd"
    out.mkdir()
    args = ["projbgd", "refimg=imA3to20keV.fits", f"out={out / 'bgdapA.fits'}", "mod=A", "det=1234",
            "chipmap=bgd_newinstrmapA.fits", "aspect=aspecthistA.fits", f"auxil_dir={aux}"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bgdapA.fits", "det0Aim.fits", "det1Aim.fits", "det2Aim.fits",
                                                     "det3Aim.fits"]
    with fits.open(out / "det0Aim.fits") as h:
        assert h[0].data.sum() == pytest.approx(168 * 168, rel=2e-3)


def _projbgd_inputs(tmp_path, event_file, monkeypatch):
    """Counts image, instrument map and aspect histogram of FPMA in ``tmp_path`` (the cwd): (aux, asp)."""
    monkeypatch.delenv("CALDB", raising=False)
    monkeypatch.chdir(tmp_path)
    aux = _synthetic_auxil(tmp_path)
    evt = event_file()
    assert main(["mkimgs", str(evt), "3", "20"]) == 0
    assert main(["mkinstrmap", str(evt), f"auxil_dir={aux}"]) == 0
    asp = _aspect_file(tmp_path / "asp.fits")
    gti = _gti_file(tmp_path / "gti.fits", [1e8 + 100], [1e8 + 600])
    assert main(["aspecthist", str(asp), f"gtifile={gti}", "out=aspecthistA.fits"]) == 0
    return aux, asp


@pytest.mark.parametrize("case,needle", [
    ("refsize", "1000x1000"), ("nopa", "PA_PNT"), ("chipmap", "INSTRMAP"), ("det", "1234"), ("gti", "GTI"),
])
def test_cli_bad_input_one_line_nothing_written(tmp_path, event_file, monkeypatch, capsys, case, needle):
    aux, asp = _projbgd_inputs(tmp_path, event_file, monkeypatch)
    ref, chip, det = "imA3to20keV.fits", "newinstrmapA.fits", "1234"
    if case == "refsize":
        fits.PrimaryHDU(np.zeros((10, 10)), header=fits.getheader(ref)).writeto("small.fits")
        ref = "small.fits"
    elif case == "nopa":
        h = fits.getheader(ref)
        del h["PA_PNT"]
        fits.PrimaryHDU(fits.getdata(ref), header=h).writeto("nopa.fits")
        ref = "nopa.fits"
    elif case == "chipmap":
        chip = ref
    elif case == "det":
        det = "125"
    capsys.readouterr()
    if case == "gti":
        bad_gti = _gti_file(tmp_path / "late.fits", [2e8], [2e8 + 10])
        status = main(["aspecthist", str(asp), f"gtifile={bad_gti}", "out=never.fits"])
        written = ["never.fits"]
    else:
        status = main(["projbgd", f"refimg={ref}", "out=bgdapA.fits", "mod=A", f"det={det}", f"chipmap={chip}",
                       "aspect=aspecthistA.fits", f"auxil_dir={aux}"])
        written = ["bgdapA.fits", "det0Aim.fits"]
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.count("\n") == 0 and needle in err
    if case in ("refsize", "nopa"):
        assert ref in err
    if case == "chipmap":
        assert chip in err
    if case == "gti":
        assert "asp.fits" in err
    assert not any((tmp_path / w).exists() for w in written)


def _grxe_sky_map(path, value=None):
    """A uniform GRXE map in the IDL layout (primary image, GLON-CAR/GLAT-CAR, 0.4 deg pixels)."""
    h = fits.Header()
    h.update(CTYPE1="GLON-CAR", CTYPE2="GLAT-CAR", CRPIX1=451.0, CRPIX2=226.0, CRVAL1=0.0, CRVAL2=0.0,
             CDELT1=-0.4, CDELT2=0.4)
    data = np.full((451, 901), 2.0, np.float32) if value is None else value
    fits.PrimaryHDU(data, header=h if value is None else None).writeto(path)
    return path


def test_cli_projbgd_grxe(tmp_path, event_file, monkeypatch, capsys):
    aux, _asp = _projbgd_inputs(tmp_path, event_file, monkeypatch)
    base = ["projbgd", "--refimg", "imA3to20keV.fits", "--mod", "A", "--chipmap", "newinstrmapA.fits",
            "--aspect", "aspecthistA.fits", "--auxil-dir", str(aux)]
    bad = _grxe_sky_map(tmp_path / "nowcs.fits", value=np.ones((5, 5), np.float32))
    (tmp_path / "bad").mkdir()
    capsys.readouterr()
    assert main([*base, "--out", "bad/bgdapA.fits", "--grxe", str(bad)]) == 2
    assert "celestial WCS" in capsys.readouterr().err and not any((tmp_path / "bad").iterdir())
    out = tmp_path / "bgd"
    out.mkdir()
    assert main([*base, "--out", str(out / "bgdapA.fits"), "--grxe", str(_grxe_sky_map(tmp_path / "g.fits"))]) == 0
    assert (out / "bgdgrxeA.fits").is_file()
    with fits.open(out / "bgdgrxeA.fits") as g, fits.open(out / "bgdapA.fits") as a:
        assert g[0].header["NSB_GRXE"] == "g.fits"
        # The synthetic aperture template is flat, so a uniform GRXE map gives 2 x (aperture − floor).
        seen = a[0].data > 0
        assert g[0].data.shape == a[0].data.shape and np.all(g[0].data[~seen] == 0)
        ratio = g[0].data[seen & (g[0].data > 0)] / a[0].data[seen & (g[0].data > 0)]
        assert ratio.max() == pytest.approx(ratio.min(), rel=1e-6) and 0 < ratio.max() < 2.0
