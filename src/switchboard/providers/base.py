"""The provider adapter protocol, its optional capabilities, and shared upstream HTTP plumbing.

An adapter knows one upstream wire format and nothing about routing or client keys. The core
capability is chat; completions, embeddings and model listing are optional protocols checked with
`isinstance`, so an adapter never carries "unsupported" stubs.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from ..config import ProviderConfig
from ..errors import GatewayError, unencodable_request, upstream_error
from ..hub import ChatRequest, UpstreamResult, UpstreamStream, WireBatch
from ..sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge, SSEDecoder

if TYPE_CHECKING:
    from .._sse_frames import RawFrames
from .http1 import HTTP1Client, Response, UpstreamConnectionClosed, UpstreamResponseTooLarge

__all__ = [
    "TRANSPORT_ERROR_CODES",
    "BatchedChunkStream",
    "ChatProvider",
    "CompletionsProvider",
    "EmbeddingsProvider",
    "HttpUpstream",
    "ModelLister",
    "ResponsesProvider",
    "SSEChunkStream",
    "connection_error",
    "read_error_body",
]

# The codes of errors about the exchange itself, not an answer of the upstream's (`connection_error`).
TRANSPORT_ERROR_CODES = frozenset({"upstream_timeout", "upstream_connection_error", "upstream_connection_closed",
                                   "upstream_headers_too_large", "upstream_response_too_large"})


@runtime_checkable
class ChatProvider(Protocol):
    name: str
    config: ProviderConfig

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def chat(self, request: ChatRequest, model: str, key: str | None) -> Awaitable[UpstreamResult]: ...

    async def open_chat_stream(self, request: ChatRequest, model: str, key: str | None) -> UpstreamStream: ...


@runtime_checkable
class CompletionsProvider(Protocol):
    async def completions(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult: ...

    async def open_completions_stream(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamStream: ...


@runtime_checkable
class EmbeddingsProvider(Protocol):
    async def embeddings(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult: ...


@runtime_checkable
class ResponsesProvider(Protocol):
    """An upstream that speaks the Responses API itself: requests pass through unchanged."""

    def speaks_responses(self) -> bool: ...

    async def responses(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamResult: ...

    async def open_responses_stream(self, body: dict[str, Any], model: str, key: str | None) -> UpstreamStream: ...


@runtime_checkable
class ModelLister(Protocol):
    async def list_models(self, key: str | None) -> list[dict[str, Any]]: ...


def connection_error(provider: str, exc: BaseException) -> GatewayError:
    """Translate a transport failure into the gateway error (once, at the edge)."""
    if isinstance(exc, TimeoutError):
        return GatewayError(504, f"Upstream provider `{provider}` timed out.", "timeout_error", code="upstream_timeout")
    if isinstance(exc, UpstreamConnectionClosed):
        # Retryable, so the router's `retries` policy decides (visibly, in the attempt count): the
        # upstream may have processed the request, and only the operator can say a repeat is harmless.
        return GatewayError(502, f"Upstream provider `{provider}` closed a reused connection before answering; "
                                 "the request may or may not have been processed.", "api_error",
                            code="upstream_connection_closed")
    if isinstance(exc, UpstreamResponseTooLarge):
        # Headers past the limit: a broken upstream, as retryable as a 5xx. A body past it was an answer
        # produced (and billed): the same request would most likely bring the same, so no retry.
        return GatewayError(502, f"Upstream provider `{provider}` sent a response too large: {exc}.", "api_error",
                            code=exc.code, retryable=exc.code == "upstream_headers_too_large")
    detail = str(exc) or type(exc).__name__
    return GatewayError(502, f"Could not reach upstream provider `{provider}` ({detail}).", "api_error",
                        code="upstream_connection_error")


class HttpUpstream:
    """One pooled keep-alive HTTP client per provider, created at startup."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self._client: HTTP1Client | None = None
        self.propagate = False  # tracing configured: send the attempt's `traceparent` (set before start())

    async def start(self) -> None:
        if self._client is None:
            config = self.config
            # Idle connections kept: by default as many as may be busy at once, so a steady load never
            # closes and reopens connections.
            max_idle = config.pool_max_idle if config.pool_max_idle is not None else config.max_in_flight
            self._client = HTTP1Client(connect_timeout=config.connect_timeout_s, keepalive_s=config.pool_idle_s,
                                       max_idle_per_origin=max_idle, max_response_bytes=config.max_response_bytes,
                                       propagate=self.propagate)

    @property
    def client(self) -> HTTP1Client:
        if self._client is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, url: str, payload: dict[str, Any], headers: dict[str, str], stream: bool,
                   secrets: tuple[str, ...]) -> Response:
        """POST and return the 2xx response (the caller reads and releases it); raise otherwise.

        `timeout_s` bounds a whole non-stream exchange; for a stream it bounds every silence.
        """
        timeout = self.config.timeout_s
        try:
            data = orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:  # the client's body nests deeper than the encoder writes
            raise unencodable_request(payload, exc) from exc
        try:
            resp = await self.client.request("POST", url, headers, data, read_timeout=timeout,
                                             total_timeout=None if stream else timeout)
        except OSError as exc:  # TimeoutError and UpstreamConnectionError are OSErrors
            raise connection_error(self.name, exc) from exc
        if resp.status >= 400:
            raise await self.error_from(resp, secrets)
        return resp

    async def get_json(self, url: str, headers: dict[str, str], secrets: tuple[str, ...]) -> Any:
        timeout = self.config.timeout_s
        try:
            resp = await self.client.request("GET", url, headers, read_timeout=timeout, total_timeout=timeout)
            if resp.status >= 400:
                raise await self.error_from(resp, secrets)
            raw = await resp.read()
        except OSError as exc:
            raise connection_error(self.name, exc) from exc
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise GatewayError(502, f"Upstream provider `{self.name}` returned invalid JSON.", "api_error",
                               code="upstream_invalid_response") from exc

    async def read_json(self, resp: Response) -> dict[str, Any]:
        return (await self.read_json_raw(resp))[0]

    async def read_json_raw(self, resp: Response) -> tuple[dict[str, Any], bytes]:
        """The response's JSON object, and the bytes it was parsed from."""
        try:
            raw = await resp.read()
        except OSError as exc:
            resp.close()
            raise connection_error(self.name, exc) from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise GatewayError(502, f"Upstream provider `{self.name}` returned an invalid JSON body.", "api_error",
                               code="upstream_invalid_response")
        return data, raw

    async def error_from(self, resp: Response, secrets: tuple[str, ...]) -> GatewayError:
        return upstream_error(resp.status, await read_error_body(resp), self.name, secrets, resp.headers)


