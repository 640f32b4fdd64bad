"""`POST /v1/chat/completions`: the OpenAI chat headend."""

from __future__ import annotations

from typing import Any

from ..asgi import Request, Response, StreamResponse
from ..gateway import Gateway, RequestRecord
from ..hub import ChatRequest
from .relay import relay_complete, relay_stream
from .validation import validate_chat

__all__ = ["chat_completions"]


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    model = validate_chat(body)
    stream = bool(body.get("stream"))
    options = body.get("stream_options")
    include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
    return ChatRequest(body=body, model=model, stream=stream, include_usage=include_usage)


async def chat_completions(gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
    hub = parse_chat(await request.json_object())
    record.stream = hub.stream
    await gw.authorize(request, hub.model, record)
    if gw.agents is not None and (agent := gw.agents.get(hub.model)) is not None:
        return await gw.agents.chat(request, record, hub, agent)
    if hub.stream:
        return await relay_stream(gw, record, hub.model, hub.include_usage,
                                  lambda d: d.provider.open_chat_stream(hub, d.model, d.key_value))
    return await relay_complete(gw, record, hub.model, lambda d: d.provider.chat(hub, d.model, d.key_value))
