"""Property-based fuzzing of the four POST endpoints: whatever a client sends, the gateway answers
with a well-formed answer in the endpoint's format, never with a 5xx of its own and never hangs.

Bodies are generated two ways: structurally plausible ones (the right fields, with right, wrong
and edge-case types and values: integers past 64 bits, floats, numeric-looking strings, nested
lists and objects where strings are expected, unicode, empty values, unknown fields), and random
JSON (also under the endpoint's own field names). The gateway runs in-process (tests/inprocess.py)
against the fake upstreams, so bodies that pass validation reach an upstream and come back through
the response path, streamed ones too; each case is bounded by a timeout.

The fakes answer every request they accept (with an answer or a 4xx), so here any 5xx is the
gateway's own failure. Hypothesis is derandomized: the same cases run every time, and each defect
found has its body pinned below as an `@example`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.inprocess import Answer, InProcessApp

MASTER = "sk-fuzz-master"
HEADERS = {"authorization": f"Bearer {MASTER}", "content-type": "application/json"}
CHAT, COMPLETIONS, EMBEDDINGS, MESSAGES = "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"
ANTHROPIC_FORMAT = {MESSAGES}
CASE_TIMEOUT_S = 10.0


def fuzz_config(openai_url: str, anthropic_url: str, store_path: str) -> str:
    return f"""
store: {{url: "sqlite:///{store_path}"}}
auth:
  master_key: {MASTER}
providers:
  up:
    type: openai
    base_url: {openai_url}
    keys: [{{value: sk-upstream}}]
    retries: {{max: 0}}
  ant:
    type: anthropic
    base_url: {anthropic_url}
    keys: [{{value: sk-ant-upstream}}]
    retries: {{max: 0}}
    drop_unsupported: true
models:
  chat: {{route: up/gpt-4o-mini}}
  tooly: {{route: up/tools}}
  emb: {{route: up/text-embedding-3-small}}
  claude: {{route: ant/claude-sonnet-4-5}}
  claude-tools: {{route: ant/tools}}
