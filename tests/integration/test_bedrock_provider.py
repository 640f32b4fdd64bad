"""The `type: bedrock` provider through the real server, driven by the openai and anthropic SDKs.

The fake Bedrock runtime verifies every SigV4 signature by recomputing it with botocore (or checks the
bearer API key) and validates Converse requests as strictly as the service does, so every successful
call here also proves the request was signed right and is one Converse accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec

REGION = "us-west-2"
CONFIG_KEY = ("AKIACONFIGKEY0000001", "config-secret-1", "session-token-1")
ENV_KEY = ("AKIAENVKEY0000000002", "env-secret-2", None)
API_KEY = "bedrock-api-key-ABSKexample"
NOVA = "us.amazon.nova-lite-v1:0"
ARN = f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/us.amazon.nova-lite-v1:0"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PDF = "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg=="
HI: list[Any] = [{"role": "user", "content": "hi"}]
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}}}},
]


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[FakeBedrock]:
    fake = FakeBedrock(REGION, credentials={CONFIG_KEY[0]: CONFIG_KEY[1:], ENV_KEY[0]: ENV_KEY[1:]},
                       bearer_tokens={API_KEY}).start()
    yield fake
    fake.stop()


def provider_block(name: str, fake: FakeBedrock, extra: str) -> str:
    if "retries:" not in extra:
        extra += "\nretries: {max: 0}"
    lines = "\n".join(f"    {line}" for line in extra.strip().splitlines())
    return f"""  {name}:
    type: bedrock
    region: {REGION}
    base_url: {fake.base_url}
{lines}
"""


def isolated_aws(server: SwitchboardProcess, tmp: Path, **values: str) -> SwitchboardProcess:
    """The server's environment for botocore's credential chain: `values`, nothing of the machine's own AWS
    setup (no AWS_* variables, empty config files, no instance metadata)."""
    config = tmp / "aws-config"
    config.write_text("[default]\n")
    (tmp / "aws-credentials").write_text("")
    env = {k: v for k, v in server.env.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true", **values)
    server.env = env
    return server


@pytest.fixture(scope="module")
def gateway(fake_bedrock: FakeBedrock, fake_openai: FakeOpenAI,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchboardProcess]:
    config = f"""
providers:
{provider_block("bedrock", fake_bedrock, f'''
aws_access_key_id: {CONFIG_KEY[0]}
aws_secret_access_key: {CONFIG_KEY[1]}
aws_session_token: {CONFIG_KEY[2]}
max_tokens_by_model: {{"fake.echo-v1:0": 321}}
''')}
{provider_block("bedrock-key", fake_bedrock, f"keys: [{API_KEY}]")}
{provider_block("bedrock-env", fake_bedrock, "timeout_s: 30")}
{provider_block("lenient", fake_bedrock, f'''
keys: [{API_KEY}]
drop_unsupported: true
''')}
{provider_block("retrying", fake_bedrock, f'''
keys: [{API_KEY}]
retries: {{max: 1, backoff_initial_ms: 1, backoff_max_ms: 5}}
''')}
{provider_block("wrong-secret", fake_bedrock, f'''
aws_access_key_id: {CONFIG_KEY[0]}
aws_secret_access_key: not-the-secret
aws_session_token: {CONFIG_KEY[2]}
''')}
  backup:
    type: openai
    base_url: {fake_openai.base_url}
    keys: [sk-backup]
    retries: {{max: 0}}
models:
  nova: {{route: "bedrock/{NOVA}"}}
  nova-fb: {{route: "bedrock/fake.error-throttling-v1:0", fallbacks: [backup/gpt-4o-mini]}}
