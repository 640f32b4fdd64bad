"""The gateway's state for one process: config, providers, router, agents, auth, access control and
request observers.

Built from a Config by `Gateway(config)` (providers, access control and agents may be given, e.g.
by tests with an in-process provider; otherwise they are built from the config); nothing is
global. Headends receive it explicitly.
Observers (access log, metrics, usage log) get one `RequestRecord` per finished request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .access.auth import Authenticator, Principal
from .access.control import AccessControl
from .agents.service import AgentService
from .asgi import Request
from .config import Config
from .observability.spans import Tracer
from .observability.tracing import build_tracer, finish_trace
from .providers import build_provider
from .providers.base import ChatProvider, HttpUpstream
from .request_record import RequestRecord
from .routing.limits import Limits
from .routing.router import Router
from .routing.routes import RouteTable
from .routing.shared_cooldowns import SharedCooldowns

__all__ = ["Gateway", "RequestRecord"]

log = logging.getLogger("switchboard")

Observer = Callable[[RequestRecord], None]
ReadinessCheck = Callable[[], Awaitable[Any]]


class Gateway:
    def __init__(self, config: Config, *, providers: dict[str, ChatProvider] | None = None,
                 access: AccessControl | None = None, agents: AgentService | None = None) -> None:
        self.config = config
        given = providers or {}
        self.providers: dict[str, ChatProvider] = {
            name: given[name] if name in given else build_provider(p) for name, p in config.providers.items()}
        limits = Limits(config)
        if agents is None and (config.agents_dir or config.agent_file or config.mcp_servers
                               or config.responses.allowed_mcp_urls):  # client-named MCP servers: the tool loop
            agents = AgentService(config, RouteTable(config, self.providers).knows, limits)
        self.agents = agents
        self.router = Router(config, self.providers, limits, agents)
        self.access = access if access is not None else AccessControl(config)
        self.auth = Authenticator(config.auth, self.access.resolve)
        self.observers: list[Observer] = [self.access.observe]
        self.readiness_checks: dict[str, ReadinessCheck] = {"store": self.access.store.ping}
        self.started_at = int(time.time())
        self._starters: list[Callable[[], Awaitable[None]]] = [self.access.start]
        self._closers: list[Callable[[], Awaitable[None]]] = [self.access.aclose, self.router.aclose]
        if config.shared_state_url:
            self.readiness_checks["shared_state"] = self.access.state.ping
            cooldowns = SharedCooldowns(self.router.health, self.access.state, config)
            cooldowns.install()
            self._starters.append(cooldowns.start)
            self._closers.append(cooldowns.aclose)
        if agents is not None:
            self._starters.append(agents.start)
            self._closers.append(agents.aclose)
        self.tracer: Tracer | None = None  # None unless `observability.otlp` is configured
        tracing = build_tracer(config)
        if tracing is not None:
            self._trace(*tracing)
        self.ready = False
        self._finished: list[RequestRecord] = []  # finished requests not yet shown to the observers

    def _trace(self, tracer: Tracer, close: Callable[[], Awaitable[None]]) -> None:
        """Tracing on: server spans end with the request, the router and agents record theirs, and the
        upstream and MCP clients send each attempt's `traceparent`."""
        self.tracer = tracer
        self.router.tracer = tracer
        self.observers.append(finish_trace)
        self._closers.insert(0, close)  # closed last: the spans of requests cut at shutdown are exported too
        for provider in self.providers.values():
            http = getattr(provider, "http", None)
            if isinstance(http, HttpUpstream):
                http.propagate = True
        self.router.counters.propagate_traces()
        if self.agents is not None:
            self.agents.propagate_traces()

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        for starter in self._starters:
            await starter()
        self.ready = True

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def aclose(self) -> None:
        self.ready = False
        self.flush_finished()
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:
                log.exception("error while shutting down")
        for provider in self.providers.values():
            await provider.aclose()

    async def authenticate(self, request: Request, record: RequestRecord) -> Principal:
        """Who is calling, from the headers alone (the body is not read before this)."""
        principal, digest = self.auth.known(request.headers)  # no coroutine for the keys known in memory
        if principal is None:
            assert digest is not None
            principal = await self.auth.resolve(digest)
        record.key_id = principal.key_id
        request.principal = principal
        return principal

    async def admit(self, request: Request, model: str, record: RequestRecord) -> None:
        """May the authenticated caller use `model` now (its key's models, rate limits, budget)?"""
        principal = request.principal
        assert principal is not None, "authenticate() runs before the handler"
        record.model = model
        if request.facade is not None:
            request.facade.check_model(model)
        self.auth.check_model(principal, model)
        if self.access.needs_admission(principal, model):
            await self.access.admit(principal, model, record)

    def finish(self, record: RequestRecord) -> None:
        """The request is over: observers see it once the current batch of event-loop callbacks has
        run, together with the other requests that finished in it. One observer over many records
        keeps its code and data in the CPU caches; a request at a time, under load, each one's
        state is cold again and costs several times more. The batch still runs before the loop
        reads the sockets again, so a client's next request finds this one counted."""
        record.latency_s = time.perf_counter() - record.started
        self._finished.append(record)
        if len(self._finished) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush_finished)
            except RuntimeError:  # no event loop (plain code): observe at once
                self.flush_finished()

    def flush_finished(self) -> None:
        records, self._finished = self._finished, []
        for observer in self.observers:
            for record in records:
                try:
                    observer(record)
                except Exception:
                    log.exception("request observer failed")
