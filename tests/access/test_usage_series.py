"""`/admin/usage/series` and the other usage APIs of the dashboard, on SQLite and PostgreSQL: bucket edges,
time zones (DST days, half-hour offsets), the grain each answer comes from, groups and roles."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from switchboard.store import UsageRow, build_store
from switchboard.store.base import usage_to_row
from tests.access.backends import pg_schema
from tests.access.helpers import ADMIN, access_config, bearer, create_key
from tests.fakes.openai_upstream import FakeOpenAI
from tests.server import SwitchboardProcess

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def at(tz: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[misc]


def row(ts: float, model: str = "gpt-4o-mini", key: str | None = "key_a", status: int = 200,
        cost: float | None = 0.5, latency: float = 100.0) -> UsageRow:
    return UsageRow(ts=ts, request_id=f"req_{ts}", key_id=key, endpoint="/chat/completions", model=model,
                    provider="up", upstream_model=model, status=status, stream=True, prompt_tokens=10,
                    completion_tokens=5, cost_usd=cost, latency_ms=latency, ttft_ms=latency / 4)


ROWS = [
    # UTC hour edges: 10:00:00 and 10:59:59.9 are one bucket, 11:00:00 the next.
    row(at(UTC, 2026, 3, 2, 10, 0, 0)), row(at(UTC, 2026, 3, 2, 10, 59, 59) + 0.9),
    row(at(UTC, 2026, 3, 2, 11, 0, 0), model="other", status=502, cost=None, latency=2000.0),
    # Berlin's DST end (2026-10-25 is 25 hours long there).
    row(at(BERLIN, 2026, 10, 25, 0, 0, 0)), row(at(BERLIN, 2026, 10, 25, 23, 59, 0)),
    row(at(BERLIN, 2026, 10, 26, 0, 0, 0), key="key_b"),
    # Kolkata is UTC+5:30: 10:29 and 10:31 UTC fall in different local hours.
    row(at(UTC, 2026, 5, 1, 10, 29, 0)), row(at(UTC, 2026, 5, 1, 10, 31, 0)),
]


async def _fill(url: str, base: Path) -> None:
    store = build_store(url, base)
    await store.open()
    try:
        await store.insert_usage([usage_to_row(r) for r in ROWS])
    finally:
        await store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, fake_openai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[httpx.Client]:
    with pg_schema() if request.param == "postgresql" else _sqlite(tmp_path_factory) as url:
        asyncio.run(_fill(url, Path("/")))
        proc = SwitchboardProcess(access_config(fake_openai, url)).start()
        try:
            with httpx.Client(base_url=proc.url, timeout=10, headers=ADMIN) as c:
                yield c
        finally:
            proc.stop()


class _sqlite:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.url = f"sqlite:///{factory.mktemp('series')}/usage.db"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


def series(client: httpx.Client, **params: object) -> dict[str, object]:
    r = client.get("/admin/usage/series", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def by_group(body: dict[str, object]) -> dict[str, dict[str, list[float]]]:
    return {s["group"]: s for s in body["series"]}  # type: ignore[index, union-attr]


def test_hour_buckets_in_utc(client: httpx.Client) -> None:
    body = series(client, bucket="1h", since=at(UTC, 2026, 3, 2, 10, 30), until=at(UTC, 2026, 3, 2, 11, 30))
    assert body["source"] == "rollup_1h"
    assert body["buckets"] == [at(UTC, 2026, 3, 2, 10), at(UTC, 2026, 3, 2, 11)]  # since moved back to 10:00
    groups = by_group(body)
    assert groups["gpt-4o-mini"]["requests"] == [2, 0]
    assert groups["other"]["requests"] == [0, 1] and groups["other"]["errors"] == [0, 1]
    assert groups["gpt-4o-mini"]["cost_usd"] == [1.0, 0.0] and groups["other"]["unpriced"] == [0, 1]
    assert groups["gpt-4o-mini"]["tokens"] == [30, 0]
    assert body["totals"] == {"requests": 3, "errors": 1, "tokens": 45, "cost_usd": 1.0}


def test_minute_buckets_come_from_the_usage_log(client: httpx.Client) -> None:
    body = series(client, bucket="5m", since=at(UTC, 2026, 3, 2, 10, 55), until=at(UTC, 2026, 3, 2, 11, 5),
                  group_by="none")
    assert body["source"] == "usage_log"
    assert body["buckets"] == [at(UTC, 2026, 3, 2, 10, 55), at(UTC, 2026, 3, 2, 11, 0)]
    assert by_group(body)[""]["requests"] == [1, 1]


def test_a_day_across_dst_is_25_hours_in_berlin(client: httpx.Client) -> None:
    body = series(client, bucket="1d", tz="Europe/Berlin", since=at(BERLIN, 2026, 10, 25, 12),
                  until=at(BERLIN, 2026, 10, 26, 12), group_by="key")
    edges = body["buckets"]
    assert edges == [at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)]
    assert edges[1] - edges[0] == 25 * 3600  # type: ignore[index, operator]
    assert body["until"] == at(BERLIN, 2026, 10, 27)
    groups = by_group(body)
    assert groups["key_a"]["requests"] == [2, 0] and groups["key_b"]["requests"] == [0, 1]
    # The same instants in UTC days: the 00:00 Berlin row (22:00 UTC on the 24th) moves to the day before.
    utc = by_group(series(client, bucket="1d", since=at(UTC, 2026, 10, 24), until=at(UTC, 2026, 10, 26),
                          group_by="key"))
    assert utc["key_a"]["requests"] == [1, 1]


def test_half_hour_zone_uses_the_15_minute_rollup(client: httpx.Client) -> None:
    body = series(client, bucket="1h", tz="Asia/Kolkata", since=at(UTC, 2026, 5, 1, 10, 0),
                  until=at(UTC, 2026, 5, 1, 11, 0))
    assert body["source"] == "rollup_15m"
    assert body["buckets"] == [at(UTC, 2026, 5, 1, 9, 30), at(UTC, 2026, 5, 1, 10, 30)]
    assert by_group(body)["gpt-4o-mini"]["requests"] == [1, 1]


def test_month_buckets_follow_the_calendar(client: httpx.Client) -> None:
    ny = ZoneInfo("America/New_York")
    body = series(client, bucket="1mo", tz="America/New_York", since=at(ny, 2026, 2, 15), until=at(ny, 2026, 5, 2))
    assert body["buckets"] == [at(ny, 2026, 2, 1), at(ny, 2026, 3, 1), at(ny, 2026, 4, 1), at(ny, 2026, 5, 1)]
    assert sum(by_group(body)["gpt-4o-mini"]["requests"]) == 4


def test_latency_top_keys_and_budgets(client: httpx.Client) -> None:
    window = {"since": at(UTC, 2026, 3, 2, 0), "until": at(UTC, 2026, 3, 3, 0)}
    latency = {d["model"]: d for d in client.get("/admin/usage/latency", params=window).json()["data"]}
    assert latency["gpt-4o-mini"]["requests"] == 2
    assert 93 <= latency["gpt-4o-mini"]["latency_p50_ms"] <= 107  # 100 ms, within a histogram bin
    assert 1860 <= latency["other"]["latency_p95_ms"] <= 2140
    assert 23 <= latency["gpt-4o-mini"]["ttft_p50_ms"] <= 27
    top = client.get("/admin/usage/top_keys", params=window).json()["data"]
    assert [(t["key_id"], t["cost_usd"], t["requests"]) for t in top] == [("key_a", 1.0, 3)]
    key_id, _ = create_key(client, "", budget_usd=10, budget_period="total")
    keys = {k["key_id"]: k for k in client.get("/admin/usage/keys").json()["data"]}
    assert keys[key_id]["spend_usd"] == 0 and keys[key_id]["burn"] == 0 and keys[key_id]["last_used_at"] is None


def test_bad_parameters_are_400s(client: httpx.Client) -> None:
    for params, param in (({"tz": "Mars/Olympus"}, "tz"), ({"bucket": "7m"}, "bucket"),
                          ({"group_by": "colour"}, "group_by"), ({"bucket": "1m", "since": 0}, "bucket"),
                          ({"since": "yesterday"}, "since"), ({"colour": "red"}, "colour")):
        r = client.get("/admin/usage/series", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"]["param"] == param


def test_roles(client: httpx.Client) -> None:
    _, viewer = create_key(client, "", role="viewer")
    _, plain = create_key(client, "")
    assert client.get("/admin/usage/series", headers=bearer(viewer)).status_code == 200
    assert client.get("/admin/usage/series", headers=bearer(plain)).status_code == 403
    assert httpx.get(str(client.base_url) + "/admin/usage/series").status_code == 401
