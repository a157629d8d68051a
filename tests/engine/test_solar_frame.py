"""Heliocentric (solar X/Y) sky frames: recognition, images, regions, aspect from the events, projection, model.

The real file is nustar_sac's ``nu90410111001A06_cl_sunpos.evt`` (nustar_pysolar ``convert_file``
output: X/Y in arcsec from the Sun's centre, labels left as RA/Dec degrees). Expected values are
computed here from the raw FITS columns with astropy/numpy, not with the engine.
"""

import math

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadFileError, BadRegionError
from nuskybgd_engine.io.events import read_events
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.io.regions import grid_of_frame
from nuskybgd_engine.io.skyframe import CELESTIAL, HELIOPROJECTIVE, frame_from_columns, frame_from_header
from nuskybgd_engine.maps import aspect_histogram, make_counts_image, make_instrument_map, project_maps
from nuskybgd_engine.maps.eventaspect import aspect_from_events
from nuskybgd_engine.maps.projection import reference_roll
from nuskybgd_engine.spectra.extract import extract_spectrum

def column_header(ctype=("RA---TAN", "DEC--TAN"), crval=(150.0, 2.0), cdelt=(-6.828076e-4, 6.828076e-4),
                  cunit=None, tlmax=1000):
    h = fits.Header()
    h["TTYPE1"], h["TTYPE2"] = "X", "Y"
    for n in (1, 2):
        h[f"TCTYP{n}"] = ctype[n - 1]
        h[f"TCRPX{n}"] = tlmax / 2
        h[f"TCRVL{n}"] = crval[n - 1]
        h[f"TCDLT{n}"] = cdelt[n - 1]
        h[f"TLMIN{n}"] = 1
        h[f"TLMAX{n}"] = tlmax
        if cunit is not None:
            h[f"TCUNI{n}"] = cunit
    return h


@pytest.mark.parametrize("kw,kind,pixel", [
    ({}, CELESTIAL, 2.458),
    ({"crval": ("0.0", "0.0"), "cdelt": (-2.45810736, 2.45810736), "cunit": "deg", "tlmax": 3000},
     HELIOPROJECTIVE, 2.458),  # nustar_pysolar's sunpos layout
    ({"ctype": ("HPLN-TAN", "HPLT-TAN"), "crval": (0, 0), "cdelt": (-2.4581, 2.4581), "cunit": "arcsec"},
     HELIOPROJECTIVE, 2.458),
    ({"ctype": ("HPLN-TAN", "HPLT-TAN"), "crval": (0, 0), "cdelt": (-6.828076e-4, 6.828076e-4), "cunit": "deg"},
     HELIOPROJECTIVE, 2.458),
    ({"crval": (100, 20), "cdelt": (-2.4581, 2.4581), "cunit": "arcsec"}, HELIOPROJECTIVE, 2.458),
])
def test_frame_recognition(kw, kind, pixel):
    frame = frame_from_columns(column_header(**kw), "evt.fits")
    assert frame.kind == kind
    assert frame.pixel_arcsec == pytest.approx(pixel, abs=1e-3)
    if kind == HELIOPROJECTIVE:
        assert frame.ctype == ("HPLN-TAN", "HPLT-TAN") and frame.unit == "arcsec"
        assert not frame.celestial


@pytest.mark.parametrize("kw,field,words", [
    ({"crval": (150.0, 2.0), "cdelt": (-2.4581, 2.4581)}, "TCDLT1", "neither a sky pixel in degrees"),
    ({"ctype": ("HPLN-TAN", "HPLT-TAN"), "crval": (0, 0), "cdelt": (-5.0, 5.0), "cunit": "arcsec"}, "TCDLT1",
     "not NuSTAR's"),
    ({"ctype": ("GLON-TAN", "GLAT-TAN")}, "TCTYP1", "RA---TAN/DEC--TAN or HPLN-TAN/HPLT-TAN"),
    ({"cdelt": (0.0, 6.8e-4)}, "TCDLT1", "pixel size is 0"),
])
def test_frame_refused(kw, field, words):
    with pytest.raises(BadFileError) as exc:
        frame_from_columns(column_header(**kw), "evt.fits")
    assert exc.value.field == field and words in str(exc.value) and "evt.fits" in str(exc.value)


@pytest.fixture(scope="module")
def solar(solar_events):
    path, raw, header = solar_events
    return path, read_events(path), raw, header


