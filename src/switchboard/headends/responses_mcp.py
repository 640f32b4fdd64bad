"""The Responses API's `mcp` tools, run server-side: which servers, which tools, approvals, output items.

An `mcp` tool names a server by `server_label`: a server of the gateway's (`mcp.servers`), or, with a
`server_url`, one the client points at, which is connected only when `responses.allowed_mcp_urls`
allows the URL (agents/mcp_remote.py: exact or under a prefix, normalised; anything else is a 400
naming the URL and that key). A client's server gets its own Streamable-HTTP session for the
request (at most `MAX_REMOTE_SERVERS` per request), with the tool's `headers` / `authorization`
(sent to that server only), closed when the request ends. `allowed_tools` narrows the tools offered.

`require_approval` (the spec's default is `always`): `never`; `always`; or a filter
`{"never": {"tool_names": [...]}, "always": {...}}` (a tool in neither list needs approval unless
only an `always` list was given). A tool that runs freely is offered to the tool loop (agents/
runner.py) with the other MCP tools and each call comes back as an `mcp_call` item; a tool that needs
approval is offered as a client function, so a call of it ends the loop, and comes back as an
`mcp_approval_request` item (id, server_label, name, arguments) instead of running. The client goes
on with `previous_response_id` and an `mcp_approval_response` input item: approved, the tool runs
first (an `mcp_call` with its `approval_request_id`) and the loop continues; denied, the model is told
the call was denied. `mcp_list_tools` items list each server's tools once per conversation.

`mcp_items_as_calls` turns a conversation's mcp items back into the function calls and outputs a
chat model understands (`to_hub` takes those).
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..agents.tools import McpTool, RequestTools, ToolOutcome
from ..errors import GatewayError, bad_request
from ..hub import Chunk, HubStream

if TYPE_CHECKING:
    from ..agents.mcp import McpPool
    from ..agents.mcp_remote import RemoteMcpSession

__all__ = ["ITEM_KEY", "McpItemsStream", "McpRun", "McpToolSpec", "mcp_items_as_calls", "parse_mcp_tool"]

# A hub chunk that carries one whole Responses output item (the Responses stream encoder emits it as is).
ITEM_KEY = "_switchboard_output_item"
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")
MAX_REMOTE_SERVERS = 8  # client-named MCP servers one request may have the gateway connect to
DENIED = "Not run: the user denied this tool call."
NOT_ANSWERED = "Not run: the call was not approved."


@dataclass(slots=True)
class McpToolSpec:
    """One `mcp` tool of a request."""

    label: str
    url: str | None  # a client-named server; None: the gateway's server of that label
    headers: dict[str, str]
    allowed: set[str] | None  # allowed_tools, or None for all
    approval: str | dict[str, set[str]]  # "always" / "never" / {"always": names, "never": names}

    def needs_approval(self, tool: str) -> bool:
        if isinstance(self.approval, str):
            return self.approval != "never"
        if tool in self.approval.get("never", set()):
            return False
        if tool in self.approval.get("always", set()):
            return True
        return "always" not in self.approval


def _names(value: Any, where: str) -> set[str]:
    if isinstance(value, dict):
        value = value.get("tool_names")
    if value is None:
        return set()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"{where}: a list of tool names (or {{\"tool_names\": [...]}})", param=where,
                          code="invalid_value")
    return set(value)


def _approval(value: Any, at: str) -> str | dict[str, set[str]]:
    if value is None:
        return "always"
    if value in ("always", "never"):
        return str(value)
    if isinstance(value, dict) and value and set(value) <= {"always", "never"}:
        return {key: _names(filt, f"{at}.require_approval.{key}") for key, filt in value.items()}
    raise bad_request(f"{at}.require_approval: 'always', 'never' or {{\"always\"|\"never\": {{\"tool_names\": "
                      "[...]}}}}", param=f"{at}.require_approval", code="invalid_value")


def parse_mcp_tool(tool: dict[str, Any], at: str, servers: Mapping[str, str | None],
                   allowed_urls: list[str]) -> McpToolSpec:
    """An `mcp` tool of the request, checked: its server is the gateway's or an allowed URL (no SSRF)."""
    from ..agents.mcp_remote import allowed_mcp_url, forwarded_headers

    label = tool.get("server_label")
    if not isinstance(label, str) or not label:
        raise bad_request(f"{at}.server_label: Field required", param=f"{at}.server_label",
                          code="missing_required_parameter")
    if tool.get("connector_id") is not None:
        raise bad_request(f"{at}.connector_id: connectors are not served here.", param=f"{at}.connector_id",
                          code="unsupported_parameter")
    url = tool.get("server_url")
    approval = _approval(tool.get("require_approval"), at)
    allowed = _names(tool.get("allowed_tools"), f"{at}.allowed_tools") or None
    if url is None or (label in servers and url == servers[label]):
        if label not in servers:
            known = ", ".join(sorted(servers)) or "none are configured"
            raise bad_request(f"{at}.server_label: an `mcp` tool without `server_url` names an MCP server of this "
                              f"gateway (mcp.servers: {known}).", param=f"{at}.server_label",
                              code="unknown_mcp_server")
        return McpToolSpec(label, None, {}, allowed, approval)
    if not isinstance(url, str) or not allowed_mcp_url(url, allowed_urls):
        raise bad_request(f"{at}.server_url: `{str(url)[:300]}` is not an MCP server this gateway may connect to; "
                          "an operator allows URLs in the config's `responses.allowed_mcp_urls`.",
                          param=f"{at}.server_url", code="mcp_server_url_not_allowed")
    try:
        headers = forwarded_headers(tool.get("headers"), tool.get("authorization"), at)
    except ValueError as exc:
        raise bad_request(str(exc), param=at, code="invalid_value") from None
    return McpToolSpec(label, url, headers, allowed, approval)


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def _chat_name(name: str) -> str:
    return _NAME_BAD.sub("_", name)[:64] or "tool"


