"""Recording a request's spans: the server span, one span per upstream attempt, per agent turn and
per MCP tool call, named and attributed by the OpenTelemetry GenAI semantic conventions.

Pure Python, no OpenTelemetry import: a `Tracer` exists only when `observability.otlp` is
configured. On the request path a span gets its identity, timing and propagation header. A span
that ends while its request is open waits for it; when the request's span ends, it and its children
wait for the tracer's next batch (`Tracer.finished`: up to 64 spans or 0.1 s), where their names
and attributes are completed and they are encoded (otlp_encoding.py) and handed, as bytes, to
`export` (the SDK's batch processor, observability/otlp.py). Attributes that many spans share are a
`Preset`, looked up by a tuple of plain values and encoded once.

A streamed attempt's span either watches the batches go by (`watch`), or, when the relay sends the
stream to the client, is told what the relay reads of them anyway (`relayed`, `first_token`,
`finish_reasons`, `relayed_usage`; routing/streams.py `relayed_attempt`).

The tree, for one request:

    {operation} {model}          SERVER   the API request (app.py; attributes from its RequestRecord)
      {operation} {upstream}     CLIENT   one per upstream attempt (routing/engine.py), retries and
                                          fallbacks included; the first failures carry `error.type`
      chat {model}               INTERNAL an agent's turn (one routed model call; its attempts below)
      execute_tool {tool}        INTERNAL an MCP tool call of an agent

Propagation: an attempt (and a tool call) puts the `traceparent` continuing at its own span in
`trace_context.UPSTREAM_TRACE_HEADERS` while it runs; the upstream client and the MCP client send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ..errors import GatewayError
from ..hub import Chunk, Usage, usage_from, usage_from_responses
from ..trace_context import UPSTREAM_TRACE_HEADERS, ParentContext, parse_trace_context, trace_headers
from .genai_contents import Redactor, input_messages, output_messages, stream_output
from .otlp_encoding import SAMPLED_CONTEXT, EncodedSpan, encode_attributes, encode_span

if TYPE_CHECKING:
    from ..agents.tools import McpTool, ToolOutcome
    from ..config import ProviderConfig

__all__ = ["CLIENT", "INTERNAL", "SERVER", "AttemptSpan", "CallTrace", "RequestTrace", "Span", "ToolSpan", "Tracer",
           "bounded", "usage_attributes"]

# OTLP's SpanKind numbers.
INTERNAL, SERVER, CLIENT = 1, 2, 3

# gen_ai.provider.name by provider type (the conventions' well-known values).
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "azure": "azure.ai.openai", "bedrock": "aws.bedrock"}

# gen_ai.operation.name of each API route (routes.py's endpoint paths); other routes are plain HTTP spans.
_OPERATIONS = {"/chat/completions": "chat", "/messages": "chat", "/responses": "chat",
               "/completions": "text_completion", "/embeddings": "embeddings"}

log = logging.getLogger("switchboard.tracing")

_MAX_ATTRIBUTE_CHARS = 4096  # a client or upstream string on a span (ids, models): bounded

_random_bits = random.getrandbits
_time_ns = time.time_ns


class _Provider(Protocol):
    name: str


class _Deployment(Protocol):
    """What an attempt span reads of routing.deployment.Deployment (not imported: it imports this module)."""

    @property
    def provider(self) -> _Provider: ...

    @property
    def model(self) -> str: ...

    @property
    def id(self) -> str: ...


def bounded(value: str) -> str:
    return value if len(value) <= _MAX_ATTRIBUTE_CHARS else value[:_MAX_ATTRIBUTE_CHARS]


SPANS_PER_ITEM = 64  # ended spans are completed, encoded and queued for export in batches of this many ...
FLUSH_AFTER_S = 0.1  # ... or fewer, at most this long after the first of them ended
_PRESETS_MAX = 4096  # distinct sets of shared attributes kept (routes x keys x models x statuses, mostly)


class Preset:
    """Attributes many spans share (an attempt's provider and deployment, a route), encoded for OTLP
    once: a span carries its preset and, in `attributes`, only what is its own."""

    __slots__ = ("attributes", "encoded", "name")

    def __init__(self, attributes: dict[str, Any], name: str = "") -> None:
        self.attributes = attributes
        self.encoded = encode_attributes(b"\x4a", attributes)
        self.name = name  # the name of the spans that share it, when they all have the same


class Span:
    """One span: identity, timing, attributes; `end()` exports it once (when sampled)."""

    # What the SDK's span processors read of a finished span before queueing it: only sampled ones are exported.
    context = SAMPLED_CONTEXT

    __slots__ = (
        "attributes",
        "end_ns",
        "error",
        "kind",
        "name",
        "parent_id",
        "preset",
        "remote_parent",
        "span_id",
        "start_ns",
        "trace",
        "tracer",
    )

    def __init__(self, tracer: Tracer, trace: RequestTrace | None, parent_id: int | None, name: str, kind: int,
                 attributes: dict[str, Any], start_ns: int | None = None) -> None:
        self.tracer = tracer
        self.trace = trace  # the request's server span (None for the server span: see request())
        self.span_id = _random_bits(64) or 1
        self.parent_id = parent_id
        self.remote_parent = False
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.preset: Preset | None = None
        self.start_ns = _time_ns() if start_ns is None else start_ns
        self.end_ns = 0
        self.error: str | None = None  # the status description of a span that failed (status ERROR)

    @property
    def trace_id(self) -> int:
        return self.request().trace_id

    @property
    def sampled(self) -> bool:
        return self.request().sampled

    def request(self) -> RequestTrace:
        """The server span of this span's request (RequestTrace: itself, without a reference cycle)."""
        assert self.trace is not None
        return self.trace

    def complete(self) -> None:
        """Called once the span has ended, before it is encoded: a span may make its attributes then."""

    def all_attributes(self) -> dict[str, Any]:
        return {**self.preset.attributes, **self.attributes} if self.preset is not None else dict(self.attributes)

    def fail(self, error_type: str, description: str) -> None:
        self.attributes["error.type"] = error_type
        self.error = description

    def end(self, end_ns: int | None = None) -> None:
        if self.end_ns:
            return
        self.end_ns = _time_ns() if end_ns is None else end_ns
        trace = self.trace
        assert trace is not None
        if not trace.sampled_flag:
            return
        if not trace.end_ns:  # its request is still open: completed and encoded with it, in one pass
            children = trace.children
            if children is None:
                trace.children = [self]
            else:
                children.append(self)
            return
        self.tracer.finished(self)

    def propagation(self) -> bytes:
        """The header lines that continue the trace at this span."""
        trace = self.request()
        return trace_headers(trace.trace_id_value, self.span_id, trace.sampled_flag, trace.tracestate)


class Tracer:
    """The gateway's span recorder: sampling, ids, what spans may carry; `export` takes finished spans."""

    __slots__ = ("_ended", "_flush_timer", "bound", "encode", "export", "presets",
                 "provider_attributes", "redactor")

    def __init__(self, export: Callable[[Any], None], sample_ratio: float, contents: bool,
                 providers: Mapping[str, ProviderConfig], secrets: tuple[str, ...], encode: bool = True) -> None:
        # `export` gets each finished span: encoded (an `EncodedSpan`, bytes: nothing for the garbage
        # collector to walk while it waits in the export queue), or the Span itself with `encode=False`.
        self.export = export
        self.encode = encode
        # TraceIdRatioBased's rule: sampled when the trace id's low 64 bits are under ratio * 2^64.
        self.bound = round(sample_ratio * (1 << 64))
        self.redactor = Redactor(secrets) if contents else None
        # What every attempt on a provider says about where it went (server.address/port, provider name).
        self.provider_attributes = {name: _provider_attributes(p) for name, p in providers.items()}
        self.presets: dict[tuple[Any, ...], Preset] = {}  # by a tuple of plain values: new_preset()
        self._ended: list[Span] = []  # not completed yet (see finished)
        self._flush_timer: asyncio.TimerHandle | None = None

    def finished(self, span: Span, children: list[Span] | None = None) -> None:
        """A sampled span ended. Ended spans wait and are completed and encoded in batches, on the
        loop: SPANS_PER_ITEM at once, or what ended within FLUSH_AFTER_S of the first of them. Run
        for the few spans of each pass of a loaded loop, that code started cold each time; in a batch
        it runs warm, span after span. A batch goes to `export` as one item (the export thread then
        only joins bytes and sends them, holding the GIL briefly; the processor's work per item is
        paid once for many spans, and its queue bound counts items of SPANS_PER_ITEM)."""
        ended = self._ended
        if children:  # a request's spans that ended before it
            ended.extend(children)
        ended.append(span)
        if len(ended) >= SPANS_PER_ITEM:
            self.flush(full_items=True)
        if self._ended and self._flush_timer is None:
            try:
                self._flush_timer = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self.flush)
            except RuntimeError:  # no event loop (plain code): at once
                self.flush()

    def flush(self, full_items: bool = False) -> None:
        """Complete and encode the spans ended so far and hand them over by SPANS_PER_ITEM (also at
        shutdown); with `full_items` (the count was reached), full items only: the rest waits.
        A span whose completion or encoding fails is dropped and logged, not its batch."""
        ended = self._ended
        cut = len(ended) - len(ended) % SPANS_PER_ITEM if full_items else len(ended)
        batch, self._ended = ended[:cut], ended[cut:]
        if not self._ended and self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        failed = 0
        for first in range(0, len(batch), SPANS_PER_ITEM):
            chunk: list[bytes] = []
            for span in batch[first:first + SPANS_PER_ITEM]:
                try:
                    span.complete()
                    if not self.encode:
                        self.export(span)
                        continue
                    chunk.append(encode_span(span))
                except Exception:
                    if not failed:
                        log.exception("a span could not be completed or encoded: dropped")
                    failed += 1
            if chunk:
                self.export(EncodedSpan(b"".join(chunk)))
        if failed > 1:
            log.error("%d more spans of the same batch dropped", failed - 1)

    def new_preset(self, span: Span, key: tuple[Any, ...], attributes: dict[str, Any], name: str) -> None:
        """`span` gets a new preset of `attributes` and `name` for `key` (not in `presets` yet), or,
        once too many distinct keys were seen, keeps them as its own."""
        span.name = name
        if len(self.presets) >= _PRESETS_MAX:
            span.attributes.update(attributes)
            return
        span.preset = self.presets[key] = Preset(attributes, name)

    def begin(self, headers: Mapping[str, str], method: str, route: str) -> RequestTrace:
        """The server span of a request, continuing the client's trace when it sent a valid `traceparent`."""
        traceparent = headers.get("traceparent")
        parent = None if traceparent is None else parse_trace_context(traceparent, headers.get("tracestate"))
        return RequestTrace(self, parent, method, route)