@pytest.mark.requires_data
def test_real_solar_events_and_image(solar, tmp_path):
    path, ev, raw, _ = solar
    assert ev.frame.kind == HELIOPROJECTIVE and ev.frame.shape == (3000, 3000)
    img = make_counts_image(ev, 3, 20)
    assert img.header["CTYPE1"] == "HPLN-TAN" and img.header["CUNIT2"] == "arcsec"
    assert img.header["CDELT2"] == pytest.approx(2.45810736)
    assert img.counts == int(np.sum((raw["PI"] >= 35) & (raw["PI"] <= 459)))
    # The written image reads back as the same heliocentric frame (ds9 shows it as HPLN/HPLT arcsec).
    frame = frame_from_header(img.header, "img.fits", shape=img.image.shape)
    assert frame.kind == HELIOPROJECTIVE and frame.crpix == (1500.0, 1500.0)
    assert img.grid.shape == (3000, 3000)


@pytest.mark.requires_data
def test_real_solar_spectrum_image_region(solar):
    path, ev, raw, _ = solar
    rs = extract_spectrum(ev, RegionSet.from_string("image\nbox(1048.5,1630.5,140,140,0)\n"))
    inside = ((raw["X"] >= 979) & (raw["X"] <= 1118) & (raw["Y"] >= 1561) & (raw["Y"] <= 1700)
              & (raw["GRADE"] <= 26) & (raw["PI"] >= 0))
    assert rs.total_counts == int(inside.sum()) > 1000
    assert rs.det_counts.tolist() == np.bincount(raw["DET_ID"][inside], minlength=4).tolist()
    assert rs.npix == 140 * 140
    assert rs.spectrum.backscal == pytest.approx(140 * 140 / 3000**2)
    assert rs.spectrum.exposure == pytest.approx(70.0321908915824)


@pytest.mark.requires_data
def test_real_solar_refuses_sky_regions(solar):
    _, ev, _, _ = solar
    with pytest.raises(BadRegionError) as exc:
        extract_spectrum(ev, RegionSet.from_string('fk5\ncircle(185.1188,-2.226,60")\n'))
    text = str(exc.value)
    assert "heliocentric" in text and "image or physical" in text and "\n" not in text


def own_detector_fraction(ev, grid, maps, threshold):
    ix, iy, inside = grid.event_index(ev["X"], ev["Y"])
    stack = np.stack(maps.det)
    det = np.asarray(ev["DET_ID"], dtype=int)
    own = np.where(inside, stack[det, iy, ix], 0.0)
    return float(np.mean(own > threshold))


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_solar_aspect_from_events_projects_events_onto_their_detectors(solar):
    _, ev, _, _ = solar
    ea = aspect_from_events(ev)
    assert ea.residual < 1.2 and ea.n_events > 9000
    assert -3.0 < ea.pa < -1.0  # measured roll relative to the frame
    hist = aspect_histogram(ea.track, ev.gti)
    assert hist.header["PA_EVT"] == pytest.approx(ea.pa)
    assert hist.exposure == pytest.approx(ev.gti.exposure, rel=0.02)
    img = make_counts_image(ev, 3, 20)
    imap = make_instrument_map(ev)
    maps = project_maps(img.header, imap, hist, module="A", ref_shape=img.image.shape)
    assert maps.bgdap.shape == (3000, 3000)
    assert maps.pa == pytest.approx(ea.pa + 1.0)
    # Independent check: every event lies where the projection says its own detector (DET_ID) looks.
    assert own_detector_fraction(ev, img.grid, maps, 0.0) > 0.995
    assert own_detector_fraction(ev, img.grid, maps, 0.5) > 0.97
    # A roll 8 degrees off misplaces the detector edges: the same check fails.
    wrong = project_maps(img.header, imap, hist, module="A", ref_shape=img.image.shape, pa_pnt=ea.pa + 8)
    assert own_detector_fraction(ev, img.grid, wrong, 0.5) < 0.93


@pytest.mark.requires_data
def test_real_solar_mirrored_frame_refused(solar):
    _, ev, _, _ = solar
    import dataclasses

    flipped = dataclasses.replace(ev, columns={**ev.columns, "X": 3001 - np.asarray(ev["X"])})
    with pytest.raises(BadFileError, match="mirrored"):
        aspect_from_events(flipped)


