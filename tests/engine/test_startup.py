"""Start-up stays lazy: the parser imports no numerical library, and reopening a fit to predict
imports none of the libraries only fitting, projecting or evaluating component shapes need."""

import subprocess
import sys

import pytest


def loaded_after(code):
    probe = code + (
        "\nimport sys\n"
        "print(','.join(sorted(k for k in sys.modules if k in ('numpy', 'scipy', 'astropy', 'scipy.optimize', "
        "'scipy.special', 'scipy.fft', 'scipy.interpolate', 'regions'))))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(filter(None, out.stdout.strip().split(",")))


def test_every_parser_is_lazy():
    assert loaded_after("from nuskybgd_engine.cli import build_parser; build_parser()") == set()


@pytest.mark.slow
def test_the_predict_path_imports_no_fitting_or_shape_libraries():
    loaded = loaded_after("import nuskybgd_engine.workflow, nuskybgd_engine.fitcache, nuskybgd_engine.predictions, "
                          "nuskybgd_engine.io.regions, nuskybgd_engine.io.responsecache, "
                          "nuskybgd_engine.model.presets, nuskybgd_engine.calibration.nominal")
    assert {"numpy", "astropy"} <= loaded
    assert not loaded & {"scipy.optimize", "scipy.special", "scipy.fft", "scipy.interpolate"}
