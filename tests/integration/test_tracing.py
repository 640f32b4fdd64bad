"""Traces (issue 17) through the real server: an OTLP/HTTP receiver in this process decodes what the
gateway exports, fake upstreams of every provider type record the `traceparent` they received, and
a real Streamable HTTP MCP server reports the trace context its tool call arrived with.

Checked: span names and kinds, the parent/child tree, the GenAI attributes, W3C propagation from the
client through the gateway to upstreams and MCP, for a chat, a stream, a fallback, an agent with a
tool, plus the trace id in the access log and the usage log (/admin/usage)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.mcp_http import http_mcp_server
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.fakes.responses_upstream import FakeResponsesUpstream
from tests.server import SwitchboardProcess

pytest.importorskip("opentelemetry.sdk", reason="the otel extra: pip install -e '.[test,otel]'")

MASTER = "sk-tracing-master-key"
UPSTREAM_KEY = "sk-upstream-secret-tracing"
ANTHROPIC_KEY = "sk-ant-tracing-secret"
AZURE_KEY = "azure-tracing-key-1234"
BEDROCK_KEY = "bedrock-api-key-ABSKtracing"
REGION = "us-west-2"
SIGV4 = ("AKIATRACINGKEY000001", "tracing-secret-1")
TRACE_MCP = Path(__file__).resolve().parents[1] / "fakes" / "mcp_trace_server.py"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"

AGENTS = {"agents/tracer.md": """---
model: small
tools: [traced]
---
You look at traces.
"""}




class Fakes:
    def __init__(self) -> None:
        self.openai = FakeOpenAI().start()
        self.agent = FakeAgentUpstream().start()
        self.anthropic = FakeAnthropic(api_keys={ANTHROPIC_KEY}).start()
        self.azure = FakeAzure(AZURE_KEY, "unused-token", {"prod-gpt4o"}).start()
        self.bedrock = FakeBedrock(REGION, credentials={SIGV4[0]: (SIGV4[1], None)},
                                   bearer_tokens={BEDROCK_KEY}).start()
        self.native = FakeResponsesUpstream().start()
        self.receiver = OtlpReceiver().start()

    def stop(self) -> None:
        for fake in (self.openai, self.agent, self.anthropic, self.azure, self.bedrock, self.native, self.receiver):
            fake.stop()


def config(f: Fakes, mcp_port: int, contents: bool = True) -> str:
    return f"""
auth: {{master_key: {MASTER}}}
observability:
  otlp:
    endpoint: {f.receiver.endpoint}
    headers: {{x-collector-token: tok-123}}
    sample_ratio: 1.0
    service_name: sb-under-test
  trace_contents: {str(contents).lower()}
providers:
  up: {{type: openai, base_url: "{f.openai.base_url}", keys: [{UPSTREAM_KEY}], retries: {{max: 0}}}}
  broken: {{type: openai, base_url: "{f.openai.base_url}", keys: [{UPSTREAM_KEY}], retries: {{max: 0}}}}
  agentup: {{type: openai, base_url: "{f.agent.base_url}", keys: [{UPSTREAM_KEY}], retries: {{max: 0}}}}
  native: {{type: openai, base_url: "{f.native.base_url}", keys: [{UPSTREAM_KEY}], responses: native,
           retries: {{max: 0}}}}
  claude: {{type: anthropic, base_url: "{f.anthropic.base_url}", keys: [{ANTHROPIC_KEY}], retries: {{max: 0}}}}
  az:
    type: azure
    base_url: {f.azure.endpoint}
    api_version: "2024-10-21"
    keys: [{AZURE_KEY}]
    deployments: {{gpt-4o: prod-gpt4o}}
    retries: {{max: 0}}
  rock:
    type: bedrock
    region: {REGION}
    base_url: {f.bedrock.base_url}
    aws_access_key_id: {SIGV4[0]}
    aws_secret_access_key: {SIGV4[1]}
    retries: {{max: 0}}
models:
  chat-model: {{route: up/gpt-4o-mini}}
  flaky: {{route: broken/error-500, fallbacks: [up/gpt-4o-mini]}}
  small: agentup/small-model
  sonnet: claude/claude-sonnet-test
  azure-model: az/gpt-4o
  nova: rock/us.amazon.nova-lite-v1:0
  native-model: native/gpt-5
