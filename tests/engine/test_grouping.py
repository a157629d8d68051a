"""grppha ``group min N`` grouping and applying OGIP GROUPING."""

from __future__ import annotations

import numpy as np
import pytest

from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.ogip import read_pha
from nuskybgd_engine.spectra.grouping import (
    apply_grouping,
    group_min_counts,
    group_starts,
    grouped_channel_ranges,
)


def grppha_group_min_reference(counts, thold, quality=None):
    """Line-by-line transcription of HEASoft grppha 3.0.1 GRPM_COM (Fortran, 1-based indices).

    Deliberately slow and literal: the engine uses cumulative sums and binary search instead.
    """
    nchan = len(counts)
    counts = [None] + [float(c) for c in counts]  # 1-based
    qualty = [None] + ([0] * nchan if quality is None else [int(q) for q in quality])
    grping = [None] + [0] * nchan
    sumrcts = 0.0
    i = 1
    setspare = False
    while i <= nchan:
        step = 1
        rawcts = counts[i]
        if qualty[i] == 0:
            sumrcts = sumrcts + rawcts
            if sumrcts < thold:
                rebin = True
                ibin = i
                k = 0
                remain = nchan - ibin
                while rebin and k < remain:
                    k = k + 1
                    rawcts = counts[ibin + k]
                    if qualty[ibin + k] == 0:
                        sumrcts = sumrcts + rawcts
                    if sumrcts >= thold:
                        rebin = False
                if rebin:
                    setspare = True
                if not setspare:
                    grping[ibin] = 1
                    for l in range(1, k + 1):
                        grping[ibin + l] = -1
                else:
                    grping[ibin] = 1
                    if qualty[ibin] == 0:
                        qualty[ibin] = 2
                    for l in range(1, k + 1):
                        grping[ibin + l] = 1
                        if qualty[ibin + l] == 0:
                            qualty[ibin + l] = 2
                step = k + 1
            else:
                grping[i] = 1
        else:
            grping[i] = 1
        sumrcts = 0.0
        i = i + step
    return np.array(grping[1:], np.int16), np.array(qualty[1:], np.int16)


def test_group_min_by_hand():
    counts = [10, 25, 5, 40, 3, 2]
    g, q = group_min_counts(counts, 30)
    # 10+25=35 | 5+40=45 | spare 3, 2 (5 < 30): ungrouped and QUALITY=2
    np.testing.assert_array_equal(g, [1, -1, 1, -1, 1, 1])
    np.testing.assert_array_equal(q, [0, 0, 0, 0, 2, 2])
    g, q = group_min_counts([30, 0, 31, 29, 1], 30)
    np.testing.assert_array_equal(g, [1, 1, -1, 1, -1])  # a channel reaching N alone is its own group
    np.testing.assert_array_equal(q, [0, 0, 0, 0, 0])


def test_group_min_bad_channels_by_hand():
    counts = [50, 10, 20, 15, 7, 100, 1]
    quality = [5, 0, 5, 0, 0, 0, 0]
    g, q = group_min_counts(counts, 30, quality=quality)
    # ch0 bad: own group; ch1 starts: 10 (+ch2 bad, not summed) +15 +7 = 32 -> ch1..ch4;
    # ch5 alone (100); ch6 spare -> quality 2. Input bad flags (5) are kept.
    np.testing.assert_array_equal(g, [1, 1, -1, -1, -1, 1, 1])
    np.testing.assert_array_equal(q, [5, 0, 5, 0, 0, 0, 2])
    np.testing.assert_array_equal(quality, [5, 0, 5, 0, 0, 0, 0])  # input not modified


