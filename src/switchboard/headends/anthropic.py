"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages headend.

Anthropic clients (the official SDKs, Claude-format tools) reach any model: the request becomes a hub
chat request (anthropic_request), goes through the router like any chat call, and the answer or
stream comes back in Anthropic's format (anthropic_response). Errors leave in Anthropic's shape with
its `request-id` header. Token counting is the upstream's for Anthropic providers; for the others
it is an estimate (token_estimate.py), said so by the `x-switchboard-token-count: estimate` header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..asgi import JSONResponse, Request, Response, StreamResponse
from ..errors import GatewayError
from ..gateway import Gateway
from ..hub import Chunk
from ..request_record import RequestRecord
from ..routes import ApiRoute
from ..sse import event_frame
from .anthropic_request import COUNT_TOKENS_DROPPED, parse_messages_request, to_hub_body
from .anthropic_response import StreamEncoder, error_body, to_anthropic_message
from .relay import relay
from .token_estimate import estimate_input_tokens

__all__ = ["ROUTES", "AnthropicFrames", "count_tokens", "messages", "render_error"]


def render_error(err: GatewayError, request_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    return error_body(err), {"request-id": request_id}


class AnthropicFrames:
    """Anthropic's SSE encoding for the relay: every event with its `event:` line."""

    __slots__ = ("_events",)

    def __init__(self, model: str, stops: list[str], estimate: Callable[[], int] | None = None) -> None:
        self._events = StreamEncoder(model, stops, estimate)

    def encode(self, batch: list[Chunk]) -> bytes:
        # One write per upstream read, however many events it makes.
        return b"".join(event_frame(name, data) for chunk in batch for name, data in self._events.feed(chunk))

    async def end(self) -> bytes:
        return b"".join(event_frame(name, data) for name, data in self._events.end())

    def error(self, err: GatewayError) -> bytes:
        return event_frame("error", error_body(err))


def _first_look(raw: dict[str, Any], record: RequestRecord) -> None:
    """What the access log should show even if validation then rejects the body."""
    if isinstance(model := raw.get("model"), str):
        record.model = model
    record.stream = raw.get("stream") is True


async def messages(gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
    raw = await request.json_object()
    _first_look(raw, record)
    hub = parse_messages_request(raw)
    await gw.admit(request, hub.model, record)
    stops: list[str] = hub.body.get("stop") or []
    if hub.stream:
        stream = await gw.router.open_chat_stream(hub, record, request.headers)
        frames = AnthropicFrames(hub.model, stops, lambda: estimate_input_tokens(hub.body))
        return relay(stream, record, frames, gw.finish, headers={"request-id": request.request_id},
                     prompt=lambda: estimate_input_tokens(hub.body))
    result = await gw.router.chat(hub, record, request.headers)
    return JSONResponse(to_anthropic_message(result.body, hub.model, stops),
                        headers={**result.headers, "request-id": request.request_id})


async def count_tokens(gw: Gateway, request: Request, record: RequestRecord) -> Response:
    raw = await request.json_object()
    _first_look(raw, record)
    hub_body = to_hub_body(raw, require_max_tokens=False)  # validates like /v1/messages does
    model = hub_body["model"]
    await gw.admit(request, model, record)
    body = {k: v for k, v in raw.items() if k not in COUNT_TOKENS_DROPPED}
    result = await gw.router.count_tokens(body, model, record, request.headers.get("anthropic-beta"),
                                          estimate=lambda: estimate_input_tokens(hub_body))
    return JSONResponse(result.body, headers={**result.headers, "request-id": request.request_id})


ROUTES = [ApiRoute("POST", "/messages", messages, render_error),
          ApiRoute("POST", "/messages/count_tokens", count_tokens, render_error)]
