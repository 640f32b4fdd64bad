"""`/v1/responses` through the real server with the official `openai` SDK, bridged to an
OpenAI-compatible upstream (a scripted chat model), an Anthropic upstream, and an agent with a real
MCP server; every answer and stream event validated against the official OpenAPI schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.integration.fixtures import HELPER_AGENT, running_gateway, script, scripted_config
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec, validate_response_event

MASTER = "sk-responses-master"
OTHER = "sk-responses-other"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream, claude_upstream: FakeAnthropic) -> Iterator[SwitchboardProcess]:
    config = scripted_config(MASTER, upstream, other_key=OTHER, claude=claude_upstream, tools=True)
    with running_gateway(config, extra_files=HELPER_AGENT) as server:
        yield server


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def _valid(response: Any) -> None:
    validate_against_spec("Response", response.model_dump(mode="json", exclude_unset=True))


def test_text_with_instructions(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    response = client.responses.create(model="small", input="hi", instructions="Be nice.")
    _valid(response)
    assert response.output_text == "Plain answer." and response.status == "completed"
    assert response.id.startswith("resp_") and response.model == "small"
    assert response.usage is not None and response.usage.total_tokens == 15
    sent = upstream.last()["body"]
    assert sent["messages"] == [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "hi"}]


def test_image_input_reaches_the_upstream(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    client.responses.create(model="small", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"}, {"type": "input_image", "image_url": image, "detail": "low"}]}])
    content = upstream.last()["body"]["messages"][0]["content"]
    assert content == [{"type": "text", "text": "what is this"},
                       {"type": "image_url", "image_url": {"url": image, "detail": "low"}}]


def test_stream_helper_sees_the_event_sequence(client: openai.OpenAI, gateway: SwitchboardProcess) -> None:
    with client.responses.stream(model="small", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and final.output_text == "Plain answer."
    # raw: every event has its `event:` line, a schema-valid body and a rising sequence number
    with httpx.stream("POST", gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "small", "input": "hi", "stream": True}) as raw:
        assert raw.headers["content-type"].startswith("text/event-stream")
        body = raw.read().decode()
    frames = [f for f in body.split("\n\n") if f.strip()]
    events = []
    for frame in frames:
        name, data = frame.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        validate_response_event(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in body and len({e["response"]["id"] for e in events if "response" in e}) == 1


class City(BaseModel):
    city: str
    country: str


def test_parse_with_a_pydantic_model(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    answer = json.dumps({"city": "Oslo", "country": "Norway"})
    parsed = client.responses.parse(model="small", input=json.dumps({"calls": [], "rounds": 0, "answer": answer}),
                                    text_format=City)
    assert parsed.output_parsed == City(city="Oslo", country="Norway")
    fmt = upstream.last()["body"]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "City"


def test_function_tool_round_trip(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    first = client.responses.create(model="small", tools=[WEATHER],  # type: ignore[list-item]
                                    input=script([{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    _valid(first)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"city": "Oslo"}
    offered = upstream.last()["body"]["tools"]
    assert offered == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.", "parameters": WEATHER["parameters"]}}]
    second = client.responses.create(model="small", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                                     input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                                             "output": "sunny"}])
    assert second.output_text == "Tool said: sunny"
    messages = upstream.last()["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id


def test_previous_response_chain_retrieve_list_delete(client: openai.OpenAI, gateway: SwitchboardProcess,
                                                      upstream: FakeAgentUpstream) -> None:
    r1 = client.responses.create(model="small", input="first")
    r2 = client.responses.create(model="small", input="second", previous_response_id=r1.id)
    r3 = client.responses.create(model="small", input="third", previous_response_id=r2.id)
    messages = upstream.last()["body"]["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first"), ("assistant", "Plain answer."), ("user", "second"), ("assistant", "Plain answer."),
        ("user", "third")]
    assert r3.previous_response_id == r2.id
    got = client.responses.retrieve(r3.id)
    assert got.id == r3.id and got.output_text == "Plain answer."
    items = client.responses.input_items.list(r3.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].id.startswith("msg_")
    other = openai.OpenAI(base_url=gateway.url + "/v1", api_key=OTHER, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(r3.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="small", input="x", previous_response_id=r3.id)
    other.close()
    client.responses.delete(r3.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r3.id)


def test_store_false_stores_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model="small", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_anthropic_upstream(client: openai.OpenAI, claude_upstream: FakeAnthropic) -> None:
    response = client.responses.create(model="sonnet", input="hi", instructions="Short.", max_output_tokens=64)
    _valid(response)
    assert response.output_text == "Hello from claude-sonnet"
    sent = claude_upstream.requests[-1]["body"]
    assert sent["system"] == [{"type": "text", "text": "Short."}] and sent["max_tokens"] == 64
    with client.responses.stream(model="sonnet", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello from claude-sonnet"
    follow = client.responses.create(model="sonnet", input="again", previous_response_id=response.id)
    assert [m["role"] for m in claude_upstream.requests[-1]["body"]["messages"]] == ["user", "assistant", "user"]
    assert follow.status == "completed"


def test_agent_with_a_real_mcp_server(client: openai.OpenAI) -> None:
    response = client.responses.create(model="helper", input=script([{"name": "add", "arguments": {"a": 2, "b": 3}}]))
    _valid(response)
    assert response.output_text == "Tool said: 5"
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert reasoning and "Calling tools.add" in reasoning[0].summary[0].text
    with client.responses.stream(model="helper", input=script([{"name": "add", "arguments": {"a": 1, "b": 1}}])) as s:
        final = s.get_final_response()
    assert final.output_text == "Tool said: 2"


def test_errors_and_unservable_fields(gateway: SwitchboardProcess) -> None:
    headers = {"Authorization": f"Bearer {MASTER}"}
    bad = httpx.post(gateway.url + "/v1/responses", headers=headers,
                     json={"model": "small", "input": "x", "background": True})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "background"
    dropped = httpx.post(gateway.url + "/v1/responses", headers=headers,
                         json={"model": "small", "input": "x", "tools": [{"type": "web_search"}]})
    assert dropped.status_code == 200 and dropped.headers["x-switchboard-dropped-tools"] == "web_search"
    missing = httpx.post(gateway.url + "/v1/responses", headers=headers,
                         json={"model": "small", "input": "x", "previous_response_id": "resp_nope"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "previous_response_id"
    ws = httpx.get(gateway.url + "/v1/responses", headers={**headers, "Upgrade": "websocket", "Connection": "Upgrade",
                                                            "Sec-WebSocket-Version": "13",
                                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert ws.status_code == 426
    unknown = httpx.post(gateway.url + "/v1/responses", headers=headers, json={"model": "nope", "input": "x"})
    assert unknown.status_code == 404


def test_mcp_tools_on_the_gateways_servers_run_server_side(client: openai.OpenAI, gateway: SwitchboardProcess,
                                                           upstream: FakeAgentUpstream) -> None:
    tool = {"type": "mcp", "server_label": "tools", "require_approval": "never"}
    response = client.responses.create(model="small", tools=[tool],  # type: ignore[list-item]
                                       input=script([{"name": "add", "arguments": {"a": 2, "b": 3}}]))
    _valid(response)
    assert response.output_text == "Tool said: 5"
    reasoning = [item for item in response.output if item.type == "reasoning"]
    assert reasoning and "Calling tools.add" in reasoning[0].summary[0].text
    first = upstream.requests[-2]["body"]
    assert "add" in {t["function"]["name"] for t in first["tools"]} and first["messages"][0]["role"] == "user"
    only = {"type": "mcp", "server_label": "tools", "allowed_tools": ["add"], "require_approval": "never"}
    with client.responses.stream(model="small", tools=[only],  # type: ignore[list-item]
                                 input=script([{"name": "add", "arguments": {"a": 1, "b": 1}}])) as stream:
        final = stream.get_final_response()
    assert final.output_text == "Tool said: 2"
    assert {t["function"]["name"] for t in upstream.requests[-2]["body"]["tools"]} == {"add"}
    assert final.output[0].type == "mcp_list_tools" and "mcp_call" in [i.type for i in final.output]
    asking = {"type": "mcp", "server_label": "tools"}  # no require_approval: the spec's default, "always"
    pending = client.responses.create(model="small", tools=[asking],  # type: ignore[list-item]
                                      input=script([{"name": "add", "arguments": {"a": 3, "b": 3}}]))
    request = next(item for item in pending.output if item.type == "mcp_approval_request")
    approved = client.responses.create(model="small", tools=[asking],  # type: ignore[list-item]
                                       previous_response_id=pending.id, input=[{
                                           "type": "mcp_approval_response", "approval_request_id": request.id,
                                           "approve": True}])
    _valid(approved)
    assert approved.output_text == "Tool said: 6"
    headers = {"Authorization": f"Bearer {MASTER}"}
    for bad, param in (({"type": "mcp", "server_label": "elsewhere"}, "tools[0].server_label"),
                       ({"type": "mcp", "server_label": "tools", "server_url": "http://169.254.169.254/mcp"},
                        "tools[0].server_url")):
        resp = httpx.post(gateway.url + "/v1/responses", headers=headers,
                          json={"model": "small", "input": "x", "tools": [bad]})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param
