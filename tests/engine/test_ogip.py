"""OGIP spectral files: PHA type I, RMF, ARF readers/writers, ARF pairing, folding, phafix."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits

from nuskybgd_engine.cli import main as cli_main
from nuskybgd_engine.commands.phafix import phafix
from nuskybgd_engine.errors import BadConfigError, BadFileError, OutputExistsError
from nuskybgd_engine.io.gti import Gti
from nuskybgd_engine.io.ogip import (
    Arf,
    Response,
    Spectrum,
    effective_matrix,
    fold,
    pair_arf,
    read_arf,
    read_pha,
    read_rmf,
    write_arf,
    write_pha,
    write_rmf,
)

# ------------------------------------------------------------------------------------------
# Synthetic fixtures
# ------------------------------------------------------------------------------------------


def make_spectrum(n=64, module="A", grouping=False):
    rng = np.random.default_rng(1)
    counts = rng.poisson(5.0, n).astype(np.int32)
    grp = qual = None
    if grouping:
        grp = np.where(np.arange(n) % 3 == 0, 1, -1).astype(np.int16)
        qual = np.zeros(n, np.int16)
        qual[-2:] = 2
    return Spectrum(
        channel=np.arange(n, dtype=np.int32),
        counts=counts,
        exposure=1234.5,
        backscal=0.0123,
        areascal=1.0,
        module=module,
        grouping=grp,
        quality=qual,
        header={"OBS_ID": "60001001002", "TELESCOP": "NuSTAR", "OBJECT": "TEST", "DATE-OBS": "2015-01-01T00:00:00",
                "RESPFILE": "src.rmf", "ANCRFILE": "none", "BACKFILE": "bgd.pha", "CORRFILE": "none",
                "LIVETIME": 1200.0},
        gti=Gti([100.0, 300.0], [200.0, 450.0]),
    )


def dense_response():
    """6 energy rows x 5 channels (first channel 1): two groups in row 1, empty row 4."""
    m = np.zeros((6, 5), np.float32)
    m[0, 0] = 1.0
    m[1, [0, 1]] = [0.25, 0.5]
    m[1, 4] = 0.25
    m[2, 1:4] = [0.2, 0.6, 0.2]
    m[3, 3] = 0.9
    m[5, 2:5] = [0.1, 0.1, 0.8]
    return m


def make_response(first_channel=1):
    m = dense_response()
    e = np.linspace(1.0, 7.0, 7).astype(np.float32)
    c = np.linspace(1.0, 6.0, 6).astype(np.float32)
    return Response(energ_lo=e[:-1], energ_hi=e[1:], e_min=c[:-1], e_max=c[1:], matrix=sp.csr_matrix(m),
                    first_channel=first_channel, module="B", header={"DETNAM": "DET0", "LO_THRES": 1e-6})


def write_handmade_rmf(path, *, layout, drop=None, instrume="FPMA"):
    """Write dense_response() with astropy directly (independent of write_rmf).

    layout 'vla': F_CHAN/N_CHAN/MATRIX variable-length with 0..2 groups per row;
    layout 'fixed': one group per row spanning channel 1..5 (F_CHAN scalar, MATRIX 5E).
    """
    m = dense_response()
    e = np.linspace(1.0, 7.0, 7).astype(np.float32)
    if layout == "vla":
        groups = [[(1, 1)], [(1, 2), (5, 1)], [(2, 3)], [(4, 1)], [], [(3, 3)]]  # (F_CHAN, N_CHAN), 1-based
        n_grp = np.array([len(g) for g in groups], np.int16)
        fch = np.array([np.array([f for f, _ in g], np.int32) for g in groups] + [None], dtype=object)[:-1]
        nch = np.array([np.array([n for _, n in g], np.int32) for g in groups] + [None], dtype=object)[:-1]
        mat = np.array([np.concatenate([m[i, f - 1: f - 1 + n] for f, n in g]) if g else np.zeros(0, np.float32)
                        for i, g in enumerate(groups)] + [None], dtype=object)[:-1]
        cols = [fits.Column(name="N_GRP", format="I", array=n_grp),
                fits.Column(name="F_CHAN", format="PJ()", array=fch),
                fits.Column(name="N_CHAN", format="PJ()", array=nch),
                fits.Column(name="MATRIX", format="PE()", array=mat)]
    else:
        cols = [fits.Column(name="N_GRP", format="I", array=np.ones(6, np.int16)),
                fits.Column(name="F_CHAN", format="J", array=np.ones(6, np.int32)),
                fits.Column(name="N_CHAN", format="J", array=np.full(6, 5, np.int32)),
                fits.Column(name="MATRIX", format="5E", array=m)]
    cols = [fits.Column(name="ENERG_LO", format="E", array=e[:-1]),
            fits.Column(name="ENERG_HI", format="E", array=e[1:])] + cols
    cols = [c for c in cols if c.name != drop]
    mat = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    names = [c.name for c in cols]
    if "F_CHAN" in names:
        mat.header[f"TLMIN{names.index('F_CHAN') + 1}"] = 1
    mat.header["HDUCLAS1"] = "RESPONSE"
    mat.header["HDUCLAS2"] = "RSP_MATRIX"
    mat.header["INSTRUME"] = instrume
    ebo = fits.BinTableHDU.from_columns([
        fits.Column(name="CHANNEL", format="J", array=np.arange(1, 6)),
        fits.Column(name="E_MIN", format="E", array=np.arange(1, 6, dtype=np.float32)),
        fits.Column(name="E_MAX", format="E", array=np.arange(2, 7, dtype=np.float32))], name="EBOUNDS")
    fits.HDUList([fits.PrimaryHDU(), mat, ebo]).writeto(path)
    return path


def make_arf(n=6, module="B"):
    e = np.linspace(1.0, 7.0, n + 1).astype(np.float32)
    return Arf(energ_lo=e[:-1], energ_hi=e[1:], specresp=np.linspace(10, 60, n).astype(np.float32), module=module,
               header={"TELESCOP": "NuSTAR"})


def assert_same_table(a, b):
    """Same columns and values (string padding NUL vs blank is not a difference)."""
    assert a.columns.names == b.columns.names
    for name in b.columns.names:
        np.testing.assert_array_equal(a.data[name], b.data[name], err_msg=name)


def truncate(path):
    data = Path(path).read_bytes()
    out = Path(path).with_name("trunc_" + Path(path).name)
    out.write_bytes(data[: len(data) - 2880 - 100])
    return out


# ------------------------------------------------------------------------------------------
# PHA
# ------------------------------------------------------------------------------------------


def test_pha_round_trip(tmp_path):
    s = make_spectrum(grouping=True)
    out = write_pha(s, tmp_path / "s.pha")
    r = read_pha(out)
    np.testing.assert_array_equal(r.channel, s.channel)
    np.testing.assert_array_equal(r.counts, s.counts)
    assert r.counts.dtype.kind == "i"
    np.testing.assert_array_equal(r.grouping, s.grouping)
    np.testing.assert_array_equal(r.quality, s.quality)
    assert r.exposure == s.exposure and r.backscal == pytest.approx(s.backscal) and r.areascal == 1.0
    assert r.module == "A" and r.header["INSTRUME"] == "FPMA"
    for key, value in s.header.items():
        assert r.header[key] == value, key
    np.testing.assert_array_equal(r.gti.start, s.gti.start)
    np.testing.assert_array_equal(r.gti.stop, s.gti.stop)
    with fits.open(out) as h:
        spec = h["SPECTRUM"].header
        assert (spec["HDUCLASS"], spec["HDUCLAS1"], spec["HDUCLAS3"], spec["CHANTYPE"]) == ("OGIP", "SPECTRUM",
                                                                                          "COUNT", "PI")
        assert spec["TLMIN1"] == 0 and spec["TLMAX1"] == 63 and spec["POISSERR"] is True
        assert h["SPECTRUM"].columns["COUNTS"].format == "J" and h["SPECTRUM"].columns["GROUPING"].format == "I"
        assert h[0].header["OBS_ID"] == "60001001002"
    assert "FPMA" in repr(r) and "60001001002" in repr(r)


def test_pha_round_trip_ungrouped_and_float_counts(tmp_path):
    s = make_spectrum()
    s.counts = s.counts + 0.25  # a model spectrum: non-integer counts are kept exactly
    r = read_pha(write_pha(s, tmp_path / "f.pha"))
    np.testing.assert_array_equal(r.counts, s.counts)
    assert r.grouping is None and r.quality is None
    with fits.open(tmp_path / "f.pha") as h:
        assert h[1].header["GROUPING"] == 0 and h[1].header["QUALITY"] == 0


def test_pha_gz_round_trip(tmp_path):
    s = make_spectrum()
    out = write_pha(s, tmp_path / "s.pha.gz")
    with gzip.open(out, "rb") as fh:  # really compressed
        assert fh.read(6) == b"SIMPLE"
    np.testing.assert_array_equal(read_pha(out).counts, s.counts)


def test_write_pha_refuses_to_overwrite(tmp_path):
    s = make_spectrum()
    write_pha(s, tmp_path / "s.pha")
    with pytest.raises(OutputExistsError):
        write_pha(s, tmp_path / "s.pha")
    s.counts = s.counts * 2
    write_pha(s, tmp_path / "s.pha", overwrite=True)
    np.testing.assert_array_equal(read_pha(tmp_path / "s.pha").counts, s.counts)


def test_spectrum_validates_arrays():
    with pytest.raises(BadConfigError, match="same length"):
        Spectrum(channel=np.arange(4), counts=np.arange(3), exposure=1.0)
    with pytest.raises(BadConfigError, match="grouping"):
        Spectrum(channel=np.arange(4), counts=np.arange(4), exposure=1.0, grouping=[1, -1])
    with pytest.raises(BadConfigError, match="Spectrum"):
        write_pha({"counts": [1]}, "x.pha")


def test_pha_rate_column_is_converted_to_counts(tmp_path):
    rate = np.array([0.5, 1.0, 0.0], np.float32)
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="CHANNEL", format="J", array=[0, 1, 2]),
                                         fits.Column(name="RATE", format="E", array=rate)], name="SPECTRUM")
    hdu.header["EXPOSURE"] = 100.0
    hdu.header["HDUCLAS1"] = "SPECTRUM"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "r.pha")
    s = read_pha(tmp_path / "r.pha")
    np.testing.assert_allclose(s.counts, [50.0, 100.0, 0.0])
    assert s.module is None and s.backscal == 1.0


def _pha_with(tmp_path, name, *, cols=None, header=None):
    cols = cols or [fits.Column(name="CHANNEL", format="J", array=np.arange(4)),
                    fits.Column(name="COUNTS", format="J", array=np.arange(4))]
    hdu = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    hdu.header["EXPOSURE"] = 10.0
    for k, v in (header or {}).items():
        hdu.header[k] = v
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    return path


def test_read_pha_bad_inputs(tmp_path):
    good = write_pha(make_spectrum(), tmp_path / "good.pha")
    with pytest.raises(BadFileError, match="trunc_good.pha") as e:
        read_pha(truncate(good))
    assert "\n" not in str(e.value)
    path = _pha_with(tmp_path, "nocounts.pha", cols=[fits.Column(name="CHANNEL", format="J", array=np.arange(4))])
    with pytest.raises(BadFileError, match="COUNTS") as e:
        read_pha(path)
    assert "nocounts.pha" in str(e.value) and "SPECTRUM" in str(e.value)
    with pytest.raises(BadFileError, match="INSTRUME") as e:
        read_pha(good, module="B")
    assert "good.pha" in str(e.value)
    assert read_pha(good, module="A").module == "A"
    with pytest.raises(BadConfigError, match="module"):
        read_pha(good, module="C")
    path = _pha_with(tmp_path, "noexp.pha", header={"EXPOSURE": None})
    with fits.open(path, mode="update") as h:
        del h[1].header["EXPOSURE"]
    with pytest.raises(BadFileError, match="EXPOSURE"):
        read_pha(path)
    path = _pha_with(tmp_path, "type2.pha", cols=[fits.Column(name="CHANNEL", format="4J", array=np.zeros((2, 4))),
                                                  fits.Column(name="COUNTS", format="4J", array=np.zeros((2, 4)))])
    with pytest.raises(BadFileError, match="type II"):
        read_pha(path)
    path = _pha_with(tmp_path, "neg.pha", cols=[fits.Column(name="CHANNEL", format="J", array=np.arange(2)),
                                                fits.Column(name="COUNTS", format="J", array=[1, -1])])
    with pytest.raises(BadFileError, match="negative"):
        read_pha(path)
    arf_path = write_arf(make_arf(), tmp_path / "x.arf")
    with pytest.raises(BadFileError, match="no SPECTRUM extension"):
        read_pha(arf_path)
    with pytest.raises(BadFileError, match="not found"):
        read_pha(tmp_path / "missing.pha")


# ------------------------------------------------------------------------------------------
# RMF
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["vla", "fixed"])
@pytest.mark.parametrize("fast", [True, False])
def test_read_handmade_rmf(tmp_path, layout, fast):
    path = write_handmade_rmf(tmp_path / f"{layout}.rmf", layout=layout)
    r = read_rmf(path, fast=fast)
    np.testing.assert_array_equal(r.matrix.toarray(), dense_response())
    assert r.first_channel == 1 and r.module == "A" and r.matrix.shape == (6, 5)
    np.testing.assert_array_equal(r.channel, np.arange(1, 6))
    assert r.matrix.nnz == np.count_nonzero(dense_response())  # explicit zeros dropped


def test_rmf_round_trip(tmp_path):
    resp = make_response()
    out = write_rmf(resp, tmp_path / "r.rmf")
    r = read_rmf(out)
    assert (r.matrix != resp.matrix).nnz == 0 and r.matrix.dtype == np.float32
    np.testing.assert_array_equal(r.energ_lo, resp.energ_lo)
    np.testing.assert_array_equal(r.e_max, resp.e_max)
    assert r.first_channel == 1 and r.module == "B" and r.header["DETNAM"] == "DET0"
    with fits.open(out) as h:
        m = h["MATRIX"]
        np.testing.assert_array_equal(m.data["N_GRP"], [1, 2, 1, 1, 0, 1])  # runs of consecutive channels
        np.testing.assert_array_equal(m.data["F_CHAN"][1], [1, 5])
        assert m.header["TLMIN4"] == 1 and m.header["HDUCLAS2"] == "RSP_MATRIX" and m.header["LO_THRES"] == 1e-6
        assert m.header["NUMELT"] == np.count_nonzero(dense_response())


def test_rmf_round_trip_float64_channel0(tmp_path):
    rng = np.random.default_rng(3)
    dense = rng.random((40, 30)) * (rng.random((40, 30)) < 0.2)
    e = np.linspace(1, 5, 41)
    resp = Response(energ_lo=e[:-1], energ_hi=e[1:], e_min=np.arange(30.0), e_max=np.arange(1.0, 31.0),
                    matrix=sp.csr_matrix(dense), first_channel=0)
    r = read_rmf(write_rmf(resp, tmp_path / "r64.rmf.gz"))
    np.testing.assert_array_equal(r.matrix.toarray(), dense)
    assert r.first_channel == 0 and r.module is None


def test_read_rmf_bad_inputs(tmp_path):
    good = write_handmade_rmf(tmp_path / "good.rmf", layout="vla")
    with pytest.raises(BadFileError, match="trunc_good.rmf"):
        read_rmf(truncate(good))
    for col in ("MATRIX", "F_CHAN", "ENERG_LO"):
        path = write_handmade_rmf(tmp_path / f"no_{col}.rmf", layout="vla", drop=col)
        with pytest.raises(BadFileError, match=col) as e:
            read_rmf(path)
        assert f"no_{col}.rmf" in str(e.value) and "MATRIX" in str(e.value)
    with pytest.raises(BadFileError, match="INSTRUME") as e:
        read_rmf(good, module="B")
    assert "good.rmf" in str(e.value)
    pha = write_pha(make_spectrum(), tmp_path / "s.pha")
    with pytest.raises(BadFileError, match="no MATRIX extension"):
        read_rmf(pha)


def test_write_rmf_refuses_to_overwrite(tmp_path):
    write_rmf(make_response(), tmp_path / "r.rmf")
    with pytest.raises(OutputExistsError):
        write_rmf(make_response(), tmp_path / "r.rmf")


# ------------------------------------------------------------------------------------------
# ARF, pairing, folding
# ------------------------------------------------------------------------------------------


def test_arf_round_trip(tmp_path):
    arf = make_arf()
    r = read_arf(write_arf(arf, tmp_path / "a.arf"))
    np.testing.assert_array_equal(r.specresp, arf.specresp)
    np.testing.assert_array_equal(r.energ_hi, arf.energ_hi)
    assert r.specresp.dtype == np.float32 and r.module == "B" and r.header["HDUCLAS2"] == "SPECRESP"
    with pytest.raises(OutputExistsError):
        write_arf(arf, tmp_path / "a.arf")


def test_read_arf_bad_inputs(tmp_path):
    good = write_arf(make_arf(), tmp_path / "good.arf")
    with pytest.raises(BadFileError, match="trunc_good.arf"):
        read_arf(truncate(good))
    with pytest.raises(BadFileError, match="INSTRUME"):
        read_arf(good, module="A")
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="ENERG_LO", format="E", array=[1.0]),
                                         fits.Column(name="ENERG_HI", format="E", array=[2.0])], name="SPECRESP")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp_path / "nospec.arf")
    with pytest.raises(BadFileError, match="SPECRESP") as e:
        read_arf(tmp_path / "nospec.arf")
    assert "nospec.arf" in str(e.value) and "missing" in str(e.value)


def test_pair_arf_by_row_and_mismatch(tmp_path):
    resp = make_response()
    arf = make_arf()
    p = pair_arf(resp, arf)
    assert p.energies_match and p.note is None
    np.testing.assert_array_equal(p.specresp, arf.specresp)
    shifted = make_arf()
    shifted.energ_lo = np.round(shifted.energ_lo * 1.07, 1)  # rounded, wrong energies: still paired by row
    p = pair_arf(resp, shifted, path="rounded.arf")
    assert not p.energies_match and "rounded.arf" in p.note and "row index" in p.note
    np.testing.assert_array_equal(p.specresp, arf.specresp)
    with pytest.raises(BadFileError, match="5 energy rows") as e:
        pair_arf(resp, make_arf(n=5), path="short.arf")
    assert "short.arf" in str(e.value)


def test_fold_delta_and_arf_by_hand():
    resp = make_response()
    arf = make_arf()
    flux = np.zeros(6)
    flux[1] = 2.0  # photons/cm^2/s in energy bin 1 only
    np.testing.assert_allclose(fold(resp, flux), 2.0 * dense_response()[1])
    # with the ARF: row 1 area is 20 cm^2 -> 40 photons/s redistributed as row 1
    np.testing.assert_allclose(fold(resp, flux, arf=arf), 40.0 * dense_response()[1], rtol=1e-6)
    # general flux against the dense formula C = (F a) @ R
    f = np.arange(1.0, 7.0)
    expected = (f * arf.specresp.astype(float)) @ dense_response().astype(float)
    np.testing.assert_allclose(fold(resp, f, arf=arf), expected, rtol=1e-6)
    eff = effective_matrix(resp, arf)
    np.testing.assert_allclose(fold(eff, f), expected, rtol=1e-6)
    np.testing.assert_allclose(eff.toarray(), arf.specresp.astype(float)[:, None] * dense_response(), rtol=1e-6)
    with pytest.raises(BadConfigError, match="flux"):
        fold(resp, np.ones(5))
    with pytest.raises(BadConfigError, match="arf"):
        fold(resp, f, arf=np.ones(3))


# ------------------------------------------------------------------------------------------
# Real files
# ------------------------------------------------------------------------------------------

REAL_PHA = [
    "nustar_axions/nu20211002001_sun_centerA_sr.pha",
    "nustarFittingExample/nu80415201001A06_chu2_S_cl_grade0_sr.pha",
    "nustarFittingExample/nu80415201001B06_chu2_S_cl_grade0_sr.pha",
    "nustar_background/nu30001039002_srcA_sr.pha",
] + [f"nustar_background/epoch0_det{d}_FPM{m}_repro.pha" for d in range(4) for m in "AB"]


@pytest.mark.requires_data
@pytest.mark.parametrize("name", REAL_PHA)
def test_read_real_pha_and_round_trip(data_dir, tmp_path, name):
    path = data_dir / name
    s = read_pha(path)
    with fits.open(path) as h:  # independent read with astropy
        np.testing.assert_array_equal(s.counts, h["SPECTRUM"].data["COUNTS"])
        assert s.exposure == h["SPECTRUM"].header["EXPOSURE"]
        assert s.header.get("OBS_ID") == h["SPECTRUM"].header.get("OBS_ID")
        n_ext = len(h) - 2
    assert len(s.channel) == 4096 and s.channel[0] == 0 and s.channel[-1] == 4095
    assert len(s.extra_hdus) == n_ext
    # The stacked FPMB background spectra inherit INSTRUME=FPMA from the first observation.
    assert s.module == ("B" if "B06" in name else "A")
    r = read_pha(write_pha(s, tmp_path / "rt.pha"))
    np.testing.assert_array_equal(r.counts, s.counts)
    for key, value in s.header.items():
        assert r.header[key] == value, key
    assert [h.name for h in r.extra_hdus] == [h.name for h in s.extra_hdus]
    for a, b in zip(r.extra_hdus, s.extra_hdus):
        assert_same_table(a, b)
        skip = ("CHECKSUM", "DATASUM")
        assert {k: v for k, v in a.header.items() if k not in skip} == {
            k: v for k, v in b.header.items() if k not in skip}
    if s.gti is not None:
        np.testing.assert_array_equal(r.gti.start, s.gti.start)


@pytest.mark.requires_data
def test_real_pha_wrong_module(data_dir):
    path = data_dir / "nustar_axions/nu20211002001_sun_centerA_sr.pha"
    with pytest.raises(BadFileError, match="INSTRUME") as e:
        read_pha(path, module="B")
    assert "nu20211002001_sun_centerA_sr.pha" in str(e.value)


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_caldb_rmf(data_dir):
    path = data_dir / "caldb-rmf-hendrics/nuAdet3_20100101v002.rmf.gz"
    r = read_rmf(path)
    assert r.matrix.shape == (4096, 4096) and r.first_channel == 0 and r.module == "A"
    c = np.arange(4096)
    np.testing.assert_allclose(r.e_min, 1.6 + 0.04 * c, atol=1e-4)
    np.testing.assert_allclose(r.e_max, 1.64 + 0.04 * c, atol=1e-4)
    np.testing.assert_allclose(r.energ_lo, 1.6 + 0.04 * c, atol=1e-4)
    rows = np.asarray(r.matrix.sum(axis=1)).ravel()
    # Probabilities: non-negative; row sums <= 1 up to the file's own normalisation (max 1.0096).
    assert r.matrix.data.min() > 0 and rows.max() < 1.01
    # Independent check of a few rows against astropy's own VLA decoding.
    with fits.open(path) as h:
        d = h["MATRIX"].data
        for i in (0, 100, 1356, 4095):
            np.testing.assert_array_equal(r.matrix[i].toarray().ravel(), d["MATRIX"][i])


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_rmf_round_trip(data_dir, tmp_path):
    r = read_rmf(data_dir / "caldb-rmf-hendrics/nuAdet3_20100101v002.rmf.gz")
    back = read_rmf(write_rmf(r, tmp_path / "det3.rmf"))
    assert (back.matrix != r.matrix).nnz == 0 and back.matrix.dtype == np.float32
    np.testing.assert_array_equal(back.energ_hi, r.energ_hi)
    np.testing.assert_array_equal(back.e_min, r.e_min)
    assert back.module == "A" and back.header["DETNAM"] == "DET3" and back.first_channel == 0


@pytest.mark.requires_data
def test_diag_rmf_is_identity(auxil_dir):
    r = read_rmf(auxil_dir / "diag.rmf")
    assert r.module is None and r.matrix.shape == (4096, 4096)
    assert abs(r.matrix - sp.identity(4096)).max() == 0
    flux = np.random.default_rng(0).random(4096)
    np.testing.assert_allclose(fold(r, flux), flux, rtol=1e-15)


@pytest.mark.requires_data
def test_real_arfs_and_be_arf_pairing(auxil_dir, data_dir):
    diag = read_rmf(auxil_dir / "diag.rmf")
    be = read_arf(auxil_dir / "be.arf")
    p = pair_arf(diag, be)
    assert not p.energies_match and "be.arf" in p.note and "2921 zero-width" in p.note
    np.testing.assert_array_equal(p.specresp, be.specresp)
    # Spec §5 quotes each value at its bin's upper edge: row 9 is 1.96-2.00 keV, row 34 2.96-3.00 keV.
    assert p.specresp[0] == pytest.approx(0.0599, rel=1e-2)  # 0.0599 at 1.6 keV
    assert p.specresp[9] == pytest.approx(0.214, rel=1e-2)  # 0.214 at 2 keV
    assert p.specresp[34] == pytest.approx(0.644, rel=1e-2)  # 0.644 at 3 keV
    fa = read_arf(auxil_dir / "fcxbA.arf")
    pa = pair_arf(diag, fa)
    assert pa.energies_match and pa.note is None
    assert fa.specresp[9] == pytest.approx(8.9, rel=0.02)  # spec §5: 8.9 cm^2 at 2 keV
    assert fa.specresp[34] == pytest.approx(101, rel=0.02)  # 101 cm^2 at 3 keV
    # be.arf counts through diag.rmf = area by row (identity response).
    np.testing.assert_allclose(fold(diag, np.ones(4096), arf=p), be.specresp, rtol=1e-7)
    for path in [auxil_dir / "template.arf", auxil_dir / "fcxbB.arf",
                 data_dir / "nustar_axions/nu20211002001_sun_centerA_sr.arf",
                 data_dir / "nustar-gen-utils/nu40101010002_srcA_sr.arf",
                 data_dir / "nustarFittingExample/nu80415201001B06_chu2_S_cl_grade0_sr.arf",
                 data_dir / "caldb-detabs-arf-mccal/nuA20100101v006.arf"]:
        a = read_arf(path)
        assert len(a.specresp) == 4096 and pair_arf(diag, a).energies_match, path.name
    assert read_arf(auxil_dir / "fcxbB.arf").module == "B"


# ------------------------------------------------------------------------------------------
# phafix
# ------------------------------------------------------------------------------------------


def test_phafix_strips_directories(tmp_path):
    s = make_spectrum()
    s.header.update({"RESPFILE": "/data/obs/event_cl/src.rmf", "BACKFILE": "../bgd/bgd.pha",
                     "ANCRFILE": "none", "CORRFILE": "NONE"})
    path = write_pha(s, tmp_path / "s.pha")
    changes = phafix(path)
    assert {(k, new) for _, k, _, new in changes} == {("RESPFILE", "src.rmf"), ("BACKFILE", "bgd.pha")}
    r = read_pha(path)
    assert (r.header["RESPFILE"], r.header["BACKFILE"], r.header["ANCRFILE"], r.header["CORRFILE"]) == (
        "src.rmf", "bgd.pha", "none", "NONE")
    np.testing.assert_array_equal(r.counts, s.counts)
    assert phafix(path) == []  # idempotent
    gz = write_pha(s, tmp_path / "s.pha.gz")
    assert len(phafix(gz)) == 2
    with gzip.open(gz, "rb") as fh:  # still gzip-compressed after the in-place rewrite
        assert fh.read(6) == b"SIMPLE"
    assert read_pha(gz).header["RESPFILE"] == "src.rmf"


def test_phafix_every_spectrum_hdu_and_cli(tmp_path, capsys):
    hdus = [fits.PrimaryHDU()]
    for i in range(2):
        h = fits.BinTableHDU.from_columns([fits.Column(name="CHANNEL", format="J", array=[0, 1]),
                                           fits.Column(name="COUNTS", format="J", array=[3, 4])])
        h.header["HDUCLAS1"] = "SPECTRUM"
        h.header["EXTNAME"] = f"SPEC{i}"
        h.header["RESPFILE"] = f"/a/b/r{i}.rmf"
        hdus.append(h)
    path = tmp_path / "two.pha"
    fits.HDUList(hdus).writeto(path)
    assert cli_main(["phafix", str(path)]) == 0
    assert "r1.rmf" in capsys.readouterr().out
    with fits.open(path) as h:
        assert h[1].header["RESPFILE"] == "r0.rmf" and h[2].header["RESPFILE"] == "r1.rmf"
        assert h.__len__() == 3 and list(h[2].data["COUNTS"]) == [3, 4]


def test_phafix_rejects_non_pha_and_changes_nothing(tmp_path, capsys):
    s = make_spectrum()
    s.header["RESPFILE"] = "/x/y.rmf"
    pha = write_pha(s, tmp_path / "s.pha")
    arf = write_arf(make_arf(), tmp_path / "a.arf")
    before = pha.read_bytes()
    assert cli_main(["phafix", str(pha), str(arf)]) == 2
    err = capsys.readouterr().err
    assert "a.arf" in err and "SPECTRUM" in err and len(err.strip().splitlines()) == 1
    assert pha.read_bytes() == before
    with pytest.raises(BadFileError):
        phafix(truncate(pha))


@pytest.mark.requires_data
def test_phafix_real_file_copy(data_dir, tmp_path):
    src = data_dir / "nustar_axions/nu20211002001_sun_centerA_sr.pha"
    path = tmp_path / src.name
    shutil.copy(src, path)
    path.chmod(0o644)
    with fits.open(path, mode="update") as h:
        h["SPECTRUM"].header["ANCRFILE"] = ("/home/user/products/nu20211002001_sun_centerA_sr.arf", "")
    phafix(path)
    with fits.open(path) as new, fits.open(src) as old:
        assert new["SPECTRUM"].header["ANCRFILE"] == old["SPECTRUM"].header["ANCRFILE"]
        assert [h.name for h in new] == [h.name for h in old]
        for a, b in zip(new, old):
            if isinstance(b, fits.BinTableHDU):
                assert_same_table(a, b)
            elif b.data is not None:
                np.testing.assert_array_equal(a.data, b.data)
