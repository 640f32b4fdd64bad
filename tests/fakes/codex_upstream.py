"""A fake OpenAI chat upstream that plays the model for Codex CLI (behind the gateway's Responses
headend), from the prompt (the last user message):

- `Run: <command>`: asks for that shell command through the shell tool Codex offers
  (`exec_command` {"cmd"}, `shell_command` {"command": str} or `shell` {"command": [argv]},
  whichever the request's tools hold), then answers "Done. The tool said:\\n<the tool's output>";
- a prompt holding an apply_patch patch (`*** Begin Patch` ... `*** End Patch`): calls the
  `apply_patch` tool (a custom, free-form tool, bridged by the gateway as a function with one
  `input` argument) with that patch, then answers the same way;
- `Call: <tool> <JSON arguments>`: calls that tool (an MCP tool Codex offers as a namespace
  `mcp__<server>` matches by its own name); when it is not offered but Codex's client-executed
  `tool_search` is, searches for it first and calls it once the search has loaded it;
- anything else: "Plain answer.".

The prompt is the last user message in plain text (a tool's images come after its result in a
user message of parts, so they do not count). A request that offers no shell tool when one is
needed gets a 400 naming the tools it offered, so a Codex version that renames its tool fails the
test with the reason. Requests (the chat bodies the gateway sent) are recorded in `requests`, as in
every fake.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from tests.fakes.agent_upstream import FakeAgentUpstream

_PATCH = re.compile(r"\*\*\* Begin Patch\n.*?\*\*\* End Patch\n?", re.S)


class NoShellTool(Exception):
    pass


def _tool_names(body: dict[str, Any]) -> list[str]:
    return [str((t.get("function") or {}).get("name")) for t in body.get("tools") or ()]


def shell_call(body: dict[str, Any], command: str) -> tuple[str, dict[str, Any]]:
    """(tool name, arguments) that run `command` through the shell tool the request offers."""
    names = _tool_names(body)
    if "exec_command" in names:
        return "exec_command", {"cmd": command}
    if "shell_command" in names:
        return "shell_command", {"command": command}
    if "shell" in names:
        return "shell", {"command": ["bash", "-lc", command]}
    raise NoShellTool(f"no shell tool among the offered tools {names}")


def _call(name: str, arguments: dict[str, Any], n: int) -> list[dict[str, Any]]:
    return [{"id": f"call_codex_{n}", "name": name, "arguments": json.dumps(arguments)}]


def call_through_search(body: dict[str, Any], tool: str, arguments: dict[str, Any], called: list[str],
                        results: list[str]) -> tuple[str, list[dict[str, Any]]]:
    names = _tool_names(body)
    target = next((n for n in names if n == tool or n.endswith("__" + tool)), None)
    if target is not None and target in called:
        return "Done. The tool said:\n" + results[-1], []
    if target is not None:
        return "", _call(target, arguments, len(called) + 1)
    if "tool_search" in names and "tool_search" not in called:
        return "", _call("tool_search", {"query": tool}, len(called) + 1)
    raise NoShellTool(f"{tool} is not among the offered tools {names}")


class FakeCodexUpstream(FakeAgentUpstream):
    def decide(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        messages = body.get("messages") or []
        # the prompt: the last user message in text (a tool's images come after its result as parts)
        last_user = max((i for i, m in enumerate(messages)
                         if m.get("role") == "user" and isinstance(m.get("content"), str)), default=-1)
        prompt = messages[last_user].get("content") if last_user >= 0 else ""
        after = messages[last_user + 1:]
        called = [c["function"]["name"] for m in after if m.get("role") == "assistant"
                  for c in m.get("tool_calls") or ()]
        results = [str(m.get("content")) for m in after if m.get("role") == "tool"]
        if isinstance(prompt, str) and prompt.startswith("Call: "):
            tool, _, arguments = prompt.removeprefix("Call: ").partition(" ")
            return call_through_search(body, tool, json.loads(arguments or "{}"), called, results)
        if results:
            return "Done. The tool said:\n" + results[-1], []
        if isinstance(prompt, str) and prompt.startswith("Run: "):
            name, arguments = shell_call(body, prompt.removeprefix("Run: "))
        elif isinstance(prompt, str) and (patch := _PATCH.search(prompt)):
            if "apply_patch" not in _tool_names(body):
                raise NoShellTool(f"no apply_patch among the offered tools {_tool_names(body)}")
            name, arguments = "apply_patch", {"input": patch.group(0)}
        else:
            return "Plain answer.", []
        return "", _call(name, arguments, 1)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            return await super().chat(request)
        except NoShellTool as exc:
            return web.json_response({"error": {"message": str(exc), "type": "invalid_request_error",
                                                "param": "tools", "code": None}}, status=400)
