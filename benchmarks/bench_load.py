"""Load benchmark of the served dashboard: N observers at once in headless Chromium on the demo.

Starts ``nuskybgd-dashboard --demo`` on a free loopback port (a temporary data root and
workspace), then for each N in ``--users`` (default 1 2 4 8) opens N pages at once, each in its
own browser context (its own cookies: a separate observer), and measures

* time to first view: ``goto`` until the Fit button and the statistic of the demo regions show;
* memory per kernel: RSS and USS (private) of each kernel process (psutil);
* Fit latency under load: all N click Fit together, until their statistic shows `` dof``;
* kernels alive after the pages close (through ``/nuskybgd/health``, which starts none), at once
  and after a short grace period;
* the load average of the machine (other jobs share its cores) next to each round.

Before each round it waits (bounded) until the pool of pre-heated kernels is full again
(``pool_ready`` of the health probe), and says how long that took: a round measures a server that
had time to refill, as observers arriving minutes apart find it. At the end it counts the server
log's warnings and errors (culled kernels, failed cells).

Two kinds of observer (``--client``):

* ``browser``: a headless Chromium page, as an observer sees it. Its browser runs on the same two
  cores as the server here (observers' browsers run on their own machines), and an empty Voila page
  alone costs ~3 s of Chromium CPU: at N = 8 the browsers need most of the machine.
* ``protocol``: what the page asks of the server, without drawing it (:class:`ProtocolObserver`):
  the page, every static file a browser page loaded (recorded once from a real page), the kernel's
  websocket (Jupyter's v1 protocol, as the page speaks it), ``kernel_info``, the widget manager's
  ``request_states``, ready when the statistic's state holds ``=``; Fit is a click message to the
  Fit button, done when the statistic says `` dof``; closing posts Voila's shutdown call with the
  ``_xsrf`` cookie, as the page's ``beforeunload`` does. This measures the server's part on two
  cores, with N observers' browsers elsewhere.

``both`` runs a protocol round and a browser round for each N.

Then ``--views`` successive single page views (open, ready, close) with the memory of the server
and its kernels after each, summarised as a curve (first/middle/last and the slope per view).
Every wait is bounded; everything runs on 127.0.0.1 and the server is stopped at the end.

Needs ``/usr/bin/chromium`` and the ``playwright`` package (never ``playwright install``).

Usage::

    python benchmarks/bench_load.py [--users 1 2 4 8] [--views 100] [--preheat N] [--cull-idle S]
                                    [--refill-quiet S] [--no-product-cache] [--client browser|protocol|both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psutil
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from nuskybgd_widgets.server import DEFAULT_PREHEAT, DEFAULT_REFILL_QUIET

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
READY_MS = 180_000  # one page until ready, bounded
FIT_MS = 120_000
READY_JS = "() => /=/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')"
FITTED_JS = "() => / dof/.test(document.querySelector('.nsb-stat-readout')?.innerText || '')"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(url):
    with urllib.request.urlopen(url + "nuskybgd/health", timeout=10) as r:
        return json.load(r)


def kernel_processes(server):
    """The kernel processes under the server process."""
    out = []
    for p in server.children(recursive=True):
        try:
            if any("ipykernel" in a for a in p.cmdline()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def memory(server):
    """(per-kernel [(rss, uss) MiB], server+kernels total RSS MiB)."""
    kernels = []
    for p in kernel_processes(server):
        try:
            m = p.memory_full_info()
            kernels.append((m.rss / 2**20, m.uss / 2**20))
        except psutil.Error:
            continue
    total = server.memory_info().rss / 2**20 + sum(k[0] for k in kernels)
    return kernels, total


def start_server(base, extra, product_cache=True):
    port = free_port()
    env = dict(os.environ, NUSKYBGD_DEMO_DIR=str(base / "demo"),
               NUSKYBGD_PRODUCT_CACHE=str(base / "products") if product_cache else "off")
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed in stop_server
    proc = subprocess.Popen([sys.executable, "-m", "nuskybgd_widgets.dashboard", "--demo", "--port", str(port),
                             "--workspace", str(base / "workspace"), "--no-browser", *extra],
                            cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {(base / 'server.log').read_text()[-2000:]}")
        try:
            health(url)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("server did not start within 120 s") from None
            time.sleep(0.5)
    return proc, log, url


def stop_server(proc, log):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    log.close()


async def open_page(browser, url):
    """(context, page, seconds to the first view); a page not ready in time is closed and raises."""
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await ctx.new_page()
    t0 = time.perf_counter()
    try:
        await page.goto(url, timeout=READY_MS)
        await page.wait_for_function(READY_JS, timeout=READY_MS)
    except Exception:
        await close_page(ctx, page)  # a failed page must not keep its kernel
        raise
    return ctx, page, time.perf_counter() - t0


async def close_page(ctx, page):
    """Close the tab as a person does (``beforeunload`` runs: Voila asks the server to free the kernel)."""
    await page.close(run_before_unload=True)
    await asyncio.sleep(0.2)  # let the beacon leave before the context goes
    await ctx.close()


async def fit(page):
    t0 = time.perf_counter()
    await page.locator(".nsb-fit-button").click()
    await page.wait_for_function(FITTED_JS, timeout=FIT_MS)
    return time.perf_counter() - t0


async def record_assets(browser, url):
    """Paths of the static files (scripts, styles, fonts, images) one browser page loads."""
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await ctx.new_page()
    seen = []
    page.on("requestfinished", lambda r: seen.append(r) if r.resource_type in ("script", "stylesheet", "font", "image")
            and r.url.startswith(url) else None)
    await page.goto(url, timeout=READY_MS)
    await page.wait_for_function(READY_JS, timeout=READY_MS)
    await asyncio.sleep(1)
    await close_page(ctx, page)
    return list(dict.fromkeys(urllib.parse.urlsplit(r.url)._replace(scheme="", netloc="").geturl() for r in seen))


class ProtocolObserver:
    """One observer speaking the page's protocol to the server, drawing nothing (see the module's text).

    Parameters
    ----------
    url : str
        The dashboard's URL.
    assets : list of str
        Static files to fetch after the page (:func:`record_assets`), six at a time as a browser does.
    """

    def __init__(self, url, assets):
        self.url, self.assets = url, assets
        self.http = AsyncHTTPClient(force_instance=True, max_clients=6)
        self.cookies = {}
        self.session = uuid.uuid4().hex
        self.models = {}  # comm id -> widget state
        self.ws = self.kernel = None

    def _headers(self):
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    def _keep_cookies(self, response):
        for line in response.headers.get_list("Set-Cookie"):
            name, _, rest = line.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]

    async def _get(self, path):
        response = await self.http.fetch(self.url.rstrip("/") + path, headers=self._headers(),
                                         request_timeout=READY_MS / 1000)
        self._keep_cookies(response)
        return response

    def _send(self, msg_type, content, metadata=None, channel="shell"):
        header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": self.session, "username": "",
                  "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "version": "5.2"}
        parts = [json.dumps(x).encode() for x in (header, {}, metadata or {}, content)]
        self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        return header["msg_id"]

    async def _receive(self):
        """The next (msg_type, content) from the kernel, widget states kept up to date."""
        frame = await self.ws.read_message()
        if frame is None:
            raise ConnectionError("the kernel's websocket closed")
        _, parts = deserialize_msg_from_ws_v1(frame)
        header, content = json.loads(parts[0]), json.loads(parts[3])
        kind = header["msg_type"]
        data = content.get("data") or {}
        if kind == "comm_open":
            self.models[content["comm_id"]] = dict(data.get("state") or {})
        elif kind == "comm_msg" and data.get("method") == "update_states":
            for comm_id, entry in data.get("states", {}).items():
                self.models[comm_id] = dict(entry.get("state") or {})
        elif kind == "comm_msg" and data.get("method") == "update":
            self.models.setdefault(content["comm_id"], {}).update(data.get("state") or {})
        return kind, content

    def _find(self, dom_class):
        return next((cid for cid, st in self.models.items() if dom_class in (st.get("_dom_classes") or ())), None)

    def _readout(self):
        cid = self._find("nsb-stat-readout")
        return "" if cid is None else str(self.models[cid].get("value", ""))

    async def open(self):
        """Seconds until the dashboard's state has arrived with the demo's statistic."""
        t0 = time.perf_counter()
        page = (await self._get("/")).body.decode()
        found = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', page)
        if not found:
            raise RuntimeError("the page names no kernel")
        self.kernel = found.group(1)
        await asyncio.gather(*(self._get(path) for path in self.assets))
        ws_url = self.url.replace("http://", "ws://").rstrip("/") + \
            f"/api/kernels/{self.kernel}/channels?session_id={self.session}"
        self.ws = await websocket_connect(HTTPRequest(ws_url, headers=self._headers()),
                                          subprotocols=["v1.kernel.websocket.jupyter.org"])
        self._send("kernel_info_request", {})
        control = uuid.uuid4().hex
        self._send("comm_open", {"comm_id": control, "target_name": "jupyter.widget.control", "data": {}},
                   metadata={"version": "1.0.0"})  # the widget control protocol's version
        self._send("comm_msg", {"comm_id": control, "data": {"method": "request_states"}})
        deadline = time.monotonic() + READY_MS / 1000
        while "=" not in self._readout():
            if time.monotonic() > deadline:
                raise TimeoutError("no dashboard state within the time limit")
            await asyncio.wait_for(self._receive(), timeout=READY_MS / 1000)
        self._send("comm_close", {"comm_id": control, "data": {}})
        return time.perf_counter() - t0

    async def fit(self):
        """Click Fit; seconds until the statistic says `` dof``."""
        button = self._find("nsb-fit-button")
        t0 = time.perf_counter()
        self._send("comm_msg", {"comm_id": button, "data": {"method": "custom", "content": {"event": "click"}}})
        while " dof" not in self._readout():
            await asyncio.wait_for(self._receive(), timeout=FIT_MS / 1000)
        return time.perf_counter() - t0

    async def close(self):
        """Voila's shutdown call with the ``_xsrf`` cookie (the page's ``beforeunload``), then hang up."""
        try:
            if self.kernel is not None:
                body = urllib.parse.urlencode({"_xsrf": self.cookies.get("_xsrf", "")})
                await self.http.fetch(self.url.rstrip("/") + f"/voila/api/shutdown/{self.kernel}", method="POST",
                                      body=body, headers=self._headers(), raise_error=False)
        finally:
            if self.ws is not None:
                self.ws.close()
            self.http.close()


async def wait_pool(url, want, seconds=240):
    """Seconds until ``want`` pre-heated kernels wait ready (or ``seconds`` passed: then None)."""
    t0 = time.monotonic()
    while health(url).get("pool_ready", want) < want:
        if time.monotonic() - t0 > seconds:
            return None
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


def load_average():
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def log_problems(path):
    """Counts of the server log's culling, warning and error lines."""
    text = path.read_text(errors="replace")
    return {"culled": text.count("Culling"), "warnings": text.count("[W "), "errors": text.count("[E ")}