"""
    server = isolated_aws(SwitchboardProcess(config), tmp_path_factory.mktemp("aws"),
                          AWS_ACCESS_KEY_ID=ENV_KEY[0], AWS_SECRET_ACCESS_KEY=ENV_KEY[1]).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield c
    c.close()


def sent(fake: FakeBedrock) -> dict[str, Any]:
    body = fake.last()["body"]
    assert isinstance(body, dict)
    return body


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def raw_stream(gateway: SwitchboardProcess, model: str) -> tuple[int, list[str]]:
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      json={"model": model, "messages": HI, "stream": True}) as resp:
        return resp.status_code, [line for line in resp.iter_lines() if line]


# -- requests, auth and answers

def test_non_stream_signed_with_config_credentials(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="nova", messages=[{"role": "system", "content": "Be brief."}, *HI], temperature=0.2, top_p=0.9,
        max_tokens=50, stop=["END"])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from amazon.nova-lite-v1:0"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 3)
    request = fake_bedrock.last()
    assert request["auth"] == CONFIG_KEY[0] and request["model"] == NOVA and request["stream"] is False
    assert raw.headers["x-upstream-request-id"] == completion.id.removeprefix("chatcmpl-")  # AWS's request id
    validate_against_spec("CreateChatCompletionResponse", json.loads(raw.content))
    assert request["body"] == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}], "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}}


def test_arn_model_id_is_encoded_into_one_path_segment(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    completion = client.chat.completions.create(model=f"bedrock/{ARN}", messages=HI)
    assert completion.choices[0].message.content == "Hello from amazon.nova-lite-v1:0"
    assert fake_bedrock.last()["model"] == ARN  # the fake only matches it if `/` and `:` came percent-encoded
    assert "inferenceConfig" not in sent(fake_bedrock)  # no max_tokens asked: Converse's per-model default


def test_bearer_api_key_from_keys(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    client.chat.completions.create(model=f"bedrock-key/{NOVA}", messages=HI)
    request = fake_bedrock.last()
    assert request["auth"] == "bearer" and request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert "X-Amz-Date" not in request["headers"]


def test_standard_credential_sources_from_the_environment(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    client.chat.completions.create(model=f"bedrock-env/{NOVA}", messages=HI)
    assert fake_bedrock.last()["auth"] == ENV_KEY[0]
    chunks = list(client.chat.completions.create(model=f"bedrock-env/{NOVA}", messages=HI, stream=True))
    assert text_of(chunks) == "Hello from amazon.nova-lite-v1:0"


def test_wrong_secret_is_an_authentication_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=f"wrong-secret/{NOVA}", messages=HI)
    assert info.value.code == "InvalidSignatureException" and "not-the-secret" not in str(info.value.body)


def test_stream_text_and_usage(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    chunks = list(client.chat.completions.create(model="nova", messages=HI, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text_of(chunks) == "Hello from amazon.nova-lite-v1:0"
    assert len({c.id for c in chunks}) == 1 and chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert fake_bedrock.last()["stream"] is True
    chunks = list(client.chat.completions.create(model="bedrock/fake.cached-v1:0", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (130, 3, 133)
    assert last.usage.prompt_tokens_details is not None and last.usage.prompt_tokens_details.cached_tokens == 100


def test_frames_split_across_reads(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="bedrock/fake.split-v1:0", messages=HI, stream=True))
    assert text_of(chunks) == "Hello from fake.split-v1:0" and chunks[-1].choices[0].finish_reason == "stop"


def test_cache_usage_and_cache_points(gateway: SwitchboardProcess, fake_bedrock: FakeBedrock) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "bedrock/fake.cached-v1:0", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Long policy.",
                                        "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]})
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    assert usage["prompt_tokens"] == 130 and usage["prompt_tokens_details"] == {"cached_tokens": 100,
                                                                                "cache_write_tokens": 20}
    body = sent(fake_bedrock)
    assert body["system"] == [{"text": "Long policy."}, {"cachePoint": {"type": "default"}}]
    assert body["messages"][0]["content"] == [{"text": "hi"}, {"cachePoint": {"type": "default"}}]


def test_client_only_fields_do_not_reach_converse(gateway: SwitchboardProcess, fake_bedrock: FakeBedrock) -> None:
    # The fake, like Converse, rejects any unknown top-level field.
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "nova", "messages": HI, "call": {"id": "c1"}, "metadata": {"k": "v"}, "user": {"id": "u"},
        "store": True, "n": 1, "presence_penalty": 0, "parallel_tool_calls": True, "stream_options": None,
        "guardrailConfig": {"guardrailIdentifier": "g1", "guardrailVersion": "1"}})
    assert resp.status_code == 200, resp.text
    assert set(sent(fake_bedrock)) == {"messages", "guardrailConfig"}  # Converse's own fields ride along


@pytest.mark.parametrize(("param", "value"), [("n", 2), ("seed", 7), ("logprobs", True), ("frequency_penalty", 0.5)])
def test_unsupported_parameters(client: openai.OpenAI, fake_bedrock: FakeBedrock, param: str, value: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="nova", messages=HI, **{param: value})
    assert info.value.param == param and info.value.code == "unsupported_parameter"
    client.chat.completions.create(model=f"lenient/{NOVA}", messages=HI, **{param: value})
    assert set(sent(fake_bedrock)) == {"messages"}


def test_max_tokens_by_model(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    client.chat.completions.create(model="bedrock/fake.echo-v1:0", messages=HI)
    assert sent(fake_bedrock)["inferenceConfig"] == {"maxTokens": 321}
    client.chat.completions.create(model="bedrock/fake.echo-v1:0", messages=HI, max_completion_tokens=12)
    assert sent(fake_bedrock)["inferenceConfig"] == {"maxTokens": 12}


# -- content

def test_images_and_documents(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    completion = client.chat.completions.create(model="bedrock/fake.echo-v1:0", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "file", "file": {"filename": "Q3 report (final).pdf",
                                  "file_data": f"data:application/pdf;base64,{PDF}"}},
        {"type": "file", "file": {"filename": "notes_2024!.txt", "file_data": "data:text/plain;base64,aGVsbG8="}},
    ]}])
    assert completion.choices[0].message.content == "Compare"
    assert sent(fake_bedrock)["messages"][0]["content"] == [
        {"text": "Compare"},
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": PDF}}},
        {"document": {"format": "txt", "name": "notes 2024", "source": {"bytes": "aGVsbG8="}}}]


def test_http_image_urls_are_refused_clearly(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="nova", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert info.value.code == "unsupported_content" and "s3://" in info.value.message


# -- tools, structured output, reasoning

def test_tools_round_trip(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    first = client.chat.completions.create(model="bedrock/fake.tools-v1:0", messages=HI, tools=TOOLS,
                                           tool_choice="auto")
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.content == "Let me check."
    calls = [(c.id, c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
             for c in message.tool_calls or []]
    assert calls == [("tooluse_weather01", "get_weather", {"city": "Paris"}), ("tooluse_time02", "get_time",
                                                                               {"tz": "CET"})]
    tool_config = sent(fake_bedrock)["toolConfig"]
    assert tool_config["tools"][0] == {"toolSpec": {"name": "get_weather", "description": "Weather of a city",
                                                    "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}}
    assert tool_config["toolChoice"] == {"auto": {}}

    history: list[Any] = [*HI, message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": "tooluse_weather01", "content": "sunny"},
                          {"role": "tool", "tool_call_id": "tooluse_time02", "content": "noon"}]
    second = client.chat.completions.create(model="bedrock/fake.tools-v1:0", messages=history, tools=TOOLS,
                                            tool_choice="none")
    assert second.choices[0].message.content == "Results: sunny; noon"
    turns = sent(fake_bedrock)["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"] == [{"toolResult": {"toolUseId": "tooluse_weather01", "content": [{"text": "sunny"}]}},
                                   {"toolResult": {"toolUseId": "tooluse_time02", "content": [{"text": "noon"}]}}]
    # tool_choice none with tool blocks in the history: Converse needs toolConfig, sent without a choice
    assert "toolChoice" not in sent(fake_bedrock)["toolConfig"]
    client.chat.completions.create(model="nova", messages=HI, tools=TOOLS, tool_choice="none")
    assert "toolConfig" not in sent(fake_bedrock)


def test_tool_choice_required_and_named(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    client.chat.completions.create(model="bedrock/fake.tools-v1:0", messages=HI, tools=TOOLS, tool_choice="required")
    assert sent(fake_bedrock)["toolConfig"]["toolChoice"] == {"any": {}}
    completion = client.chat.completions.create(model="nova", messages=HI, tools=TOOLS, tool_choice={
        "type": "function", "function": {"name": "get_time"}})
    assert sent(fake_bedrock)["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    assert (completion.choices[0].message.tool_calls or [])[0].function.name == "get_time"  # type: ignore[union-attr]


def test_stream_parallel_tool_calls_have_distinct_indices(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(model="bedrock/fake.tools-v1:0", messages=HI, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert final.choices[0].message.content == "Let me check."
    assert final.choices[0].finish_reason == "tool_calls"


def test_response_format_json_schema(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    completion = client.chat.completions.create(model="nova", messages=HI, response_format=fmt)
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "Hello from amazon.nova-lite-v1:0"}
    assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls
    assert sent(fake_bedrock)["toolConfig"]["toolChoice"] == {"tool": {"name": "json_response"}}
    chunks = list(client.chat.completions.create(model="nova", messages=HI, response_format=fmt, stream=True))
    assert json.loads(text_of(chunks)) == {"answer": "Hello from amazon.nova-lite-v1:0"}
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_reasoning_content(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="bedrock/fake.reasoning-v1:0", messages=HI)
    assert (completion.choices[0].message.model_extra or {})["reasoning_content"] == "Let me think."
    assert completion.choices[0].message.content == "Hello from fake.reasoning-v1:0"
    chunks = list(client.chat.completions.create(model="bedrock/fake.reasoning-v1:0", messages=HI, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
                        if c.choices)
    assert reasoning == "Let me think." and text_of(chunks) == "Hello from fake.reasoning-v1:0"


def test_reasoning_effort_per_model_family(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    client.chat.completions.create(model="bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", messages=HI,
                                   reasoning_effort="low", temperature=0.5, max_completion_tokens=100)
    body = sent(fake_bedrock)
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert body["inferenceConfig"] == {"maxTokens": 1124}  # temperature dropped: Claude's thinking refuses it
    client.chat.completions.create(model="nova", messages=HI, reasoning_effort="high")
    assert sent(fake_bedrock)["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="bedrock/meta.llama3-70b-instruct-v1:0", messages=HI,
                                       reasoning_effort="low")
    assert info.value.param == "reasoning_effort"


@pytest.mark.parametrize(("reason", "expected"), [("max_tokens", "length"), ("stop_sequence", "stop"),
                                                  ("guardrail_intervened", "content_filter"),
                                                  ("content_filtered", "content_filter"),
                                                  ("model_context_window_exceeded", "length")])
def test_stop_reasons(client: openai.OpenAI, reason: str, expected: str) -> None:
    model = f"bedrock/fake.stop-{reason}-v1:0"
    assert client.chat.completions.create(model=model, messages=HI).choices[0].finish_reason == expected
    chunks = list(client.chat.completions.create(model=model, messages=HI, stream=True))
    assert chunks[-1].choices[0].finish_reason == expected


# -- errors, retries, fallbacks

@pytest.mark.parametrize(("kind", "status", "code"), [
    ("throttling", 429, "ThrottlingException"), ("validation", 400, "context_length_exceeded"),
    ("accessdenied", 403, "AccessDeniedException"), ("notready", 503, "ModelNotReadyException"),
    ("unavailable", 503, "ServiceUnavailableException"), ("internal", 500, "InternalServerException"),
    ("timeout", 504, "ModelTimeoutException"), ("notfound", 404, "ResourceNotFoundException")])
def test_aws_errors_are_mapped(gateway: SwitchboardProcess, kind: str, status: int, code: str) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions",
                      json={"model": f"bedrock/fake.error-{kind}-v1:0", "messages": HI})
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["code"] == code and error["message"].startswith("fake ")


def test_retryable_errors_are_retried(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="retrying/fake.error-throttling-v1:0", messages=HI)
    assert info.value.response.headers["x-switchboard-attempts"] == "2"
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model="retrying/fake.error-notready-v1:0", messages=HI)
    assert unavailable.value.status_code == 503 and unavailable.value.response.headers["x-switchboard-attempts"] == "2"
    with pytest.raises(openai.BadRequestError) as final:
        client.chat.completions.create(model="retrying/fake.error-validation-v1:0", messages=HI)
    assert final.value.response.headers["x-switchboard-attempts"] == "1"


def test_fallback_from_bedrock_to_openai(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="nova-fb", messages=HI)
    assert raw.parse().choices[0].message.content == "Hello from gpt-4o-mini"
    assert raw.headers["x-switchboard-fallback"] == "true" and raw.headers["x-switchboard-provider"] == "backup"
    chunks = list(client.chat.completions.create(model="nova-fb", messages=HI, stream=True))
    assert text_of(chunks) == "Hello from gpt-4o-mini"


def test_midstream_exception_ends_with_error_frame(gateway: SwitchboardProcess, client: openai.OpenAI) -> None:
    status, lines = raw_stream(gateway, "bedrock/fake.midstream-throttling-v1:0")
    assert status == 200 and "data: [DONE]" not in lines
    first = json.loads(lines[0][len("data: "):])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert json.loads(lines[1][len("data: "):])["choices"][0]["delta"] == {"content": "Hello "}
    error = json.loads(lines[-1][len("data: "):])["error"]
    assert error["type"] == "rate_limit_error" and "mid-stream" in error["message"]
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="bedrock/fake.midstream-modelstream-v1:0", messages=HI, stream=True))


@pytest.mark.parametrize("model", ["bedrock/fake.cut-v1:0", "bedrock/fake.truncated-v1:0"])
def test_broken_stream_is_never_a_clean_finish(gateway: SwitchboardProcess, model: str) -> None:
    status, lines = raw_stream(gateway, model)
    assert status == 200  # the first frames reached the client: the failure is the stream's last frame
    assert "data: [DONE]" not in lines
    assert "error" in json.loads(lines[-1][len("data: "):])


# -- the Anthropic headend

def test_anthropic_messages_headend(gateway: SwitchboardProcess, fake_bedrock: FakeBedrock) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        message = c.messages.create(model="nova", max_tokens=64, system="Be brief.", messages=HI)
        assert [getattr(b, "text", None) for b in message.content] == ["Hello from amazon.nova-lite-v1:0"]
        assert message.stop_reason == "end_turn" and message.usage.input_tokens == 10
        assert sent(fake_bedrock)["system"] == [{"text": "Be brief."}]
        assert sent(fake_bedrock)["inferenceConfig"] == {"maxTokens": 64}
        tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
        with c.messages.stream(model="bedrock/fake.tools-v1:0", max_tokens=64, messages=HI,
                               tools=[tool]) as stream:  # type: ignore[list-item]
            final = stream.get_final_message()
        assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
        assert final.stop_reason == "tool_use"
        uses = [b for b in final.content if b.type == "tool_use"]
        assert uses[0].input == {"city": "Paris"}


# -- credentials from the environment, separate processes

def _one_provider_config(fake: FakeBedrock) -> str:
    return f"providers:\n{provider_block('br', fake, 'timeout_s: 30')}models:\n  nova: {{route: \"br/{NOVA}\"}}\n"


def test_bearer_token_from_aws_bearer_token_bedrock(fake_bedrock: FakeBedrock, tmp_path: Path) -> None:
    server = isolated_aws(SwitchboardProcess(_one_provider_config(fake_bedrock)), tmp_path,
                          AWS_BEARER_TOKEN_BEDROCK=API_KEY, AWS_ACCESS_KEY_ID=ENV_KEY[0],
                          AWS_SECRET_ACCESS_KEY=ENV_KEY[1])
    server.start()
    try:
        resp = httpx.post(server.url + "/v1/chat/completions", json={"model": "nova", "messages": HI})
        assert resp.status_code == 200, resp.text
        assert fake_bedrock.last()["auth"] == "bearer"  # the Bedrock API key wins, as in the AWS SDKs
    finally:
        server.stop()


def test_no_credentials_is_a_clear_startup_error(fake_bedrock: FakeBedrock, tmp_path: Path) -> None:
    server = isolated_aws(SwitchboardProcess(_one_provider_config(fake_bedrock)), tmp_path)
    with pytest.raises(RuntimeError) as info:
        server.start()
    assert "found no AWS credentials" in str(info.value)
