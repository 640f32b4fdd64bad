"""The C reading of chunk batches (`headends/_chunk_facts.c`) against relay.py's Python, its reference:
wherever the C answers, it must answer what the Python does; where it hands back None the Python
decides (and may raise). Random batches mix well-formed chunks with values of every JSON type in
every place the relay looks, since an upstream may send anything."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.headends import relay
from switchboard.headends.relay import OpenAIStreamEncoder, _content_chars, _has_first_token

if relay.content_facts is None:  # not built: no C compiler at install time
    if os.environ.get("SWITCHBOARD_REQUIRE_NATIVE"):
        raise AssertionError("the C chunk reader (_chunk_facts.c) was not built")
    pytest.skip("the C chunk reader is not built here", allow_module_level=True)

content_facts = relay.content_facts
shared_id = relay.shared_id

ODD = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=False), st.text(max_size=3),
                st.just([]), st.just({}), st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def chunks(odd: bool) -> st.SearchStrategy[list[Any]]:
    """Batches of chunks of the real format; with `odd`, any place may hold a value of another type."""

    def value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(good, good, good, ODD) if odd else good

    text = value(st.one_of(st.none(), st.just(""), st.text(max_size=6)))
    function = value(st.fixed_dictionaries({}, optional={"name": text, "arguments": text}))
    call = value(st.fixed_dictionaries({}, optional={"id": text, "function": function}))
    delta = value(st.fixed_dictionaries({}, optional={
        "role": text, "content": text, "reasoning_content": text, "refusal": text,
        "tool_calls": value(st.lists(call, max_size=3))}))
    choice = value(st.fixed_dictionaries({}, optional={
        "index": st.integers(0, 2), "text": text, "finish_reason": text, "delta": delta}))
    usage = value(st.one_of(st.none(), st.just({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})))
    chunk = value(st.fixed_dictionaries({}, optional={
        "id": value(st.sampled_from(["c1", "c1", "c1", "c2"])), "choices": value(st.lists(choice, max_size=3)),
        "usage": usage}))
    return st.lists(chunk, max_size=5)


BATCH = st.one_of(chunks(odd=False), chunks(odd=True))


def reference(batch: list[Any]) -> tuple[int, bool, bool] | type[Exception]:
    try:
        return (_content_chars(batch), _has_first_token(batch),
                any(chunk.get("usage") is not None for chunk in batch))
    except Exception as exc:  # what the Python makes of a malformed batch
        return type(exc)


@settings(max_examples=800, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(BATCH)
def test_content_facts_agree_with_the_python_wherever_they_answer(batch: list[Any]) -> None:
    got = content_facts(batch)
    if got is not None:
        assert got == reference(batch)


@settings(max_examples=800, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(odd=False))
def test_content_facts_answer_for_every_batch_of_the_real_format(batch: list[Any]) -> None:
    assert content_facts(batch) == reference(batch)


def reference_with_reasons(batch: list[Any], reasons: list[Any]) -> tuple[Any, list[Any]]:
    try:
        chars = _content_chars(batch, reasons)
        return (chars, _has_first_token(batch), any(chunk.get("usage") is not None for chunk in batch)), reasons
    except Exception as exc:
        return type(exc), reasons


@settings(max_examples=800, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(BATCH)
def test_finish_reasons_are_appended_as_the_python_appends_them(batch: list[Any]) -> None:
    """A traced attempt's list: the C appends each non-empty finish reason, or leaves the list as it
    was when it hands the batch back (so the Python's own appending is not doubled)."""
    reasons: list[Any] = ["earlier"]
    got = content_facts(batch, reasons)
    if got is None:
        assert reasons == ["earlier"]
        return
    assert (got, reasons) == reference_with_reasons(batch, ["earlier"])


class RaisingKey(str):
    """A key that collides with "finish_reason" and fails the comparison: a lookup that raises."""

    def __hash__(self) -> int:
        return hash("finish_reason")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("compared")


def test_a_lookup_that_raises_leaves_the_list_as_it_was() -> None:
    batch = [{"choices": [{"finish_reason": "stop"}, {RaisingKey("x"): 1}]}]
    reasons: list[Any] = ["earlier"]
    with pytest.raises(RuntimeError):
        content_facts(batch, reasons)
    assert reasons == ["earlier"]


def test_a_batch_handed_back_after_a_reason_leaves_the_list_as_it_was() -> None:
    batch = [{"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
             {"id": "c1", "choices": [{"index": 1, "delta": {"content": 5}}]}]  # not a str: the Python's call
    reasons: list[Any] = ["earlier"]
    assert content_facts(batch, reasons) is None and reasons == ["earlier"]
    with pytest.raises(TypeError):  # what the Python makes of it, appending the reason once
        _content_chars(batch, reasons)
    assert reasons == ["earlier", "stop"]


@settings(max_examples=400, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(odd=False))
def test_content_facts_with_reasons_answer_for_every_batch_of_the_real_format(batch: list[Any]) -> None:
    reasons: list[Any] = []
    assert (content_facts(batch, reasons), reasons) == reference_with_reasons(batch, [])


def test_the_c_answers_for_the_chunks_real_upstreams_send() -> None:
    batches: list[list[dict[str, Any]]] = [
        [{"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                   "finish_reason": None}], "usage": None}],
        [{"id": "c1", "choices": [{"index": 0, "delta": {"content": "Héllo 👋"}, "finish_reason": None}]},
         {"id": "c1", "choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
         {"id": "c1", "choices": [{"index": 0, "delta": {"tool_calls": [
             {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\""}}]}}]},
         {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
         {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}],
        [{"id": "c1", "object": "text_completion", "choices": [{"index": 0, "text": "abc", "finish_reason": None}]}],
        [],
    ]
    for batch in batches:
        got = content_facts(batch)
        assert got is not None and got == reference(batch), batch
    assert content_facts(batches[1]) == (len("Héllo 👋") + 3 + 1 + 4, True, True)
    reasons: list[str] = []
    assert content_facts(batches[1], reasons) == (len("Héllo 👋") + 3 + 1 + 4, True, True)
    assert reasons == ["tool_calls"]
    assert content_facts(batches[1], None) == content_facts(batches[1])
    with pytest.raises(TypeError):
        content_facts()  # type: ignore[call-arg]


def python_unchanged(encoder: OpenAIStreamEncoder, batch: list[Any]) -> bool | type[Exception]:
    """OpenAIStreamEncoder._unchanged with the C left out."""
    saved, relay.shared_id = relay.shared_id, None
    try:
        return encoder._unchanged(batch)
    except Exception as exc:
        return type(exc)
    finally:
        relay.shared_id = saved


@settings(max_examples=800, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(BATCH, st.booleans(), st.sampled_from([None, "c1", "c2"]))
def test_the_encoders_id_check_is_the_same_with_the_c(batch: list[Any], include_usage: bool, stream_id: Any) -> None:
    with_c, without_c = OpenAIStreamEncoder(include_usage), OpenAIStreamEncoder(include_usage)
    with_c.stream_id = without_c.stream_id = stream_id
    try:
        got: bool | type[Exception] = with_c._unchanged(batch)
    except Exception as exc:
        got = type(exc)
    assert got == python_unchanged(without_c, batch)
    assert with_c.stream_id == without_c.stream_id


def test_shared_id_answers_for_uniform_batches() -> None:
    batch = [{"id": "c1", "choices": []}, {"id": "c1", "usage": None}]
    assert shared_id(batch, False) == "c1"
    assert shared_id([*batch, {"id": "c1", "usage": {"total_tokens": 1}}], False) is None
    assert shared_id([*batch, {"id": "c1", "usage": {"total_tokens": 1}}], True) == "c1"
    assert shared_id([*batch, {"id": "c2"}], True) is None