agents: {{dir: agents}}
mcp:
  servers:
    traced: {{url: "http://127.0.0.1:{mcp_port}/mcp", timeout_s: 10}}
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gateway(fakes: Fakes) -> Iterator[SwitchboardProcess]:
    with http_mcp_server(TRACE_MCP) as port:
        server = SwitchboardProcess(config(fakes, port), extra_files=AGENTS).start()
        yield server
        server.stop()


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def _traceparent(headers: dict[str, str]) -> tuple[str, str, str]:
    value = {k.lower(): v for k, v in headers.items()}["traceparent"]
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00" and flags == "01"
    return trace_id, span_id, flags


def _trace_of(receiver: OtlpReceiver, trace_id: str, count: int) -> list[ReceivedSpan]:
    receiver.wait_for(lambda spans: len([s for s in spans if s.trace_id == trace_id]) >= count)
    time.sleep(0.1)
    return receiver.trace(trace_id)


def _one(spans: list[ReceivedSpan], kind: int, name: str | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.kind == kind and (name is None or s.name == name)]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def test_chat_continues_the_clients_trace_to_the_upstream(client: openai.OpenAI, fakes: Fakes) -> None:
    before = len(fakes.openai.requests)
    completion = client.chat.completions.create(
        model="chat-model", messages=[{"role": "user", "content": f"hi, my key is {UPSTREAM_KEY}"}],
        max_tokens=50, temperature=0.5, top_p=0.9,
        extra_headers={"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=abc"})
    assert completion.choices[0].message.content == "Hello from gpt-4o-mini"
    sent = fakes.openai.requests[before]["headers"]
    trace_id, upstream_parent, _ = _traceparent(sent)
    assert trace_id == CLIENT_TRACE
    assert {k.lower(): v for k, v in sent.items()}["tracestate"] == "vendor=abc"

    spans = _trace_of(fakes.receiver, CLIENT_TRACE, 2)
    server = _one(spans, 2)
    attempt = _one(spans, 3)
    assert server.name == "chat chat-model" and server.parent_id == CLIENT_SPAN
    assert server.flags & 0x300 == 0x300  # its parent is remote (the client's)
    assert attempt.name == "chat gpt-4o-mini" and attempt.parent_id == server.span_id
    assert attempt.span_id == upstream_parent  # the upstream's parent is the attempt span
    assert server.start_ns <= attempt.start_ns <= attempt.end_ns <= server.end_ns
    s, a = server.attributes, attempt.attributes
    assert s["http.route"] == "/v1/chat/completions" and s["http.request.method"] == "POST"
    assert s["http.response.status_code"] == 200 and s["switchboard.key_id"] == "master"
    assert s["switchboard.request_id"].startswith("req_")
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "chat-model"
    assert "gen_ai.usage.input_tokens" not in s  # the attempt's (an agent's server span has the sum of its turns)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.id"] == completion.id
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == 5 and a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == fakes.openai.port
    assert a["switchboard.provider"] == "up" and a["switchboard.attempt"] == 1
    assert a["switchboard.fallback"] is False
    assert a["switchboard.upstream_request_id"].startswith("upstream-chatcmpl-")
    # trace_contents: the messages are there, the key is not
    messages = json.loads(a["gen_ai.input.messages"])
    assert messages[0]["role"] == "user" and "hi, my key is" in messages[0]["parts"][0]["content"]
    assert UPSTREAM_KEY not in a["gen_ai.input.messages"] and "[REDACTED]" in a["gen_ai.input.messages"]
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Hello from gpt-4o-mini"
    assert server.resource["service.name"] == "sb-under-test" and server.scope == "switchboard"
    assert fakes.receiver.content_types[-1] == "application/x-protobuf"
    assert fakes.receiver.headers[-1].get("x-collector-token") == "tok-123"


