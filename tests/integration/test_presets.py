"""`preset: NAME` on `type: openai` providers, through the real server, against fakes of each cloud that
enforce its documented quirks (tests/fakes/compatible_upstream.py). Each provider keeps the preset's
quirks and overrides only `base_url` (to reach the fake): explicit config wins over the preset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.compatible_upstream import KEY, SERVICES, FakeCompatibleClouds
from tests.server import SwitchboardProcess

HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def clouds() -> Iterator[FakeCompatibleClouds]:
    fake = FakeCompatibleClouds().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(clouds: FakeCompatibleClouds) -> Iterator[SwitchboardProcess]:
    providers = ""
    for service, (_, needs_key) in SERVICES.items():
        keys = f"\n    keys: [{KEY}]" if needs_key else ""
        providers += f"""
  {service}:
    type: openai
    preset: {service}
    base_url: {clouds.base_url(service)}{keys}
    retries: {{max: 0}}"""
    providers += f"""
  groq-raw:
    type: openai
    preset: groq
    base_url: {clouds.base_url("groq")}
    keys: [{KEY}]
    unsupported_params: []
    retries: {{max: 0}}
  groq-lenient:
    type: openai
    preset: groq
    base_url: {clouds.base_url("groq")}
    keys: [{KEY}]
    drop_unsupported: true
    retries: {{max: 0}}"""
    server = SwitchboardProcess(f"providers:{providers}\n").start()
    yield server
    server.stop()


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield c
    c.close()


def sent(clouds: FakeCompatibleClouds, service: str) -> dict[str, Any]:
    body = clouds.last(service)["body"]
    assert isinstance(body, dict)
    return body


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("service", list(SERVICES))
def test_every_preset_chats_and_streams_with_usage(client: openai.OpenAI, clouds: FakeCompatibleClouds,
                                                   service: str) -> None:
    completion = client.chat.completions.create(model=f"{service}/m1", messages=HI, temperature=0.5)
    assert completion.choices[0].message.content == "Hello from m1"
    request = clouds.last(service)
    assert request["path"].endswith(f"{SERVICES[service][0]}/chat/completions")
    assert ("Authorization" in request["headers"]) is SERVICES[service][1]
    chunks = list(client.chat.completions.create(model=f"{service}/m1", messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    assert text_of(chunks) == "Hello from m1"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].total_tokens == 10  # however the service reports it


def test_gemini_unknown_fields_and_bookkeeping_fields_are_not_sent(gateway: SwitchboardProcess,
                                                                   clouds: FakeCompatibleClouds) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "gemini/gemini-2.5-flash", "messages": HI, "call": {"id": 1}, "store": True, "user": "u1",
        "metadata": {"a": "b"}, "reasoning_effort": "low"})
    assert resp.status_code == 200, resp.text
    assert set(sent(clouds, "gemini")) == {"model", "messages", "reasoning_effort"}


def test_gemini_list_shaped_errors_keep_their_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini/error", messages=HI)
    assert info.value.message.endswith("API key not valid for this model.")


def test_gemini_unsupported_fields_are_named(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=HI, logit_bias={"42": 1})
    assert info.value.param == "logit_bias" and info.value.code == "unsupported_parameter"


def test_groq_rejected_fields(client: openai.OpenAI, clouds: FakeCompatibleClouds) -> None:
    named: Any = [{"role": "user", "content": "hi", "name": "alice"}]
    client.chat.completions.create(model="groq/llama-3.3-70b", messages=named, n=1, logprobs=False)
    body = sent(clouds, "groq")
    assert body["messages"] == HI and "n" not in body and "logprobs" not in body
    for param, value in (("logprobs", True), ("n", 2), ("top_logprobs", 3)):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="groq/llama-3.3-70b", messages=HI, **{param: value})
        assert info.value.param == param  # named by the gateway, not Groq's "property ... is unsupported"
    client.chat.completions.create(model="groq-lenient/llama-3.3-70b", messages=HI, logprobs=True, top_logprobs=2)
    assert "logprobs" not in sent(clouds, "groq")


def test_explicit_config_wins_over_the_preset(client: openai.OpenAI) -> None:
    # groq-raw sets `unsupported_params: []`: logprobs reaches Groq, which rejects it in its own words.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="groq-raw/llama-3.3-70b", messages=HI, logprobs=True)
    assert "property 'logprobs' is unsupported" in info.value.message


def test_mistral_renames_and_strict_schema(client: openai.OpenAI, clouds: FakeCompatibleClouds) -> None:
    first = client.chat.completions.create(model="mistral/mistral-large-latest", messages=HI, seed=7,
                                           max_completion_tokens=20, user="u1", store=False)
    body = sent(clouds, "mistral")
    assert (body["random_seed"], body["max_tokens"]) == (7, 20)
    assert not {"seed", "max_completion_tokens", "user", "store"} & set(body)
    # a history replayed from SDK objects carries refusal/annotations and names, which Mistral refuses
    history: Any = [{"role": "user", "content": "hi", "name": "alice"}, first.choices[0].message.model_dump(),
                    {"role": "user", "content": "and?"}]
    assert "refusal" in history[1]
    client.chat.completions.create(model="mistral/mistral-large-latest", messages=history)
    assert sent(clouds, "mistral")["messages"][1] == {"role": "assistant", "content": "Hello from mistral-large-latest",
                                                      "tool_calls": None}
    list(client.chat.completions.create(model="mistral/mistral-large-latest", messages=HI, stream=True))
    assert "stream_options" not in sent(clouds, "mistral")  # Mistral refuses it and reports usage unasked


def test_mistral_validation_errors_are_readable(client: openai.OpenAI) -> None:
    # A message field Mistral refuses and no rule removes (Open WebUI filters add such `metadata`):
    # Mistral's 422 detail object becomes the error message, not "returned HTTP 422".
    tagged: Any = [{"role": "user", "content": "hi", "metadata": {"trimmed": True}}]
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="mistral/m", messages=tagged)
    assert "extra_forbidden" in info.value.message and "metadata" in info.value.message


def test_deepseek_replayed_reasoning_is_removed(client: openai.OpenAI, clouds: FakeCompatibleClouds) -> None:
    history: Any = [*HI, {"role": "assistant", "content": "Hi!", "reasoning_content": "The user greets me."},
                    {"role": "user", "content": "more"}]
    completion = client.chat.completions.create(model="deepseek/deepseek-reasoner", messages=history)
    assert completion.choices[0].message.content == "Hello from deepseek-reasoner"
    assert all("reasoning_content" not in m for m in sent(clouds, "deepseek")["messages"])


@pytest.mark.parametrize("service", ["together", "fireworks", "vllm", "openrouter"])
def test_extra_fields_reach_services_that_take_them(client: openai.OpenAI, clouds: FakeCompatibleClouds,
                                                    service: str) -> None:
    client.chat.completions.create(model=f"{service}/m", messages=HI,
                                   extra_body={"top_k": 40, "repetition_penalty": 1.1, "provider": {"sort": "price"}})
    body = sent(clouds, service)
    assert (body["top_k"], body["repetition_penalty"], body["provider"]) == (40, 1.1, {"sort": "price"})


def test_openrouter_midstream_error_chunk_ends_the_stream_with_an_error(gateway: SwitchboardProcess) -> None:
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      json={"model": "openrouter/midstream", "messages": HI, "stream": True}) as resp:
        lines = [line for line in resp.iter_lines() if line]
    assert resp.status_code == 200 and "data: [DONE]" not in lines
    assert not any(line.startswith(":") for line in lines)  # its keep-alive comments are not relayed as data
    error = json.loads(lines[-1][len("data: "):])["error"]
    assert "Provider disconnected" in error["message"]
    assert all("finish_reason\": \"error" not in line for line in lines)


def test_xai_reasoning_models_and_penalties(client: openai.OpenAI, clouds: FakeCompatibleClouds) -> None:
    client.chat.completions.create(model="xai/grok-4", messages=HI, presence_penalty=0, frequency_penalty=0)
    assert not {"presence_penalty", "frequency_penalty"} & set(sent(clouds, "xai"))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="xai/grok-4", messages=HI, presence_penalty=0.5)
    assert info.value.param == "presence_penalty"


def test_ollama_needs_no_key_and_takes_max_tokens(client: openai.OpenAI, clouds: FakeCompatibleClouds) -> None:
    completion = client.chat.completions.create(model="ollama/llama3.2", messages=HI, max_completion_tokens=2)
    assert completion.choices[0].message.content == "Hello from"  # the limit reached Ollama as max_tokens
    request = clouds.last("ollama")
    assert "Authorization" not in request["headers"] and request["body"]["max_tokens"] == 2
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="ollama/llama3.2", messages=HI, n=2)
    assert info.value.param == "n"


def test_vllm_never_gets_stream_options_without_stream(gateway: SwitchboardProcess) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={
        "model": "vllm/Qwen/Qwen2.5-7B-Instruct", "messages": HI, "stream_options": {"include_usage": True}})
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "Qwen/Qwen2.5-7B-Instruct"


def test_lmstudio_errors_are_relayed(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="lmstudio/qwen", messages=HI, response_format={"type": "json_object"})
    assert "'response_format.type' must be 'json_schema' or 'text'" in info.value.message
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model="lmstudio/qwen", messages=HI, n=3)
    assert unsupported.value.param == "n"
