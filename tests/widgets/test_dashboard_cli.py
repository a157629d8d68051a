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
    monkeypatch.setenv("JUPYTER_PATH", os.environ.get("JUPYTER_PATH", ""))
    # whatever else listens on this machine's default port does not concern these tests
    monkeypatch.setattr(dash, "check_port_free", lambda ip, port: None)
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
    assert f"--VoilaConfiguration.template={dash.TEMPLATE}" in argv  # nothing fetched from the internet
    assert "--Voila.log_level=WARN" in argv  # a short log unless --verbose
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


def test_verbose_shows_voilas_whole_log(clean_env, voila_calls):
    assert dash.main(["--demo", "--no-browser", "--verbose"]) == 0
    assert not any(a.startswith("--Voila.log_level") for a in voila_calls[0]["argv"])


def test_taken_port_is_one_line_naming_the_port_and_the_option(clean_env, monkeypatch, capsys):
    import socket

    from voila.app import Voila

    monkeypatch.setattr(Voila, "launch_instance", classmethod(lambda cls, **kw: pytest.fail("Voila started")))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert dash.main(["--demo", "--no-browser", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"port {port}" in err and "--port" in err and "in use" in err


def test_address_not_of_this_machine_is_refused(clean_env, capsys):
    with pytest.raises(dash.NuSkyBgdError, match="--ip"):
        dash.check_port_free("192.0.2.1", 8866)  # TEST-NET-1: never an address of this machine


def test_start_log_hides_jupyters_noise_from_the_server_and_its_kernels():
    """Lines of the server process and of its children (the kernels) pass through the filter."""
    import subprocess

    script = (
        "import os, subprocess, sys\n"
        "from nuskybgd_widgets.dashboard import _quiet_stderr\n"
        "with _quiet_stderr():\n"
        "    print('server line', file=sys.stderr, flush=True)\n"
        "    print('[Voila] WARNING | Notebook dashboard.ipynb is not trusted', file=sys.stderr, flush=True)\n"
        "    subprocess.run([sys.executable, '-c', 'import sys; sys.stderr.write(\"[IPKernelApp] WARNING | Kernel '\n"
        "                    'is running over TCP without encryption. All...\\\\nkernel line\\\\n\")'])\n"
        "print('after', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["server line", "kernel line", "after"]


def test_jupyter_path_finds_the_template_and_voilas_own_files():
    """Voila's templates are found wherever pip put them (a venv using the system's packages too)."""
    dirs = [Path(d) for d in dash.jupyter_data_path({}).split(os.pathsep)]
    assert (dirs[0] / "voila" / "templates" / dash.TEMPLATE / "index.html.j2").is_file()
    assert any((d / "voila" / "templates" / "lab" / "index.html.j2").is_file() for d in dirs)
    assert dash.jupyter_data_path({"JUPYTER_PATH": "/mine"}).split(os.pathsep)[-1] == "/mine"
