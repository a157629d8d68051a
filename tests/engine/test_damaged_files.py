"""Damaged inputs never become results: FITS checksums verified on read, event values held to TLMIN/TLMAX.

A file of the right size with a few bytes changed reads without complaint by astropy; the
spectrum made from it has wrong counts. Files that carry CHECKSUM/DATASUM (every pipeline file,
every file this package writes) are checked against their bytes; event columns against the
limits their header declares. Real files whose checksums were left stale by the tool that
rewrote them (the solar ``*_sunpos.evt``) still read.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadFileError
from nuskybgd_engine.io.events import read_events
from nuskybgd_engine.io.fitsutil import read_fits

REGION = "fk5\ncircle(150.0,2.0,60\")\n"


def _column_byte(path, hdu_index, column, row):
    """File offset of the last (least significant, big-endian) byte of ``column`` in ``row``."""
    with fits.open(path) as hdul:
        start = hdul.fileinfo(hdu_index)["datLoc"]
        dtype = hdul[hdu_index].data.dtype
    offset = dtype.fields[column][1]
    return start + row * dtype.itemsize + offset + dtype.fields[column][0].itemsize - 1


def _flip(path, offset, mask=0x01):
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _with_limits(hdul, **limits):
    """Declare TLMIN/TLMAX (and TNULL) of EVENTS columns: ``PI=(0, 4095)`` or ``DET1X=(1, 360, -4095)``."""
    h = hdul["EVENTS"].header
    names = [n.upper() for n in hdul["EVENTS"].columns.names]
    for name, lim in limits.items():
        n = names.index(name) + 1
        h[f"TLMIN{n}"], h[f"TLMAX{n}"] = lim[:2]
        if len(lim) == 3:
            h[f"TNULL{n}"] = lim[2]
    return hdul


@pytest.fixture
def checksummed(tmp_path, event_hdul):
    """A pipeline-layout event file with CHECKSUM/DATASUM in every HDU, and a region on it."""
    path = tmp_path / "nu60001001002A01_cl.evt"
    _with_limits(event_hdul(n=400), PI=(0, 4095)).writeto(path, checksum=True)
    reg = tmp_path / "bgd.reg"
    reg.write_text(REGION)
    return path, reg


def test_intact_checksummed_file_reads(checksummed):
    assert len(read_events(checksummed[0])) == 400


def test_same_size_file_with_a_changed_byte_is_refused(checksummed, capsys, tmp_path):
    """PI of one event changed by one channel: still in range, still the same size, yet refused."""
    path, reg = checksummed
    _flip(path, _column_byte(path, 1, "PI", 10))
    with pytest.raises(BadFileError) as exc:
        read_events(path)
    msg = str(exc.value)
    assert str(path) in msg and "[EVENTS]" in msg and "DATASUM" in msg and "\n" not in msg
    # the CLI step that made a wrong spectrum with exit 0 now stops with one line, status 2
    assert main(["getspecnoarf", str(path), "--reg", str(reg), "--outdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[EVENTS]" in err and "DATASUM" in err
    assert not list(tmp_path.glob("*.pha"))


def test_damage_is_named_in_any_hdu(checksummed):
    path, _ = checksummed
    _flip(path, _column_byte(path, 2, "START", 0), 0x10)
    with pytest.raises(BadFileError, match=r"\[GTI\].*DATASUM"):
        read_fits(path)


def test_an_edited_header_with_intact_data_reads(checksummed):
    """A keyword changed by hand (CHECKSUM stale, DATASUM right) is not damage: real spectra have it."""
    path, _ = checksummed
    raw = path.read_bytes()
    assert raw.count(b"'SYNTH   '") >= 1
    path.write_bytes(raw.replace(b"'SYNTH   '", b"'SYNTX   '"))
    ev = read_events(path)
    assert ev.header["OBJECT"] == "SYNTX"


def test_checksums_no_hdu_satisfies_are_stale_not_damage(tmp_path, event_hdul):
    """A tool rewrote the data and kept the old keywords (as nustar_pysolar's sunpos files)."""
    path = tmp_path / "ev.evt"
    event_hdul(n=100).writeto(path, checksum=True)
    with fits.open(path) as hdul:
        hdul["EVENTS"].data["X"][:] += 1.0
        for hdu in hdul:  # the rewriting tool's keywords
            hdu.header["HISTORY"] = "coordinates converted"
        hdul.writeto(tmp_path / "rewritten.evt", checksum=False)
    with fits.open(tmp_path / "rewritten.evt") as hdul:
        assert "DATASUM" in hdul["EVENTS"].header  # stale keywords kept
        assert not any(h.verify_checksum() == 1 for h in hdul)
    assert len(read_events(tmp_path / "rewritten.evt")) == 100


@pytest.fixture
def bad_pi(tmp_path, event_hdul):
    """An event file without checksums whose PI is above TLMAX in 3 events, DET1X null in 2."""
    hdul = _with_limits(event_hdul(n=300), PI=(0, 4095), DET1X=(1, 360, -4095))
    d = hdul["EVENTS"].data
    d["PI"][[5, 50, 250]] = [4096, 9000, 70000]
    d["DET1X"][[7, 8]] = -4095  # nulls, not out of range
    path = tmp_path / "nu60001001002A01_cl.evt"
    hdul.writeto(path, checksum=False)
    reg = tmp_path / "bgd.reg"
    reg.write_text(REGION)
    return path, reg


def test_values_outside_tlmin_tlmax_are_an_error(bad_pi):
    with pytest.raises(BadFileError) as exc:
        read_events(bad_pi[0])
    msg = str(exc.value)
    assert "[EVENTS] PI" in msg and "3 events" in msg and "0..4095" in msg and "--drop-invalid" in msg


def test_drop_invalid_leaves_them_out_and_counts_them(bad_pi):
    ev = read_events(bad_pi[0], drop_invalid=True)
    assert len(ev) == 297 and ev.dropped == {"PI": 3, "total": 3}
    assert ev["PI"].max() <= 4095
    assert np.count_nonzero(ev["DET1X"] == -4095) == 2  # the nulls stay (not out of range)
    assert "dropped 3 of 300 events" in ev.dropped_note()


def test_cli_refuses_then_drops_with_a_count(bad_pi, tmp_path, capsys):
    path, reg = bad_pi
    argv = ["getspecnoarf", str(path), "--reg", str(reg), "--outdir", str(tmp_path), "--allow-empty", "yes"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "PI outside TLMIN..TLMAX" in err and "--drop-invalid" in err
    assert main([*argv, "--drop-invalid"]) == 0
    out = capsys.readouterr().out
    assert "dropped 3 of 300 events" in out
    assert main(["mkimgs", str(path), "3", "20", "--outdir", str(tmp_path)]) == 2
    assert main(["mkimgs", str(path), "3", "20", "--outdir", str(tmp_path), "--drop-invalid"]) == 0
    assert "dropped 3 of 300 events" in capsys.readouterr().out


def test_detector_columns_without_limits_are_held_to_the_detector(tmp_path, event_hdul):
    hdul = event_hdul(n=50)
    hdul["EVENTS"].data["RAWX"][3] = 40  # RAWX is 0..31 on every NuSTAR detector
    path = tmp_path / "ev.evt"
    hdul.writeto(path)
    with pytest.raises(BadFileError, match=r"RAWX outside TLMIN..TLMAX = 0..31"):
        read_events(path)


@pytest.mark.requires_data
def test_real_solar_file_reads_with_its_nulls_and_stale_checksums(data_dir):
    """Its X/Y were rewritten (heliocentric) under the pipeline's checksums; DET1X/DET1Y hold nulls."""
    path = next((data_dir / "nustar_sac").glob("*_cl_sunpos.evt"))
    ev = read_events(path)
    assert not ev.dropped and len(ev) == fits.getval(path, "NAXIS2", extname="EVENTS")
    assert np.any(ev["DET1X"] == -4095)
