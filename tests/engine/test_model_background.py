"""The background model: presets, normalisations and links of spec §2.9 / §3.2, parameter bookkeeping.

Expected values come from the spec (§2.9 captured example, §6.2 reference weights) or from the
§3.2 formulas evaluated here with plain loops over the raw ``ratios.json`` dictionary, never from
the module under test.
"""

import copy

import numpy as np
import pytest

from nuskybgd_engine.calibration.products import load_ratios
from nuskybgd_engine.errors import BadConfigError, BadRegionError, NuSkyBgdError
from nuskybgd_engine.model.background import (
    BackgroundOptions,
    RegionWeights,
    add_linked_groups,
    build_background_model,
    region_weights,
)
from nuskybgd_engine.model.presets import load_presets, presets_from_ratios

# §6.2: synthetic circle r=50 px at (560, 300), FPMA.
W1 = RegionWeights(164.10, (6316.06, 0.227, 0.0, 1489.52), "A", "r1")
# Groups 2-4 of the §2.9 example (B reference, A, B): made-up but plausible weights.
W2 = RegionWeights(240.0, (100.0, 5000.0, 2500.0, 0.0), "B", "r1B")
W3 = RegionWeights(140.6, (0.0, 4000.0, 3000.0, 10.0), "A", "r2")
W4 = RegionWeights(89.3, (3000.0, 3000.0, 0.0, 1500.0), "B", "r2B")
WEIGHTS = [W1, W2, W3, W4]
MODULES = ["A", "B", "A", "B"]
N_PAR = {"apbgd": 3, "intbgd": 91, "fcxb": 3, "intn": 4}


@pytest.fixture(scope="module")
def ratios():
    data, _ = load_ratios()
    return data


@pytest.fixture(scope="module")
def presets(ratios):
    return presets_from_ratios(ratios)


@pytest.fixture(scope="module")
def example(presets):
    """The §2.9 captured example: groups A,B,A,B, fixed line ratios, fcxb links [[1,2],[3,4]]."""
    opts = BackgroundOptions(fcxb_links=[(1, 2), (3, 4)], fix_line_ratios=True)
    return build_background_model(MODULES, WEIGHTS, presets, opts)


# -- independent formulas (§3.2) ------------------------------------------------------------------


def intbgd_components(ratios):
    """[(name, {module: ifactors})] in file order, apec first."""
    comps = ratios["models"][1]["components"]
    return [(name, {m: list(comps[name][m]["ifactors"]) for m in "AB"}) for name in comps]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def norm_local(k):
    """Local parameter number of the norm of intbgd component k (0 = apec, k = line k)."""
    return 4 if k == 0 else 4 + 3 * k


def rel(a, b):
    return abs(a - b) / abs(b)


# -- §2.9 captured example ------------------------------------------------------------------------


def test_captured_example_reference_values(example):
    """§2.9/§6.2 numbers, to ~1e-6 relative (W = 164.10 is quoted to 5 digits: 3e-5 for apbgd)."""
    assert rel(example.value("apbgd", 3), 1.206640e-02) < 3e-5
    assert rel(example.value("fcxb", 3), 1.284482e-05) < 2e-6
    assert rel(example.value("intn", 4), 3.013788e-04) < 2e-6
    assert rel(example.value("intbgd", 4), 0.2382320) < 2e-6
    # line 6 = lorentz_6 (21.89 keV), local 19, linked to the 19.6 keV line (local 16).
    p = example["intbgd"][19]
    assert p.component == "lorentz_6" and p.name == "norm"
    assert (p.link.source, p.link.index) == ("intbgd", 16)
    assert rel(p.link.factor, 2.909914) < 2e-6


def test_captured_example_structure(example):
    for name, n in N_PAR.items():
        src = example[name]
        assert src.n_par == n and len(src.params) == 4 * n and src.n_groups == 4
    # 2 apbgd + (apec + 4 lines) x 2 refs + 4 - 2 fcxb + 2 intn.
    free = example.free_parameters()
    assert len(free) == 2 + 10 + 2 + 2
    assert ("apbgd", 3) in free and ("apbgd", 6) in free and ("apbgd", 9) not in free
    # Chained link: group 3 line 6 -> group 1 line 6 (itself -> line 4 of group 1).
    p = example["intbgd"][2 * 91 + 19]
    assert (p.link.source, p.link.index) == ("intbgd", 19)
    assert example["intbgd"][19].link is not None


