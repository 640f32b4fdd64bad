"""The attempt span's stream reports (observability/spans.py): what the relay tells it, the finish
reasons read in the relay's own walk of each batch (headends/relay.py)."""

from __future__ import annotations

import json
import types

from switchboard.config import ProviderConfig
from switchboard.headends.relay import _content_chars
from switchboard.hub import Usage, WireBatch
from switchboard.observability.spans import AttemptSpan, Tracer


def _attempt() -> tuple[list[object], AttemptSpan]:
    exported: list[object] = []
    tracer = Tracer(exported.append, 1.0, False, {"p": ProviderConfig("p", "openai", "http://127.0.0.1:9/v1")}, (),
                    encode=False)
    trace = tracer.begin({}, "POST", "/v1/chat/completions")
    deployment = types.SimpleNamespace(provider=types.SimpleNamespace(name="p"), model="m", id="p/m")
    span = trace.call("chat", {"model": "x", "temperature": 0.5}).attempt(deployment, 1, False)
    span.answered(None, hold=True)
    return exported, span


def _chunk(reason: str | None, content: str = "") -> dict[str, object]:
    return {"id": "chatcmpl-1", "model": "m-2024", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": reason}]}


def _wire(chunks: list[dict[str, object]], separators: tuple[str, str]) -> WireBatch:
    frames = "".join(f"data: {json.dumps(c, separators=separators)}\n\n" for c in chunks)
    return WireBatch(chunks, frames.encode())


def test_relayed_stream_reports_finish_reasons_usage_and_first_token() -> None:
    exported, span = _attempt()
    first = [_chunk(None, "Hel")]
    span.relayed(first[0])
    span.first_token()
    _content_chars(_wire([_chunk(None, "lo")], (",", ":")), span.finish_reasons)
    _content_chars(_wire([_chunk(None, "!"), _chunk("stop")], (", ", ": ")), span.finish_reasons)
    span.relayed_usage(Usage(3, 2))
    span.stream_closed()
    trace = span.trace
    assert trace is not None
    trace.end()
    assert exported[0] is span and span.error is None
    attributes = span.all_attributes()
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.response.id"] == "chatcmpl-1" and attributes["gen_ai.response.model"] == "m-2024"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (3, 2)
    assert attributes["gen_ai.request.temperature"] == 0.5 and attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_reasons_of_every_batch_are_kept() -> None:
    _, span = _attempt()
    span.relayed(None)
    _content_chars(_wire([_chunk(None, "a"), _chunk("length")], (",", ":")), span.finish_reasons)
    _content_chars([_chunk(""), _chunk("stop")], span.finish_reasons)  # an empty reason is none
    span.stream_closed()
    assert span.trace is not None
    span.trace.end()  # the request ends: its spans are completed
    assert span.all_attributes()["gen_ai.response.finish_reasons"] == ["length", "stop"]


def test_a_relayed_stream_closed_before_its_end_is_a_disconnect() -> None:
    _, span = _attempt()
    span.relayed(_chunk(None, "a"))
    span.stream_closed()
    assert span.attributes["error.type"] == "client_disconnected"


def test_reasons_keep_their_order() -> None:
    _, span = _attempt()
    span.relayed(None)
    two = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"},
                                  {"index": 1, "delta": {}, "finish_reason": "length"}]}
    later = {"id": "c", "choices": [{"index": 2, "delta": {}, "finish_reason": "tool_calls"}]}
    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    _content_chars(_wire([_chunk(None, "a"), two, _chunk(None, "b"), later, usage], (",", ":")), span.finish_reasons)
    span.stream_closed()
    assert span.trace is not None
    span.trace.end()
    assert span.all_attributes()["gen_ai.response.finish_reasons"] == ["stop", "length", "tool_calls"]
