"""The plain types shared by the MCP pool and the tool loop (no SDK import, so the loop tests need no MCP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["McpTool", "RequestTools", "ToolOutcome"]


@dataclass(slots=True, frozen=True)
class McpTool:
    """One tool of one MCP server, as listed by the server."""

    server: str
    name: str
    description: str = ""
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(slots=True, frozen=True)
class ToolOutcome:
    """A tool's result as text for the model; `is_error` marks failures (fed back, never raised)."""

    text: str
    is_error: bool = False


@dataclass(slots=True, frozen=True)
class RequestTools:
    """MCP tools one request brings to the tool loop (a Responses call's `mcp` tools), and how to run them."""

    tools: list[McpTool]
    call: Callable[[McpTool, dict[str, Any]], Awaitable[ToolOutcome]]
