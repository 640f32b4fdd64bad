"""A client-executed `tool_search` (Codex defers its MCP servers' tools behind one, for the models it
knows) bridged to a chat upstream: offered as a function, a call to it comes back as a
`tool_search_call`, and the tools a `tool_search_output` loaded are offered from then on (in the
same input or along a `previous_response_id` chain), their calls turned back into namespaced
`function_call`s. A server-executed tool search is still a hosted tool: dropped and named.
Every answer and stream event is validated against the official OpenAPI schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.codex_upstream import FakeCodexUpstream
from tests.integration.fixtures import running_gateway, scripted_config
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec, validate_response_event

KEY = "sk-tool-search"
SEARCH = {"type": "tool_search", "execution": "client", "description": "Search the deferred tools.",
          "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "number"}},
                         "required": ["query"], "additionalProperties": False}}
LOADED = {"type": "namespace", "name": "mcp__calc", "description": "Tools of the calc MCP server.",
          "tools": [{"type": "function", "name": "add", "description": "Add two integers.", "defer_loading": True,
                     "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                                     "b": {"type": "integer"}}}}]}
PROMPT = 'Call: add {"a": 2, "b": 40}'


@pytest.fixture(scope="module")
def gateway(codex_upstream: FakeCodexUpstream) -> Iterator[SwitchboardProcess]:
    with running_gateway(scripted_config(KEY, codex_upstream, models={"coder": "up/coder-model"})) as server:
        yield server


def _post(gateway: SwitchboardProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", json={"model": "coder", **body},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def _offered(codex_upstream: FakeCodexUpstream) -> list[str]:
    return [t["function"]["name"] for t in codex_upstream.last()["body"].get("tools") or ()]


def _search_output(call: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_search_output", "call_id": call["call_id"], "execution": "client", "tools": [LOADED],
            "status": "completed"}


def test_a_search_call_comes_back_as_a_tool_search_call(gateway: SwitchboardProcess,
                                                        codex_upstream: FakeCodexUpstream) -> None:
    r = _post(gateway, {"input": PROMPT, "tools": [SEARCH]})
    assert r.status_code == 200, r.text
    validate_against_spec("Response", r.json())
    [call] = r.json()["output"]
    assert call["type"] == "tool_search_call" and call["execution"] == "client" and call["status"] == "completed"
    assert call["arguments"] == {"query": "add"} and call["id"].startswith("tsc_") and call["call_id"]
    assert "x-switchboard-dropped-tools" not in r.headers
    offered = codex_upstream.last()["body"]["tools"]
    assert offered == [{"type": "function", "function": {
        "name": "tool_search", "description": "Search the deferred tools.", "parameters": SEARCH["parameters"]}}]


def test_a_streamed_search_call_and_its_events(gateway: SwitchboardProcess) -> None:
    with httpx.stream("POST", gateway.url + "/v1/responses", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "coder", "input": PROMPT, "tools": [SEARCH], "stream": True}) as raw:
        frames = [f for f in raw.read().decode().split("\n\n") if f.strip()]
    events = [json.loads(frame.split("\n", 1)[1].removeprefix("data: ")) for frame in frames]
    for event in events:
        validate_response_event(event)
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" not in kinds and kinds[-1] == "response.completed"
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert done == events[-1]["response"]["output"] and len(done) == 1
    assert done[0]["type"] == "tool_search_call" and done[0]["arguments"] == {"query": "add"}


def test_the_tools_a_search_loaded_are_offered_and_called(gateway: SwitchboardProcess,
                                                          codex_upstream: FakeCodexUpstream) -> None:
    # stateless, as Codex sends it (store: false, the whole conversation every time)
    call = _post(gateway, {"input": PROMPT, "tools": [SEARCH], "store": False}).json()["output"][0]
    r = _post(gateway, {"input": [{"role": "user", "content": PROMPT}, call, _search_output(call)],
                        "tools": [SEARCH], "store": False})
    assert r.status_code == 200, r.text
    validate_against_spec("Response", r.json())
    assert _offered(codex_upstream) == ["tool_search", "mcp__calc__add"]
    messages = codex_upstream.last()["body"]["messages"]
    assert messages[1]["tool_calls"][0]["function"]["name"] == "tool_search"
    assert messages[2] == {"role": "tool", "tool_call_id": call["call_id"], "content": "Loaded tools: mcp__calc__add"}
    [add] = r.json()["output"]
    assert add["type"] == "function_call" and add["name"] == "add" and add["namespace"] == "mcp__calc"
    assert json.loads(add["arguments"]) == {"a": 2, "b": 40}


def test_loaded_tools_stay_offered_along_a_chain(gateway: SwitchboardProcess,
                                                 codex_upstream: FakeCodexUpstream) -> None:
    first = _post(gateway, {"input": PROMPT, "tools": [SEARCH]}).json()
    second = _post(gateway, {"previous_response_id": first["id"], "tools": [SEARCH],
                             "input": [_search_output(first["output"][0])]}).json()
    add = second["output"][0]
    assert add["type"] == "function_call" and add["namespace"] == "mcp__calc"
    third = _post(gateway, {"previous_response_id": second["id"], "tools": [SEARCH], "input": [
        {"type": "function_call_output", "call_id": add["call_id"], "output": "42"}]})
    assert third.status_code == 200, third.text
    assert _offered(codex_upstream) == ["tool_search", "mcp__calc__add"]  # loaded two turns ago, still there
    assert third.json()["output"][0]["content"][0]["text"] == "Done. The tool said:\n42"


def test_a_server_executed_tool_search_is_a_hosted_tool(gateway: SwitchboardProcess) -> None:
    r = _post(gateway, {"input": "hello", "tools": [{"type": "tool_search"}]})
    assert r.status_code == 200 and r.headers["x-switchboard-dropped-tools"] == "tool_search"
