"""Serving the dashboard to many observers: kernel lifetime, health probe, one workspace per session.

``nuskybgd-dashboard`` runs Voila through :class:`DashboardVoila`, which adds to plain Voila:

* **closed pages free their kernel.** Voila's page script posts ``voila/api/shutdown/<kernel>``
  on ``beforeunload`` with the ``_xsrf`` value it reads from ``document.cookie``; Voila 0.5
  streams the page and never touches ``xsrf_token`` before the first flush, so that cookie is
  never set and jupyter_server refuses the call (403 "'_xsrf' argument missing"). The page
  handler here creates the cookie before anything is sent, so the call passes the XSRF check
  (which stays on);
* **culling** of kernels whose page went away without saying so (browser killed, network lost):
  idle and disconnected for ``--cull-idle`` seconds (``--cull-connected`` also culls open but
  idle pages);
* ``GET /nuskybgd/health``: JSON ``{"status": "ok", "kernels": N, ...}`` for load balancers
  and probes; it starts no kernel (the page at ``/`` does);
* **a workspace per browser session**: every page writes under its own subfolder of the
  workspace (``session-<time>-<random>``), or under ``user-<name>`` when the server knows the
  user (JupyterHub's ``$JUPYTERHUB_USER``, or an HTTP header set by an authenticating reverse
  proxy, ``--user-header``), never into another's; see :func:`session_workspace`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from nuskybgd_engine.errors import BadConfigError, BadFileError

__all__ = ["DEFAULT_CULL_IDLE", "DEFAULT_PREHEAT", "DEFAULT_REFILL_QUIET", "ENV_USER_HEADER", "ENV_WORKSPACE_MODE", "HEALTH_PATH", "add_server_arguments",
           "configure", "dashboard_voila", "header_env_name", "server_environment", "session_workspace"]

#: Seconds a kernel may stay idle without any page connected before it is shut down.
DEFAULT_CULL_IDLE = 300
#: Kernels kept started with the dashboard built, waiting for the next page.
DEFAULT_PREHEAT = 1
#: Seconds without a new page (and with no kernel busy) before a taken pre-heated kernel is replaced.
DEFAULT_REFILL_QUIET = 5
#: A refill waits for quiet at most this long (a server that never quiets still gets its pool back).
REFILL_MAX_WAIT = 120
#: Seconds Voila waits, after the dashboard cell has run, for the rest of its output. The cell's last
#: output (the app's view) comes after ~2000 widget messages; Voila's default of 4 s ran out on a busy
#: machine, and the page then showed no dashboard at all, with no error (the "stuck page").
IOPUB_TIMEOUT = 180
#: URL (under the base URL) of the health probe.
HEALTH_PATH = "/nuskybgd/health"
#: ``session`` (one subfolder per page, the default when served), ``shared`` (the workspace itself).
ENV_WORKSPACE_MODE = "NUSKYBGD_WORKSPACE_MODE"
#: Name of the HTTP header carrying the user name (set by ``--user-header``).
ENV_USER_HEADER = "NUSKYBGD_USER_HEADER"

_USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"seconds must be >= 0, got {text}")
    return value


def int_in_range(lo, hi, what, name=""):
    """argparse type: an integer in ``lo..hi`` (``what``: the expected thing, e.g. 'a port number')."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name + ' ' if name else ''}must be in {lo}..{hi}, got {value}")
        return value

    return parse


_count = int_in_range(0, 64, "a number of kernels")


def _base_url(text):
    if not re.fullmatch(r"/([A-Za-z0-9._~-]+/)*", text if text.endswith("/") else text + "/") or ".." in text:
        raise argparse.ArgumentTypeError(f"expected a URL path such as /nuskybgd/, got {text!r}")
    return text if text.endswith("/") else text + "/"


def _header(text):
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", text):
        raise argparse.ArgumentTypeError(f"not an HTTP header name: {text!r}")
    return text