async def wait_kernels(url, at_most, seconds):
    """Kernel count once it is at most ``at_most``, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        n = health(url)["kernels"]
        if n <= at_most or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.5)


class BrowserObserver:
    """One observer in its own Chromium context (its own cookies), as :class:`ProtocolObserver`."""

    def __init__(self, browser, url):
        self.browser, self.url = browser, url
        self.ctx = self.page = None

    async def open(self):
        self.ctx, self.page, t = await open_page(self.browser, self.url)
        return t

    async def fit(self):
        return await fit(self.page)

    async def close(self):
        if self.page is not None:
            await close_page(self.ctx, self.page)


async def _opened(observer):
    try:
        return observer, await observer.open()
    except BaseException:
        with contextlib.suppress(Exception):
            await observer.close()  # a failed page must not keep its kernel
        raise


async def round_of(make, url, server, n, baseline_kernels):
    """N observers made by ``make()`` open at once, fit at once, close."""
    opened = await asyncio.gather(*(_opened(make()) for _ in range(n)), return_exceptions=True)
    ok = [o for o in opened if not isinstance(o, BaseException)]
    for o in opened:
        if isinstance(o, BaseException):
            print(f"    a page failed: {(str(o) or type(o).__name__).splitlines()[0]}", flush=True)
    firsts = [o[1] for o in ok]
    kernels, total = memory(server)
    fits = await asyncio.gather(*(o[0].fit() for o in ok), return_exceptions=True)
    fit_s = [f for f in fits if not isinstance(f, BaseException)]
    await asyncio.gather(*(o[0].close() for o in ok))
    alive_now = health(url)["kernels"]
    alive_later = await wait_kernels(url, baseline_kernels, 15)
    return {"n": n, "ready": len(ok), "first_median": statistics.median(firsts) if firsts else None,
            "first_max": max(firsts) if firsts else None,
            "rss_per_kernel": statistics.median(k[0] for k in kernels) if kernels else None,
            "uss_per_kernel": statistics.median(k[1] for k in kernels) if kernels else None,
            "fit_median": statistics.median(fit_s) if fit_s else None, "fit_max": max(fit_s) if fit_s else None,
            "fits_ok": len(fit_s), "kernels_after_close": alive_now, "kernels_after_15s": alive_later,
            "total_mib": total}


def fmt(v, spec=".1f"):
    return "—" if v is None else format(v, spec)


async def run(args):
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="nsb-load-") as tmp:
        base = Path(tmp)
        (base / "workspace").mkdir()
        extra = ["--cull-idle", str(args.cull_idle), "--preheat", str(args.preheat),
                 "--refill-quiet", str(args.refill_quiet)]
        proc, log, url = start_server(base, extra, product_cache=not args.no_product_cache)
        server = psutil.Process(proc.pid)
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    # warm-up: the demo observation is simulated and its products cached on first use
                    ctx, page, t = await open_page(browser, url)
                    await close_page(ctx, page)
                    filled = await wait_pool(url, args.preheat, 600)
                    base_kernels = await wait_kernels(url, args.preheat, 30)
                    print(f"warm-up page (cold caches): {t:.1f} s; pool of {args.preheat} filled {fmt(filled)} s "
                          f"later; kernels then: {base_kernels}")
                    print(f"server {url} · {os.cpu_count()} cores · preheat {args.preheat} · cull-idle "
                          f"{args.cull_idle} s · refill-quiet {args.refill_quiet} s · product cache "
                          f"{'off' if args.no_product_cache else 'on'}")
                    assets = await record_assets(browser, url) if args.client != "browser" else []
                    kinds = {"browser": ["browser"], "protocol": ["protocol"], "both": ["protocol", "browser"]}
                    makers = {"browser": lambda: BrowserObserver(browser, url),
                              "protocol": lambda: ProtocolObserver(url, assets)}
                    if assets:
                        print(f"protocol observers fetch the page and the {len(assets)} static files of a browser page")
                        await wait_kernels(url, base_kernels, 30)
                    print("  N  client    ready  first view med/max (s)  RSS/USS per kernel (MiB)  Fit med/max (s)  "
                          "kernels after close (at once / 15 s)  pool refill (s)  load avg 1/5/15 min")
                    for n in args.users:
                        for kind in kinds[args.client]:
                            refill = await wait_pool(url, args.preheat)
                            load = load_average()
                            r = await round_of(makers[kind], url, server, n, base_kernels)
                            print(f"{r['n']:>3}  {kind:<8}  {r['ready']}/{n}  {fmt(r['first_median'])} / "
                                  f"{fmt(r['first_max'])}{'':14}{fmt(r['rss_per_kernel'], '.0f')} / "
                                  f"{fmt(r['uss_per_kernel'], '.0f')}{'':17}{fmt(r['fit_median'], '.2f')} / "
                                  f"{fmt(r['fit_max'], '.2f')}{'':9}{r['kernels_after_close']} / "
                                  f"{r['kernels_after_15s']}{'':26}{fmt(refill)}{'':12}{load}", flush=True)
                    if args.views:
                        curve, times, failed = [], [], 0
                        for i in range(args.views):
                            await wait_pool(url, args.preheat, 60)  # observers one after another: warm
                            try:  # a protocol round's views speak the protocol too (the first kind of --client)
                                observer, t = await _opened(makers[kinds[args.client][0]]())
                            except Exception as exc:  # noqa: BLE001 - counted and reported, the loop goes on
                                failed += 1
                                print(f"    view {i + 1} failed: {(str(exc) or type(exc).__name__).splitlines()[0]}",
                                      flush=True)
                                continue
                            times.append(t)
                            await observer.close()
                            await wait_kernels(url, base_kernels, 15)
                            await wait_pool(url, args.preheat, 60)  # the same state after every view: pool full
                            curve.append(memory(server)[1])
                            if len(curve) % 10 == 0:  # partial results survive an interrupted run
                                print(f"    view {i + 1}: first view {t:.1f} s, server+kernels RSS {curve[-1]:.0f} MiB, "
                                      f"load {load_average()}", flush=True)
                        k = len(curve)
                        slope = statistics.linear_regression(range(k), curve).slope if k > 1 else 0.0
                        marks = sorted({0, k // 4, k // 2, 3 * k // 4, k - 1})
                        if not curve:
                            print(f"{args.views} successive page views: none ready")
                            return
                        print(f"load average {load_average()}")
                        print(f"{k} successive page views ({failed} failed): first view median "
                              f"{statistics.median(times):.1f} s, max {max(times):.1f} s; server+kernels RSS after view "
                              + ", ".join(f"#{i + 1}: {curve[i]:.0f}" for i in marks)
                              + f" MiB; slope {slope:+.2f} MiB/view; kernels alive at the end: "
                              f"{health(url)['kernels']}")
                finally:
                    await browser.close()
        finally:
            stop_server(proc, log)
            print("server log: " + ", ".join(f"{v} {k}" for k, v in log_problems(base / "server.log").items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, nargs="*", default=[1, 2, 4, 8], help="concurrent observers per round")
    p.add_argument("--views", type=int, default=100, help="successive single page views (0: none)")
    p.add_argument("--preheat", type=int, default=DEFAULT_PREHEAT,
                   help=f"pre-heated kernels (nuskybgd-dashboard --preheat; default {DEFAULT_PREHEAT})")
    p.add_argument("--cull-idle", type=float, default=60, help="nuskybgd-dashboard --cull-idle")
    p.add_argument("--refill-quiet", type=float, default=DEFAULT_REFILL_QUIET,
                   help=f"nuskybgd-dashboard --refill-quiet (default {DEFAULT_REFILL_QUIET})")
    p.add_argument("--client", choices=("browser", "protocol", "both"), default="both",
                   help="observers as Chromium pages, as protocol clients drawing nothing, or both (see above)")
    p.add_argument("--no-product-cache", action="store_true",
                   help="every kernel computes the observation's maps ($NUSKYBGD_PRODUCT_CACHE=off)")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} not found (.ci/install-browser)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
