"""The MCP client pool: one supervised connection per configured MCP server (official `mcp` SDK, 1.x).

Why 1.x (`mcp>=1.24,<2`): it speaks the protocol revisions every MCP server in use today speaks,
and its client API (`ClientSession`, `stdio_client`, `streamable_http_client`) is stable; 2.x is a
new API built around a draft protocol revision. The SDK is imported only by this module, which is
imported only when `mcp.servers` is configured (the `agents` extra).

Each server lives in its own long-lived task (anyio cancel scopes must be entered and exited in
the same task): it connects (stdio child process or Streamable HTTP), initializes, lists tools,
then waits; it refreshes the tool list on `notifications/tools/list_changed`, and when the
connection dies (child exited, HTTP failure) it reconnects with backoff. Callers, from any task,
only send requests on the live session. Shutdown closes stdin of children (then SIGTERM/SIGKILL,
as the SDK does) and leaves no task behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.types as mt
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client

from ..config import McpServerConfig
from ..trace_context import UPSTREAM_TRACE_HEADERS, trace_meta
from .tools import McpTool, ToolOutcome

__all__ = ["McpPool", "McpServer"]

log = logging.getLogger("switchboard.mcp")

BACKOFF_INITIAL_S = 0.25
BACKOFF_MAX_S = 30.0
READY_WAIT_MAX_S = 10.0  # how long a tool call waits for a (re)connecting server
CLIENT_INFO = mt.Implementation(name="switchboard", version="0.1.0")


def _render(result: mt.CallToolResult) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mt.TextContent):
            parts.append(block.text)
        elif isinstance(block, mt.EmbeddedResource):
            res = block.resource
            parts.append(res.text if isinstance(res, mt.TextResourceContents) else f"[binary resource {res.uri}]")
        elif isinstance(block, mt.ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block, mt.ImageContent | mt.AudioContent):
            parts.append(f"[{block.type} {block.mimeType}]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False))
    return "\n".join(parts)


class McpServer:
    """One MCP server: a supervisor task owning the connection, and `call` for any task."""

    def __init__(self, config: McpServerConfig, base_dir: Path) -> None:
        self.config = config
        self.name = config.name
        self.base_dir = base_dir
        self.tools: dict[str, McpTool] = {}
        self.connects = 0  # successful connections so far (restarts = connects - 1)
        self.last_error: str | None = None
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._stopping = False
        self._dead = False
        self._lost = asyncio.Event()  # set when the current connection dies; a new one per connection
        self._refresh_pending = False
        self._task: asyncio.Task[None] | None = None
        # Tracing configured: a call's `params._meta` carries the tool span's traceparent (the MCP semantic
        # conventions' propagation), and the Streamable HTTP client copies it into the request's headers.
        self.propagate = False

    # -- lifecycle
    async def start(self, wait_s: float) -> None:
        """Start the supervisor and wait (bounded) for the first connection attempt."""
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait_s)

    async def aclose(self) -> None:
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            # stdio: the SDK waits up to 2 s for the child to exit on stdin close, then terminates it
            await asyncio.wait_for(asyncio.shield(task), 8.0)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except Exception:
            log.exception("MCP server %s: error while closing", self.name)

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._dead

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        cfg = self.config
        if cfg.command:
            cwd = str((self.base_dir / cfg.cwd).resolve()) if cfg.cwd else str(self.base_dir)
            # The child gets the SDK's allow-list (PATH, HOME, ...) plus what the config names: never our secrets.
            env = {**get_default_environment(), **cfg.env}
            # `python` is the gateway's own interpreter: it has the MCP SDK, whether or not a venv is activated.
            command = sys.executable if cfg.command in ("python", "python3") else cfg.command
            params = StdioServerParameters(command=command, args=cfg.args, env=env, cwd=cwd)
            return stdio_client(params, errlog=sys.stderr)
        assert cfg.url
        hooks = {"request": [_trace_headers_from_meta]} if self.propagate else None
        client = httpx.AsyncClient(headers=cfg.headers, event_hooks=hooks,
                                   timeout=httpx.Timeout(30.0, read=max(cfg.timeout_s, 300.0)))
        return _http_transport(cfg.url, client)

    async def _supervise(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._dead = False
            self._lost = asyncio.Event()
            started = loop.time()
            try:
                await self._run_once()
                # A server that dies right after connecting must not be restarted in a hot loop.
                failures = 0 if loop.time() - started > 5.0 else failures + 1
            except Exception as exc:
                failures += 1
                self.last_error = _describe(exc)
                log.error("MCP server %s: connection failed: %s", self.name, self.last_error)
            finally:
                self._session = None
                self._ready.clear()
                self._first_attempt.set()
            if self._stopping:
                break
            delay = 0.0 if failures <= 1 else min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (failures - 2))
            log.warning("MCP server %s: disconnected; reconnecting in %.2fs", self.name, delay)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _run_once(self) -> None:
        async with AsyncExitStack() as stack:
            streams = await stack.enter_async_context(self._transport())
            read, write = streams[0], streams[1]
            # Our relay between transport and session tells us when the transport's read side ends
            # (a stdio child that exited), which the SDK does not surface.
            relay_send, relay_recv = anyio.create_memory_object_stream[Any](0)
            group = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(group.cancel_scope.cancel)
            group.start_soon(self._relay, read, relay_send)
            session = await stack.enter_async_context(
                ClientSession(relay_recv, write, read_timeout_seconds=timedelta(seconds=self.config.timeout_s),
                              message_handler=self._on_message, client_info=CLIENT_INFO))
            with anyio.fail_after(self.config.timeout_s):
                await session.initialize()
                await self._list_tools(session)
            self._session = session
            self.connects += 1
            self.last_error = None
            self._ready.set()
            self._first_attempt.set()
            log.info("MCP server %s: connected, %d tool(s): %s", self.name, len(self.tools), ", ".join(self.tools))
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._stopping or self._dead:
                    return
                if self._refresh_pending:
                    self._refresh_pending = False
                    try:
                        with anyio.fail_after(self.config.timeout_s):
                            await self._list_tools(session)
                        log.info("MCP server %s: tool list changed: %s", self.name, ", ".join(self.tools))
                    except Exception as exc:
                        log.warning("MCP server %s: refreshing tools failed: %s", self.name, _describe(exc))

    async def _relay(self, read: MemoryObjectReceiveStream[Any], send: MemoryObjectSendStream[Any]) -> None:
        try:
            async with send:
                async for message in read:
                    await send.send(message)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self._mark_dead()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mt.ServerNotification) and isinstance(message.root, mt.ToolListChangedNotification):
            self._refresh_pending = True  # listed by the supervisor: this handler runs in the receive loop
            self._wake.set()
        elif isinstance(message, Exception):
            log.warning("MCP server %s: transport error: %s", self.name, _describe(message))

    async def _list_tools(self, session: ClientSession) -> None:
        tools: dict[str, McpTool] = {}
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends must not hang us
            page = await session.list_tools(params=mt.PaginatedRequestParams(cursor=cursor) if cursor else None)
            for tool in page.tools:
                tools[tool.name] = McpTool(self.name, tool.name, tool.description or "", dict(tool.inputSchema))
            cursor = page.nextCursor
            if not cursor:
                break
        self.tools = tools

    def _mark_dead(self) -> None:
        self._lost.set()
        if not self._stopping:
            self._dead = True
            self._ready.clear()  # calls arriving now wait for the restart instead of seeing a stale "ready"
            self._wake.set()

    # -- calls
    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one tool; every failure comes back as an error outcome for the model, never raised."""
        if not self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), min(self.config.timeout_s, READY_WAIT_MAX_S))
        session, lost = self._session, self._lost
        if session is None or self._dead:
            detail = f": {self.last_error}" if self.last_error else ""
            return ToolOutcome(f"MCP server `{self.name}` is not available{detail}", True)
        # The SDK does not fail requests in flight when the session is torn down: race the call
        # against the connection's death so a crashed server answers at once, not after the timeout.
        meta = trace_meta(UPSTREAM_TRACE_HEADERS.get()) if self.propagate else None
        call = asyncio.ensure_future(session.call_tool(
            tool, arguments, read_timeout_seconds=timedelta(seconds=self.config.timeout_s), meta=meta or None))
        watch = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait({call, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
        if call.cancelled():
            return ToolOutcome(f"MCP server `{self.name}` closed the connection during the call "
                               "(it is being restarted)", True)
        try:
            result = call.result()
        except McpError as exc:
            code = exc.error.code
            if code == httpx.codes.REQUEST_TIMEOUT:
                return ToolOutcome(f"Tool `{tool}` timed out after {self.config.timeout_s:g}s", True)
            if code == mt.CONNECTION_CLOSED:
                self._mark_dead()
                return ToolOutcome(f"MCP server `{self.name}` closed the connection during the call "
                                   "(it is being restarted)", True)
            return ToolOutcome(f"MCP error from `{self.name}`: {exc.error.message}", True)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            self._mark_dead()
            return ToolOutcome(f"MCP server `{self.name}` is not reachable ({type(exc).__name__})", True)
        return ToolOutcome(_render(result), bool(result.isError))


async def _trace_headers_from_meta(request: httpx.Request) -> None:
    """The SDK posts messages from a task of its own, outside the caller's context: the trace context
    travels in the JSON-RPC message (`params._meta`) and is copied from there into the HTTP headers."""
    if request.method != "POST" or b'"traceparent"' not in request.content:
        return
    try:
        message = json.loads(request.content)
    except ValueError:
        return
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    if isinstance(meta, dict):
        for name in ("traceparent", "tracestate"):
            value = meta.get(name)
            if isinstance(value, str):
                request.headers[name] = value


@contextlib.asynccontextmanager
async def _http_transport(url: str, client: httpx.AsyncClient) -> Any:
    async with client, streamable_http_client(url, http_client=client) as streams:
        yield streams


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class McpPool:
    """Every configured MCP server, connected at startup and closed at shutdown."""

    def __init__(self, servers: dict[str, McpServerConfig], base_dir: Path) -> None:
        self.servers = {name: McpServer(cfg, base_dir) for name, cfg in servers.items()}

    async def start(self) -> None:
        await asyncio.gather(*(s.start(s.config.timeout_s + 1) for s in self.servers.values()))
        for server in self.servers.values():
            if not server.connected:
                log.error("MCP server %s is not connected at startup (%s); its tools are unavailable until it "
                          "comes up", server.name, server.last_error or "still connecting")

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self.servers.values()))

    def propagate_traces(self) -> None:
        for server in self.servers.values():
            server.propagate = True

    def tools(self, server: str) -> list[McpTool]:
        s = self.servers.get(server)
        return list(s.tools.values()) if s is not None else []

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        s = self.servers.get(server)
        if s is None:
            return ToolOutcome(f"unknown MCP server `{server}`", True)
        return await s.call(tool, arguments)