def test_fixed_line_ratios_of_b_reference_use_its_own_anchor(example):
    """The IDL bug (§3.5): B reference lines linked to the A spectrum's anchor. Here: its own p107."""
    for k in range(5, 30):
        p = example["intbgd"][91 + norm_local(k)]
        assert (p.link.source, p.link.index) == ("intbgd", 91 + 16), k
    for k in range(0, 5):
        assert example["intbgd"][91 + norm_local(k)].free


def test_fixed_line_ratio_factors(example, ratios):
    comps = intbgd_components(ratios)
    for g, w in ((1, W1), (2, W2)):
        f = [a / sum(w.A) for a in w.A]
        n4 = dot(f, comps[4][1][w.module])
        for k in range(5, 30):
            nk = dot(f, comps[k][1][w.module])
            p = example["intbgd"][(g - 1) * 91 + norm_local(k)]
            assert rel(p.link.factor, nk / n4) < 1e-12
            assert rel(example.value("intbgd", (g - 1) * 91 + norm_local(k)),
                       nk / n4 * example.value("intbgd", (g - 1) * 91 + 16)) < 1e-12


def test_reference_values_by_formula(example, ratios):
    comps = intbgd_components(ratios)
    J = {m: ratios["models"][3]["components"]["bknpower"][m]["ifactors"] for m in "AB"}
    for g, w in ((1, W1), (2, W2)):
        m = w.module
        f = [a / sum(w.A) for a in w.A]
        assert rel(example.value("apbgd", (g - 1) * 3 + 3), 0.002353 / 32 * w.W) < 1e-12
        assert rel(example.value("intn", (g - 1) * 4 + 4), dot(w.A, J[m]) / 599.75) < 1e-12
        for k in range(5):
            assert rel(example.value("intbgd", (g - 1) * 91 + norm_local(k)), dot(f, comps[k][1][m])) < 1e-12
    # fcxb: every group free at 0.002353 * 1.5 * (2.45810736*1000/3600)^2 / 1e6 * sum(A) (or linked).
    per_pixel = 0.002353 * 1.5 * (2.45810736 * 1000 / 3600) ** 2 / 1e6
    assert rel(per_pixel, 1.6455454e-9) < 1e-7
    for g, w in enumerate(WEIGHTS, start=1):
        p = example["fcxb"][(g - 1) * 3 + 3]
        if g in (1, 3):
            assert p.free and rel(p.value, per_pixel * sum(w.A)) < 1e-12
        else:
            assert (p.link.source, p.link.index, p.link.factor) == ("fcxb", (g - 2) * 3 + 3, 1.0)


def test_link_factors_of_other_groups_by_formula(example, ratios):
    comps = intbgd_components(ratios)
    J = {m: ratios["models"][3]["components"]["bknpower"][m]["ifactors"] for m in "AB"}
    for g, r in ((3, 1), (4, 2)):
        ws, wr = WEIGHTS[g - 1], WEIGHTS[r - 1]
        m = ws.module
        ap = example["apbgd"]
        assert ap[(g - 1) * 3 + 1].link.index == (r - 1) * 3 + 1
        assert ap[(g - 1) * 3 + 2].link.index == (r - 1) * 3 + 2
        p = ap[(g - 1) * 3 + 3]
        assert p.link.index == (r - 1) * 3 + 3 and rel(p.link.factor, ws.W / wr.W) < 1e-12
        for k, (name, fac) in enumerate(comps):
            p = example["intbgd"][(g - 1) * 91 + norm_local(k)]
            assert p.component == name
            assert (p.link.source, p.link.index) == ("intbgd", (r - 1) * 91 + norm_local(k))
            want = dot(ws.A, fac[m]) / dot(wr.A, fac[m])
            assert rel(p.link.factor, want) < 1e-12, name
        # every shape parameter linked to the reference's same parameter
        for local in range(1, 92):
            if local in [norm_local(k) for k in range(30)]:
                continue
            p = example["intbgd"][(g - 1) * 91 + local]
            assert (p.link.index, p.link.factor) == ((r - 1) * 91 + local, 1.0)
        p = example["intn"][(g - 1) * 4 + 4]
        assert p.link.index == (r - 1) * 4 + 4
        assert rel(p.link.factor, dot(ws.A, J[m]) / dot(wr.A, J[m])) < 1e-12
    # The §2.9 group-3 line-6 value: factor x 2.909914 x anchor.
    fac = comps[5][1]["A"]
    want = dot(W3.A, fac) / dot(W1.A, fac) * 2.909914 * example.value("intbgd", 16)
    assert rel(example.value("intbgd", 2 * 91 + 19), want) < 2e-6


