"""The `type: azure` provider through the real server, driven by the openai and anthropic SDKs.

The fake Azure resource checks what the real one does (the URL style, `api-version`, the deployment,
`api-key` or a bearer token, no unknown fields), so every successful call also proves the request
is one Azure accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.azure_upstream import PROMPT_FILTER, FakeAzure
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec

API_KEY = "azure-key-0123456789"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-token"
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake_azure() -> Iterator[FakeAzure]:
    fake = FakeAzure(API_KEY, TOKEN, {"prod-gpt4o", "prod-embed", "prod-instruct", "gpt-4o-mini"}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(fake_azure: FakeAzure, fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    config = f"""
providers:
  az:
    type: azure
    base_url: {fake_azure.endpoint}
    api_version: "2024-10-21"
    keys: [{API_KEY}]
    deployments: {{gpt-4o: prod-gpt4o, embed: prod-embed, instruct: prod-instruct}}
    retries: {{max: 0}}
    list_models: true
  az-old:
    type: azure
    base_url: {fake_azure.endpoint}/openai
    api_version: "2024-06-01"
    keys: [{API_KEY}]
    retries: {{max: 0}}
  az-v1:
    type: azure
    base_url: {fake_azure.endpoint}/openai/v1
    key_header: authorization
    keys: ["${{AZURE_TOKEN}}"]
    deployments: {{small: gpt-4o-mini}}
    retries: {{max: 0}}
  az-retry:
    type: azure
    base_url: {fake_azure.endpoint}
    api_version: "2024-10-21"
    keys: [{API_KEY}]
    retries: {{max: 1, backoff_initial_ms: 1, backoff_max_ms: 100}}
  backup:
    type: openai
    base_url: {fake_openai.base_url}
    keys: [sk-backup]
    retries: {{max: 0}}
models:
  gpt-4o: {{route: az/gpt-4o}}
  safe: {{route: az/gpt-4o, fallbacks: [backup/gpt-4o-mini], fallback_on: [content_filter]}}
  unsafe: {{route: az/gpt-4o, fallbacks: [backup/gpt-4o-mini]}}
