"""Adapter for Azure OpenAI (`type: azure`): the OpenAI wire format at Azure's URLs, with Azure's auth.

Two URL styles, chosen by `api_version`:
- set: deployment URLs, `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=V`
  (and `/completions`, `/embeddings`);
- unset: the v1 API, `{endpoint}/openai/v1/chat/completions`, the deployment named in the body's `model`.
The deployment of a model is `deployments[model]`, else the model name itself. `base_url` is the
resource endpoint (`https://NAME.openai.azure.com`; a trailing `/openai` or `/openai/v1` is tolerated).

Auth: the provider key in the `api-key` header, or with `key_header: authorization` as a bearer
token (Entra ID tokens obtained outside, e.g. `${AZURE_OPENAI_TOKEN}`).

Bodies are built as for any OpenAI-compatible server (`to_openai_body`); Azure rejects fields it
does not know, so unknown client fields are not forwarded unless `forward_unknown_params: true`.
API versions before 2024-09-01 reject `stream_options`: with them streams are sent without it (and
carry no usage).

Content filtering passes through: `prompt_filter_results` and `content_filter_results` ride along in
answers and chunks. The annotation-only chunk Azure streams first (empty id, no choices) is carried by
the next chunk instead, so the client's stream keeps one id. A 400 `content_filter` error keeps its
code (so `fallback_on: [content_filter]` applies) and Azure's `innererror` with the filter results.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ..config import ProviderConfig
from ..errors import GatewayError, upstream_error
from ..hub import ChatRequest, UpstreamResult, UpstreamStream
from .base import HttpUpstream, SSEChunkStream, read_error_body
from .http1 import Response
from .openai import _openai_event, not_an_event_stream, to_openai_body
from .quirks import Quirks

__all__ = ["AzureContentFilterError", "AzureProvider"]

# The first GA api-version that accepts `stream_options` (2024-09-01-preview and later).
_STREAM_OPTIONS_SINCE = "2024-09-01"
_MAX_CACHED_URLS = 1024


class AzureContentFilterError(GatewayError):
    """Azure's 400 `content_filter`: the OpenAI error, plus Azure's `innererror` (the filter results)."""

    def __init__(self, err: GatewayError, innererror: dict[str, Any]) -> None:
        super().__init__(err.status, err.message, err.type, param=err.param, code=err.code, headers=err.headers,
                         retryable=False)
        self.innererror = innererror

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["error"]["innererror"] = self.innererror
        return body


class _AzureHttp(HttpUpstream):
    """`HttpUpstream` whose errors keep Azure's content-filter details."""

    async def error_from(self, resp: Response, secrets: tuple[str, ...]) -> GatewayError:
        body = await read_error_body(resp)
        err = upstream_error(resp.status, body, self.name, secrets, resp.headers)
        inner = body.get("error", {}).get("innererror") if isinstance(body, dict) and \
            isinstance(body.get("error"), dict) else None
        if err.code == "content_filter" and isinstance(inner, dict):
            return AzureContentFilterError(err, inner)
        return err


class _StreamAnnotations:
    """Moves the annotation-only first chunk's `prompt_filter_results` onto the next real chunk."""

    __slots__ = ("pending", "provider")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.pending: Any = None

    def convert(self, event: str | None, data: str) -> dict[str, Any] | None:
        try:
            chunk = _openai_event(event, data)
        except GatewayError as err:
            err.message = f"Upstream provider `{self.provider}` failed mid-stream: {err.message}"
            raise
        if chunk is None:
            return None
        if not chunk.get("choices") and not chunk.get("id") and chunk.get("usage") is None \
                and "prompt_filter_results" in chunk:
            self.pending = chunk["prompt_filter_results"]
            return None
        if self.pending is not None:
            chunk.setdefault("prompt_filter_results", self.pending)
            self.pending = None
        return chunk


