"""The one stream relay: a `HubStream` from the router to the client, in the client's wire encoding.

Every streaming headend (OpenAI chat and completions, Anthropic messages, and whatever comes next)
hands its encoder to `relay`; everything else about a stream lives here once:
- the chunks of one upstream read go to the client in one write; those of the read that carried the
  upstream's end go with the response's end (`[DONE]` and the chunked body's terminator), in one write;
- usage is taken from the chunks that carry it (the record's, for limits, budgets and logs); a
  stream that ends without usage (client gone, upstream cut, an upstream that sends none) is charged
  an estimate, marked as such: the relayed content characters / 4 as output, the request's
  estimated input (`prompt`, when the headend gives it) as input;
- time to first token is the first chunk carrying content, text or a tool call (not the role chunk);
- a mid-stream failure ends the stream with the encoder's error frame (never a fake clean finish);
- the upstream is closed and the request's slots freed whichever way the stream ends (the client
  leaving included: asgi.send_stream cancels us and closes the body; pings are sent there too), and
  the request is recorded once.

What the relay reads of each batch (content characters, first token, whether usage is set, whether
the chunks' ids agree) is read in C where `_chunk_facts.c` is built; the Python functions here are
the reference, and read whatever the C hands back. An encoder that writes OpenAI chunks as they came
(`takes_raw`) gets a router stream's plain reads as `RawBatch`es: not parsed at all, those readings
made in C from the bytes (`_sse_frames.c`), and only a usage chunk parsed (and, traced, the first
chunk, for the attempt span's response id and model); the encoder parses a raw batch it has to
write anew.

`OpenAIStreamEncoder` is the OpenAI encoding (chat and legacy completions chunks are the same frames).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from ..asgi import LastChunk, StreamResponse
from ..errors import GatewayError
from ..hub import Chunk, HubStream, RawBatch, Usage, parsed, usage_from
from ..request_record import RequestRecord
from ..sse import DONE, data_frame, error_frame
from .token_estimate import CHARS_PER_TOKEN

try:  # the same readings in C (_chunk_facts.c) where it is built; the Python below is the reference
    from ._chunk_facts import content_facts, shared_id
except ImportError:  # pragma: no cover  (no C compiler at install time)
    content_facts = shared_id = None  # type: ignore[assignment]

__all__ = ["OpenAIStreamEncoder", "StreamEncoder", "estimated_usage", "relay"]


class StreamEncoder(Protocol):
    """A client wire encoding of hub chunks."""

    def encode(self, batch: list[Chunk]) -> bytes:
        """The frames for the chunks of one upstream read (b"" for none)."""
        ...

    async def end(self) -> bytes:
        """The frames after the last chunk (a clean end); may first do I/O (e.g. store the answer)."""
        ...

    def error(self, err: GatewayError) -> bytes:
        """The frame that ends a stream which failed mid-way."""
        ...


class OpenAIStreamEncoder:
    """OpenAI SSE: `data: <chunk>` frames with the first chunk's `id`, then `data: [DONE]`. The
    usage-only chunk reaches the client only if it asked for it (`stream_options.include_usage`)."""

    __slots__ = ("include_usage", "stream_id")
    takes_raw = True  # `encode` also takes a RawBatch (the relay then asks the stream for them)

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.stream_id: Any = None

    def encode(self, batch: list[Chunk] | RawBatch) -> bytes:
        if not isinstance(batch, list):
            as_it_came = self.raw_unchanged(batch)
            if as_it_came is not None:
                return as_it_came
            batch = parsed(batch)  # (written anew below, as any batch)
        wire: bytes | None = getattr(batch, "wire", None)
        if wire is not None:
            if self._unchanged(batch):  # the upstream's own frames
                return wire
            if not self.include_usage and (head := self._without_usage_tail(batch, wire)) is not None:
                return head
        stream_id = self.stream_id
        frames: list[bytes] = []
        for chunk in batch:
            if stream_id is None:
                stream_id = self.stream_id = chunk.get("id")
            if chunk.get("usage") is not None and not self.include_usage:
                chunk["usage"] = None
                if not chunk.get("choices"):
                    continue
            if stream_id is not None and chunk.get("id") != stream_id:
                chunk["id"] = stream_id
            frames.append(data_frame(chunk))
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def raw_unchanged(self, raw: RawBatch) -> bytes | None:
        """What `encode` writes of the raw batch's chunks when that is their own bytes (all but a last
        usage-only chunk the client did not ask for), read from what the C found; None: parse them."""
        shared = raw.id
        if shared is None or (self.stream_id is not None and shared != self.stream_id):
            return None
        if self.include_usage or not raw.usage:
            self.stream_id = shared
            return raw.wire
        if raw.usage_tail and len(raw.usage) == 1 and raw.usage[0] == len(raw) - 1:
            self.stream_id = shared
            return raw.head()
        return None

    def _unchanged(self, batch: list[Chunk]) -> bool:
        """The chunks reach the client as they are: each has the stream's id (the first chunk's that
        has one) and none is a usage chunk the client did not ask for."""
        include_usage = self.include_usage
        shared = shared_id(batch, include_usage) if shared_id is not None else None
        if shared is not None:  # (the loop below, in C, for the common case)
            if self.stream_id is None:
                self.stream_id = shared
            return bool(shared == self.stream_id)
        stream_id = self.stream_id
        for chunk in batch:
            if stream_id is None:
                stream_id = chunk.get("id")
            if chunk.get("id") != stream_id or (not include_usage and chunk.get("usage") is not None):
                return False  # (the stream's id is then the one writing the chunks again takes)
        self.stream_id = stream_id
        return True

    def _without_usage_tail(self, batch: list[Chunk], wire: bytes) -> bytes | None:
        """The upstream's frames but the last, when that one is the batch's only usage chunk and has no
        choices (the usage-only chunk a client that did not ask for usage is not sent) and the chunks
        before it go as they are: what writing the chunks again would send, without writing them again.
        (A frame is one `data: <json>` line and JSON has no raw line ends: the last frame begins after
        the last blank line before the end.)"""
        if not batch:
            return None
        last = batch[-1]
        if last.get("usage") is None or last.get("choices"):
            return None
        if len(batch) > 1 and not self._unchanged(batch[:-1]):  # (which takes the stream's id from the first)
            return None
        if self.stream_id is None:  # (as writing the chunks again would take it; the chunk itself is not sent)
            self.stream_id = last.get("id")
        cut = wire.rfind(b"\n\n", 0, len(wire) - 2)
        return wire[:cut + 2] if cut >= 0 else b""

    async def end(self) -> bytes:
        return DONE

    def error(self, err: GatewayError) -> bytes:
        return error_frame(err.to_dict())


def _take_usage(batch: list[Chunk], record: RequestRecord) -> None:
    for chunk in batch:
        usage = chunk.get("usage")
        if usage is not None:
            record.usage = usage_from(usage) or record.usage


def _take_raw_usage(raw: RawBatch, record: RequestRecord) -> None:
    """`_take_usage` of a raw batch: only its usage chunks are parsed (the C has validated them)."""
    for position in raw.usage:
        record.usage = usage_from(orjson.loads(raw.payload(position))["usage"]) or record.usage


def _has_first_token(batch: list[Chunk]) -> bool:
    for chunk in batch:
        for choice in chunk.get("choices") or ():
            if choice.get("text"):
                return True
            delta = choice.get("delta")
            if delta and (delta.get("content") or delta.get("tool_calls") or delta.get("refusal")):
                return True
    return False


def _content_chars(batch: list[Chunk], reasons: list[str] | None = None) -> int:
    """Characters of generated content in a batch (text, reasoning, refusal, tool call names and
    arguments); its finish reasons are appended to `reasons` on the way, when given."""
    chars = 0
    for chunk in batch:
        for choice in chunk.get("choices") or ():
            if reasons is not None:
                reason = choice.get("finish_reason")
                if reason:
                    reasons.append(reason)
            text = choice.get("text")
            if text:
                chars += len(text)
            delta = choice.get("delta")
            if delta:
                for name in ("content", "reasoning_content", "refusal"):
                    value = delta.get(name)
                    if value:
                        chars += len(value)
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") or {}
                    chars += len(function.get("name") or "") + len(function.get("arguments") or "")
    return chars


def estimated_usage(content_chars: int, prompt_tokens: int) -> Usage:
    """The usage charged for a stream that ended without one: content characters / 4 (rounded up) as output."""
    completion = -(-content_chars // CHARS_PER_TOKEN)
    return Usage(prompt_tokens, completion, prompt_tokens + completion, estimated=True)


def relay(stream: HubStream, record: RequestRecord, encoder: StreamEncoder,
          finish: Callable[[RequestRecord], None], headers: dict[str, str] | None = None,
          prompt: Callable[[], int] | None = None) -> StreamResponse:
    """The client's streaming response for `stream`; `finish` records the request when it is over.
    `prompt` estimates the request's input tokens, called only if the stream ends without usage."""

    def closed(exc: BaseException | None) -> None:
        if exc is not None and record.status < 400:
            if isinstance(exc, asyncio.CancelledError):
                record.status = 499  # the client went away (nginx's convention)
                record.error_type = "client_disconnected"
            else:  # a failure of ours after the response started
                record.status = 500
                record.error_type = "api_error"
        finish(record)

    return StreamResponse(_StreamBody(stream, record, encoder, prompt),
                          headers={**stream.headers, **headers} if headers else stream.headers, on_close=closed)


