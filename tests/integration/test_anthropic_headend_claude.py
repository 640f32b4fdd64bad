"""`POST /v1/messages` routed to an Anthropic upstream (the fake, strict like the real API): the
anthropic SDK talks to Switchboard, which goes Anthropic -> hub -> Anthropic; and
`POST /v1/messages/count_tokens`, which only an Anthropic provider can answer."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import anthropic
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.server import SwitchboardProcess

MASTER = "sk-test-master"
UPSTREAM_KEY = "sk-ant-upstream-secret"
HI = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
TIME_TOOL = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_keys={UPSTREAM_KEY}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def claude_gateway(fake_anthropic: FakeAnthropic) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {MASTER}}}
providers:
  claude:
    type: anthropic
    base_url: {fake_anthropic.base_url}
    keys: [{{value: {UPSTREAM_KEY}}}]
    retries: {{max: 0}}
models:
  sonnet: {{route: claude/claude-sonnet-test}}
"""
    server = SwitchboardProcess(config).start()
    yield server
    server.stop()


@pytest.fixture
def client(claude_gateway: SwitchboardProcess) -> Iterator[anthropic.Anthropic]:
    c = anthropic.Anthropic(base_url=claude_gateway.url, api_key=MASTER, max_retries=0)
    yield c
    c.close()


def test_non_stream_through_anthropic_provider(client: anthropic.Anthropic, fake_anthropic: FakeAnthropic) -> None:
    message = client.messages.create(model="sonnet", max_tokens=50, system="Be brief.", messages=HI)
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Hello from claude-sonnet-test")]
    assert message.model == "sonnet" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 10 and message.usage.output_tokens > 0
    sent = fake_anthropic.last()
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["body"]["model"] == "claude-sonnet-test" and sent["body"]["max_tokens"] == 50
    assert sent["body"]["messages"][-1]["role"] == "user"


def test_stream_through_anthropic_provider(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="sonnet", max_tokens=50, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from claude-sonnet-test"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 10 and final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip_through_anthropic_provider(client: anthropic.Anthropic, stream: bool) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL]
    ask = [{"role": "user", "content": "Weather and time in Paris?"}]
    if stream:
        with client.messages.stream(model="claude/tools", max_tokens=200, messages=ask, tools=tools) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(model="claude/tools", max_tokens=200, messages=ask, tools=tools)
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use", "tool_use"]
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [(u.id, u.name, u.input) for u in uses] == [("toolu_weather01", "get_weather", {"city": "Paris"}),
                                                       ("toolu_time02", "get_time", {"tz": "CET"})]
    # the strict fake rejects a history whose tool results are misplaced or unanswered
    second = client.messages.create(model="claude/tools", max_tokens=200, tools=tools, messages=[
        *ask,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_weather01", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_time02", "content": [{"type": "text", "text": "noon"}]},
        ]},
    ])
    assert second.content[0].type == "text" and second.content[0].text == "Results: sunny; noon"


def test_image_through_anthropic_provider(client: anthropic.Anthropic, fake_anthropic: FakeAnthropic) -> None:
    data = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    client.messages.create(model="sonnet", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}]}])
    blocks = fake_anthropic.last()["body"]["messages"][0]["content"]
    assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}} in blocks


def test_thinking_comes_back_as_a_thinking_block(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="claude/thinking", max_tokens=50, messages=HI)
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think."  # type: ignore[union-attr]


def test_upstream_errors_keep_their_class(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="claude/error-429", max_tokens=5, messages=HI)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.create(model="claude/error-529", max_tokens=5, messages=HI)
    assert overloaded.value.status_code >= 500
    assert overloaded.value.body["error"]["type"] in ("overloaded_error", "api_error")  # type: ignore[index]


def test_count_tokens_forwarded_to_anthropic(client: anthropic.Anthropic, fake_anthropic: FakeAnthropic) -> None:
    raw = client.messages.with_raw_response.count_tokens(model="sonnet", messages=HI, system="Be brief.",
                                                         tools=[WEATHER_TOOL])
    assert raw.parse().input_tokens == 10
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    sent = fake_anthropic.last()
    assert sent["path"] == "/v1/messages/count_tokens"
    assert sent["headers"]["x-api-key"] == UPSTREAM_KEY and sent["headers"]["anthropic-version"]
    assert sent["body"] == {"model": "claude-sonnet-test", "messages": HI, "system": "Be brief.",
                            "tools": [WEATHER_TOOL]}


def test_count_tokens_upstream_error_in_anthropic_shape(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        # a tool_result that answers no tool_use: the strict upstream refuses it
        client.messages.count_tokens(model="sonnet", messages=[{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_nowhere", "content": "x"}]}])
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
def test_cache_usage_and_stop_reasons_survive_the_round_trip(client: anthropic.Anthropic, stream: bool) -> None:
    def ask(model: str) -> anthropic.types.Message:
        if stream:
            with client.messages.stream(model=model, max_tokens=20, messages=HI) as s:
                return s.get_final_message()
        return client.messages.create(model=model, max_tokens=20, messages=HI)

    cached = ask("claude/cached")
    assert (cached.usage.input_tokens, cached.usage.cache_read_input_tokens,
            cached.usage.cache_creation_input_tokens) == (10, 100, 20)
    assert ask("claude/stop-max_tokens").stop_reason == "max_tokens"
    assert ask("claude/stop-refusal").stop_reason == "refusal"
