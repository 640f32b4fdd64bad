"""The router: the one call path between every headend and whatever answers a model name.

Headends hand it a hub request and the request's record, and get back a hub result or a hub stream;
they never see a provider, a deployment or a key. One entry point per kind of call:

    chat / open_chat_stream                  chat completions (every chat headend: OpenAI, Anthropic...)
    completions / open_completions_stream    legacy text completions
    responses / open_responses_stream        the Responses API: native where the provider speaks it,
                                             else bridged to chat (agents included)
    embeddings
    count_tokens                             Anthropic token counting

For each, the model name resolves to an agent (the tool loop in agents/, whose every model call
comes back through this router) or to a route, run by the engine (engine.py: deployments, limits,
retries, fallbacks, deadline). A request carrying `server.task_header` to an agent (Open WebUI's
titles and tags) is answered by the agent's plain model, without tools or system prompt.

The router also sets what every call reports: the record's routing (`record.routed`, one turn per
agent model call), non-stream usage, and the response headers saying who answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..agents.as_completion import CompletionStream, chat_from_completion, completion_from_chat
from ..agents.definitions import AgentDefinition, ToolRef
from ..agents.service import AgentService
from ..agents.tools import RequestTools
from ..config import Config
from ..errors import GatewayError
from ..hub import (
    ChatRequest,
    HubStream,
    ResponsesCall,
    UpstreamResult,
    UpstreamStream,
    usage_from,
    usage_from_responses,
)
from ..observability.spans import CallTrace
from ..providers.anthropic_count import TokenCounters
from ..providers.base import ChatProvider, CompletionsProvider, EmbeddingsProvider, ResponsesProvider
from ..request_record import RequestRecord
from .deployment import Deployment, Outcome, Route
from .engine import Engine, RouterEvent, deadline_exceeded
from .limits import Limits
from .streams import RoutedStream, open_first_batch

# The response header saying a token count is the gateway's estimate, not an upstream's count.
ESTIMATE_HEADER = "x-switchboard-token-count"

__all__ = ["ESTIMATE_HEADER", "Deployment", "Outcome", "Route", "Router", "RouterEvent", "deadline_exceeded",
           "response_headers"]


def response_headers(outcome: Outcome, upstream_request_id: str | None) -> dict[str, str]:
    headers = outcome.headers()
    if upstream_request_id:
        headers["x-upstream-request-id"] = upstream_request_id
    return headers


def _unsupported(provider: str, what: str, hint: str = "") -> GatewayError:
    return GatewayError(400, f"Provider `{provider}` does not support {what}.{hint}", "invalid_request_error",
                        param="model", code="unsupported_endpoint", retryable=False)


def _open_webui_task(body: dict[str, Any]) -> bool:
    """An Open WebUI background task (title, tags, follow-ups, search queries...) sent without the task
    header: its default task prompts are one user message `### Task: ... <chat_history> ...`."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    content = last.get("content")
    return (last.get("role") == "user" and isinstance(content, str) and content.lstrip().startswith("### Task:")
            and "<chat_history>" in content)


def _call(record: RequestRecord, operation: str, body: dict[str, Any] | None) -> CallTrace | None:
    """The trace of a routed call (its attempts' parent), when the request is traced."""
    return record.trace.call(operation, body) if record.trace is not None else None


def _completions_capable(d: Deployment) -> CompletionsProvider:
    if not isinstance(d.provider, CompletionsProvider):
        raise _unsupported(d.provider.name, "the completions endpoint", " Use /v1/chat/completions.")
    return d.provider


