"""This instance's live state for the dashboard: `GET /admin/health`, `GET /admin/agents` (and `GET /admin/me`:
the signed-in key and its role).

Health: every model with its route and fallbacks, and per provider its concurrency (in flight, queue
depth) and per deployment the circuit breaker (state, consecutive failures, cooldown left), the error
rate of the last five minutes and the most recent upstream errors (their messages carry no provider
key: errors.py redacts them). Fed by a router listener (upstream errors per deployment) and a gateway
observer (requests and failed requests per provider), both bounded. Agents: each agent's model,
tools and limits; each MCP server's state, tools and last error.

Both are this instance's view (breakers, queues and MCP connections live in each process) and say so.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..access.admin import authorize
from ..access.auth import Authenticator
from ..asgi import JSONResponse, Request, Response
from ..gateway import Gateway
from ..request_record import RequestRecord
from ..routes import PlainRoute
from ..routing.router import RouterEvent
from .live import INSTANCE_ID

__all__ = ["ERROR_WINDOW_S", "StatusApi"]

ERROR_WINDOW_S = 300.0
RECENT_ERRORS = 20  # per deployment
_OUTCOMES = 20000  # request outcomes kept for the error rates (a bound on memory under any load)


class StatusApi:
    def __init__(self, gateway: Gateway, auth: Authenticator) -> None:
        self.gateway = gateway
        self.auth = auth
        self.errors: dict[str, deque[dict[str, Any]]] = {}  # deployment -> its recent upstream errors
        self.outcomes: deque[tuple[float, str, bool]] = deque(maxlen=_OUTCOMES)  # (time, provider, failed)

    def install(self) -> None:
        self.gateway.router.listeners.append(self.on_router_event)
        self.gateway.observers.append(self.observe)

    def routes(self) -> list[PlainRoute]:
        return [PlainRoute("GET", "/admin/health", self.health), PlainRoute("GET", "/admin/agents", self.agents),
                PlainRoute("GET", "/admin/me", self.me)]

    async def me(self, request: Request) -> Response:
        """Who is signed in, and its role (the dashboard shows or hides its buttons by it)."""
        principal = await authorize(self.auth, request, write=False)
        return JSONResponse({"key_id": principal.key_id, "name": principal.name, "role": principal.role})

    def on_router_event(self, event: RouterEvent) -> None:
        if event.kind != "upstream_error" or event.error is None:
            return
        recent = self.errors.get(event.deployment)
        if recent is None:
            recent = self.errors[event.deployment] = deque(maxlen=RECENT_ERRORS)
        err = event.error
        recent.append({"ts": time.time(), "model": event.model[:256], "status": err.status, "code": err.code,
                       "message": err.message[:500]})

    def observe(self, record: RequestRecord) -> None:
        if record.provider is not None:
            self.outcomes.append((record.started_wall, record.provider, record.status >= 500 or record.status == 429))

    def _rates(self, now: float) -> dict[str, tuple[int, int]]:
        rates: dict[str, tuple[int, int]] = {}
        for ts, provider, failed in self.outcomes:
            if ts >= now - ERROR_WINDOW_S:
                total, errors = rates.get(provider, (0, 0))
                rates[provider] = (total + 1, errors + int(failed))
        return rates

    async def health(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        gateway = self.gateway
        router = gateway.router
        now = time.time()
        rates = self._rates(now)
        providers = []
        for name, provider in gateway.providers.items():
            limiter = router.limits.providers.get(name)
            total, failed = rates.get(name, (0, 0))
            deployments = []
            for deployment in [k.id for k in provider.config.keys] or [name]:
                breaker = router.health.snapshot(deployment)
                deployments.append({"id": deployment, **breaker,
                                    "recent_errors": list(reversed(self.errors.get(deployment, ())))})
            providers.append({"name": name, "type": provider.config.type, "base_url": provider.config.base_url,
                              "in_flight": limiter.in_flight if limiter else 0,
                              "max_in_flight": limiter.max_in_flight if limiter else None,
                              "queue_depth": limiter.waiting if limiter else 0,
                              "queue": limiter.queue if limiter else None,
                              "requests_5m": total, "errors_5m": failed,
                              "error_rate_5m": round(failed / total, 4) if total else None,
                              "deployments": deployments})
        models = []
        for name, model in gateway.config.models.items():
            limiter = router.limits.models.get(name)
            models.append({"name": name, "route": model.route, "fallbacks": list(model.fallbacks),
                           "description": model.description, "rpm": model.rpm, "tpm": model.tpm,
                           "in_flight": limiter.in_flight if limiter else None,
                           "queue_depth": limiter.waiting if limiter else None})
        return JSONResponse({"object": "health", "scope": "instance", "instance": INSTANCE_ID,
                             "started_at": gateway.started_at, "providers": providers, "models": models})

    async def agents(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        service = self.gateway.agents
        agents: list[dict[str, Any]] = []
        servers: list[dict[str, Any]] = []
        if service is not None:
            busy = {limiter.name: limiter for limiter in service.limiter}
            for agent in service.registry.agents.values():
                limiter = busy.get(agent.name)
                agents.append({"name": agent.name, "model": agent.model, "description": agent.description,
                               "tools": [ref.server + (f".{ref.tool}" if ref.tool else "") for ref in agent.tools],
                               "resolved_tools": [f"{t.server}.{t.name}" for t in service.mcp_tools(agent)],
                               "max_turns": agent.max_turns, "max_in_flight": agent.max_in_flight,
                               "queue": agent.queue, "in_flight": limiter.in_flight if limiter else 0,
                               "queue_depth": limiter.waiting if limiter else 0})
            for server in (service.pool.servers.values() if service.pool is not None else ()):
                state = "connected" if server.connected else ("restarting" if server.connects else "connecting")
                servers.append({"name": server.name, "transport": "http" if server.config.url else "stdio",
                                "state": state, "connects": server.connects,
                                "restarts": max(0, server.connects - 1), "last_error": server.last_error,
                                "tools": sorted(server.tools)})
        return JSONResponse({"object": "agents", "scope": "instance", "instance": INSTANCE_ID, "agents": agents,
                             "mcp_servers": servers})

