"""Adapter for the Anthropic Messages API (`type: anthropic`): OpenAI clients reach Claude models.

It owns the HTTP side only (`POST {base_url}/v1/messages` with `x-api-key` and `anthropic-version`,
the error translation of HTTP failures); the format translation lives in `anthropic_convert`.
"""

from __future__ import annotations

from ..config import ProviderConfig
from ..errors import GatewayError
from ..hub import ChatRequest, UpstreamResult, UpstreamStream
from .anthropic_convert import (
    AnthropicStreamConverter,
    anthropic_error,
    from_anthropic_response,
    to_anthropic_request,
    uses_json_tool,
)
from .base import TRANSPORT_ERROR_CODES, HttpUpstream, SSEChunkStream
from .http1 import Response

__all__ = ["AnthropicProvider"]


class AnthropicProvider:
    """Chat (non-stream and stream) against an Anthropic-compatible base URL."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.http = HttpUpstream(config)
        base = config.base_url.rstrip("/")
        # base_url is the SDK-style root (https://api.anthropic.com); tolerate one that ends in /v1.
        self._url = base.removesuffix("/v1") + "/v1/messages"
        self._secrets = tuple(k.value for k in config.keys)

    async def start(self) -> None:
        await self.http.start()

    async def aclose(self) -> None:
        await self.http.aclose()

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": self.config.anthropic_version,
                   **self.config.headers}
        if key:
            headers["x-api-key"] = key
        return headers

    async def _post(self, payload: dict[str, object], key: str | None, stream: bool) -> Response:
        try:
            return await self.http.post(self._url, payload, self._headers(key), stream, self._secrets)
        except GatewayError as err:
            if err.code in TRANSPORT_ERROR_CODES:
                raise
            raise self._translate(err) from err

    def _translate(self, err: GatewayError) -> GatewayError:
        """Re-map an HTTP error that `HttpUpstream` read in OpenAI terms to Anthropic's error types."""
        body = {"error": {"type": err.type, "message": err.message}}
        return anthropic_error(body, self.name, err.status, self._secrets, err.headers)

    async def chat(self, request: ChatRequest, model: str, key: str | None) -> UpstreamResult:
        payload = to_anthropic_request(request.body, model, self.config)
        resp = await self._post(payload, key, False)
        request_id = resp.header(b"request-id") or resp.header(b"x-request-id")
        data = await self.http.read_json(resp)
        return UpstreamResult(from_anthropic_response(data, uses_json_tool(request.body)), request_id)

    async def open_chat_stream(self, request: ChatRequest, model: str, key: str | None) -> UpstreamStream:
        payload = to_anthropic_request(request.body, model, self.config, stream=True)
        resp = await self._post(payload, key, True)
        if not (resp.header(b"content-type") or "").startswith("text/event-stream"):
            data = await self.http.read_json(resp)
            if data.get("type") == "error":
                raise anthropic_error(data, self.name, 502, self._secrets)
            raise GatewayError(502, f"Upstream provider `{self.name}` did not answer with an event stream.",
                               "api_error", code="upstream_invalid_response")
        converter = AnthropicStreamConverter(self.name, uses_json_tool(request.body))
        return SSEChunkStream(resp, self.name, converter.convert, self.config.max_event_bytes)
