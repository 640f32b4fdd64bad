"""The hub: the internal request/response/chunk types every spoke converts to and from.

The lingua franca is the OpenAI Chat Completions format itself, kept as plain dicts so that fields
the gateway does not model ride along untouched (lossless pass-through). This module imports
nothing else of the gateway.

- `ChatRequest`: a validated chat completions body plus what the gateway decided about it.
- A response is a `chat.completion` dict (`UpstreamResult`); a provider's stream is an async iterator
  of `chat.completion.chunk` dicts (`UpstreamStream`), the usage chunk included.
- What the router hands a headend for a stream is a `HubStream`: the chunks of the first upstream
  read (already received, so failures before it are still HTTP errors), then the rest in batches,
  whoever answered (a provider or an agent). Legacy completions travel the same way in their own
  (`text_completion`) shape. A relay that writes OpenAI chunks as they came may ask for them as
  `RawBatch`es instead: the frames' bytes, not parsed, with what it reads of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

__all__ = [
    "ChatRequest",
    "Chunk",
    "HubStream",
    "JSONObject",
    "RawBatch",
    "ResponsesCall",
    "UpstreamResult",
    "UpstreamStream",
    "Usage",
    "WireBatch",
    "milliseconds",
    "parsed",
    "usage_from",
    "usage_from_responses",
]

JSONObject = dict[str, Any]
Chunk = dict[str, Any]  # one `chat.completion.chunk` (or `text_completion` chunk) as parsed JSON


class WireBatch(list[Chunk]):
    """A batch of OpenAI-format chunks that also holds `wire`: the exact SSE frames (`data: <json>\\n\\n`
    each) they arrived as from an OpenAI-compatible upstream. An OpenAI-format encoder that would write
    the same chunks unchanged writes `wire` instead of serialising them again (issue 14: the stream
    path's cost was mostly per-chunk work). Whoever changes a chunk of it must not relay `wire`."""

    __slots__ = ("wire",)

    def __init__(self, chunks: list[Chunk], wire: bytes) -> None:
        super().__init__(chunks)
        self.wire = wire


class RawBatch(Protocol):
    """The chunk frames of one upstream read, as they came and not parsed (`_sse_frames.RawFrames`,
    made in C only when every chunk is valid JSON of the chunk format the reader takes as it is), with
    what the stream relay reads of them; `len()` is the number of chunks. Only a relay that asked for
    raw batches gets them (`RoutedStream.raw_rest`); `parsed()` makes the chunks of one."""

    @property
    def wire(self) -> bytes: ...  # the frames' bytes (`data: <json>\n\n` each), a closing [DONE] left out
    @property
    def id(self) -> str | None: ...  # the id every chunk has (None: not all the same str)
    @property
    def usage(self) -> tuple[int, ...]: ...  # positions of the chunks whose `usage` is not null
    @property
    def usage_tail(self) -> bool: ...  # the last chunk has usage and no (or empty) choices
    @property
    def reasons(self) -> tuple[str, ...] | None: ...  # the choices' non-empty finish reasons, in order
    @property
    def chars(self) -> int: ...  # characters of generated content, as relay._content_chars counts them
    @property
    def first_token(self) -> bool: ...  # a chunk carries content, text, a refusal or a tool call
    @property
    def done(self) -> bool: ...  # a [DONE] frame closed the read

    def __len__(self) -> int: ...
    def payload(self, i: int, /) -> bytes: ...
    def payloads(self) -> list[bytes]: ...
    def head(self) -> bytes: ...  # `wire` without its last frame


def parsed(batch: list[Chunk] | RawBatch) -> list[Chunk]:
    """A batch's chunks as dicts: a raw batch parsed (with its bytes, as a WireBatch), a list as it is."""
    if isinstance(batch, list):
        return batch
    loads = orjson.loads
    return WireBatch([loads(data) for data in batch.payloads()], batch.wire)


@dataclass(slots=True)
class ChatRequest:
    """A chat completions request in hub form.

    `body` is the client's JSON object (all fields, known or not); adapters copy what they send.
    """

    body: dict[str, Any]
    model: str
    stream: bool = False
    include_usage: bool = False  # did the *client* ask for the final usage chunk


@dataclass(slots=True)
class Usage:
    """A response's token counts, normalised across providers (OpenAI's convention): `prompt_tokens`
    counts all input, of which `cached_tokens` were read from the prompt cache and
    `cache_write_tokens` written to it; `completion_tokens` counts all output, of which
    `reasoning_tokens` were reasoning. `estimated`: counted by the gateway (a stream that ended
    before the upstream reported usage), not reported by the upstream."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.estimated = self.estimated or other.estimated


def milliseconds(seconds: float | None) -> float | None:
    """A duration for logs and the usage log: milliseconds with one decimal. round(x) / 10 rather
    than round(x, 1): the same figure (they differ only on exact binary ties) at a tenth of the
    cost, paid several times per request."""
    return None if seconds is None else round(seconds * 10_000) / 10


def usage_from_responses(raw: Any) -> Usage | None:
    """The usage of a Responses API `response` object (input/output tokens, cached and reasoning details)."""
    if not isinstance(raw, dict):
        return None
    p = raw.get("input_tokens") or 0
    c = raw.get("output_tokens") or 0
    t = raw.get("total_tokens") or (p + c)
    if not (isinstance(p, int) and isinstance(c, int) and isinstance(t, int)):
        return None
    usage = Usage(p, c, t)
    if raw.get("input_tokens_details"):
        usage.cached_tokens = _detail(raw["input_tokens_details"], "cached_tokens")
    if raw.get("output_tokens_details"):
        usage.reasoning_tokens = _detail(raw["output_tokens_details"], "reasoning_tokens")
    return usage


@dataclass(slots=True)
class ResponsesCall:
    """A Responses API request for the router: as a native upstream gets it, and bridged to chat."""

    model: str
    body: dict[str, Any]  # the Responses body to pass through (any stored history already expanded)
    chat: ChatRequest  # the same request as a chat completion, for every other target


def _detail(details: Any, name: str) -> int:
    value = details.get(name) if isinstance(details, dict) else None
    return value if isinstance(value, int) and value > 0 else 0


def usage_from(raw: Any) -> Usage | None:
    """The usage of a chat completion (or its stream's usage chunk), with OpenAI's detail counts:
    `prompt_tokens_details.cached_tokens` / `cache_write_tokens` (the Anthropic and Bedrock
    translators put the cache read and write there) and `completion_tokens_details.reasoning_tokens`."""
    if not isinstance(raw, dict):
        return None
    p = raw.get("prompt_tokens") or 0
    c = raw.get("completion_tokens") or 0
    t = raw.get("total_tokens") or (p + c)
    if not (isinstance(p, int) and isinstance(c, int) and isinstance(t, int)):
        return None
    usage = Usage(p, c, t)
    prompt_details = raw.get("prompt_tokens_details")
    if prompt_details:
        usage.cached_tokens = _detail(prompt_details, "cached_tokens")
        usage.cache_write_tokens = _detail(prompt_details, "cache_write_tokens")
    completion_details = raw.get("completion_tokens_details")
    if completion_details:
        usage.reasoning_tokens = _detail(completion_details, "reasoning_tokens")
    return usage


@dataclass(slots=True)
class UpstreamResult:
    """A complete (non-stream) upstream answer, already in the OpenAI format of its endpoint."""

    body: dict[str, Any]
    request_id: str | None = None
    # The upstream's JSON bytes when `body` is exactly their parse (no translation): relayed as they
    # came, byte for byte, instead of serialising `body` again.
    raw: bytes | None = None
    # Response headers the router decided (who answered, upstream request id); set by the router.
    headers: dict[str, str] = field(default_factory=dict)
    # A Responses API call answered natively: `body` is a `response` object, not a chat completion.
    native: bool = False
    # The answer's usage, once the router has read it (the request's record and the attempt's span share it).
    usage: Usage | None = None


class UpstreamStream(Protocol):
    """An open upstream stream: the HTTP status was 2xx; chunks follow.

    Iterating yields OpenAI chunk dicts; a failure mid-way raises `GatewayError`; a stream that
    ends without its proper terminator raises too (never a fake clean finish).
    """

    request_id: str | None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class HubStream(Protocol):
    """A routed stream whose first chunks have arrived: what a headend encodes for its client.

    `first` is the batch of chunks the first upstream read carried; `rest()` yields the following
    batches (the chunks of one upstream read each) and raises `GatewayError` when the stream fails
    mid-way. `aclose()` (idempotent) closes the upstream and frees the request's concurrency slots.
    A stream may also have `complete` (read after each batch): True once the upstream's end has
    arrived, so that `rest()` will end without waiting for the network.
    """

    headers: dict[str, str]

    @property
    def first(self) -> list[Chunk]: ...

    def rest(self) -> AsyncIterator[list[Chunk]]: ...

    async def aclose(self) -> None: ...
