"""Serving an ASGI app: the listening socket, the event loop, lifespan, signals, graceful
shutdown, and several worker processes.

`serve(options, build_app, app=None)` binds the socket and either runs one worker in this process
or forks `options.workers` workers that share the socket, restarts one that dies, and forwards
SIGTERM/SIGINT to them. Each worker: lifespan startup, accept connections (`protocol.HttpProtocol`),
and on SIGTERM/SIGINT stop accepting, let requests in flight finish within `grace_s` (keep-alive
connections close as they go idle), cancel what is left (a cut response, never a fake clean end),
then lifespan shutdown. A second signal cuts at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .protocol import ASGI_VERSION, ASGIApp, HttpProtocol, ServerState

__all__ = ["ServeOptions", "bind_socket", "run_worker", "serve"]

log = logging.getLogger("switchboard.server")

EXIT_STARTUP_FAILED = 3
_CANCEL_WAIT_S = 5.0  # how long cancelled requests get to close their upstreams after the grace ran out


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    grace_s: float = 30.0
    keepalive_s: float = 75.0
    send_timeout_s: float = 60.0  # a client that reads nothing of its response for this long is cut
    backlog: int = 4096
    extra_ports: tuple[int, ...] = ()  # more listeners on the same host (facades on ports of their own)


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host in ("::", ""):
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # "::" also takes IPv4
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions, build_app: Callable[[], ASGIApp], app: ASGIApp | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status. `build_app` makes each worker's app (called
    in the worker, after fork); `app`, if given, is used as is when there is a single worker."""
    raise_open_files_limit()
    socks: list[socket.socket] = []
    for port in (options.port, *options.extra_ports):
        try:
            socks.append(bind_socket(options.host, port, options.backlog))
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", options.host, port, exc)
            for sock in socks:
                sock.close()
            return 1
    if options.workers <= 1:
        return run_worker(app if app is not None else build_app(), socks, options)
    return _Supervisor(options, build_app, socks).run()


def raise_open_files_limit() -> None:
    """Every connection is a file descriptor and a proxied request holds two (its client's and its
    upstream's), so 1,000 streams in flight need ~2,000: past the soft limit of 1,024 that many
    systems start processes with, where accept() and connect() would fail with EMFILE. The soft
    limit is raised to the hard one, as Go's runtime does for every program."""
    try:
        import resource
    except ImportError:  # (Windows)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d to %d: %s", soft, target, exc)


def run_worker(app: ASGIApp, socks: list[socket.socket], options: ServeOptions) -> int:
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if sys.platform != "win32":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_Worker(app, socks, options).run())


