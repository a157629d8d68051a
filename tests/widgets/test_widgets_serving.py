"""Serving the dashboard to several observers, without a browser: workspaces per session, server
settings from the command line, and plot data the browser can draw (no NaN, nothing non-positive on
a log scale)."""

import math

import bqplot as bq
import ipywidgets as w
import numpy as np
import pytest

from nuskybgd_engine.errors import BadConfigError
from nuskybgd_widgets import server
from nuskybgd_widgets.dashboard import app_from_environment, build_parser


def env(mode="session", **extra):
    return {server.ENV_WORKSPACE_MODE: mode, **extra}


def test_two_sessions_get_different_workspaces(tmp_path):
    a = server.session_workspace(tmp_path, env())
    b = server.session_workspace(tmp_path, env())
    assert a != b and a.parent == tmp_path and b.parent == tmp_path
    assert a.name.startswith("session-") and a.is_dir() and b.is_dir()


def test_shared_workspace_and_notebook_without_server(tmp_path):
    assert server.session_workspace(tmp_path, env("shared")) is tmp_path
    assert server.session_workspace(tmp_path, {}) is tmp_path  # the notebook opened directly in Jupyter


def test_user_from_jupyterhub_or_proxy_header(tmp_path):
    hub = server.session_workspace(tmp_path, env(JUPYTERHUB_USER="alice"))
    assert hub == tmp_path / "user-alice" and hub.is_dir()
    assert server.session_workspace(tmp_path, env(JUPYTERHUB_USER="alice")) == hub  # the same user: the same
    proxied = env(**{server.ENV_USER_HEADER: "X-Forwarded-User", "HTTP_X_FORWARDED_USER": "bob@inst.org"})
    assert server.session_workspace(tmp_path, proxied) == tmp_path / "user-bob@inst.org"


@pytest.mark.parametrize("value, match", [("../eve", "not a plain name"), ("", "carries no X-Forwarded-User"),
                                          (".hidden", "not a plain name"), ("a/b", "not a plain name")])
def test_bad_or_missing_user_is_refused(tmp_path, value, match):
    e = env(**{server.ENV_USER_HEADER: "X-Forwarded-User", "HTTP_X_FORWARDED_USER": value})
    with pytest.raises(BadConfigError, match=match):
        server.session_workspace(tmp_path, e)
    assert list(tmp_path.iterdir()) == []  # nothing created outside or inside


def test_app_from_environment_uses_a_session_folder(tmp_path, monkeypatch):
    data, ws = tmp_path / "data", tmp_path / "ws"
    data.mkdir()
    ws.mkdir()
    app = app_from_environment({"NUSKYBGD_DATA_ROOT": str(data), "NUSKYBGD_WORKSPACE": str(ws),
                                "NUSKYBGD_DEMO": "0", server.ENV_WORKSPACE_MODE: "session"})
    assert app.session.workspace.parent == ws and app.session.workspace.name.startswith("session-")


def test_server_settings_from_the_command_line():
    from traitlets.config import Config

    args = build_parser().parse_args(["--demo", "--cull-idle", "120", "--preheat", "2", "--refill-quiet", "7.5",
                                      "--user-header", "X-Forwarded-User"])
    cfg = server.configure(Config(), args)
    km = cfg.MappingKernelManager
    assert (km.cull_idle_timeout, km.cull_connected, km.cull_busy) == (120, False, False)
    assert 0 < km.cull_interval <= 60
    assert cfg.VoilaConfiguration.preheat_kernel is True and cfg.VoilaConfiguration.default_pool_size == 2
    assert cfg.MappingKernelManager.refill_quiet == 7.5
    assert cfg.VoilaExecutor.iopub_timeout >= 60  # the dashboard's view arrives after ~2000 widget messages
    assert server._pool_keeping_kernel_manager()(config=cfg).refill_quiet == 7.5  # the manager reads it
    assert cfg.VoilaConfiguration.http_header_envs == ["X-Forwarded-User"]
    assert "base_url" not in cfg.Voila
    proxied = server.configure(Config(), build_parser().parse_args(["--base-url", "/nuskybgd"]))
    assert (proxied.Voila.base_url, proxied.Voila.server_url) == ("/nuskybgd/", "/")
    assert server.server_environment(args) == {server.ENV_WORKSPACE_MODE: "session",
                                               server.ENV_USER_HEADER: "X-Forwarded-User"}
    default = build_parser().parse_args([])
    assert default.cull_idle == server.DEFAULT_CULL_IDLE and not default.shared_workspace
    assert default.preheat == server.DEFAULT_PREHEAT and default.refill_quiet == server.DEFAULT_REFILL_QUIET
    off = server.configure(Config(), build_parser().parse_args(["--cull-idle", "0", "--shared-workspace",
                                                                "--preheat", "0"]))
    assert "cull_idle_timeout" not in off.MappingKernelManager and "preheat_kernel" not in off.VoilaConfiguration