def test_roll_order_and_heliocentric_needs_a_roll():
    from nuskybgd_engine.maps.aspecthist import AspectHistogram

    h = fits.Header()
    for k, v in dict(CTYPE1="HPLN-TAN", CTYPE2="HPLT-TAN", CRPIX1=1500, CRPIX2=1500, CRVAL1=0.0, CRVAL2=0.0,
                     CDELT1=-2.4581, CDELT2=2.4581, CUNIT1="arcsec", CUNIT2="arcsec", PA_PNT=-100.0).items():
        h[k] = v
    with pytest.raises(BadFileError, match="pa_pnt="):
        reference_roll(h, (3000, 3000), "im.fits")
    hist = AspectHistogram(np.ones((1, 1)), 900, 1700, module="A")
    hist.header["PA_EVT"] = -1.98
    assert reference_roll(h, (3000, 3000), aspect=hist)[::2] == (-1.98, "events")
    assert reference_roll(h, (3000, 3000), pa_pnt=12.0, aspect=hist)[::2] == (12.0, "pa_pnt=")
    h["PA_PNT"] = 40.0  # a celestial PA_PNT is not the roll of a heliocentric frame
    with pytest.raises(BadFileError, match="heliocentric"):
        reference_roll(h, (3000, 3000))


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_solar_end_to_end_cli_and_model(solar, tmp_path, monkeypatch, capsys):
    """Events → image → image regions → spectra → projected maps → BackgroundAnalysis → fit."""
    import json

    from nuskybgd_engine.analysis import BackgroundAnalysis

    path = str(solar[0])
    monkeypatch.chdir(tmp_path)
    assert main(["mkimgs", path, "3", "20"]) == 0
    assert main(["mkinstrmap", path]) == 0
    assert main(["aspecthist", "events=" + path, "out=aspecthistA.fits"]) == 0
    assert "measured from" in capsys.readouterr().out
    assert main(["projbgd", "refimg=imA3to20keV.fits", "out=bgdapA.fits", "mod=A", "chipmap=newinstrmapA.fits",
                 "aspect=aspecthistA.fits"]) == 0
    centres = [(1048, 1630), (1212, 1628), (1210, 1463), (1046, 1465)]  # one box per detector
    bgfiles, regfiles = [], []
    for i, (x, y) in enumerate(centres, start=1):
        (tmp_path / f"bgd{i}.reg").write_text(f"# Region file format: DS9 version 4.1\nimage\nbox({x},{y},140,140,0)\n")
        assert main(["getspecnoarf", path, f"reg=bgd{i}.reg", f"outprefix=bgd{i}A"]) == 0
        bgfiles.append(f"bgd{i}A_sr_g30.pha")
        regfiles.append(f"bgd{i}.reg")
    info = {"bgfiles": bgfiles, "regfiles": regfiles, "refimgf": "imA3to20keV.fits",
            "bgdapfiles": {"A": "bgdapA.fits"},
            "bgddetfiles": {"A": [f"det{d}Aim.fits" for d in range(4)]},
            "fcxb_config": {"links": [[1, 2], [1, 3], [1, 4]]}, "intbgd_fix_line_ratios": True}
    (tmp_path / "bgdinfo.json").write_text(json.dumps(info))
    analysis = BackgroundAnalysis.from_bgdinfo(tmp_path / "bgdinfo.json")
    assert analysis.grid.shape == (3000, 3000)
    # Each box lies on one detector: its weights put (almost) all the area on that detector.
    for d, g in enumerate(analysis.groups):
        fractions = np.asarray(g.weights.A) / np.sum(g.weights.A)
        assert fractions[d] > 0.95
    result = analysis.fit()
    assert result.converged and math.isfinite(result.value) and result.dof >= 0


@pytest.mark.slow
def test_aspect_from_events_matches_the_aspect_file(tmp_path):
    """On a celestial (simulated) observation the events give the det1 file's aspect and the PA_PNT."""
    from nuskybgd_engine.io.aspect import read_aspect
    from nuskybgd_engine.simulate import SimulationSpec, simulate_observation

    simulate_observation(tmp_path, SimulationSpec(obsid="60000000002", seed=5, exposure=2000.0, pa=47.0))
    base = tmp_path / "60000000002" / "event_cl"
    ev = read_events(base / "nu60000000002A01_cl.evt")
    ea = aspect_from_events(ev)
    assert ea.pa == pytest.approx(47.0, abs=0.05) and ea.residual < 1.0

    def centre(h):
        ys, xs = np.mgrid[: h.image.shape[0], : h.image.shape[1]]
        return np.array([(xs * h.image).sum() + h.x_off * h.exposure,
                         (ys * h.image).sum() + h.y_off * h.exposure]) / h.exposure

    from_events = aspect_histogram(ea.track, ev.gti)
    from_file = aspect_histogram(read_aspect(base / "nu60000000002A_det1.fits"), ev.gti)
    assert np.allclose(centre(from_events), centre(from_file), atol=0.1)
    assert from_events.exposure == pytest.approx(from_file.exposure, rel=0.01)


