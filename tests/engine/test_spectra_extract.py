"""Region spectra (getspecnoarf): selection, counts, keywords, grouping, outputs and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadFileError, BadRegionError
from nuskybgd_engine.io.events import read_events
from nuskybgd_engine.io.fitsutil import read_fits
from nuskybgd_engine.io.ogip import read_pha, read_rmf, write_pha
from nuskybgd_engine.io.regions import RegionSet, SkyGrid
from nuskybgd_engine.spectra.extract import EmptyRegionWarning, extract_spectrum

from ..conftest import make_event_hdul


def _events(tmp_path, n=4000, seed=3, name="ev.evt", **kw):
    """Synthetic events with integer X/Y (as the pipeline) and some grades > 26 to be rejected."""
    hdul = make_event_hdul(n=n, seed=seed, **kw)
    d = hdul["EVENTS"].data
    rng = np.random.default_rng(seed + 100)
    d["X"] = np.round(d["X"])
    d["Y"] = np.round(d["Y"])
    d["GRADE"] = rng.integers(0, 32, n)
    d["PI"][:5] = -4095  # pipeline null
    path = tmp_path / name
    hdul.writeto(path)
    return path


def _hand_selection(path, cx, cy, r):
    """Events with (X - cx)^2 + (Y - cy)^2 < r^2 (ds9 image coordinates), grade 0-26, valid PI."""
    d = fits.getdata(path, "EVENTS")
    x, y = d["X"].astype(float), d["Y"].astype(float)
    ok = ((x - cx) ** 2 + (y - cy) ** 2 < r * r) & (d["GRADE"] <= 26) & (d["PI"] >= 0) & (d["PI"] < 4096)
    return d[ok]


def test_counts_and_detectors_match_a_direct_selection(tmp_path):
    path = _events(tmp_path)
    ev = read_events(path)
    rs = RegionSet.from_string("image\ncircle(500,500,100.5)\n")
    out = extract_spectrum(ev, rs)
    sel = _hand_selection(path, 500, 500, 100.5)
    assert out.total_counts == len(sel) > 0
    assert np.array_equal(out.spectrum.counts, np.bincount(sel["PI"], minlength=4096))
    assert np.array_equal(out.det_counts, np.bincount(sel["DET_ID"], minlength=4))
    assert out.spectrum.channel.tolist() == list(range(4096))
    # BACKSCAL = pixels of the region / 10^6, pixels counted directly.
    iy, ix = np.mgrid[0:1000, 0:1000]
    npix = int(np.sum((ix - 499) ** 2 + (iy - 499) ** 2 < 100.5**2))
    assert out.npix == npix
    assert out.spectrum.backscal == pytest.approx(npix / 1e6, rel=1e-12)


def test_counts_conserved_against_the_event_file(tmp_path):
    """A region covering the whole grid holds every valid event of grade 0-26 exactly once."""
    path = _events(tmp_path, n=3000)
    ev = read_events(path)
    out = extract_spectrum(ev, RegionSet.from_string("image\nbox(500.5,500.5,1000,1000,0)\n"))
    d = fits.getdata(path, "EVENTS")
    good = (d["GRADE"] <= 26) & (d["PI"] >= 0)
    assert out.npix == 10**6 and out.spectrum.backscal == 1.0
    assert out.total_counts == int(good.sum())
    # Two complementary halves add up to the whole.
    left = extract_spectrum(ev, RegionSet.from_string("image\nbox(250.5,500.5,500,1000,0)\n"))
    right = extract_spectrum(ev, RegionSet.from_string("image\nbox(750.5,500.5,500,1000,0)\n"))
    assert np.array_equal(left.spectrum.counts + right.spectrum.counts, out.spectrum.counts)
    assert left.npix + right.npix == out.npix


def test_excludes_and_pi_range(tmp_path):
    path = _events(tmp_path)
    ev = read_events(path)
    rs = RegionSet.from_string("image\ncircle(500,500,150.5)\n-circle(500,500,50.5)\n")
    out = extract_spectrum(ev, rs, pi_range=(100, 400))
    outer, inner = _hand_selection(path, 500, 500, 150.5), _hand_selection(path, 500, 500, 50.5)
    expect = np.bincount(outer["PI"], minlength=4096) - np.bincount(inner["PI"], minlength=4096)
    expect[:100] = 0
    expect[401:] = 0
    assert np.array_equal(out.spectrum.counts, expect)
    assert out.spectrum.header["DSVAL3"] == "100:400"


def test_written_spectrum_keywords_and_round_trip(tmp_path):
    path = _events(tmp_path)
    ev = read_events(path)
    out = extract_spectrum(ev, RegionSet.from_string("image\ncircle(480,520,80)\n"))
    out.spectrum.header["RESPFILE"] = "src_sr.rmf"
    write_pha(out.spectrum, tmp_path / "s.pha")
    back = read_pha(tmp_path / "s.pha")
    assert np.array_equal(back.counts, out.spectrum.counts)
    assert back.exposure == 900.0 and back.module == "A"
    assert back.backscal == pytest.approx(out.npix / 1e6)
    h = fits.getheader(tmp_path / "s.pha", "SPECTRUM")
    for key, value in {"TELESCOP": "NuSTAR", "INSTRUME": "FPMA", "OBS_ID": "60001001002", "HDUCLAS1": "SPECTRUM",
                       "HDUCLAS2": "TOTAL", "HDUCLAS3": "COUNT", "POISSERR": True, "RESPFILE": "src_sr.rmf",
                       "LIVETIME": 900.0, "EXPOSURE": 900.0, "DETCHANS": 4096, "DSVAL1": "0:26"}.items():
        assert h[key] == value, key
    with fits.open(tmp_path / "s.pha") as hd:
        gti = hd["GTI"].data
        assert gti["START"].tolist() == [1e8, 1e8 + 600] and gti["STOP"].tolist() == [1e8 + 500, 1e8 + 1000]
        reg = hd["REG00101"].data
        assert reg["SHAPE"][0] == "CIRCLE"
        assert (reg["X"][0], reg["Y"][0], reg["R"][0]) == pytest.approx((480, 520, 80))


def test_region_extension_encodes_includes_minus_excludes(tmp_path):
    ev = read_events(_events(tmp_path))
    rs = RegionSet.from_string("image\ncircle(400,400,50)\nbox(600,600,40,20,30)\n-circle(410,400,10)\n")
    reg = extract_spectrum(ev, rs).spectrum.extra_hdus[-1].data
    # Component k = include k and every exclude (CXC: intersect within, union across components).
    assert [s.strip() for s in reg["SHAPE"]] == ["CIRCLE", "!CIRCLE", "ROTBOX", "!CIRCLE"]
    assert reg["COMPONENT"].tolist() == [1, 1, 2, 2]
    assert reg["R"][2].tolist() == pytest.approx([40, 20]) and reg["ROTANG"][2] == pytest.approx(30)


@pytest.mark.requires_data
def test_real_sun_center_backscal(tmp_path, data_dir):
    """The 180" circle of nustar_axions on the real sky WCS: 16 841 pixels, BACKSCAL 0.016841."""
    img = read_fits(data_dir / "nustar_axions/images/imA3to20keV.fits.gz")[0].header
    hdul = make_event_hdul(n=20000, seed=5)
    h = hdul["EVENTS"].header
    for n, axis in ((2, 1), (3, 2)):  # X and Y are columns 2 and 3
        h[f"TCRVL{n}"] = img[f"CRVAL{axis}"]
        h[f"TCRPX{n}"] = img[f"CRPIX{axis}"]
        h[f"TCDLT{n}"] = img[f"CDELT{axis}"]
    d = hdul["EVENTS"].data
    d["X"] = np.round(d["X"])
    d["Y"] = np.round(d["Y"])
    hdul.writeto(tmp_path / "ev.evt")
    ev = read_events(tmp_path / "ev.evt")
    rs = RegionSet.read_ds9(data_dir / "nustar_axions/images/sun_center.reg")
    out = extract_spectrum(ev, rs)
    assert out.npix == 16841
    assert out.spectrum.backscal == pytest.approx(0.016841, abs=1e-12)
    # Independent event check: angular separation of each event's pixel centre from the centre.
    grid = SkyGrid.from_event_columns(h)
    ra, dec = grid.wcs.wcs_pix2world(d["X"] - 1.0, d["Y"] - 1.0, 0)
    sep = SkyCoord(ra, dec, unit="deg").separation(rs[0].shape.center)
    assert out.total_counts == int(np.sum((sep < 180 * u.arcsec) & (d["GRADE"] <= 26)))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_region_outside_image_and_on_no_events(tmp_path):
    ev = read_events(_events(tmp_path))
    with pytest.raises(BadRegionError, match="outside the image"):
        extract_spectrum(ev, RegionSet.from_string("image\ncircle(5000,5000,10)\n"))
    empty = RegionSet.from_string("image\ncircle(50,50,10)\n")  # on the grid, no event there
    with pytest.raises(BadRegionError, match="no event"):
        extract_spectrum(ev, empty)
    with pytest.warns(EmptyRegionWarning, match="empty spectrum"):
        out = extract_spectrum(ev, empty, allow_empty=True)
    assert out.total_counts == 0 and out.det_counts.tolist() == [0, 0, 0, 0]