class AzureProvider:
    """Chat, completions and embeddings against an Azure OpenAI resource."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.http = _AzureHttp(config)
        endpoint = config.base_url.rstrip("/")
        for suffix in ("/openai/v1", "/openai"):
            if endpoint.endswith(suffix):
                endpoint = endpoint[: -len(suffix)]
                break
        self._endpoint = endpoint
        version = config.api_version
        self._query = f"?api-version={quote(version, safe='')}" if version else ""
        self._stream_usage = config.stream_usage and (version is None or version >= _STREAM_OPTIONS_SINCE)
        self._secrets = tuple(k.value for k in config.keys)
        self._quirks = Quirks.of(config)
        self._bearer = config.key_header == "authorization"
        self._urls: dict[tuple[str, str], tuple[str, str]] = {}
        self._headers_by_key: dict[str | None, dict[str, str]] = {}

    async def start(self) -> None:
        await self.http.start()

    async def aclose(self) -> None:
        await self.http.aclose()

    def _target(self, model: str, path: str) -> tuple[str, str]:
        """(URL, deployment) for a model and an endpoint path."""
        found = self._urls.get((model, path))
        if found is not None:
            return found
        deployment = self.config.deployments.get(model, model)
        if self._query:
            url = f"{self._endpoint}/openai/deployments/{quote(deployment, safe='')}/{path}{self._query}"
        else:
            url = f"{self._endpoint}/openai/v1/{path}"
        found = (url, deployment)
        if len(self._urls) < _MAX_CACHED_URLS:  # clients pick `provider/<anything>`: never grow without bound
            self._urls[(model, path)] = found
        return found

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = self._headers_by_key.get(key)
        if headers is None:
            headers = {"Content-Type": "application/json", **self.config.headers}
            if key:
                if self._bearer:
                    headers["Authorization"] = f"Bearer {key}"
                else:
                    headers[self.config.key_header] = key
            if len(self._headers_by_key) < 64:
                self._headers_by_key[key] = headers
        return headers

    def _body(self, body: dict[str, Any], model: str, path: str, endpoint: str,
              stream: bool) -> tuple[str, dict[str, Any]]:
        url, deployment = self._target(model, path)
        out = to_openai_body(self.config, body, deployment, endpoint, stream, self._quirks)
        if endpoint == "chat" and "data_sources" in body and "data_sources" not in self.config.drop_params:
            out["data_sources"] = body["data_sources"]  # Azure's own extension ("On Your Data")
        if not stream:
            out.pop("stream", None)
            out.pop("stream_options", None)
        elif not self._stream_usage:
            out.pop("stream_options", None)
        return url, out

    async def _complete(self, url: str, body: dict[str, Any], key: str | None) -> UpstreamResult:
        resp = await self.http.post(url, body, self._headers(key), False, self._secrets)
        request_id = resp.header(b"x-request-id") or resp.header(b"apim-request-id")
        data, raw = await self.http.read_json_raw(resp)
        return UpstreamResult(data, request_id, raw)

    async def _stream(self, url: str, body: dict[str, Any], key: str | None) -> UpstreamStream:
        resp = await self.http.post(url, body, self._headers(key), True, self._secrets)
        if not (resp.header(b"content-type") or "").startswith("text/event-stream"):
            raise await not_an_event_stream(self.http, resp, self._secrets)
        stream = SSEChunkStream(resp, self.name, _StreamAnnotations(self.name).convert, self.config.max_event_bytes)
        if stream.request_id is None:
            stream.request_id = resp.header(b"apim-request-id")
        return stream

    async def chat(self, request: ChatRequest, model: str, key: str | None) -> UpstreamResult:
        url, body = self._body(request.body, model, "chat/completions", "chat", False)
        return await self._complete(url, body, key)

    async def open_chat_stream(self, request: ChatRequest, model: str, key: str | None) -> UpstreamStream:
        url, body = self._body(request.body, model, "chat/completions", "chat", True)
        return await self._stream(url, body, key)

    async def completions(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        url, out = self._body(body, model, "completions", "completions", False)
        return await self._complete(url, out, key)

    async def open_completions_stream(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamStream:
        url, out = self._body(body, model, "completions", "completions", True)
        return await self._stream(url, out, key)

    async def embeddings(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        url, out = self._body(body, model, "embeddings", "embeddings", False)
        return await self._complete(url, out, key)

    async def list_models(self, key: str | None) -> list[dict[str, Any]]:
        """The model names of the `deployments` map (what clients may ask this provider for)."""
        return [{"id": name, "object": "model", "owned_by": "azure", "deployment": deployment}
                for name, deployment in self.config.deployments.items()]
