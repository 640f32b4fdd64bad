"""`POST /v1/completions`: the legacy text completions headend.

Prompts may be a string, a list of strings, a token list or a list of token lists; the upstream
returns one choice per prompt x n, which is relayed unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable

from ..asgi import Request, Response, StreamResponse
from ..errors import GatewayError
from ..gateway import Gateway, RequestRecord
from ..hub import UpstreamResult, UpstreamStream
from ..providers.base import CompletionsProvider
from ..routing.router import Deployment
from .relay import relay_complete, relay_stream
from .validation import validate_completion

__all__ = ["completions"]


def _capable(d: Deployment) -> CompletionsProvider:
    if not isinstance(d.provider, CompletionsProvider):
        raise GatewayError(400, f"Provider `{d.provider.name}` does not support the completions endpoint; "
                           "use /v1/chat/completions.", "invalid_request_error", param="model",
                           code="unsupported_endpoint", retryable=False)
    return d.provider


async def completions(gw: Gateway, request: Request, record: RequestRecord) -> Response | StreamResponse:
    body = await request.json_object()
    model = validate_completion(body)
    stream = bool(body.get("stream"))
    record.stream = stream
    await gw.authorize(request, model, record)
    if stream:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def open_stream(d: Deployment) -> Awaitable[UpstreamStream]:
            return _capable(d).open_completions_stream(body, d.model, d.key_value)

        return await relay_stream(gw, record, model, include_usage, open_stream)

    def call(d: Deployment) -> Awaitable[UpstreamResult]:
        return _capable(d).completions(body, d.model, d.key_value)

    return await relay_complete(gw, record, model, call)
