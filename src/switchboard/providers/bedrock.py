"""Adapter for AWS Bedrock's Converse API (`type: bedrock`): every headend reaches Bedrock models.

It owns the I/O: `POST {base_url}/model/{modelId}/converse` and `/converse-stream` (the model id
percent-encoded, so inference-profile ids like `us.amazon.nova-lite-v1:0` and ARNs work), `/invoke`
for embeddings (fanned out with bounded concurrency, answers kept in input order), the credentials,
and the stream's binary event-stream framing (decoded with botocore's parser: the `bedrock` extra).
The format translation lives in `bedrock_convert` (Converse), `bedrock_embeddings` (the embedding
models' InvokeModel bodies) and `completion_bridge` (legacy completions as a Converse chat).

Credentials, the first that applies:
1. `keys:` — Bedrock API keys, sent as bearer tokens (one per attempt, weighted, with cooldowns,
   like any provider's keys);
2. `aws_access_key_id` / `aws_secret_access_key` (/ `aws_session_token`) in the config: SigV4;
3. `AWS_BEARER_TOKEN_BEDROCK` in the environment: a bearer token;
4. the standard AWS credential sources, through botocore's chain (`AWS_ACCESS_KEY_ID` /
   `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, the shared credentials and config files with
   `AWS_PROFILE`, web identity, ECS and EC2 roles): SigV4. Resolved once at startup (off the event
   loop); temporary credentials are refreshed off the loop too when botocore says they must be.
SigV4 signing is our own `sigv4.py` (botocore's signer costs ~8x more CPU per request; see there).
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError
from botocore.session import Session

from ..config import ConfigError, ProviderConfig
from ..errors import GatewayError
from ..hub import ChatRequest, UpstreamResult, UpstreamStream
from .base import BatchedChunkStream, HttpUpstream, connection_error, read_error_body
from .bedrock_convert import (
    ConverseStreamConverter,
    bedrock_error,
    from_converse_response,
    model_path,
    to_converse_request,
    uses_json_tool,
)
from .bedrock_embeddings import TOKEN_COUNT_HEADER, embedding_plan, embeddings_response, vectors_of
from .completion_bridge import CompletionChunkStream, chat_from_completion_body, completion_result
from .concurrency import map_bounded
from .http1 import Response
from .sigv4 import Credentials, SigV4Signer

__all__ = ["BedrockProvider", "EventStreamChunkStream"]

_EVENT_STREAM = "application/vnd.amazon.eventstream"
_CREDENTIALS_CHECK_S = 5.0  # how often temporary credentials are asked whether they need a refresh
_MAX_CACHED_PATHS = 1024
_EMBED_CONCURRENCY = 8  # InvokeModel calls one embeddings request may have in flight (Titan: one text per call)


class BedrockProvider:
    """Chat (non-stream and stream), legacy completions (through Converse) and embeddings (InvokeModel)
    against the Bedrock runtime of one region."""

    def __init__(self, config: ProviderConfig) -> None:
        if config.keys and config.aws_access_key_id:
            raise ConfigError(f"provider `{config.name}`: give either `keys` (Bedrock API keys) or "
                              "`aws_access_key_id`/`aws_secret_access_key`, not both")
        assert config.region is not None  # config/providers.py requires it for bedrock
        self.config = config
        self.name = config.name
        self.http = HttpUpstream(config)
        parts = urlsplit(config.base_url)
        default_port = 443 if parts.scheme == "https" else 80
        host = parts.hostname or ""
        self._host = host if (parts.port or default_port) == default_port else f"{host}:{parts.port}"
        self._base = config.base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/")
        self._signer = SigV4Signer(config.region, "bedrock")
        self._static: Credentials | None = None
        if config.aws_access_key_id and config.aws_secret_access_key:
            self._static = Credentials(config.aws_access_key_id, config.aws_secret_access_key,
                                       config.aws_session_token)
        env_bearer = os.environ.get("AWS_BEARER_TOKEN_BEDROCK", "")
        self._env_bearer = env_bearer if env_bearer and not config.keys and self._static is None else None
        self._chain: Any = None  # botocore credentials (from the standard sources), resolved in start()
        self._frozen: Credentials | None = None
        self._frozen_until = 0.0
        self._paths: dict[tuple[str, str], str] = {}
        self._secrets = tuple(s for s in (*(k.value for k in config.keys), config.aws_secret_access_key,
                                          config.aws_session_token, self._env_bearer) if s)
        self._base_headers = {"Content-Type": "application/json", **config.headers}
        self._invoke_headers = {**self._base_headers, "Accept": "application/json"}

    def _uses_chain(self) -> bool:
        return not self.config.keys and self._static is None and self._env_bearer is None

    async def start(self) -> None:
        await self.http.start()
        if self._uses_chain() and self._chain is None:
            # botocore's chain may read files or ask an instance metadata endpoint: off the event loop.
            try:
                self._chain = await asyncio.to_thread(lambda: Session().get_credentials())
            except Exception as exc:  # botocore's own errors (a missing profile, a broken config file...)
                raise RuntimeError(f"provider `{self.name}` (bedrock) could not load AWS credentials: {exc}") from exc
            if self._chain is None:
                raise RuntimeError(
                    f"provider `{self.name}` (bedrock) found no AWS credentials: set `keys` (Bedrock API keys), "
                    "AWS_BEARER_TOKEN_BEDROCK, `aws_access_key_id`/`aws_secret_access_key`, or the standard AWS "
                    "credential sources (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an IAM role)")

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _chain_credentials(self) -> Credentials:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._frozen is None or now >= self._frozen_until:
            chain = self._chain
            refresh_needed = getattr(chain, "refresh_needed", None)
            if refresh_needed is not None and refresh_needed():
                frozen = await asyncio.to_thread(chain.get_frozen_credentials)  # refreshing does I/O
            else:
                frozen = chain.get_frozen_credentials()
            self._frozen = Credentials(frozen.access_key, frozen.secret_key, frozen.token)
            self._frozen_until = now + _CREDENTIALS_CHECK_S
        return self._frozen

    def _path(self, model: str, action: str) -> str:
        """The request path of `action` (converse, converse-stream, invoke) on `model`."""
        path = self._paths.get((model, action))
        if path is None:
            path = f"{self._prefix}/model/{model_path(model)}/{action}"
            if len(self._paths) < _MAX_CACHED_PATHS:  # clients pick `provider/<anything>`: stay bounded
                self._paths[(model, action)] = path
        return path

    async def _send(self, model: str, payload: dict[str, Any], key: str | None, stream: bool,
                    action: str | None = None) -> Response:
        path = self._path(model, action or ("converse-stream" if stream else "converse"))
        body = orjson.dumps(payload)
        bearer = key or self._env_bearer
        base_headers = self._invoke_headers if action == "invoke" else self._base_headers
        if bearer:
            headers = {**base_headers, "Authorization": f"Bearer {bearer}"}
        else:
            credentials = self._static if self._static is not None else await self._chain_credentials()
            headers = self._signer.sign(credentials, self._host, path, base_headers, body)
        timeout = self.config.timeout_s
        try:
            resp = await self.http.client.request("POST", self._base + path[len(self._prefix):], headers, body,
                                                  read_timeout=timeout, total_timeout=None if stream else timeout)
        except OSError as exc:  # TimeoutError and UpstreamConnectionError are OSErrors
            raise connection_error(self.name, exc) from exc
        if resp.status >= 400:
            raise await self._error(resp)
        return resp

    async def _error(self, resp: Response) -> GatewayError:
        return bedrock_error(resp.status, resp.headers, await read_error_body(resp), self.name, self._secrets)

    async def chat(self, request: ChatRequest, model: str, key: str | None) -> UpstreamResult:
        payload = to_converse_request(request.body, model, self.config)
        resp = await self._send(model, payload, key, False)
        request_id = resp.header(b"x-amzn-requestid")
        data = await self.http.read_json(resp)
        return UpstreamResult(from_converse_response(data, model, request_id, uses_json_tool(request.body)),
                              request_id)

    async def open_chat_stream(self, request: ChatRequest, model: str, key: str | None) -> UpstreamStream:
        payload = to_converse_request(request.body, model, self.config)
        resp = await self._send(model, payload, key, True)
        request_id = resp.header(b"x-amzn-requestid")
        if not (resp.header(b"content-type") or "").startswith(_EVENT_STREAM):
            data = await self.http.read_json(resp)
            raise GatewayError(502, f"Upstream provider `{self.name}` did not answer with an event stream"
                                    f"{': ' + str(data.get('message'))[:500] if data.get('message') else ''}.",
                               "api_error", code="upstream_invalid_response")
        converter = ConverseStreamConverter(self.name, model, request_id, uses_json_tool(request.body))
        return EventStreamChunkStream(resp, self.name, converter, self.config.max_event_bytes, request_id)

    # -- legacy completions, bridged onto Converse (completion_bridge)
    async def completions(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        return completion_result(await self.chat(chat_from_completion_body(body, model, self.config, False),
                                                 model, key))

    async def open_completions_stream(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamStream:
        chat = chat_from_completion_body(body, model, self.config, True)
        return CompletionChunkStream(await self.open_chat_stream(chat, model, key))

    # -- embeddings, on InvokeModel (bedrock_embeddings)
    async def embeddings(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult:
        """Every InvokeModel call of the request's plan (at most `_EMBED_CONCURRENCY` at once), in order."""
        plan = embedding_plan(body, model, self.config)
        request_ids: list[str | None] = []

        async def invoke(payload: dict[str, Any]) -> tuple[list[list[float]], int]:
            resp = await self._send(model, payload, key, False, "invoke")
            request_ids.append(resp.header(b"x-amzn-requestid"))
            tokens = resp.header(TOKEN_COUNT_HEADER.encode())
            answer = await self.http.read_json(resp)
            return vectors_of(plan.family, answer, len(payload.get("texts") or ()) or 1, tokens, self.name)

        answers = await map_bounded(invoke, plan.bodies, _EMBED_CONCURRENCY)
        vectors = [vector for found, _ in answers for vector in found]
        request_id = request_ids[0] if request_ids else None
        return UpstreamResult(embeddings_response(vectors, sum(tokens for _, tokens in answers), model), request_id)


