"""The optional GRXE source (IDL source 6): built from GRXE weights, linked by G, through the .xcm and back."""

import numpy as np
import pytest
import scipy.sparse as sp
from nuskybgd_engine.errors import BadRegionError
from nuskybgd_engine.fit.native import LinearProblem, fit_linear
from nuskybgd_engine.io.ogip import Response
from nuskybgd_engine.model.background import (
    OPTIONAL_SOURCE_NUMBERS,
    BackgroundOptions,
    RegionWeights,
    build_background_model,
)
from nuskybgd_engine.model.components import ApecShape
from nuskybgd_engine.model.folding import FoldedModel, GroupData
from nuskybgd_engine.model.presets import load_presets
from nuskybgd_engine.model.tablemodel import (
    register_table_model,
    unregister_table_model,
)
from nuskybgd_engine.model.xcm_model import session_to_state, state_to_session
from nuskybgd_engine.xcm import format_xcm, parse_xcm

MODULES = ["A", "B", "A", "B"]
WEIGHTS = [RegionWeights(164.1, (6316.06, 0.227, 0.0, 1489.52), "A", "r1", G=12.0),
           RegionWeights(240.0, (100.0, 5000.0, 2500.0, 0.0), "B", "r1B", G=20.0),
           RegionWeights(140.6, (0.0, 4000.0, 3000.0, 10.0), "A", "r2", G=3.0),
           RegionWeights(89.3, (3000.0, 3000.0, 0.0, 1500.0), "B", "r2B", G=5.0)]
TABLE = "atable{polarmodel.fits}"


@pytest.fixture
def polar(tmp_path, write_table):
    """A small stand-in of polarmodel.fits (same name and layout, WD-mass grid 0.3–1.4)."""
    grid = np.linspace(0.3, 1.4, 12)
    edges = np.linspace(0.05, 99.95, 201)
    centre = 0.5 * (edges[1:] + edges[:-1])
    spectra = np.array([np.diff(edges) * np.exp(-centre / (10 + 20 * m)) for m in grid])
    register_table_model(write_table(tmp_path / "polarmodel.fits", grid, edges, spectra))
    yield
    unregister_table_model(TABLE)


@pytest.fixture(scope="module")
def presets():
    return load_presets()


def test_grxe_source_links(polar, presets):
    state = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions())
    src = state["grxe"]
    assert src.number == OPTIONAL_SOURCE_NUMBERS["grxe"] == 6
    assert [t for _c, t in src.components] == ["gaussian", TABLE]
    assert src.n_par == 5 and len(src.params) == 5 * len(MODULES)
    ref = src.params[:5]
    assert [p.value for p in ref[:2]] == [6.7, 0.0] and ref[0].frozen and ref[1].frozen
    assert ref[3].value == 0.6 and ref[3].frozen and not ref[2].frozen and not ref[4].frozen
    for g, (m, w) in enumerate(zip(MODULES, WEIGHTS), start=1):
        r = MODULES.index(m) + 1
        if g == r:
            continue
        for local in (3, 5):
            p = src.params[(g - 1) * 5 + local - 1]
            assert p.link.source == "grxe" and p.link.index == (r - 1) * 5 + local
            assert p.link.factor == pytest.approx(w.G / WEIGHTS[r - 1].G, rel=1e-15)


def test_no_grxe_without_weights_and_mixed_is_refused(polar, presets):
    plain = [RegionWeights(w.W, w.A, w.module, w.name) for w in WEIGHTS]
    assert "grxe" not in [s.name for s in build_background_model(MODULES, plain, presets)]
    with pytest.raises(BadRegionError, match="GRXE weight"):
        build_background_model(MODULES, plain[:1] + WEIGHTS[1:], presets)


def test_grxe_xcm_round_trip(polar, presets):
    state = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions())
    state["grxe"].params[2].value = 3.5e-5
    state["grxe"].params[4].value = 7.5e-12
    state.refresh_links()
    files = [{"spectrum": f"bgd{g}_sr.pha", "rmf": f"bgd{g}_sr.rmf", "ap_arf": "be.arf",
                  "fcxb_arf": f"fcxb{MODULES[g - 1]}.arf", "diag": "diag.rmf"} for g in range(1, 5)]
    text = format_xcm(state_to_session(state, files))
    assert "model 6:grxe gaussian + atable{polarmodel.fits}" in text
    assert "response 6:2 bgd2_sr.rmf" in text and "arf 6:2 be.arf" in text
    back = session_to_state(parse_xcm(text))
    a, b = state["grxe"], back["grxe"]
    assert [t for _c, t in b.components] == [t for _c, t in a.components]
    for pa, pb in zip(a.params, b.params):
        assert pb.frozen == pa.frozen
        assert (pb.link is None) == (pa.link is None)
        if pa.link is not None:
            assert (pb.link.source, pb.link.index) == (pa.link.source, pa.link.index)
            assert pb.link.factor == pytest.approx(pa.link.factor, rel=1e-12)
        else:
            assert pb.value == pytest.approx(pa.value, rel=1e-12)


