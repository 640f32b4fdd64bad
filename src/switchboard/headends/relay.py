"""Relaying one OpenAI-format call through the router, non-stream or stream.

Shared by chat and (legacy) completions, whose streams have the same shape: every chunk is
forwarded as it arrives with the first chunk's `id`; the usage-only chunk reaches the client only
if it asked for it (`stream_options.include_usage`), though the gateway always records usage; a
stream that breaks ends with an error frame and no `[DONE]`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..asgi import JSONResponse, Response, StreamResponse
from ..errors import GatewayError
from ..gateway import Gateway, RequestRecord
from ..hub import UpstreamResult, UpstreamStream, usage_from
from ..routing.router import Deployment, Outcome
from ..sse import DONE, data_frame, error_frame

__all__ = ["OpenedStream", "StreamBody", "open_first_chunk", "relay_complete", "relay_stream", "response_headers",
           "stream_closed"]


def response_headers(outcome: Outcome, upstream_request_id: str | None) -> dict[str, str]:
    headers = outcome.headers()
    if upstream_request_id:
        headers["x-upstream-request-id"] = upstream_request_id
    return headers


async def relay_complete(gw: Gateway, record: RequestRecord, model: str,
                         call: Callable[[Deployment], Awaitable[UpstreamResult]]) -> Response:
    # self_bounded: a non-stream call ends within its provider's timeouts (providers/base.py HttpUpstream.post).
    result, outcome = await gw.router.execute(model, call, observe=record.routed, self_bounded=True)
    record.usage = usage_from(result.body.get("usage"))
    headers = response_headers(outcome, result.request_id)
    if result.raw is not None:
        return Response(result.raw, headers=headers)
    return JSONResponse(result.body, headers=headers)


class OpenedStream:
    """An upstream stream whose first chunk has arrived (so the router could still fall back)."""

    __slots__ = ("first", "iterator", "stream")

    def __init__(self, stream: UpstreamStream, iterator: AsyncIterator[dict[str, Any]], first: dict[str, Any]) -> None:
        self.stream = stream
        self.iterator = iterator
        self.first = first


async def open_first_chunk(opening: Awaitable[UpstreamStream]) -> OpenedStream:
    stream = await opening
    iterator = stream.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        await stream.aclose()
        raise GatewayError(502, "Upstream stream ended before sending anything.", "api_error",
                           code="upstream_stream_truncated") from None
    except BaseException:
        with contextlib.suppress(Exception):
            await stream.aclose()
        raise
    return OpenedStream(stream, iterator, first)


async def relay_stream(gw: Gateway, record: RequestRecord, model: str, include_usage: bool,
                       open_stream: Callable[[Deployment], Awaitable[UpstreamStream]]) -> StreamResponse:
    # hold=True: the concurrency slots stay taken until the stream ends (released in `_closed`).
    opened, outcome = await gw.router.execute(model, lambda d: open_first_chunk(open_stream(d)),
                                              hold=True, observe=record.routed)
    record.mark_first_token()
    return StreamResponse(
        StreamBody(_frames(opened, record, include_usage), opened.stream),
        headers=response_headers(outcome, opened.stream.request_id),
        on_close=lambda exc: stream_closed(gw, record, outcome, exc),
    )


class StreamBody:
    """A stream response body whose `aclose()` also closes the upstream stream.

    Closing a generator that never started does not run its `finally`; this closes the upstream
    even when the client left before the first frame was sent.
    """

    __slots__ = ("_frames", "_upstream")

    def __init__(self, frames: AsyncIterator[bytes], upstream: UpstreamStream) -> None:
        self._frames = frames
        self._upstream = upstream

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self._upstream.aclose()


def stream_closed(gw: Gateway, record: RequestRecord, outcome: Outcome, exc: BaseException | None) -> None:
    """A relayed stream ended (cleanly, by error or by the client leaving): free its slots, record it."""
    outcome.release()
    if exc is not None and record.status < 400:
        record.status = 499  # the client went away (nginx's convention)
        record.error_type = "client_disconnected"
    gw.finish(record)


async def _batches(opened: OpenedStream) -> AsyncIterator[list[dict[str, Any]]]:
    """The stream's chunks, grouped as they arrived from the upstream when the stream can tell."""
    yield [opened.first]
    batches = getattr(opened.stream, "batches", None)
    if batches is not None:
        async for batch in batches():
            yield batch
    else:
        async for chunk in opened.iterator:
            yield [chunk]


async def _frames(opened: OpenedStream, record: RequestRecord, include_usage: bool) -> AsyncIterator[bytes]:
    stream_id = opened.first.get("id")
    try:
        async for batch in _batches(opened):
            frames: list[bytes] = []
            for chunk in batch:
                usage = chunk.get("usage")
                if usage is not None:
                    record.usage = usage_from(usage) or record.usage
                    if not include_usage:
                        chunk["usage"] = None
                        if not chunk.get("choices"):
                            continue
                if stream_id is not None and chunk.get("id") != stream_id:
                    chunk["id"] = stream_id
                frames.append(data_frame(chunk))
            if frames:
                # Everything one upstream read carried goes to the client in one write.
                yield frames[0] if len(frames) == 1 else b"".join(frames)
        yield DONE
    except GatewayError as err:
        record.status = err.status
        record.error_type = err.type
        yield error_frame(err.to_dict())
    finally:
        with contextlib.suppress(Exception):
            await opened.stream.aclose()
