"""Routes as data: what each spoke declares and `create_app` mounts.

- `ApiRoute`: an API call, relative to `/v1` (also served under every path prefix and without the
  `/v1`). The app authenticates the caller from the headers before the handler runs (so no body
  is read for a caller without a valid key), keeps a `RequestRecord` for the observers, and renders
  errors with the route's `error_renderer` (its wire format) or as OpenAI errors.
- `PlainRoute`: anything else (health, metrics, admin); the handler authenticates itself if it must.

Paths may hold `{name}` segments; their values are in `request.state["path_params"]`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .asgi import Request, Response, StreamResponse
from .errors import GatewayError
from .gateway import Gateway
from .request_record import RequestRecord

__all__ = ["ApiHandler", "ApiRoute", "ErrorRenderer", "PlainHandler", "PlainRoute", "Route"]

ApiHandler = Callable[[Gateway, Request, RequestRecord], Awaitable[Response | StreamResponse]]
PlainHandler = Callable[[Request], Awaitable[Response | StreamResponse]]
# (error, request id) -> (JSON body, extra headers): a route answering errors in its own wire format
# (the Anthropic headend); status and retry headers stay the gateway's.
ErrorRenderer = Callable[[GatewayError, str], tuple[dict[str, Any], dict[str, str]]]


@dataclass(frozen=True, slots=True)
class ApiRoute:
    method: str
    path: str
    handler: ApiHandler
    error_renderer: ErrorRenderer | None = None


@dataclass(frozen=True, slots=True)
class PlainRoute:
    method: str
    path: str
    handler: PlainHandler


Route = ApiRoute | PlainRoute
