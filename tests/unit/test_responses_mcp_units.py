"""The pure parts of client-named MCP servers and approvals: the URL allow-list, the approval policy,
mcp items replayed as function calls; and Bedrock's embedding families and bounded fan-out."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.agents.mcp_remote import allowed_mcp_url, forwarded_headers
from switchboard.errors import GatewayError
from switchboard.headends.responses_mcp import (
    DENIED,
    MAX_REMOTE_SERVERS,
    NOT_ANSWERED,
    McpRun,
    McpToolSpec,
    mcp_items_as_calls,
    parse_mcp_tool,
)
from switchboard.providers.bedrock_embeddings import COHERE_V3, TITAN_V1, TITAN_V2, model_family
from switchboard.providers.concurrency import map_bounded

ALLOWED = ["https://mcp.example.com/tools", "http://10.0.0.5:8080/mcp/"]


@pytest.mark.parametrize(("url", "ok"), [
    ("https://mcp.example.com/tools", True),
    ("HTTPS://MCP.example.com:443/tools", True),  # scheme, host and default port normalised
    ("https://mcp.example.com/tools/sub", True),  # under the prefix, at a `/` boundary
    ("https://mcp.example.com/toolsx", False),
    ("https://mcp.example.com/tools/../admin", False),
    ("https://mcp.example.com/tools/%2e%2e/admin", False),
    ("https://user:pw@mcp.example.com/tools", False),
    ("https://mcp.example.com@evil.test/tools", False),
    ("http://mcp.example.com/tools", False),  # another scheme
    ("https://mcp.example.com:8443/tools", False),  # another port
    ("https://mcp.example.com/tools?x=1", False),  # a query only when the entry has it
    ("https://mcp.example.com/tools#frag", False),
    ("http://10.0.0.5:8080/mcp/", True),
    ("http://10.0.0.5:8080/mcp/x", True),
    ("http://10.0.0.5:8080/mcp", False),
    ("ftp://mcp.example.com/tools", False),
    ("not a url", False),
])
def test_allow_list(url: str, ok: bool) -> None:
    assert allowed_mcp_url(url, ALLOWED) is ok


def test_forwarded_headers_are_checked() -> None:
    assert forwarded_headers({"X-A": "1"}, "tok", "t") == {"X-A": "1", "Authorization": "Bearer tok"}
    for bad in ({"Host": "evil"}, {"X-A": "1\r\nX-B: 2"}, {"bad name": "x"}, {"X-A": 3}):
        with pytest.raises(ValueError):
            forwarded_headers(bad, None, "t")


def test_approval_policy() -> None:
    def spec(value: object) -> object:
        return parse_mcp_tool({"type": "mcp", "server_label": "s", "require_approval": value}, "tools[0]",
                              {"s": None}, [])

    assert spec(None).needs_approval("x")  # type: ignore[attr-defined]  # the spec's default: always
    assert not spec("never").needs_approval("x")  # type: ignore[attr-defined]
    never = spec({"never": {"tool_names": ["read"]}})
    assert not never.needs_approval("read") and never.needs_approval("write")  # type: ignore[attr-defined]
    always = spec({"always": {"tool_names": ["write"]}})
    assert always.needs_approval("write") and not always.needs_approval("read")  # type: ignore[attr-defined]
    with pytest.raises(GatewayError) as info:
        spec("sometimes")
    assert info.value.param == "tools[0].require_approval"


def test_mcp_items_replay_as_function_calls() -> None:
    items = [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "mcp_list_tools", "id": "l1", "server_label": "s", "tools": []},
        {"type": "mcp_call", "id": "c1", "server_label": "s", "name": "add", "arguments": "{}", "output": "5"},
        {"type": "mcp_approval_request", "id": "r1", "server_label": "s", "name": "rm", "arguments": "{}"},
        {"type": "mcp_approval_response", "approval_request_id": "r1", "approve": False},
        {"type": "mcp_approval_request", "id": "r2", "server_label": "s", "name": "ls", "arguments": "{}"},
        {"type": "mcp_approval_response", "approval_request_id": "r2", "approve": True},
        {"type": "mcp_call", "id": "c2", "server_label": "s", "name": "ls", "arguments": "{}", "output": None,
         "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": "nope"}]},
         "approval_request_id": "r2"},
        {"type": "mcp_approval_request", "id": "r3", "server_label": "s", "name": "cp", "arguments": "{}"},
    ]
    out = mcp_items_as_calls(items)
    assert [(i["type"], i.get("call_id"), i.get("output")) for i in out] == [
        ("message", None, None),
        ("function_call", "c1", None), ("function_call_output", "c1", "5"),
        ("function_call", "r1", None), ("function_call_output", "r1", DENIED),
        ("function_call", "r2", None), ("function_call_output", "r2", "Error: nope"),
        ("function_call", "r3", None), ("function_call_output", "r3", NOT_ANSWERED),
    ]
    plain = [{"type": "message", "role": "user", "content": "hi"}]
    assert mcp_items_as_calls(plain) is plain


@pytest.mark.parametrize(("model", "family"), [
    ("amazon.titan-embed-text-v2:0", TITAN_V2), ("us.amazon.titan-embed-text-v2:0", TITAN_V2),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v1", TITAN_V1),
    ("cohere.embed-multilingual-v3", COHERE_V3), ("amazon.nova-lite-v1:0", None), ("cohere.command-r-v1:0", None),
])
def test_embedding_families(model: str, family: str | None) -> None:
    assert model_family(model) == family


def test_map_bounded_keeps_order_bounds_and_fails_fast() -> None:
    running, peak, cancelled = 0, 0, 0

    async def work(n: int) -> int:
        nonlocal running, peak, cancelled
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.001 * (n % 3))
            if n == 13:
                raise ValueError("thirteen")
            return n * 2
        except asyncio.CancelledError:
            cancelled += 1
            raise
        finally:
            running -= 1

    assert asyncio.run(map_bounded(work, list(range(12)), 4)) == [n * 2 for n in range(12)]
    assert peak == 4
    with pytest.raises(ValueError, match="thirteen"):
        asyncio.run(map_bounded(work, list(range(40)), 4))
    assert running == 0


def test_a_request_names_a_bounded_number_of_servers() -> None:
    def specs(n: int) -> list[McpToolSpec]:
        return [McpToolSpec(f"s{i}", f"https://mcp.example.com/{i}", {}, None, "never") for i in range(n)]

    assert len(McpRun(specs(MAX_REMOTE_SERVERS), None, []).specs) == MAX_REMOTE_SERVERS
    with pytest.raises(GatewayError) as info:
        McpRun(specs(MAX_REMOTE_SERVERS + 1), None, [])
    assert info.value.param == "tools"
    with pytest.raises(GatewayError):
        McpRun([*specs(1), *specs(1)], None, [])  # the same label twice
