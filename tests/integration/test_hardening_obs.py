"""Hardening of what clients can make the gateway record: metric labels and access-log lines stay bounded.

A client chooses the model name. `provider/<anything>` reaches an upstream that may accept any name,
so neither the metric labels nor the access log may copy such names as they come.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.metrics_util import metric, scrape
from tests.server import SwitchboardProcess

MASTER = "sk-test-master-hardening"
MESSAGES = [{"role": "user", "content": "hi"}]
DISTINCT_NAMES = 150


def config(fake: FakeOpenAI) -> str:
    return f"""
server: {{max_body_bytes: 4000000}}
auth: {{master_key: {MASTER}}}
providers:
  up:
    type: openai
    base_url: {fake.base_url}
    keys: [sk-upstream-hardening]
    retries: {{max: 0}}
models:
  chat: {{route: up/gpt-4o-mini, fallbacks: [up/backup-model]}}
"""


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[SwitchboardProcess]:
    process = SwitchboardProcess(config(fake_openai)).start()
    yield process
    process.stop()


def _post_many(server: SwitchboardProcess, models: list[str]) -> list[int]:
    async def run() -> list[int]:
        limit = asyncio.Semaphore(16)
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {MASTER}"}) as client:
            async def one(model: str) -> int:
                async with limit:
                    r = await client.post(server.url + "/v1/chat/completions",
                                          json={"model": model, "messages": MESSAGES})
                    return r.status_code

            return await asyncio.gather(*(one(m) for m in models))

    return asyncio.run(run())


def _series(text: str) -> list[dict[str, str]]:
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples]


def test_client_minted_model_names_do_not_mint_series(server: SwitchboardProcess) -> None:
    assert _post_many(server, ["chat", "up/gpt-4o-mini", "up/backup-model", "up/x-warmup"]) == [200] * 4
    before = scrape(server)

    names = [f"up/x-{i}" for i in range(DISTINCT_NAMES)]
    assert _post_many(server, names) == [200] * DISTINCT_NAMES  # the upstream accepts any name
    assert _post_many(server, [f"nobody/x-{i}" for i in range(20)]) == [404] * 20
    after = scrape(server)

    minted = {s["model"] for s in _series(after) if s.get("model", "").startswith(("up/x-", "nobody/"))}
    assert minted == set()
    assert len(_series(after)) - len(_series(before)) < 60  # the 404s' `other` series; before: thousands
    assert len(after) < 2 * len(before)
    assert metric(after, "switchboard_requests_total", model="other", provider="up", status="200") \
        == DISTINCT_NAMES + 1
    assert metric(after, "switchboard_requests_total", model="other", status="404") == 20
    assert metric(after, "switchboard_tokens_total", model="other", direction="in") == 5 * (DISTINCT_NAMES + 1)
    # Configured names keep their own series: the alias, and the `provider/model` names the config routes to.
    for model in ("chat", "up/gpt-4o-mini", "up/backup-model"):
        assert metric(after, "switchboard_requests_total", model=model, status="200") == 1


def _access_line(server: SwitchboardProcess, request_id: str) -> tuple[str, dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        for line in server.logs().splitlines():
            if line.startswith("{") and f'"request_id":"{request_id}"' in line:
                return line, json.loads(line)
        assert time.monotonic() < deadline, "no access log line for " + request_id
        time.sleep(0.05)


# A routed name stays under 16 KB: the response echoes it in `x-switchboard-model`, which httpx caps.
@pytest.mark.parametrize(("model", "status"), [("up/" + "m" * 12_000, 200), ("z" * 2_000_000, 404)])
def test_access_log_truncates_client_strings(server: SwitchboardProcess, model: str, status: int) -> None:
    request_id = f"huge-model-{status}"
    r = httpx.post(server.url + "/v1/chat/completions", timeout=30,
                   headers={"authorization": f"Bearer {MASTER}", "x-request-id": request_id},
                   json={"model": model, "messages": MESSAGES})
    assert r.status_code == status
    line, entry = _access_line(server, request_id)
    assert len(line) < 2000
    logged = entry["model"]
    assert isinstance(logged, str) and logged.startswith(model[:200]) and "truncated" in logged
    assert str(len(model)) in logged  # says how long the original was
    if status == 200:
        upstream = entry["upstream_model"]
        assert isinstance(upstream, str) and upstream.startswith("m" * 200) and "truncated" in upstream
