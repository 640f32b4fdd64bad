"""Agents served as models: wires the definitions, the MCP pool and the tool loop into the router.

Owns `AgentService` (built with the Gateway when agents or MCP servers are configured; started and
closed with it): the router hands it a request whose model is an agent, with the function that makes
one routed model call, and gets back a hub result or a `HubStream` of the loop's chunks, whichever
headend asked. Also owns the per-agent concurrency bound (its queue wait bounded by the request's
deadline) and the plain request of the Open WebUI task shortcut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..config import Config, ConfigError, McpServerConfig
from ..errors import bad_request
from ..hub import ChatRequest, Chunk, HubStream, UpstreamResult, usage_from
from ..request_record import RequestRecord
from ..routing.engine import deadline_exceeded
from ..routing.limits import DEFAULT_QUEUE, Lease, Limits
from .definitions import AgentDefinition, AgentRegistry
from .runner import ToolCall, ToolLoop, collect
from .tools import McpTool, RequestTools, ToolOutcome

if TYPE_CHECKING:
    from .mcp import McpPool

__all__ = ["AgentService", "ModelStream"]

log = logging.getLogger("switchboard.agents")

# One routed model call of the loop (the router's, recorded as a turn of `record`).
ModelStream = Callable[[ChatRequest, RequestRecord], Awaitable[HubStream]]


def _build_pool(servers: dict[str, McpServerConfig], config: Config) -> McpPool | None:
    """The pool of the config's MCP servers and the agents' own (`AgentRegistry.mcp_servers`)."""
    if not servers:
        return None
    try:
        from .mcp import McpPool
    except ImportError as exc:
        raise ConfigError(f"MCP servers are configured but the MCP SDK cannot be imported ({exc}); "
                          "reinstall switchboard (`pip install -e .`): the SDK is one of its dependencies") from None
    return McpPool(servers, config.base_dir)


class AgentService:
    def __init__(self, config: Config, known_model: Callable[[str], bool], limits: Limits) -> None:
        self.config = config
        self.registry = AgentRegistry(config, known_model)
        self.pool = _build_pool(self.registry.mcp_servers, config)
        self.limiter = limits.keyed_limiter("agent", 1, DEFAULT_QUEUE)
        self.started_at = int(time.time())

    async def start(self) -> None:
        if self.pool is not None:
            await self.pool.start()
        for agent in self.registry.agents.values():
            for ref in agent.tools:
                if ref.tool and self.pool is not None and ref.server in self.pool.servers:
                    server = self.pool.servers[ref.server]
                    if server.connected and ref.tool not in server.tools:
                        log.warning("agent %s: MCP server %s has no tool `%s` (it has: %s)", agent.name, ref.server,
                                    ref.tool, ", ".join(server.tools) or "none")
        await self.registry.start()

    async def aclose(self) -> None:
        await self.registry.aclose()
        if self.pool is not None:
            await self.pool.aclose()

    def propagate_traces(self) -> None:
        """Tracing is configured: MCP tool calls carry the tool span's `traceparent`."""
        if self.pool is not None:
            self.pool.propagate_traces()

    def get(self, name: str) -> AgentDefinition | None:
        return self.registry.get(name)

    def model_entries(self) -> list[dict[str, Any]]:
        return self.registry.model_entries(self.started_at)

    def mcp_tools(self, agent: AgentDefinition) -> list[McpTool]:
        """The agent's tools as the servers list them now (lists change on `tools/list_changed`)."""
        if self.pool is None:
            return []
        out: list[McpTool] = []
        for ref in agent.tools:
            tools = self.pool.tools(ref.server)
            out.extend(t for t in tools if ref.tool is None or t.name == ref.tool)
        return out

    def _tool_call(self) -> ToolCall:
        return self._call_tool

    async def _call_tool(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        assert self.pool is not None
        return await self.pool.call(tool.server, tool.name, arguments)

    @staticmethod
    def plain_request(agent: AgentDefinition, hub: ChatRequest) -> ChatRequest:
        """Open WebUI background tasks (titles, tags...): the agent's model alone, no tools, no agent prompt."""
        body = {**agent.defaults, **hub.body, "model": agent.model}
        return ChatRequest(body=body, model=agent.model, stream=hub.stream, include_usage=hub.include_usage)

    # -- requests
    async def open_stream(self, agent: AgentDefinition, hub: ChatRequest, record: RequestRecord, deadline: float,
                          model_stream: ModelStream, request_tools: RequestTools | None = None) -> HubStream:
        """Run the tool loop until its first chunk (errors so far are HTTP errors); the rest streams.
        `request_tools`: the request's own MCP tools, offered and run besides the agent's."""
        if hub.body.get("n") not in (None, 1):
            raise bad_request("Agents answer with one choice: `n` must be 1.", param="n", code="invalid_value")
        lease: Lease | None = None
        if agent.max_in_flight is not None:
            limiter = self.limiter.limiter(agent.name, agent.max_in_flight, agent.queue)
            lease = limiter.try_acquire()
            if lease is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        lease = await limiter.acquire()
                except TimeoutError:
                    raise deadline_exceeded(self.config.server.request_timeout_s) from None
        try:
            tools, call_tool = self.mcp_tools(agent), self._tool_call()
            if request_tools is not None:
                tools, call_tool = tools + request_tools.tools, request_tools.call
            loop = ToolLoop(agent, tools, hub.body, lambda body: _model_call(model_stream, record, body), call_tool,
                            "chatcmpl-" + secrets.token_hex(12), int(time.time()),
                            record.trace.tool if record.trace is not None else None)
            chunks = loop.run()
            try:
                first = await chunks.__anext__()
            except BaseException:
                await chunks.aclose()
                raise
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        return AgentStream(first, chunks, lease, {"x-switchboard-agent": agent.name})

    async def chat(self, agent: AgentDefinition, hub: ChatRequest, record: RequestRecord, deadline: float,
                   model_stream: ModelStream, request_tools: RequestTools | None = None) -> UpstreamResult:
        stream = await self.open_stream(agent, hub, record, deadline, model_stream, request_tools)
        try:
            completion = await collect(_chunks(stream))
        finally:
            await stream.aclose()
        record.usage = usage_from(completion.get("usage"))
        return UpstreamResult(completion, headers=stream.headers)


async def _model_call(model_stream: ModelStream, record: RequestRecord,
                      body: dict[str, Any]) -> AsyncGenerator[Chunk, None]:
    """One turn of the loop: a streamed call of the agent's model through the router."""
    stream = await model_stream(ChatRequest(body=body, model=body["model"], stream=True, include_usage=True), record)
    try:
        for chunk in stream.first:
            yield chunk
        async for batch in stream.rest():
            for chunk in batch:
                yield chunk
    finally:
        await stream.aclose()


async def _chunks(stream: HubStream) -> AsyncIterator[Chunk]:
    for chunk in stream.first:
        yield chunk
    async for batch in stream.rest():
        for chunk in batch:
            yield chunk


class AgentStream:
    """The tool loop's chunks as a `HubStream`; `aclose()` closes the loop (and the model stream it
    has open) and frees the agent's concurrency slot."""

    __slots__ = ("_lease", "_loop", "first", "headers")

    def __init__(self, first: Chunk, loop: AsyncGenerator[Chunk, None], lease: Lease | None,
                 headers: dict[str, str]) -> None:
        self.first = [first]
        self.headers = headers
        self._loop = loop
        self._lease = lease

    async def rest(self) -> AsyncIterator[list[Chunk]]:
        async for chunk in self._loop:
            yield [chunk]

    async def aclose(self) -> None:
        try:
            with contextlib.suppress(Exception):
                await self._loop.aclose()
        finally:
            if self._lease is not None:
                self._lease.release()