def test_shapes_presets_and_cross_model_links(example, ratios):
    for g, m in enumerate(MODULES, start=1):
        r = MODULES.index(m) + 1
        # fcxb shape -> apbgd shape of the module's reference
        for k in (1, 2):
            p = example["fcxb"][(g - 1) * 3 + k]
            assert (p.link.source, p.link.index, p.link.factor) == ("apbgd", (r - 1) * 3 + k, 1.0)
        # intn shape frozen at presets in every group (not linked)
        bkn = ratios["models"][3]["components"]["bknpower"][m]
        for k, key in enumerate(("phoindx1", "breake", "phoindx2"), start=1):
            p = example["intn"][(g - 1) * 4 + k]
            assert p.frozen and p.link is None and p.value == bkn[key]
    ap = ratios["models"][0]["components"]["cutoffpl"]
    for r in (1, 2):
        m = MODULES[r - 1]
        assert example["apbgd"][(r - 1) * 3 + 1].frozen and example.value("apbgd", (r - 1) * 3 + 1) == ap[m]["phoindex"]
        assert example.value("apbgd", (r - 1) * 3 + 2) == ap[m]["highecut"]
        apec = ratios["models"][1]["components"]["apec"][m]
        vals = [example.value("intbgd", (r - 1) * 91 + k) for k in (1, 2, 3)]
        assert vals == [apec["kt"], apec["abundanc"], apec["redshift"]]
        assert all(example["intbgd"][(r - 1) * 91 + k].frozen for k in (1, 2, 3))
        line = ratios["models"][1]["components"]["lorentz_30"][m]
        assert example.value("intbgd", (r - 1) * 91 + 89) == line["linee"]
        assert example.value("intbgd", (r - 1) * 91 + 90) == line["width"]


def test_linked_values_are_stored_resolved(example):
    for s in example:
        for k, p in enumerate(s.params, start=1):
            if p.link is not None:
                assert p.value == pytest.approx(example.value(s.name, k), rel=1e-12)


def test_without_fixed_ratios_all_line_norms_free(presets):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions())
    free = st.free_parameters()
    assert len(free) == 2 + 60 + 4 + 2
    assert all(st["intbgd"][norm_local(k)].free for k in range(30))


def test_no_solar(presets, ratios):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(no_solar=True))
    for g in range(1, 5):
        for k in range(4):  # apec, 3.54, 4.51, 10.20 keV
            assert st.value("intbgd", (g - 1) * 91 + norm_local(k)) == 0.0
        for k in range(4, 30):
            assert st.value("intbgd", (g - 1) * 91 + norm_local(k)) > 0
    for r in (1, 2):
        for k in range(4):
            p = st["intbgd"][(r - 1) * 91 + norm_local(k)]
            assert p.frozen and p.link is None
        assert st["intbgd"][(r - 1) * 91 + 16].free
    names = [n for n, _ in intbgd_components(ratios)[:4]]
    assert names == ["apec", "lorentz", "lorentz_3", "lorentz_4"]
    assert len(st.free_parameters()) == 2 + 2 * 26 + 4 + 2