def test_culling_spares_preheated_kernels_waiting_for_a_page():
    import asyncio
    import concurrent.futures

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    cls = server._pool_keeping_kernel_manager()
    assert issubclass(cls, AsyncMappingKernelManager)
    km = cls()

    async def pool():
        done = asyncio.get_running_loop().create_future()
        done.set_result({"kernel_id": "waiting"})
        km._pools = {"dashboard.ipynb": [done]}
        return await km.cull_kernel_if_idle("waiting")  # would raise KeyError if it looked the kernel up

    # A loop of its own in a thread: an earlier test (Playwright, nbclient) may leave one running here.
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert ex.submit(asyncio.run, pool()).result(timeout=60) is None
    assert km._waiting_in_pool("waiting") and not km._waiting_in_pool("taken")


def _in_own_loop(coro, timeout=60):
    """Run ``coro`` on a loop of its own in a thread (an earlier test may leave one running here)."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result(timeout=timeout)


def test_a_page_taking_a_pool_kernel_restarts_its_idle_clock_and_the_pool_counts_ready_kernels():
    import asyncio
    from datetime import timedelta
    from types import SimpleNamespace

    from jupyter_server._tz import utcnow

    km = server._pool_keeping_kernel_manager()()
    long_ago = utcnow() - timedelta(hours=1)
    km._kernels = {"a": SimpleNamespace(last_activity=long_ago, execution_state="idle"),
                   "b": SimpleNamespace(last_activity=long_ago, execution_state="busy"),
                   "c": SimpleNamespace(last_activity=long_ago, execution_state="idle")}

    async def check():
        loop = asyncio.get_running_loop()
        entries = []
        for kid, rendered in (("a", True), ("b", True), ("c", False), (None, False)):
            f = loop.create_future()
            if kid:
                render = loop.create_future()  # Voila's rendering of the notebook in that kernel
                if rendered:
                    render.set_result(None)
                f.set_result({"kernel_id": kid, "task": render})
            entries.append(f)
        km._pools = {"dashboard.ipynb": entries}
        return km.pool_ready()

    # "b" runs a cell, "c" is idle between its start and its notebook's run (Voila's entry resolves
    # when the kernel starts), the fourth is not started: one kernel waits ready
    assert _in_own_loop(check()) == 1
    km.taken("a")
    assert (utcnow() - km._kernels["a"].last_activity).total_seconds() < 5  # not culled as idle for an hour
    assert km._kernels["b"].last_activity == long_ago
    km.taken("gone")  # a kernel that went away meanwhile: nothing to do


def test_pool_kernels_start_one_at_a_time_after_quiet(monkeypatch):
    """A refill waits for quiet (no page asked for, no kernel message) and the next waits until the
    previous pool kernel has run its notebook (busy, then idle); a page's own kernel starts at once."""
    import asyncio
    import time
    from types import SimpleNamespace

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    cls = server._pool_keeping_kernel_manager()
    km = cls(refill_quiet=0.3)
    km._kernels = {}
    events = []

    async def fake_start(self, *args, env=None, **kwargs):
        kid = f"k{len(self._kernels)}"
        events.append(("start", kid, time.monotonic()))
        kernel = SimpleNamespace(execution_state="starting")
        self._kernels[kid] = kernel

        async def run_notebook():  # what Voila then does in a pool kernel
            await asyncio.sleep(0.3)
            kernel.execution_state = "busy"
            await asyncio.sleep(0.5)
            kernel.execution_state = "idle"
            events.append(("built", kid, time.monotonic()))

        asyncio.get_running_loop().create_task(run_notebook())
        return kid

    monkeypatch.setattr(AsyncMappingKernelManager, "start_kernel", fake_start)

    async def burst():
        km.page_requested()
        pool = {"env": {"VOILA_PREHEAT": "True"}}
        t0 = time.monotonic()
        first = asyncio.create_task(km.start_kernel(**pool))
        second = asyncio.create_task(km.start_kernel(**pool))
        page = await km.start_kernel(env={"VOILA_PREHEAT": "False"})  # a page's own kernel: no waiting
        page_at = time.monotonic() - t0
        km._kernels[page].execution_state = "idle"
        await asyncio.gather(first, second)
        while len([e for e in events if e[0] == "built"]) < 3:
            await asyncio.sleep(0.05)
        return t0, page_at

    t0, page_at = _in_own_loop(burst())
    assert page_at < 0.25
    starts = [e for e in events if e[0] == "start"]
    built = {e[1]: e[2] for e in events if e[0] == "built"}
    pool_starts = starts[1:]  # the page's kernel started first
    assert starts[0][1] == "k0" and len(pool_starts) == 2
    assert pool_starts[0][2] - t0 >= 0.3  # waited for quiet after the page request
    assert pool_starts[1][2] >= built[pool_starts[0][1]]  # one pool kernel at a time


