"""``nuskybgd-dashboard``: serve the background-modelling dashboard with Voila.

The dashboard is the notebook ``nuskybgd_widgets/notebooks/dashboard.ipynb`` (shipped with the
package; ``notebooks/dashboard.ipynb`` in the repository is the same notebook). Voila runs it
in a fresh kernel per browser tab and shows only the widgets, never the code.

The command line reaches the notebook through environment variables, which the kernel
inherits from the Voila server: :data:`ENV_DATA_ROOT`, :data:`ENV_WORKSPACE` and
:data:`ENV_DEMO`; :func:`app_from_environment` reads them back inside the notebook. The server
listens on 127.0.0.1 unless ``--ip`` says otherwise, because the dashboard reads and writes
files: exposing it to a network is a deliberate choice.

Examples
--------
::

    nuskybgd-dashboard --demo                     # the simulated demo observation
    nuskybgd-dashboard ~/nustar --workspace ~/bgd # observations under ~/nustar, outputs in ~/bgd
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import socket
import sys
import threading
from importlib import metadata
from pathlib import Path

from nuskybgd_engine.errors import NuSkyBgdError
from traitlets.config import Config

from . import server
from .paths import resolve_root

__all__ = ["DEFAULT_PORT", "DEFAULT_WORKSPACE", "ENV_DATA_ROOT", "ENV_DEMO", "ENV_WORKSPACE", "QUIET_LOG_LINES",
           "TEMPLATE", "app_from_environment", "build_parser", "check_port_free", "dashboard_environment",
           "jupyter_data_path", "main", "notebook_path", "voila_argv", "voila_config"]

#: Environment variable holding the resolved data root (observations are read under it).
ENV_DATA_ROOT = "NUSKYBGD_DATA_ROOT"
#: Environment variable holding the resolved workspace (every output is written under it).
ENV_WORKSPACE = "NUSKYBGD_WORKSPACE"
#: Environment variable set to ``1`` to open the demo observation.
ENV_DEMO = "NUSKYBGD_DEMO"
#: Voila's usual port.
DEFAULT_PORT = 8866
#: Workspace (in the current directory) when none is given.
DEFAULT_WORKSPACE = "nuskybgd-workspace"

#: Voila template shipped with the package: Voila's "lab" page with nothing fetched from the internet.
TEMPLATE = "nuskybgd"
#: Server and kernel log lines that say nothing to a user of the dashboard (shown with ``--verbose``):
#: the kernels talk to the server over loopback TCP, the notebook is ours, and a headless machine has
#: no browser to open.
QUIET_LOG_LINES = (b"Kernel is running over TCP without encryption", b"is not trusted", b"No web browser found")

_TRUE = ("1", "yes", "true", "on")
# Distributions whose Jupyter data files (Voila templates, widget front-ends) the served page needs.
_DATA_DISTRIBUTIONS = ("voila", "jupyterlab_widgets", "bqplot", "bqplot-image-gl")


def notebook_path():
    """Path of the dashboard notebook shipped with the package."""
    path = Path(__file__).resolve().parent / "notebooks" / "dashboard.ipynb"
    if not path.is_file():
        raise NuSkyBgdError(f"the dashboard notebook is missing from the installation (path={path}); "
                            "reinstall nuskybgd-widgets")
    return path


class _Parser(argparse.ArgumentParser):
    """One-line errors, exit status 2 (as the ``nuskybgd`` command)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


_port = server.int_in_range(1, 65535, "a port number", "port")


def build_parser():
    """The ``nuskybgd-dashboard`` argument parser."""
    p = _Parser(
        prog="nuskybgd-dashboard",
        description="Serve the nuskybgd background-modelling dashboard with Voila. The dashboard reads only "
                    "under DATA_ROOT and writes only under the workspace; paths leaving them are refused.",
    )
    p.add_argument("data_root", nargs="?", metavar="DATA_ROOT",
                   help="directory holding the observations (default: the current directory, "
                        "or only the demo observation with --demo)")
    p.add_argument("--demo", action="store_true",
                   help="open the simulated demo observation (made on first use, ~5 s; "
                        "cached in $NUSKYBGD_DEMO_DIR or ~/.cache/nuskybgd/demo)")
    p.add_argument("--workspace", metavar="DIR",
                   help=f"directory for every output (created if missing; default ./{DEFAULT_WORKSPACE})")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="N",
                   help=f"port to listen on (default {DEFAULT_PORT}; fails if taken)")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--verbose", action="store_true",
                   help="show the full Voila, Jupyter server and kernel log (default: the address, the data "
                        "root, the workspace, then only warnings and errors that concern the user)")
    server.add_server_arguments(p)
    return p


