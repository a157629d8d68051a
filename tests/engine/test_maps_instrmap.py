"""Pixel/detector maps and the instrument map (spec §1.3, §2.4, §7 items 2-3)."""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.errors import BadFileError, OutputExistsError
from nuskybgd_engine.io.events import BadPixels, read_badpix
from nuskybgd_engine.io.fitsutil import read_fits
from nuskybgd_engine.maps import (
    bad_raw_pixels,
    load_pixel_maps,
    make_instrument_map,
    pixel_maps_from_pixpos,
    read_instrument_map,
    write_instrument_map,
)
from nuskybgd_engine.maps.instrmap import GRADE_WEIGHTS


def flags(value, n=1):
    bits = np.array([(value >> (15 - i)) & 1 for i in range(16)], dtype=bool)  # element 0 = MSB
    return np.tile(bits, (n, 1))


def bp(det, rows, tstart=0.0, tstop=100.0):
    rawx = np.array([r[0] for r in rows])
    rawy = np.array([r[1] for r in rows])
    return BadPixels(detector=det, rawx=rawx, rawy=rawy, time=np.array([r[2] for r in rows], float),
                     time_stop=np.array([r[3] for r in rows], float),
                     badflag=np.vstack([flags(r[4]) for r in rows]), tstart=tstart, tstop=tstop, module="A")


def test_bad_pixel_rules():
    tables = [bp(0, [(1, 0, 0, 90, 32),     # hot for 90 % -> bad (duration)
                     (2, 0, 0, 50, 32),     # hot for 50 % -> kept
                     (3, 0, 0, 10, 2),      # disabled on-board (flag value 2) -> bad
                     (4, 0, 0, 10, 1),      # CALDB bad (value 1) -> bad
                     (5, 0, 0, 10, 4),      # user (value 4) -> bad
                     (6, 0, 0, 45, 32), (6, 0, 40, 85, 32),  # union 85 % -> bad (per row each < 80 %)
                     (7, 0, 200, 210, 2)]), # flagged but outside the observation -> kept
              bp(2, [(0, 31, 0, 10, 2)])]
    bad = bad_raw_pixels(tables, obs_start=0.0, obs_stop=100.0)
    assert set(np.flatnonzero(bad[0])) == {1, 3, 4, 5, 6}
    assert set(np.flatnonzero(bad[2])) == {31 * 32}
    assert not bad[1].any() and not bad[3].any()
    only2 = bad_raw_pixels(tables, obs_start=0.0, obs_stop=100.0, bad_bits=(1,))
    assert set(np.flatnonzero(only2[0])) == {1, 3, 6}


def make_pixpos(path, entries):
    """A tiny PIXPOS file; entries: (det, rawx, rawy, grade, ref_x, ref_y, pdf 7x7)."""
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["TELESCOP"] = "NuSTAR"
    for det in range(4):
        rows = [e for e in entries if e[0] == det]
        pdf = np.array([e[6] for e in rows], np.float32).reshape(len(rows), 49) if rows else np.zeros((0, 49))
        cols = [fits.Column(name="RAWX", format="B", array=[e[1] for e in rows]),
                fits.Column(name="RAWY", format="B", array=[e[2] for e in rows]),
                fits.Column(name="GRADE", format="I", array=[e[3] for e in rows]),
                fits.Column(name="REF_DET1X", format="I", array=[e[4] for e in rows]),
                fits.Column(name="REF_DET1Y", format="I", array=[e[5] for e in rows]),
                fits.Column(name="PDF", format="49E", dim="(7, 7)", array=pdf.reshape(-1, 7, 7))]
        h = fits.BinTableHDU.from_columns(cols, name="PIXPOS")
        h.header["DETNAM"] = f"DET{det}"
        hdus.append(h)
    fits.HDUList(hdus).writeto(path)


