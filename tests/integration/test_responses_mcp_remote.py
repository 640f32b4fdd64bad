"""Responses `mcp` tools on a client-named MCP server (`server_url`, allowed by `responses.allowed_mcp_urls`)
and `require_approval`, through the real server with the openai SDK, stream and not.

The MCP server is the real test server (tests/fakes/mcp_server.py, official SDK) over Streamable HTTP
on 127.0.0.1; the model is the scripted chat upstream. Every response and stream event is validated
against the official OpenAPI schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.mcp_http import http_mcp_server
from tests.integration.fixtures import MCP_SERVER, running_gateway, script, scripted_config
from tests.server import SwitchboardProcess, free_port
from tests.spec import validate_against_spec, validate_response_event

MASTER = "sk-mcp-remote-master"


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with http_mcp_server(MCP_SERVER) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream, mcp_url: str, dead_url: str) -> Iterator[SwitchboardProcess]:
    # No `mcp.servers`: the allow-list alone makes the gateway run the tool loop.
    config = scripted_config(MASTER, upstream, more=f'responses:\n  allowed_mcp_urls: ["{mcp_url}", "{dead_url}"]\n')
    with running_gateway(config) as server:
        yield server


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def remote(url: str, **extra: Any) -> Any:
    return {"type": "mcp", "server_label": "remote", "server_url": url, **extra}


def valid(response: Any) -> None:
    validate_against_spec("Response", response.model_dump(mode="json", exclude_unset=True))


def of_type(response: Any, kind: str) -> list[Any]:
    return [item for item in response.output if item.type == kind]


def stream_final(client: openai.OpenAI, **params: Any) -> Any:
    with client.responses.stream(**params) as stream:
        return stream.get_final_response()


def raw_events(gateway: SwitchboardProcess, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a streamed call, each checked: its `event:` line, its schema, its sequence number."""
    with httpx.stream("POST", gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {MASTER}"},
                      json={**body, "stream": True}) as resp:
        text = resp.read().decode()
    events = []
    for frame in (f for f in text.split("\n\n") if f.strip()):
        name, data = frame.split("\n", 1)
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        validate_response_event(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_allowed_url_runs_tools_with_the_clients_headers(client: openai.OpenAI, mcp_url: str,
                                                          upstream: FakeAgentUpstream) -> None:
    tool = remote(mcp_url, require_approval="never", headers={"X-Mcp-Test": "hello"}, authorization="tok-123")
    response = client.responses.create(model="small", tools=[tool], input=script([{"name": "headers"}]))
    valid(response)
    assert response.output[0].type == "mcp_list_tools"
    listing = of_type(response, "mcp_list_tools")[0]
    assert listing.server_label == "remote" and {"add", "echo", "headers"} <= {t.name for t in listing.tools}
    call = of_type(response, "mcp_call")[0]
    expected = "authorization=Bearer tok-123; x-mcp-test=hello"
    assert (call.server_label, call.name, call.output, call.error) == ("remote", "headers", expected, None)
    assert response.output_text == f"Tool said: {expected}"
    assert "headers" in {t["function"]["name"] for t in upstream.requests[-2]["body"]["tools"]}
    raw = client.responses.with_raw_response.retrieve(response.id).text  # the stored response
    stored = json.loads(raw)
    assert "authorization" not in stored["tools"][0] and stored["tools"][0]["headers"] == {"X-Mcp-Test": "<redacted>"}
    assert "tok-123" not in json.dumps(stored["tools"])  # (the `headers` tool itself echoed it in its output)


def test_stream_allowed_tools_and_listing_once(client: openai.OpenAI, mcp_url: str,
                                               upstream: FakeAgentUpstream) -> None:
    tool = remote(mcp_url, require_approval="never", allowed_tools=["add"])
    final = stream_final(client, model="small", tools=[tool], input=script([{"name": "add", "arguments": {"a": 2,
                                                                                                          "b": 5}}]))
    assert [t.name for t in of_type(final, "mcp_list_tools")[0].tools] == ["add"]
    assert {t["function"]["name"] for t in upstream.requests[-1]["body"]["tools"]} == {"add"}
    assert of_type(final, "mcp_call")[0].output == "7" and final.output_text == "Tool said: 7"
    again = client.responses.create(model="small", tools=[tool], previous_response_id=final.id, input="thanks")
    assert of_type(again, "mcp_list_tools") == []  # listed once per conversation
    assert again.output_text == "Plain answer."


def test_results_are_bounded(client: openai.OpenAI, mcp_url: str) -> None:
    response = client.responses.create(model="small", tools=[remote(mcp_url, require_approval="never")],
                                       input=script([{"name": "big", "arguments": {"size": 150_000}}]))
    output = of_type(response, "mcp_call")[0].output
    assert output.startswith("x" * 1000) and len(output) < 100_200 and "truncated" in output


def test_an_unreachable_allowed_server_is_reported(client: openai.OpenAI, dead_url: str) -> None:
    response = client.responses.create(model="small", tools=[remote(dead_url, require_approval="never")], input="hi")
    valid(response)
    listing = of_type(response, "mcp_list_tools")[0]
    assert listing.tools == [] and listing.error
    assert response.output_text == "Plain answer."


@pytest.mark.parametrize("make_url", [
    lambda u: u.replace("/mcp", "/other"),
    lambda u: u + "x",
    lambda u: u + "/../admin",
    lambda u: u.replace("http://", "http://user:pw@"),
    lambda u: u.replace("127.0.0.1", "localhost"),
    lambda u: "http://169.254.169.254/latest/meta-data",
])
def test_urls_not_allowed_are_refused(gateway: SwitchboardProcess, mcp_url: str, make_url: Any) -> None:
    url = make_url(mcp_url)
    resp = httpx.post(gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "small", "input": "x", "tools": [remote(url)]})
    error = resp.json()["error"]
    assert resp.status_code == 400 and error["param"] == "tools[0].server_url"
    assert url in error["message"] and "responses.allowed_mcp_urls" in error["message"]


