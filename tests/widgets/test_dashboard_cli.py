"""``nuskybgd-dashboard``: arguments, the environment handed to the notebook, the Voila command.

Voila itself is not started here (``Voila.launch_instance`` is replaced by a recorder); the
served dashboard is exercised in a real browser by tests/browser/test_dashboard_browser.py.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from nuskybgd_widgets import dashboard as dash

ENV_NAMES = (dash.ENV_DATA_ROOT, dash.ENV_WORKSPACE, dash.ENV_DEMO, "NUSKYBGD_DEMO_DIR")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No inherited dashboard variables; the demo directory in tmp; cwd in tmp."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUSKYBGD_DEMO_DIR", str(tmp_path / "demo"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def voila_calls(monkeypatch):
    """Replace Voila.launch_instance; record argv, config and the environment at launch."""
    from voila.app import Voila

    calls = []

    def launch(argv=None, **kw):
        calls.append({"argv": list(argv), "config": kw.get("config"),
                      "env": {k: os.environ.get(k) for k in ENV_NAMES}})

    monkeypatch.setattr(Voila, "launch_instance", classmethod(lambda cls, argv=None, **kw: launch(argv, **kw)))
    # main() writes its variables into os.environ for the kernels: restore them afterwards
    for name in ENV_NAMES:
        monkeypatch.setenv(name, os.environ.get(name, ""))
    return calls


def test_serves_the_packaged_notebook_on_localhost_by_default(clean_env, voila_calls):
    data = clean_env / "data"
    data.mkdir()
    assert dash.main([str(data), "--port", "9123", "--no-browser"]) == 0
    (call,) = voila_calls
    argv = call["argv"]
    assert argv[0] == str(dash.notebook_path())
    assert "--port=9123" in argv and "--Voila.ip=127.0.0.1" in argv and "--no-browser" in argv
    assert "--Voila.port_retries=0" in argv  # a taken port is an error, not a silent move
    assert call["config"].VoilaConfiguration.file_allowlist == []
    assert call["env"][dash.ENV_DATA_ROOT] == str(data.resolve())
    assert call["env"][dash.ENV_DEMO] == "0"
    # default workspace: ./nuskybgd-workspace, created
    assert call["env"][dash.ENV_WORKSPACE] == str((clean_env / dash.DEFAULT_WORKSPACE).resolve())
    assert (clean_env / dash.DEFAULT_WORKSPACE).is_dir()


def test_demo_without_data_root_reads_only_under_the_demo_directory(clean_env, voila_calls):
    ws = clean_env / "ws"
    assert dash.main(["--demo", "--workspace", str(ws), "--ip", "0.0.0.0"]) == 0
    (call,) = voila_calls
    demo_dir = (clean_env / "demo").resolve()
    assert call["env"][dash.ENV_DEMO] == "1"
    assert call["env"][dash.ENV_DATA_ROOT] == str(demo_dir) == call["env"]["NUSKYBGD_DEMO_DIR"]
    assert demo_dir.is_dir() and ws.is_dir()
    assert "--Voila.ip=0.0.0.0" in call["argv"] and "--no-browser" not in call["argv"]


def test_no_data_root_means_the_current_directory(clean_env, voila_calls):
    assert dash.main(["--no-browser"]) == 0
    assert voila_calls[0]["env"][dash.ENV_DATA_ROOT] == str(clean_env.resolve())


def test_roots_are_resolved_through_symlinks(clean_env):
    real = clean_env / "real"
    real.mkdir()
    (clean_env / "link").symlink_to(real, target_is_directory=True)
    env = dash.dashboard_environment(clean_env / "link", clean_env / "link" / "ws")
    assert env[dash.ENV_DATA_ROOT] == str(real.resolve())
    assert env[dash.ENV_WORKSPACE] == str((real / "ws").resolve())


def test_missing_data_root_is_one_line_naming_it(clean_env, voila_calls, capsys):
    missing = clean_env / "nope"
    assert dash.main([str(missing), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(missing) in err and "data root" in err
    assert voila_calls == []


def test_data_root_that_is_a_file_is_refused(clean_env, voila_calls, capsys):
    f = clean_env / "file.txt"
    f.write_text("x")
    assert dash.main([str(f)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert voila_calls == []


@pytest.mark.parametrize("argv, what", [(["--port", "0"], "1..65535"), (["--port", "http"], "port number"),
                                        (["--bogus"], "unrecognized")])
def test_bad_arguments_exit_2_with_one_line(clean_env, voila_calls, capsys, argv, what):
    with pytest.raises(SystemExit) as exc:
        dash.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err
    assert voila_calls == []


def test_module_runs_as_a_script():
    """`python -m nuskybgd_widgets.dashboard --help` (what the browser tests start) works."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "nuskybgd_widgets.dashboard", "--help"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0 and "DATA_ROOT" in out.stdout and "--workspace" in out.stdout


@pytest.fixture
def fake_app(monkeypatch):
    """A stand-in nuskybgd_widgets.app recording build_app's arguments."""
    calls = []
    mod = types.ModuleType("nuskybgd_widgets.app")
    mod.build_app = lambda **kw: calls.append(kw) or "app"
    monkeypatch.setitem(sys.modules, "nuskybgd_widgets.app", mod)
    return calls


def test_app_from_environment_uses_the_command_line_values(clean_env, fake_app):
    env = {dash.ENV_DATA_ROOT: "/data", dash.ENV_WORKSPACE: "/ws", dash.ENV_DEMO: "0"}
    assert dash.app_from_environment(env) == "app"
    assert fake_app == [{"data_root": "/data", "workspace": "/ws", "demo": False}]


def test_app_from_environment_without_variables_opens_the_demo_sandboxed(clean_env, fake_app):
    dash.app_from_environment({})
    (kw,) = fake_app
    assert kw["demo"] is True
    assert kw["data_root"] == str((clean_env / "demo").resolve())  # never None: reads stay under a root
    assert kw["workspace"] == str((clean_env / dash.DEFAULT_WORKSPACE).resolve())


def test_notebook_is_shipped_inside_the_package():
    path = dash.notebook_path()
    assert path.is_file() and path.parent.parent == Path(dash.__file__).resolve().parent