def test_native_responses_attempt_reports_the_responses_usage(client: openai.OpenAI, fakes: Fakes) -> None:
    """A Responses answer counts `input_tokens` / `output_tokens`: the attempt span reports them (the
    usage the router read for the request), not a chat completion's zeros."""
    response = client.responses.create(model="native-model", input="hi", store=False,
                                       extra_headers={"traceparent": f"00-{'5' * 32}-{CLIENT_SPAN}-01"})
    assert response.usage is not None and response.usage.input_tokens == 7
    attempt = _one(_trace_of(fakes.receiver, "5" * 32, 2), 3)
    assert attempt.attributes["gen_ai.usage.input_tokens"] == 7
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 2
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ["completed"]


def test_stream_span_lasts_the_stream_and_carries_time_to_first_chunk(client: openai.OpenAI, fakes: Fakes) -> None:
    before = len(fakes.openai.requests)
    stream = client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "hi"}],
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"fake_chunk_delay": 0.05})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from gpt-4o-mini"
    trace_id, parent, _ = _traceparent(fakes.openai.requests[before]["headers"])
    spans = _trace_of(fakes.receiver, trace_id, 2)
    server, attempt = _one(spans, 2), _one(spans, 3)
    assert server.parent_id is None and attempt.parent_id == server.span_id and attempt.span_id == parent
    assert attempt.end_ns - attempt.start_ns >= 100_000_000  # three chunks 50 ms apart: the stream's duration
    a = attempt.attributes
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < (attempt.end_ns - attempt.start_ns) / 1e9
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.output_tokens"] == 3
    assert json.loads(a["gen_ai.output.messages"])[0]["parts"][0]["content"] == "Hello from gpt-4o-mini"
    assert server.attributes["gen_ai.request.stream"] is True
    assert server.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_fallback_has_two_attempt_spans_the_first_failed(client: openai.OpenAI, fakes: Fakes) -> None:
    before = len(fakes.openai.requests)
    client.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "hi"}])
    first, second = fakes.openai.requests[before:before + 2]
    trace_id, failed_parent, _ = _traceparent(first["headers"])
    assert _traceparent(second["headers"])[0] == trace_id
    spans = _trace_of(fakes.receiver, trace_id, 3)
    server = _one(spans, 2)
    attempts = sorted((s for s in spans if s.kind == 3), key=lambda s: s.start_ns)
    assert [s.name for s in attempts] == ["chat error-500", "chat gpt-4o-mini"]
    assert all(s.parent_id == server.span_id for s in attempts)
    bad, good = attempts
    assert bad.span_id == failed_parent and good.span_id == _traceparent(second["headers"])[1]
    assert bad.status_code == 2 and bad.attributes["error.type"] == "fake_500"
    assert bad.attributes["http.response.status_code"] == 500 and bad.attributes["switchboard.fallback"] is False
    assert good.status_code == 0 and "error.type" not in good.attributes
    assert good.attributes["switchboard.fallback"] is True and good.attributes["switchboard.attempt"] == 2
    assert server.attributes["switchboard.attempts"] == 2 and server.attributes["switchboard.fallback"] is True


def test_agent_turns_and_mcp_tool_call(client: openai.OpenAI, fakes: Fakes) -> None:
    before = len(fakes.agent.requests)
    script = {"calls": [{"name": "trace", "arguments": {}}]}
    completion = client.chat.completions.create(
        model="tracer", messages=[{"role": "user", "content": json.dumps(script)}],
        extra_headers={"traceparent": "00-11112222333344445555666677778888-1234567812345678-01"})
    answer = completion.choices[0].message.content or ""
    assert answer.startswith("Tool said: ")
    seen = json.loads(answer[len("Tool said: "):])
    trace_id = "11112222333344445555666677778888"
    spans = _trace_of(fakes.receiver, trace_id, 6)
    server = _one(spans, 2)
    assert server.name == "invoke_agent tracer"
    assert server.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert server.attributes["gen_ai.agent.name"] == "tracer"
    turns = sorted((s for s in spans if s.kind == 1 and s.name == "chat small"), key=lambda s: s.start_ns)
    tool = _one(spans, 1, "execute_tool trace")
    attempts = [s for s in spans if s.kind == 3]
    assert len(turns) == 2 and len(attempts) == 2
    assert all(t.parent_id == server.span_id for t in turns) and tool.parent_id == server.span_id
    assert sorted(a.parent_id for a in attempts) == sorted(t.span_id for t in turns)
    assert turns[0].end_ns <= tool.start_ns <= tool.end_ns <= turns[1].start_ns
    t = tool.attributes
    assert t["gen_ai.operation.name"] == "execute_tool" and t["gen_ai.tool.name"] == "trace"
    assert t["gen_ai.tool.call.id"] == "call_0_0" and t["mcp.method.name"] == "tools/call"
    assert t["switchboard.mcp.server"] == "traced"
    # the HTTP MCP server got the tool span's traceparent, as a header and in params._meta
    assert seen["traceparent"] == f"00-{trace_id}-{tool.span_id}-01"
    assert seen["meta"]["traceparent"] == seen["traceparent"]
    # each model call's upstream request carries its attempt span
    for request in fakes.agent.requests[before:before + 2]:
        got_trace, got_parent, _ = _traceparent(request["headers"])
        assert got_trace == trace_id and got_parent in {a.span_id for a in attempts}