def test_approval_by_default_then_approved(client: openai.OpenAI, mcp_url: str) -> None:
    tool = remote(mcp_url)  # no require_approval: the spec's default is "always"
    first = client.responses.create(model="small", tools=[tool], input=script([{"name": "add",
                                                                               "arguments": {"a": 2, "b": 3}}]))
    valid(first)
    request = of_type(first, "mcp_approval_request")[0]
    assert (request.server_label, request.name) == ("remote", "add") and '"a": 2' in request.arguments
    assert of_type(first, "mcp_call") == [] and first.output_text == ""
    assert of_type(client.responses.retrieve(first.id), "mcp_approval_request")[0].id == request.id  # kept pending
    second = client.responses.create(model="small", tools=[tool], previous_response_id=first.id, input=[
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}])
    valid(second)
    call = of_type(second, "mcp_call")[0]
    assert (call.name, call.output, call.approval_request_id) == ("add", "5", request.id)
    assert second.output_text == "Tool said: 5"


def test_denied_call_is_told_to_the_model(client: openai.OpenAI, mcp_url: str, upstream: FakeAgentUpstream) -> None:
    tool = remote(mcp_url, require_approval="always")
    first = client.responses.create(model="small", tools=[tool], input=script([{"name": "echo",
                                                                               "arguments": {"text": "hi"}}]))
    request = of_type(first, "mcp_approval_request")[0]
    second = client.responses.create(model="small", tools=[tool], previous_response_id=first.id, input=[
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False}])
    assert of_type(second, "mcp_call") == []
    assert second.output_text == "Tool said: Not run: the user denied this tool call."
    tool_messages = [m for m in upstream.requests[-1]["body"]["messages"] if m["role"] == "tool"]
    assert tool_messages[0]["tool_call_id"] == request.id


def test_approval_stream_round_trip(client: openai.OpenAI, mcp_url: str) -> None:
    tool = remote(mcp_url, require_approval={"never": {"tool_names": ["echo"]}})
    free = stream_final(client, model="small", tools=[tool], input=script([{"name": "echo",
                                                                            "arguments": {"text": "yo"}}]))
    assert of_type(free, "mcp_call")[0].output == "echo: yo" and free.output_text == "Tool said: echo: yo"
    first = stream_final(client, model="small", tools=[tool], input=script([{"name": "add",
                                                                            "arguments": {"a": 4, "b": 4}}]))
    request = of_type(first, "mcp_approval_request")[0]
    assert request.name == "add" and first.status == "completed"
    second = stream_final(client, model="small", tools=[tool], previous_response_id=first.id, input=[
        {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}])
    assert of_type(second, "mcp_call")[0].output == "8" and second.output_text == "Tool said: 8"


def test_stream_events_of_mcp_items_validate(gateway: SwitchboardProcess, mcp_url: str) -> None:
    tool = remote(mcp_url, require_approval={"always": {"tool_names": ["add"]}})
    body = {"model": "small", "tools": [tool], "input": script([{"name": "echo", "arguments": {"text": "a"}}])}
    events = raw_events(gateway, body)
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added[:2] == ["mcp_list_tools", "reasoning"] and "mcp_call" in added and added[-1] == "message"
    assert events[-1]["type"] == "response.completed"
    events = raw_events(gateway, {**body, "input": script([{"name": "add", "arguments": {"a": 1, "b": 2}}])})
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]][-1] == "mcp_approval_request"


def test_an_unknown_approval_request_is_a_404(gateway: SwitchboardProcess, mcp_url: str) -> None:
    resp = httpx.post(gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {MASTER}"}, json={
        "model": "small", "tools": [remote(mcp_url)],
        "input": [{"type": "mcp_approval_response", "approval_request_id": "mcpr_nope", "approve": True}]})
    assert resp.status_code == 404 and resp.json()["error"]["param"] == "input[0].approval_request_id"
