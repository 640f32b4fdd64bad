"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages headend.

Anthropic clients (the official SDKs, Claude-format tools) reach any model: the request becomes a hub
chat request (anthropic_request), goes through the router like any chat call, and the answer or
stream comes back in Anthropic's format (anthropic_response). Errors leave in Anthropic's shape with
its `request-id` header. Token counting needs an Anthropic upstream; other providers get a 404.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..asgi import JSONResponse, Request, Response, StreamResponse
from ..errors import GatewayError
from ..gateway import Gateway, RequestRecord
from ..hub import UpstreamResult, usage_from
from ..providers.anthropic_count import TokenCounters
from ..routing.router import Deployment
from ..sse import event_frame
from .anthropic_request import COUNT_TOKENS_DROPPED, parse_messages_request, to_hub_body
from .anthropic_response import StreamEncoder, error_body, to_anthropic_message
from .relay import OpenedStream, StreamBody, open_first_chunk, response_headers, stream_closed

if TYPE_CHECKING:
    from ..app import SwitchboardApp

__all__ = ["count_tokens", "messages", "register_anthropic_routes", "render_error"]


def render_error(err: GatewayError, request_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    return error_body(err), {"request-id": request_id}


def register_anthropic_routes(app: SwitchboardApp) -> None:
    counters = TokenCounters({name: p.config for name, p in app.gateway.providers.items()})
    app.gateway.on_close(counters.aclose)
    app.add_api_route("POST", "/messages", messages, render_error)
    app.add_api_route("POST", "/messages/count_tokens",
                      lambda gw, req, rec: count_tokens(gw, req, rec, counters), render_error)


async def messages(gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
    hub = parse_messages_request(await request.json_object())
    record.stream = hub.stream
    await gw.authorize(request, hub.model, record)
    stops: list[str] = hub.body.get("stop") or []
    if hub.stream:
        # hold=True: the concurrency slots stay taken until the stream ends (released in `_closed`).
        opened, outcome = await gw.router.execute(
            hub.model, lambda d: open_first_chunk(d.provider.open_chat_stream(hub, d.model, d.key_value)),
            hold=True, observe=record.routed)
        record.mark_first_token()
        headers = response_headers(outcome, opened.stream.request_id)
        headers["request-id"] = request.request_id
        return StreamResponse(StreamBody(_events(opened, record, StreamEncoder(hub.model, stops)), opened.stream),
                              headers=headers, on_close=lambda exc: stream_closed(gw, record, outcome, exc))
    result, outcome = await gw.router.execute(hub.model, lambda d: d.provider.chat(hub, d.model, d.key_value),
                                              observe=record.routed)
    record.usage = usage_from(result.body.get("usage"))
    headers = response_headers(outcome, result.request_id)
    headers["request-id"] = request.request_id
    return JSONResponse(to_anthropic_message(result.body, hub.model, stops), headers=headers)


async def _events(opened: OpenedStream, record: RequestRecord, encoder: StreamEncoder) -> AsyncIterator[bytes]:
    chunk = opened.first
    try:
        while True:
            if chunk.get("usage"):
                record.usage = usage_from(chunk["usage"]) or record.usage
            # One write per upstream chunk, however many events it makes.
            frames = b"".join(event_frame(name, data) for name, data in encoder.feed(chunk))
            if frames:
                yield frames
            chunk = await opened.iterator.__anext__()
    except StopAsyncIteration:
        yield b"".join(event_frame(name, data) for name, data in encoder.end())
    except GatewayError as err:
        record.status = err.status
        record.error_type = err.type
        yield event_frame("error", error_body(err))
    finally:
        with contextlib.suppress(Exception):
            await opened.stream.aclose()


async def count_tokens(gw: Gateway, request: Request, record: RequestRecord,
                       counters: TokenCounters) -> Response:
    raw = await request.json_object()
    model = to_hub_body(raw, require_max_tokens=False)["model"]  # validates like /v1/messages does
    await gw.authorize(request, model, record)
    routes = gw.router.routes(model)
    if not any(counters.get(r.provider) is not None for r in routes):
        providers = ", ".join(sorted({r.provider for r in routes}))
        raise GatewayError(404, f"Token counting is not available for model `{model}`: its provider ({providers}) "
                           "cannot count tokens; only Anthropic providers can.", "not_found_error", param="model",
                           code="count_tokens_unsupported", retryable=False)
    body = {k: v for k, v in raw.items() if k not in COUNT_TOKENS_DROPPED}
    beta = request.headers.get("anthropic-beta")

    async def attempt(d: Deployment) -> UpstreamResult:
        counter = counters.get(d.provider.name)
        if counter is None:
            raise GatewayError(404, f"Provider `{d.provider.name}` cannot count tokens.", "not_found_error",
                               code="count_tokens_unsupported", retryable=False)
        return await counter.count_tokens(body, d.model, d.key_value, beta)

    result, outcome = await gw.router.execute(model, attempt, observe=record.routed)
    headers = response_headers(outcome, result.request_id)
    headers["request-id"] = request.request_id
    return JSONResponse(result.body, headers=headers)