def test_pixpos_algorithm_by_hand(tmp_path):
    flat = np.full((7, 7), 0.02)
    peaked = np.zeros((7, 7))
    peaked[3, 3] = 0.9
    nan = np.full((7, 7), np.nan)
    entries = [
        (0, 1, 2, 0, 10, 20, peaked),        # RAW (1, 2) of DET0 owns DET1 block centre (13, 23) -> (12, 22) after roll
        (1, 5, 6, 0, 11, 21, flat),          # DET1 RAW (5, 6): weaker, wins only where DET0 has nothing
        (1, 5, 6, 30, 11, 21, peaked * 10),  # grade > 26: ignored
        (2, 7, 7, 0, 100, 100, nan),         # NaN PDF: ignored
        (3, 0, 0, 1, -1, -1, peaked),        # REF_DET1X = -1: ignored
    ]
    path = tmp_path / "pixpos.fits"
    make_pixpos(path, entries)
    pixmap, detnum = pixel_maps_from_pixpos(path)
    assert detnum[22, 12] == 0 and pixmap[22, 12] == 1 + 32 * 2
    # The flat DET1 block (11..17, 21..27) minus the DET0 peak pixel, rolled by (-1, -1).
    own1 = detnum == 1
    assert own1.sum() == 49 - 1 and pixmap[own1].tolist() == [5 + 32 * 6] * 48
    assert own1[20, 10] and own1[26, 16] and not own1[27, 17]
    assert (detnum >= 0).sum() == 49 and not np.any(detnum[99:107, 99:107] == 2)
    assert GRADE_WEIGHTS.shape == (27,)


