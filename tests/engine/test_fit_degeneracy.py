"""Degeneracy report: free norms of different sources whose split the data do not fix."""

import numpy as np
import pytest
from nuskybgd_engine.fit.degeneracy import degenerate_pairs, describe
from nuskybgd_engine.model.background import BackgroundOptions, RegionWeights, build_background_model
from nuskybgd_engine.model.presets import load_presets

W1 = RegionWeights(164.10, (6316.06, 0.227, 0.0, 1489.52), "A", "r1")
W2 = RegionWeights(240.0, (100.0, 5000.0, 2500.0, 0.0), "B", "r1B")


@pytest.fixture(scope="module")
def state():
    return build_background_model(["A", "B"], [W1, W2], load_presets(),
                                  BackgroundOptions(fix_line_ratios=True, solar_ratios=True))


def _cov(free, pairs):
    n = len(free)
    cov = np.eye(n)
    for a, b, rho in pairs:
        i, j = free.index(a), free.index(b)
        cov[i, j] = cov[j, i] = rho
    return cov * 4.0  # the scale does not matter, only the correlation


def test_cross_source_pairs_beyond_the_threshold_are_reported(state):
    free = state.free_parameters()
    ap, soft, line, fcxb = ("apbgd", 3), ("intbgd", 4), ("intbgd", 16), ("fcxb", 3)
    cov = _cov(free, [(ap, soft, -0.95), (soft, line, 0.99), (ap, fcxb, -0.97), (("intn", 4), line, 0.5)])
    pairs = degenerate_pairs(cov, free, state)
    # same-source pairs and the apbgd-fcxb pair (its own warning) are not listed; 0.5 is below 0.9
    assert [(a, b) for a, b, _ in pairs] == [(ap, soft)]
    assert pairs[0][2] == pytest.approx(-0.95)
    text = describe(pairs[0], state)
    assert "apbgd cutoffpl (FPMA, apbgd:p3)" in text and "intbgd apec (FPMA, intbgd:p4)" in text
    assert "-0.95" in text
    assert degenerate_pairs(cov, free, state, threshold=0.96) == []


def test_undetermined_norms_are_skipped(state):
    free = state.free_parameters()
    cov = _cov(free, [])
    cov[0, 0] = 0.0
    cov[0, 1] = cov[1, 0] = np.nan
    assert degenerate_pairs(cov, free, state) == []