def test_no_solar_with_fixed_ratios(presets):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(no_solar=True, fix_line_ratios=True))
    # only line 4 (19.6 keV) is free in the intbgd of each reference
    assert [k for s, k in st.free_parameters() if s == "intbgd"] == [16, 91 + 16]


def test_solar_ratios_tie_the_soft_lines_to_apec(presets, ratios):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fix_line_ratios=True,
                                                                            solar_ratios=True))
    # two free intbgd norms per reference: apec (local 4) and the 19.6 keV line (local 16)
    assert [k for s, k in st.free_parameters() if s == "intbgd"] == [4, 16, 91 + 4, 91 + 16]
    comps = intbgd_components(ratios)
    for r, w in ((1, W1), (2, W2)):
        f = w.fractions
        nominal = {name: float(np.dot(f, ifs[w.module])) for name, ifs in comps}
        for k, name in ((1, "lorentz"), (2, "lorentz_3"), (3, "lorentz_4")):
            p = st["intbgd"][(r - 1) * 91 + 4 + 3 * k]
            assert p.link.index == (r - 1) * 91 + 4 and p.link.source == "intbgd"
            assert p.link.factor == pytest.approx(nominal[name] / nominal["apec"], rel=1e-12)
            assert st.value("intbgd", (r - 1) * 91 + 4 + 3 * k) == pytest.approx(nominal[name], rel=1e-12)
    # no_solar wins: the solar pieces stay frozen at 0
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(no_solar=True, solar_ratios=True))
    assert all(st["intbgd"][4 + 3 * k].frozen and st["intbgd"][4 + 3 * k].link is None for k in range(4))


def test_negative_norms_open_only_the_norm_limits(presets):
    base = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fix_line_ratios=True))
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fix_line_ratios=True,
                                                                            negative_norms=True))
    assert st.free_parameters() == base.free_parameters()
    n_norms = 0
    for s in st:
        for p, q in zip(s.params, base[s.name].params):
            assert p.value == q.value and p.frozen == q.frozen and str(p.link) == str(q.link)
            assert (p.soft_max, p.hard_max) == (q.soft_max, q.hard_max)
            if p.is_norm:
                n_norms += 1
                assert (q.hard_min, q.soft_min) == (0.0, 0.0)
                assert (p.hard_min, p.soft_min) == (-1e24, -1e24)
            else:
                assert (p.hard_min, p.soft_min) == (q.hard_min, q.soft_min)
    assert n_norms == 4 * (1 + 30 + 1 + 1)


def test_dependent_groups_of_a_reference(presets):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fcxb_links=[(1, 2), (3, 4)]))
    # groups 1 (A) and 2 (B) are the references: groups 3 and 4 link their norms and shapes to them,
    # and group 2's fcxb norm equals group 1's
    assert st.dependent_groups(1) == [1, 2, 3]
    assert st.dependent_groups(2) == [2, 4]
    assert st.dependent_groups(3) == [3, 4]  # group 4's fcxb norm is linked to group 3's
    assert build_background_model(MODULES, WEIGHTS, presets).dependent_groups(3) == [3]


# -- fcxb links, cycles, parameter operations ------------------------------------------------------


@pytest.mark.parametrize("links", [[(1, 1)], [(0, 2)], [(1, 5)], [("a", 2)], [(1, 2, 3)], [5]])
def test_bad_fcxb_links(presets, links):
    with pytest.raises(BadConfigError) as exc:
        build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fcxb_links=links))
    assert "fcxb_config.links" in str(exc.value)


def test_fcxb_link_cycle_refused(presets):
    with pytest.raises(BadConfigError, match="cycle"):
        build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fcxb_links=[(1, 2), (2, 1)]))
    with pytest.raises(BadConfigError, match="cycle"):
        build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fcxb_links=[(1, 2), (2, 3), (3, 1)]))


def test_fcxb_chained_links(presets):
    st = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fcxb_links=[(1, 2), (2, 3)]))
    assert st.value("fcxb", 9) == st.value("fcxb", 3)
    assert st.root("fcxb", 9) == (1.0, "fcxb", 3)