"""
    server = SwitchboardProcess(config, env={"AZURE_TOKEN": TOKEN}).start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield c
    c.close()


def test_deployment_url_api_version_and_api_key(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=HI, temperature=0.3)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from prod-gpt4o"
    assert raw.headers["x-upstream-request-id"] == "azure-req-1"
    extra = completion.model_extra or {}
    assert extra["prompt_filter_results"] == PROMPT_FILTER  # Azure's annotations pass through
    assert (completion.choices[0].model_extra or {})["content_filter_results"]["violence"]["severity"] == "safe"
    validate_against_spec("CreateChatCompletionResponse", json.loads(raw.content))
    sent = fake_azure.last()
    assert sent["path"] == "/openai/deployments/prod-gpt4o/chat/completions"
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["headers"]["api-key"] == API_KEY and "Authorization" not in sent["headers"]
    assert sent["body"] == {"model": "prod-gpt4o", "messages": HI, "temperature": 0.3}


def test_model_without_deployment_entry_is_its_own_deployment(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    completion = client.chat.completions.create(model="az/gpt-4o-mini", messages=HI)
    assert completion.choices[0].message.content == "Hello from gpt-4o-mini"
    assert fake_azure.last()["path"] == "/openai/deployments/gpt-4o-mini/chat/completions"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="az/nowhere", messages=HI)
    assert info.value.code == "DeploymentNotFound"


def test_unknown_client_fields_are_not_forwarded(gateway: SwitchboardProcess, fake_azure: FakeAzure) -> None:
    # Azure answers 400 "Unrecognized request argument supplied" for any field it does not know.
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "gpt-4o", "messages": HI, "call": {"id": "c1"}, "top_k": 3, "user": {"id": "u"},
        "data_sources": [{"type": "azure_search", "parameters": {"endpoint": "https://s"}}]})
    assert resp.status_code == 200, resp.text
    assert set(fake_azure.last()["body"]) == {"model", "messages", "data_sources"}


def test_stream_keeps_one_id_and_carries_annotations(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    # The annotation-only chunk (id "") rides on the first real chunk: one id for the whole stream.
    assert {c.id for c in chunks} == {"chatcmpl-azurestream"}
    assert (chunks[0].model_extra or {})["prompt_filter_results"] == PROMPT_FILTER
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from prod-gpt4o"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert fake_azure.last()["body"]["stream_options"] == {"include_usage": True}


def test_old_api_version_streams_without_stream_options(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    # api-version 2024-06-01 rejects stream_options; the provider leaves it out (and there is no usage chunk).
    chunks = list(client.chat.completions.create(model="az-old/prod-gpt4o", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from prod-gpt4o"
    sent = fake_azure.last()
    assert sent["path"] == "/openai/deployments/prod-gpt4o/chat/completions"  # `/openai` in base_url tolerated
    assert sent["query"] == {"api-version": "2024-06-01"} and "stream_options" not in sent["body"]


def test_v1_api_with_bearer_token(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    completion = client.chat.completions.create(model="az-v1/small", messages=HI)
    assert completion.choices[0].message.content == "Hello from gpt-4o-mini"
    sent = fake_azure.last()
    assert sent["path"] == "/openai/v1/chat/completions" and sent["query"] == {}
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}" and "api-key" not in sent["headers"]
    assert sent["body"]["model"] == "gpt-4o-mini"
    chunks = list(client.chat.completions.create(model="az-v1/small", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from gpt-4o-mini"


def test_embeddings_and_completions(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    raw = client.embeddings.with_raw_response.create(model="az/embed", input=["a", "b"], encoding_format="float")
    assert [d.embedding for d in raw.parse().data] == [[0.5, 0.25], [0.5, 0.25]]
    assert raw.headers["x-upstream-request-id"] == "apim-embed-1"  # Azure's apim-request-id when no x-request-id
    assert fake_azure.last()["path"] == "/openai/deployments/prod-embed/embeddings"
    completion = client.completions.create(model="az/instruct", prompt="Say hi", max_tokens=5)
    assert completion.choices[0].text == "Hello from prod-instruct"
    assert fake_azure.last()["path"] == "/openai/deployments/prod-instruct/completions"
    pieces = list(client.completions.create(model="az/instruct", prompt="Say hi", stream=True))
    assert "".join(p.choices[0].text for p in pieces if p.choices) == "Hello from prod-instruct"


def test_content_filter_error_keeps_code_and_innererror(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "FILTERME"}])
    assert info.value.code == "content_filter"
    body: Any = info.value.body
    assert body["innererror"]["code"] == "ResponsibleAIPolicyViolation"
    assert body["innererror"]["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}


def test_content_filter_error_falls_back_only_when_asked(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    filtered: Any = [{"role": "user", "content": "FILTERME"}]
    raw = client.chat.completions.with_raw_response.create(model="safe", messages=filtered)
    assert raw.parse().choices[0].message.content == "Hello from gpt-4o-mini"
    assert raw.headers["x-switchboard-fallback"] == "true" and raw.headers["x-switchboard-provider"] == "backup"
    with pytest.raises(openai.BadRequestError):  # no fallback_on: a 400 is final
        client.chat.completions.create(model="unsafe", messages=filtered)


def test_filtered_answer_finish_reason(client: openai.OpenAI) -> None:
    cut: Any = [{"role": "user", "content": "CUTOUT"}]
    completion = client.chat.completions.create(model="gpt-4o", messages=cut)
    assert completion.choices[0].finish_reason == "content_filter"
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=cut, stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert (chunks[-1].choices[0].model_extra or {})["content_filter_results"]["violence"]["filtered"] is True


def test_rate_limit_retry_after_is_honoured(client: openai.OpenAI, fake_azure: FakeAzure) -> None:
    before = len(fake_azure.requests)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="az-retry/busy", messages=HI)
    assert info.value.response.headers["retry-after-ms"] == "10"
    assert info.value.response.headers["x-switchboard-attempts"] == "2"
    assert len(fake_azure.requests) - before == 2


def test_models_lists_the_deployments_map(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"az/gpt-4o", "az/embed", "az/instruct"} <= ids


def test_anthropic_messages_headend(gateway: SwitchboardProcess, fake_azure: FakeAzure) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0) as c:
        message = c.messages.create(model="gpt-4o", max_tokens=50, system="Be brief.", messages=HI)
        assert [getattr(b, "text", None) for b in message.content] == ["Hello from prod-gpt4o"]
        assert message.stop_reason == "end_turn" and message.usage.output_tokens == 3
        sent = fake_azure.last()["body"]
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        with c.messages.stream(model="gpt-4o", max_tokens=50, messages=HI) as stream:
            final = stream.get_final_message()
        assert [getattr(b, "text", None) for b in final.content] == ["Hello from prod-gpt4o"]
