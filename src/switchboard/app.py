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

from .access.admin import AdminApi
from .access.auth import bearer_token
from .asgi import JSONResponse, Receive, Request, Response, Scope, Send, StreamResponse, send_response, send_stream
from .body_memory import BodyMemory
from .config import Config, load_config
from .dashboard import Dashboard
from .errors import GatewayError, internal_error
from .facades import Facade, Facades
from .gateway import Gateway
from .gc_tuning import tune_gc_for_serving
from .headends import anthropic, embeddings, openai_chat, openai_completions
from .headends.models import ModelCatalog
from .headends.responses import ResponsesApi
from .observability.access_log import AccessLog
from .observability.metrics import Metrics
from .request_record import RequestRecord
from .routes import ApiRoute, ErrorRenderer, PlainHandler, PlainRoute, Route
from .routing.limits import Lease

__all__ = ["SwitchboardApp", "app_from_env", "create_app"]

log = logging.getLogger("switchboard")


def _valid_request_id(value: str | None) -> bool:
    return value is not None and 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def _pattern(path: str) -> re.Pattern[str]:
    """`{name}` matches one path segment, `{name:path}` the rest of the path (slashes included)."""
    escaped = re.escape(path)
    escaped = re.sub(r"\\\{(\w+):path\\\}", r"(?P<\1>.+)", escaped)
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", escaped) + "$")


class SwitchboardApp:
    """The ASGI callable, serving the routes the spokes declared."""

    def __init__(self, gateway: Gateway, routes: list[Route]) -> None:
        self.gateway = gateway
        # API routes, relative to /v1 (also served under every configured prefix, and without /v1).
        self.api_routes: dict[tuple[str, str], ApiRoute] = {}
        self.api_param_routes: list[tuple[re.Pattern[str], ApiRoute]] = []
        self.plain_routes: dict[tuple[str, str], PlainHandler] = {
            ("GET", "/health"): self._health,
            ("GET", "/ready"): self._ready,
        }
        # Plain routes with `{name}` segments; the values are put in request.state["path_params"].
        self.param_routes: list[tuple[str, re.Pattern[str], PlainHandler]] = []
        for route in routes:
            if isinstance(route, ApiRoute):
                if "{" in route.path:
                    self.api_param_routes.append((_pattern(route.path), route))
                else:
                    self.api_routes[(route.method, route.path)] = route
            elif "{" in route.path:
                self.param_routes.append((route.method, _pattern(route.path), route.handler))
            else:
                self.plain_routes[(route.method, route.path)] = route.handler
        self.prefixes = sorted(gateway.config.server.path_prefixes, key=len, reverse=True)
        self.max_body = gateway.config.server.max_body_bytes
        self.body_memory = BodyMemory(gateway.config.server.max_body_memory_bytes,
                                      gateway.config.server.max_body_memory_per_key_bytes)
        self.facades = Facades(gateway.config)
        self.log_bodies = gateway.config.observability.log_bodies
        self.tracer = gateway.tracer
        self.shutting_down = False
        # Request ids: a random prefix per process and a counter, unique across workers and restarts
        # without reading the OS's random source on every request.
        self._id_prefix = secrets.token_hex(6)
        self._id_counter = itertools.count()

    def _api_route(self, method: str, api_path: str, request: Request) -> ApiRoute | None:
        route = self.api_routes.get((method, api_path))
        if route is not None or not self.api_param_routes:
            return route
        for pattern, candidate in self.api_param_routes:
            if candidate.method == method and (match := pattern.match(api_path)) is not None:
                request.state["path_params"] = match.groupdict()
                return candidate
        return None

    def _param_route(self, method: str, path: str, request: Request) -> PlainHandler | None:
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
        path = scope["path"]
        facade: Facade | None = None
        if self.facades.all:
            server = scope.get("server")
            facade, path = self.facades.for_request(server[1] if server else None, path)
        path = self._strip_prefix(path)
        if len(path) > 1 and path[-1] == "/":  # `/api/chat/completions/`, as some clients post
            path = path.rstrip("/") or "/"
        method = scope["method"]
        request = Request(scope, receive, path, "", self.max_body, self.body_memory)
        request.facade = facade
        if self.log_bodies:
            request.keep_json = True
        incoming = request.headers.get("x-request-id")
        if incoming is not None and _valid_request_id(incoming):
            request_id = incoming
        else:
            request_id = f"req_{self._id_prefix}{next(self._id_counter):012x}"
        request.request_id = request_id
        api_path = path[3:] if path.startswith("/v1/") else path
        route = self._api_route(method, api_path, request)
        renderer = route.error_renderer if route is not None else None
        record: RequestRecord | None = None
        lease: Lease | None = None
        try:
            if route is not None:
                endpoint = route.path if "{" not in route.path else route.path.partition("/{")[0]
                record = RequestRecord(request_id=request_id, endpoint=endpoint)
                if self.tracer is not None:
                    record.trace = self.tracer.begin(request.headers, method, "/v1" + endpoint)
                # Who is calling, from the headers alone: no body is read for a caller without a valid key.
                if facade is not None:
                    record.facade = facade.name
                    request.endpoint = endpoint
                    await self._facade_caller(facade, request, record)
                    if facade.limiter is not None:
                        lease = facade.limiter.try_acquire() or await facade.limiter.acquire()
                else:
                    await self.gateway.authenticate(request, record)
                response = await route.handler(self.gateway, request, record)
            elif ((facade is None or path in _FACADE_PLAIN)
                  and (plain := self.plain_routes.get((method, path))) is not None):
                response = await plain(request)
            elif facade is None and (plain := self._param_route(method, path, request)) is not None:
                response = await plain(request)
            else:
                response = self._not_found(method, path, api_path)
                # Seen in the access log: an operator sees a client calling a route this gateway lacks.
                record = RequestRecord(request_id=request_id, endpoint="(unknown)", path=scope["path"][:256],
                                       error_type="unknown_url" if response.status == 404 else "method_not_allowed")
        except GatewayError as err:
            response = _error_response(err, request_id, renderer)
            if record is not None:
                record.error_type = err.type
        except asyncio.CancelledError:
            request.release_body()
            if lease is not None:
                lease.release()
            if record is not None:
                record.status, record.error_type = 499, "client_disconnected"
                self.gateway.finish(record)
            raise
        except Exception:
            log.exception("unhandled error on %s %s (request %s)", method, scope["path"], request_id)
            response = _error_response(internal_error(), request_id, renderer)
            if record is not None:
                record.error_type = "api_error"
        request.release_body()
        if self.log_bodies and record is not None:
            record.body = request.state.get("json")
            if isinstance(response, Response):
                record.response_body = response.body[:MAX_LOGGED_BODY]
        if record is not None and record.headers:
            response.headers = {**record.headers, **response.headers}
        if lease is not None:
            _release_when_done(lease, response)
        if isinstance(response, StreamResponse):
            await send_stream(send, receive, response, request_id)
            return
        if record is not None:
            record.status = response.status
            self.gateway.finish(record)
        await send_response(send, response, request_id)

    async def _facade_caller(self, facade: Facade, request: Request, record: RequestRecord) -> None:
        principal = self.facades.principal(facade, bearer_token(request.headers))
        if principal is None:  # the gateway's own keys
            await self.gateway.authenticate(request, record)
            return
        record.key_id = principal.key_id
        request.principal = principal

    def _not_found(self, method: str, path: str, api_path: str) -> Response:
        allowed = [m for (m, p) in self.api_routes if p == api_path] + [m for (m, p) in self.plain_routes if p == path]
        allowed += [r.method for pattern, r in self.api_param_routes if pattern.match(api_path)]
        allowed += [m for (m, pattern, _) in self.param_routes if pattern.match(path)]
        if allowed:
            err = GatewayError(405, f"Method {method} not allowed on {path}; use {', '.join(sorted(allowed))}.",
                               "invalid_request_error", code="method_not_allowed", retryable=False)
            response = _error_response(err)
            response.headers["allow"] = ", ".join(sorted(allowed))
            return response
        return _error_response(GatewayError(404, f"Unknown request URL: {method} {path}.", "invalid_request_error",
                                            code="unknown_url", retryable=False))


