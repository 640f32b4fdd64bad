"""Agents through the real server: real MCP servers (stdio and Streamable HTTP, official SDK), a
scripted fake upstream model, and the official `openai` SDK / raw HTTP as clients."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.mcp_http import http_mcp_server
from tests.integration.fixtures import MCP_SERVER, running_gateway, script, scripted_config
from tests.server import SwitchboardProcess

MASTER = "sk-agents-master"

AGENTS = {
    "agents/helper.md": """---
model: small
tools: [tools, web.echo]
description: A helpful test agent.
temperature: 0.3
max_tokens: 77
---
You are the helper agent.
""",
    "agents/limited.md": """---
model: small
tools: [tools.echo]
max_turns: 2
---
You never stop.
""",
}


def config(upstream: FakeAgentUpstream, http_port: int) -> str:
    return scripted_config(MASTER, upstream, tools=True,
                           mcp_servers={"web": f'{{url: "http://127.0.0.1:{http_port}/mcp", timeout_s: 10}}'})


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream) -> Iterator[SwitchboardProcess]:
    with http_mcp_server(MCP_SERVER) as port, running_gateway(config(upstream, port), extra_files=AGENTS) as server:
        yield server


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def reasoning_of(chunks: list[Any]) -> str:
    return "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)


def test_agents_are_listed_as_models(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert {"helper", "limited", "small"} <= set(models)
    assert models["helper"].owned_by == "switchboard-agent"
    assert client.models.retrieve("helper").id == "helper"


def test_non_stream_single_tool_call(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    before = len(upstream.requests)
    completion = client.chat.completions.create(
        model="helper", messages=script([{"name": "add", "arguments": {"a": 2, "b": 3}}]), max_tokens=50)
    assert completion.choices[0].message.content == "Tool said: 5"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "helper"
    assert completion.usage is not None and completion.usage.total_tokens == 30  # two model calls
    first = upstream.requests[before]["body"]
    assert first["model"] == "small-model"
    assert first["messages"][0] == {"role": "system", "content": "You are the helper agent."}
    assert first["max_tokens"] == 50 and first["temperature"] == 0.3  # the client's value wins over the default
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {"add", "fail", "crash", "pid"} <= offered and "echo" not in offered  # `web.echo` clashes with `tools.echo`
    assert "web__echo" in offered and "tools__echo" in offered


def test_stream_parallel_calls_over_stdio_and_http(client: openai.OpenAI) -> None:
    calls = [{"name": "add", "arguments": {"a": 20, "b": 22}}, {"name": "web__echo", "arguments": {"text": "hi"}}]
    chunks = list(client.chat.completions.create(model="helper", messages=script(calls), stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(contents) == "Tool said: 42 | echo: hi"
    assert len(contents) >= 3  # the final answer arrives token by token, not in one piece
    activity = reasoning_of(chunks)
    assert "Calling tools.add" in activity and "Calling web.echo" in activity
    assert "Calling" not in "".join(contents)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 30
    assert len({c.id for c in chunks}) == 1


def test_tool_error_is_fed_back(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="helper", messages=script([{"name": "fail", "arguments": {"reason": "no disk"}}]))
    content = completion.choices[0].message.content or ""
    assert content.startswith("Tool said: Error: ") and "tool failed: no disk" in content


def test_client_tool_is_returned_to_the_client(client: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "get_location", "parameters": {"type": "object",
                                                                                       "properties": {}}}}
    completion = client.chat.completions.create(
        model="helper", messages=script([{"name": "get_location", "arguments": {}}]), tools=[tool])  # type: ignore[list-item]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "get_location"  # type: ignore[union-attr]
    # and streamed, in the standard fragment form the SDK accumulates
    with client.chat.completions.stream(model="helper", messages=script([{"name": "get_location", "arguments": {}}]),
                                        tools=[tool]) as stream:  # type: ignore[list-item]
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_location"  # type: ignore[index]


def test_max_turns_gives_a_clear_finish(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    before = len(upstream.requests)
    completion = client.chat.completions.create(
        model="limited", messages=script([{"name": "echo", "arguments": {"text": "x"}}], rounds="forever"))
    assert completion.choices[0].finish_reason == "length"
    assert "stopped after 2 model turns" in (completion.choices[0].message.content or "")
    assert len(upstream.requests) - before == 2


def test_crashed_stdio_server_is_restarted(client: openai.OpenAI) -> None:
    def pid() -> str:
        text = client.chat.completions.create(
            model="helper", messages=script([{"name": "pid", "arguments": {}}])).choices[0].message.content
        assert text is not None and text.startswith("Tool said: ")
        return text.removeprefix("Tool said: ")

    old = pid()
    assert old.isdigit()
    crashed = client.chat.completions.create(model="helper", messages=script([{"name": "crash", "arguments": {}}]))
    assert "Error:" in (crashed.choices[0].message.content or "")
    new = pid()
    assert new.isdigit() and new != old


def test_tool_list_changed_is_picked_up(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="helper", messages=script([{"name": "grow", "arguments": {}}]))
    for _ in range(50):  # the refresh runs in the server's own task, right after the notification
        text = client.chat.completions.create(
            model="helper", messages=script([{"name": "extra", "arguments": {}}])).choices[0].message.content
        if text == "Tool said: extra!":
            break
        time.sleep(0.05)
    assert text == "Tool said: extra!"


def test_task_header_uses_the_plain_model(gateway: SwitchboardProcess, upstream: FakeAgentUpstream) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}",
                                                                     "X-OpenWebUI-Task": "title_generation"},
                      json={"model": "helper", "messages": [{"role": "user", "content": "make a title"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "Plain answer."
    sent = upstream.last()["body"]
    assert "tools" not in sent and sent["model"] == "small-model"
    assert sent["messages"] == [{"role": "user", "content": "make a title"}]


def test_raw_stream_framing_and_n_rejected(gateway: SwitchboardProcess) -> None:
    headers = {"Authorization": f"Bearer {MASTER}"}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers=headers,
                      json={"model": "helper", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [line[6:] for line in body.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert all(json.loads(e)["usage"] is None for e in events[:-1])  # no usage chunk unless asked for
    bad = httpx.post(gateway.url + "/v1/chat/completions", headers=headers,
                     json={"model": "helper", "n": 2, "messages": [{"role": "user", "content": "hi"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"


def test_bad_agent_file_fails_start_with_file_and_line(upstream: FakeAgentUpstream) -> None:
    text = f"""
