"""The browser benchmarks drive the page with the tests' own helpers: they must keep finding them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_nsb_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["bench_browser", "bench_load"])
def test_benchmark_loads_the_browser_helpers(name):
    bench = _load(name)
    if hasattr(bench, "_browser_helpers"):
        h = bench._browser_helpers()
        assert callable(h.sky_to_screen) and callable(h.use_tool) and callable(h.free_port)
    assert callable(bench.main)