async def read_error_body(resp: Response) -> Any:
    """An error response's body: its JSON, else its text (empty when it cannot be read)."""
    try:
        raw = await resp.read()
    except OSError:
        resp.close()
        raw = b""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


class BatchedChunkStream:
    """An upstream stream read a network read at a time: `_source` yields the hub chunks of each read.

    Iterate it chunk by chunk, or with `batches()` (the chunks of one read together, so a relay writes
    them to its client at once); both views share one position. Subclasses set `_source` and
    `_pending` (a deque) in their constructor.
    """

    _pending: collections.deque[dict[str, Any]]
    _source: AsyncIterator[list[dict[str, Any]]]
    _finished = False  # the subclass sets it once its source has taken the stream's proper end
    # While True, `batches()` may yield `hub.RawBatch`es: reads of plain chunk frames not parsed (only
    # SSEChunkStream of OpenAI chunks makes them; the router asks, and turns it off unless the relay
    # takes them as they are). Iterating chunk by chunk turns it off.
    raw = False

    @property
    def complete(self) -> bool:
        """The stream's proper end has arrived: the batches yielded so far are all there will be, and
        the source ends without waiting for the network (a relay may send the last frames with the
        response's end)."""
        return self._finished

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        self.raw = False
        while True:
            while self._pending:
                yield self._pending.popleft()
            try:
                self._pending.extend(await self._source.__anext__())
            except StopAsyncIteration:
                return

    def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        # The source itself when no chunk is held back: one generator level less to resume per read.
        return self._source if not self._pending else self._held_then_source()

    async def _held_then_source(self) -> AsyncIterator[list[dict[str, Any]]]:
        held = list(self._pending)
        self._pending.clear()
        yield held
        async for batch in self._source:
            yield batch