def _provider_attributes(config: ProviderConfig) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.provider.name": PROVIDER_NAMES.get(config.type, config.type),
                                  "switchboard.provider": config.name}
    parts = urlsplit(config.base_url)
    if parts.hostname:
        attributes["server.address"] = parts.hostname
        attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes


class RequestTrace(Span):
    """The server span of one API request; its name and most attributes come from the request's
    record when it is over (tracing.finish_trace, a gateway observer)."""

    __slots__ = ("children", "encoded_ids", "method", "record", "route", "sampled_flag", "trace_id_value",
                 "tracestate")

    def __init__(self, tracer: Tracer, parent: ParentContext | None, method: str, route: str) -> None:
        # Span.__init__'s fields, set here directly: this runs for every request.
        self.tracer = tracer
        self.trace = None
        if parent is not None:
            trace_id, sampled, self.parent_id = parent.trace_id, parent.sampled, parent.span_id
            self.tracestate = parent.tracestate
            self.remote_parent = True
        else:
            trace_id = _random_bits(128) or 1
            sampled = (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < tracer.bound
            self.parent_id = None
            self.tracestate = None
            self.remote_parent = False
        self.trace_id_value = trace_id
        self.sampled_flag = sampled
        self.encoded_ids: bytes | None = None  # the trace id (and state) fields every span of it starts with
        self.children: list[Span] | None = None  # spans of this request that ended before it (see Span.end)
        self.record: Any = None  # the request's RequestRecord, from its end until the span is complete
        self.method = method
        self.route = route
        self.span_id = _random_bits(64) or 1
        self.name = route  # named by the record when the request is over (tracing.finish_trace)
        self.kind = SERVER
        self.attributes = {}
        self.preset = None
        self.start_ns = _time_ns()
        self.end_ns = 0
        self.error = None

    @property
    def trace_id(self) -> int:
        return self.trace_id_value

    @property
    def trace_id_hex(self) -> str:
        """The trace id as logs write it (32 hex digits: the access log and the usage row)."""
        return self.trace_id_value.to_bytes(16, "big").hex()

    @property
    def sampled(self) -> bool:
        return self.sampled_flag

    def request(self) -> RequestTrace:
        return self

    def complete(self) -> None:
        """Its name and attributes, from the request's record (tracing.finish_trace), in the batch it
        ended in (Tracer.flush). What requests have in common (route, status, key, model...) is a
        shared preset, which names the span too; the request id, timings and an agent's usage are
        the span's own."""
        record, self.record = self.record, None  # (the record refers to this span: no cycle is kept)
        if record is None:
            return
        own = self.attributes
        own["switchboard.request_id"] = record.request_id  # ours: short
        agent = record.agent
        operation = "invoke_agent" if agent is not None else _OPERATIONS.get(record.endpoint)
        model = bounded(record.model) if record.model is not None else None
        if operation is not None:
            if agent is not None and record.usage is not None:  # every turn's (each attempt span has its own)
                usage_attributes(own, record.usage)
            if record.stream and record.first_token_s is not None:
                own["gen_ai.response.time_to_first_chunk"] = record.first_token_s
        status, error_type = record.status, record.error_type
        if error_type is not None and status >= 500:  # HTTP server spans: a 4xx is the client's
            self.error = f"{status} {error_type}"
        tracer = self.tracer
        key = ("request", self.method, self.route, status, record.key_id, record.facade, agent, operation, model,
               record.upstream_model, record.stream, record.attempts, record.fallback, error_type)
        preset = tracer.presets.get(key)
        if preset is None:
            tracer.new_preset(self, key, _request_attributes(self, record, operation, model),
                              _request_span_name(self, agent, operation, model))
        else:
            self.preset = preset
            self.name = preset.name

    def end(self, end_ns: int | None = None) -> None:
        """The request is over: its span and the spans of it that ended before it go to the tracer."""
        if self.end_ns:
            return
        self.end_ns = _time_ns() if end_ns is None else end_ns
        if not self.sampled_flag:
            return
        children, self.children = self.children, None
        self.tracer.finished(self, children)

    # -- children
    def call(self, operation: str, body: Mapping[str, Any] | None) -> CallTrace:
        """A routed call of this request: the parent of its attempt spans."""
        return CallTrace(self, self, operation, body)

    def turn(self, body: Mapping[str, Any]) -> CallTrace:
        """One model call of an agent: a span of its own, parent of its attempts; ended by the CallTrace."""
        model = str(body.get("model", ""))
        span = Span(self.tracer, self, self.span_id, f"chat {model}", INTERNAL,
                    {"gen_ai.operation.name": "chat", "gen_ai.request.model": bounded(model)})
        return CallTrace(self, span, "chat", body, owns_parent=True)

    def tool(self, tool: McpTool, call_id: str, arguments: str) -> ToolSpan:
        return ToolSpan(self, tool, call_id, arguments)


def usage_attributes(attributes: dict[str, Any], usage: Usage) -> None:
    attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
    attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if usage.cached_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.cache_write_tokens:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if usage.estimated:
        attributes["switchboard.usage.estimated"] = True


def _request_span_name(trace: RequestTrace, agent: str | None, operation: str | None, model: str | None) -> str:
    if operation is not None:
        if agent is not None:
            return f"invoke_agent {agent}"
        if model is not None:
            return f"{operation} {model}"
    return f"{trace.method} {trace.route}"


def _request_attributes(trace: RequestTrace, record: Any, operation: str | None, model: str | None) -> dict[str, Any]:
    """The server span's attributes that many requests share (made once per distinct set)."""
    stable: dict[str, Any] = {"http.request.method": trace.method, "http.route": trace.route,
                              "http.response.status_code": record.status}
    if record.key_id is not None:
        stable["switchboard.key_id"] = record.key_id
    if record.facade is not None:
        stable["switchboard.facade"] = record.facade
    if record.agent is not None:
        stable["gen_ai.agent.name"] = record.agent
    if operation is not None:
        stable["gen_ai.operation.name"] = operation
        if model is not None:
            stable["gen_ai.request.model"] = model
        if record.upstream_model is not None:
            stable["gen_ai.response.model"] = bounded(record.upstream_model)
        stable["gen_ai.request.stream"] = record.stream
        if record.attempts:
            stable["switchboard.attempts"] = record.attempts
            stable["switchboard.fallback"] = record.fallback
    if record.error_type is not None:
        stable["error.type"] = bounded(record.error_type)
    return stable


_Params = tuple[int | None, float | None, float | None]
_NO_PARAMS: _Params = (None, None, None)


def _attempt_attributes(tracer: Tracer, operation: str, provider: str, model: str, deployment_id: str, number: int,
                        fallback: bool, params: _Params, response_model: str | None,
                        reasons: tuple[str, ...]) -> dict[str, Any]:
    """What an attempt span shares with the other attempts of its kind (a preset)."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": operation, **tracer.provider_attributes.get(provider, {}),
                                  "gen_ai.request.model": model, "switchboard.deployment": deployment_id,
                                  "switchboard.attempt": number, "switchboard.fallback": fallback}
    max_tokens, temperature, top_p = params
    if max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = max_tokens
    if temperature is not None:
        attributes["gen_ai.request.temperature"] = temperature
    if top_p is not None:
        attributes["gen_ai.request.top_p"] = top_p
    if response_model is not None:
        attributes["gen_ai.response.model"] = response_model
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = list(reasons)
    return attributes


class CallTrace:
    """One routed call (a request's, or an agent turn's): its attempts' parent and what they share.

    The engine opens an `AttemptSpan` per attempt; a stream's answering attempt stays open until the
    routed stream closes (`closed`), which also ends a turn's own span."""

    __slots__ = ("_owns_parent", "body", "open_attempt", "operation", "params", "parent", "parent_id", "trace")

    def __init__(self, trace: RequestTrace, parent: Span, operation: str, body: Mapping[str, Any] | None,
                 owns_parent: bool = False) -> None:
        self.trace = trace
        self.parent = parent
        self.parent_id = parent.span_id
        self.operation = operation
        self.body = body
        self._owns_parent = owns_parent
        self.params: _Params | None = None  # read_params(), once the first attempt span is complete
        self.open_attempt: AttemptSpan | None = None

    def attempt(self, deployment: _Deployment, number: int, fallback: bool) -> AttemptSpan:
        """The span of one attempt, started now: only its identity and propagation header are made
        on the request path, its attributes when it has ended (`AttemptSpan.complete`)."""
        return AttemptSpan(self, deployment, number, fallback)

    def read_params(self) -> _Params:
        """The request parameters every attempt of this call reports (gen_ai.request.max_tokens,
        temperature, top_p), as plain values (part of the attempts' shared attributes): read once."""
        body = self.body
        if not body:
            params = _NO_PARAMS
        else:
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens", body.get("max_output_tokens")))
            temperature, top_p = body.get("temperature"), body.get("top_p")
            params = (max_tokens if max_tokens.__class__ is int else None,
                      float(temperature) if temperature.__class__ is float or temperature.__class__ is int else None,
                      float(top_p) if top_p.__class__ is float or top_p.__class__ is int else None)
        self.params = params
        return params

    def failed(self, exc: BaseException) -> None:
        """No attempt answered (a turn's own span ends with the error)."""
        if self._owns_parent:
            if isinstance(exc, GatewayError):
                self.parent.fail(exc.code or exc.type, exc.message)
            else:
                self.parent.fail(type(exc).__name__, "cancelled")
            self.parent.end()

    def closed(self) -> None:
        """The routed stream closed: its attempt span and a turn's span end now."""
        if self.open_attempt is not None:
            self.open_attempt.stream_closed()
            self.open_attempt = None
        if self._owns_parent:
            self.parent.end()


class AttemptSpan(Span):
    """One upstream attempt (CLIENT). While it runs, its `traceparent` is what the upstream gets.

    What its answer says is noted as plain values (a complete answer's body is read when the span is
    complete; a stream's chunks as they pass); what repeats from attempt to attempt (where it went,
    the request's parameters, the response model and finish reasons) becomes its preset, the ids,
    token counts and timings its own attributes."""

    __slots__ = ("_finish", "_first", "_output", "_response_id", "_response_model", "_result", "_token", "call",
                 "deployment", "fallback", "number", "usage")

    def __init__(self, call: CallTrace, deployment: _Deployment, number: int, fallback: bool) -> None:
        trace = call.trace
        tracer = self.tracer = trace.tracer
        # Span.__init__'s fields, set here directly: this runs for every attempt.
        self.trace = trace
        self.span_id = _random_bits(64) or 1
        self.parent_id = call.parent_id
        self.remote_parent = False
        self.name = ""  # named when it is complete
        self.kind = CLIENT
        self.attributes = {}
        self.preset = None
        self.start_ns = _time_ns()
        self.end_ns = 0
        self.error = None
        self.call = call
        self.deployment = deployment
        self.number = number
        self.fallback = fallback
        self._result: Any = None
        self._token: Token[bytes] | None = UPSTREAM_TRACE_HEADERS.set(self.propagation())
        self.usage: Usage | None = None
        self._first = 0
        self._finish: list[str] | None = None
        self._response_id: Any = None
        self._response_model: Any = None
        self._output: list[str] | None = [] if tracer.redactor is not None else None

    def _detach(self) -> None:
        if self._token is not None:
            try:
                UPSTREAM_TRACE_HEADERS.reset(self._token)
            except ValueError:  # ended from another context (a stream closed elsewhere): nothing to undo there
                pass
            self._token = None

    def failed(self, exc: BaseException) -> None:
        self._detach()
        if isinstance(exc, GatewayError):
            self.attributes["http.response.status_code"] = exc.status
            self.fail(bounded(exc.code or exc.type), exc.message)
        elif isinstance(exc, TimeoutError):
            self.fail("timeout", "the attempt timed out")
        else:
            self.fail(type(exc).__name__, "the attempt was cancelled")
        self.end()

    def answered(self, result: Any, hold: bool) -> None:
        """The attempt succeeded: a complete answer ends the span; a stream's waits for the stream."""
        if self._token is not None:
            self._detach()
        if hold:
            self.call.open_attempt = self
            return
        self._result = result  # read when the span is complete
        self.end()

    def complete(self) -> None:
        """Its name and attributes, now that it has ended (Tracer.flush, off the request path)."""
        call, deployment, tracer, attributes = self.call, self.deployment, self.tracer, self.attributes
        result = self._result
        body = None
        if result is not None:
            self._result = None
            request_id = getattr(result, "request_id", None)
            if request_id:
                attributes["switchboard.upstream_request_id"] = bounded(str(request_id))
            body = getattr(result, "body", None)
            if body.__class__ is dict:
                self._read_answer(body, getattr(result, "usage", None))
        response_id, response_model = self._response_id, self._response_model
        if response_id.__class__ is str:
            attributes["gen_ai.response.id"] = bounded(response_id)
        response_model = bounded(response_model) if response_model.__class__ is str else None
        if self.usage is not None:
            usage_attributes(attributes, self.usage)
        finish = self._finish
        reasons = tuple(finish) if finish else ()
        operation, provider, model = call.operation, deployment.provider.name, deployment.model
        params = call.params if call.params is not None else call.read_params()
        number, fallback = self.number, self.fallback
        deployment_id = deployment.id
        key = ("attempt", operation, provider, model, deployment_id, number, fallback, params, response_model, reasons)
        preset = tracer.presets.get(key)
        if preset is None:
            model = bounded(model)
            tracer.new_preset(self, key, _attempt_attributes(tracer, operation, provider, model, deployment_id, number,
                                                             fallback, params, response_model, reasons),
                              f"{operation} {model}")
        else:
            self.preset = preset
            self.name = preset.name
        redactor = tracer.redactor
        if redactor is not None:
            if call.body is not None:
                attributes["gen_ai.input.messages"] = input_messages(call.body, redactor)
            if body.__class__ is dict:
                attributes["gen_ai.output.messages"] = output_messages(body, redactor)

    def _read_answer(self, body: dict[str, Any], usage: Usage | None) -> None:
        """A complete answer's id, model, finish reasons and usage (`usage`: as the router read it, if it did)."""
        self._response_id = body.get("id")
        self._response_model = body.get("model")
        choices = body.get("choices")
        reasons: list[str] = []
        if choices.__class__ is list:
            for choice in choices:
                if choice.__class__ is dict:
                    reason = choice.get("finish_reason")
                    if reason.__class__ is str:
                        reasons.append(reason)
        if not reasons and body.get("status").__class__ is str:  # a Responses `response` object
            reasons = [body["status"]]
        self._finish = reasons
        if usage is None:
            raw = body.get("usage")
            usage = usage_from_responses(raw) if body.get("object") == "response" else usage_from(raw)
        self.usage = usage

    # -- a stream's attempt: the chunks are watched as they pass, the span ends with the stream
    def watch(self, first: list[Chunk], batches: AsyncIterator[list[Chunk]]) -> AsyncIterator[list[Chunk]]:
        """`batches`, passed on unchanged, noting what the span reports (id, model, finish, usage, TTFT)."""
        self._finish = []
        self._note(first)
        return self._watch(batches)

    async def _watch(self, batches: AsyncIterator[list[Chunk]]) -> AsyncIterator[list[Chunk]]:
        try:
            async for batch in batches:
                self._note(batch)
                yield batch
        except GatewayError as err:
            self.attributes["http.response.status_code"] = err.status
            self.fail(bounded(err.code or err.type), err.message)
            raise
        finally:
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _note(self, batch: list[Chunk]) -> None:
        if not self._first:
            self._note_start(batch)
        finish, output = self._finish, self._output
        assert finish is not None  # a list from watch() on
        for chunk in batch:
            choices = chunk.get("choices")
            if choices:
                for choice in choices:
                    reason = choice.get("finish_reason")
                    if reason:
                        finish.append(reason)
                    if output is not None:
                        stream_output(choice, output)
            usage = chunk.get("usage")
            if usage is not None:
                self.usage = usage_from(usage) or self.usage

    def _note_start(self, batch: list[Chunk]) -> None:
        """Until the first token: the response's id and model, and when that token came."""
        for chunk in batch:
            if self._response_id is None:
                self._response_id = chunk.get("id")
                self._response_model = chunk.get("model")
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta")
                if choice.get("text") or (delta and (delta.get("content") or delta.get("tool_calls"))):
                    self._first = _time_ns()
                    return

    # -- a stream the relay sends to the client: the relay reports, no chunk is looked at twice
    @property
    def relayable(self) -> bool:
        """Whether the relay can report this attempt's stream (not when the answer's text is recorded)."""
        return self._output is None

    def relayed(self, first: Chunk | None) -> None:
        """The relay will report this stream (`finish_reasons`, `first_token`, `relayed_usage`);
        `first` is its first chunk."""
        self._finish = []
        if first is not None:
            self._response_id = first.get("id")
            self._response_model = first.get("model")

    def first_token(self) -> None:
        self._first = _time_ns()

    @property
    def finish_reasons(self) -> list[str]:
        """Where the relay appends the finish reasons it reads as it walks each batch (after `relayed`)."""
        assert self._finish is not None
        return self._finish

    def relayed_usage(self, usage: Usage | None) -> None:
        """The stream's usage as the relay recorded it (estimated when the upstream sent none)."""
        self.usage = usage

    def stream_closed(self) -> None:
        if self.end_ns:
            return
        attributes = self.attributes
        if self._first:
            attributes["gen_ai.response.time_to_first_chunk"] = (self._first - self.start_ns) / 1e9
        if self._output is not None and self.tracer.redactor is not None:
            attributes["gen_ai.output.messages"] = self.tracer.redactor.json(
                [{"role": "assistant", "parts": [{"type": "text", "content": "".join(self._output)}],
                  "finish_reason": self._finish[-1] if self._finish else None}])
        if not self._finish and self.error is None:  # closed before its end: the client went away
            self.fail("client_disconnected", "the stream was closed before it ended")
        self.end()


class ToolSpan(Span):
    """One MCP tool call of an agent (`execute_tool`); the MCP request carries its `traceparent`."""

    __slots__ = ("_token",)

    def __init__(self, trace: RequestTrace, tool: McpTool, call_id: str, arguments: str) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool.name, "gen_ai.tool.type": "extension",
            "gen_ai.tool.call.id": bounded(call_id), "mcp.method.name": "tools/call",
            "switchboard.mcp.server": tool.server}
        redactor = trace.tracer.redactor
        if redactor is not None:
            attributes["gen_ai.tool.call.arguments"] = redactor.text(arguments)
        super().__init__(trace.tracer, trace, trace.span_id, f"execute_tool {tool.name}", INTERNAL, attributes)
        self._token: Token[bytes] | None = UPSTREAM_TRACE_HEADERS.set(self.propagation())

    def done(self, outcome: ToolOutcome) -> None:
        if self._token is not None:
            UPSTREAM_TRACE_HEADERS.reset(self._token)
            self._token = None
        if outcome.is_error:
            self.fail("tool_error", outcome.text[:256])
        redactor = self.tracer.redactor
        if redactor is not None:
            self.attributes["gen_ai.tool.call.result"] = redactor.text(outcome.text)
        self.end()