def add_server_arguments(parser):
    """Add the serving options (kernel culling, pre-heated kernels, workspaces) to ``parser``."""
    g = parser.add_argument_group("serving to several observers")
    g.add_argument("--cull-idle", type=_seconds, default=DEFAULT_CULL_IDLE, metavar="SECONDS",
                   help="shut down a kernel idle for this long with no page connected (a page closed without "
                        f"notice, a lost network); 0 never culls (default {DEFAULT_CULL_IDLE})")
    g.add_argument("--cull-connected", action="store_true",
                   help="with --cull-idle, also shut down kernels of pages still open but idle that long")
    g.add_argument("--preheat", type=_count, default=DEFAULT_PREHEAT, metavar="N",
                   help="keep N kernels started with the dashboard already built, so a new page shows in a few "
                        "seconds; each holds a kernel's memory (~600 MB) while it waits; 0: every page starts "
                        f"its kernel (default {DEFAULT_PREHEAT})")
    g.add_argument("--refill-quiet", type=_seconds, default=DEFAULT_REFILL_QUIET, metavar="SECONDS",
                   help="replace a pre-heated kernel a page took only after this long without a new page and "
                        "without kernel activity, one kernel at a time, so that building the next pool kernel does "
                        f"not slow the pages of a burst (default {DEFAULT_REFILL_QUIET})")
    g.add_argument("--base-url", type=_base_url, metavar="PATH",
                   help="path under which a reverse proxy publishes the dashboard (e.g. /nuskybgd/) when it "
                        "strips that prefix before forwarding; the server itself keeps answering at /")
    g.add_argument("--shared-workspace", action="store_true",
                   help="every page writes directly in the workspace (one observer) instead of its own "
                        "session-*/user-* subfolder")
    g.add_argument("--user-header", type=_header, metavar="NAME",
                   help="HTTP header holding the user name, set by an authenticating reverse proxy (e.g. "
                        "X-Forwarded-User): each user gets the workspace subfolder user-NAME")


def server_environment(args):
    """Environment variables carrying the workspace options of ``args`` to the kernels."""
    return {ENV_WORKSPACE_MODE: "shared" if args.shared_workspace else "session",
            ENV_USER_HEADER: args.user_header or ""}


def header_env_name(header):
    """Environment variable in which Voila passes the HTTP header ``header`` to a kernel (RFC 3875)."""
    return "HTTP_" + header.upper().replace("-", "_")


