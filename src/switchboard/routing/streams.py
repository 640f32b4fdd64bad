"""Opening a provider's stream inside a routed attempt, and the `HubStream` the router returns.

`open_first_batch` waits for the first upstream read's chunks while the attempt is still running,
so a stream that fails before sending anything can be retried or fall back and is reported with a
real HTTP status. `RoutedStream` is that stream once routed: the first batch, the rest in batches
(one per upstream read, so a relay writes each read to its client at once), and `aclose()`, which
frees the request's concurrency slots and closes the upstream connection exactly once (and, traced,
ends the answering attempt's span: a stream's span lasts as long as the stream).

An upstream that can (`raw`: OpenAI chunks over SSE) is read raw from the start: its plain reads come as
`RawBatch`es, not parsed. A relay that writes them as they came takes them so (`raw_first`,
`raw_rest()`); for anyone else `first` is parsed when read and `rest()` turns the upstream back to
parsing, so no other consumer ever sees one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import orjson

from ..errors import GatewayError
from ..hub import Chunk, RawBatch, UpstreamStream, parsed
from .deployment import Outcome

if TYPE_CHECKING:
    from ..observability.spans import AttemptSpan

__all__ = ["OpenedStream", "RoutedStream", "open_first_batch"]


class OpenedStream:
    """An upstream stream whose first chunks have arrived."""

    __slots__ = ("batches", "first", "upstream")

    def __init__(self, upstream: UpstreamStream, batches: AsyncIterator[list[Chunk]],
                 first: list[Chunk] | RawBatch) -> None:
        self.upstream = upstream
        self.batches = batches
        self.first = first


async def _one_per_batch(stream: UpstreamStream) -> AsyncIterator[list[Chunk]]:
    async for chunk in stream:
        yield [chunk]


async def open_first_batch(opening: Awaitable[UpstreamStream]) -> OpenedStream:
    upstream = await opening
    if hasattr(upstream, "raw"):  # (until someone asks for parsed chunks: RoutedStream)
        upstream.raw = True
    batches_of = getattr(upstream, "batches", None)  # SSEChunkStream groups the chunks of one read
    batches: AsyncIterator[list[Chunk]] = batches_of() if batches_of is not None else _one_per_batch(upstream)
    try:
        first = await batches.__anext__()
    except StopAsyncIteration:
        await upstream.aclose()
        raise GatewayError(502, "Upstream stream ended before sending anything.", "api_error",
                           code="upstream_stream_truncated") from None
    except BaseException:
        with contextlib.suppress(Exception):
            await upstream.aclose()
        raise
    return OpenedStream(upstream, batches, first)


class RoutedStream:
    """A provider's stream as the router hands it on (the `HubStream` protocol)."""

    __slots__ = ("_attempt", "_batches", "_closed", "_outcome", "_upstream", "headers", "raw_first")

    def __init__(self, opened: OpenedStream, outcome: Outcome, headers: dict[str, str]) -> None:
        self.raw_first = opened.first  # the first read's batch as it came: chunks, or a RawBatch
        self.headers = headers
        self._batches = opened.batches
        trace = outcome.trace
        # Traced: the attempt span watches the chunks, unless the relay reports them (`relayed_attempt`).
        self._attempt = trace.open_attempt if trace is not None else None
        self._upstream = opened.upstream
        self._outcome = outcome
        self._closed = False

    @property
    def outcome(self) -> Outcome:
        return self._outcome

    @property
    def complete(self) -> bool:
        """The upstream's end has arrived (its stream says so; False when it cannot tell): `rest()`
        will yield nothing more, and ends without waiting for the network."""
        return bool(getattr(self._upstream, "complete", False))

    @property
    def first(self) -> list[Chunk]:
        """The first read's chunks (parsed here, once, if they came raw)."""
        first = self.raw_first
        if not isinstance(first, list):
            first = self.raw_first = parsed(first)
        return first

    def rest(self) -> AsyncIterator[list[Chunk]]:
        if getattr(self._upstream, "raw", False):  # the following reads are parsed as they arrive
            self._upstream.raw = False  # type: ignore[attr-defined]
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            self._batches = attempt.watch(self.first, self._batches)
        return self._batches

    def raw_rest(self) -> AsyncIterator[list[Chunk] | RawBatch] | None:
        """For a relay that writes OpenAI chunks as they came, after `relayed_attempt()`: the batches
        after `raw_first`, raw ones left raw; None when an attempt span watches the chunks (then
        `first` and `rest()`)."""
        if self._attempt is not None:
            return None
        return self._batches  # (the upstream's reads: raw ones included, as `raw` is still on)

    def pipe(self, take: Callable[[RawBatch], bool] | None) -> bool:
        """After `raw_rest()` gave the batches: the raw reads of the stream's middle go to `take` as
        they arrive (the upstream's `pipe`; what `take` refuses comes through the batches). False
        when the upstream cannot, or an attempt span watches the chunks."""
        pipe = getattr(self._upstream, "pipe", None)
        if pipe is None or self._attempt is not None:
            return False
        pipe(take)
        return True

    def relayed_attempt(self) -> AttemptSpan | None:
        """For the relay, before `rest()`: the traced attempt span it reports the stream to itself (it
        reads every chunk anyway), instead of the span watching each batch pass; None when there is
        none, or when the span records the answer's contents (then it watches)."""
        attempt = self._attempt
        if attempt is None or not attempt.relayable:
            return None
        self._attempt = None
        first = self.raw_first
        if isinstance(first, list):
            attempt.relayed(first[0] if first else None)
        else:  # (only the first chunk is parsed: the span takes its id and model)
            attempt.relayed(orjson.loads(first.payload(0)) if len(first) else None)
        return attempt

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._outcome.release()
        try:
            aclose = getattr(self._batches, "aclose", None)
            if aclose is not None:
                try:  # (not contextlib.suppress: three Python calls on every stream)
                    await aclose()
                except Exception:  # the upstream is closed below either way
                    pass
        finally:
            await self._upstream.aclose()
            if self._outcome.trace is not None:
                self._outcome.trace.closed()