async def _frames(body: _StreamBody, stream: HubStream, record: RequestRecord, encoder: StreamEncoder,
                  prompt: Callable[[], int] | None) -> AsyncIterator[bytes]:
    timing = record.first_token_s is None
    chars = 0  # generated content so far: the estimate when no usage arrives
    # Traced: the attempt's span is told what this loop reads anyway (router streams only).
    relayed_attempt = getattr(stream, "relayed_attempt", None)
    span = relayed_attempt() if relayed_attempt is not None else None
    reasons = span.finish_reasons if span is not None else None
    # The frames of the batch that carried the upstream's end (`complete`) are held, to go out with
    # the response's end in one write: `rest()` then ends at once, without waiting for the network.
    held = b""
    to_pipe: Callable[[RawBatch], bool] | None = None
    piped = False
    try:
        # An encoder that writes chunks as they came takes the router's raw batches (after
        # `relayed_attempt`, which decides whether an attempt span watches the parsed chunks instead).
        raw_rest = getattr(stream, "raw_rest", None) if getattr(encoder, "takes_raw", False) else None
        rest: AsyncIterator[list[Chunk] | RawBatch] | None = raw_rest() if raw_rest is not None else None
        batch: list[Chunk] | RawBatch
        if rest is not None:
            batch = stream.raw_first  # type: ignore[attr-defined]  # a RoutedStream's
            write = body.write
            if write is not None:
                raw_unchanged = encoder.raw_unchanged  # type: ignore[attr-defined]  # (it takes_raw)

                def take(raw: RawBatch) -> bool:
                    """A read of the stream's middle, written from the upstream connection's callback
                    when it goes out as it came; refused (False) for this loop to handle otherwise."""
                    nonlocal chars
                    if timing or (frames := raw_unchanged(raw)) is None or not write(frames):
                        return False  # (the first token is marked below)
                    chars += raw.chars
                    if reasons is not None and raw.reasons:
                        reasons.extend(raw.reasons)
                    return True

                to_pipe = take  # (offered once the relay waits for the network: not for a stream read whole)
        else:
            batch = stream.first
            rest = stream.rest()
        while True:
            if not isinstance(batch, list):  # a RawBatch: its readings were made in C from the bytes
                chars += batch.chars
                first = batch.first_token
                if batch.usage:
                    _take_raw_usage(batch, record)
                if reasons is not None and batch.reasons:
                    reasons += batch.reasons
                complete = batch.done  # (the [DONE] it read is what completes the upstream stream)
            else:
                if (facts := content_facts(batch, reasons) if content_facts is not None else None) is None:
                    # the reference reading (what the C hands back to it)
                    _take_usage(batch, record)
                    chars += _content_chars(batch, reasons)
                    first = timing and _has_first_token(batch)
                else:
                    batch_chars, first, has_usage = facts
                    chars += batch_chars
                    if has_usage:
                        _take_usage(batch, record)
                complete = getattr(stream, "complete", False)
            if timing and first:
                record.mark_first_token()
                timing = False
                if span is not None:
                    span.first_token()
            frames = encoder.encode(batch)  # type: ignore[arg-type]  # raw only when it takes_raw
            if frames:
                if complete:
                    held += frames
                else:
                    yield frames
            if to_pipe is not None and not complete:
                piped = stream.pipe(to_pipe)  # type: ignore[attr-defined]  # a RoutedStream's
                to_pipe = None
            try:
                batch = await rest.__anext__()
            except StopAsyncIteration:
                break
            if held:  # a stream that said it was complete and went on: nothing is kept back from the client
                yield held
                held = b""
        last = held + await encoder.end()
    except GatewayError as err:
        record.status = err.status
        record.error_type = err.type
        last = held + encoder.error(err)
    finally:  # also when the client went away (cancelled) or the encoder failed
        if record.usage is None and chars:
            prompt_tokens = 0
            if prompt is not None:
                with contextlib.suppress(Exception):
                    prompt_tokens = prompt()
            record.usage = estimated_usage(chars, prompt_tokens)
        if span is not None:
            span.relayed_usage(record.usage)
        if piped:
            stream.pipe(None)  # type: ignore[attr-defined]
        try:  # (not contextlib.suppress: three Python calls on every stream)
            await stream.aclose()
        except Exception:  # a failure to close the upstream does not change the answer
            pass
    # The record is complete and the upstream closed: the final frames go with the response's end.
    yield LastChunk(last)


class _StreamBody:
    """A stream response body whose `aclose()` also closes the hub stream: closing a generator that
    never started does not run its `finally`, and the client may leave before the first frame."""

    __slots__ = ("_frames", "_stream", "write")

    def __init__(self, stream: HubStream, record: RequestRecord, encoder: StreamEncoder,
                 prompt: Callable[[], int] | None) -> None:
        self._stream = stream
        self.write: Callable[[bytes], bool] | None = None
        self._frames = _frames(self, stream, record, encoder, prompt)

    def use_writer(self, write: Callable[[bytes], bool]) -> None:
        """The server side's write of a frame to the client now (asgi.send_stream, before it iterates):
        True, written; False, not (the transport is paused, the client left), to be yielded instead.
        With it, reads of a raw stream's middle are written as they arrive (`RoutedStream.pipe`)."""
        self.write = write

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._frames, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self._stream.aclose()
