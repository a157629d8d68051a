"""Folding the background model through responses: templates, binning, the linear problem, caching.

A small synthetic instrument (0.2 keV channels, a Gaussian redistribution) keeps the dense
hand-folding ``C = T · (F · a) @ R`` cheap; the photon spectra F of the test are computed here
from the XSPEC formulas (spec §3.3), independently of :mod:`nuskybgd_engine.model.components`
(except apec, whose stand-in has no closed form).
"""

import numpy as np
import pytest
import scipy.sparse as sp

from nuskybgd_engine.errors import BadConfigError, BadFileError
from nuskybgd_engine.io.ogip import Response
from nuskybgd_engine.model.background import BackgroundOptions, RegionWeights, build_background_model
from nuskybgd_engine.model.components import ApecShape
from nuskybgd_engine.model.folding import Binning, FoldedModel, GroupData
from nuskybgd_engine.model.presets import load_presets

N = 240  # energy bins = channels, 1.6 .. 49.6 keV
EDGES = 1.6 + 0.2 * np.arange(N + 1)


def make_rmf(sigma=0.4, seed=0):
    """Gaussian redistribution (FWHM-ish ``sigma`` keV) with a little random efficiency per row."""
    centre = 0.5 * (EDGES[:-1] + EDGES[1:])
    m = np.exp(-0.5 * ((centre[None, :] - centre[:, None]) / sigma) ** 2)
    m[m < 1e-6] = 0.0
    m /= m.sum(axis=1, keepdims=True)
    m *= np.random.default_rng(seed).uniform(0.7, 1.0, N)[:, None]
    return Response(energ_lo=EDGES[:-1].copy(), energ_hi=EDGES[1:].copy(), e_min=EDGES[:-1].copy(),
                    e_max=EDGES[1:].copy(), matrix=sp.csr_matrix(m), module="A")


def make_diag():
    return Response(energ_lo=EDGES[:-1].copy(), energ_hi=EDGES[1:].copy(), e_min=EDGES[:-1].copy(),
                    e_max=EDGES[1:].copy(), matrix=sp.identity(N, format="csr"))


RMF_A, RMF_B, DIAG = make_rmf(0.4, 0), make_rmf(0.5, 1), make_diag()
AP_ARF = np.linspace(0.3, 1.0, N)
FCXB_ARF = 300.0 * np.exp(-((0.5 * (EDGES[:-1] + EDGES[1:]) - 10.0) / 15.0) ** 2)
WEIGHTS = [RegionWeights(164.1, (6316.06, 0.227, 0.0, 1489.52), "A", "r1"),
           RegionWeights(240.0, (100.0, 5000.0, 2500.0, 0.0), "B", "r1B"),
           RegionWeights(140.6, (0.0, 4000.0, 3000.0, 10.0), "A", "r2")]


def group(name, module, rmf, weights, counts=None, exposure=2e4, **kw):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    counts = rng.poisson(5.0, N).astype(float) if counts is None else counts
    return GroupData(name=name, module=module, counts=counts, exposure=exposure, rmf=rmf, diag=DIAG,
                     ap_arf=AP_ARF.copy(), fcxb_arf=FCXB_ARF.copy(), weights=weights, **kw)


@pytest.fixture(scope="module")
def presets():
    return load_presets()


@pytest.fixture
def model(presets):
    groups = [group("g1", "A", RMF_A, WEIGHTS[0]), group("g2", "B", RMF_B, WEIGHTS[1], exposure=3e4),
              group("g3", "A", RMF_A, WEIGHTS[2])]
    state = build_background_model(["A", "B", "A"], WEIGHTS, presets,
                                   BackgroundOptions(fcxb_links=[(1, 3)], fix_line_ratios=True))
    return FoldedModel(state, groups, apec=ApecShape(route="standin"))


# -- independent photon spectra (bin integrals, XSPEC definitions) ------------------------------------

_X, _WGL = np.polynomial.legendre.leggauss(24)


def gl(f, edges):
    lo, hi = edges[:-1, None], edges[1:, None]
    e = 0.5 * (hi - lo) * _X[None, :] + 0.5 * (hi + lo)
    return (0.5 * (hi - lo)[:, 0]) * (f(e) * _WGL[None, :]).sum(axis=1)


