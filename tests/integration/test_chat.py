"""Chat completions through the real server, driven by the official openai SDK and raw HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import APP_KEY, MASTER
from tests.server import SwitchboardProcess
from tests.spec import validate_against_spec

MESSAGES = [{"role": "user", "content": "hi"}]


_clients: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(gateway: SwitchboardProcess, key: str = MASTER, base: str = "/v1") -> openai.OpenAI:
    c = openai.OpenAI(base_url=gateway.url + base, api_key=key, max_retries=0)
    _clients.append(c)
    return c


def sse_events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


def test_non_stream_with_sdk(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello from gpt-4o-mini"
    assert completion.usage is not None and completion.usage.total_tokens == 8
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-upstream-request-id"].startswith("upstream-chatcmpl-")
    assert raw.headers["x-switchboard-provider"] == "up"
    # the alias was resolved to the upstream model, and the provider key was used upstream
    assert fake_openai.last()["body"]["model"] == "gpt-4o-mini"
    assert fake_openai.last()["headers"]["Authorization"] == "Bearer sk-upstream-secret-1"
    validate_against_spec("CreateChatCompletionResponse", json.loads(raw.content))


def test_stream_with_sdk_forwards_every_chunk(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    chunks = list(client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from gpt-4o-mini"
    assert len({c.id for c in chunks}) == 1
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    # ...but the gateway asked the upstream for it, to count tokens
    assert fake_openai.last()["body"]["stream_options"] == {"include_usage": True}


def test_stream_include_usage_last_chunk(gateway: SwitchboardProcess) -> None:
    chunks = list(client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_raw_framing(gateway: SwitchboardProcess) -> None:
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-request-id"]
        text = resp.read().decode()
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        validate_against_spec("CreateChatCompletionStreamResponse", json.loads(event))


async def test_async_sdk_stream_and_non_stream(gateway: SwitchboardProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0) as aclient:
        completion = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert completion.choices[0].message.content == "Hello from gpt-4o-mini"
        stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from gpt-4o-mini"


def test_parallel_tool_call_deltas_keep_indices(gateway: SwitchboardProcess) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    with client(gateway).chat.completions.stream(model="up/tools", messages=MESSAGES, tools=tools) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"tz": "CET"})]
    assert final.choices[0].finish_reason == "tool_calls"


def test_non_stream_tool_calls(gateway: SwitchboardProcess) -> None:
    completion = client(gateway).chat.completions.create(model="up/tools", messages=MESSAGES)
    assert [c.id for c in completion.choices[0].message.tool_calls or []] == ["call_a", "call_b"]


def test_n_choices_stream(gateway: SwitchboardProcess) -> None:
    chunks = list(client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=2, stream=True))
    texts = {0: "", 1: ""}
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "Hello from gpt-4o-mini", 1: "Hello from gpt-4o-mini"}


def test_every_openai_parameter_is_forwarded(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    params = {
        "temperature": 0.3, "top_p": 0.9, "n": 1, "max_tokens": 50, "max_completion_tokens": 60, "stop": ["x"],
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "logit_bias": {"50256": -100}, "logprobs": True,
        "top_logprobs": 2, "seed": 7, "user": "u1", "tool_choice": "auto", "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "metadata": {"a": "b"}, "store": False, "service_tier": "auto", "reasoning_effort": "low",
        "functions": [{"name": "g", "parameters": {"type": "object"}}], "function_call": "auto",
        "modalities": ["text"], "verbosity": "low", "prompt_cache_key": "k",
    }
    client(gateway).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **params)  # type: ignore[arg-type]
    sent = fake_openai.last()["body"]
    for name, value in params.items():
        assert sent[name] == value, name


def test_unknown_fields_pass_through_and_client_quirks(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    body = {
        "model": "gpt-4o-mini", "messages": MESSAGES, "top_k": 20, "repetition_penalty": 1.1,
        # Vapi's custom-LLM fields and Open WebUI's object-valued user
        "call": {"id": "c1"}, "phoneNumber": {"number": "+1"}, "customer": {"name": "x"},
        "metadata": {"nested": {"a": 1}}, "user": {"name": "alice"},
    }
    resp = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 200, resp.text
    sent = fake_openai.last()["body"]
    assert sent["top_k"] == 20 and sent["repetition_penalty"] == 1.1 and sent["call"] == {"id": "c1"}
    assert sent["metadata"] == {"nested": {"a": 1}}
    assert "user" not in sent  # an object `user` is rejected by every OpenAI-compatible server


def test_strict_provider_gets_only_spec_fields(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    body = {"model": "strict-model", "messages": MESSAGES, "top_k": 20, "call": {"id": "c"}, "seed": 3,
            "metadata": {"nested": {"a": 1}}, "temperature": 0.5}
    resp = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 200, resp.text
    sent = fake_openai.last()["body"]
    assert sent == {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0.5}


def test_content_parts_pass_through(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
    ]
    client(gateway).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
    assert fake_openai.last()["body"]["messages"][0]["content"] == content


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", "hot"), ("n", 1.5), ("stream", "yes"), ("messages", "hi"), ("max_tokens", "10"),
    ("tools", {"a": 1}), ("stop", [1, 2]), ("logprobs", 1), ("model", 5),
])
def test_wrong_type_is_400_naming_the_field(gateway: SwitchboardProcess, field: str, value: object) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, field: value}
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway).chat.completions.create(**body)  # type: ignore[arg-type]
    assert err.value.status_code == 400
    assert err.value.param == field
    assert err.value.type == "invalid_request_error"


def test_bad_messages_name_the_nested_field(gateway: SwitchboardProcess) -> None:
    for messages, param in [
        ([], "messages"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
        ([{"role": "user", "content": [{"text": "no type"}]}], "messages[0].content[0]"),
    ]:
        resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": messages},
                          headers={"Authorization": f"Bearer {MASTER}"})
        assert resp.status_code == 400, messages
        assert resp.json()["error"]["param"] == param


def test_missing_fields_and_bad_json(gateway: SwitchboardProcess) -> None:
    auth = {"Authorization": f"Bearer {MASTER}", "content-type": "application/json"}
    url = gateway.url + "/v1/chat/completions"
    r = httpx.post(url, content=b"{not json", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert r.headers["x-request-id"]
    r = httpx.post(url, content=b"[1, 2]", headers=auth)
    assert r.status_code == 400
    r = httpx.post(url, content=b"", headers=auth)
    assert r.status_code == 400
    r = httpx.post(url, json={"messages": MESSAGES}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(url, json={"model": "gpt-4o-mini"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_body_too_large_is_413(gateway: SwitchboardProcess) -> None:
    big = [{"role": "user", "content": "x" * 300_000}]
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": big},
                      headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "request_too_large"

    def chunked() -> object:  # no content-length: the limit is enforced while reading
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"}]}'

    resp = httpx.post(gateway.url + "/v1/chat/completions", content=chunked(),  # type: ignore[arg-type]
                      headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == 413


def test_unknown_model_is_404(gateway: SwitchboardProcess) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(gateway).chat.completions.create(model="nope", messages=MESSAGES)
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client(gateway).chat.completions.create(model="noprovider/x", messages=MESSAGES)


def test_auth(gateway: SwitchboardProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(gateway, key="sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert err.value.request_id and err.value.request_id.startswith("req_")
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert "sk-wrong" not in gateway.logs()
    # the `api-key` header (Azure style) works too
    r = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MESSAGES},
                   headers={"api-key": APP_KEY})
    assert r.status_code == 200
    # a static key may use only its models
    app = client(gateway, key=APP_KEY)
    assert app.chat.completions.create(model="up/anything", messages=MESSAGES).choices
    with pytest.raises(openai.PermissionDeniedError) as denied:
        app.chat.completions.create(model="strict-model", messages=MESSAGES)
    assert denied.value.status_code == 403 and denied.value.type == "permission_error"
    assert [m.id for m in app.models.list()] == ["gpt-4o-mini", "up/fake-large", "up/fake-small"]


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_upstream_errors_keep_status_and_message(gateway: SwitchboardProcess, status: int) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", json={"model": f"up/error-{status}", "messages": MESSAGES},
                      headers={"Authorization": f"Bearer {MASTER}"})
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["message"] == f"fake upstream error {status}"
    assert error["code"] == f"fake_{status}"
    assert resp.headers["x-request-id"]
    stream = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                        json={"model": f"up/error-{status}", "messages": MESSAGES, "stream": True})
    assert stream.status_code == status  # the failure is known before the stream starts: a real status
    assert stream.headers["content-type"] == "application/json"


def test_upstream_credentials_are_never_echoed(gateway: SwitchboardProcess) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        client(gateway).chat.completions.create(model="up/leaky", messages=MESSAGES)
    assert "sk-upstream-secret-1" not in str(err.value.body)
    assert "[REDACTED]" in err.value.message
    assert "sk-upstream-secret" not in gateway.logs()


def test_invalid_upstream_json_is_502(gateway: SwitchboardProcess) -> None:
    with pytest.raises(openai.InternalServerError) as err:
        client(gateway).chat.completions.create(model="up/garbage", messages=MESSAGES)
    assert err.value.status_code == 502


@pytest.mark.parametrize("model", ["up/cut", "up/truncated", "up/midstream-error"])
def test_broken_stream_ends_with_error_event_and_no_done(gateway: SwitchboardProcess, model: str) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": model, "messages": MESSAGES, "stream": True})
    assert resp.status_code == 200
    events = sse_events(resp.text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert set(last) == {"error"} and last["error"]["message"]
    assert "event:" not in resp.text
    with pytest.raises(openai.APIError):
        list(client(gateway).chat.completions.create(model=model, messages=MESSAGES, stream=True))


def test_client_disconnect_cancels_upstream(gateway: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    before = fake_openai.cancelled_streams
    with httpx.stream("POST", gateway.url + "/v1/chat/completions",
                      headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True,
                            "fake_chunk_delay": 1.0}) as resp:
        for line in resp.iter_lines():
            if '"Hello"' in line:
                break  # leave after the first content chunk
    for _ in range(100):
        if fake_openai.cancelled_streams > before:
            break
        time.sleep(0.05)
    assert fake_openai.cancelled_streams > before


async def test_64_concurrent_streams(gateway: SwitchboardProcess) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0,
                                  http_client=None) as aclient:
        async def one(i: int) -> str:
            stream = await aclient.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": str(i)}], stream=True,
                extra_body={"fake_chunk_delay": 0.05})
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        results = await asyncio.gather(*(one(i) for i in range(64)))
    assert results == ["Hello from gpt-4o-mini"] * 64


def test_path_prefixes_and_no_v1(gateway: SwitchboardProcess) -> None:
    for base in ("/openai/v1", "/api/v1", "/api", "/v1"):
        c = client(gateway, base=base)
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
    r = httpx.get(gateway.url + "/nothing/here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.get(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 405 and "POST" in r.headers["allow"]


@pytest.mark.parametrize("model, status, message", [
    ("up/json-error", 502, "fake error in a 200"),
    ("up/json-for-stream", 502, "Upstream provider `up` did not answer with an event stream."),
])
def test_a_stream_request_answered_without_an_event_stream_is_an_error(
        gateway: SwitchboardProcess, model: str, status: int, message: str) -> None:
    resp = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {MASTER}"},
                      json={"model": model, "messages": MESSAGES, "stream": True})
    assert resp.status_code == status
    assert resp.json()["error"]["message"] == message