def test_region_weights_refuse_sky_regions_on_a_heliocentric_grid():
    from nuskybgd_engine.io.skyframe import frame_from_header
    from nuskybgd_engine.maps.projection import ProjectedMaps
    from nuskybgd_engine.model.background import region_weights

    h = fits.Header()
    for k, v in dict(CTYPE1="HPLN-TAN", CTYPE2="HPLT-TAN", CRPIX1=200, CRPIX2=200, CRVAL1=0.0, CRVAL2=0.0,
                     CDELT1=-2.4581, CDELT2=2.4581, CUNIT1="arcsec", CUNIT2="arcsec").items():
        h[k] = v
    grid = grid_of_frame(frame_from_header(h, shape=(400, 400)))
    maps = ProjectedMaps(bgdap=np.ones((400, 400)), det=[np.ones((400, 400))] * 4, header=h, module="A",
                         exposure=1.0)
    w = region_weights(RegionSet.from_string("image\nbox(200.5,200.5,10,10,0)\n"), grid, maps)
    assert w.W == 100.0 and w.A == (100.0,) * 4
    with pytest.raises(BadRegionError, match="image or physical"):
        region_weights(RegionSet.from_string('fk5\ncircle(10.0,2.0,30")\n'), grid, maps)


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_solar_observation_directory(solar, tmp_path):
    """prepare_observation (dashboard, batch) opens a solar directory: no det1 file, solar X/Y events."""
    from nuskybgd_engine.observation import prepare_observation

    evdir = tmp_path / "90410111001" / "event_cl"
    evdir.mkdir(parents=True)
    (evdir / "nu90410111001A06_cl_sunpos.evt").symlink_to(solar[0])
    obs = prepare_observation(tmp_path / "90410111001", modules=("A",))["A"]
    assert obs.grid.shape == (3000, 3000) and obs.maps.bgdap.shape == (3000, 3000)
    assert obs.aspect.header["ASPSRC"] == "events"
    assert own_detector_fraction(obs.events, obs.grid, obs.maps, 0.0) > 0.995


@pytest.mark.requires_data
@pytest.mark.parametrize("call", ["to_pixel", "region_cutout", "region_mask"])
def test_real_solar_sky_shapes_give_one_line_in_every_mask_path(solar, call):
    """fk5/icrs/galactic shapes on the heliocentric grid: the rule's one line, not astropy's world-axes error."""
    from nuskybgd_engine.io.regions import region_cutout, region_mask

    _, ev, _, _ = solar
    grid = grid_of_frame(ev.frame)
    for frame in ("fk5", "icrs", "galactic"):
        regions = RegionSet.from_string(f'{frame}\ncircle(185.1188,-2.226,60")\n')
        fn = {"to_pixel": regions.to_pixel, "region_cutout": lambda g: region_cutout(regions, g),
              "region_mask": lambda g: region_mask(regions, g)}[call]
        with pytest.raises(BadRegionError) as exc:
            fn(grid)
        text = str(exc.value)
        assert "heliocentric" in text and "image or physical" in text and "\n" not in text
        assert "world inputs" not in text


@pytest.mark.requires_data
def test_real_solar_write_ds9_sky_frame_refused_image_and_physical_written(solar, tmp_path):
    _, ev, _, _ = solar
    grid = grid_of_frame(ev.frame)
    regions = RegionSet.from_string("image\ncircle(1048.5,1630.5,40)\n")
    for coord in ("fk5", "icrs", "galactic"):
        with pytest.raises(BadRegionError) as exc:
            regions.write_ds9(tmp_path / f"{coord}.reg", coord=coord, grid=grid)
        text = str(exc.value)
        assert "heliocentric" in text and "coord='image'" in text and "\n" not in text
        assert not (tmp_path / f"{coord}.reg").exists()
    # image and physical round-trip to the same pixels on the solar grid.
    from nuskybgd_engine.io.regions import region_mask

    for coord in ("image", "physical"):
        out = regions.write_ds9(tmp_path / f"{coord}.reg", coord=coord, grid=grid)
        again = RegionSet.read_ds9(out)
        assert np.array_equal(region_mask(again, grid), region_mask(regions, grid))