def test_server_stop_kills_kernels_in_the_middle_of_a_cell(monkeypatch):
    from types import SimpleNamespace

    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    km = server._pool_keeping_kernel_manager()()
    km._kernels = {"building": SimpleNamespace(execution_state="busy"),
                   "page": SimpleNamespace(execution_state="idle")}
    calls = []

    async def shutdown_kernel(self, kernel_id, now=False, restart=False):
        calls.append((kernel_id, now))
        self._kernels.pop(kernel_id)

    async def shutdown_all(self, now=False):
        for kid in list(self._kernels):
            await shutdown_kernel(self, kid, now=now)

    monkeypatch.setattr(AsyncMappingKernelManager, "shutdown_kernel", shutdown_kernel)
    monkeypatch.setattr(AsyncMappingKernelManager, "shutdown_all", shutdown_all)
    _in_own_loop(km.shutdown_all())
    assert calls == [("building", True), ("page", False)]


@pytest.mark.parametrize("argv", [["--cull-idle", "-5"], ["--cull-idle", "soon"], ["--user-header", "X User"],
                                  ["--preheat", "-1"], ["--base-url", "nuskybgd/../x"], ["--refill-quiet", "-1"],
                                  ["--refill-quiet", "later"]])
def test_bad_server_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err


def marks(widget):
    """Every bqplot mark under ``widget``."""
    if isinstance(widget, bq.Figure):
        yield from widget.marks
    for child in getattr(widget, "children", ()):
        if isinstance(child, w.Widget):
            yield from marks(child)


def check_drawable(mark):
    """What the browser can draw without a console error: scatter/label points finite; lines with
    NaN only as interior gap separators; nothing non-positive on a log scale."""
    x, y = np.asarray(mark.x, float).ravel(), np.asarray(mark.y, float).ravel()
    if not x.size:
        return
    name = f"{type(mark).__name__} {getattr(mark, 'labels', '')}"
    if isinstance(mark, (bq.Scatter, bq.Label)):
        assert x.size == y.size and np.isfinite(x).all() and np.isfinite(y).all(), name
    else:
        assert math.isfinite(x[0]) and math.isfinite(x[-1]) and math.isfinite(y[0]) and math.isfinite(y[-1]), name
        assert not np.isinf(x).any() and not np.isinf(y).any(), name
    for axis, values in (("x", x), ("y", y)):
        if isinstance(mark.scales.get(axis), bq.LogScale):
            assert (values[np.isfinite(values)] > 0).all(), f"{name}: {axis} <= 0 on a log scale"


@pytest.mark.slow
def test_no_nan_reaches_the_plots_after_load_and_fit(tmp_path, monkeypatch):
    from nuskybgd_widgets.app import build_app

    monkeypatch.setenv("NUSKYBGD_DEMO_DIR", str(tmp_path / "demo"))
    app = build_app(data_root=None, workspace=tmp_path / "ws", demo=True)
    assert app.session.analysis is not None, app.panels["data"].message.value
    loaded = list(marks(app.widget))
    assert sum(isinstance(m, bq.Scatter) for m in loaded) >= 4
    for m in loaded:
        check_drawable(m)
    app.panels["spectra"].fit()
    assert app.session.fit_is_current
    for m in marks(app.widget):
        check_drawable(m)
