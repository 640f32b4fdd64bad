"""Adapter for any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, Groq...).

The hub is the OpenAI format, so conversion is a copy: the upstream model name is set, parameters
the provider does not want are dropped, and streams ask for usage so the gateway can count tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import orjson

from ..config import ProviderConfig
from ..errors import GatewayError, upstream_error
from ..hub import ChatRequest, UpstreamResult, UpstreamStream
from ..openai_fields import CHAT_FIELDS, COMPLETION_FIELDS, EMBEDDING_FIELDS
from .base import HttpUpstream, SSEChunkStream
from .http1 import Response
from .quirks import Quirks

__all__ = ["OpenAIProvider", "not_an_event_stream", "to_openai_body"]

_SPEC_FIELDS = {
    "chat": frozenset(CHAT_FIELDS),
    "completions": frozenset(COMPLETION_FIELDS),
    "embeddings": frozenset(EMBEDDING_FIELDS),
}


def to_openai_body(config: ProviderConfig, body: dict[str, Any], model: str, endpoint: str,
                   stream: bool = False, quirks: Quirks | None = None) -> dict[str, Any]:
    """The body to send upstream: the client's, minus what this provider must not receive (and with
    the upstream's `quirks` applied, see quirks.py)."""
    out = dict(body)
    out["model"] = model
    for name in config.drop_params:
        out.pop(name, None)
    if not config.forward_unknown_params:
        spec = _SPEC_FIELDS[endpoint]
        for name in [k for k in out if k not in spec]:
            del out[name]
        # Clients send spec-violating shapes here (Open WebUI's object `user`, Vapi's object metadata);
        # a strict upstream would reject the whole request for them.
        meta = out.get("metadata")
        if isinstance(meta, dict) and not all(isinstance(v, str) for v in meta.values()):
            del out["metadata"]
    if "user" in out and not isinstance(out["user"], str):
        del out["user"]
    if stream:
        out["stream"] = True
        options = out.get("stream_options")
        base = options if isinstance(options, dict) else {}
        out["stream_options"] = {**base, "include_usage": True}
    if quirks is not None:
        quirks.apply(out, endpoint, stream)
    return out


_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _responses_event(event: str | None, data: str) -> dict[str, Any] | None:
    """One event of a native Responses stream, passed on as it came; the terminal one ends the stream."""
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        return None
    kind = obj.get("type")
    if kind in _RESPONSES_TERMINAL:
        raise StopAsyncIteration(obj)
    if kind == "error":
        raise upstream_error(502, {"error": obj}, "upstream")
    return obj


def _openai_event(event: str | None, data: str) -> dict[str, Any] | None:
    if data == "[DONE]":
        raise StopAsyncIteration
    obj = orjson.loads(data)
    if not isinstance(obj, dict):
        return None
    if "error" in obj and (not obj.get("choices") or any(
            isinstance(c, dict) and c.get("finish_reason") == "error" for c in obj["choices"])):
        # OpenAI-compatible servers report a failure inside the stream this way (OpenRouter with a
        # choice whose finish_reason is "error").
        raise upstream_error(502, obj, "upstream")
    return obj


async def not_an_event_stream(http: HttpUpstream, resp: Response, secrets: tuple[str, ...]) -> GatewayError:
    """The error for a stream request answered without an event stream: the upstream's own when the
    body is an OpenAI error (some servers answer errors with 200 + JSON even for streams), else a 502."""
    data = await http.read_json(resp)
    if "error" in data:
        return upstream_error(502, data, http.name, secrets)
    return GatewayError(502, f"Upstream provider `{http.name}` did not answer with an event stream.", "api_error",
                        code="upstream_invalid_response")


class OpenAIProvider:
    """Chat, completions, embeddings and model listing against an OpenAI-compatible base URL."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.http = HttpUpstream(config)
        self._base = config.base_url
        self._secrets = tuple(k.value for k in config.keys)
        self._quirks = Quirks.of(config)
        self._key_header = None if config.key_header == "authorization" else config.key_header

    async def start(self) -> None:
        await self.http.start()

    async def aclose(self) -> None:
        await self.http.aclose()

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.config.headers}
        if key:
            if self._key_header is None:
                headers["Authorization"] = f"Bearer {key}"
            else:
                headers[self._key_header] = key
        return headers

    async def _complete(self, path: str, body: dict[str, Any], key: str | None) -> UpstreamResult:
        resp = await self.http.post(self._base + path, body, self._headers(key), False, self._secrets)
        request_id = resp.header(b"x-request-id")
        body, raw = await self.http.read_json_raw(resp)
        return UpstreamResult(body, request_id, raw)

    async def _stream(self, path: str, body: dict[str, Any], key: str | None,
                      parse: Any = _openai_event) -> UpstreamStream:
        resp = await self.http.post(self._base + path, body, self._headers(key), True, self._secrets)
        if not (resp.header(b"content-type") or "").startswith("text/event-stream"):
            raise await not_an_event_stream(self.http, resp, self._secrets)

        def convert(event: str | None, data: str) -> dict[str, Any] | None:
            try:
                result: dict[str, Any] | None = parse(event, data)
                return result
            except GatewayError as err:
                err.message = f"Upstream provider `{self.name}` failed mid-stream: {err.message}"
                raise

        # Chat and completions chunks reach an OpenAI-format client as they came (hub.WireBatch).
        return SSEChunkStream(resp, self.name, convert, self.config.max_event_bytes, wire=parse is _openai_event)

    def chat(self, request: ChatRequest, model: str, key: str | None) -> Awaitable[UpstreamResult]:
        # A plain function handing back the call's coroutine: one coroutine level less to resume on
        # every wait for the upstream (the router awaits what this returns).
        body = to_openai_body(self.config, request.body, model, "chat", quirks=self._quirks)
        body.pop("stream", None)
        body.pop("stream_options", None)
        return self._complete("/chat/completions", body, key)

    async def open_chat_stream(self, request: ChatRequest, model: str, key: str | None) -> UpstreamStream:
        body = to_openai_body(self.config, request.body, model, "chat", True, self._quirks)
        return await self._stream("/chat/completions", body, key)

    async def completions(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        out = to_openai_body(self.config, body, model, "completions", quirks=self._quirks)
        out.pop("stream", None)
        out.pop("stream_options", None)
        return await self._complete("/completions", out, key)

    async def open_completions_stream(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamStream:
        return await self._stream("/completions", to_openai_body(self.config, body, model, "completions", True,
                                                                 self._quirks), key)

    async def embeddings(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        return await self._complete("/embeddings", to_openai_body(self.config, body, model, "embeddings",
                                                                  quirks=self._quirks), key)

    # -- the Responses API, natively (`responses: native`; api.openai.com by default)
    def speaks_responses(self) -> bool:
        return self.config.responses == "native"

    async def responses(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        out = {**body, "model": model}
        out.pop("stream", None)
        return await self._complete("/responses", out, key)

    async def open_responses_stream(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamStream:
        return await self._stream("/responses", {**body, "model": model, "stream": True}, key, _responses_event)

    async def list_models(self, key: str | None) -> list[dict[str, Any]]:
        data = await self.http.get_json(self._base + "/models", self._headers(key), self._secrets)
        models = data.get("data") if isinstance(data, dict) else None
        return [m for m in models or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
