"""GRXE end to end: ``projbgd --grxe`` → bgdinfo ``grxe`` → ``fit --run`` → ``predict`` (issue 15 item 5).

The demo observation (simulated, without GRXE) is projected through the CLI with a GRXE sky map
that varies across the sky. Each background spectrum gets a 6.7 keV line drawn by hand in channel
space (Gaussian, σ = 0.17 keV, counts ∝ the region's GRXE weight; no engine folding), so the fit's
GRXE source has something to measure; the saved fit reopens, from its sidecar and from its
inputs, to transfer the GRXE to a new region. Not a recovery check (the line is not the model).
"""

import json
import shutil

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.demo import ensure_demo_observation
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.io.regions.masks import region_cutout
from nuskybgd_engine.maps.aspecthist import write_aspect_histogram
from nuskybgd_engine.maps.images import write_counts_image
from nuskybgd_engine.maps.instrmap import write_instrument_map
from nuskybgd_engine.model.background import region_weights
from nuskybgd_engine.model.tablemodel import unregister_table_model
from nuskybgd_engine.observation import prepare_observation
from nuskybgd_engine.workflow import background_images, load_fit_json

from ..conftest import write_demo_inputs

LINE_COUNTS_PER_G = 0.3  # hand-drawn 6.7 keV line counts per unit GRXE weight (a few hundred per spectrum)

pytestmark = [pytest.mark.slow, pytest.mark.requires_data]  # aperture template + polarmodel.fits of the auxil


def _grxe_sky(path):
    """An all-sky galactic map (IDL modelrxte layout, 0.4° pixels) with a gradient in l and b."""
    h = fits.Header()
    h.update(CTYPE1="GLON-CAR", CTYPE2="GLAT-CAR", CRPIX1=451.0, CRPIX2=226.0, CRVAL1=0.0, CRVAL2=0.0,
             CDELT1=-0.4, CDELT2=0.4)
    y, x = np.mgrid[0:451, 0:901]
    fits.PrimaryHDU((1.0 + x / 900.0 + 2.0 * y / 450.0).astype(np.float32), header=h).writeto(path)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, auxil_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("NUSKYBGD_AUXIL", str(auxil_dir))
    mp.delenv("CALDB", raising=False)
    obsdir = ensure_demo_observation(tmp_path_factory.mktemp("demo"))
    obs = prepare_observation(obsdir)
    d = tmp_path_factory.mktemp("grxe")
    sky = _grxe_sky(d / "modelrxte_test.fits")
    for m in ("A", "B"):
        write_counts_image(obs[m].image, d / f"im{m}.fits")
        write_instrument_map(obs[m].instrument_map, d / f"instrmap{m}.fits")
        write_aspect_histogram(obs[m].aspect, d / f"aspecthist{m}.fits")
        assert main(["projbgd", f"refimg={d / f'im{m}.fits'}", f"out={d / f'bgdap{m}.fits'}", f"mod={m}",
                     f"chipmap={d / f'instrmap{m}.fits'}", f"aspect={d / f'aspecthist{m}.fits'}",
                     "--grxe", str(sky)]) == 0
    rng = np.random.default_rng(15)

    def line(name, m, regions, spec):
        g = region_weights(regions, obs.grid, obs[m].maps, grxe=fits.getdata(d / f"bgdgrxe{m}.fits")).G
        energy = 1.6 + 0.04 * (np.asarray(spec.channel) + 0.5)  # NuSTAR PI channel centres (keV)
        shape = np.exp(-0.5 * ((energy - 6.7) / 0.17) ** 2)
        return rng.poisson(LINE_COUNTS_PER_G * g * shape / shape.sum())

    write_demo_inputs(d, obsdir, obs, add_counts=line, grxe={"A": "bgdgrxeA.fits", "B": "bgdgrxeB.fits"})
    assert main(["fit", str(d / "bgdinfo.json"), f"savefile={d / 'fit'}", "--run"]) == 0
    yield d
    unregister_table_model("atable{polarmodel.fits}")
    mp.undo()


