"""Agents answer through every headend, not only chat completions: the Anthropic Messages API (the
official `anthropic` SDK, stream and not, tool activity as `thinking` blocks) and legacy completions
(the prompt as one user message), with a tool call to a real MCP server over stdio."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.integration.fixtures import HELPER_AGENT, running_gateway, script, scripted_config
from tests.integration.test_agents import MASTER
from tests.server import SwitchboardProcess


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream) -> Iterator[SwitchboardProcess]:
    with running_gateway(scripted_config(MASTER, upstream, tools=True), extra_files=HELPER_AGENT) as server:
        yield server


@pytest.fixture
def claude(gateway: SwitchboardProcess) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0)
    yield client
    client.close()


ADD = [{"name": "add", "arguments": {"a": 2, "b": 3}}]


def _access_lines(gateway: SwitchboardProcess, request_id: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("request_id") == request_id]


def test_agent_through_messages_non_stream(claude: anthropic.Anthropic, upstream: FakeAgentUpstream) -> None:
    before = len(upstream.requests)
    message = claude.messages.create(model="helper", max_tokens=64, messages=script(ADD))  # type: ignore[arg-type]
    assert message.model == "helper" and message.stop_reason == "end_turn"
    assert "".join(b.text for b in message.content if b.type == "text") == "Tool said: 5"
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    assert "Calling tools.add" in thinking and "-> tools.add" in thinking
    assert message.usage.input_tokens == 20 and message.usage.output_tokens == 10  # both model turns
    assert len(upstream.requests) - before == 2  # the tool loop ran: two model calls
    system = upstream.requests[before]["body"]["messages"][0]
    assert system == {"role": "system", "content": "You are the helper agent."}


def test_agent_through_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="helper", max_tokens=64, messages=script(ADD)) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    blocks = [b.type for b in final.content]
    assert blocks[0] == "thinking" and "text" in blocks
    assert "Calling tools.add" in "".join(b.thinking for b in final.content if b.type == "thinking")
    assert "".join(b.text for b in final.content if b.type == "text") == "Tool said: 5"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 10


def test_agent_through_messages_headers_and_errors(gateway: SwitchboardProcess) -> None:
    headers = {"x-api-key": MASTER, "anthropic-version": "2023-06-01"}
    ok = httpx.post(gateway.url + "/v1/messages", headers=headers,
                    json={"model": "helper", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.headers["x-switchboard-agent"] == "helper"
    assert ok.json()["content"][-1] == {"type": "text", "text": "Plain answer."}
    counted = httpx.post(gateway.url + "/v1/messages/count_tokens", headers=headers,
                         json={"model": "helper", "messages": [{"role": "user", "content": "hi"}]})
    # No upstream counts an agent's tokens: the gateway's estimate of the client's part, said so.
    assert counted.status_code == 200 and counted.headers["x-switchboard-token-count"] == "estimate"
    assert counted.json() == {"input_tokens": 1 + 3}


def test_agent_through_legacy_completions(gateway: SwitchboardProcess) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)
    prompt = json.dumps({"calls": ADD})
    completion = client.completions.create(model="helper", prompt=prompt, max_tokens=64)
    assert completion.object == "text_completion" and completion.model == "helper"
    assert completion.choices[0].text == "Tool said: 5" and completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 30
    chunks = list(client.completions.create(model="helper", prompt=[prompt], max_tokens=64, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Tool said: 5"
    assert all(c.object == "text_completion" for c in chunks) and len({c.id for c in chunks}) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 30
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="helper", prompt=["one", "two"], max_tokens=8)
    assert err.value.body["param"] == "prompt"  # type: ignore[index]
    client.close()


def test_agent_turns_are_recorded(gateway: SwitchboardProcess) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "helper", "messages": script(ADD)})
    assert resp.status_code == 200
    request_id = resp.headers["x-request-id"]
    for _ in range(100):
        lines = _access_lines(gateway, request_id)
        if lines:
            break
        import time

        time.sleep(0.02)
    assert lines, "the request has an access-log line"
    line = lines[0]
    assert line["model"] == "helper" and line["agent"] == "helper" and line["attempts"] == 2
    assert line["turns"] == [{"provider": "up", "model": "small-model", "attempts": 1, "fallback": False}] * 2
