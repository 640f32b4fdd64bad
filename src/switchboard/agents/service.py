"""Agents served as models: wires the definitions, the MCP pool and the tool loop into the gateway.

Owns `AgentService` (built by `create_app` when agents or MCP servers are configured; started and
closed with the Gateway), the chat handling of a request whose model is an agent (stream and
non-stream), the Open WebUI task shortcut (a request carrying `server.task_header` is answered by
the agent's plain model, without tools or system prompt), and the per-agent concurrency bound.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ..asgi import JSONResponse, Request, Response, StreamResponse
from ..config import ConfigError
from ..errors import GatewayError, bad_request
from ..gateway import Gateway, RequestRecord
from ..headends.relay import open_first_chunk, relay_complete, relay_stream
from ..hub import ChatRequest, usage_from
from ..routing.limits import DEFAULT_QUEUE, Lease
from ..sse import DONE, data_frame, error_frame
from .definitions import AgentDefinition, AgentRegistry
from .runner import ToolLoop, collect
from .tools import McpTool, ToolOutcome

if TYPE_CHECKING:
    from .mcp import McpPool

__all__ = ["AgentService", "install_agents"]

log = logging.getLogger("switchboard.agents")


def _build_pool(gw: Gateway) -> McpPool | None:
    if not gw.config.mcp_servers:
        return None
    try:
        from .mcp import McpPool
    except ImportError as exc:
        raise ConfigError(f"`mcp.servers` is configured but the MCP SDK is not installed ({exc}); "
                          "install it with: pip install 'switchboard[agents]'") from None
    return McpPool(gw.config.mcp_servers, gw.config.base_dir)


class AgentService:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.registry = AgentRegistry(gw.config, gw.router.knows)
        self.pool = _build_pool(gw)
        self.limiter = gw.router.limits.keyed_limiter("agent", 1, DEFAULT_QUEUE)

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

    def get(self, name: str) -> AgentDefinition | None:
        return self.registry.get(name)

    def model_entries(self) -> list[dict[str, Any]]:
        return self.registry.model_entries(self.gw.started_at)

    def mcp_tools(self, agent: AgentDefinition) -> list[McpTool]:
        """The agent's tools as the servers list them now (lists change on `tools/list_changed`)."""
        if self.pool is None:
            return []
        out: list[McpTool] = []
        for ref in agent.tools:
            tools = self.pool.tools(ref.server)
            out.extend(t for t in tools if ref.tool is None or t.name == ref.tool)
        return out

    async def _call_tool(self, tool: McpTool, arguments: dict[str, Any]) -> ToolOutcome:
        assert self.pool is not None
        return await self.pool.call(tool.server, tool.name, arguments)

    # -- requests
    async def chat(self, request: Request, record: RequestRecord, hub: ChatRequest,
                   agent: AgentDefinition) -> Response | StreamResponse:
        if hub.body.get("n") not in (None, 1):
            raise bad_request("Agents answer with one choice: `n` must be 1.", param="n", code="invalid_value")
        if request.headers.get(self.gw.config.server.task_header):
            return await self._plain(record, hub, agent)
        lease: Lease | None = None
        if agent.max_in_flight is not None:
            lease = await self.limiter.acquire(agent.name, agent.max_in_flight, agent.queue)
        try:
            loop = ToolLoop(agent, self.mcp_tools(agent), hub.body, lambda body: self._model_call(record, body),
                            self._call_tool, "chatcmpl-" + secrets.token_hex(12), int(time.time()))
            chunks = loop.run()
            try:
                first = await chunks.__anext__()  # the first model call answered: errors so far are HTTP errors
            except BaseException:
                await chunks.aclose()
                raise
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        record.mark_first_token()
        headers = {"x-switchboard-agent": agent.name}
        if not hub.stream:
            try:
                completion = await collect(_prepend(first, chunks))
            finally:
                if lease is not None:
                    lease.release()
            record.usage = usage_from(completion.get("usage"))
            return JSONResponse(completion, headers=headers)
        return StreamResponse(_Body(_frames(first, chunks, record, hub.include_usage), chunks), headers=headers,
                              on_close=lambda exc: self._closed(record, lease, exc))

    def _closed(self, record: RequestRecord, lease: Lease | None, exc: BaseException | None) -> None:
        if lease is not None:
            lease.release()
        if exc is not None and record.status < 400:
            record.status = 499
            record.error_type = "client_disconnected"
        self.gw.finish(record)

    async def _model_call(self, record: RequestRecord, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """One turn of the loop: a streamed call of the agent's model through the router."""
        model = body["model"]
        hub = ChatRequest(body=body, model=model, stream=True, include_usage=True)
        opened, outcome = await self.gw.router.execute(
            model, lambda d: open_first_chunk(d.provider.open_chat_stream(hub, d.model, d.key_value)),
            hold=True, observe=record.routed)
        try:
            yield opened.first
            async for chunk in opened.iterator:
                yield chunk
        finally:
            outcome.release()
            with contextlib.suppress(Exception):
                await opened.stream.aclose()

    async def _plain(self, record: RequestRecord, hub: ChatRequest,
                     agent: AgentDefinition) -> Response | StreamResponse:
        """Open WebUI background tasks (titles, tags...): the agent's model alone, no tools, no agent prompt."""
        body = {**agent.defaults, **hub.body, "model": agent.model}
        plain = ChatRequest(body=body, model=agent.model, stream=hub.stream, include_usage=hub.include_usage)
        if plain.stream:
            return await relay_stream(self.gw, record, agent.model, plain.include_usage,
                                      lambda d: d.provider.open_chat_stream(plain, d.model, d.key_value))
        return await relay_complete(self.gw, record, agent.model,
                                    lambda d: d.provider.chat(plain, d.model, d.key_value))


class _Body:
    """The stream body; its `aclose()` also closes the loop (and the model stream it has open), even
    when the client left before the frames generator started."""

    __slots__ = ("_frames", "_loop")

    def __init__(self, frames: AsyncGenerator[bytes, None], loop: AsyncGenerator[dict[str, Any], None]) -> None:
        self._frames = frames
        self._loop = loop

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames

    async def aclose(self) -> None:
        try:
            await self._frames.aclose()
        finally:
            await self._loop.aclose()


async def _prepend(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for chunk in rest:
        yield chunk


async def _frames(first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]], record: RequestRecord,
                  include_usage: bool) -> AsyncIterator[bytes]:
    try:
        yield data_frame(first)
        async for chunk in chunks:
            if chunk.get("usage") is not None:
                record.usage = usage_from(chunk["usage"])
                if not include_usage:
                    continue
            yield data_frame(chunk)
        yield DONE
    except GatewayError as err:
        record.status = err.status
        record.error_type = err.type
        yield error_frame(err.to_dict())


def install_agents(gw: Gateway, model_sources: list[Callable[[], list[dict[str, Any]]]]) -> AgentService:
    """Build the agent service (reads and validates the agent files: `ConfigError` on a bad one),
    start/close it with the gateway and list the agents in `/v1/models`."""
    service = AgentService(gw)
    gw.agents = service
    gw.on_start(service.start)
    gw.on_close(service.aclose)
    model_sources.append(service.model_entries)
    return service
