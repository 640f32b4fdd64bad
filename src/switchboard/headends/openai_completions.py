"""`POST /v1/completions`: the legacy text completions headend.

Prompts may be a string, a list of strings, a token list or a list of token lists; the upstream
returns one choice per prompt x n, which is relayed unchanged. An agent answers one text prompt.
"""

from __future__ import annotations

from ..asgi import Request, Response, StreamResponse
from ..gateway import Gateway
from ..request_record import RequestRecord
from ..routes import ApiRoute
from .openai_chat import json_result
from .relay import OpenAIStreamEncoder, relay
from .validation import validate_completion

__all__ = ["ROUTES", "completions"]


async def completions(gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
    body = await request.json_object()
    model = validate_completion(body)
    stream = bool(body.get("stream"))
    record.stream = stream
    await gw.admit(request, model, record)
    if stream:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        hub_stream = await gw.router.open_completions_stream(body, model, record, request.headers)
        return relay(hub_stream, record, OpenAIStreamEncoder(include_usage), gw.finish)
    return json_result(await gw.router.completions(body, model, record, request.headers))


ROUTES = [ApiRoute("POST", "/completions", completions)]
