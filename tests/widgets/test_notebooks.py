"""The notebooks run from top to bottom (nbclient) on the demo observation and leave their products.

Each notebook runs in a fresh kernel that inherits this process's environment: the demo
observation is simulated once per test session into a temporary ``NUSKYBGD_DEMO_DIR`` and the
outputs go to a per-test ``NUSKYBGD_WORKSPACE``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to run the notebooks (pip install -e .[test])")
nbclient = pytest.importorskip("nbclient", reason="nbclient is needed to run the notebooks (pip install -e .[test])")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """A demo observation simulated once for every notebook of the session."""
    from nuskybgd_engine.demo import ensure_demo_observation

    root = tmp_path_factory.mktemp("demo")
    ensure_demo_observation(root)
    return root


@pytest.fixture
def notebook_env(demo_dir, tmp_path, monkeypatch):
    """Environment of the notebook kernels: the shared demo, a fresh workspace."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    monkeypatch.setenv("NUSKYBGD_DEMO_DIR", str(demo_dir))
    monkeypatch.setenv("NUSKYBGD_WORKSPACE", str(workspace))
    for name in ("NUSKYBGD_DATA_ROOT", "NUSKYBGD_DEMO"):
        monkeypatch.delenv(name, raising=False)
    return workspace


def execute(path, cwd):
    """Run every cell of the notebook at ``path`` in a fresh kernel; return the executed notebook."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, startup_timeout=60, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def stream_text(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                   if o.get("output_type") == "stream")


def code_sources(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.slow
def test_quickstart_runs_the_whole_workflow(notebook_env, tmp_path):
    nb = execute(NOTEBOOKS / "quickstart.ipynb", tmp_path)
    text = stream_text(nb)
    # The prediction cell asserts agreement with the simulation's truth; here: the export happened.
    xcm = notebook_env / "bgdfit.xcm"
    assert xcm.is_file()
    lines = xcm.read_text().splitlines()
    assert "statistic cstat" in lines
    data_files = [ln.split()[-1] for ln in lines if ln.startswith("data ")]
    assert len(data_files) == 6 and all((notebook_env / f).is_file() for f in data_files)
    assert "predicted" in text and "simulated" in text
    # the apec stand-in must be flagged wherever results are shown
    assert "stand-in" in text


@pytest.mark.slow
def test_walkthrough_runs_every_cli_step(notebook_env, tmp_path):
    nb = execute(NOTEBOOKS / "walkthrough.ipynb", tmp_path)
    text = stream_text(nb)
    work = notebook_env / "bgd"
    for name in ("imA3to20keV.fits", "bgd1A_sr.pha", "bgd3B_sr_g30.pha", "newinstrmapB.fits", "aspecthistA.fits",
                 "bgdapB.fits", "det3Aim.fits", "bgdinfo.json", "bgdfit.xcm", "bgdfit.json",
                 "bgd_src_point.xcm", "bgd_only_src_point.xcm", "bgd_total_B.fits"):
        assert (work / name).is_file(), name
    fit = json.loads((work / "bgdfit.json").read_text())
    assert fit["statistic"] == "cstat"
    # every step is shown as the command a user types
    for step in ("mkimgs", "getspecnoarf", "phafix", "mkinstrmap", "aspecthist", "projbgd", "fit", "predict",
                 "spec", "simplify", "image"):
        assert f"$ nuskybgd {step} " in text, step


def test_walkthrough_uses_only_existing_steps():
    """Every `nuskybgd STEP` the walkthrough runs is a step of this installation's CLI."""
    import re

    from nuskybgd_engine.cli import build_parser

    steps = next(a for a in build_parser()._actions if a.dest == "command").choices
    used = set()
    for src in code_sources(NOTEBOOKS / "walkthrough.ipynb"):
        used |= set(re.findall(r'nuskybgd\("nuskybgd (\w+)', src))
        used |= set(re.findall(r'nuskybgd\(f"nuskybgd (\w+)', src))
    assert {"mkimgs", "fit", "projbgd"} <= used
    assert used <= set(steps), used - set(steps)


def test_packaged_dashboard_notebook_is_the_repository_one():
    """`nuskybgd-dashboard` serves the packaged copy: it must not drift from notebooks/dashboard.ipynb."""
    from nuskybgd_widgets.dashboard import notebook_path

    assert notebook_path() == REPO / "nuskybgd_widgets" / "notebooks" / "dashboard.ipynb"
    assert code_sources(notebook_path()) == code_sources(NOTEBOOKS / "dashboard.ipynb")


@pytest.mark.slow
@pytest.mark.parametrize("served", [True, False], ids=["nuskybgd-dashboard", "plain-jupyter-or-binder"])
def test_dashboard_notebook_shows_the_app(notebook_env, tmp_path, monkeypatch, served):
    pytest.importorskip("nuskybgd_widgets.app", reason="the dashboard app (nuskybgd_widgets.app) is not there yet")
    if served:  # as `nuskybgd-dashboard --demo --workspace WS` sets it
        monkeypatch.setenv("NUSKYBGD_DEMO", "1")
    else:  # no variable: the demo, outputs in ./nuskybgd-workspace of the kernel
        monkeypatch.delenv("NUSKYBGD_WORKSPACE")
    nb = execute(NOTEBOOKS / "dashboard.ipynb", tmp_path)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    views = [o for o in last.outputs if o.get("output_type") == "execute_result" and WIDGET_VIEW in o.get("data", {})]
    assert len(views) == 1, [o.get("output_type") for o in last.outputs]
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert (tmp_path / "nuskybgd-workspace").is_dir() is not served

def test_binder_installs_what_the_package_needs():
    """binder/requirements.txt lists exactly pyproject's runtime dependencies; postBuild installs the package."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [ln.strip() for ln in (REPO / "binder" / "requirements.txt").read_text().splitlines()]
    listed = [ln for ln in lines if ln and not ln.startswith("#")]

    def norm(s):
        return s.replace(" ", "").lower()

    assert sorted(map(norm, listed)) == sorted(map(norm, deps))
    post = (REPO / "binder" / "postBuild").read_text()
    assert "pip install" in post and "ensure_demo_observation" in post
    assert (REPO / "binder" / "postBuild").stat().st_mode & 0o111  # executable, or repo2docker ignores it
