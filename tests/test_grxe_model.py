"""The optional GRXE source (IDL source 6): built from GRXE weights, linked by G, through the .xcm and back."""

import numpy as np
import pytest
from nuskybgd_engine.errors import BadRegionError
from nuskybgd_engine.model.background import (
    OPTIONAL_SOURCE_NUMBERS,
    BackgroundOptions,
    RegionWeights,
    build_background_model,
)
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