N = 240  # 0.2 keV channels, 1.6 .. 49.6 keV
EDGES = 1.6 + 0.2 * np.arange(N + 1)


def _response(efficiency=None):
    """A diagonal response (channel = energy bin) with an efficiency per bin: enough for a norms fit."""
    eff = np.ones(N) if efficiency is None else efficiency
    return Response(energ_lo=EDGES[:-1].copy(), energ_hi=EDGES[1:].copy(), e_min=EDGES[:-1].copy(),
                    e_max=EDGES[1:].copy(), matrix=sp.diags(eff, format="csr"), module="A")


def _groups(counts, exposure):
    diag = _response()
    rmfs = {m: _response(np.random.default_rng(seed).uniform(0.7, 1.0, N)) for seed, m in enumerate("AB")}
    fcxb_arf = 300.0 * np.exp(-((0.5 * (EDGES[:-1] + EDGES[1:]) - 10.0) / 15.0) ** 2)
    return [GroupData(name=f"g{g}", module=m, counts=counts[g - 1], exposure=exposure, rmf=rmfs[m], diag=diag,
                      ap_arf=np.linspace(0.3, 1.0, N), fcxb_arf=fcxb_arf.copy(), weights=w)
            for g, (m, w) in enumerate(zip(MODULES, WEIGHTS), start=1)]


def test_simulated_grxe_is_recovered(polar, presets):
    """Poisson counts from a model with a known GRXE (a quarter of the 5–10 keV counts); the fit of
    all free norms recovers both GRXE norms of each module within 3σ."""
    truth = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fix_line_ratios=True))
    exposure = 2e5
    zero = [np.zeros(N) for _ in MODULES]
    model = FoldedModel(truth, _groups(zero, exposure), apec=ApecShape(route="standin"))
    band = (EDGES[:-1] >= 5.0) & (EDGES[1:] <= 10.0)
    grxe = truth["grxe"]
    for m in ("A", "B"):
        r = MODULES.index(m) + 1
        base = (r - 1) * 5
        grxe.params[base + 2].value = grxe.params[base + 4].value = 0.0
        model.refresh_links()
        other = model.model_counts(r)[band].sum()
        unit = []
        for k in (2, 4):  # line alone, continuum alone
            grxe.params[base + k].value = 1.0
            model.refresh_links()
            unit.append(model.source_counts(r)["grxe"][band].sum())
            grxe.params[base + k].value = 0.0
        # GRXE a quarter of the band (1/3 of the rest), line : continuum = 1 : 3.
        grxe.params[base + 2].value = 0.25 * other / 3.0 / unit[0]
        grxe.params[base + 4].value = 0.75 * other / 3.0 / unit[1]
        model.refresh_links()
        g_counts = model.source_counts(r)["grxe"][band].sum()
        assert g_counts / (other + g_counts) == pytest.approx(0.25, rel=1e-9)
    true_norms = {m: (grxe.params[(MODULES.index(m)) * 5 + 2].value, grxe.params[(MODULES.index(m)) * 5 + 4].value)
                  for m in ("A", "B")}
    rng = np.random.default_rng(42)
    counts = [rng.poisson(model.model_counts(g)).astype(float) for g in range(1, len(MODULES) + 1)]
    fitted = build_background_model(MODULES, WEIGHTS, presets, BackgroundOptions(fix_line_ratios=True))
    fm = FoldedModel(fitted, _groups(counts, exposure), apec=ApecShape(route="standin"))
    data, design, offset, free = fm.linear_problem()
    out = fit_linear(LinearProblem(data, design, offset))
    assert out.converged
    fm.set_free_values(free, out.theta)
    for m in ("A", "B"):
        base = MODULES.index(m) * 5
        for k, true in zip((3, 5), true_norms[m]):
            j = free.index(("grxe", base + k))
            assert abs(out.theta[j] - true) < 3 * out.errors[j], (m, k, out.theta[j], true, out.errors[j])
            assert out.errors[j] < 0.5 * true  # measured, not merely allowed
