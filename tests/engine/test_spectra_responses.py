"""Region responses: RMF mixing, CALDB per-detector RMFs, DETABS, aperture ARF, absrmf, imrefspec."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits
from scipy.integrate import quad

from nuskybgd_engine.cli import main
from nuskybgd_engine.constants import channel_edges
from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.io.events import read_events
from nuskybgd_engine.io.ogip import Arf, Response, read_arf, read_pha, read_rmf, write_arf, write_rmf
from nuskybgd_engine.spectra import responses as R
from nuskybgd_engine.spectra.refspec import reference_spectrum

from ..conftest import make_event_hdul

N = 4096
EDGES = channel_edges()


def _rmf(matrix, module="A", detnam=None):
    lo, hi = EDGES[:-1], EDGES[1:]
    n_e, n_c = matrix.shape
    header = {"TELESCOP": "NuSTAR", "INSTRUME": f"FPM{module}"}
    if detnam:
        header["DETNAM"] = detnam
    return Response(energ_lo=lo[:n_e], energ_hi=hi[:n_e], e_min=lo[:n_c], e_max=hi[:n_c],
                    matrix=sp.csr_matrix(matrix), module=module, header=header)


def _det_matrix(n, size=N):
    """Detector n's toy response: peak p_n at the channel, 1 - p_n - 0.02 three channels (n+1) below."""
    p = 0.9 - 0.1 * n
    rows = np.arange(size)
    m = sp.lil_matrix((size, size), dtype=np.float32)
    m[rows, rows] = p
    below = np.maximum(rows - (n + 1), 0)
    m[rows, below] = m[rows, below].toarray().ravel() + (0.98 - p)
    return m.tocsr()


def _detabs_values(n):
    e = 0.5 * (EDGES[:-1] + EDGES[1:])
    return (1.0 - (0.5 + 0.05 * n) * np.exp(-e / 5.0)).astype(np.float32)


def _write_detabs(path, module="A", n_ext=4):
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["INSTRUME"] = f"FPM{module}"
    hdus[0].header["TELESCOP"] = "NuSTAR"
    for n in reversed(range(n_ext)):  # reversed: DETNAM, not the order, decides
        t = fits.BinTableHDU.from_columns([
            fits.Column(name="ENERG_LO", format="E", array=EDGES[:-1]),
            fits.Column(name="ENERG_HI", format="E", array=EDGES[1:]),
            fits.Column(name="DETABS", format="E", array=_detabs_values(n))], name="DETABS")
        t.header["DETNAM"] = f"DET{n}"
        t.header["INSTRUME"] = f"FPM{module}"
        hdus.append(t)
    fits.HDUList(hdus).writeto(path)
    return path


