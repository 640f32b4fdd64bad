"""The Bedrock Converse translators (bedrock_convert) and the event-stream chunk stream, without a server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from switchboard.config import parse_config
from switchboard.errors import GatewayError
from switchboard.providers.bedrock import EventStreamChunkStream
from switchboard.providers.bedrock_convert import (
    ConverseStreamConverter,
    bedrock_error,
    from_converse_response,
    model_path,
    stream_exception,
    to_converse_request,
)
from tests.fakes.bedrock_upstream import encode_frame
from tests.fakes.scripted_response import ScriptedResponse

CONFIG = parse_config("providers:\n  br: {type: bedrock, region: us-east-1}\n", environ={}).providers["br"]


def convert(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return to_converse_request({"messages": messages, **extra}, "us.amazon.nova-lite-v1:0", CONFIG)


def test_model_path_encodes_colons_and_slashes() -> None:
    assert model_path("us.amazon.nova-lite-v1:0") == "us.amazon.nova-lite-v1%3A0"
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0"
    assert "/" not in model_path(arn) and model_path(arn).count("%2F") == 1


def test_turns_are_merged_start_with_user_and_prefill_is_trimmed() -> None:
    out = convert([{"role": "developer", "content": "Rules."}, {"role": "assistant", "content": "Earlier."},
                   {"role": "user", "content": "a"}, {"role": "user", "content": [{"type": "text", "text": "b"}]},
                   {"role": "system", "content": [{"type": "text", "text": "More."}]},
                   {"role": "assistant", "content": "Sure:  \n"}])
    assert out["system"] == [{"text": "Rules."}, {"text": "More."}]
    assert out["messages"] == [{"role": "user", "content": [{"text": "."}]},
                               {"role": "assistant", "content": [{"text": "Earlier."}]},
                               {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
                               {"role": "assistant", "content": [{"text": "Sure:"}]}]


def test_tool_results_come_first_and_are_never_empty() -> None:
    out = convert([{"role": "user", "content": "go"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
                   {"role": "user", "content": "and then?"},
                   {"role": "tool", "tool_call_id": "c1", "content": ""}], tools=[
                       {"type": "function", "function": {"name": "f"}}])
    assert out["messages"][1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "c1", "name": "f", "input": {"x": 1}}}]}
    assert out["messages"][2]["content"] == [{"toolResult": {"toolUseId": "c1", "content": [{"text": "(empty)"}]}},
                                             {"text": "and then?"}]
    assert out["toolConfig"] == {"tools": [{"toolSpec": {"name": "f", "inputSchema": {
        "json": {"type": "object", "properties": {}}}}}]}


def test_invalid_tool_arguments_are_a_400_naming_them() -> None:
    with pytest.raises(GatewayError) as info:
        convert([{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}])
    assert info.value.status == 400 and info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_images_from_s3_and_document_names() -> None:
    out = convert([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "s3://bucket/cat.JPG"}},
        {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}},
        {"type": "file", "file": {"filename": "***.md", "file_data": "data:text/markdown;base64,IyBh"}}]}])
    assert out["messages"][0]["content"] == [
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.JPG"}}}},
        {"document": {"format": "csv", "name": "document-1", "source": {"bytes": "YSxi"}}},
        {"document": {"format": "md", "name": "document-2", "source": {"bytes": "IyBh"}}}]
    with pytest.raises(GatewayError) as info:
        convert([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}])
    assert info.value.code == "unsupported_content"


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR\u00e9w0K"}},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE\u00e9Ri0x"}}])
def test_base64_data_outside_ascii_is_a_400_not_a_500(part: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as info:
        convert([{"role": "user", "content": [part]}])
    assert info.value.status == 400 and info.value.code == "invalid_value"
    assert info.value.message.startswith("Invalid base64 data in 'messages[0].content[0]")


def test_native_fields_ride_along_unless_told_not_to() -> None:
    fields = {"additionalModelRequestFields": {"top_k": 5}, "requestMetadata": {"team": "a"}}
    assert {k: v for k, v in convert([{"role": "user", "content": "x"}], **fields).items() if k in fields} == fields
    strict = parse_config("providers:\n  br: {type: bedrock, region: us-east-1, forward_unknown_params: false}\n",
                          environ={}).providers["br"]
    out = to_converse_request({"messages": [{"role": "user", "content": "x"}], **fields}, "m.x-v1:0", strict)
    assert set(out) == {"messages"}


@pytest.mark.parametrize(("header", "body", "status", "code"), [
    ("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/", {"message": "slow down"}, 429,
     "ThrottlingException"),
    ("", {"__type": "com.amazon.coral.service#UnrecognizedClientException", "Message": "bad token"}, 401,
     "UnrecognizedClientException"),
    ("ValidationException", {"message": "Input is too long for requested model."}, 400, "context_length_exceeded"),
    ("", "<html>bad gateway</html>", 502, None),
])
def test_aws_error_shapes(header: str, body: Any, status: int, code: str | None) -> None:
    err = bedrock_error(502 if code is None else 400, {"x-amzn-errortype": header} if header else {}, body, "br")
    assert (err.status, err.code) == (status, code)
    assert err.retryable is (status in (429, 502))


def test_stream_exception_names_are_camel_case() -> None:
    err = stream_exception("serviceUnavailableException", {"message": "later"}, "br")
    assert err.status == 503 and err.retryable and "mid-stream: later" in err.message
    assert stream_exception(None, {"originalMessage": "boom"}, "br").status == 502


def test_response_usage_counts_cache_in_prompt_tokens() -> None:
    out = from_converse_response({"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
                                  "stopReason": "end_turn", "usage": {"inputTokens": 4, "outputTokens": 2,
                                                                      "totalTokens": 1306, "cacheReadInputTokens": 300,
                                                                      "cacheWriteInputTokens": 1000}},
                                 "m", "req-1")
    assert out["id"] == "chatcmpl-req-1"
    assert out["usage"] == {"prompt_tokens": 1304, "completion_tokens": 2, "total_tokens": 1306,
                            "prompt_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 1000}}


def test_stream_converter_rejects_events_before_message_start() -> None:
    converter = ConverseStreamConverter("br", "m", None)
    with pytest.raises(GatewayError) as info:
        converter.convert("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
    assert info.value.code == "upstream_invalid_response"


# -- the event-stream chunk stream, fed by a scripted response

def event(name: str, payload: dict[str, Any]) -> bytes:
    return encode_frame({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                        orjson.dumps(payload))


async def batches_of(pieces: list[bytes], max_event_bytes: int = 1 << 20) -> tuple[list[list[Any]], Any]:
    resp = ScriptedResponse(pieces)
    stream = EventStreamChunkStream(resp, "br", ConverseStreamConverter("br", "m", "rid"), max_event_bytes,  # type: ignore[arg-type]
                                    "rid")
    out: list[list[Any]] = []
    try:
        async for batch in stream.batches():
            out.append(batch)
    except GatewayError as err:
        return out, err
    return out, resp


async def test_events_of_one_read_are_one_batch_and_a_clean_end_releases() -> None:
    start = event("messageStart", {"role": "assistant"})
    deltas = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}}) + \
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "b"}})
    end = event("messageStop", {"stopReason": "end_turn"}) + event("metadata", {"usage": {"inputTokens": 1}})
    whole = start + deltas + end
    batches, resp = await batches_of([start, deltas[:5], deltas[5:], end])
    assert [len(b) for b in batches] == [1, 2, 2]
    assert resp.released and not resp.closed
    batches, _ = await batches_of([whole[i:i + 3] for i in range(0, len(whole), 3)])
    assert "".join(c["choices"][0]["delta"].get("content") or "" for b in batches for c in b if c["choices"]) == "ab"


async def test_a_corrupt_frame_fails_the_stream() -> None:
    frame = bytearray(event("messageStart", {"role": "assistant"}))
    frame[-1] ^= 0xFF  # the message CRC no longer matches
    batches, err = await batches_of([bytes(frame)])
    assert batches == [] and isinstance(err, GatewayError) and err.code == "upstream_invalid_response"


async def test_an_oversized_event_fails_the_stream() -> None:
    big = event("messageStart", {"role": "assistant", "pad": "x" * 5000})
    _, err = await batches_of([big[:4096]], max_event_bytes=1000)
    assert isinstance(err, GatewayError) and err.code == "upstream_event_too_large"


async def test_ending_before_message_stop_is_truncation() -> None:
    _, err = await batches_of([event("messageStart", {"role": "assistant"})])
    assert isinstance(err, GatewayError) and err.code == "upstream_stream_truncated"
    batches, resp = await batches_of([event("messageStart", {"role": "assistant"}),
                                      event("messageStop", {"stopReason": "max_tokens"})])
    assert batches[-1][-1]["choices"][0]["finish_reason"] == "length" and resp.released  # complete without metadata


async def test_the_stream_is_complete_when_its_last_batch_is_handed_out() -> None:
    start = event("messageStart", {"role": "assistant"})
    end = event("messageStop", {"stopReason": "end_turn"}) + event("metadata", {"usage": {"inputTokens": 1}})
    stream = EventStreamChunkStream(ScriptedResponse([start, end]), "br",  # type: ignore[arg-type]
                                    ConverseStreamConverter("br", "m", "rid"), 1 << 20, "rid")
    seen = [stream.complete async for _ in stream.batches()]
    assert seen == [False, True]  # a relay sends the last batch with the response's end