def check_port_free(ip, port):
    """Raise a one-line error when ``ip:port`` cannot be listened on (taken, or not an address here).

    Checked before Voila starts, so the user gets a message naming the port and the option
    rather than Voila's "no available port" log and exit status 1. The socket is opened as the
    server opens its own (``SO_REUSEADDR``), so a port left in TIME_WAIT by a previous run counts
    as free, as it is for the server.

    Raises
    ------
    NuSkyBgdError
        The port is in use, or ``ip`` is not an address of this machine.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise NuSkyBgdError(f"port {port} on {ip} is already in use (another dashboard or server?); "
                                    f"choose another with --port N") from None
            raise NuSkyBgdError(f"cannot listen on {ip}:{port} ({exc.strerror}); check --ip and --port") from None


def jupyter_data_path(environ=None):
    """``JUPYTER_PATH`` for the server: the package's Voila template first, then the Jupyter data
    directories of the installed Voila and widget front-ends, then the inherited value.

    Jupyter looks for templates and front-end extensions under ``sys.prefix``; a virtual
    environment that uses the system's packages, or a ``pip install --user``, puts them under
    another prefix, where the page would then miss them.
    """
    environ = os.environ if environ is None else environ
    dirs = [str(Path(__file__).resolve().parent / "jupyter")]
    share = os.sep + os.path.join("share", "jupyter") + os.sep
    for name in _DATA_DISTRIBUTIONS:
        try:
            files = metadata.distribution(name).files or ()
        except metadata.PackageNotFoundError:
            continue
        located = (os.path.normpath(os.fspath(f.locate())) for f in files)
        root = next((path.split(share)[0] for path in located if share in path), None)
        if root is not None:
            dirs.append(root + share.rstrip(os.sep))
    inherited = [d for d in environ.get("JUPYTER_PATH", "").split(os.pathsep) if d]
    return os.pathsep.join(dict.fromkeys(dirs + inherited))


def dashboard_environment(data_root=None, workspace=None, demo=False):
    """Environment variables that carry the command line to the dashboard notebook.

    Roots are resolved (absolute, symbolic links followed) here, once, so the kernel sees the
    same directories whatever its working directory. The data root must exist; the
    workspace is created when missing. With ``demo`` and no data root, the data root is the
    demo directory (``$NUSKYBGD_DEMO_DIR`` or the user cache, created when missing), so the
    dashboard never reads outside a known root; ``NUSKYBGD_DEMO_DIR`` is then set too, so the
    demo is simulated there.

    Returns
    -------
    dict
        ``{ENV_DATA_ROOT: ..., ENV_WORKSPACE: ..., ENV_DEMO: "0"|"1"}`` (and ``NUSKYBGD_DEMO_DIR``
        with ``demo``); a root that was not given is set to ``""`` so an inherited value cannot
        leak in.

    Raises
    ------
    NuSkyBgdError
        The data root is not a directory, or the workspace cannot be created.
    """
    env = {ENV_DATA_ROOT: "", ENV_WORKSPACE: "", ENV_DEMO: "1" if demo else "0"}
    if demo:
        from nuskybgd_engine.demo import (
            demo_root,  # lazy: the engine is not needed for --help
        )

        demo_dir = resolve_root(demo_root(), what="demo directory", create=True)
        env["NUSKYBGD_DEMO_DIR"] = str(demo_dir)
        if data_root is None:
            data_root = demo_dir
    if data_root is not None:
        env[ENV_DATA_ROOT] = str(resolve_root(data_root, what="data root"))
    if workspace is not None:
        env[ENV_WORKSPACE] = str(resolve_root(workspace, what="workspace", create=True))
    return env


def voila_argv(notebook, *, port=DEFAULT_PORT, ip="127.0.0.1", open_browser=False, verbose=False):
    """Voila's command-line arguments (without the program name) to serve ``notebook``."""
    argv = [
        str(notebook),
        f"--port={int(port)}",
        f"--Voila.ip={ip}",
        # A taken port is an error, not a silent move to another port the user does not know.
        "--Voila.port_retries=0",
        "--VoilaConfiguration.show_tracebacks=False",
        f"--VoilaConfiguration.template={TEMPLATE}",
    ]
    if not verbose:  # our start line says where to go; Voila's INFO lines only with --verbose
        argv.append("--Voila.log_level=WARN")
    if not open_browser:
        argv.append("--no-browser")
    return argv