class _Lifespan:
    """Drives the app's ASGI lifespan protocol: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": {}}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception as exc:
            log.error("lifespan: the application raised", exc_info=exc)
            await self.outbox.put({"type": "lifespan.failed", "message": str(exc)})
        else:
            await self.outbox.put({"type": "lifespan.returned"})

    async def _step(self, message: str) -> dict[str, Any]:
        await self.inbox.put({"type": message})
        return await self.outbox.get()

    async def startup(self) -> bool:
        self.task = asyncio.get_running_loop().create_task(self._run())
        reply = await self._step("lifespan.startup")
        if reply["type"] == "lifespan.startup.complete":
            log.info("Application startup complete.")
            return True
        if reply["type"] == "lifespan.returned":  # the app does not speak lifespan: nothing to start
            self.supported = False
            return True
        log.error("Application startup failed: %s", reply.get("message", "") or "(no message)")
        return False

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        reply = await self._step("lifespan.shutdown")
        if reply["type"] == "lifespan.shutdown.complete":
            log.info("Application shutdown complete.")
        else:
            log.error("Application shutdown failed: %s", reply.get("message", "") or "(no message)")


class _Worker:
    def __init__(self, app: ASGIApp, socks: list[socket.socket], options: ServeOptions) -> None:
        self.app = app
        self.socks = socks
        self.options = options
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.stopped_at = 0.0

    def _on_signal(self) -> None:
        now = time.monotonic()
        # A second signal cuts at once, unless it is the same stop arriving twice: a signal to the whole
        # process group (systemd, Ctrl-C) reaches a worker directly and again through the supervisor.
        if self.stop.is_set() and now - self.stopped_at > 1.0:
            self.force.set()
        if not self.stop.is_set():
            self.stopped_at = now
        self.stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        lifespan = _Lifespan(self.app)
        if not await lifespan.startup():
            return EXIT_STARTUP_FAILED
        state = ServerState(self.app, self.options.keepalive_s, send_timeout_s=self.options.send_timeout_s)
        servers = [await loop.create_server(lambda: HttpProtocol(state), sock=sock, backlog=self.options.backlog)
                   for sock in self.socks]
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        host, port = self.socks[0].getsockname()[:2]
        log.info("Switchboard listening on http://%s:%d (process %d)", host, port, os.getpid())
        for sock in self.socks[1:]:
            host, port = sock.getsockname()[:2]
            log.info("Switchboard also listening on http://%s:%d (a facade's port)", host, port)
        sweeper = loop.create_task(self._sweep(state))
        await self.stop.wait()
        log.info("Shutting down: no new connections; waiting up to %.1f s for requests in flight",
                 self.options.grace_s)
        for server in servers:
            server.close()
        state.drain()
        await self._drain(state)
        sweeper.cancel()
        await lifespan.shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        return 0

    async def _sweep(self, state: ServerState) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            state.sweep(loop.time())

    async def _drain(self, state: ServerState) -> None:
        assert state.all_closed is not None
        waits = [asyncio.ensure_future(state.all_closed.wait()), asyncio.ensure_future(self.force.wait())]
        await asyncio.wait(waits, timeout=self.options.grace_s, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        if not state.connections:
            return
        tasks = [cycle.task for conn in state.connections for cycle in conn.cycles if cycle.task is not None]
        log.warning("graceful shutdown exceeded (%.1f s): cutting %d request(s) in flight",
                    self.options.grace_s, len(tasks))
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_WAIT_S)
        for conn in list(state.connections):
            conn.transport.abort()


class _Supervisor:
    """The parent of several workers: forks them, restarts one that dies, stops them on a signal."""

    def __init__(self, options: ServeOptions, build_app: Callable[[], ASGIApp], socks: list[socket.socket]) -> None:
        self.options = options
        self.build_app = build_app
        self.socks = socks
        self.children: dict[int, float] = {}  # pid -> start time
        self.stopping = False

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            status = 1
            try:
                status = run_worker(self.build_app(), self.socks, self.options)
            except BaseException:
                log.exception("worker %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(status)
        self.children[pid] = time.monotonic()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        log.info("starting %d workers (supervisor process %d)", self.options.workers, os.getpid())
        for _ in range(self.options.workers):
            self._spawn()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        status = 0
        kill_at: float | None = None
        while self.children:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if self.stopping and kill_at is None:
                    kill_at = time.monotonic() + self.options.grace_s + _CANCEL_WAIT_S + 5
                if kill_at is not None and time.monotonic() > kill_at:
                    for child in self.children:
                        os.kill(child, signal.SIGKILL)
                time.sleep(0.1)
                continue
            started = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(wait_status)
            if self.stopping:
                continue
            if code == EXIT_STARTUP_FAILED:
                log.error("worker %d could not start: stopping", pid)
                status = EXIT_STARTUP_FAILED
                self._on_signal(signal.SIGTERM, None)
                continue
            lived = time.monotonic() - (started or time.monotonic())
            log.error("worker %d exited with status %d after %.1f s: starting another", pid, code, lived)
            time.sleep(0.5 if lived > 10 else 2.0)  # a worker that keeps crashing is not restarted in a tight loop
            if not self.stopping:  # a stop signal may have come during the pause
                self._spawn()
        for sock in self.socks:
            sock.close()
        return status