def _att():
    e = 0.5 * (EDGES[:-1] + EDGES[1:])
    return (np.exp(-2.0 / e**2)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Mixing and DETABS on small matrices
# ---------------------------------------------------------------------------------------------


def test_mixed_rmf_equals_hand_mix():
    rng = np.random.default_rng(0)
    mats = [rng.uniform(0, 1, (6, 5)) * (rng.uniform(size=(6, 5)) > 0.4) for _ in range(4)]
    mats = [m / (m.sum(1, keepdims=True) + 1.0) for m in mats]
    rmfs = [_rmf(m) for m in mats]
    w = [3, 0, 1, 6]
    got = R.mixed_rmf(w, rmfs).matrix.toarray()
    expect = (3 * mats[0] + 1 * mats[2] + 6 * mats[3]) / 10
    assert np.allclose(got, expect, rtol=1e-12, atol=0)
    mixed = R.mixed_rmf(w, rmfs)
    assert mixed.header["RMFWGT3"] == pytest.approx(0.6) and mixed.header["DETNAM"] == "MIXED"
    # Zero-weight RMFs are not needed at all.
    assert np.allclose(R.mixed_rmf([1, 0, 0, 1], [rmfs[0], None, None, rmfs[3]]).matrix.toarray(),
                       (mats[0] + mats[3]) / 2)


def test_mixed_rmf_rejects_bad_input():
    a = _rmf(np.eye(4))
    with pytest.raises(BadConfigError) as err:
        R.mixed_rmf([1, -1, 0, 0], [a] * 4)
    assert err.value.field == "weights"
    with pytest.raises(BadConfigError):
        R.mixed_rmf([0, 0, 0, 0], [a] * 4)
    with pytest.raises(BadConfigError):
        R.mixed_rmf([1, 1], [a] * 4)
    with pytest.raises(BadFileError) as err:
        R.mixed_rmf([1, 1], [a, _rmf(np.eye(5))])
    assert err.value.field == "MATRIX"
    shifted = _rmf(np.eye(4))
    shifted.energ_lo = shifted.energ_lo + 1.0
    with pytest.raises(BadFileError) as err:
        R.mixed_rmf([1, 1], [a, shifted])
    assert err.value.field == "ENERG_LO"


def test_apply_detabs_scales_energy_rows_not_channels(tmp_path):
    m = np.array([[0.6, 0.3, 0.0], [0.1, 0.5, 0.3], [0.0, 0.2, 0.7]])
    rmf = _rmf(m)
    det = R.DetAbs(energ_lo=rmf.energ_lo, energ_hi=rmf.energ_hi,
                   detabs=np.array([[0.5, 0.6, 0.7], [0.9, 0.9, 0.9], [1, 1, 1], [0.1, 0.2, 0.3]]))
    out = R.apply_detabs(rmf, det, [1, 0, 0, 1])
    a = 0.5 * (det.detabs[0] + det.detabs[3])
    assert np.allclose(out.matrix.toarray(), a[:, None] * m)
    assert not np.allclose(out.matrix.toarray(), m * a[None, :])  # the seed's channel scaling differs
    assert np.array_equal(rmf.matrix.toarray(), m)  # input untouched
    assert out.header["DETABSW0"] == 0.5
    with pytest.raises(BadFileError) as err:
        R.apply_detabs(_rmf(np.eye(4)), det, [1, 0, 0, 0])
    assert err.value.field == "DETABS"


def test_read_detabs_orders_by_detnam_and_validates(tmp_path):
    det = R.read_detabs(_write_detabs(tmp_path / "d.fits"), module="A")
    assert det.module == "A" and det.detabs.shape == (4, N)
    for n in range(4):
        assert np.array_equal(det.detabs[n], _detabs_values(n))
    with pytest.raises(BadFileError) as err:
        R.read_detabs(tmp_path / "d.fits", module="B")
    assert err.value.field == "INSTRUME"
    with pytest.raises(BadFileError) as err:
        R.read_detabs(_write_detabs(tmp_path / "d3.fits", n_ext=3))
    assert err.value.field == "DETABS" and err.value.path.endswith("d3.fits")


@pytest.mark.requires_data
def test_read_real_detabs(data_dir):
    path = data_dir / "caldb-detabs-arf-mccal/nuAdetabs20100101v002.fits"
    det = R.read_detabs(path, module="A")
    with fits.open(path) as h:
        for n in range(4):
            assert h[n + 1].header["DETNAM"] == f"DET{n}"
            assert np.array_equal(det.detabs[n], h[n + 1].data["DETABS"].astype(float))
    assert det.detabs.shape == (4, 4096) and 0.4 < det.detabs.min() and det.detabs.max() < 1.0
    assert det.energ_lo[0] == pytest.approx(1.6) and det.energ_hi[-1] == pytest.approx(165.44)


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_rmf_mix_and_row_sums(data_dir):
    real = read_rmf(data_dir / "caldb-rmf-hendrics/nuAdet3_20100101v002.rmf.gz")
    det = R.read_detabs(data_dir / "caldb-detabs-arf-mccal/nuAdetabs20100101v002.fits")
    absorbed = R.apply_detabs(real, det, [0, 0, 0, 1])
    mixed = R.mixed_rmf([1, 0, 0, 3], [real, None, None, absorbed])
    rows = [10, 500, 2000]
    a = det.detabs[3][rows]
    expect = real.matrix[rows].toarray() * (0.25 + 0.75 * a)[:, None]
    assert np.allclose(mixed.matrix[rows].toarray(), expect, rtol=1e-6, atol=1e-12)
    sums = np.asarray(mixed.matrix.sum(axis=1)).ravel()
    assert sums.max() < 1.01  # the real RMF's own normalisation reaches 1.0096 (see test_ogip)


def test_nominal_region_rmf_rows_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.delenv("CALDB", raising=False)
    path = tmp_path / "e.evt"
    make_event_hdul().writeto(path)
    ev = read_events(path)
    rmf, source = R.region_rmf(ev, [5, 0, 2, 1])
    assert source == "nominal" and rmf.matrix.shape == (N, N)
    sums = np.asarray(rmf.matrix.sum(axis=1)).ravel()
    assert sums.max() < 1.01 and sums.min() >= 0
    # Resolution: a 20 keV row peaks at the 20 keV channel with a FWHM of about 0.4-0.6 keV.
    row = rmf.matrix[int((20 - 1.6) / 0.04)].toarray().ravel()
    assert abs(np.argmax(row) - int((20 - 1.6) / 0.04)) <= 1
    fwhm = np.sum(row >= row.max() / 2) * 0.04
    assert 0.3 < fwhm < 0.8
    write_rmf(rmf, tmp_path / "r.rmf")
    back = read_rmf(tmp_path / "r.rmf", module="A")
    assert (back.matrix != rmf.matrix).nnz == 0


# ---------------------------------------------------------------------------------------------
# A tiny CALDB
# ---------------------------------------------------------------------------------------------

D = "data/nustar/fpm/bcf"


def _write_caldb(root, module="A"):
    rows = [("NUSTAR", f"FPM{module}", f"DET{n}", "GRPRMF", "2010-01-01", "00:00:00", f"{D}/rmf",
             f"nu{module}grprmf20100101v001.fits", "DEPTHCUT(NOMINAL)", n + 1) for n in range(4)]
    rows += [("NUSTAR", f"FPM{module}", "-", "DETABS", "2010-01-01", "00:00:00", f"{D}/detabs",
              f"nu{module}detabs20100101v002.fits", "NONE", 1),
             ("NUSTAR", "FPM", "-", "BEABSPAR", "2010-01-01", "00:00:00", f"{D}/beabs", "nuCbeabs20100101v001.fits",
              "NONE", 1)]
    names = ["TELESCOP", "INSTRUME", "DETNAM", "CAL_CNAM", "CAL_VSD", "CAL_VST", "CAL_DIR", "CAL_FILE", "CAL_CBD"]
    cols = [fits.Column(name=k, format="70A", array=[r[i] for r in rows]) for i, k in enumerate(names)]
    cols += [fits.Column(name="CAL_QUAL", format="I", array=[0] * len(rows)),
             fits.Column(name="CAL_XNO", format="I", array=[r[9] for r in rows])]
    index = root / "data/nustar/fpm/caldb.indx"
    index.parent.mkdir(parents=True)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="CIF")]).writeto(index)
    rmfdir = root / D / "rmf"
    rmfdir.mkdir(parents=True)
    grp = [fits.PrimaryHDU()]
    for n in range(4):
        write_rmf(_rmf(_det_matrix(n), module, f"DET{n}"), rmfdir / f"nu{module}det{n}_v1.rmf")
        grp.append(fits.BinTableHDU.from_columns(
            [fits.Column(name="RMFFILE", format="40A", array=[f"nu{module}det{n}_v1.rmf", "decoy.rmf"])],
            name="GRPRMF"))
    fits.HDUList(grp).writeto(rmfdir / f"nu{module}grprmf20100101v001.fits")
    (root / D / "detabs").mkdir(parents=True)
    _write_detabs(root / D / "detabs" / f"nu{module}detabs20100101v002.fits", module)
    (root / D / "beabs").mkdir(parents=True)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="ATT", format="E", array=_att())], name="BEABSPAR")]).writeto(
        root / D / "beabs/nuCbeabs20100101v001.fits")
    return root


