"""XSPEC cstat / chi statistics against hand-computed values (HEASoft Xspec CstatVariants.cxx,
ChiSquare.cxx conventions: model floored at 1e-5 counts; zero-count variance 1)."""

import math

import numpy as np
import pytest
from nuskybgd_engine.errors import BadConfigError, FitError
from nuskybgd_engine.fit import (
    STATISTICS,
    chi2_datavar,
    chi2_terms,
    cstat,
    cstat_terms,
    get_statistic,
)
from nuskybgd_engine.fit.statistics import CHI_MIN_VARIANCE, CSTAT_FLOOR
from scipy.optimize import minimize_scalar


def test_cstat_hand_values():
    d = [3.0, 0.0, 10.0]
    m = [2.5, 0.7, 12.0]
    expected = 2 * ((2.5 - 3 + 3 * math.log(3 / 2.5)) + 0.7 + (12 - 10 + 10 * math.log(10 / 12)))
    assert cstat(d, m) == pytest.approx(expected, rel=1e-13)
    terms = cstat_terms(d, m)
    assert terms.shape == (3,)
    assert terms[1] == pytest.approx(1.4, rel=1e-13)  # d = 0: 2 m
    assert terms.sum() == pytest.approx(expected, rel=1e-13)


def test_cstat_model_floor_as_xspec():
    # XSPEC StdCstat::FLOOR = 1e-5 counts: model <= floor is replaced by the floor.
    assert CSTAT_FLOOR == 1e-5
    f = 1e-5
    for m in (0.0, -3.0, 1e-9):
        assert cstat([2.0], [m]) == pytest.approx(2 * (f - 2 + 2 * math.log(2 / f)), rel=1e-13)
    assert cstat([0.0], [0.0]) == pytest.approx(2e-5, rel=1e-13)
    assert cstat([0.0], [-1.0]) == pytest.approx(2e-5, rel=1e-13)
    # just above the floor: no flooring
    m = 1e-3
    assert cstat([1.0], [m]) == pytest.approx(2 * (m - 1 + math.log(1 / m)), rel=1e-13)


def test_cstat_zero_at_perfect_model_and_positive_otherwise():
    d = np.array([1.0, 5.0, 17.0, 2.5])
    assert cstat(d, d) == pytest.approx(0.0, abs=1e-12)
    assert cstat(d, d * 1.01) > 0 and cstat(d, d * 0.99) > 0


def test_chi_hand_values_and_zero_count_variance():
    d = [4.0, 9.0, 0.0]
    m = [5.0, 6.0, 0.5]
    assert CHI_MIN_VARIANCE == 1.0
    assert chi2_datavar(d, m) == pytest.approx(1 / 4 + 9 / 9 + 0.25 / 1.0, rel=1e-13)
    np.testing.assert_allclose(chi2_terms(d, m), [0.25, 1.0, 0.25], rtol=1e-13)


@pytest.mark.parametrize("name", ["cstat", "chi"])
def test_derivatives_match_finite_differences(name):
    st = STATISTICS[name]
    d = np.array([0.0, 1.0, 4.0, 30.0])
    m = np.array([0.3, 2.0, 3.5, 28.0])
    h = 1e-6
    num_g = (st.terms(d, m + h) - st.terms(d, m - h)) / (2 * h)
    h2 = 1e-3  # second differences need a larger step (round-off of the d ln d terms)
    num_h = (st.terms(d, m + h2) - 2 * st.terms(d, m) + st.terms(d, m - h2)) / h2**2
    np.testing.assert_allclose(st.gradient(d, m), num_g, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(st.hessian_diag(d, m), num_h, rtol=1e-3, atol=1e-4)
    assert st.value(d, m) == pytest.approx(st.terms(d, m).sum())
    assert st.dof_offset == 0


def test_cstat_fisher_weights_are_expected_curvature():
    st = STATISTICS["cstat"]
    m = np.array([0.5, 3.0])
    np.testing.assert_allclose(st.fisher_diag(np.zeros(2), m), 2 / m)
    np.testing.assert_allclose(st.hessian_diag(m, m), 2 / m)  # observed = expected when d = m


@pytest.mark.parametrize("d", [1.0, 7.0, 250.0])
def test_single_bin_minimum_is_m_equals_d(d):
    res = minimize_scalar(lambda m: cstat([d], [m]), bounds=(d / 100, d * 100), method="bounded",
                          options={"xatol": 1e-10 * d})
    assert res.x == pytest.approx(d, rel=1e-6)


def test_bad_inputs_raise_fit_errors_naming_field():
    with pytest.raises(FitError, match="data"):
        cstat([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(FitError, match="shape"):
        cstat([1.0, 2.0], [1.0])
    with pytest.raises(FitError, match="NaN"):
        chi2_datavar([np.nan], [1.0])
    with pytest.raises(BadConfigError) as err:
        get_statistic("wstat")
    assert "statistic" in str(err.value) and "cstat" in str(err.value) and "chi" in str(err.value)


def test_registry_contents():
    assert set(STATISTICS) == {"cstat", "chi"}
    assert get_statistic("CSTAT") is STATISTICS["cstat"]
    assert get_statistic(STATISTICS["chi"]) is STATISTICS["chi"]
