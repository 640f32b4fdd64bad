"""`POST /v1/chat/completions`: the OpenAI chat headend."""

from __future__ import annotations

from typing import Any

from ..asgi import JSONResponse, Request, Response, StreamResponse
from ..gateway import Gateway
from ..hub import ChatRequest, UpstreamResult
from ..request_record import RequestRecord
from ..routes import ApiRoute
from .relay import OpenAIStreamEncoder, relay
from .token_estimate import estimate_input_tokens
from .validation import validate_chat

__all__ = ["ROUTES", "chat_completions", "json_result", "parse_chat"]


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    model = validate_chat(body)
    stream = bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    return ChatRequest(body=body, model=model, stream=stream, include_usage=include_usage)


def json_result(result: UpstreamResult) -> Response:
    """A non-stream answer in OpenAI format: the upstream's own bytes when they need no change."""
    if result.raw is not None:
        return Response(result.raw, headers=result.headers)
    return JSONResponse(result.body, headers=result.headers)


async def chat_completions(gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
    hub = parse_chat(await request.json_object())
    record.stream = hub.stream
    await gw.admit(request, hub.model, record)
    if hub.stream:
        stream = await gw.router.open_chat_stream(hub, record, request.headers)
        return relay(stream, record, OpenAIStreamEncoder(hub.include_usage), gw.finish,
                     prompt=lambda: estimate_input_tokens(hub.body))
    return json_result(await gw.router.chat(hub, record, request.headers))


ROUTES = [ApiRoute("POST", "/chat/completions", chat_completions)]