class EventStreamChunkStream(BatchedChunkStream):
    """A ConverseStream response (AWS binary event-stream frames) turned into hub chunks.

    Like `SSEChunkStream`: iterate it chunk by chunk, or with `batches()` (the chunks of all the
    events that arrived in one network read, so a relay writes them to its client at once). The
    stream is complete at the `metadata` event, or when the body ends right after `messageStop`;
    an exception event fails it with the mapped error, and ending earlier is an error too. An event
    larger than `max_event_bytes` fails it (502 `upstream_event_too_large`).
    """

    def __init__(self, resp: Response, provider: str, converter: ConverseStreamConverter, max_event_bytes: int,
                 request_id: str | None) -> None:
        self._resp = resp
        self._provider = provider
        self._converter = converter
        self._max_event_bytes = max_event_bytes
        self.request_id = request_id
        self._finished = False
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._source = self._read_batches()


    def _chunks(self, message: EventStreamMessage) -> list[dict[str, Any]]:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "event":
            return self._converter.convert(headers.get(":event-type"), orjson.loads(message.payload or b"{}"))
        if kind == "exception":
            try:
                payload: Any = orjson.loads(message.payload or b"{}")
            except orjson.JSONDecodeError:
                payload = {"message": message.payload.decode("utf-8", "replace")[:2000]}
            raise self._converter.exception(headers.get(":exception-type"), payload)
        if kind == "error":
            raise GatewayError(502, f"Upstream provider `{self._provider}` failed mid-stream: "
                                    f"{headers.get(':error-code')}: {headers.get(':error-message')}", "api_error",
                               code="upstream_stream_error")
        return []

    async def _read_batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        buffer = EventStreamBuffer()
        held = 0  # bytes received and not yet parsed into a message
        converter = self._converter
        try:
            async for piece in self._resp.iter_chunks():
                buffer.add_data(piece)
                held += len(piece)
                batch: list[dict[str, Any]] = []
                failure: GatewayError | None = None
                for message in buffer:
                    held -= message.prelude.total_length
                    try:
                        batch.extend(self._chunks(message))
                    except GatewayError as event_error:
                        failure = event_error
                        break
                    if converter.done:
                        break
                if converter.done:
                    self._finished = True  # before the last batch goes: a relay sees the stream is complete
                if batch:
                    yield batch  # what arrived before a failure event still reaches the client
                if failure is not None:
                    raise failure
                if self._finished:
                    return
                if held > self._max_event_bytes:
                    raise GatewayError(502, f"Upstream provider `{self._provider}` sent a stream event larger than "
                                            f"{self._max_event_bytes} bytes.", "api_error",
                                       code="upstream_event_too_large", retryable=False)
            if converter.stopped and held == 0:
                self._finished = True  # the body ended right after messageStop: complete, without usage
                return
        except OSError as exc:  # TimeoutError and UpstreamConnectionError included
            err = connection_error(self._provider, exc)
            err.message = f"Upstream stream from `{self._provider}` broke mid-way ({exc or type(exc).__name__})."
            raise err from exc
        except (ParserError, orjson.JSONDecodeError) as exc:
            raise GatewayError(502, f"Upstream provider `{self._provider}` sent an invalid stream event "
                                    f"({type(exc).__name__}).", "api_error", code="upstream_invalid_response") from exc
        finally:
            await self.aclose()
        raise GatewayError(502, f"Upstream stream from `{self._provider}` ended before it was complete.", "api_error",
                           code="upstream_stream_truncated")

    async def aclose(self) -> None:
        if self._finished:
            self._resp.release()
        else:
            self._resp.close()  # do not reuse a connection with unread data
