"""MCP servers a client names by URL (a Responses `mcp` tool's `server_url`): the allow-list check and
one Streamable-HTTP client session per request (official `mcp` SDK, as `mcp.py`).

`allowed_mcp_url(url, allowed)` normalises the URL (scheme and host lowercased, the default port
made explicit, no userinfo, no fragment, no `.`/`..` path segments, encoded or not) and accepts it
when it equals an entry of `responses.allowed_mcp_urls` (normalised alike) or lies under one (same
scheme, host and port; the entry's path a prefix ending at a `/` boundary; no query unless exact).

`RemoteMcpSession` connects in a task of its own (anyio's cancel scopes must be entered and left in
one task; a streamed answer is closed from another), initialises and lists the tools within
`CONNECT_TIMEOUT_S`; each call is bounded by `CALL_TIMEOUT_S` and its rendered result by
`MAX_RESULT_CHARS`. The client's `headers` / `authorization` go to that server only. Redirects are
not followed (a redirect could lead anywhere the allow-list does not). `aclose()` ends the session;
the headend closes it when the request ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import httpx
import mcp.types as mt
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client

from .mcp import CLIENT_INFO, _describe, _render
from .tools import McpTool, ToolOutcome

__all__ = ["CALL_TIMEOUT_S", "CONNECT_TIMEOUT_S", "MAX_RESULT_CHARS", "RemoteMcpSession", "allowed_mcp_url",
           "normalise_url"]

log = logging.getLogger("switchboard.mcp")

CONNECT_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 60.0
MAX_RESULT_CHARS = 100_000
MAX_TOOLS = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_NOT_FORWARDED = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
                            "mcp-session-id", "mcp-protocol-version"})
MAX_HEADERS = 32
MAX_HEADER_BYTES = 8192


def normalise_url(url: str) -> tuple[str, str, int, str, str] | None:
    """(scheme, host, port, path, query) of an http(s) URL, or None when it is not one we would call."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None or "@" in parts.netloc \
            or parts.fragment:
        return None
    path = parts.path or "/"
    if any(segment in (".", "..") for segment in unquote(path).split("/")) or "\\" in unquote(path):
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], path, parts.query


def allowed_mcp_url(url: str, allowed: list[str]) -> bool:
    """Whether `url` is an entry of `allowed` or under one (see the module docstring)."""
    wanted = normalise_url(url)
    if wanted is None:
        return False
    for entry in allowed:
        base = normalise_url(entry)
        if base is None or base[:3] != wanted[:3]:
            continue
        if base[3:] == wanted[3:]:
            return True
        prefix = base[3] if base[3].endswith("/") else base[3] + "/"
        if not base[4] and not wanted[4] and wanted[3].startswith(prefix):
            return True
    return False


def forwarded_headers(headers: Any, authorization: Any, where: str) -> dict[str, str]:
    """The headers a client gave for its MCP server, checked; raises ValueError naming the problem."""
    out: dict[str, str] = {}
    if headers is not None:
        if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
            raise ValueError(f"{where}.headers: an object of at most {MAX_HEADERS} string headers")
        for name, value in headers.items():
            if not isinstance(value, str) or not _HEADER_NAME.match(name) or name.lower() in _NOT_FORWARDED \
                    or len(value) > MAX_HEADER_BYTES or "\r" in value or "\n" in value:
                raise ValueError(f"{where}.headers: header `{name[:100]}` cannot be sent")
            out[name] = value
    if authorization is not None:
        if not isinstance(authorization, str) or not authorization or len(authorization) > MAX_HEADER_BYTES \
                or "\r" in authorization or "\n" in authorization:
            raise ValueError(f"{where}.authorization: a token string")
        out["Authorization"] = f"Bearer {authorization}"
    return out


class RemoteMcpSession:
    """One request's session with one client-named MCP server; its tools carry the server label."""

    def __init__(self, label: str, url: str, headers: dict[str, str]) -> None:
        self.label = label
        self.url = url
        self.headers = headers
        self.tools: list[McpTool] = []
        self.error: str | None = None  # why the server could not be used (connect or listing failed)
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect and list the tools (bounded); on failure `error` says why and `tools` stays empty."""
        self._task = asyncio.create_task(self._run(), name=f"mcp-remote-{self.label}")
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({waiter, self._task}, timeout=CONNECT_TIMEOUT_S + 1,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if self._session is None and self.error is None:
            self.error = f"no answer within {CONNECT_TIMEOUT_S:g}s"

    async def _run(self) -> None:
        client = httpx.AsyncClient(headers=self.headers, follow_redirects=False,
                                   timeout=httpx.Timeout(CONNECT_TIMEOUT_S, read=CALL_TIMEOUT_S))
        try:
            async with client, streamable_http_client(self.url, http_client=client) as streams, \
                    ClientSession(streams[0], streams[1], client_info=CLIENT_INFO,
                                  read_timeout_seconds=timedelta(seconds=CALL_TIMEOUT_S)) as session:
                with anyio.fail_after(CONNECT_TIMEOUT_S):
                    await session.initialize()
                    self.tools = await self._list(session)
                self._session = session
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # the SDK's and httpx's own errors, in exception groups
            self.error = _describe(exc)[:500]
            log.warning("MCP server %s (%s): %s", self.label, self.url, self.error)
        finally:
            self._session = None
            self._ready.set()

    async def _list(self, session: ClientSession) -> list[McpTool]:
        tools: list[McpTool] = []
        cursor: str | None = None
        for _ in range(20):
            page = await session.list_tools(params=mt.PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(McpTool(self.label, t.name, t.description or "", dict(t.inputSchema)) for t in page.tools)
            cursor = page.nextCursor
            if not cursor or len(tools) >= MAX_TOOLS:
                break
        return tools[:MAX_TOOLS]

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        session = self._session
        if session is None:
            return ToolOutcome(f"MCP server `{self.label}` is not available: {self.error or 'closed'}", True)
        try:
            with anyio.fail_after(CALL_TIMEOUT_S):
                result = await session.call_tool(tool, arguments,
                                                  read_timeout_seconds=timedelta(seconds=CALL_TIMEOUT_S))
        except TimeoutError:
            return ToolOutcome(f"Tool `{tool}` timed out after {CALL_TIMEOUT_S:g}s", True)
        except McpError as exc:
            return ToolOutcome(f"MCP error from `{self.label}`: {exc.error.message}", True)
        except Exception as exc:
            return ToolOutcome(f"MCP server `{self.label}` failed: {_describe(exc)[:500]}", True)
        text = _render(result)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"\n[truncated: the result was over {MAX_RESULT_CHARS} characters]"
        return ToolOutcome(text, bool(result.isError))

    async def aclose(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
