"""The gateway's state for one process: config, providers, router, auth and request observers.

Built from a Config by `Gateway(config)`; nothing is global. Headends receive it explicitly.
Observers (access log, metrics, usage log) get one `RequestRecord` per finished request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .access.auth import Authenticator, Principal
from .asgi import Request
from .config import Config
from .hub import Usage
from .providers import build_provider
from .providers.base import ChatProvider
from .routing.router import Outcome, Router

if TYPE_CHECKING:
    from .access.control import AccessControl
    from .agents.service import AgentService

__all__ = ["Gateway", "RequestRecord"]

log = logging.getLogger("switchboard")


@dataclass(slots=True)
class RequestRecord:
    """What happened to one API request; filled in by the headend, read by observers."""

    request_id: str
    endpoint: str
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    status: int = 200
    error_type: str | None = None
    stream: bool = False
    usage: Usage | None = None
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    first_token_s: float | None = None
    latency_s: float | None = None
    attempts: int = 0
    fallback: bool = False
    # Extra response headers decided before routing (x-ratelimit-*); the app adds them to the response.
    headers: dict[str, str] = field(default_factory=dict)
    admission: object | None = None  # what access control admitted (access.control.Admission)

    def routed(self, outcome: Outcome) -> None:
        self.provider = outcome.deployment.provider.name
        self.upstream_model = outcome.deployment.model
        self.attempts = outcome.attempts
        self.fallback = outcome.fallback

    def mark_first_token(self) -> None:
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.started


Observer = Callable[[RequestRecord], None]
ReadinessCheck = Callable[[], Awaitable[Any]]


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.providers: dict[str, ChatProvider] = {name: build_provider(p) for name, p in config.providers.items()}
        self.router = Router(config, self.providers)
        self.auth = Authenticator(config.auth)
        self.observers: list[Observer] = []
        self.readiness_checks: dict[str, ReadinessCheck] = {}
        self.started_at = int(time.time())
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._starters: list[Callable[[], Awaitable[None]]] = []
        self.agents: AgentService | None = None  # set by create_app when agents or MCP servers are configured
        self.access: AccessControl | None = None  # keys, limits, budgets, usage log; set by create_app
        self.ready = False
        self._finished: list[RequestRecord] = []  # finished requests not yet shown to the observers

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        for starter in self._starters:
            await starter()
        self.ready = True

    def on_start(self, starter: Callable[[], Awaitable[None]]) -> None:
        """Run `starter` at startup, after the providers (e.g. connecting MCP servers)."""
        self._starters.append(starter)

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

    async def authorize(self, request: Request, model: str | None, record: RequestRecord) -> Principal:
        principal, digest = self.auth.known(request.headers)  # no coroutine for the keys known in memory
        if principal is None:
            assert digest is not None
            principal = await self.auth.resolve(digest)
        record.key_id = principal.key_id
        if model is not None:
            record.model = model
            self.auth.check_model(principal, model)
            if self.access is not None and self.access.needs_admission(principal, model):
                await self.access.admit(principal, model, record)
        return principal

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