def test_state_link_refuses_self_and_cycles_and_keeps_old_link(example):
    st = example.copy()
    with pytest.raises(BadConfigError, match="cycle"):
        st.link("apbgd", 3, "apbgd", 3)
    assert st["apbgd"][3].link is None and st["apbgd"][3].free
    # p9 -> p3 exists; p3 -> p9 closes a cycle and must leave p3 free.
    with pytest.raises(BadConfigError, match="cycle"):
        st.link("apbgd", 3, "apbgd", 9, 2.0)
    assert st["apbgd"][3].free
    with pytest.raises(BadConfigError) as exc:
        st.link("apbgd", 3, "apbgd", 13)
    assert "apbgd:p13" in str(exc.value)
    with pytest.raises(BadConfigError):
        st.link("apbgd", 3, "nosuch", 1)
    with pytest.raises(BadConfigError):
        st.link("apbgd", 3, "fcxb", 3, float("nan"))


def test_state_operations(example):
    st = example.copy()
    v9 = st.value("apbgd", 9)
    st.set_value("apbgd", 3, 2 * st.value("apbgd", 3))
    assert st.value("apbgd", 9) == pytest.approx(2 * v9, rel=1e-12)
    st.unlink("apbgd", 9)
    assert st["apbgd"][9].free and st["apbgd"][9].value == pytest.approx(2 * v9, rel=1e-12)
    st.freeze("apbgd", 9)
    assert st["apbgd"][9].frozen and ("apbgd", 9) not in st.free_parameters()
    st.link("apbgd", 9, "apbgd", 3, 0.5)
    assert not st["apbgd"][9].frozen and st.value("apbgd", 9) == pytest.approx(0.5 * st.value("apbgd", 3))
    for bad in (float("nan"), "x", -1.0):
        with pytest.raises(BadConfigError) as exc:
            st.set_value("apbgd", 3, bad)
        assert "apbgd:p3" in str(exc.value)
    with pytest.raises(BadConfigError):
        st["nosuch"]
    # copies are independent
    assert example.value("apbgd", 3) != st.value("apbgd", 3)


# -- bad geometry -----------------------------------------------------------------------------------


def test_region_off_detectors_and_module_mismatch(presets):
    off = RegionWeights(10.0, (0.0, 0.0, 0.0, 0.0), "A", "off")
    with pytest.raises(BadRegionError) as exc:
        build_background_model(["A"], [off], presets)
    assert "off" in str(exc.value)
    noap = RegionWeights(0.0, (10.0, 0.0, 0.0, 0.0), "A", "noap")
    with pytest.raises(BadRegionError):
        build_background_model(["A"], [noap], presets)
    with pytest.raises(BadConfigError, match="FPMB"):
        build_background_model(["A"], [W2], presets)
    with pytest.raises(BadConfigError):
        build_background_model(["A", "A"], [W1], presets)
    with pytest.raises(BadConfigError):
        build_background_model(["C"], [W1], presets)
    with pytest.raises(BadConfigError):
        build_background_model([], [], presets)


def test_fixed_ratios_with_zero_anchor(presets):
    # DET1 only: lorentz_5 ifactor A DET1 is 2.6e-5 (not zero) -> fine; zero it in a copy of the presets.
    data, _ = load_ratios()
    data = copy.deepcopy(data)
    data["models"][1]["components"]["lorentz_5"]["A"]["ifactors"] = [0.0, 0.0, 0.0, 0.0]
    p0 = presets_from_ratios(data)
    with pytest.raises(BadRegionError) as exc:
        build_background_model(["A"], [W1], p0, BackgroundOptions(fix_line_ratios=True))
    assert "intbgd_fix_line_ratios" in str(exc.value)


# -- add_linked_groups (spec §2.10, predict) ---------------------------------------------------------