MAX_LOGGED_BODY = 64 * 1024  # of a non-stream answer, kept with observability.log_bodies

_FACADE_PLAIN = frozenset({"/health", "/ready"})  # the plain routes a facade serves too


def _release_when_done(lease: Lease, response: Response | StreamResponse) -> None:
    """A facade's slot is held until the response is over: a stream's end, or now."""
    if not isinstance(response, StreamResponse):
        lease.release()
        return
    closing = response.on_close

    def closed(exc: BaseException | None) -> None:
        lease.release()
        if closing is not None:
            closing(exc)

    response.on_close = closed


def _error_response(err: GatewayError, request_id: str = "", renderer: ErrorRenderer | None = None) -> Response:
    body, extra = renderer(err, request_id) if renderer is not None else (err.to_dict(), {})
    headers = {**err.headers, **extra}
    if err.status == 429 and "retry-after" not in headers and "retry-after-ms" in headers:
        headers["retry-after"] = str(max(1, round(int(float(headers["retry-after-ms"])) / 1000)))
    if err.status < 500 and err.status not in (408, 409, 429):
        headers.setdefault("x-should-retry", "false")
    return Response(JSONResponse(body).body, err.status, headers)


def create_app(config: Config, gateway: Gateway | None = None) -> SwitchboardApp:
    """The app for `config`; `gateway` is one already built from the same config (tests inject providers)."""
    gateway = gateway or Gateway(config)
    metrics = Metrics(gateway)
    metrics.install()
    metrics.registry.register(gateway.access)
    AccessLog().install(gateway)
    routes: list[Route] = [
        *openai_chat.ROUTES, *openai_completions.ROUTES, *embeddings.ROUTES, *anthropic.ROUTES,
        *ResponsesApi(gateway).routes(), *ModelCatalog(gateway).routes(),
        *AdminApi(gateway.access, gateway.auth).routes(),
        *Dashboard(gateway).routes(),
        PlainRoute("GET", "/metrics", metrics.handle),
    ]
    app = SwitchboardApp(gateway, routes)
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


