"""Builds the ASGI application from a Config: routes, prefixes, errors, request ids, lifespan.

`create_app(config)` is the one place the gateway is assembled; there are no module globals.
Every response carries `x-request-id`; every failure leaves as an OpenAI-format error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from .access.admin import AdminApi
from .access.control import AccessControl
from .agents.service import install_agents
from .asgi import JSONResponse, Receive, Request, Response, Scope, Send, StreamResponse, send_response, send_stream
from .config import Config, load_config
from .errors import GatewayError, internal_error
from .gateway import Gateway, RequestRecord
from .gc_tuning import tune_gc_for_serving
from .headends.anthropic import register_anthropic_routes
from .headends.embeddings import embeddings
from .headends.models import ModelCatalog
from .headends.openai_chat import chat_completions
from .headends.openai_completions import completions
from .observability.access_log import AccessLog
from .observability.metrics import Metrics

__all__ = ["SwitchboardApp", "app_from_env", "create_app"]

log = logging.getLogger("switchboard")

Handler = Callable[[Gateway, Request, RequestRecord], Awaitable[Response | StreamResponse]]
# (error, request id) -> (JSON body, extra headers): lets a route answer errors in its own wire format
# (the Anthropic headend); status and retry headers stay the gateway's.
ErrorRenderer = Callable[[GatewayError, str], tuple[dict[str, Any], dict[str, str]]]


def _valid_request_id(value: str | None) -> bool:
    return bool(value) and len(value) <= 128 and value.isascii() and value.isprintable()  # type: ignore[union-attr]


class SwitchboardApp:
    """The ASGI callable."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.catalog = ModelCatalog(gateway)
        # API routes, relative to /v1 (also served under every configured prefix, and without /v1).
        self.api_routes: dict[tuple[str, str], Handler] = {
            ("POST", "/chat/completions"): chat_completions,
            ("POST", "/completions"): completions,
            ("POST", "/embeddings"): embeddings,
            ("GET", "/models"): lambda gw, req, rec: self.catalog.list(req, rec),
        }
        self.error_renderers: dict[tuple[str, str], ErrorRenderer] = {}
        self.plain_routes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {
            ("GET", "/health"): self._health,
            ("GET", "/ready"): self._ready,
        }
        # Plain routes with `{name}` segments; the values are put in request.state["path_params"].
        self.param_routes: list[tuple[str, re.Pattern[str], Callable[[Request], Awaitable[Response]]]] = []
        self.prefixes = sorted(gateway.config.server.path_prefixes, key=len, reverse=True)
        self.max_body = gateway.config.server.max_body_bytes
        self.shutting_down = False
        # Request ids: a random prefix per process and a counter, unique across workers and restarts
        # without reading the OS's random source on every request.
        self._id_prefix = secrets.token_hex(6)
        self._id_counter = itertools.count()

    def add_api_route(self, method: str, path: str, handler: Handler,
                      error_renderer: ErrorRenderer | None = None) -> None:
        self.api_routes[(method, path)] = handler
        if error_renderer is not None:
            self.error_renderers[(method, path)] = error_renderer

    def add_plain_route(self, method: str, path: str, handler: Callable[[Request], Awaitable[Response]]) -> None:
        if "{" in path:
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
            self.param_routes.append((method, re.compile(f"^{pattern}$"), handler))
            return
        self.plain_routes[(method, path)] = handler

    def _param_route(self, method: str, path: str, request: Request) -> Callable[[Request], Awaitable[Response]] | None:
        for route_method, pattern, handler in self.param_routes:
            if route_method == method and (match := pattern.match(path)) is not None:
                request.state["path_params"] = match.groupdict()
                return handler
        return None

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _ready(self, request: Request) -> Response:
        checks: dict[str, str] = {"config": "ok"}
        ok = self.gateway.ready and not self.shutting_down
        if not self.gateway.ready:
            checks["config"] = "not started"
        for name, check in self.gateway.readiness_checks.items():
            try:
                await asyncio.wait_for(check(), timeout=2.0)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"failed: {type(exc).__name__}"
                ok = False
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503)

    def _strip_prefix(self, path: str) -> str:
        for prefix in self.prefixes:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return path[len(prefix):] or "/"
        return path

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutting_down = True
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        # The request is handled right here rather than one coroutine further down: every wait for
        # the upstream resumes each coroutine of the chain, so each level costs on every request.
        path = self._strip_prefix(scope["path"])
        method = scope["method"]
        request = Request(scope, receive, path, "", self.max_body)
        incoming = request.headers.get("x-request-id")
        if incoming is not None and _valid_request_id(incoming):
            request_id = incoming
        else:
            request_id = f"req_{self._id_prefix}{next(self._id_counter):012x}"
        request.request_id = request_id
        api_path = path[3:] if path.startswith("/v1/") else path
        handler = self.api_routes.get((method, api_path))
        renderer = self.error_renderers.get((method, api_path)) if handler is not None else None
        record: RequestRecord | None = None
        try:
            if handler is not None:
                record = RequestRecord(request_id=request_id, endpoint=api_path)
                response = await handler(self.gateway, request, record)
            elif (plain := self.plain_routes.get((method, path))) is not None:
                response = await plain(request)
            elif (plain := self._param_route(method, path, request)) is not None:
                response = await plain(request)
            elif method == "GET" and api_path.startswith("/models/"):
                record = RequestRecord(request_id=request_id, endpoint="/models")
                response = await self.catalog.retrieve(request, record, api_path[len("/models/"):])
            else:
                response = self._not_found(method, path, api_path)
        except GatewayError as err:
            response = _error_response(err, request_id, renderer)
            if record is not None:
                record.error_type = err.type
        except asyncio.CancelledError:
            if record is not None:
                record.status, record.error_type = 499, "client_disconnected"
                self.gateway.finish(record)
            raise
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", method, scope["path"], request_id)
            response = _error_response(internal_error(), request_id, renderer)
            if record is not None:
                record.error_type = "api_error"
        if record is not None and record.headers:
            response.headers = {**record.headers, **response.headers}
        if isinstance(response, StreamResponse):
            await send_stream(send, receive, response, request_id)
            return
        if record is not None:
            record.status = response.status
            self.gateway.finish(record)
        await send_response(send, response, request_id)

    def _not_found(self, method: str, path: str, api_path: str) -> Response:
        allowed = [m for (m, p) in self.api_routes if p == api_path] + [m for (m, p) in self.plain_routes if p == path]
        allowed += [m for (m, pattern, _) in self.param_routes if pattern.match(path)]
        if allowed:
            err = GatewayError(405, f"Method {method} not allowed on {path}; use {', '.join(sorted(allowed))}.",
                               "invalid_request_error", code="method_not_allowed", retryable=False)
            response = _error_response(err)
            response.headers["allow"] = ", ".join(sorted(allowed))
            return response
        return _error_response(GatewayError(404, f"Unknown request URL: {method} {path}.", "invalid_request_error",
                                            code="unknown_url", retryable=False))