def configure(cfg, args):
    """Add the serving settings of ``args`` (see :func:`add_server_arguments`) to the traitlets ``cfg``."""
    cfg.VoilaExecutor.iopub_timeout = IOPUB_TIMEOUT  # waits only while output is still arriving
    if args.cull_idle > 0:
        cfg.MappingKernelManager.cull_idle_timeout = int(args.cull_idle)
        cfg.MappingKernelManager.cull_interval = max(1, min(60, int(args.cull_idle) // 2))
        cfg.MappingKernelManager.cull_connected = bool(args.cull_connected)
        cfg.MappingKernelManager.cull_busy = False
    if args.preheat > 0:
        cfg.VoilaConfiguration.preheat_kernel = True
        cfg.VoilaConfiguration.default_pool_size = int(args.preheat)
        cfg.VoilaConfiguration.multi_kernel_manager_class = _pool_keeping_kernel_manager()
        cfg.MappingKernelManager.refill_quiet = float(args.refill_quiet)
    if args.user_header:
        cfg.VoilaConfiguration.http_header_envs = [args.user_header]
    if args.base_url:
        cfg.Voila.base_url = args.base_url  # the URLs the page uses (through the proxy)
        cfg.Voila.server_url = "/"  # the routes the server answers (the proxy removed the prefix)
    return cfg


def _ready(task):
    """A pre-heat pool entry (an asyncio future) whose kernel is started (its dashboard may still be building)."""
    return task.done() and not task.cancelled() and task.exception() is None


def _built(task):
    """A started pool entry whose notebook has run: Voila's entry resolves as soon as the kernel starts and
    carries the rendering as a second task (``"task"``), which ends once the dashboard is built."""
    if not _ready(task):
        return False
    render = task.result().get("task")
    return render is None or (render.done() and not render.cancelled() and render.exception() is None)


def _pool_keeping_kernel_manager():
    """jupyter_server's kernel manager that looks after Voila's pool of pre-heated kernels.

    * A pre-heated kernel still waiting for its page is never culled: Voila refills its pool only when a
      page takes a kernel, so a culled waiting kernel would leave the next observer a cold start.
    * A page's kernel taken from the pool counts as active from that moment (:meth:`taken`): it may have
      waited longer than the idle timeout, and the page connects only once its scripts have loaded.
    * Pool kernels start one at a time, each after ``refill_quiet`` seconds without a new page
      (:meth:`page_requested`) and without a message from any kernel (pages of a burst still loading
      their widgets, a fit), so building the next pool kernel (imports, maps, spectra: seconds of CPU)
      does not compete with the pages of a burst.
    * When the server stops, a kernel in the middle of a cell is stopped at once (see :meth:`shutdown_all`).
    """
    # lazy: the Jupyter server costs a second that `nuskybgd-dashboard --help` should not pay
    from jupyter_server._tz import utcnow  # the clock the culler compares last_activity with
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from jupyter_server.utils import ensure_async
    from traitlets import Float

    class PoolKeepingKernelManager(AsyncMappingKernelManager):
        refill_quiet = Float(DEFAULT_REFILL_QUIET, config=True,
                             help="Seconds without a new page, with no kernel busy, before a pool kernel starts.")

        def _waiting_in_pool(self, kernel_id):
            return any(_ready(task) and task.result().get("kernel_id") == kernel_id
                       for pool in getattr(self, "_pools", {}).values() for task in pool)  # voila's pre-heat pools

        async def cull_kernel_if_idle(self, kernel_id):
            if self._waiting_in_pool(kernel_id):
                return None
            return await super().cull_kernel_if_idle(kernel_id)

        def taken(self, kernel_id):
            """A page took pool kernel ``kernel_id``: idle time starts now."""
            kernel = self._kernels.get(kernel_id)
            if kernel is not None:
                kernel.last_activity = utcnow()

        def page_requested(self):
            """A page was asked for (pool kernels wait for quiet)."""
            self._last_page = time.monotonic()

        def pool_ready(self):
            """Pre-heated kernels waiting with their dashboard built (started, not busy)."""
            n = 0
            for pool in getattr(self, "_pools", {}).values():
                for task in pool:
                    if _built(task):
                        kernel = self._kernels.get(task.result().get("kernel_id"))
                        n += kernel is not None and getattr(kernel, "execution_state", "") == "idle"
            return n

        def _busy(self):
            return any(getattr(k, "execution_state", "") in ("busy", "starting") for k in self._kernels.values())

        async def _refill_turn(self):
            """Wait for quiet, then hold the refill lock (released when the new kernel has built its page)."""
            if not hasattr(self, "_refill_lock"):
                self._refill_lock = asyncio.Lock()
            await self._refill_lock.acquire()
            deadline = time.monotonic() + REFILL_MAX_WAIT
            while time.monotonic() < deadline and not self._quiet():
                await asyncio.sleep(0.5)

        def _quiet(self):
            """No kernel busy, none active (a message from any kernel) and no page asked for in ``refill_quiet`` s."""
            if self._busy() or time.monotonic() - getattr(self, "_last_page", -1e9) < self.refill_quiet:
                return False
            last = getattr(self, "last_kernel_activity", None)
            return last is None or (utcnow() - last).total_seconds() >= self.refill_quiet

        async def _release_when_built(self, kernel_id):
            """Keep the refill lock until the new pool kernel has run its notebook (busy, then idle)."""
            try:
                deadline, seen_busy = time.monotonic() + REFILL_MAX_WAIT, False
                while time.monotonic() < deadline:
                    kernel = self._kernels.get(kernel_id)
                    if kernel is None:
                        break
                    state = getattr(kernel, "execution_state", "")
                    seen_busy = seen_busy or state == "busy"
                    if seen_busy and state == "idle":
                        break
                    await asyncio.sleep(0.25)
            finally:
                self._refill_lock.release()

        async def shutdown_all(self, now=False):
            # A kernel stopped while it runs a cell (a pool kernel building its page, a fit) logs a zmq
            # traceback when its reply finds the sockets closed; the server is going away, so such a
            # kernel is stopped at once instead, and the others politely.
            for kernel_id, kernel in list(self._kernels.items()):
                if getattr(kernel, "execution_state", "") in ("busy", "starting"):
                    try:
                        await ensure_async(super().shutdown_kernel(kernel_id, now=True))
                    except Exception as exc:  # noqa: BLE001 - shutting down: log it and stop the others
                        self.log.warning("could not stop kernel %s: %s", kernel_id, exc)
            return await ensure_async(super().shutdown_all(now=now))

        async def start_kernel(self, *args, **kwargs):
            if (kwargs.get("env") or {}).get("VOILA_PREHEAT") != "True":
                return await ensure_async(super().start_kernel(*args, **kwargs))  # a page's own kernel: at once
            await self._refill_turn()
            try:
                kernel_id = await ensure_async(super().start_kernel(*args, **kwargs))
            except BaseException:
                self._refill_lock.release()
                raise
            asyncio.get_running_loop().create_task(self._release_when_built(kernel_id))
            return kernel_id

    return PoolKeepingKernelManager


def _user_name(text, source):
    text = (text or "").strip()
    if not _USER_RE.fullmatch(text):
        raise BadConfigError(f"user name {text!r} from {source} is not a plain name "
                             "(letters, digits, . _ @ + -; at most 64)", field="user")
    return text


def _wait_for_request(environ):
    """In a pre-heated kernel the request (and its headers) arrives only when a page takes it."""
    if environ.get("VOILA_PREHEAT", "").lower() == "true":
        from voila.utils import (
            wait_for_request,  # lazy: only pre-heated kernels under a proxy need it
        )

        wait_for_request()


def session_workspace(workspace, environ=None):
    """The workspace subfolder of this kernel's browser session (created exclusively), or ``workspace``.

    With ``$NUSKYBGD_WORKSPACE_MODE`` unset or ``shared`` the workspace itself. With ``session``:
    ``user-<name>`` when the server names the user (the header of ``$NUSKYBGD_USER_HEADER`` as
    passed by Voila, else ``$JUPYTERHUB_USER``), otherwise a new ``session-<UTC time>-<random>``
    made with an exclusive ``mkdir``, so two pages never share one.

    Raises
    ------
    BadConfigError
        A user header is configured but missing from the request, or the name is not plain.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_WORKSPACE_MODE, "shared") != "session":
        return workspace
    workspace = Path(workspace)
    header = environ.get(ENV_USER_HEADER, "")
    user = None
    if header:
        _wait_for_request(environ)
        value = environ.get(header_env_name(header))  # os.environ is updated by the wait
        if not value:
            raise BadConfigError(f"the request carries no {header} header (set by the reverse proxy)", field="user")
        user = _user_name(value, f"the {header} header")
    elif environ.get("JUPYTERHUB_USER"):
        user = _user_name(environ["JUPYTERHUB_USER"], "$JUPYTERHUB_USER")
    if user is not None:
        folder = workspace / f"user-{user}"
        folder.mkdir(exist_ok=True)
        return folder
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    for _ in range(100):
        folder = workspace / f"session-{stamp}-{secrets.token_hex(4)}"
        try:
            folder.mkdir()  # exclusive: fails if another page took the name
            return folder
        except FileExistsError:
            continue
        except OSError as exc:
            raise BadFileError(f"cannot create the session folder: {exc.strerror or exc}", path=folder) from None
    raise BadFileError("no free session folder name", path=workspace)


def dashboard_voila():
    """The :class:`voila.app.Voila` subclass serving the dashboard (classes built on first use:
    importing Voila costs a second, which ``nuskybgd-dashboard --help`` should not pay)."""
    # lazy: importing Voila costs a second that `nuskybgd-dashboard --help` should not pay
    import tornado.web
    from jupyter_server.utils import url_path_join
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    started = time.time()

    class PageHandler(TornadoVoilaHandler):
        """Voila's page, with the ``_xsrf`` cookie set before the streamed page is flushed, so that the
        page's shutdown call on close passes jupyter_server's XSRF check."""

        async def get(self, path=None):
            self.xsrf_token  # noqa: B018 - the property sets the cookie when the browser has none
            if hasattr(self.kernel_manager, "page_requested"):
                self.kernel_manager.page_requested()
            return await super().get(path=path)

        def should_use_rendered_notebook(self, *args, **kwargs):
            # Voila 0.5 hands every page the next pool entry even while it is still being started, so a
            # burst of pages queues behind one kernel at a time (at 8 observers most pages time out).
            # Only a started kernel is taken (Voila pops the first entry: a ready one is moved there);
            # otherwise the page starts its own at once.
            if not super().should_use_rendered_notebook(*args, **kwargs):
                return False
            pool = getattr(self.kernel_manager, "_pools", {}).get(self.notebook_path) or []
            # a built kernel first, else one still building its page (sooner than a new one)
            ready = next((i for i, task in enumerate(pool) if _built(task)),
                         next((i for i, task in enumerate(pool) if _ready(task)), None))
            if ready is None:
                return False
            pool.insert(0, pool.pop(ready))
            if hasattr(self.kernel_manager, "taken"):
                self.kernel_manager.taken(pool[0].result()["kernel_id"])
            return True

    class HealthHandler(tornado.web.RequestHandler):
        """``GET /nuskybgd/health``: the server is up; how many kernels run, how many pre-heated ones wait
        ready for a page. Starts none."""

        def get(self):
            km = self.settings["kernel_manager"]
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            pool = km.pool_ready() if hasattr(km, "pool_ready") else 0
            self.finish(json.dumps({"status": "ok", "kernels": len(km.list_kernel_ids()), "pool_ready": pool,
                                    "uptime_s": round(time.time() - started, 1)}))

    class DashboardVoila(Voila):
        """Voila with the dashboard's page handler and health probe."""

        def init_handlers(self):
            handlers = [(url_path_join(self.server_url, HEALTH_PATH), HealthHandler)]
            for spec in super().init_handlers():
                if len(spec) > 1 and spec[1] is TornadoVoilaHandler:
                    spec = (spec[0], PageHandler, *spec[2:])
                handlers.append(spec)
            return handlers

    return DashboardVoila
