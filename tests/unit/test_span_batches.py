"""The tracer's batches (observability/spans.py, Tracer.finished/flush): ended spans are completed
and encoded SPANS_PER_ITEM at a time, so every item the export queue holds is full but the last
(its bound counts items); a span that cannot be completed is dropped alone, and every request's
record is let go."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from switchboard.config import ProviderConfig
from switchboard.hub import Usage
from switchboard.observability import spans
from switchboard.observability.spans import SPANS_PER_ITEM, Tracer
from switchboard.observability.tracing import finish_trace
from switchboard.request_record import RequestRecord

DEPLOYMENT = types.SimpleNamespace(provider=types.SimpleNamespace(name="p"), model="m", id="p/m")
ANSWER = types.SimpleNamespace(request_id="req-1", usage=Usage(3, 4), body={
    "id": "chatcmpl-1", "object": "chat.completion", "model": "m-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})


def _requests(tracer: Tracer, count: int, attempts: int) -> list[RequestRecord]:
    """`count` requests of `attempts` attempts each (the last one answers): 1 + attempts spans each."""
    records = []
    for i in range(count):
        record = RequestRecord(f"req_{i}", "/chat/completions", model="m")
        trace = record.trace = tracer.begin({}, "POST", "/v1/chat/completions")
        call = trace.call("chat", {"model": "m"})
        for n in range(1, attempts + 1):
            span = call.attempt(DEPLOYMENT, n, False)
            if n < attempts:
                span.failed(TimeoutError())
            else:
                span.answered(ANSWER, False)
        record.attempts, record.latency_s = attempts, 0.001
        finish_trace(record)
        records.append(record)
    return records


def _spans_in(item: bytes) -> int:
    """How many spans an encoded item holds (each is a `spans` field: tag 0x12, a varint length)."""
    count = pos = 0
    while pos < len(item):
        assert item[pos] == 0x12
        pos, length, shift = pos + 1, 0, 0
        while True:
            byte = item[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        pos += length
        count += 1
    return count


@pytest.mark.parametrize("attempts", [1, 2, 4])
def test_items_are_full_but_the_last(attempts: int) -> None:
    items: list[Any] = []

    async def main() -> list[RequestRecord]:
        tracer = Tracer(items.append, 1.0, False, {"p": ProviderConfig("p", "openai", "http://127.0.0.1:9/v1")}, ())
        records = _requests(tracer, 100, attempts)
        await asyncio.sleep(spans.FLUSH_AFTER_S * 2)  # the rest, after the timer
        return records

    records = asyncio.run(main())
    sizes = [_spans_in(bytes(item)) for item in items]
    assert sum(sizes) == 100 * (1 + attempts)
    assert all(size == SPANS_PER_ITEM for size in sizes[:-1]) and 0 < sizes[-1] <= SPANS_PER_ITEM
    assert all(r.trace is not None and r.trace.record is None for r in records)


def test_a_span_that_cannot_be_completed_is_dropped_alone(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    items: list[Any] = []
    complete = spans.AttemptSpan.complete

    def fails_once_in_a_while(self: spans.AttemptSpan) -> None:
        if self.number == 2:
            raise RuntimeError("boom")
        complete(self)

    monkeypatch.setattr(spans.AttemptSpan, "complete", fails_once_in_a_while)

    async def main() -> list[RequestRecord]:
        tracer = Tracer(items.append, 1.0, False, {}, ())
        records = _requests(tracer, 50, 2)  # every request's second attempt fails to complete
        await asyncio.sleep(spans.FLUSH_AFTER_S * 2)
        return records

    records = asyncio.run(main())
    assert sum(_spans_in(bytes(item)) for item in items) == 50 * 2  # the server span and the first attempt
    assert all(r.trace is not None and r.trace.record is None for r in records)
    assert "a span could not be completed or encoded: dropped" in caplog.text