@pytest.fixture
def caldb(tmp_path, monkeypatch):
    root = _write_caldb(tmp_path / "caldb")
    monkeypatch.setenv("CALDB", str(root))
    return root


@pytest.mark.slow
def test_caldb_region_rmf_is_the_count_weighted_mix(tmp_path, caldb):
    paths = R.caldb_detector_rmf_paths("A", date="2020-01-01T00:00:00")
    assert [p.name for p in paths] == [f"nuAdet{n}_v1.rmf" for n in range(4)]
    path = tmp_path / "e.evt"
    make_event_hdul().writeto(path)
    rmf, source = R.region_rmf(read_events(path), [10, 0, 30, 60])
    assert source == "caldb"
    rows = slice(0, 50)
    expect = (0.1 * _det_matrix(0)[rows] + 0.3 * _det_matrix(2)[rows] + 0.6 * _det_matrix(3)[rows]).toarray()
    assert np.allclose(rmf.matrix[rows].toarray(), expect, rtol=1e-6, atol=1e-7)
    assert np.asarray(rmf.matrix.sum(axis=1)).max() <= 1.0 + 1e-6


def test_region_arf_is_be_times_weighted_detabs(tmp_path, caldb):
    arf, sources = R.region_arf("A", [1, 3, 0, 0], date="2020-01-01T00:00:00")
    assert sources["be"] == "caldb"
    expect = _att().astype(float) * (0.25 * _detabs_values(0) + 0.75 * _detabs_values(1))
    assert np.allclose(arf.specresp, expect, rtol=1e-6)
    assert arf.energ_lo[0] == pytest.approx(1.6) and arf.energ_hi[-1] == pytest.approx(165.44, rel=1e-6)
    write_arf(arf, tmp_path / "a.arf")
    back = read_arf(tmp_path / "a.arf", module="A")
    assert np.array_equal(back.specresp, arf.specresp)
    # Without CALDB's BEABSPAR, be.arf values are used by row index.
    be = np.full(N, 0.5)
    arf2, _ = R.region_arf("A", [1, 0, 0, 0], be=be, detabs=caldb / D / "detabs/nuAdetabs20100101v002.fits")
    assert np.allclose(arf2.specresp, 0.5 * _detabs_values(0), rtol=1e-6)