@pytest.mark.parametrize("seed", range(40))
def test_group_min_matches_grppha_transcription(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    counts = rng.poisson(rng.choice([0.1, 1.0, 5.0, 40.0]), n)
    quality = np.where(rng.random(n) < rng.choice([0.0, 0.1, 0.5]), rng.choice([2, 5], n), 0)
    thold = int(rng.choice([1, 5, 30, 100]))
    g, q = group_min_counts(counts, thold, quality=quality)
    g_ref, q_ref = grppha_group_min_reference(counts, thold, quality)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(q, q_ref)


def test_all_spare_and_all_zero():
    g, q = group_min_counts(np.zeros(5, int), 30)
    np.testing.assert_array_equal(g, np.ones(5))
    np.testing.assert_array_equal(q, np.full(5, 2))


def test_group_min_rejects_bad_input():
    with pytest.raises(BadConfigError, match="minimum"):
        group_min_counts([1, 2], 0)
    with pytest.raises(BadConfigError, match="minimum"):
        group_min_counts([1, 2], "thirty")
    with pytest.raises(BadConfigError, match="negative"):
        group_min_counts([1, -2], 30)
    with pytest.raises(BadConfigError, match="counts"):
        group_min_counts([], 30)
    with pytest.raises(BadConfigError, match="quality"):
        group_min_counts([1, 2], 30, quality=[0])


def test_apply_grouping_and_ranges_by_hand():
    counts = np.array([10, 25, 5, 40, 3, 2])
    grouping = np.array([1, -1, 1, -1, 1, 1])
    sums, starts = apply_grouping(counts, grouping)
    np.testing.assert_array_equal(sums, [35, 45, 3, 2])
    np.testing.assert_array_equal(starts, [0, 2, 4, 5])
    first, last = grouped_channel_ranges(grouping, channel=np.arange(6) + 100)
    np.testing.assert_array_equal(first, [100, 102, 104, 105])
    np.testing.assert_array_equal(last, [101, 103, 104, 105])
    # quality: bad channels do not count, all-bad groups vanish
    sums, starts = apply_grouping(counts, grouping, quality=[0, 5, 0, 0, 2, 2])
    np.testing.assert_array_equal(sums, [10, 45])
    np.testing.assert_array_equal(starts, [0, 2])
    # GROUPING 0 (no information) = a group of its own; a leading -1 starts the first group
    np.testing.assert_array_equal(group_starts([-1, -1, 0, 0, -1]), [0, 2, 3])
    with pytest.raises(BadConfigError, match="grouping"):
        apply_grouping(counts, [1, 2, 1, 1, 1, 1])
    with pytest.raises(BadConfigError, match="length"):
        apply_grouping(counts, [1, -1])


REAL_PHA = [
    "nustar_axions/nu20211002001_sun_centerA_sr.pha",
    "nustarFittingExample/nu80415201001A06_chu2_S_cl_grade0_sr.pha",
    "nustarFittingExample/nu80415201001B06_chu2_S_cl_grade0_sr.pha",
    "nustar_background/nu30001039002_srcA_sr.pha",
    "nustar_background/epoch0_det0_FPMA_repro.pha",
    "nustar_background/epoch0_det3_FPMB_repro.pha",
]


@pytest.mark.requires_data
@pytest.mark.parametrize("name", REAL_PHA)
def test_group_min_30_on_real_spectra(data_dir, name):
    """The real spectra carry no GROUPING column (nuproducts output, not grppha's), so the rule is
    checked against the grppha transcription and against the definition itself."""
    s = read_pha(data_dir / name)
    g, q = group_min_counts(s.counts, 30)
    g_ref, q_ref = grppha_group_min_reference(s.counts, 30)
    np.testing.assert_array_equal(g, g_ref)
    np.testing.assert_array_equal(q, q_ref)
    sums, starts = apply_grouping(s.counts, g, quality=q)
    assert np.all(sums >= 30)
    # Minimal: dropping the last channel of any group leaves fewer than 30 counts.
    first, last = grouped_channel_ranges(g)
    for a, b in zip(first, last):
        if q[a] == 0 and b > a:
            assert s.counts[a:b].sum() < 30
    # Everything after the last complete group is the spare tail flagged bad.
    assert np.all(q[q != 0] == 2) and s.counts[q == 2].sum() < 30
    assert sums.sum() + s.counts[q == 2].sum() == s.counts.sum()
