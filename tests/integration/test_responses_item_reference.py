"""`item_reference` inputs without `previous_response_id`, as the Vercel AI SDK sends a conversation's
earlier answers when `store` is on (its default): each reference is looked up in the store (the
item's id names its response), so the upstream sees the whole conversation; a reference that cannot
be found (unknown, another key's, a `store: false` response) is a 404 naming `input`, as in
OpenAI's API, never a silently shorter conversation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.agent_upstream import FakeAgentUpstream
from tests.integration.fixtures import running_gateway, scripted_config
from tests.server import SwitchboardProcess

MASTER = "sk-itemref-master"
OTHER = "sk-itemref-other"


@pytest.fixture(scope="module")
def gateway(upstream: FakeAgentUpstream) -> Iterator[SwitchboardProcess]:
    with running_gateway(scripted_config(MASTER, upstream, other_key=OTHER)) as server:
        yield server


@pytest.fixture
def client(gateway: SwitchboardProcess) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0, timeout=30)
    yield c
    c.close()


def _turns(upstream: FakeAgentUpstream) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in upstream.last()["body"]["messages"]]


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "input_text", "text": text}]}


def test_a_reference_to_an_earlier_answer_brings_it_back(client: openai.OpenAI, upstream: FakeAgentUpstream) -> None:
    first = client.responses.create(model="small", input="first question")
    answer_id = first.output[0].id
    second = client.responses.create(model="small", input=[  # type: ignore[arg-type]
        _user("first question"), {"type": "item_reference", "id": answer_id}, _user("second question")])
    assert second.output_text == "Plain answer."
    assert _turns(upstream) == [("user", "first question"), ("assistant", "Plain answer."),
                                ("user", "second question")]
    # stored with the item itself: a chain from `second` replays the answer without a lookup
    items = client.responses.input_items.list(second.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"] and items[1].id == answer_id
    client.responses.create(model="small", input="third question", previous_response_id=second.id)
    assert _turns(upstream)[:3] == [("user", "first question"), ("assistant", "Plain answer."),
                                    ("user", "second question")]


def test_a_streamed_answer_and_an_input_item_are_referable(client: openai.OpenAI,
                                                           upstream: FakeAgentUpstream) -> None:
    with client.responses.stream(model="small", input="streamed question") as stream:
        final = stream.get_final_response()
    question_id = client.responses.input_items.list(final.id).data[0].id
    client.responses.create(model="small", input=[  # type: ignore[arg-type]
        {"type": "item_reference", "id": question_id}, {"type": "item_reference", "id": final.output[0].id},
        _user("next")])
    assert _turns(upstream) == [("user", "streamed question"), ("assistant", "Plain answer."), ("user", "next")]


def test_a_reference_that_cannot_be_found_is_a_404(client: openai.OpenAI, gateway: SwitchboardProcess) -> None:
    mine = client.responses.create(model="small", input="mine")
    unstored = client.responses.create(model="small", input="not kept", store=False)
    other = openai.OpenAI(base_url=gateway.url + "/v1", api_key=OTHER, max_retries=0, timeout=30)
    try:
        for who, ref in ((other, mine.output[0].id), (client, unstored.output[0].id), (client, "msg_unknown"),
                         (client, "msg_" + "0" * 52)):
            with pytest.raises(openai.NotFoundError) as err:
                who.responses.create(model="small", input=[  # type: ignore[arg-type]
                    {"type": "item_reference", "id": ref}, _user("x")])
            assert err.value.body["param"] == "input" and ref in err.value.body["message"]  # type: ignore[index]
    finally:
        other.close()
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="small", input=[{"type": "item_reference"}, _user("x")])  # type: ignore[list-item]
    assert bad.value.body["param"] == "input[0].id"  # type: ignore[index]