_DONE_FRAME = b"data: [DONE]\n\n"


def _with_wire(batch: list[dict[str, Any]], events: list[tuple[str | None, str]], wire: bytes) -> list[dict[str, Any]]:
    """`batch` as a WireBatch when its chunks are exactly the frames of `wire` (but a closing [DONE],
    which the relay writes itself), each event one chunk; else as it is."""
    frames = len(events)
    if events and events[-1][1] == "[DONE]":
        if not wire.endswith(_DONE_FRAME):
            return batch
        wire = wire[:-len(_DONE_FRAME)]
        frames -= 1
    if len(batch) != frames or not batch:
        return batch  # an event skipped or split, or one after [DONE]: the chunks are not the bytes
    return WireBatch(batch, wire)


class SSEChunkStream(BatchedChunkStream):
    """An upstream SSE response turned into hub chunks by `convert` (None skips an event).

    `convert(event, data)` returns a chunk dict, a list of chunks (one upstream event may carry
    several hub chunks, e.g. Anthropic's message_delta: finish reason and usage), None to skip, or
    raises StopAsyncIteration when the stream's proper terminator arrives (`StopAsyncIteration(chunk)`:
    the terminator is itself a chunk to pass on, as a Responses stream's `response.completed`).
    Ending without a terminator is an error.

    Iterate it chunk by chunk, or with `batches()`: the chunks of all the events that arrived in
    one network read, so a relay can write them to its client at once (one send, one syscall).
    Both views share one position: `batches()` after some `__aiter__` steps goes on from there.
    An event larger than `max_event_bytes` fails the stream (502 `upstream_event_too_large`).
    """

    def __init__(self, resp: Response, provider: str,
                 convert: Callable[[str | None, str], dict[str, Any] | list[dict[str, Any]] | None],
                 max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, wire: bool = False) -> None:
        self._resp = resp
        self._provider = provider
        self._convert = convert
        self._max_event_bytes = max_event_bytes
        # The events are OpenAI chunks that `convert` passes on as they are (`_openai_event`): batches may
        # carry their bytes, and reads of plain chunk frames are parsed without it (`_plain_chunks`).
        self._wire = wire
        self.request_id = resp.header(b"x-request-id") or resp.header(b"request-id")
        self._finished = False
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._body = resp.iter_chunks()
        self._decoder = SSEDecoder(max_event_bytes)
        self._take: Callable[[RawFrames], bool] | None = None
        self._source = self._read_batches()

    def pipe(self, take: Callable[[RawFrames], bool] | None) -> None:
        """While `raw`: a read of plain chunk frames that arrives while the reader waits for the next
        one goes to `take`, from the connection's callback, instead of waking the reader (so a read in
        a stream's middle costs no task step, and no resume of each generator above this one).
        `take` returns False to refuse one, which then comes through `batches()` as usual; so do the
        stream's end and a read with a usage chunk, which it is never offered. None stops it."""
        self._take = take
        self._body.pipe(self._piped if take is not None else None)

    def _piped(self, piece: bytes) -> bool:
        take = self._take
        if take is None or not self.raw or not self._wire or piece.endswith(_DONE_FRAME):
            return False  # (the end goes through `batches()`, which finishes the stream)
        found = self._decoder.plain_frames(piece, True)
        if found is None or isinstance(found, tuple) or found.usage or not len(found):
            return False
        return take(found)


    async def _read_batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        decoder = self._decoder
        frames_of = decoder.plain_frames if self._wire else None
        body = self._body
        try:
            while True:
                piece = body.ready()
                if piece is None:
                    more = body.more()
                    if more is None:  # the body's end
                        break
                    try:
                        await more
                    except BaseException:
                        body.disarm()
                        raise
                    continue
                # A read of only plain chunk frames, split in C (_sse_frames.c): the batch the decoder and
                # `_plain_chunks` would make of it, with one scan of its bytes instead of nine. Asked for
                # (`raw`), read in C without parsing it: its bytes and what the relay reads of them.
                found = frames_of(piece, self.raw) if frames_of is not None else None
                plain: WireBatch | RawFrames | None
                if isinstance(found, tuple):
                    payloads, done = found
                    loads = orjson.loads
                    plain = WireBatch([loads(data) for data in payloads], piece[:-len(_DONE_FRAME)] if done else piece)
                    if done:
                        self._finished = True
                elif found is not None:  # a RawFrames: every chunk valid, not parsed
                    plain = found
                    if found.done:
                        self._finished = True
                else:
                    events = decoder.feed(piece)
                    wire = decoder.wire if self._wire else None
                    plain = self._plain_chunks(events, wire) if wire is not None else None
                if plain is not None:
                    if plain:
                        yield plain  # type: ignore[misc]  # (a RawFrames only while `raw` is asked for)
                    if self._finished:
                        return
                    continue
                batch, failure = self._convert_events(events)
                if wire is not None and failure is None:
                    batch = _with_wire(batch, events, wire)
                if batch:
                    yield batch  # what arrived before a failure event still reaches the client
                if failure is not None:
                    raise failure
                if self._finished:
                    return
            batch, failure = self._convert_events(decoder.finish())
            if batch:
                yield batch
            if failure is not None:
                raise failure
            if self._finished:
                return
        except OSError as exc:  # TimeoutError and UpstreamConnectionError included
            err = connection_error(self._provider, exc)
            err.message = f"Upstream stream from `{self._provider}` broke mid-way ({exc or type(exc).__name__})."
            raise err from exc
        except EventTooLarge as exc:
            # Not retryable: the upstream is producing (and billing) an answer it would likely send again.
            raise GatewayError(502, f"Upstream provider `{self._provider}` sent a stream event too large: {exc}.",
                               "api_error", code="upstream_event_too_large", retryable=False) from exc
        except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GatewayError(502, f"Upstream provider `{self._provider}` sent an invalid stream event.", "api_error",
                               code="upstream_invalid_response") from exc
        finally:
            await self.aclose()
        raise GatewayError(502, f"Upstream stream from `{self._provider}` ended before it was complete.", "api_error",
                           code="upstream_stream_truncated")

    def _plain_chunks(self, events: list[tuple[str | None, str]], wire: bytes) -> WireBatch | None:
        """The chunks of a read that is only OpenAI chunk frames (`data: {...}`, perhaps closed by
        `data: [DONE]`), each parsed in one comprehension instead of a `convert` call per event: what
        `convert` would make of them, with their bytes. None when a frame may need `convert`'s own
        judgement: a frame that is not a JSON object, a [DONE] before the last one, or bytes that may
        hold an `"error"` key (one written with `\\u` escapes included)."""
        frames = len(events)
        if events[-1][1] == "[DONE]":
            if not wire.endswith(_DONE_FRAME):
                return None
            wire = wire[:-len(_DONE_FRAME)]
            frames -= 1
            done = True
        else:
            done = False
        # The decoder's fast path split the read at its `\n\n` (JSON has no raw line ends), so each
        # frame after the first starts right after one: every frame opens an object when these agree.
        if frames and (not wire.startswith(b"data: {") or wire.count(b"\n\ndata: {") != frames - 1):
            return None
        if b'"error"' in wire or b"\\u" in wire:
            return None
        loads = orjson.loads
        batch = WireBatch([loads(data) for _, data in events[:frames]], wire)
        if done:
            self._finished = True
        return batch

    def _convert_events(self, events: list[tuple[str | None, str]]
                        ) -> tuple[list[dict[str, Any]], GatewayError | None]:
        batch: list[dict[str, Any]] = []
        for event, data in events:
            try:
                chunk = self._convert(event, data)
            except StopAsyncIteration as stop:
                self._finished = True
                if stop.args:
                    batch.append(stop.args[0])
                break
            except GatewayError as failure:  # an error event from the upstream
                return batch, failure
            if isinstance(chunk, list):
                batch.extend(chunk)
            elif chunk is not None:
                batch.append(chunk)
        return batch, None

    async def aclose(self) -> None:
        if self._finished:
            self._resp.release()
        else:
            self._resp.close()  # do not reuse a connection with unread data