def flux(ctype, shape, edges):
    if ctype == "cutoffpl":
        g, ec = shape
        return gl(lambda e: e ** -g * np.exp(-e / ec), edges)
    if ctype == "bknpower":
        g1, eb, g2 = shape
        return gl(lambda e: np.where(e <= eb, e ** -g1, eb ** (g2 - g1) * e ** -g2), edges)
    if ctype == "lorentz":
        el, w = shape
        return 2 * np.diff(np.arctan(2 * (edges - el) / w)) / (np.pi - 2 * np.arctan(-2 * el / w))
    if ctype == "apec":
        return ApecShape(*shape, route="standin").unit_shape(edges)
    raise AssertionError(ctype)


RESP = {"apbgd": ("rmf", "ap"), "intbgd": ("rmf", None), "fcxb": ("rmf", "fcxb"), "intn": ("diag", None)}


def hand_fold(grp, source, ctype, shape):
    which, arf = RESP[source]
    R = (grp.rmf if which == "rmf" else grp.diag).matrix.toarray()
    F = flux(ctype, shape, EDGES)
    if arf == "ap":
        F = F * grp.ap_arf
    elif arf == "fcxb":
        F = F * grp.fcxb_arf
    return grp.exposure * (F @ R)


def shapes_of(state, source, g):
    """[(component, type, resolved shape values, norm index)] walked from the raw parameter list."""
    src = state[source]
    out, k = [], 0
    for cname, ctype in src.components:
        n = 4 if ctype in ("apec", "bknpower") else 3
        idx = [src.index(g, k + j + 1) for j in range(n)]
        out.append((cname, ctype, tuple(state.value(source, i) for i in idx[:-1]), idx[-1]))
        k += n
    return out


# -- templates ------------------------------------------------------------------------------------------


def test_templates_equal_dense_hand_folding(model):
    for g, grp in enumerate(model.groups, start=1):
        comps = model.components(g)
        assert len(comps) == 1 + 30 + 1 + 1
        expected = {(s, c): (hand_fold(grp, s, t, sh), i) for s in RESP for c, t, sh, i in shapes_of(model.state, s, g)}
        for source, cname, tpl, inorm in comps:
            want, idx = expected[(source, cname)]
            assert inorm == idx
            scale = max(want.max(), 1e-300)
            np.testing.assert_allclose(tpl, want, rtol=0, atol=1e-6 * scale, err_msg=f"{source} {cname} g{g}")


def test_model_counts_equal_hand_sum(model):
    st = model.state
    for g, grp in enumerate(model.groups, start=1):
        total = np.zeros(N)
        per = {}
        for s in RESP:
            for _c, t, sh, i in shapes_of(st, s, g):
                c = st.value(s, i) * hand_fold(grp, s, t, sh)
                per[s] = per.get(s, 0.0) + c
                total += c
        np.testing.assert_allclose(model.model_counts(g), total, rtol=1e-6, atol=1e-9 * total.max())
        got = model.source_counts(g)
        assert set(got) == set(RESP)
        for s in RESP:
            np.testing.assert_allclose(got[s], per[s], rtol=1e-6, atol=1e-9 * total.max())


def test_template_changes_with_shape_parameter(model):
    st = model.state
    st["apbgd"][1].value = 2.0  # PhoIndex of the A reference (fcxb of A groups follows by link)
    g1 = {(s, c): tpl for s, c, tpl, _ in model.components(1)}
    want = hand_fold(model.groups[0], "apbgd", "cutoffpl", (2.0, st.value("apbgd", 2)))
    np.testing.assert_allclose(g1[("apbgd", "cutoffpl")], want, rtol=0, atol=1e-6 * want.max())
    want = hand_fold(model.groups[0], "fcxb", "cutoffpl", (2.0, st.value("apbgd", 2)))
    np.testing.assert_allclose(g1[("fcxb", "cutoffpl")], want, rtol=0, atol=1e-6 * want.max())
    assert not model.is_linear or ("apbgd", 1) not in model.free()
    st["apbgd"][1].frozen = False
    assert not model.is_linear


# -- binning ------------------------------------------------------------------------------------------------