"""


@pytest.fixture(scope="module")
def fuzz_app(fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessApp]:
    access = logging.getLogger("switchboard.access")
    level = access.level
    access.setLevel(logging.WARNING)  # thousands of access lines would say nothing
    fake_anthropic = FakeAnthropic().start()
    store = tmp_path_factory.mktemp("fuzz") / "switchboard.db"
    app = InProcessApp(fuzz_config(fake_openai.base_url, fake_anthropic.base_url, str(store))).start()
    yield app
    app.stop()
    fake_anthropic.stop()
    access.setLevel(level)


# ---------------------------------------------------------------------------------------------
# values

INT_EDGES = [0, 1, -1, 2, 3, 20, 21, 127, 128, 129, 1024, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1,
             2**64, 10**20, -(2**63), -(2**63) - 1, -(10**20), 10**400]
FLOAT_EDGES = [0.0, -0.0, 0.5, 1.0, 2.0, 1.5, 128.0, 129.0, 1e20, -1e20, 1e308, -1e308, 5e-324, 9.3e18,
               math.nan, math.inf, -math.inf]  # the last three become NaN/Infinity tokens: invalid JSON
STRING_EDGES = ["", " ", "NaN", "Infinity", "-1", "1e20", "null", "true", "0x10", "\x00", "\u202e\u200b", "é",
                "😀", "\ud800", "a" * 500, "user", "assistant", "system", "tool", "text", "function", "auto",
                "chat", "claude", "up/x", "base64", "float",
                # names routed as provider/model reach the upstream and come back in a response header
                "up/é", "up/😀", "up/a\r\nx-injected: 1", "ant/\x00", "up/\u2028"]


def nested(levels: int) -> Any:
    """Arrays and objects nested `levels` deep."""
    value: Any = []
    for i in range(levels - 1):
        value = [value] if i % 2 else {"a": value}
    return value


# orjson reads JSON nested 1024 levels deep but writes at most 254: a deeper request cannot be forwarded.
DEEP_VALUES = [nested(300), nested(250)]
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

some_text = st.sampled_from(["hi", "Hello there", "é😀"]) | st.text(min_size=1, max_size=16)
unknown_key = st.text(min_size=1, max_size=8)
number = st.floats(0, 1) | st.integers(0, 1)


def _slots(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a JSON tree, outermost first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in list(items):
        yield value, key
        yield from _slots(child)


NUMERIC_EDGE_VALUES: list[Any] = [*INT_EDGES, *FLOAT_EDGES, True, False, None, "1", "1e20", "NaN", "-1", ""]
TEXT_EDGE_VALUES: list[Any] = [*STRING_EDGES, None, True, 0, -1, 2**64, 1.5, ["a"], [], {"text": "a"}, {}]
CONTAINER_EDGE_VALUES: list[Any] = [[], {}, [None], [[]], [{}], {"": None}, {"type": None}, "", "x", 0, -1, 1e20,
                                    None, True, *DEEP_VALUES]
ALL_EDGE_VALUES = [*NUMERIC_EDGE_VALUES, *TEXT_EDGE_VALUES, *CONTAINER_EDGE_VALUES, *DEEP_VALUES]


def _own_edges(current: Any) -> list[Any]:
    """Edge cases of a value's own kind (a number for a number...), where a validator is most likely wrong."""
    if isinstance(current, bool) or current is None:
        return [*NUMERIC_EDGE_VALUES, *TEXT_EDGE_VALUES]
    if isinstance(current, int | float):
        return NUMERIC_EDGE_VALUES
    if isinstance(current, str):
        return TEXT_EDGE_VALUES
    return CONTAINER_EDGE_VALUES


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid body, then a few mutations anywhere in its tree: a value replaced by an edge case of its
    kind, any edge case or random JSON; a field or item removed; an unknown field or item added.

    Where and what to mutate is chosen by a seeded RNG: hypothesis' own draws favour the first choice
    (the top level, the first edge value), which would leave deep fields and most edges untried."""
    # Copies: strategies such as st.just() hand out one shared object, which must stay as it was.
    body = copy.deepcopy(draw(valid))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
        slots = [(body, None), *_slots(body)]
        container, key = rng.choice(slots)
        action = rng.choice(["replace", "replace", "replace", "replace", "remove", "add"])
        if key is None or action == "add":
            target = container if key is None else container[key]
            value = rng.choice(ALL_EDGE_VALUES) if rng.random() < 0.7 else draw(json_values)
            if isinstance(target, dict):
                target[draw(unknown_key)] = copy.deepcopy(value)
            elif isinstance(target, list):
                target.append(copy.deepcopy(value))
        elif action == "remove":
            del container[key]
        else:
            roll = rng.random()
            value = (rng.choice(_own_edges(container[key])) if roll < 0.6 else rng.choice(ALL_EDGE_VALUES)
                     if roll < 0.85 else draw(json_values))
            container[key] = copy.deepcopy(value)
    return body


# -- OpenAI chat

image_url = st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0K", "data:image/png;base64,",
                             "data:", "file:///etc/passwd"])
content_part = (st.fixed_dictionaries({"type": st.just("text"), "text": some_text})
                | st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
                    {"url": image_url}, optional={"detail": st.sampled_from(["auto", "low", "high"])})})
                | st.fixed_dictionaries({"type": st.just("input_audio"), "input_audio": st.fixed_dictionaries(
                    {"data": st.just("UklGRg=="), "format": st.sampled_from(["wav", "mp3"])})})
                | st.fixed_dictionaries({"type": st.just("file"), "file": st.fixed_dictionaries(
                    {}, optional={"file_data": st.just("data:application/pdf;base64,JVBERi0="),
                                  "file_id": st.just("file-1"), "filename": st.just("a.pdf")})}))
chat_content = some_text | st.lists(content_part, min_size=1, max_size=3)
tool_call = st.fixed_dictionaries({"id": st.sampled_from(["call_a", "call_b"]), "type": st.just("function"),
                                   "function": st.fixed_dictionaries({
                                       "name": st.sampled_from(["get_weather", "f"]),
                                       "arguments": st.sampled_from(['{"city":"Paris"}', "{}", "", "[1]", "nope"])})})
chat_message = (
    st.fixed_dictionaries({"role": st.sampled_from(["system", "developer"]), "content": some_text})
    | st.fixed_dictionaries({"role": st.just("user"), "content": chat_content}, optional={"name": some_text})
    | st.fixed_dictionaries({"role": st.just("assistant"), "content": some_text | st.none()},
                            optional={"tool_calls": st.lists(tool_call, min_size=1, max_size=2),
                                      "refusal": st.none()})
    | st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.sampled_from(["call_a", "call_b"]),
                             "content": some_text})
    | st.fixed_dictionaries({"role": st.just("function"), "name": st.just("f"), "content": some_text})
)
chat_messages = st.tuples(st.lists(chat_message, max_size=3),
                          st.fixed_dictionaries({"role": st.just("user"), "content": chat_content})).map(
    lambda parts: [*parts[0], parts[1]])
function_tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
    {"name": st.sampled_from(["get_weather", "f"])},
    optional={"description": some_text, "strict": st.booleans(),
              "parameters": st.just({"type": "object", "properties": {"city": {"type": "string"}}})})})
CHAT_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "frequency_penalty": number, "presence_penalty": number, "temperature": number, "top_p": number,
    "logit_bias": st.dictionaries(st.sampled_from(["50256", "1"]), st.integers(-100, 100), max_size=2),
    "logprobs": st.booleans(), "top_logprobs": st.integers(0, 5), "max_tokens": st.integers(1, 4096),
    "max_completion_tokens": st.integers(1, 4096), "n": st.integers(1, 3), "seed": st.integers(-5, 2**40),
    "stop": some_text | st.lists(some_text, max_size=3), "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "tools": st.lists(function_tool, min_size=1, max_size=2),
    "tool_choice": st.sampled_from(["auto", "none", "required"]) | st.just(
        {"type": "function", "function": {"name": "get_weather"}}),
    "parallel_tool_calls": st.booleans(),
    "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}, {
        "type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": {
            "type": "object", "properties": {"a": {"type": "integer"}}}}}]),
    "user": some_text, "metadata": st.dictionaries(some_text, some_text, max_size=2),
    "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high"]),
    "modalities": st.just(["text"]), "store": st.booleans(), "service_tier": st.sampled_from(["auto", "default"]),
    "safety_identifier": some_text,
    "prediction": st.fixed_dictionaries({"type": st.just("content"), "content": some_text}),
}
chat_valid = st.fixed_dictionaries({"model": st.sampled_from(["chat", "tooly", "claude", "claude-tools"]),
                                    "messages": chat_messages}, optional=CHAT_OPTIONAL)

# -- OpenAI completions

tokens = st.lists(st.integers(0, 50000), min_size=1, max_size=4)
prompt = some_text | st.lists(some_text, min_size=1, max_size=3) | tokens | st.lists(tokens, min_size=1, max_size=2)
COMPLETION_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "best_of": st.integers(1, 3), "echo": st.booleans(), "frequency_penalty": number, "presence_penalty": number,
    "logit_bias": CHAT_OPTIONAL["logit_bias"], "logprobs": st.integers(0, 5) | st.none(),
    "max_tokens": st.integers(0, 4096), "n": st.integers(1, 3), "seed": st.integers(-5, 2**40),
    "stop": CHAT_OPTIONAL["stop"], "stream": st.booleans(), "stream_options": CHAT_OPTIONAL["stream_options"],
    "suffix": some_text, "temperature": number, "top_p": number, "user": some_text,
}
completion_valid = st.fixed_dictionaries({"model": st.sampled_from(["chat", "chat", "chat", "claude"]),
                                          "prompt": prompt}, optional=COMPLETION_OPTIONAL)

# -- OpenAI embeddings

embedding_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["emb", "emb", "emb", "claude"]), "input": prompt},
    optional={"encoding_format": st.sampled_from(["float", "base64"]), "dimensions": st.integers(1, 64),
              "user": some_text})

# -- Anthropic messages

image_source = (st.fixed_dictionaries({"type": st.just("base64"), "data": st.just("iVBORw0K"),
                                       "media_type": st.sampled_from(["image/png", "image/jpeg"])})
                | st.fixed_dictionaries({"type": st.just("url"), "url": st.just("https://example.com/a.png")}))
text_block = st.fixed_dictionaries({"type": st.just("text"), "text": some_text})
image_block = st.fixed_dictionaries({"type": st.just("image"), "source": image_source})
document_block = st.fixed_dictionaries(
    {"type": st.just("document"), "source": st.just({"type": "text", "media_type": "text/plain", "data": "doc"})
     | st.just({"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="})},
    optional={"title": some_text})
tool_result_block = st.fixed_dictionaries(
    {"type": st.just("tool_result"), "tool_use_id": st.just("toolu_1")},
    optional={"content": some_text | st.lists(text_block | image_block, min_size=1, max_size=2),
              "is_error": st.booleans()})
tool_use_block = st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.just("toolu_1"),
                                        "name": st.just("get_weather"), "input": st.just({"city": "Paris"})})
thinking_block = st.fixed_dictionaries({"type": st.just("thinking"), "thinking": some_text,
                                        "signature": st.just("sig")})
user_turn = st.fixed_dictionaries({"role": st.just("user"), "content": some_text | st.lists(
    text_block | image_block | document_block, min_size=1, max_size=3)})
assistant_turn = st.fixed_dictionaries({"role": st.just("assistant"), "content": some_text | st.lists(
    text_block | thinking_block, min_size=1, max_size=2)})
tool_exchange = st.tuples(
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.tuples(text_block, tool_use_block).map(list)}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.tuples(tool_result_block).map(list)}))
# Turns alternate from a user turn, a tool_use is answered in the next turn, a prefill may end it.
anthropic_messages = st.tuples(user_turn, st.lists(st.tuples(assistant_turn, user_turn) | tool_exchange, max_size=2),
                               st.lists(assistant_turn, max_size=1)).map(
    lambda parts: [parts[0], *(m for pair in parts[1] for m in pair), *parts[2]])
anthropic_tool = st.fixed_dictionaries({"name": st.sampled_from(["get_weather", "f"]),
                                        "input_schema": st.just({"type": "object"})},
                                       optional={"description": some_text, "type": st.just("custom")})
MESSAGES_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "system": some_text | st.lists(text_block, min_size=1, max_size=2),
    "metadata": st.fixed_dictionaries({}, optional={"user_id": some_text}),
    "stop_sequences": st.lists(some_text, max_size=3), "stream": st.booleans(),
    "temperature": number, "top_p": number, "top_k": st.integers(0, 100),
    "tools": st.lists(anthropic_tool, min_size=1, max_size=2),
    "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "none"])},
                                         optional={"disable_parallel_tool_use": st.booleans()})
    | st.just({"type": "tool", "name": "get_weather"}),
    "output_config": st.just({"format": {"type": "json_schema", "schema": {"type": "object"}}}),
    "thinking": st.just({"type": "enabled", "budget_tokens": 1024}),
}
messages_valid = st.fixed_dictionaries({"model": st.sampled_from(["chat", "tooly", "claude", "claude-tools"]),
                                        "max_tokens": st.integers(1, 4096), "messages": anthropic_messages},
                                       optional=MESSAGES_OPTIONAL)

VALID = {CHAT: chat_valid, COMPLETIONS: completion_valid, EMBEDDINGS: embedding_valid, MESSAGES: messages_valid}
FIELD_NAMES = {CHAT: sorted({"model", "messages", *CHAT_OPTIONAL}),
               COMPLETIONS: sorted({"model", "prompt", *COMPLETION_OPTIONAL}),
               EMBEDDINGS: ["dimensions", "encoding_format", "input", "model", "user"],
               MESSAGES: sorted({"model", "max_tokens", "messages", *MESSAGES_OPTIONAL})}


def streamed(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return mutated(valid).map(lambda body: {**body, "stream": True})


def encode(body: Any) -> bytes:
    """JSON as a client may write it: integers of any size, NaN/Infinity tokens, lone surrogates."""
    return json.dumps(body).encode()


# ---------------------------------------------------------------------------------------------
# the property


def _is_openai_error(body: Any) -> bool:
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return False
    err = body["error"]
    return (isinstance(err.get("message"), str) and bool(err["message"]) and isinstance(err.get("type"), str)
            and "param" in err and "code" in err)


def _is_anthropic_error(body: Any) -> bool:
    return (isinstance(body, dict) and body.get("type") == "error" and isinstance(body.get("error"), dict)
            and isinstance(body["error"].get("type"), str) and isinstance(body["error"].get("message"), str)
            and bool(body["error"]["message"]))


def _events(body: bytes) -> list[tuple[str | None, bytes]]:
    events = []
    assert body.endswith(b"\n\n"), body[-200:]
    for block in body[:-2].split(b"\n\n"):
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[len(b"event: "):].decode()
            elif line.startswith(b"data: "):
                data.append(line[len(b"data: "):])
            else:
                assert line.startswith(b":"), block  # a comment (keep-alive) is the only other kind of line
        if data:
            events.append((name, b"\n".join(data)))
    return events


def check_stream(path: str, answer: Answer) -> None:
    events = _events(answer.body)
    assert events, answer.body
    anthropic = path in ANTHROPIC_FORMAT
    for _, data in events[:-1]:
        if not anthropic:
            assert data != b"[DONE]"
        assert isinstance(orjson.loads(data), dict)
    name, last = events[-1]
    if anthropic:
        payload = orjson.loads(last)
        assert name == "message_stop" or (name == "error" and _is_anthropic_error(payload)), (name, last)
    else:
        assert last == b"[DONE]" or _is_openai_error(orjson.loads(last)), last


def check_answer(app: InProcessApp, path: str, raw: bytes) -> Answer:
    app.errors.records.clear()
    try:
        answer = app.request("POST", path, raw, HEADERS, timeout=CASE_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"no answer within {CASE_TIMEOUT_S} s to POST {path} {raw[:500]!r}")
    logged = [f"{r.getMessage()}: {r.exc_info[1]!r}" if r.exc_info else r.getMessage() for r in app.errors.records]
    context = f"POST {path} {raw[:3000]!r} -> {answer.status} {answer.body[:800]!r} {logged}"
    assert answer.status < 500, context
    assert not logged, context
    if answer.headers.get("content-type") == "text/event-stream":
        assert answer.status == 200, context
        check_stream(path, answer)
        return answer
    body = orjson.loads(answer.body)
    if answer.status >= 400:
        well_formed = _is_anthropic_error(body) if path in ANTHROPIC_FORMAT else _is_openai_error(body)
        assert well_formed, context
    else:
        assert 200 <= answer.status < 300 and isinstance(body, dict), context
    return answer


# Bounded and deterministic: the same cases on every run, no example database. For a deeper hunt
# on a workstation, SWITCHBOARD_FUZZ_EXAMPLES=N runs N new (random) cases per test instead.
_DEEP = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 450, derandomize=not _DEEP, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RANDOM = settings(FUZZ, max_examples=_DEEP or 150)
STREAMS = settings(FUZZ, max_examples=_DEEP or 150)


# The defects this fuzzing found (issue 10, defect 4 and its class), pinned: each was a 500.
HI = [{"role": "user", "content": "hi"}]
ROLE_LIST = {"model": "chat", "messages": [{"role": [], "content": "hi"}]}  # a set lookup of a list
ROLE_OBJECT = {"model": "chat", "messages": [{"role": {"a": 1}, "content": "hi"}], "stream": True}
MAX_TOKENS_1E20 = {"model": "chat", "max_tokens": 1e20, "messages": HI}  # int(1e20) is past 64 bits
MAX_TOKENS_INT_LITERAL = {"model": "chat", "max_tokens": 10**20, "messages": HI}  # parsed as the float 1e20
MAX_TOKENS_U64_PLUS_THINKING = {"model": "claude", "messages": HI, "max_tokens": 2**64 - 1, "reasoning_effort": "high"}
TOOL_CHOICE_FUNCTION_NOT_OBJECT = {"model": "claude", "messages": HI, "tools": [
    {"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": "f"}}
IMAGE_DATA_NOT_ASCII = {"model": "claude", "messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,\u00e9"}}]}]}
DOCUMENT_DATA_NOT_ASCII = {"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": [
    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "\u0080"}}]}]}
NESTED_TOO_DEEP = {"model": "chat", "messages": HI, "x": nested(300)}  # orjson reads 1024 levels, writes 254
TOOL_INPUT_NESTED_TOO_DEEP = {"model": "chat", "max_tokens": 8, "messages": [
    *HI, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": nested(300)}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]}
MODEL_NOT_LATIN1 = {"model": "up/😀", "input": "hi"}  # echoed in the x-switchboard-model header
MODEL_WITH_CRLF = {"model": "up/a\r\nx-injected: 1", "messages": HI}


@FUZZ
@given(body=mutated(chat_valid))
@example(body=ROLE_LIST)
@example(body=ROLE_OBJECT)
@example(body=MAX_TOKENS_U64_PLUS_THINKING)
@example(body=TOOL_CHOICE_FUNCTION_NOT_OBJECT)
@example(body=IMAGE_DATA_NOT_ASCII)
@example(body=NESTED_TOO_DEEP)
@example(body=MODEL_WITH_CRLF)
def test_fuzz_chat_completions(fuzz_app: InProcessApp, body: dict[str, Any]) -> None:
    check_answer(fuzz_app, CHAT, encode(body))


@FUZZ
@given(body=mutated(completion_valid))
@example(body={"model": "chat", "prompt": "hi", "x": nested(300)})
def test_fuzz_completions(fuzz_app: InProcessApp, body: dict[str, Any]) -> None:
    check_answer(fuzz_app, COMPLETIONS, encode(body))


@FUZZ
@given(body=mutated(embedding_valid))
@example(body=MODEL_NOT_LATIN1)
def test_fuzz_embeddings(fuzz_app: InProcessApp, body: dict[str, Any]) -> None:
    check_answer(fuzz_app, EMBEDDINGS, encode(body))


@FUZZ
@given(body=mutated(messages_valid))
@example(body=MAX_TOKENS_1E20)
@example(body=MAX_TOKENS_INT_LITERAL)
@example(body={**MAX_TOKENS_1E20, "stream": True})
@example(body=DOCUMENT_DATA_NOT_ASCII)
@example(body=TOOL_INPUT_NESTED_TOO_DEEP)
@example(body={**MODEL_NOT_LATIN1, "max_tokens": 8, "messages": HI})
def test_fuzz_messages(fuzz_app: InProcessApp, body: dict[str, Any]) -> None:
    check_answer(fuzz_app, MESSAGES, encode(body))


@STREAMS
@given(path=st.sampled_from([CHAT, COMPLETIONS, MESSAGES]), data=st.data())
def test_fuzz_streams(fuzz_app: InProcessApp, path: str, data: st.DataObject) -> None:
    check_answer(fuzz_app, path, encode(data.draw(streamed(VALID[path]))))


@RANDOM
@given(path=st.sampled_from(sorted(VALID)), data=st.data())
def test_fuzz_random_json(fuzz_app: InProcessApp, path: str, data: st.DataObject) -> None:
    names = st.sampled_from(FIELD_NAMES[path]) | st.text(max_size=8)
    body = data.draw(json_values | st.dictionaries(names, json_values, max_size=6) | st.binary(max_size=64))
    check_answer(fuzz_app, path, body if isinstance(body, bytes) else encode(body))


# ---------------------------------------------------------------------------------------------
# every numeric field x every numeric edge value, exhaustively (the class of defect 4 of issue 10:
# an integer past 64 bits, a float where an integer belongs, a boolean, a string)

NUMERIC_EDGES: list[Any] = [*INT_EDGES, *FLOAT_EDGES, True, False, None, "1", "1e20", "NaN", "", [], [1], {}]
BASE_BODIES: dict[str, dict[str, Any]] = {
    CHAT: {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"},  # adds a thinking budget
    COMPLETIONS: {"prompt": "hi"},
    EMBEDDINGS: {"input": "hi"},
    MESSAGES: {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
}
NUMERIC_FIELDS: dict[str, list[str]] = {
    CHAT: ["max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs", "temperature", "top_p",
           "presence_penalty", "frequency_penalty", "logit_bias.50256", "stream_options.include_usage"],
    COMPLETIONS: ["max_tokens", "n", "seed", "best_of", "logprobs", "temperature", "top_p", "presence_penalty",
                  "frequency_penalty", "logit_bias.50256"],
    EMBEDDINGS: ["dimensions"],
    MESSAGES: ["max_tokens", "top_k", "temperature", "top_p", "thinking.budget_tokens"],
}
ROUTES = {CHAT: ["chat", "claude"], COMPLETIONS: ["chat"], EMBEDDINGS: ["emb"], MESSAGES: ["chat", "claude"]}


def _with(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, leaf = dotted.split(".")
    target = body
    for name in parents:
        target = target.setdefault(name, {"type": "enabled"} if name == "thinking" else {})
    target[leaf] = value
    return body


@pytest.mark.parametrize(("path", "field"), [(p, f) for p, fields in NUMERIC_FIELDS.items() for f in fields])
def test_every_numeric_field_takes_every_edge_value(fuzz_app: InProcessApp, path: str, field: str) -> None:
    for model_name in ROUTES[path]:
        for value in NUMERIC_EDGES:
            for stream in (False, True) if path != EMBEDDINGS else (False,):
                body = _with({"model": model_name, **BASE_BODIES[path], "stream": stream}, field, value)
                if path == EMBEDDINGS:
                    del body["stream"]
                check_answer(fuzz_app, path, encode(body))


# ---------------------------------------------------------------------------------------------
# every slot of a rich body x a few edge values of its kind: one mutation at a time, everywhere

RICH_CHAT: dict[str, Any] = {
    "model": "chat",
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K",
                                                                         "detail": "low"}},
                                     {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=",
                                                               "filename": "a.pdf"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [{
            "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "user", "content": "Thanks", "name": "u"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}},
    "stream_options": {"include_usage": True}, "stop": ["END"], "logit_bias": {"50256": -100},
    "metadata": {"k": "v"}, "max_completion_tokens": 64, "n": 1, "temperature": 0.5, "top_p": 1,
    "seed": 7, "user": "u1", "parallel_tool_calls": True,
}
RICH_COMPLETION: dict[str, Any] = {"model": "chat", "prompt": ["a", "b"], "max_tokens": 8, "n": 2, "echo": True,
                                   "logprobs": 2, "stop": ["\n"], "suffix": "s", "best_of": 2,
                                   "stream_options": {"include_usage": True}, "logit_bias": {"1": 5}}
RICH_EMBEDDING: dict[str, Any] = {"model": "emb", "input": [[1, 2], [3]], "encoding_format": "base64",
                                  "dimensions": 8, "user": "u"}
RICH_MESSAGES: dict[str, Any] = {
    "model": "chat", "max_tokens": 64,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBORw0K"}},
                                     {"type": "document", "source": {"type": "base64",
                                                                     "media_type": "application/pdf",
                                                                     "data": "JVBERi0="}, "title": "a.pdf"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"},
                                          {"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": False,
                                      "content": [{"type": "text", "text": "sunny"},
                                                  {"type": "image", "source": {"type": "url",
                                                                               "url": "https://example.com/a.png"}}]}]},
        {"role": "assistant", "content": "The"},
    ],
    "tools": [{"name": "get_weather", "description": "Weather of a city", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    "metadata": {"user_id": "u1"}, "stop_sequences": ["END"], "temperature": 0.5, "top_p": 1, "top_k": 5,
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
}
RICH = {CHAT: RICH_CHAT, COMPLETIONS: RICH_COMPLETION, EMBEDDINGS: RICH_EMBEDDING, MESSAGES: RICH_MESSAGES}
SWEEP_EDGES: dict[str, list[Any]] = {
    "number": [-1, 0, 2**63, 2**64, 1e20, 1.5, True, "1", None, []],
    "text": ["", "\x00", "é😀", 5, None, True, [], {}, ["a"], {"a": 1}, DEEP_VALUES[0]],
    "container": [[], {}, [None], [[]], [{}], {"": None}, "x", -1, None, True, *DEEP_VALUES],
}


def _sweep_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return "number"
    return "text" if isinstance(value, str) else "container"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key), child
        yield from _paths(child, (*prefix, key))


def _mutations(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for path, value in _paths(body):
        for replacement in [*SWEEP_EDGES[_sweep_kind(value)], "<removed>"]:
            out = copy.deepcopy(body)
            target = out
            for key in path[:-1]:
                target = target[key]
            if replacement == "<removed>":
                del target[path[-1]]
            else:
                target[path[-1]] = replacement
            yield out


@pytest.mark.parametrize(("path", "model_name", "stream"), [
    (CHAT, "chat", False), (CHAT, "claude", False), (CHAT, "claude", True),
    (COMPLETIONS, "chat", False), (COMPLETIONS, "chat", True), (EMBEDDINGS, "emb", False),
    (MESSAGES, "chat", False), (MESSAGES, "claude", False), (MESSAGES, "claude-tools", True),
])
def test_every_field_of_a_rich_body_takes_edge_values(fuzz_app: InProcessApp, path: str, model_name: str,
                                                      stream: bool) -> None:
    base = {**RICH[path], "model": model_name}
    if stream:
        base["stream"] = True
    answer = check_answer(fuzz_app, path, encode(base))
    assert answer.status == 200, answer.body  # the rich body itself is accepted: its mutations go deep
    for body in _mutations(base):
        check_answer(fuzz_app, path, encode(body))