def test_missing_grade_column(tmp_path):
    path = tmp_path / "ev.evt"
    make_event_hdul(columns=["TIME", "X", "Y", "DET_ID", "PI"]).writeto(path)
    ev = read_events(path, columns=("X", "Y", "PI", "DET_ID"))
    with pytest.raises(BadFileError) as err:
        extract_spectrum(ev, RegionSet.from_string("image\ncircle(500,500,100)\n"))
    assert err.value.field == "GRADE" and err.value.path.endswith("ev.evt")


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def obs(tmp_path):
    evt = _events(tmp_path, n=6000)
    reg = tmp_path / "src.reg"
    reg.write_text("image\ncircle(500,500,120.5)\n")
    out = tmp_path / "out"
    out.mkdir()
    return evt, reg, out


@pytest.mark.slow
def test_getspecnoarf_outputs(obs, capsys):
    evt, reg, out = obs
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={out}"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["src_sr.pha", "src_sr.rmf", "src_sr_g30.pha"]
    spec = read_pha(out / "src_sr.pha")
    sel = _hand_selection(evt, 500, 500, 120.5)
    assert spec.total_counts == len(sel) and spec.grouping is None
    assert spec.header["RESPFILE"] == "src_sr.rmf"
    grp = read_pha(out / "src_sr_g30.pha")
    assert np.array_equal(grp.counts, spec.counts) and grp.header["RESPFILE"] == "src_sr.rmf"
    # grppha 'group min 30': every group but a trailing spare tail has >= 30 counts and reaches
    # 30 only at its last channel (checked from the counts, not from our grouping function).
    starts = np.flatnonzero(grp.grouping == 1)
    ends = np.append(starts[1:], 4096) - 1
    tail = grp.quality == 2
    for s, e in zip(starts, ends):
        if tail[s]:
            continue
        c = spec.counts[s:e + 1]
        assert c.sum() >= 30 and c[:-1].sum() < 30
    assert np.all(tail[np.argmax(tail):]) and spec.counts[tail].sum() < 30
    rmf = read_rmf(out / "src_sr.rmf", module="A")
    assert rmf.matrix.shape == (4096, 4096)
    assert "RMF from nominal" in capsys.readouterr().out