def test_binning_notice_rule_ungrouped():
    g = group("u", "A", RMF_A, WEIGHTS[0])
    b = Binning.from_group(g, (3.0, 20.0))
    # channels wholly inside [3, 20] keV: 1.6 + 0.2c >= 3 and 1.8 + 0.2c <= 20 -> c = 7 .. 91
    assert np.array_equal(np.flatnonzero(b.noticed), np.arange(7, 92))
    assert b.n_noticed == 85
    np.testing.assert_array_equal(b.bin(np.arange(N)), np.arange(7, 92))
    b = Binning.from_group(g)  # default 3-150 keV: up to the grid's end
    assert np.array_equal(np.flatnonzero(b.noticed), np.arange(7, N))


def test_binning_grouped_and_quality():
    grouping = -np.ones(N, dtype=int)
    starts = [0, 4, 7, 10, 30, 60, 95, 100, 150]
    grouping[starts] = 1
    quality = np.zeros(N, dtype=int)
    quality[33] = 2  # spoils the group 30..59
    counts = np.arange(N, dtype=float)
    g = group("q", "A", RMF_A, WEIGHTS[0], counts=counts, grouping=grouping, quality=quality)
    b = Binning.from_group(g, (3.0, 20.0))
    assert list(b.starts) == starts
    ends = starts[1:] + [N]
    centres = [0.5 * (EDGES[s] + EDGES[e]) for s, e in zip(starts, ends)]
    want = [(3.0 <= c <= 20.0) and not (s <= 33 < e) for c, s, e in zip(centres, starts, ends)]
    assert list(b.noticed) == want == [False, False, True, True, False, True, False, False, False]
    sums = [counts[s:e].sum() for s, e in zip(starts, ends)]
    np.testing.assert_array_equal(b.bin(counts), [s for s, w in zip(sums, want) if w])
    np.testing.assert_array_equal(b.e_lo[b.noticed], [EDGES[7], EDGES[10], EDGES[60]])
    # a first channel marked as continuation still starts the first bin
    grouping[0] = -1
    g2 = group("q2", "A", RMF_A, WEIGHTS[0], counts=counts, grouping=grouping, quality=quality)
    assert list(Binning.from_group(g2, (3.0, 20.0)).starts) == starts


def test_binned_data_and_model_use_the_noticed_bins(model):
    for g, grp in enumerate(model.groups, start=1):
        b = model.binning[g - 1]
        np.testing.assert_array_equal(model.binned_data(g), grp.counts[b.noticed])
        np.testing.assert_allclose(model.binned_model(g), model.model_counts(g)[b.noticed], rtol=1e-12)


# -- the linear problem -----------------------------------------------------------------------------------


def test_linear_problem_reproduces_the_model(model):
    st = model.state
    # A frozen non-zero norm goes to the offset; a link to it too.
    st.freeze("intbgd", 7)
    st["intbgd"][7].value = 3e-3
    model.refresh_links()
    data, design, offset, free = model.linear_problem()
    assert free == st.free_parameters() and ("intbgd", 7) not in free
    theta = np.array([st[s][k].value for s, k in free])
    for g in range(1, len(model.groups) + 1):
        np.testing.assert_allclose(design[g - 1] @ theta + offset[g - 1], model.binned_model(g), rtol=1e-10)
        np.testing.assert_array_equal(data[g - 1], model.binned_data(g))
        # group 1's frozen line reaches group 3 through its link, not the B group 2
        assert np.any(offset[g - 1] > 0) == (g != 2)
    # Column j is the model's derivative by free parameter j (set it to theta_j + 1).
    j = free.index(("fcxb", 3))
    base = [model.binned_model(g) for g in (1, 2, 3)]
    model.set_free_values(free, theta + np.eye(len(free))[j])
    for g in (1, 2, 3):
        np.testing.assert_allclose(model.binned_model(g) - base[g - 1], design[g - 1][:, j], rtol=1e-8,
                                   atol=1e-12 * base[g - 1].max())
    # fcxb link (1, 3): group 3's counts depend on group 1's fcxb norm, group 2's do not
    assert np.any(design[2][:, j] > 0) and not np.any(design[1][:, j])


def test_set_free_values_refreshes_links(model):
    free = model.free()
    theta = np.array([model.state[s][k].value for s, k in free]) * 2
    model.set_free_values(free, theta)
    for s in model.state:
        for k, p in enumerate(s.params, start=1):
            if p.link is not None:
                assert p.value == pytest.approx(model.state.value(s.name, k), rel=1e-12)


