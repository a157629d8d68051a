"""Embedded nominal calibration: sanity always, accuracy against the real files when present."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import shift as nd_shift

from nuskybgd_engine.calibration import nominal as nom
from nuskybgd_engine.errors import BadConfigError

# Spec §1.2: per-detector DET1 pixel counts of the shipped detnum maps.
SPEC_COUNTS = {"A": (26740, 26793, 27150, 26790), "B": (26525, 26830, 26674, 26542)}


def _fitter():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fit_nominal_calibration.py"
    spec = importlib.util.spec_from_file_location("fit_nominal_calibration", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _aperture_det1(module):
    """Spec §2.6a applied to the nominal template (independent re-statement of the formula)."""
    p = nom.nomapbgdparams()
    sx, sy = (p[4], p[5]) if module == "A" else (p[7], p[8])
    t = nd_shift(nom.aperture_det1img(module).astype(float), (sy / 0.12096, sx / 0.12096), order=1,
                 mode="grid-wrap")
    return (3.1865e-5 * p[0] * 0.12096 ** 2 * t + 0.00495 * 0.7)[108:468, 108:468]


# ------------------------------------------------------------------------------ always


@pytest.mark.parametrize("module", ["A", "B"])
def test_aperture_shape_and_positivity(module):
    t = nom.aperture_det1img(module)
    assert t.shape == (576, 576) and t.dtype == np.float32
    assert np.all(np.isfinite(t)) and t.min() > 0


@pytest.mark.parametrize("module, total, maxpos", [("A", 3528.29, (359, 0)), ("B", 3462.17, (359, 359))])
def test_aperture_reproduces_spec_reference_values(module, total, maxpos):
    ap = _aperture_det1(module)
    # Spec §6.2: total over the DET1 map and the position (x, y) of its maximum.
    assert ap.sum() == pytest.approx(total, rel=0.01)
    j, i = np.unravel_index(np.argmax(ap), ap.shape)
    assert abs(i - maxpos[0]) <= 3 and abs(j - maxpos[1]) <= 3


def test_aperture_quadrant_means_match_spec():
    ap = _aperture_det1("A")
    # Spec §6.2: means over the 180×180 boxes at the DET0..DET3 positions (UR, UL, LL, LR).
    means = [ap[180:, 180:].mean(), ap[180:, :180].mean(), ap[:180, :180].mean(), ap[:180, 180:].mean()]
    np.testing.assert_allclose(means, [0.01843, 0.01668, 0.03619, 0.03760], rtol=0.02)


@pytest.mark.parametrize("module", ["A", "B"])
def test_detnum_labels_counts_and_quadrants(module):
    d = nom.detnum(module)
    assert d.shape == (360, 360) and d.dtype == np.int16
    assert set(np.unique(d)) == {-1, 0, 1, 2, 3}
    counts = [(d == n).sum() for n in range(4)]
    np.testing.assert_allclose(counts, SPEC_COUNTS[module], rtol=0.03)
    # Spec §1.2: DET0 upper right, DET1 upper left, DET2 lower left, DET3 lower right (y up).
    for n, (right, up) in enumerate([(True, True), (False, True), (False, False), (True, False)]):
        jj, ii = np.nonzero(d == n)
        assert (ii.mean() > 180) == right and (jj.mean() > 180) == up


@pytest.mark.parametrize("module", ["A", "B"])
def test_pixmap_range_and_consistency(module):
    p, d = nom.pixmap(module), nom.detnum(module)
    assert p.shape == (360, 360) and p.dtype == np.int16
    assert np.array_equal(p < 0, d < 0)
    assert p.min() == -1 and p.max() <= 1023
    for n in range(4):
        raw = p[d == n]
        # Every RAW pixel of the 32×32 grid owns about 5×5 DET1 pixels.
        counts = np.bincount(raw, minlength=1024)
        assert (counts > 0).all() and np.median(counts) == pytest.approx(25, abs=2)


def test_arf_grid_and_spec_values():
    lo, hi, be = nom.arf("be.arf")
    assert lo.shape == hi.shape == be.shape == (4096,)
    assert lo[0] == pytest.approx(1.6) and hi[-1] == pytest.approx(165.44)
    np.testing.assert_allclose(hi - lo, 0.04, atol=1e-9)
    e = 0.5 * (lo + hi)
    at = lambda arr, en: arr[int(np.argmin(np.abs(e - en)))]  # noqa: E731
    # Spec §5 (values rounded to 3 digits there).
    for en, want in [(3, 0.644), (5, 0.913), (10, 0.985), (79, 0.9974)]:
        assert at(be, en) == pytest.approx(want, rel=0.02)
    assert be.max() <= 1.0
    _, _, fa = nom.arf("fcxbA.arf")
    for en, want in [(3, 101), (5, 244), (10, 298), (20, 122), (30, 70), (50, 33)]:
        assert at(fa, en) == pytest.approx(want, rel=0.03)
    assert np.all(fa[e > 89.6] == 0) and np.all(fa[e < 89.5] > 0)
    _, _, fb = nom.arf("fcxbB.arf")
    assert fb.max() == pytest.approx(296, rel=0.01)


def test_bad_names_raise_config_errors():
    with pytest.raises(BadConfigError) as err:
        nom.arf("nope.arf")
    assert err.value.field == "arf" and "nope.arf" in str(err.value)
    with pytest.raises(BadConfigError) as err:
        nom.detnum("C")
    assert err.value.field == "module"


def test_diag_rmf_is_identity():
    lo, hi, emin, emax, m = nom.diag_rmf()
    assert m.shape == (4096, 4096) and m.nnz == 4096
    assert np.array_equal(m.toarray(), np.eye(4096))
    np.testing.assert_array_equal(lo, emin)
    np.testing.assert_array_equal(hi, emax)


def test_rmf_rows_and_peak_positions():
    lo, hi, emin, emax, m = nom.rmf("A")
    assert m.shape == (4096, 4096)
    assert m.data.min() >= 0
    s = np.asarray(m.sum(axis=1)).ravel()
    assert s.max() <= 1.0 + 1e-6 and s[100:2500].min() > 0.5
    dense_rows = m[[110, 460, 1460]].toarray()
    # The core peaks in the row's own channel (E = channel energy).
    assert list(dense_rows.argmax(axis=1)) == [110, 460, 1460]
    # Escape peaks exist only above the Cd K edge (26.71 keV): row at 40 keV has counts at 40-23.17 keV.
    i40 = int((40 - 1.6) / 0.04)
    row = m[i40].toarray().ravel()
    j = int(round(i40 - 23.17 / 0.04))
    assert row[j] > 10 * row[j - 40]
    # At 30 keV (between the Cd and Te K edges) the Cd escape peak exists, the Te one does not.
    i30 = int((30 - 1.6) / 0.04)
    row30 = m[i30].toarray().ravel()
    cd, te = int(round(i30 - 23.17 / 0.04)), int(round(i30 - 27.47 / 0.04))
    assert row30[cd] > 10 * row30[cd - 40] and row30[te] < 2 * row30[te + 40]


def test_ratios_structure_and_spec_numbers():
    r = nom.ratios()
    assert [m["name"] for m in r["models"]] == ["2:apbgd", "3:intbgd", "4:fcxb", "5:intn"]
    comps = r["models"][1]["components"]
    assert len(comps) == 30 and list(comps)[:3] == ["apec", "lorentz", "lorentz_3"]
    # Spec Appendix A / §3.1.
    assert comps["lorentz"]["A"]["linee"] == 3.53895 and comps["lorentz"]["B"]["width"] == 0.425422
    assert comps["lorentz_30"]["B"]["ifactors"] == [0.00476108, 0.00489667, 0.00430414, 0.00486692]
    assert comps["apec"]["A"]["ifactors"] == [0.211015, 0.179366, 0.205212, 0.35365]
    assert r["models"][0]["components"]["cutoffpl"]["B"] == {"phoindex": 1.29, "highecut": 41.13}
    bk = r["models"][3]["components"]["bknpower"]["A"]
    assert (bk["phoindx1"], bk["breake"], bk["phoindx2"]) == (-0.05, 124.0, -0.85)
    assert r["models"][1]["formula"].count("{l") == 29
    json.dumps(r)  # JSON-serialisable like the file


def test_nomapbgdparams_spec_values():
    np.testing.assert_array_equal(nom.nomapbgdparams(), [0.32, 0.32, 0, 0, -3.4, 2.0, 0, -3.5, 1.6, 0])


def test_providers_cover_auxil_files():
    for name in ["detA_det1.img", "detB_det1.img", "detnumA.fits", "pixmapB.fits", "be.arf", "fcxbA.arf",
                 "fcxbB.arf", "diag.rmf", "ratios.json", "nomapbgdparams.dat"]:
        assert callable(nom.NOMINAL_PROVIDERS[name])
    assert nom.NOMINAL_PROVIDERS["detnumB.fits"]().shape == (360, 360)


# ------------------------------------------------------------------------------ real files


@pytest.fixture(scope="module")
def fitter():
    return _fitter()


@pytest.mark.requires_data
@pytest.mark.parametrize("module", ["A", "B"])
def test_aperture_accuracy(auxil_dir, fitter, module):
    real = fitter.read_image(auxil_dir / f"det{module}_det1.img.gz")
    params = fitter.read_nomap(auxil_dir / "nomapbgdparams.dat")
    rms, mx = fitter.aperture_error(real, nom.aperture_det1img(module), module, params)
    print(f"aperture {module}: rms relative error {rms:.4f}, max {mx:.4f}")
    assert rms <= 0.03


@pytest.mark.requires_data
@pytest.mark.parametrize("module", ["A", "B"])
def test_layout_accuracy(auxil_dir, fitter, module):
    rn = fitter.read_image(auxil_dir / f"detnum{module}.fits", "INSTRMAP").astype(int)
    rp = fitter.read_image(auxil_dir / f"pixmap{module}.fits", "INSTRMAP").astype(int)
    res = fitter.layout_agreement(rn, rp, nom.detnum(module), nom.pixmap(module))
    print(f"layout {module}: {res}")
    assert res["label"] >= 0.97
    assert res["count_err"] <= 0.03
    assert res["pixmap"] >= 0.80 and res["pixmap_near"] >= 0.99


@pytest.mark.requires_data
@pytest.mark.parametrize("name", nom.ARF_NAMES)
def test_arf_accuracy(auxil_dir, fitter, name):
    from astropy.io import fits

    with fits.open(auxil_dir / name) as h:
        real = np.asarray(h[1].data["SPECRESP"], float)
    err = fitter.arf_error(real, nom.arf(name)[2])
    print(f"{name}: max relative error (3-80 keV, value > 1% of peak) {err:.4f}")
    assert err <= 0.02


@pytest.mark.requires_data
@pytest.mark.slow
def test_rmf_accuracy(shared, fitter):
    path = shared / "data" / "caldb-rmf-hendrics" / "nuAdet3_20100101v002.rmf.gz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    res = fitter.rmf_errors(fitter.read_rmf_dense(path), nom.rmf("A")[4])
    print(f"rmf: {res}")
    for en in (6, 20, 60):
        assert abs(res[f"fwhm{en}"]) <= 0.05
    assert abs(res["band3-20"]) <= 0.03 and abs(res["band20-50"]) <= 0.03


@pytest.mark.requires_data
def test_presets_equal_real_files(auxil_dir, fitter):
    real = json.loads((auxil_dir / "ratios.json").read_text())

    def same(a, b, where="ratios"):
        if isinstance(a, dict):
            assert list(a) == list(b), where
            for k in a:
                same(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                same(x, y, f"{where}[{i}]")
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            assert b == pytest.approx(a, rel=1e-9, abs=0), where
        else:
            assert a == b, where

    same(real, nom.ratios())
    np.testing.assert_allclose(nom.nomapbgdparams(), fitter.read_nomap(auxil_dir / "nomapbgdparams.dat"),
                               rtol=1e-12)
