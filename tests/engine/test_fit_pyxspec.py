"""The pyxspec backend, driven by a stand-in ``xspec`` module (PyXspec needs HEASoft)."""

import sys
import types

import numpy as np
import pytest

from nuskybgd_engine.errors import BadConfigError, FitError
from nuskybgd_engine.fit.registry import get_backend
from nuskybgd_engine.model.background import BackgroundOptions, RegionWeights
from nuskybgd_engine.xcm import parse_xcm, resolve_values


def fake_xspec(scale=1.1, fail=False):
    """A minimal PyXspec stand-in: restores our .xcm with our own parser and 'fits' by scaling."""
    xs = types.ModuleType("xspec")
    store = {}

    class Xset:
        chatter = 10

        @staticmethod
        def restore(path):
            with open(path) as fh:
                text = fh.read()
            if "bayes off" not in text:
                raise RuntimeError("not an Xset.save file")
            session = parse_xcm(text)
            store["session"] = session
            store["values"] = resolve_values(session)

    class _List:
        @staticmethod
        def clear():
            store.clear()

    class Par:
        def __init__(self, value, frozen):
            self.values = [value * (1.0 if frozen else scale)]
            self.sigma = 0.1 * abs(value)

    class AllModels(_List):
        def __new__(cls, group, name):
            block = store["session"].model(name)

            def param(k):
                idx = block.global_index(group, k)
                line = block.params[idx - 1]
                frozen = not hasattr(line, "delta") or (line.delta is not None and line.delta < 0)
                return Par(store["values"][(name, idx)], frozen)

            return param

    class Fit:
        statMethod = "chi"
        method = None
        query = "no"
        statistic = 123.0
        dof = 77
        covariance = []

        @staticmethod
        def perform():
            if fail:
                raise RuntimeError("Fit failed: singular matrix\nmore")
            store["performed"] = True

    xs.Xset, xs.AllData, xs.AllModels, xs.Fit = Xset, _List, AllModels, Fit
    xs.store = store
    return xs


def test_missing_pyxspec_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "xspec", None)
    with pytest.raises(BadConfigError, match="PyXspec is not available.*HEASoft"):
        get_backend("pyxspec")


@pytest.fixture
def tiny_analysis(tmp_path):
    """Two synthetic spectra (A and B) on the nominal responses."""
    from nuskybgd_engine.maps.module_calibration import module_calibration
    from nuskybgd_engine.model.folding import GroupData
    from nuskybgd_engine.analysis import BackgroundAnalysis

    rng = np.random.default_rng(0)
    groups = []
    for m, w in (("A", RegionWeights(150.0, (5000.0, 100.0, 0.0, 0.0), "A", "r1")),
                 ("B", RegionWeights(120.0, (0.0, 3000.0, 2500.0, 0.0), "B", "r1"))):
        cal = module_calibration(m)
        counts = rng.poisson(3.0, cal.rmf.matrix.shape[1]).astype(float)
        groups.append(GroupData(name=f"r1{m}", module=m, counts=counts, exposure=3e4, rmf=cal.rmf,
                                diag=cal.diag_rmf, ap_arf=cal.be_arf, fcxb_arf=cal.fcxb_arf, weights=w))
    return BackgroundAnalysis(groups, options=BackgroundOptions(), apec_route="standin")


@pytest.mark.slow
def test_pyxspec_backend_round_trip(monkeypatch, tiny_analysis):
    xs = fake_xspec(scale=1.1)
    monkeypatch.setitem(sys.modules, "xspec", xs)
    an = tiny_analysis
    before = {k: an.state.value(*k) for k in an.model.free()}
    res = an.fit("cstat", backend="pyxspec")
    assert xs.store.get("performed") and xs.Fit.statMethod == "cstat"
    assert res.backend == "pyxspec" and res.value == 123.0 and res.dof == 77
    for key, v in before.items():
        assert an.state.value(*key) == pytest.approx(1.1 * v, rel=1e-12), key
    # apec was exported as its bremss stand-in: the renumbered intbgd parameters came back in place.
    assert any("stand-in" in w for w in res.warnings)
    assert res.error(*an.model.free()[0]) == pytest.approx(0.1 * before[an.model.free()[0]], rel=1e-9)


def test_pyxspec_failure_is_fit_error(monkeypatch, tiny_analysis):
    monkeypatch.setitem(sys.modules, "xspec", fake_xspec(fail=True))
    with pytest.raises(FitError, match="XSPEC failed: Fit failed: singular matrix$"):
        tiny_analysis.fit("cstat", backend="pyxspec")
