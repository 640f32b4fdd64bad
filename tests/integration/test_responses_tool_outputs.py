"""Tool outputs that are not only text, bridged to chat upstreams: Codex's `view_image` answers with a
`function_call_output` whose `output` is an `input_image` part (detail `original`). A chat tool
message holds text only, so the images follow the run of tool messages in one user message that
names each call (parallel calls keep their tool messages together), with the detail mapped to
chat's values; an Anthropic upstream gets them after its tool_result blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.integration.fixtures import running_gateway, scripted_config
from tests.server import SwitchboardProcess

KEY = "sk-tool-outputs"
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJ"
       "RU5ErkJggg==")
VIEW = {"type": "function", "name": "view_image", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream, claude_upstream: FakeAnthropic) -> Iterator[SwitchboardProcess]:
    with running_gateway(scripted_config(KEY, upstream, claude=claude_upstream)) as server:
        yield server


def _two_views() -> list[dict[str, Any]]:
    """A user turn, two parallel view_image calls, and their outputs: an image, then text and an image."""
    return [
        {"role": "user", "content": "look at both"},
        {"type": "function_call", "call_id": "call_a", "name": "view_image", "arguments": '{"path": "a.png"}'},
        {"type": "function_call", "call_id": "call_b", "name": "view_image", "arguments": '{"path": "b.png"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": [
            {"type": "input_image", "image_url": PNG, "detail": "original"}]},
        {"type": "function_call_output", "call_id": "call_b", "output": [
            {"type": "input_text", "text": "b.png, 2x2"}, {"type": "input_image", "image_url": PNG}]},
    ]


def _post(gateway: SwitchboardProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", json={"tools": [VIEW], "store": False, **body},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30)


def test_images_of_tool_outputs_follow_the_tool_messages(gateway: SwitchboardProcess,
                                                         upstream: FakeAgentUpstream) -> None:
    r = _post(gateway, {"model": "small", "input": [*_two_views(), {"role": "user", "content": "which is red?"}]})
    assert r.status_code == 200, r.text
    messages = upstream.last()["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user", "user"]
    note = "(The tool's output that is not text follows in the next message.)"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": note}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_b", "content": f"b.png, 2x2\n{note}"}
    assert messages[4]["content"] == [
        {"type": "text", "text": "The output of tool call call_a:"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},  # `original` is chat's `high`
        {"type": "text", "text": "The output of tool call call_b:"},
        {"type": "image_url", "image_url": {"url": PNG}}]
    assert messages[5] == {"role": "user", "content": "which is red?"}


def test_images_of_the_last_tool_outputs_end_the_conversation(gateway: SwitchboardProcess,
                                                              upstream: FakeAgentUpstream) -> None:
    r = _post(gateway, {"model": "small", "input": _two_views()})
    assert r.status_code == 200, r.text
    messages = upstream.last()["body"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user"]
    assert json.dumps(messages[-1]).count(PNG) == 2


def test_an_anthropic_upstream_gets_the_images_after_its_tool_results(gateway: SwitchboardProcess,
                                                                     claude_upstream: FakeAnthropic) -> None:
    r = _post(gateway, {"model": "sonnet", "input": _two_views()})
    assert r.status_code == 200, r.text  # the fake validates the turn as strictly as the real API
    last = claude_upstream.requests[-1]["body"]["messages"][-1]
    assert last["role"] == "user"
    assert [b["type"] for b in last["content"]] == ["tool_result", "tool_result", "text", "image", "text", "image"]


def test_a_user_image_with_detail_original(gateway: SwitchboardProcess, upstream: FakeAgentUpstream) -> None:
    r = _post(gateway, {"model": "small", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"},
        {"type": "input_image", "image_url": PNG, "detail": "original"}]}]})
    assert r.status_code == 200, r.text
    assert upstream.last()["body"]["messages"][0]["content"][1] == {
        "type": "image_url", "image_url": {"url": PNG, "detail": "high"}}