providers:
  up: {{type: openai, base_url: "{upstream.base_url}"}}
models:
  small: up/small-model
agents: {{dir: agents}}
"""
    server = SwitchboardProcess(text, extra_files={"agents/broken.md": "---\nmodel: small\ntempreature: 1\n---\nHi\n"})
    with pytest.raises(RuntimeError) as info:
        server.start()
    assert "broken.md:3: unknown key `tempreature`" in str(info.value)


def test_client_disconnect_stops_the_loop(gateway: SwitchboardProcess, upstream: FakeAgentUpstream) -> None:
    before = len(upstream.requests)
    body = {"model": "helper", "stream": True, "messages": script([{"name": "slow", "arguments": {"seconds": 30}}])}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {MASTER}", "x-request-id": "req-agent-disconnect"}) as r:
        for line in r.iter_lines():
            if "Calling tools.slow" in line:
                break  # the tool is running: leave
    # The request ends as a client disconnect long before the 30 s tool would have finished...
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and '"request_id":"req-agent-disconnect"' not in gateway.logs():
        time.sleep(0.05)
    line = next(x for x in gateway.logs().splitlines() if '"request_id":"req-agent-disconnect"' in x)
    assert '"status":499' in line
    # ...and no further model turn was made.
    assert len(upstream.requests) - before == 1
