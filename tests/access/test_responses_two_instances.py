"""Stored Responses API conversations on PostgreSQL, shared by two real gateway instances: a
`previous_response_id` chain started on one continues on the other (the openai SDK, as a client
behind a load balancer sees it), and ownership, retrieval and deletion hold across both."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.access.backends import pg_schema
from tests.access.helpers import MASTER, STATIC, access_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess


@pytest.fixture(scope="module")
def pair(fake_openai: FakeOpenAI) -> Iterator[tuple[SwitchboardProcess, SwitchboardProcess]]:
    with pg_schema() as store_url:  # a schema of its own on the `test` database, dropped afterwards
        config = access_config(fake_openai, store_url)
        a = SwitchboardProcess(config).start()
        try:
            b = SwitchboardProcess(config).start()
            try:
                yield a, b
            finally:
                b.stop()
        finally:
            a.stop()


def _client(proc: SwitchboardProcess, key: str = MASTER) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_a_chain_started_on_one_instance_continues_on_the_other(
        pair: tuple[SwitchboardProcess, SwitchboardProcess], fake_openai: FakeOpenAI) -> None:
    a, b = pair
    with _client(a) as on_a, _client(b) as on_b:
        r1 = on_a.responses.create(model="gpt-4o-mini", input="turn one", instructions="Be brief.")
        r2 = on_b.responses.create(model="gpt-4o-mini", input="turn two", previous_response_id=r1.id)
        with on_a.responses.stream(model="gpt-4o-mini", input="turn three", previous_response_id=r2.id) as stream:
            r3 = stream.get_final_response()
        assert r3.previous_response_id == r2.id and r3.output_text == "Hello from gpt-4o-mini"
        messages = fake_openai.last()["body"]["messages"]
        assert [(m["role"], m["content"]) for m in messages] == [
            ("user", "turn one"), ("assistant", "Hello from gpt-4o-mini"),
            ("user", "turn two"), ("assistant", "Hello from gpt-4o-mini"), ("user", "turn three")]
        # the streamed turn was stored before its end event: the other instance finds it at once
        r4 = on_b.responses.create(model="gpt-4o-mini", input="turn four", previous_response_id=r3.id)
        assert len(fake_openai.last()["body"]["messages"]) == 7
        assert on_a.responses.retrieve(r4.id).output_text == "Hello from gpt-4o-mini"
        assert [i.type for i in on_b.responses.input_items.list(r1.id).data] == ["message"]


def test_ownership_and_deletion_hold_across_instances(pair: tuple[SwitchboardProcess, SwitchboardProcess]) -> None:
    a, b = pair
    with _client(a) as on_a, _client(b) as on_b, _client(b, STATIC) as other_on_b:
        r1 = on_a.responses.create(model="gpt-4o-mini", input="mine")
        with pytest.raises(openai.NotFoundError):
            other_on_b.responses.retrieve(r1.id)
        with pytest.raises(openai.NotFoundError):
            other_on_b.responses.create(model="gpt-4o-mini", input="x", previous_response_id=r1.id)
        on_b.responses.delete(r1.id)
        with pytest.raises(openai.NotFoundError):
            on_a.responses.retrieve(r1.id)
        with pytest.raises(openai.NotFoundError):
            on_a.responses.create(model="gpt-4o-mini", input="x", previous_response_id=r1.id)