@pytest.mark.slow
def test_getspecnoarf_with_caldb_and_arf(tmp_path, caldb):
    hdul = make_event_hdul(n=3000, seed=9)
    hdul.writeto(tmp_path / "e.evt")
    (tmp_path / "s.reg").write_text("image\ncircle(500,500,150)\n")
    assert main(["getspecnoarf", str(tmp_path / "e.evt"), f"reg={tmp_path / 's.reg'}", f"outdir={tmp_path}",
                 "arf=yes"]) == 0
    d = hdul["EVENTS"].data
    # Event pixel = nearest pixel centre, floor(X - 1 + 0.5); ds9 (500, 500) is array pixel 499.
    inside = (np.floor(d["X"] - 0.5) - 499) ** 2 + (np.floor(d["Y"] - 0.5) - 499) ** 2 < 150**2
    counts = np.bincount(d["DET_ID"][inside], minlength=4).astype(float)
    assert counts.sum() > 100
    w = counts / counts.sum()
    rmf = read_rmf(tmp_path / "s_sr.rmf", module="A")
    rows = slice(100, 140)
    expect = sum(w[n] * _det_matrix(n)[rows].toarray() for n in range(4))
    assert np.allclose(rmf.matrix[rows].toarray(), expect, rtol=1e-5, atol=1e-7)
    arf = read_arf(tmp_path / "s_sr_nsb.arf", module="A")
    expect_arf = _att() * sum(w[n] * _detabs_values(n) for n in range(4))
    assert np.allclose(arf.specresp, expect_arf, rtol=1e-5)
    assert read_pha(tmp_path / "s_sr.pha").total_counts == counts.sum()


