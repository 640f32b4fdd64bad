"""Cost that matches the bill, through the real server on both store backends: OpenAI, Anthropic and
Bedrock fake upstreams reporting cached, cache-write and reasoning tokens -> the usage row's five counts
and cost, and the budget charge, equal a hand computation; a model without a price costs null (and is
not charged); a stream cut before its usage is charged its estimate, marked as estimated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from switchboard.headends.token_estimate import estimate_input_tokens
from tests.access.helpers import ADMIN, bearer, create_key
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import INPUT_TOKENS as BEDROCK_INPUT
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

REGION = "us-west-2"
BEDROCK_KEY = "bedrock-api-key-ABSKcost"
HI = [{"role": "user", "content": "hi"}]


def _config(oa: FakeOpenAI, an: FakeAnthropic, br: FakeBedrock, store_url: str) -> str:
    return f"""
auth: {{master_key: "{ADMIN['authorization'][7:]}"}}
providers:
  oa: {{type: openai, base_url: "{oa.base_url}", keys: [sk-oa], retries: {{max: 0}}}}
  an: {{type: anthropic, base_url: "{an.base_url}", keys: [sk-ant], retries: {{max: 0}}}}
  br: {{type: bedrock, region: {REGION}, base_url: "{br.base_url}", keys: [{BEDROCK_KEY}], retries: {{max: 0}}}}
models:
  oa-details: {{route: oa/usage-details}}
  oa-bundled: {{route: oa/gpt-4o-2024-08-06}}
  oa-mystery: {{route: oa/mystery-model}}
  oa-cut: {{route: oa/cut}}
  claude: {{route: an/cached}}
  nova: {{route: "br/fake.cached-v1:0"}}
prices:
  oa-details: {{input: 2, cached_input: 0.5, output: 8, reasoning: 10}}
  an/cached: {{input: 3, cached_input: 0.3, cache_write: 3.75, output: 15}}
  "fake.cached-v1:0": {{input: 0.8, cached_input: 0.2, cache_write: 1, output: 3.2}}
  oa-cut: {{input: 1, output: 2}}