@pytest.mark.parametrize(("model", "fake_name"),
                         [("sonnet", "anthropic"), ("azure-model", "azure"), ("nova", "bedrock")])
def test_every_provider_type_gets_the_traceparent(client: openai.OpenAI, fakes: Fakes, model: str,
                                                  fake_name: str) -> None:
    fake: Any = getattr(fakes, fake_name)
    before = len(fake.requests)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=20,
                                   extra_headers={"traceparent": CLIENT_TRACEPARENT})
    trace_id, parent, _ = _traceparent(fake.requests[before]["headers"])  # bedrock: SigV4 still verified
    assert trace_id == CLIENT_TRACE
    spans = fakes.receiver.wait_for(lambda s: any(x.span_id == parent for x in s))
    attempt = next(s for s in spans if s.span_id == parent)
    expected = {"anthropic": "anthropic", "azure": "azure.ai.openai", "bedrock": "aws.bedrock"}[fake_name]
    assert attempt.attributes["gen_ai.provider.name"] == expected


def test_trace_id_in_access_log_and_usage_log(client: openai.OpenAI, gateway: SwitchboardProcess,
                                               fakes: Fakes) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat-model", messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": "00-99990000999900009999000099990000-0000000000000001-01"})
    request_id = raw.headers["x-request-id"]
    trace_id = "99990000999900009999000099990000"
    deadline = time.monotonic() + 5
    line: dict[str, Any] | None = None
    while time.monotonic() < deadline and line is None:
        for text in gateway.logs().splitlines():
            if request_id in text and text.startswith("{"):
                line = json.loads(text)
        time.sleep(0.05)
    assert line is not None and line["trace_id"] == trace_id
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not rows:
        usage = httpx.get(gateway.url + "/admin/usage", headers={"Authorization": f"Bearer {MASTER}"}).json()
        rows = [r for r in usage["data"] if r["request_id"] == request_id]
        time.sleep(0.1)
    assert rows and rows[0]["trace_id"] == trace_id


def test_client_disconnect_ends_the_stream_spans(gateway: SwitchboardProcess, fakes: Fakes) -> None:
    trace_id = "abcdefabcdefabcdefabcdefabcdef12"
    body = {"model": "chat-model", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "fake_chunk_delay": 1.0}
    with httpx.Client(timeout=10) as http, http.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body,
            headers={"Authorization": f"Bearer {MASTER}", "traceparent": f"00-{trace_id}-00000000000000aa-01"}) as r:
        for _ in r.iter_bytes():
            break  # the first chunk, then the client leaves
    spans = _trace_of(fakes.receiver, trace_id, 2)
    server, attempt = _one(spans, 2), _one(spans, 3)
    assert server.attributes["http.response.status_code"] == 499
    assert server.attributes["error.type"] == "client_disconnected"
    assert attempt.attributes["error.type"] == "client_disconnected" and attempt.status_code == 2
    assert attempt.end_ns - attempt.start_ns < 3_000_000_000  # ended when the client left, not with the stream