def synthetic_auxil(tmp_path):
    det = np.full((360, 360), -1.0, np.float32)
    det[182:350, 182:350] = 0
    det[182:352, 15:178] = 1
    det[10:178, 12:180] = 2
    det[12:180, 182:346] = 3
    y, x = np.mgrid[0:360, 0:360]
    pix = np.where(det >= 0, ((x // 5) % 32) + 32 * ((y // 5) % 32), -1).astype(np.float32)
    for name, data in (("detnumA.fits", det), ("pixmapA.fits", pix)):
        img = fits.ImageHDU(data, name="INSTRMAP")
        img.header["CTYPE1"], img.header["CTYPE2"] = "DET1X", "DET1Y"
        fits.HDUList([fits.PrimaryHDU(), img]).writeto(tmp_path / name)
    return det.astype(int), pix.astype(int)


def test_instrument_map_from_events_badpix_and_round_trip(tmp_path, event_file):
    det, pix = synthetic_auxil(tmp_path)
    evt = event_file()
    with fits.open(evt, mode="update") as h:
        rows = [fits.Column(name="RAWX", format="B", array=[3]), fits.Column(name="RAWY", format="B", array=[4]),
                fits.Column(name="TIME", format="D", array=[1e8]), fits.Column(name="TIME_STOP", format="D",
                                                                                array=[1e8 + 950]),
                fits.Column(name="BADFLAG", format="16X", array=flags(32))]
        b = fits.BinTableHDU.from_columns(rows, name="BADPIX")
        b.header.update(DETNAM="DET2", TSTART=1e8, TSTOP=1e8 + 1000.0)
        h.append(b)
    imap = make_instrument_map(evt, auxil_dir=tmp_path, use_caldb=False)
    killed = (det == 2) & (pix == 3 + 32 * 4)
    expected = np.where(det >= 0, det + 1, 0)
    expected[killed] = 0
    np.testing.assert_array_equal(imap.data, expected)
    assert imap.n_killed == killed.sum() > 0
    out = write_instrument_map(imap, tmp_path / "newinstrmapA.fits")
    back = read_instrument_map(out)
    np.testing.assert_array_equal(back.data, imap.data)
    assert back.module == "A" and back.header["EXTNAME"] == "INSTRMAP" and back.header["CTYPE1"] == "DET1X"
    with pytest.raises(OutputExistsError):
        write_instrument_map(imap, out)


def test_read_instrument_map_rejects(tmp_path):
    p = tmp_path / "chip.fits"
    fits.PrimaryHDU(np.zeros((360, 360))).writeto(p)
    with pytest.raises(BadFileError, match=r"chip\.fits.*INSTRMAP"):
        read_instrument_map(p)
    q = tmp_path / "detnum.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.full((360, 360), -1.0), name="INSTRMAP")]).writeto(q)
    with pytest.raises(BadFileError, match="0..4"):
        read_instrument_map(q)


# ---------------------------------------------------------------------------------------------
# Real files
# ---------------------------------------------------------------------------------------------


@pytest.mark.requires_data
@pytest.mark.parametrize("module", ["A", "B"])
def test_pixpos_maps_agree_with_shipped_auxil_maps(data_dir, auxil_dir, module):
    pixmap, detnum = pixel_maps_from_pixpos(data_dir / "caldb-pixpos-nuwavsource" /
                                            f"nu{module}pixpos20100101v007.fits.gz")
    pix0, det0, _ = load_pixel_maps(module, auxil_dir=auxil_dir)
    mapped = (detnum >= 0) | (det0 >= 0)
    det_agree = np.mean(detnum[mapped] == det0[mapped])
    pix_agree = np.mean(pixmap[mapped] == pix0[mapped])
    # PIXPOS v007 vs the shipped v005-era maps: measured 99.99 % / 99.8 %.
    assert det_agree > 0.999 and pix_agree > 0.995
    # Without the (-1, -1) roll the agreement collapses: the convention is checked, not assumed.
    unrolled = np.roll(pixmap, (1, 1), axis=(0, 1))
    assert np.mean(unrolled[mapped] == pix0[mapped]) < 0.9


@pytest.mark.requires_data
def test_detnum_convention_against_real_events(data_dir, auxil_dir):
    # Array index = DET1 − 1: DET_ID and RAW pixel of every event of a real cleaned event file.
    h = read_fits(data_dir / "nustar_sac" / "nu90410111001A06_cl_sunpos.evt")
    d = h["EVENTS"].data
    x, y = d["DET1X"].astype(int), d["DET1Y"].astype(int)
    ok = (x > 0) & (y > 0)
    did, raw = d["DET_ID"][ok], (d["RAWX"].astype(int) + 32 * d["RAWY"].astype(int))[ok]
    pix, det, _ = load_pixel_maps("A", auxil_dir=auxil_dir)
    assert np.mean(det[y[ok] - 1, x[ok] - 1] == did) == 1.0
    # Events are spread over the RAW pixel's PDF, so a few land on a neighbour's DET1 pixels (measured 95 %).
    assert np.mean(pix[y[ok] - 1, x[ok] - 1] == raw) > 0.9
    assert np.mean(pix[y[ok] - 1, x[ok] - 1] == raw) > np.mean(pix[y[ok], x[ok]] == raw) + 0.1
    assert np.mean(det[y[ok], x[ok]] == did) < 0.999


@pytest.mark.requires_data
def test_real_badpix_sources(data_dir, auxil_dir):
    evt = data_dir / "toa_extractor" / "nustar_test.evt.gz"
    imap = make_instrument_map(evt, auxil_dir=auxil_dir, use_caldb=False)
    bad = imap.bad_raw
    # By hand from the BADPIX rows: 6 + 11 + 2 + 5 = 19 RAW pixels, counting DET2 (31, 19) whose two
    # hot intervals (796 s + 11663 s) exceed 80 % of 14464 s only together.
    assert [int(b.sum()) for b in bad] == [1, 11, 2, 5]
    assert bad[2, 31 + 32 * 19] and bad[0, 30 + 32 * 10] and not bad[3, 27 + 32 * 26]
    pix, det, _ = load_pixel_maps("A", auxil_dir=auxil_dir)
    assigned = det >= 0
    expected = assigned & ~np.where(assigned, bad[np.clip(det, 0, 3), np.clip(pix, 0, 1023)], False)
    np.testing.assert_array_equal(imap.data > 0, expected)
    # A user bad-pixel file of the other observation adds its flagged pixels (flag value 1 with TIME=0).
    bp_file = data_dir / "nustarFittingExample" / "nu80415201001A_bp.fits"
    imap2 = make_instrument_map(evt, usrbpix=[bp_file], auxil_dir=auxil_dir, use_caldb=False)
    extra = [b for b in read_badpix(bp_file) if b.detector == 1]
    assert imap2.bad_raw[1, 3 + 32 * 5] and imap2.bad_raw.sum() >= bad.sum()
    assert len(extra) == 1