def _error_response(err: GatewayError, request_id: str = "", renderer: ErrorRenderer | None = None) -> Response:
    body, extra = renderer(err, request_id) if renderer is not None else (err.to_dict(), {})
    headers = {**err.headers, **extra}
    if err.status == 429 and "retry-after" not in headers and "retry-after-ms" in headers:
        headers["retry-after"] = str(max(1, round(int(float(headers["retry-after-ms"])) / 1000)))
    if err.status < 500 and err.status not in (408, 409, 429):
        headers.setdefault("x-should-retry", "false")
    return Response(JSONResponse(body).body, err.status, headers)


def create_app(config: Config) -> SwitchboardApp:
    gateway = Gateway(config)
    app = SwitchboardApp(gateway)
    register_anthropic_routes(app)
    if config.agents_dir or config.mcp_servers:
        install_agents(gateway, app.catalog.extra_sources)
    metrics = Metrics(gateway)
    metrics.install()
    AccessLog().install(gateway)
    access = AccessControl(gateway)
    access.install()
    metrics.registry.register(access)  # type: ignore[arg-type]
    AdminApi(access).register(app)
    app.add_plain_route("GET", "/metrics", metrics.handle)
    for warning in config.warnings:
        log.warning("%s", warning)
    if not gateway.auth.enabled:
        log.warning("!!! auth.master_key is not set: AUTHENTICATION IS DISABLED; anyone who can reach this port "
                    "can use every model. Set SWITCHBOARD_MASTER_KEY / auth.master_key before exposing it. !!!")
    return app


def app_from_env() -> SwitchboardApp:
    """Factory for `uvicorn --factory` and multi-worker mode: reads SWITCHBOARD_CONFIG."""
    app = create_app(load_config(os.environ.get("SWITCHBOARD_CONFIG", "switchboard.yaml")))
    tune_gc_for_serving()  # each worker is a server process of its own
    return app