def _error(text: str) -> dict[str, Any]:
    return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": text}]}


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        parts = error.get("content") or []
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict)) or str(error.get("message") or "")
        return text or "failed"
    return str(error or "failed")


def mcp_items_as_calls(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation's items with the mcp ones as function calls and outputs (`mcp_list_tools` left out);
    an approval request that was never answered gets an output saying it did not run."""
    if not any(str(item.get("type", "")).startswith("mcp_") for item in items):
        return items
    answered = {str(item.get("approval_request_id")) for item in items
                if item.get("type") in ("mcp_approval_response", "mcp_call") and item.get("approval_request_id")}
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "mcp_list_tools":
            continue
        if kind == "mcp_approval_request":
            call_id = str(item.get("id"))
            out.append({"type": "function_call", "call_id": call_id, "name": _chat_name(str(item.get("name"))),
                        "arguments": str(item.get("arguments") or "{}")})
            if call_id not in answered:
                out.append({"type": "function_call_output", "call_id": call_id, "output": NOT_ANSWERED})
        elif kind == "mcp_approval_response":
            if not item.get("approve"):
                reason = f" Reason: {item['reason']}" if isinstance(item.get("reason"), str) else ""
                out.append({"type": "function_call_output", "call_id": str(item.get("approval_request_id")),
                            "output": DENIED + reason})
        elif kind == "mcp_call":
            request_id = item.get("approval_request_id")
            call_id = str(request_id or item.get("id"))
            if not request_id:
                out.append({"type": "function_call", "call_id": call_id, "name": _chat_name(str(item.get("name"))),
                            "arguments": str(item.get("arguments") or "{}")})
            output = item.get("output")
            text = output if isinstance(output, str) and not item.get("error") else \
                f"Error: {_error_text(item.get('error'))}"
            out.append({"type": "function_call_output", "call_id": call_id, "output": text})
        else:
            out.append(item)
    return out


class McpRun:
    """One request's `mcp` tools: sessions, tools, approvals and the items they produce. `aclose()` at the end."""

    def __init__(self, specs: list[McpToolSpec], pool: McpPool | None, history: list[dict[str, Any]]) -> None:
        labels = [spec.label for spec in specs]
        if len(set(labels)) != len(labels):
            raise bad_request("tools: two `mcp` tools have the same `server_label`.", param="tools",
                              code="invalid_value")
        if sum(spec.url is not None for spec in specs) > MAX_REMOTE_SERVERS:
            raise bad_request(f"tools: at most {MAX_REMOTE_SERVERS} `mcp` tools with a `server_url` per request.",
                              param="tools", code="invalid_value")
        self.specs = {spec.label: spec for spec in specs}
        self.pool = pool
        self.listed = {str(item.get("server_label")) for item in history if item.get("type") == "mcp_list_tools"}
        self.sessions: dict[str, RemoteMcpSession] = {}
        self.tools: dict[str, list[McpTool]] = {}
        self.errors: dict[str, str | None] = {}
        self.approval_tools: dict[str, McpTool] = {}  # chat function name -> the tool it asks approval for
        self._calls: list[dict[str, Any]] = []

    async def open(self) -> None:
        from ..agents.mcp_remote import RemoteMcpSession

        for spec in self.specs.values():
            if spec.url is not None:
                self.sessions[spec.label] = RemoteMcpSession(spec.label, spec.url, spec.headers)
        await asyncio.gather(*(s.open() for s in self.sessions.values()))
        for label, spec in self.specs.items():
            session = self.sessions.get(label)
            if session is not None:
                tools, error = session.tools, session.error
            else:
                server = self.pool.servers.get(label) if self.pool is not None else None
                tools = list(server.tools.values()) if server is not None else []
                error = None if server is not None and server.connected else \
                    f"MCP server `{label}` is not connected" + (f": {server.last_error}" if server and
                                                                server.last_error else "")
            self.tools[label] = [t for t in tools if spec.allowed is None or t.name in spec.allowed]
            self.errors[label] = error

    async def aclose(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(*(s.aclose() for s in sessions), return_exceptions=True)

    # -- what the tool loop gets
    def request_tools(self) -> RequestTools:
        free = [t for label, tools in self.tools.items() for t in tools if not self.specs[label].needs_approval(t.name)]
        return RequestTools(free, self._run_recorded)

    def approval_functions(self, taken: set[str]) -> list[dict[str, Any]]:
        """The tools that need approval, as client functions (a call of one ends the loop); `taken`: names in use."""
        out: list[dict[str, Any]] = []
        for label, tools in self.tools.items():
            for tool in tools:
                if not self.specs[label].needs_approval(tool.name):
                    continue
                name = _chat_name(tool.name)
                if name in taken or name in self.approval_tools:
                    name = _chat_name(f"{label}__{tool.name}")
                self.approval_tools[name] = tool
                out.append({"type": "function", "function": {"name": name, "description": tool.description,
                                                             "parameters": tool.input_schema}})
        return out

    async def _run(self, label: str, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        session = self.sessions.get(label)
        if session is not None:
            return await session.call(name, arguments)
        if self.pool is None:
            return ToolOutcome(f"unknown MCP server `{label}`", True)
        return await self.pool.call(label, name, arguments)

    def _call_item(self, tool: McpTool, arguments: dict[str, Any], outcome: ToolOutcome,
                   approval_request_id: str | None = None) -> dict[str, Any]:
        return {"type": "mcp_call", "id": _item_id("mcp"), "server_label": tool.server, "name": tool.name,
                "arguments": orjson.dumps(arguments).decode(),
                "output": None if outcome.is_error else outcome.text,
                "error": _error(outcome.text) if outcome.is_error else None,
                "status": "failed" if outcome.is_error else "completed", "approval_request_id": approval_request_id}

    async def _run_recorded(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        outcome = await self._run(tool.server, tool.name, arguments)
        self._calls.append(self._call_item(tool, arguments, outcome))
        return outcome

    # -- items
    def list_items(self) -> list[dict[str, Any]]:
        return [{"type": "mcp_list_tools", "id": _item_id("mcpl"), "server_label": label,
                 "tools": [{"name": t.name, "description": t.description, "input_schema": t.input_schema,
                            "annotations": None} for t in tools], "error": self.errors.get(label)}
                for label, tools in self.tools.items() if label not in self.listed]

    def take_calls(self) -> list[dict[str, Any]]:
        calls, self._calls = self._calls, []
        return calls

    def approval_request(self, chat_name: str, arguments: str) -> dict[str, Any] | None:
        tool = self.approval_tools.get(chat_name)
        if tool is None:
            return None
        return {"type": "mcp_approval_request", "id": _item_id("mcpr"), "server_label": tool.server,
                "name": tool.name, "arguments": arguments or "{}"}

    async def answer_approvals(self, items: list[dict[str, Any]], known: dict[str, dict[str, Any]]
                               ) -> list[dict[str, Any]]:
        """Run the approved calls of this input's `mcp_approval_response` items: their `mcp_call` items."""
        done: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            if item.get("type") != "mcp_approval_response":
                continue
            where = f"input[{i}]"
            if not isinstance(item.get("approve"), bool):
                raise bad_request(f"{where}.approve: Field required (true or false)", param=f"{where}.approve",
                                  code="missing_required_parameter")
            request = known.get(str(item.get("approval_request_id")))
            if request is None or request.get("type") != "mcp_approval_request":
                raise GatewayError(404, f"{where}.approval_request_id: no pending `mcp_approval_request` "
                                   f"'{str(item.get('approval_request_id'))[:128]}' in this conversation "
                                   "(send it with `previous_response_id`).", "invalid_request_error",
                                   param=f"{where}.approval_request_id", code="approval_request_not_found",
                                   retryable=False)
            label, name = str(request.get("server_label")), str(request.get("name"))
            if label not in self.specs:
                raise bad_request(f"{where}: the approved call is for MCP server `{label}`, which is not among this "
                                  "request's `mcp` tools.", param="tools", code="unknown_mcp_server")
            if not item["approve"]:
                continue
            try:
                arguments = orjson.loads(request.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                arguments = None
            tool = McpTool(label, name)
            if not isinstance(arguments, dict):
                outcome = ToolOutcome(f"the arguments of `{name}` are not a JSON object", True)
                arguments = {}
            else:
                outcome = await self._run(label, name, arguments)
            done.append(self._call_item(tool, arguments, outcome, str(request["id"])))
        return done

    def finish_output(self, output: list[dict[str, Any]], first: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A non-stream response's output: `first` (listings, approved calls), the calls the loop ran,
        then the answer's items, calls of approval-needing tools as approval requests."""
        answer: list[dict[str, Any]] = []
        for item in output:
            approval = self.approval_request(str(item.get("name")), str(item.get("arguments") or "")) \
                if item.get("type") == "function_call" else None
            answer.append(approval or item)
        return [*first, *self.take_calls(), *answer]

    def convert(self, batch: list[Chunk]) -> list[Chunk]:
        """A batch of the loop's chunks, with the calls run since as whole items and calls of
        approval-needing tools turned into approval requests."""
        out: list[Chunk] = [{ITEM_KEY: item} for item in self.take_calls()]
        for chunk in batch:
            frags = _tool_fragments(chunk)
            if not frags or not any(f.get("function", {}).get("name") in self.approval_tools for f in frags):
                out.append(chunk)
                continue
            keep = []
            for frag in frags:
                function = frag.get("function") or {}
                request = self.approval_request(str(function.get("name")), str(function.get("arguments") or ""))
                if request is None:
                    keep.append(frag)
                else:
                    out.append({ITEM_KEY: request})
            choice = {**chunk["choices"][0], "delta": {**chunk["choices"][0]["delta"], "tool_calls": keep}}
            if keep:
                out.append({**chunk, "choices": [choice]})
        return out


def _tool_fragments(chunk: Chunk) -> list[dict[str, Any]]:
    choices = chunk.get("choices")
    if not choices or not isinstance(choices[0], dict):
        return []
    delta = choices[0].get("delta")
    frags = delta.get("tool_calls") if isinstance(delta, dict) else None
    return [f for f in frags if isinstance(f, dict)] if isinstance(frags, list) else []


class McpItemsStream:
    """The tool loop's `HubStream` with the mcp items in it (see `McpRun.convert`); closing it closes the
    request's MCP sessions too."""

    __slots__ = ("_inner", "_run", "first", "headers")

    def __init__(self, inner: HubStream, run: McpRun, leading: list[dict[str, Any]]) -> None:
        self._inner = inner
        self._run = run
        self.headers = inner.headers
        self.first = [*({ITEM_KEY: item} for item in leading), *run.convert(inner.first)]

    async def rest(self) -> AsyncIterator[list[Chunk]]:
        async for batch in self._inner.rest():
            converted = self._run.convert(batch)
            if converted:
                yield converted

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            await self._run.aclose()
