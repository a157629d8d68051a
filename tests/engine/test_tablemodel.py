"""XSPEC additive table models (atable), checked on a synthetic table written here and on polarmodel.fits."""

import numpy as np
import pytest
from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.model.components import evaluate, get_component
from nuskybgd_engine.model.tablemodel import (
    read_table_model,
    register_table_model,
    unregister_table_model,
)
from nuskybgd_engine.xcm import format_xcm, parse_xcm


@pytest.fixture
def toy(tmp_path, write_table):
    grid = np.array([1.0, 2.0, 4.0])
    edges = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    spectra = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], [4.0, 0.0, 8.0, 0.0]])
    return write_table(tmp_path / "toy.fits", grid, edges, spectra)


def test_interpolation_and_rebinning(toy):
    comp = register_table_model(toy)
    try:
        assert comp.name == comp.xspec_name == "atable{toy.fits}"
        assert get_component("atable{toy.fits}") is comp
        assert comp.param_names == ("mass", "norm")
        # On the table's own bins: a tabulated value gives its row; 3.0 is half-way between rows 2 and 3.
        np.testing.assert_allclose(evaluate(comp.name, [1, 2, 3, 4, 5], (2.0, 1.0)), [2, 2, 2, 2], rtol=1e-7)
        np.testing.assert_allclose(evaluate(comp.name, [1, 2, 3, 4, 5], (3.0, 2.0)), [6, 2, 10, 2], rtol=1e-7)
        # Other bins: flat within a table bin; nothing outside the table.
        np.testing.assert_allclose(evaluate(comp.name, [0.0, 1.5, 2.5, 4.75, 9.0], (1.0, 1.0)),
                                   [0.5, 0.5 + 0.5 * 2.0, 0.5 * 2.0 + 3.0 + 0.75 * 4.0, 0.25 * 4.0], rtol=1e-7)
    finally:
        unregister_table_model("atable{toy.fits}")


def test_log_method(tmp_path, write_table):
    path = write_table(tmp_path / "log.fits", [1.0, 100.0], np.array([1.0, 2.0]), np.array([[0.0], [10.0]]),
                       method=1)
    table = read_table_model(path)
    np.testing.assert_allclose(table.tabulated(10.0), [5.0], rtol=1e-7)  # log-midpoint


def test_out_of_range_and_bad_files(toy, tmp_path, write_table):
    table = read_table_model(toy)
    assert (table.parameter.hard_min, table.parameter.hard_max) == (1.0, 4.0)
    with pytest.raises(BadConfigError, match="outside the tabulated range"):
        table.tabulated(4.5)
    mul = write_table(tmp_path / "mul.fits", [1.0, 2.0], np.array([1.0, 2.0]), np.array([[1.0], [2.0]]),
                      addmodel=False)
    with pytest.raises(BadFileError, match="ADDMODEL"):
        read_table_model(mul)
    bad = write_table(tmp_path / "bad.fits", [2.0, 1.0], np.array([1.0, 2.0]), np.array([[1.0], [2.0]]))
    with pytest.raises(BadFileError, match="increasing"):
        read_table_model(bad)
    nan = write_table(tmp_path / "nan.fits", [1.0, 2.0], np.array([1.0, 2.0]), np.array([[np.nan], [2.0]]))
    with pytest.raises(BadFileError, match="finite"):
        read_table_model(nan)


@pytest.mark.requires_data
def test_polarmodel(auxil_dir):
    comp = register_table_model(auxil_dir / "polarmodel.fits")
    try:
        table = read_table_model(auxil_dir / "polarmodel.fits")
        assert comp.name == "atable{polarmodel.fits}"
        assert table.parameter.name == "wdmass" and table.name == "polarcol"
        edges = np.arange(0.0, 165.0001, 0.04)  # the NuSTAR channel grid
        spec = evaluate(comp.name, edges, (0.6, 1.0))
        k = int(np.argmin(np.abs(table.grid - 0.6)))
        # All of the table (0.05–99.95 keV) lies inside the grid: flux conserved, zero above it.
        assert spec.sum() == pytest.approx(table.spectra[k].sum(), rel=1e-5)
        assert np.all(spec[edges[:-1] >= 100.0] == 0)
        assert spec[(edges[:-1] >= 6.0) & (edges[1:] <= 7.0)].sum() > 0
        assert np.all(spec >= 0)
    finally:
        unregister_table_model("atable{polarmodel.fits}")


XCM_GRXE = """statistic cstat
data 1:1 a.pha
response 6:1 a.rmf
arf 6:1 be.arf
model 6:grxe gaussian + atable{toy.fits}
          6.7         -0.05          0          0      1e+06      1e+06
            0         -0.05          0          0         10         20
        1e-05          0.01          0          0      1e+24      1e+24
/
        1e-12          0.01          0          0      1e+24      1e+24
"""


def test_xcm_round_trip(toy):
    """IDL's source 6 (without nuabs): the registered table's parameter count and default are known."""
    register_table_model(toy)
    try:
        session = parse_xcm(XCM_GRXE)
        assert not any("unknown here" in note for note in session.notes)
        (block,) = session.models
        assert block.expression.replace(" ", "") == "gaussian+atable{toy.fits}"
        values = [p.value for p in block.params]
        assert values == [6.7, 0.0, 1e-05, 2.0, 1e-12]  # '/' takes the table's INITIAL (2.0)
        text = format_xcm(session)
        assert "model 6:grxe gaussian + atable{toy.fits}" in text
        again = parse_xcm(text)
        assert [p.value for p in again.models[0].params] == values
        assert format_xcm(again) == text
    finally:
        unregister_table_model("atable{toy.fits}")
    with pytest.raises(BadFileError, match="unknown"):
        parse_xcm(XCM_GRXE)  # unregistered: the '/' default cannot be known
