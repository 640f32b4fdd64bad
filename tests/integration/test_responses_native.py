"""Native pass-through: a provider that speaks the Responses API itself (`responses: native`, the
default for api.openai.com) gets the request unchanged, hosted tools and all, while the gateway
still authenticates, routes, counts usage, stores and logs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.responses_upstream import FakeResponsesUpstream
from tests.server import SwitchboardProcess
from tests.spec import validate_response_event

MASTER = "sk-native-master"
OTHER = "sk-native-other"


@pytest.fixture(scope="module")
def native_upstream() -> Iterator[FakeResponsesUpstream]:
    fake = FakeResponsesUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def chat_upstream() -> Iterator[FakeAgentUpstream]:
    fake = FakeAgentUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(native_upstream: FakeResponsesUpstream, chat_upstream: FakeAgentUpstream) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {MASTER}, keys: [{{name: other, value: {OTHER}}}]}}
providers:
  openai: {{type: openai, base_url: "{native_upstream.base_url}", keys: [sk-up], responses: native,
           retries: {{max: 0}}}}
  local: {{type: openai, base_url: "{chat_upstream.base_url}", keys: [sk-local], retries: {{max: 0}}}}
models:
  gpt: openai/gpt-up
  small: local/small-model
"""
    server = SwitchboardProcess(config).start()
    yield server
    server.stop()


def _access_line(gateway: SwitchboardProcess, response_id: str) -> dict[str, object]:
    """The access-log line of the POST that made `response_id` (lines are written in small batches)."""
    for _ in range(200):
        lines = [json.loads(raw) for raw in gateway.logs().splitlines() if raw.startswith('{"ts"')]
        made = [line for line in lines if line.get("endpoint") == "/responses" and line.get("model") == "gpt"]
        if made:
            return made[-1]
        time.sleep(0.02)
    raise AssertionError(f"no access-log line for {response_id}")


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def test_the_request_passes_through_unchanged(client: openai.OpenAI, gateway: SwitchboardProcess,
                                              native_upstream: FakeResponsesUpstream) -> None:
    response = client.responses.create(model="gpt", input="hi", tools=[{"type": "web_search"}],
                                       include=["reasoning.encrypted_content"], store=True)
    assert response.output_text == "Native answer to gpt-up" and response.model == "gpt"
    sent = native_upstream.last()["body"]
    assert sent["model"] == "gpt-up" and sent["tools"] == [{"type": "web_search"}]
    assert sent["include"] == ["reasoning.encrypted_content"] and sent["input"] == "hi"
    assert native_upstream.last()["headers"]["Authorization"] == "Bearer sk-up"
    assert client.responses.retrieve(response.id).output_text == "Native answer to gpt-up"  # stored here too
    line = _access_line(gateway, response.id)
    assert line["prompt_tokens"] == 7 and line["completion_tokens"] == 2 and line["provider"] == "openai"


def test_a_native_stream_is_relayed_event_by_event(gateway: SwitchboardProcess,
                                                   native_upstream: FakeResponsesUpstream) -> None:
    with httpx.stream("POST", gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "gpt", "input": "hi", "stream": True}) as raw:
        body = raw.read().decode()
    events = []
    for frame in filter(str.strip, body.split("\n\n")):
        name, data = frame.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        validate_response_event(event)
        events.append(event)
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["model"] == "gpt"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert native_upstream.last()["body"]["stream"] is True


def test_a_native_failure_is_passed_on(client: openai.OpenAI, gateway: SwitchboardProcess) -> None:
    failed = httpx.post(gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {MASTER}"},
                             json={"model": "openai/native-fail", "input": "hi", "stream": True})
    kinds = [line[7:] for line in failed.text.split("\n") if line.startswith("event: ")]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds


def test_a_bridged_conversation_continues_natively(client: openai.OpenAI,
                                                   native_upstream: FakeResponsesUpstream) -> None:
    first = client.responses.create(model="small", input="first")
    assert first.id.startswith("resp_sb")
    client.responses.create(model="gpt", input="second", previous_response_id=first.id)
    sent = native_upstream.last()["body"]
    assert "previous_response_id" not in sent
    assert [(i.get("role"), i.get("type")) for i in sent["input"]] == [
        ("user", "message"), ("assistant", "message"), ("user", "message")]
    assert all("id" not in item for item in sent["input"][:2])
    # an id the upstream made itself goes through as it is
    native = client.responses.create(model="gpt", input="third")
    client.responses.create(model="gpt", input="fourth", previous_response_id=native.id)
    assert native_upstream.last()["body"]["previous_response_id"] == native.id
    outside = client.responses.create(model="gpt", input="x", previous_response_id="resp_made_elsewhere")
    assert outside.status == "completed"
    assert native_upstream.last()["body"]["previous_response_id"] == "resp_made_elsewhere"


def test_another_key_cannot_continue_a_native_conversation(client: openai.OpenAI, gateway: SwitchboardProcess,
                                                          native_upstream: FakeResponsesUpstream) -> None:
    made = client.responses.create(model="gpt", input="a secret")
    sent_before = len(native_upstream.requests)
    other = openai.OpenAI(base_url=gateway.url + "/v1", api_key=OTHER, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt", input="repeat it", previous_response_id=made.id)
    other.close()
    assert len(native_upstream.requests) == sent_before  # nothing went upstream with the other key's id
