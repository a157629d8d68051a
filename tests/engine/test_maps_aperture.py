"""DET1 aperture map (spec §2.6a, §6.2)."""

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from nuskybgd_engine.errors import BadConfigError, BadFileError, CalibrationNotFoundError
from nuskybgd_engine.maps import aperture_map_det1, read_aperture_params

PARAMS = [0.32, 0.32, 0, 0, -3.4, 2.0, 0, -3.5, 1.6, 0]


def test_formula_on_a_synthetic_template():
    rng = np.random.default_rng(0)
    tmpl = rng.uniform(400, 4e5, (576, 576))
    ap = aperture_map_det1("B", template=tmpl, params=PARAMS)
    shifted = ndimage.shift(tmpl, (1.6 / 0.12096, -3.5 / 0.12096), order=1, mode="grid-wrap", prefilter=False)
    expected = 3.1865e-5 * 0.32 * 0.12096**2 * shifted[108:468, 108:468] + 0.00495 * 0.7
    assert ap.shape == (360, 360) and ap.dtype == np.float64
    np.testing.assert_allclose(ap, expected, rtol=1e-12)


def test_rotation_and_bad_module_rejected():
    with pytest.raises(BadConfigError, match="rotation"):
        aperture_map_det1("A", template=np.ones((576, 576)), params=PARAMS[:6] + [1.0] + PARAMS[7:])
    with pytest.raises(BadConfigError, match="module"):
        aperture_map_det1("C", template=np.ones((576, 576)), params=PARAMS)


def test_params_file_errors(tmp_path):
    p = tmp_path / "nomapbgdparams.dat"
    p.write_text("0.32 # A\n0.32\nabc\n")
    with pytest.raises(BadFileError, match=r"nomapbgdparams\.dat.*line 3"):
        read_aperture_params(p)
    p.write_text("1\n2\n")
    with pytest.raises(BadFileError, match="10"):
        read_aperture_params(p)


def test_missing_auxil_file(tmp_path):
    with pytest.raises(CalibrationNotFoundError, match="detA_det1.img.gz"):
        aperture_map_det1("A", auxil_dir=tmp_path)


def test_template_of_wrong_shape(tmp_path):
    path = tmp_path / "detA_det1.img.gz"
    fits.PrimaryHDU(np.ones((100, 100), np.float32)).writeto(path)
    (tmp_path / "nomapbgdparams.dat").write_text("\n".join(map(str, PARAMS)))
    with pytest.raises(BadFileError, match=r"detA_det1\.img\.gz.*576x576"):
        aperture_map_det1("A", auxil_dir=tmp_path)


@pytest.mark.requires_data
@pytest.mark.parametrize("module,vmin,vmax,total,active,per_det,argmax", [
    ("A", 0.0040367, 0.0516173, 3528.29, 2829.0, (487.86, 431.43, 941.62, 968.10), (0, 359)),
    ("B", 0.0035401, 0.0502564, 3462.17, 2801.6, (979.89, 644.56, 315.06, 862.05), (359, 359)),
])
def test_spec_reference_values(auxil_dir, module, vmin, vmax, total, active, per_det, argmax):
    ap = aperture_map_det1(module, auxil_dir=auxil_dir)
    det = fits.getdata(auxil_dir / f"detnum{module}.fits", "INSTRMAP")
    assert ap.min() == pytest.approx(vmin, rel=2e-5)
    assert ap.max() == pytest.approx(vmax, rel=2e-5)
    assert ap.sum() == pytest.approx(total, abs=0.01)
    assert ap[det >= 0].sum() == pytest.approx(active, abs=0.05)
    np.testing.assert_allclose([ap[det == n].sum() for n in range(4)], per_det, atol=0.006)
    assert np.unravel_index(np.argmax(ap), ap.shape) == argmax  # (y, x): spec gives (x, y) = (359, 0) for A
    if module == "A":
        quads = [ap[y:y + 180, x:x + 180].mean() for x, y in [(180, 180), (0, 180), (0, 0), (180, 0)]]
        np.testing.assert_allclose(quads, [0.01843, 0.01668, 0.03619, 0.03760], atol=6e-6)