@pytest.mark.slow
def test_absrmf_outputs_and_module_check(tmp_path, caldb, capsys):
    make_event_hdul().writeto(tmp_path / "e.evt")
    out = tmp_path / "det"
    assert main(["absrmf", str(tmp_path / "e.evt"), str(out)]) == 0
    for n in range(4):
        r = read_rmf(tmp_path / f"det{n}A.rmf", module="A")
        rows = slice(0, 30)
        expect = _detabs_values(n)[rows, None] * _det_matrix(n)[rows].toarray()
        assert np.allclose(r.matrix[rows].toarray(), expect, rtol=1e-6, atol=1e-8)
        assert fits.getheader(tmp_path / f"det{n}A.rmf", "MATRIX")["DETNAM"] == f"DET{n}"
    assert main(["absrmf", str(tmp_path / "e.evt"), str(out)]) == 2
    assert "output exists" in capsys.readouterr().err
    # An RMF of the other module is refused and nothing is written.
    write_rmf(_rmf(_det_matrix(0), "B"), tmp_path / "b.rmf")
    assert main(["absrmf", str(tmp_path / "e.evt"), str(tmp_path / "x"), f"rmffile={tmp_path / 'b.rmf'}"]) == 2
    err = capsys.readouterr().err
    assert "b.rmf" in err and "INSTRUME" in err
    assert not list(tmp_path.glob("x*.rmf"))


# ---------------------------------------------------------------------------------------------
# Reference spectra
# ---------------------------------------------------------------------------------------------


def _cutoffpl_bin(lo, hi, gamma=1.29, ecut=41.13, norm=0.002353):
    return norm * quad(lambda e: e ** -gamma * np.exp(-e / ecut), lo, hi)[0]


def test_reference_spectrum_matches_direct_integration():
    rmf = _rmf(sp.identity(N, format="csr") * 0.5)
    area = np.full(N, 100.0)
    spec = reference_spectrum(rmf, area, exposure=1e9)
    for c in (0, 85, 400, 2000):
        expect = 1e9 * 100.0 * 0.5 * _cutoffpl_bin(EDGES[c], EDGES[c + 1])
        assert spec.counts[c] == pytest.approx(expect, rel=1e-6)
    with pytest.raises(BadConfigError):
        reference_spectrum(rmf, area, exposure=0)


def test_imrefspec_command(tmp_path, monkeypatch, capsys):
    auxil = tmp_path / "auxil"
    auxil.mkdir()
    lo, hi = EDGES[:-1], EDGES[1:]
    write_arf(Arf(lo, hi, np.full(N, 0.5), module="A"), auxil / "be.arf")
    write_arf(Arf(lo, hi, np.full(N, 200.0), module="A"), auxil / "fcxbA.arf")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil))
    write_rmf(_rmf(sp.identity(N, format="csr", dtype=np.float32)), tmp_path / "det2A.rmf")
    monkeypatch.chdir(tmp_path)
    assert main(["imrefspec", "AB", "0123"]) == 0
    out = capsys.readouterr().out
    assert "skipped FPMB det3" in out
    assert sorted(p.name for p in tmp_path.glob("*bgd*.pha")) == ["aperbgdA_det2.pha", "fcxbbgdA_det2.pha"]
    aper, fcxb = read_pha(tmp_path / "aperbgdA_det2.pha"), read_pha(tmp_path / "fcxbbgdA_det2.pha")
    assert aper.exposure == 1e9
    c = 200
    assert aper.counts[c] == pytest.approx(1e9 * 0.5 * _cutoffpl_bin(EDGES[c], EDGES[c + 1]), rel=1e-6)
    assert fcxb.counts[c] == pytest.approx(400 * aper.counts[c], rel=1e-9)
    assert main(["imrefspec", "A", "2"]) == 2  # exists
    assert main(["imrefspec", "C", "2"]) == 2
    assert "modules" in capsys.readouterr().err
    (tmp_path / "det2A.rmf").unlink()
    assert main(["imrefspec", "A", "2"]) == 2
    assert "absrmf" in capsys.readouterr().err
