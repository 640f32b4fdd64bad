"""Bad request bodies get a 400 in the endpoint's own error format, through the real server.

Regression tests for issue 10, defect 4 (a message `role` that is a list or an object, and
`max_tokens: 1e20` on /v1/messages, both answered with a 500) and for the rest of that class that
the endpoint fuzzing (test_fuzz_endpoints.py) found: integer fields out of range, a tool choice
without a function object, non-ASCII base64 data, bodies nested deeper than the JSON encoder
writes, model names that cannot be echoed in a response header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

MASTER = "sk-validation-master"
HI = [{"role": "user", "content": "hi"}]
CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES = "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"


@pytest.fixture(scope="module")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> Iterator[SwitchboardProcess]:
    config = f"""
auth: {{master_key: {MASTER}}}
providers:
  up: {{type: openai, base_url: "{fake_openai.base_url}", keys: [{{value: sk-up}}], retries: {{max: 0}}}}
  ant: {{type: anthropic, base_url: "{fake_anthropic.base_url}", keys: [{{value: sk-ant}}], retries: {{max: 0}}}}
models:
  chat: {{route: up/gpt-4o-mini}}
  emb: {{route: up/text-embedding-3-small}}
  claude: {{route: ant/claude-sonnet-4-5}}
"""
    process = SwitchboardProcess(config).start()
    yield process
    process.stop()


def post(server: SwitchboardProcess, path: str, body: Any) -> httpx.Response:
    """POST a body as a client may write it: stdlib JSON, so integers of any size stay integers."""
    return httpx.post(server.url + path, content=json.dumps(body).encode(), timeout=10,
                      headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"})


def openai_error(resp: httpx.Response, param: str | None) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"], error
    return dict(error)


def anthropic_error(resp: httpx.Response, mentions: str) -> str:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    message = str(body["error"]["message"])
    assert mentions in message, message
    return message


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


# -- the two defects of the issue

@pytest.mark.parametrize("role", [[], ["user"], {}, {"role": "user"}, 5, True])
def test_a_message_role_that_is_not_a_string_is_a_400(server: SwitchboardProcess, role: Any) -> None:
    resp = post(server, CHAT, {"model": "chat", "messages": [{"role": role, "content": "hi"}]})
    error = openai_error(resp, "messages[0].role")
    assert error["code"] == "invalid_type"
    stream = post(server, CHAT, {"model": "chat", "messages": [{"role": role, "content": "hi"}], "stream": True})
    openai_error(stream, "messages[0].role")
    anthropic_error(post(server, MESSAGES, {"model": "chat", "max_tokens": 8,
                                            "messages": [{"role": role, "content": "hi"}]}), "messages.0.role")


@pytest.mark.parametrize("max_tokens", [1e20, 10**20, 2**64, 2**63, -1, 0, 0.5, True, "16", None, [16]])
def test_max_tokens_that_is_no_64_bit_count_is_a_400_on_messages(server: SwitchboardProcess, max_tokens: Any) -> None:
    # 1e20 (a float literal) and 100000000000000000000 (an integer literal) were both a 500.
    for stream in (False, True):
        body = {"model": "chat", "max_tokens": max_tokens, "messages": HI, "stream": stream}
        anthropic_error(post(server, MESSAGES, body), "max_tokens")


def test_integral_float_max_tokens_reaches_the_upstream_as_an_integer(server: SwitchboardProcess,
                                                                      fake_openai: FakeOpenAI) -> None:
    resp = post(server, MESSAGES, {"model": "chat", "max_tokens": 1e3, "messages": HI})
    assert resp.status_code == 200, resp.text
    sent = fake_openai.last()["body"]["max_completion_tokens"]
    assert sent == 1000 and isinstance(sent, int)


# -- every integer field of the OpenAI endpoints is range-checked, in the OpenAI envelope

@pytest.mark.parametrize(("path", "field", "value", "code"), [
    (CHAT, "max_tokens", 1e20, "integer_above_max_value"),
    (CHAT, "max_tokens", 10**20, "integer_above_max_value"),
    (CHAT, "max_completion_tokens", 0, "integer_below_min_value"),
    (CHAT, "n", 0, "integer_below_min_value"),
    (CHAT, "n", 129, "integer_above_max_value"),
    (CHAT, "seed", 2**63, "integer_above_max_value"),
    (CHAT, "seed", -(10**20), "integer_below_min_value"),
    (CHAT, "top_logprobs", -1, "integer_below_min_value"),
    (CHAT, "max_tokens", True, "invalid_type"),
    (CHAT, "n", 1.5, "invalid_type"),
    (COMPLETIONS, "max_tokens", -1, "integer_below_min_value"),
    (COMPLETIONS, "best_of", 0, "integer_below_min_value"),
    (COMPLETIONS, "logprobs", -1, "integer_below_min_value"),
    (COMPLETIONS, "n", 2**64 - 1, "integer_above_max_value"),
    (EMBEDDINGS, "dimensions", 0, "integer_below_min_value"),
    (EMBEDDINGS, "dimensions", 1e20, "integer_above_max_value"),
])
def test_integer_fields_out_of_range_are_a_400_naming_the_field(server: SwitchboardProcess, path: str, field: str,
                                                               value: Any, code: str) -> None:
    base = {CHAT: {"model": "chat", "messages": HI}, COMPLETIONS: {"model": "chat", "prompt": "hi"},
            EMBEDDINGS: {"model": "emb", "input": "hi"}}[path]
    error = openai_error(post(server, path, {**base, field: value}), field)
    assert error["code"] == code


@pytest.mark.parametrize("bias", [101, -100.5, 1e20, True, "5", None])
def test_logit_bias_values_out_of_range_are_a_400(server: SwitchboardProcess, bias: Any) -> None:
    openai_error(post(server, CHAT, {"model": "chat", "messages": HI, "logit_bias": {"50256": bias}}), "logit_bias")
    openai_error(post(server, COMPLETIONS, {"model": "chat", "prompt": "hi", "logit_bias": {"1": bias}}),
                 "logit_bias")


def test_edge_values_inside_the_ranges_are_accepted(server: SwitchboardProcess, fake_openai: FakeOpenAI) -> None:
    resp = post(server, CHAT, {"model": "chat", "messages": HI, "seed": 2**63 - 1, "n": 128, "top_logprobs": 0,
                               "logit_bias": {"50256": -100, "1": 100}})
    assert resp.status_code == 200, resp.text
    resp = post(server, COMPLETIONS, {"model": "chat", "prompt": "hi", "max_tokens": 0, "echo": True})
    assert resp.status_code == 200, resp.text  # max_tokens 0 with echo scores a prompt
    resp = post(server, EMBEDDINGS, {"model": "emb", "input": "hi", "dimensions": 3.0, "encoding_format": "float"})
    assert resp.status_code == 200, resp.text
    sent = fake_openai.last()["body"]["dimensions"]
    assert sent == 3 and isinstance(sent, int)  # an integral float leaves as an integer
    assert len(resp.json()["data"][0]["embedding"]) == 3


def test_fields_of_any_type_take_null(server: SwitchboardProcess) -> None:
    # `user` takes any JSON value (clients send objects there); null was a 400 "expected any, got null".
    assert post(server, CHAT, {"model": "chat", "messages": HI, "user": None}).status_code == 200
    assert post(server, EMBEDDINGS, {"model": "emb", "input": "hi", "user": None}).status_code == 200


# -- the rest of the class, found by the fuzzing

@pytest.mark.parametrize("model", ["chat", "claude"])
@pytest.mark.parametrize("function", ["f", ["f"], None, 5])
def test_a_function_tool_choice_without_a_function_object_is_a_400(server: SwitchboardProcess, model: str,
                                                                   function: Any) -> None:
    body = {"model": model, "messages": HI, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": function}}
    openai_error(post(server, CHAT, body), "tool_choice.function.name")


def test_base64_data_with_non_ascii_characters_is_a_400(server: SwitchboardProcess) -> None:
    # Routed to an Anthropic provider, the data URL's base64 check raised a ValueError (a 500).
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,é"}}
    openai_error(post(server, CHAT, {"model": "claude", "messages": [{"role": "user", "content": [image]}]}),
                 "messages[0].content[0].image_url.url")
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "\u0080"}}
    anthropic_error(post(server, MESSAGES, {"model": "claude", "max_tokens": 8,
                                            "messages": [{"role": "user", "content": [document]}]}), "base64")


def test_a_body_nested_deeper_than_the_encoder_writes_is_a_400(server: SwitchboardProcess) -> None:
    # orjson reads 1024 levels of nesting but writes 254: forwarding such a body was a 500.
    openai_error(post(server, CHAT, {"model": "chat", "messages": HI, "extra": nested(300)}), "extra")
    openai_error(post(server, COMPLETIONS, {"model": "chat", "prompt": "hi", "extra": nested(300)}), "extra")
    openai_error(post(server, EMBEDDINGS, {"model": "emb", "input": "hi", "extra": nested(300)}), "extra")
    deep_call = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                                   "input": {"a": nested(300)}}]}
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}
    anthropic_error(post(server, MESSAGES, {"model": "chat", "max_tokens": 8, "messages": [*HI, deep_call, answer]}),
                    "messages.1.content.0.input")
    # 250 levels inside the body still fit
    assert post(server, CHAT, {"model": "chat", "messages": HI, "extra": nested(250)}).status_code == 200


@pytest.mark.parametrize("model", ["up/😀", "up/a\r\nx-injected: 1", "up/\x00", "up/\u2028"])
def test_a_model_name_that_cannot_be_echoed_in_a_header_is_a_400(server: SwitchboardProcess, model: str) -> None:
    # provider/<name> reaches the upstream, and the name comes back in x-switchboard-model.
    openai_error(post(server, CHAT, {"model": model, "messages": HI}), "model")
    openai_error(post(server, EMBEDDINGS, {"model": model, "input": "hi"}), "model")
    anthropic_error(post(server, MESSAGES, {"model": model, "max_tokens": 8, "messages": HI}), "model")


def test_a_latin1_model_name_is_echoed(server: SwitchboardProcess) -> None:
    resp = post(server, CHAT, {"model": "up/café", "messages": HI})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-switchboard-model"].encode("latin-1").decode("latin-1") == "café"