def voila_config():
    """Voila settings that have no clean command-line form: serve no file from the notebook's
    directory (the dashboard needs none, and nothing there is the user's business)."""
    cfg = Config()
    cfg.VoilaConfiguration.file_allowlist = []
    return cfg


@contextlib.contextmanager
def _quiet_stderr(noise=QUIET_LOG_LINES):
    """Drop the lines containing any of ``noise`` from everything written to file descriptor 2
    (this process and the kernels it starts, which inherit it) until the block ends."""
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump():
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:  # keeps draining even when the terminal is gone: writers never block
                if not any(text in line for text in noise):
                    with contextlib.suppress(OSError):
                        os.write(real, line)

    thread = threading.Thread(target=pump, name="nuskybgd-dashboard-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end held here: the pump ends at EOF
        thread.join(timeout=2)
        os.close(real)


def app_from_environment(environ=None):
    """Build the dashboard app from the environment set by :func:`main` (used by the notebook).

    With none of the variables set (the notebook opened directly in Jupyter or on Binder)
    the demo observation is opened, as ``nuskybgd-dashboard --demo`` would: data root the
    demo directory, outputs in ``./nuskybgd-workspace`` (the kernel's current directory).
    """
    from .app import (
        build_app,  # lazy: runs in the kernel; the server process never builds the app
    )

    environ = os.environ if environ is None else environ
    data_root = environ.get(ENV_DATA_ROOT) or None
    workspace = environ.get(ENV_WORKSPACE) or None
    flag = environ.get(ENV_DEMO, "").strip().lower()
    demo = flag in _TRUE or (flag == "" and data_root is None)
    if data_root is None or workspace is None:
        env = dashboard_environment(data_root, workspace or str(Path.cwd() / DEFAULT_WORKSPACE), demo)
        data_root, workspace = env[ENV_DATA_ROOT] or None, env[ENV_WORKSPACE]
        if "NUSKYBGD_DEMO_DIR" in env:  # the session simulates the demo where the data root says
            os.environ.setdefault("NUSKYBGD_DEMO_DIR", env["NUSKYBGD_DEMO_DIR"])
    workspace = server.session_workspace(workspace, environ)
    return build_app(data_root=data_root, workspace=workspace, demo=demo)


def main(argv=None):
    """Entry point of ``nuskybgd-dashboard``; returns the exit status."""
    args = build_parser().parse_args(argv)
    data_root = args.data_root
    if data_root is None and not args.demo:
        data_root = os.getcwd()
    workspace = args.workspace if args.workspace is not None else DEFAULT_WORKSPACE
    try:
        env = dashboard_environment(data_root, workspace, args.demo)
        notebook = notebook_path()
        check_port_free(args.ip, args.port)
    except NuSkyBgdError as exc:
        print(f"nuskybgd-dashboard: error: {exc}", file=sys.stderr)
        return 2
    os.environ.update(env)
    os.environ["JUPYTER_PATH"] = jupyter_data_path()
    os.environ.update(server.server_environment(args))

    host = f"[{args.ip}]" if ":" in args.ip else args.ip
    print(f"nuskybgd-dashboard: http://{host}:{args.port}/ (Ctrl-C to stop)\n"
          f"  data root: {env[ENV_DATA_ROOT]}{' (demo observation)' if args.demo else ''}\n"
          f"  workspace: {env[ENV_WORKSPACE]}", file=sys.stderr, flush=True)
    argv = voila_argv(notebook, port=args.port, ip=args.ip, open_browser=not args.no_browser, verbose=args.verbose)
    with contextlib.nullcontext() if args.verbose else _quiet_stderr():
        server.dashboard_voila().launch_instance(argv=argv, config=server.configure(voila_config(), args))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised by the browser tests as a subprocess
    sys.exit(main())