@pytest.mark.parametrize("fcxb", ["linked", "nominal"])
def test_add_linked_groups(example, presets, ratios, fcxb):
    st = example.copy()
    wa = RegionWeights(55.0, (800.0, 0.0, 1200.0, 300.0), "A", "srcA")
    wb = RegionWeights(70.0, (0.0, 900.0, 1000.0, 50.0), "B", "srcB")
    new = add_linked_groups(st, ["A", "FPMB"], [wa, wb], presets, fcxb=fcxb)
    assert new == [5, 6]
    assert st.modules == ["A", "B", "A", "B", "A", "B"] and st.weights[4] is wa
    comps = intbgd_components(ratios)
    J = {m: ratios["models"][3]["components"]["bknpower"][m]["ifactors"] for m in "AB"}
    for g, r, w in ((5, 1, wa), (6, 2, wb)):
        wr = WEIGHTS[r - 1]
        m = w.module
        p = st["apbgd"][(g - 1) * 3 + 3]
        assert p.link.index == (r - 1) * 3 + 3 and rel(p.link.factor, w.W / wr.W) < 1e-12
        for k, (name, fac) in enumerate(comps):
            gi = (g - 1) * 91 + norm_local(k)
            p = st["intbgd"][gi]
            assert p.link.index == (r - 1) * 91 + norm_local(k)
            assert rel(p.link.factor, dot(w.A, fac[m]) / dot(wr.A, fac[m])) < 1e-12
            # value: ratio of Σ A·I times the reference's resolved value (chains followed)
            assert rel(st.value("intbgd", gi), p.link.factor * st.value("intbgd", (r - 1) * 91 + norm_local(k))) < 1e-12
        p = st["intn"][(g - 1) * 4 + 4]
        assert rel(p.link.factor, dot(w.A, J[m]) / dot(wr.A, J[m])) < 1e-12
        for k in (1, 2):
            p = st["fcxb"][(g - 1) * 3 + k]
            assert (p.link.source, p.link.index) == ("apbgd", (r - 1) * 3 + k)
        p = st["fcxb"][(g - 1) * 3 + 3]
        if fcxb == "linked":
            assert rel(p.link.factor, sum(w.A) / sum(wr.A)) < 1e-12
            # both chains end at group 1's fcxb norm (the B reference is linked to it by [1, 2])
            assert st.root("fcxb", (g - 1) * 3 + 3)[1:] == ("fcxb", 3)
        else:
            assert p.free and rel(p.value, 1.6455454e-9 * sum(w.A)) < 1e-6
        # every shape parameter is linked, nothing new is free except a nominal fcxb norm
    extra = set(st.free_parameters()) - set(example.free_parameters())
    assert extra == (set() if fcxb == "linked" else {("fcxb", 15), ("fcxb", 18)})


def test_add_linked_groups_errors(presets):
    st = build_background_model(["A"], [W1], presets)
    with pytest.raises(BadConfigError, match="FPMB"):
        add_linked_groups(st, ["B"], [W2], presets)
    with pytest.raises(BadConfigError):
        add_linked_groups(st, ["A"], [W2], presets)
    with pytest.raises(BadConfigError):
        add_linked_groups(st, ["A"], [W1], presets, fcxb="free")
    with pytest.raises(BadRegionError):
        add_linked_groups(st, ["A"], [RegionWeights(1.0, (0, 0, 0, 0), "A")], presets)


# -- region weights and presets ------------------------------------------------------------------------


def test_region_weights_are_map_sums_over_the_mask():
    from types import SimpleNamespace

    from astropy.io import fits
    from regions import CirclePixelRegion, PixCoord, RectanglePixelRegion

    from nuskybgd_engine.io.regions import RegionSet, SkyGrid

    h = fits.Header()
    for k, v in {"NAXIS": 2, "NAXIS1": 1000, "NAXIS2": 1000, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                 "CRPIX1": 500.5, "CRPIX2": 500.5, "CRVAL1": 150.0, "CRVAL2": 2.0, "CDELT1": -6.828076e-4,
                 "CDELT2": 6.828076e-4}.items():
        h[k] = v
    grid = SkyGrid.from_header(h)
    rng = np.random.default_rng(3)
    bgdap = rng.uniform(0, 0.05, (1000, 1000))
    det = [np.zeros((1000, 1000)) for _ in range(4)]
    det[0][:, :500] = 1.0
    det[2][:, 500:] = 0.5
    maps = SimpleNamespace(bgdap=bgdap, det=det, module="A")
    rs = RegionSet()
    rs.add(CirclePixelRegion(PixCoord(480.0, 300.0), 40.0), name="c")
    rs.add(RectanglePixelRegion(PixCoord(480.0, 300.0), 10.0, 10.0), include=False, name="hole")
    w = region_weights(rs, grid, maps, name="c")
    yy, xx = np.mgrid[0:1000, 0:1000]
    mask = ((xx - 480.0) ** 2 + (yy - 300.0) ** 2 < 40.0 ** 2) & ~((abs(xx - 480.0) < 5) & (abs(yy - 300.0) < 5))
    assert w.W == pytest.approx(bgdap[mask].sum(), rel=1e-12)
    assert w.A == pytest.approx((det[0][mask].sum(), 0.0, det[2][mask].sum(), 0.0), rel=1e-12)
    assert w.module == "A" and np.sum(w.fractions) == pytest.approx(1.0)