store: {{url: "{store_url}"}}
"""


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeOpenAI, FakeAnthropic, FakeBedrock]]:
    oa, an = FakeOpenAI().start(), FakeAnthropic().start()
    br = FakeBedrock(REGION, credentials={}, bearer_tokens={BEDROCK_KEY}).start()
    yield oa, an, br
    for fake in (oa, an, br):
        fake.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest,
           upstreams: tuple[FakeOpenAI, FakeAnthropic, FakeBedrock]) -> Iterator[httpx.Client]:
    url = "sqlite:///data/switchboard.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    proc = SwitchboardProcess(_config(*upstreams, url)).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as c:
            yield c
    finally:
        proc.stop()


def _row(client: httpx.Client, request_id: str) -> dict[str, Any]:
    rows = client.get("/admin/usage", params={"limit": 1000}, headers=ADMIN).json()["data"]
    return next(r for r in rows if r["request_id"] == request_id)


def _chat(client: httpx.Client, secret: str, model: str, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": HI, "stream": stream}
    return client.post("/v1/chat/completions", json=body, headers=bearer(secret))


def _charged_exactly(client: httpx.Client, model: str, cost: float, stream: bool = False) -> None:
    """The budget charge of one `model` request is `cost`: a key whose budget is a hair under it is refused
    its second request, a key whose budget is a hair over it is not."""
    for factor, second in ((1 - 1e-9, 429), (1 + 1e-9, 200)):
        _, secret = create_key(client, "", budget_usd=cost * factor, budget_period="daily")
        assert _chat(client, secret, model, stream).status_code == 200
        assert _chat(client, secret, model, stream).status_code == second, (model, factor)


def test_five_counts_and_cost_match_a_hand_computation(client: httpx.Client) -> None:
    _, secret = create_key(client, "")
    answers = {m: _chat(client, secret, m) for m in ("oa-details", "claude", "nova", "oa-bundled", "oa-mystery")}
    assert all(r.status_code == 200 for r in answers.values()), {m: r.text for m, r in answers.items()}
    rows = {m: _row(client, r.headers["x-request-id"]) for m, r in answers.items()}

    oa = rows["oa-details"]  # 1000 prompt (600 cached), 300 completion (200 reasoning)
    assert (oa["prompt_tokens"], oa["cached_tokens"], oa["cache_write_tokens"], oa["completion_tokens"],
            oa["reasoning_tokens"], oa["estimated"]) == (1000, 600, 0, 300, 200, False)
    oa_cost = (400 * 2 + 600 * 0.5 + 100 * 8 + 200 * 10) / 1e6
    assert oa["cost_usd"] == pytest.approx(oa_cost)

    an = rows["claude"]  # input 10 + cache read 100 + cache write 20
    assert (an["prompt_tokens"], an["cached_tokens"], an["cache_write_tokens"], an["reasoning_tokens"]) == \
        (130, 100, 20, 0)
    an_cost = (10 * 3 + 100 * 0.3 + 20 * 3.75 + an["completion_tokens"] * 15) / 1e6
    assert an["completion_tokens"] > 0 and an["cost_usd"] == pytest.approx(an_cost)

    br = rows["nova"]
    assert (br["prompt_tokens"], br["cached_tokens"], br["cache_write_tokens"]) == (BEDROCK_INPUT + 120, 100, 20)
    br_cost = (BEDROCK_INPUT * 0.8 + 100 * 0.2 + 20 * 1 + br["completion_tokens"] * 3.2) / 1e6
    assert br["completion_tokens"] > 0 and br["cost_usd"] == pytest.approx(br_cost)

    # Not in the config: the bundled table's gpt-4o ($2.50 / $10 per 1M), the date suffix dropped.
    assert rows["oa-bundled"]["cost_usd"] == pytest.approx((5 * 2.5 + 3 * 10) / 1e6)
    assert rows["oa-mystery"]["cost_usd"] is None  # no price anywhere: unknown, not free

    totals = client.get("/admin/usage", params={"model": "oa-mystery"}, headers=ADMIN).json()["totals"]
    assert totals["unpriced_requests"] >= 1 and totals["cost_usd"] == 0

    for model, cost in (("oa-details", oa_cost), ("claude", an_cost), ("nova", br_cost)):
        _charged_exactly(client, model, cost)
    _charged_exactly(client, "oa-details", oa_cost, stream=True)  # the stream's usage chunk, same cost


def test_unpriced_model_is_not_charged(client: httpx.Client) -> None:
    _, secret = create_key(client, "", budget_usd=1e-12, budget_period="daily")
    for _ in range(3):
        assert _chat(client, secret, "oa-mystery").status_code == 200


def test_cut_stream_is_charged_its_estimate(client: httpx.Client) -> None:
    _, secret = create_key(client, "")
    with client.stream("POST", "/v1/chat/completions", json={"model": "oa-cut", "messages": HI, "stream": True},
                       headers=bearer(secret)) as r:
        assert r.status_code == 200
        body = r.read().decode()
        request_id = r.headers["x-request-id"]
    assert '"Hello"' in body and '" from"' in body and "[DONE]" not in body
    row = _row(client, request_id)
    prompt = estimate_input_tokens({"messages": HI})
    completion = 3  # "Hello" + " from": 10 characters, / 4 rounded up
    assert (row["prompt_tokens"], row["completion_tokens"], row["estimated"]) == (prompt, completion, True)
    assert row["cost_usd"] == pytest.approx((prompt * 1 + completion * 2) / 1e6)
    totals = client.get("/admin/usage", params={"model": "oa-cut"}, headers=ADMIN).json()["totals"]
    assert totals["estimated_requests"] >= 1