class Router(Engine):
    def __init__(self, config: Config, providers: dict[str, ChatProvider], limits: Limits | None = None,
                 agents: AgentService | None = None) -> None:
        super().__init__(config, providers, limits)
        self.agents = agents
        self.task_header = config.server.task_header
        self.counters = TokenCounters({name: p.config for name, p in providers.items()})
        # Decided once: a runtime-checkable Protocol's isinstance is slow on the hot path.
        self._native_providers = frozenset(name for name, p in providers.items()
                                           if isinstance(p, ResponsesProvider) and p.speaks_responses())

    async def aclose(self) -> None:
        await self.counters.aclose()

    def _agent(self, model: str) -> AgentDefinition | None:
        return self.agents.get(model) if self.agents is not None else None

    def _resolve(self, hub: ChatRequest, record: RequestRecord,
                 headers: Mapping[str, str]) -> tuple[AgentService | None, AgentDefinition | None, ChatRequest]:
        """(the agent service and the agent that answers, or Nones; the request to route). A task
        request to an agent (Open WebUI's titles, tags) goes to the agent's plain model instead."""
        agent = self._agent(hub.model)
        if agent is None or self.agents is None:
            return None, None, hub
        if headers.get(self.task_header) or _open_webui_task(hub.body):
            return None, None, self.agents.plain_request(agent, hub)
        record.agent = agent.name
        return self.agents, agent, hub

    # -- chat
    async def chat(self, hub: ChatRequest, record: RequestRecord, headers: Mapping[str, str]) -> UpstreamResult:
        """A non-stream chat completion (`chat.completion` body) from a route or an agent."""
        agents, agent, hub = self._resolve(hub, record, headers)
        if agents is not None and agent is not None:
            return await agents.chat(agent, hub, record, self._deadline(agent.name), self._turn_stream)
        # self_bounded: a non-stream call ends within its provider's timeouts (providers/base.py HttpUpstream.post).
        result, outcome = await self.execute(hub.model, lambda d: d.provider.chat(hub, d.model, d.key_value),
                                             observe=record.routed, self_bounded=True,
                                             trace=_call(record, "chat", hub.body))
        return self._answered(result, outcome, record)

    async def open_chat_stream(self, hub: ChatRequest, record: RequestRecord,
                               headers: Mapping[str, str]) -> HubStream:
        """A chat completion stream whose first chunks have arrived, from a route or an agent."""
        agents, agent, hub = self._resolve(hub, record, headers)
        if agents is not None and agent is not None:
            return await agents.open_stream(agent, hub, record, self._deadline(agent.name), self._turn_stream)
        return await self._stream(hub.model, record.routed,
                                  lambda d: d.provider.open_chat_stream(hub, d.model, d.key_value),
                                  _call(record, "chat", hub.body))

    # -- a request's own tools on the gateway's MCP servers (the Responses API's `mcp` tools)
    def _tool_runner(self, tools: list[ToolRef], hub: ChatRequest) -> tuple[AgentService, AgentDefinition]:
        if self.agents is None:
            raise GatewayError(400, "No MCP servers are configured in this gateway.", "invalid_request_error",
                               param="tools", code="unknown_mcp_server", retryable=False)
        if self._agent(hub.model) is not None:
            raise GatewayError(400, f"`{hub.model}` is an agent: give the MCP tools to the agent's file instead.",
                               "invalid_request_error", param="tools", code="unsupported_tool", retryable=False)
        return self.agents, AgentDefinition(name=hub.model, model=hub.model, system_prompt="", tools=tools)

    async def chat_with_tools(self, hub: ChatRequest, tools: list[ToolRef], record: RequestRecord,
                              request_tools: RequestTools | None = None) -> UpstreamResult:
        """A chat whose model may call `tools` (MCP servers of the gateway) and `request_tools` (MCP tools
        the request brings, run by the caller's function): the tool loop runs here."""
        agents, runner = self._tool_runner(tools, hub)
        return await agents.chat(runner, hub, record, self._deadline(hub.model), self._turn_stream, request_tools)

    async def open_stream_with_tools(self, hub: ChatRequest, tools: list[ToolRef], record: RequestRecord,
                                     request_tools: RequestTools | None = None) -> HubStream:
        agents, runner = self._tool_runner(tools, hub)
        return await agents.open_stream(runner, hub, record, self._deadline(hub.model), self._turn_stream,
                                        request_tools)

    async def _turn_stream(self, hub: ChatRequest, record: RequestRecord) -> HubStream:
        """One model call of an agent's tool loop: a routed stream, recorded as a turn (traced: a turn span)."""
        trace = record.trace.turn(hub.body) if record.trace is not None else None
        try:
            return await self._stream(hub.model, record.routed_turn,
                                      lambda d: d.provider.open_chat_stream(hub, d.model, d.key_value), trace)
        except BaseException as exc:
            if trace is not None:
                trace.failed(exc)
            raise

    # -- legacy completions
    async def completions(self, body: dict[str, Any], model: str, record: RequestRecord,
                          headers: Mapping[str, str]) -> UpstreamResult:
        agent = self._agent(model)
        if agent is not None:
            chat = await self.chat(chat_from_completion(body, model, stream=False), record, headers)
            chat.body = completion_from_chat(chat.body)
            chat.raw = None
            return chat
        result, outcome = await self.execute(
            model, lambda d: _completions_capable(d).completions(body, d.model, d.key_value),
            observe=record.routed, self_bounded=True, trace=_call(record, "text_completion", body))
        return self._answered(result, outcome, record)

    async def open_completions_stream(self, body: dict[str, Any], model: str, record: RequestRecord,
                                      headers: Mapping[str, str]) -> HubStream:
        agent = self._agent(model)
        if agent is not None:
            return CompletionStream(await self.open_chat_stream(chat_from_completion(body, model, stream=True),
                                                                record, headers))
        return await self._stream(
            model, record.routed, lambda d: _completions_capable(d).open_completions_stream(body, d.model, d.key_value),
            _call(record, "text_completion", body))

    # -- the Responses API
    def _native(self, provider: ChatProvider) -> bool:
        return provider.name in self._native_providers

    def native_responses(self, model: str) -> bool:
        """Whether a route of `model` passes Responses requests through to an upstream that speaks them."""
        if not self._native_providers:
            return False
        return self._agent(model) is None and any(r.provider in self._native_providers for r in self.routes(model))

    async def responses(self, call: ResponsesCall, record: RequestRecord,
                        headers: Mapping[str, str]) -> UpstreamResult:
        """A non-stream Responses call: `native` results are `response` objects, others chat completions."""
        if not self.native_responses(call.model):
            return await self.chat(call.chat, record, headers)

        async def native(d: Deployment) -> UpstreamResult:
            assert isinstance(d.provider, ResponsesProvider)
            result = await d.provider.responses(call.body, d.model, d.key_value)
            result.native = True
            return result

        def attempt(d: Deployment) -> Awaitable[UpstreamResult]:
            if self._native(d.provider):
                return native(d)
            return d.provider.chat(call.chat, d.model, d.key_value)

        result, outcome = await self.execute(call.model, attempt, observe=record.routed, self_bounded=True,
                                             trace=_call(record, "chat", call.body))
        self._answered(result, outcome, record)
        if result.native:
            result.usage = record.usage = usage_from_responses(result.body.get("usage"))
        return result

    async def open_responses_stream(self, call: ResponsesCall, record: RequestRecord,
                                    headers: Mapping[str, str]) -> tuple[HubStream, bool]:
        """A Responses stream, and whether it is native (Responses events) or bridged (chat chunks)."""
        if not self.native_responses(call.model):
            return await self.open_chat_stream(call.chat, record, headers), False

        def open_stream(d: Deployment) -> Awaitable[UpstreamStream]:
            if self._native(d.provider):
                assert isinstance(d.provider, ResponsesProvider)
                return d.provider.open_responses_stream(call.body, d.model, d.key_value)
            return d.provider.open_chat_stream(call.chat, d.model, d.key_value)

        stream = await self._stream(call.model, record.routed, open_stream, _call(record, "chat", call.body))
        return stream, self._native(stream.outcome.deployment.provider)

    # -- embeddings and token counting
    async def embeddings(self, body: dict[str, Any], model: str, record: RequestRecord) -> UpstreamResult:
        if self._agent(model) is not None:
            raise GatewayError(400, f"`{model}` is an agent; agents cannot compute embeddings.",
                               "invalid_request_error", param="model", code="unsupported_endpoint", retryable=False)

        def call(d: Deployment) -> Awaitable[UpstreamResult]:
            if not isinstance(d.provider, EmbeddingsProvider):
                raise _unsupported(d.provider.name, "embeddings")
            return d.provider.embeddings(body, d.model, d.key_value)

        result, outcome = await self.execute(model, call, observe=record.routed,
                                             trace=_call(record, "embeddings", body))
        return self._answered(result, outcome, record)

    async def count_tokens(self, body: dict[str, Any], model: str, record: RequestRecord,
                           beta: str | None, estimate: Callable[[], int] | None = None) -> UpstreamResult:
        """Anthropic's token count, from the first route whose provider can count (Anthropic's); when
        none can, `estimate()` answers, marked by the `x-switchboard-token-count: estimate` header."""
        routes = [] if self._agent(model) is not None else self.routes(model)
        if not any(self.counters.get(r.provider) is not None for r in routes):
            if estimate is not None:
                return UpstreamResult({"input_tokens": estimate()}, headers={ESTIMATE_HEADER: "estimate"})
            providers = ", ".join(sorted({r.provider for r in routes})) or "an agent"
            raise GatewayError(404, f"Token counting is not available for model `{model}`: its provider ({providers}) "
                               "cannot count tokens; only Anthropic providers can.", "not_found_error", param="model",
                               code="count_tokens_unsupported", retryable=False)

        async def attempt(d: Deployment) -> UpstreamResult:
            counter = self.counters.get(d.provider.name)
            if counter is None:
                raise GatewayError(404, f"Provider `{d.provider.name}` cannot count tokens.", "not_found_error",
                                   code="count_tokens_unsupported", retryable=False)
            return await counter.count_tokens(body, d.model, d.key_value, beta)

        result, outcome = await self.execute(model, attempt, observe=record.routed)
        result.headers = response_headers(outcome, result.request_id)
        return result

    # -- shared steps
    def _deadline(self, model: str) -> float:
        return asyncio.get_running_loop().time() + self.deadline_s(model)

    @staticmethod
    def _answered(result: UpstreamResult, outcome: Outcome, record: RequestRecord) -> UpstreamResult:
        result.usage = record.usage = usage_from(result.body.get("usage"))
        result.headers = response_headers(outcome, result.request_id)
        return result

    async def _stream(self, model: str, observe: Callable[[Outcome], None],
                      open_stream: Callable[[Deployment], Awaitable[UpstreamStream]],
                      trace: CallTrace | None = None) -> RoutedStream:
        # hold=True: the concurrency slots stay taken until the stream is closed (RoutedStream.aclose).
        opened, outcome = await self.execute(model, lambda d: open_first_batch(open_stream(d)), hold=True,
                                             observe=observe, trace=trace)
        return RoutedStream(opened, outcome, response_headers(outcome, opened.upstream.request_id))