def test_presets_layout(presets, ratios):
    assert presets.n_lines == 29
    names = [c.name for c in presets.intbgd]
    assert names == ["apec", "lorentz"] + [f"lorentz_{k}" for k in range(3, 31)]
    assert presets.intbgd[5].params["LineE"] == ratios["models"][1]["components"]["lorentz_6"]["A"]["linee"]


@pytest.mark.requires_data
def test_presets_match_idl_ratio_tables(auxil_dir):
    """§6.1 item 12: intn ifactors x 25 = ratios*.dat continuum values (5e-6); lines identical."""
    p = load_presets(auxil_dir / "ratios.json")
    for m in "AB":
        rows = [list(map(float, line.split())) for line in (auxil_dir / f"ratios{m}.dat").read_text().splitlines()
                if line.strip()]
        assert len(rows) == 31
        for k, c in enumerate(p.intbgd[1:]):
            assert rows[k][:2] == pytest.approx([c.params["LineE"], c.params["Width"]], rel=1e-6)
            assert rows[k][2:6] == pytest.approx(list(c.ifactors[m]), rel=1e-5, abs=1e-20)
        assert rows[29][2:6] == pytest.approx(list(p.intbgd[0].ifactors[m]), rel=1e-5)
        assert rows[30][2:6] == pytest.approx(list(25 * p.intn_ifactors[m]), rel=5e-6)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("models"), "models"),
    (lambda d: d["models"][3]["components"]["bknpower"]["A"].__setitem__("ifactors", [1, 2]), "intn.A.ifactors"),
    (lambda d: d["models"][0]["components"]["cutoffpl"]["B"].__setitem__("phoindex", "x"), "apbgd.B.phoindex"),
    (lambda d: d["models"][1]["components"].__setitem__("gauss", {}), "intbgd"),
    (lambda d: d["models"][1]["components"]["lorentz_7"]["A"].__setitem__("linee", float("nan")), "lorentz_7.linee"),
])
def test_presets_validation(ratios, edit, field):
    data = copy.deepcopy(ratios)
    edit(data)
    with pytest.raises(BadConfigError) as exc:
        presets_from_ratios(data, source="myratios.json")
    assert "myratios.json" in str(exc.value) and field in str(exc.value)


def test_presets_missing_module_key(ratios):
    data = copy.deepcopy(ratios)
    del data["models"][3]["components"]["bknpower"]["B"]
    with pytest.raises(NuSkyBgdError) as exc:
        presets_from_ratios(data, source="r.json")
    assert "r.json" in str(exc.value)


@pytest.mark.parametrize("edit", [
    lambda d: d["models"][1]["components"]["lorentz_3"].pop("B"),
    lambda d: d["models"][1]["components"]["lorentz_3"]["A"].pop("linee"),
    lambda d: d["models"][1]["components"].__setitem__("apec", 5),
])
def test_presets_malformed_intbgd_component(ratios, edit):
    data = copy.deepcopy(ratios)
    edit(data)
    with pytest.raises(BadConfigError) as exc:
        presets_from_ratios(data, source="r.json")
    assert "r.json" in str(exc.value) and "intbgd." in str(exc.value)