def test_grxe_norms_are_fitted_with_errors(workdir):
    fit = json.loads((workdir / "fit.json").read_text())
    grxe = [p for p in fit["parameters"] if p["source"] == "grxe" and p["state"] == "free"]
    assert len(grxe) == 4  # gaussian and table norms, per module
    assert all(np.isfinite(p["value"]) and p["value"] >= 0 and p["error"] is not None for p in grxe)
    # The hand-drawn line is measured in both modules; the spectra hold no GRXE continuum (the
    # table norm may sit at its 0 bound).
    lines = [p for p in grxe if p["component"] == "gaussian"]
    assert len(lines) == 2 and all(0 < p["error"] < p["value"] / 3 for p in lines)
    assert "6:grxe gaussian + atable{polarmodel.fits}" in (workdir / "fit.xcm").read_text()


@pytest.mark.parametrize("sidecar", [True, False])
def test_predict_transfers_grxe_to_a_new_region(workdir, tmp_path, capsys, sidecar):
    d = workdir
    if not sidecar:  # reopened from its inputs (bgdinfo + maps), not from NAME.npz
        d = tmp_path / "copy"
        shutil.copytree(workdir, d)
        fit = json.loads((d / "fit.json").read_text())
        fit["bgdinfo"], fit["sidecar"] = str(d / "bgdinfo.json"), None
        (d / "fit.json").write_text(json.dumps(fit))
    capsys.readouterr()
    assert main(["predict", str(d / "fit.json"), str(d / "src_point.reg"), "--module", "A", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    pred = out[0] if isinstance(out, list) else out
    assert pred["components"]["grxe"] > 0 and np.isfinite(pred["components"]["grxe"])


def test_xcm_of_the_fit_continues_with_grxe(workdir, tmp_path, capsys):
    """``fit --xcm fit.xcm --run`` (the exported .xcm read back) keeps source 6, then ``predict`` works."""
    d = tmp_path / "xcm"
    shutil.copytree(workdir, d)
    assert json.loads((d / "fit.json").read_text())["sidecar"]  # the first fit wrote NAME.npz
    assert main(["fit", str(d / "bgdinfo.json"), "--xcm", str(d / "fit.xcm"), f"savefile={d / 'again'}",
                 "--run"]) == 0
    again = json.loads((d / "again.json").read_text())
    first = json.loads((workdir / "fit.json").read_text())
    value = {(p["source"], p["index"]): p["value"] for p in first["parameters"]}
    grxe = [p for p in again["parameters"] if p["source"] == "grxe" and p["state"] == "free"]
    assert len(grxe) == 4
    for p in grxe:  # started at the best fit: the same minimum
        assert p["value"] == pytest.approx(value[("grxe", p["index"])], rel=1e-3, abs=1e-9)
    capsys.readouterr()
    assert main(["predict", str(d / "again.json"), str(d / "src_point.reg"), "--module", "B", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out[0] if isinstance(out, list) else out)["components"]["grxe"] > 0


def test_background_images_have_the_grxe(workdir):
    """The model image holds the GRXE: its sum over the reference region is the fitted GRXE counts there."""
    analysis = load_fit_json(workdir / "fit.json")
    images = background_images(analysis, (3.0, 20.0))
    r = analysis.reference_group("A")
    regions = RegionSet.read_ds9(analysis.bgdinfo.regfiles[r - 1])
    cut = region_cutout(regions, analysis.grid)
    want = analysis.predict(analysis.state.weights[r - 1], band=(3.0, 20.0)).components["grxe"]
    assert want > 0 and cut.sum(images["A"]["grxe"]) == pytest.approx(want, rel=1e-6)
    assert np.array_equal(images["A"]["total"], sum(images["A"][k] for k in images["A"] if k != "total"))