def test_getspecnoarf_outprefix_group_and_overwrite(obs, capsys):
    evt, reg, out = obs
    args = ["getspecnoarf", evt.name, f"reg={reg}", f"indir={evt.parent}", f"outdir={out}",
            "outprefix=bgd.v1", "group=20"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bgd.v1_sr.pha", "bgd.v1_sr.rmf", "bgd.v1_sr_g20.pha"]
    before = (out / "bgd.v1_sr.pha").stat().st_mtime_ns
    assert main(args) == 2
    assert "output exists" in capsys.readouterr().err
    assert (out / "bgd.v1_sr.pha").stat().st_mtime_ns == before
    assert main(args[:-1] + ["group=!20"]) == 0  # '!' prefix = overwrite


def test_getspecnoarf_writes_nothing_on_bad_input(obs, tmp_path, capsys):
    evt, reg, out = obs
    # Unwritable (missing) output directory.
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={tmp_path / 'nope'}"]) == 2
    assert "output directory" in capsys.readouterr().err
    # Region outside the image.
    bad = tmp_path / "far.reg"
    bad.write_text("image\ncircle(5000,5000,10)\n")
    assert main(["getspecnoarf", str(evt), f"reg={bad}", f"outdir={out}"]) == 2
    err = capsys.readouterr().err
    assert "far.reg" in err and "outside the image" in err
    # Region with no event, then allowed.
    empty = tmp_path / "empty.reg"
    empty.write_text("image\ncircle(50,50,10)\n")
    assert main(["getspecnoarf", str(evt), f"reg={empty}", f"outdir={out}"]) == 2
    assert list(out.iterdir()) == []
    assert main(["getspecnoarf", str(evt), f"reg={empty}", f"outdir={out}", "allow_empty=yes"]) == 0
    assert "warning" in capsys.readouterr().out
    assert read_pha(out / "empty_sr.pha").total_counts == 0
    # ARF requested without DETABS available: error, nothing new written.
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={out}", "arf=yes"]) == 2
    assert "DETABS" in capsys.readouterr().err
    assert not (out / "src_sr.pha").exists()
    # Bad group value.
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={out}", "group=0"]) == 2
    assert "group" in capsys.readouterr().err


def test_getspecnoarf_rmf_of_the_other_module(obs, tmp_path, capsys):
    from nuskybgd_engine.spectra.responses import nominal_rmf
    from nuskybgd_engine.io.ogip import write_rmf

    evt, reg, out = obs
    write_rmf(nominal_rmf("B"), tmp_path / "b.rmf")
    assert fits.getheader(tmp_path / "b.rmf", "MATRIX")["INSTRUME"] == "FPMB"
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={out}", f"rmffile={tmp_path / 'b.rmf'}"]) == 2
    err = capsys.readouterr().err
    assert "b.rmf" in err and "INSTRUME" in err
    assert list(out.iterdir()) == []