# -- caching ------------------------------------------------------------------------------------------------


def test_templates_shared_between_groups_with_the_same_response(model):
    model.components(1)
    n1 = len(model._templates)
    assert n1 == 1 + 30 + 1 + 1  # apbgd, intbgd, fcxb (different ARF), intn (diag)
    model.components(3)  # same RMF object, same ARFs and shapes: nothing new is folded
    assert len(model._templates) == n1
    for source in RESP:
        wanted = [(t, sh) for _c, t, sh, _i in shapes_of(model.state, source, 1)]
        a = model._fold(1, source, wanted)
        b = model._fold(3, source, wanted)
        assert all(x is y for x, y in zip(a, b))
    model.components(2)  # another RMF: new rmf-based templates; the diag one is shared
    assert len(model._templates) == 2 * n1 - 1
    # same RMF, different ARF values -> not shared
    model.groups[2].ap_arf = AP_ARF * 0.5
    a = model._fold(1, "apbgd", [("cutoffpl", (1.29, 41.13))])[0]
    b = model._fold(3, "apbgd", [("cutoffpl", (1.29, 41.13))])[0]
    np.testing.assert_allclose(b, 0.5 * a, rtol=1e-12)
    model.invalidate()
    assert not model._templates


def test_templates_are_read_only(model):
    tpl = model._fold(1, "intn", [("bknpower", (-0.05, 124.0, -0.85))])[0]
    with pytest.raises(ValueError):
        tpl[0] = 1.0


# -- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exposure", [0.0, -5.0, float("nan"), float("inf")])
def test_zero_or_nan_exposure(exposure):
    with pytest.raises(BadFileError) as exc:
        group("bad", "A", RMF_A, WEIGHTS[0], exposure=exposure, files={"spectrum": "bad_sr.pha"})
    assert "bad_sr.pha" in str(exc.value) and "EXPOSURE" in str(exc.value)


@pytest.mark.parametrize("value", [float("nan"), -1.0])
def test_nan_or_negative_counts(value):
    counts = np.ones(N)
    counts[5] = value
    with pytest.raises(BadFileError) as exc:
        group("bad", "A", RMF_A, WEIGHTS[0], counts=counts, files={"spectrum": "bad_sr.pha"})
    assert "bad_sr.pha" in str(exc.value) and "COUNTS" in str(exc.value)


def test_channel_and_arf_mismatch():
    with pytest.raises(BadFileError, match="RESPFILE"):
        group("bad", "A", RMF_A, WEIGHTS[0], counts=np.ones(N + 1))
    with pytest.raises(BadFileError, match="ap_arf"):
        GroupData(name="x", module="A", counts=np.ones(N), exposure=1.0, rmf=RMF_A, diag=DIAG, ap_arf=np.ones(3),
                  fcxb_arf=FCXB_ARF)


def test_folded_model_bad_setup(presets):
    groups = [group("g1", "A", RMF_A, WEIGHTS[0])]
    state = build_background_model(["A"], WEIGHTS[:1], presets)
    with pytest.raises(BadConfigError):
        FoldedModel(state, groups + groups)
    with pytest.raises(BadConfigError):
        FoldedModel(state, groups, ignore=(5.0, 3.0))
    with pytest.raises(BadFileError, match="no noticed bins"):
        FoldedModel(state, groups, ignore=(60.0, 150.0))
    gappy = Response(energ_lo=np.r_[EDGES[:100], EDGES[101:-1]], energ_hi=np.r_[EDGES[1:101], EDGES[102:]],
                     e_min=EDGES[:-1].copy(), e_max=EDGES[1:].copy(),
                     matrix=sp.csr_matrix(np.eye(N - 1, N)))
    g = GroupData(name="gap", module="A", counts=np.ones(N), exposure=1.0, rmf=gappy, diag=DIAG,
                  ap_arf=np.ones(N - 1), fcxb_arf=np.ones(N - 1), files={"rmf": "gap.rmf"})
    with pytest.raises(BadFileError) as exc:
        FoldedModel(state, [g], apec=ApecShape(route="standin")).components(1)
    assert "gap.rmf" in str(exc.value) and "ENERG_LO" in str(exc.value)
