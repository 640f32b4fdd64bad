"""The dashboard's aggregations on a big usage log (issue 16): 1,000,000 usage rows, each Overview query timed.

Fills a fresh SQLite file and a fresh PostgreSQL schema through `Store.insert_usage` (so the rollups are
maintained exactly as the usage writer maintains them), then times each Overview query through the
same code the admin API runs (best and median of 5 runs).

    python bench/dashboard.py [--rows 1000000] [--pg postgresql://postgres@127.0.0.1:5432/test]

Rows: spread over the last 30 days, 20 keys, 8 models on 4 providers, 2 % errors.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from switchboard.dashboard.series import assemble, bucket_edges, series_query
from switchboard.store import Store, build_store
from switchboard.store.rollup import LAST_USED_SQL, LATENCY_SQL, SPEND_BY_KEY_SQL, latency_params

DAYS = 30
MODELS = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet", "anthropic"),
          ("claude-haiku", "anthropic"), ("llama-70b", "groq"), ("llama-8b", "groq"), ("mistral-large", "mistral"),
          ("mistral-small", "mistral")]
KEYS = [f"key_{i:02d}" for i in range(20)]


def rows(n: int, now: float) -> list[tuple[object, ...]]:
    rng = random.Random(16)
    out = []
    for i in range(n):
        ts = now - rng.random() * DAYS * 86400
        model, provider = MODELS[rng.randrange(len(MODELS))]
        status = 200 if rng.random() > 0.02 else rng.choice((429, 500, 502))
        latency = rng.lognormvariate(6.5, 0.6)
        out.append((ts, f"req_{i}", rng.choice(KEYS), "/chat/completions", model, provider, model, status,
                    1, rng.randrange(10, 2000), rng.randrange(1, 800), rng.random() / 100, latency,
                    latency / 5, 0, 0, 0, 0))
    out.sort(key=lambda r: r[0])  # the writer appends in time order
    return out


async def fill(store: Store, data: list[tuple[object, ...]]) -> float:
    started = time.perf_counter()
    for i in range(0, len(data), 5000):
        await store.insert_usage(data[i:i + 5000])
    return time.perf_counter() - started


async def series(store: Store, bucket: str, window_s: float, group_by: str, now: float, tz: str = "UTC") -> int:
    edges = bucket_edges(bucket, now - window_s, now, ZoneInfo(tz))
    _, sql, args = series_query(edges, group_by, None, None, store.floor_sql)
    return len(assemble(edges, await store.aggregate(sql, args)))


def queries(now: float) -> dict[str, object]:
    hour = lambda t: int(t // 3600) * 3600  # noqa: E731
    return {
        "series hour (1m buckets, by model)": lambda s: series(s, "1m", 3600, "model", now),
        "series day (1h, by model)": lambda s: series(s, "1h", 86400, "model", now),
        "series day (1h, by key, Europe/Berlin)": lambda s: series(s, "1h", 86400, "key", now, "Europe/Berlin"),
        "series week (6h, by provider)": lambda s: series(s, "6h", 7 * 86400, "provider", now),
        "series month (1d, by model)": lambda s: series(s, "1d", 30 * 86400, "model", now),
        "series month (1d, by key, Asia/Kolkata)": lambda s: series(s, "1d", 30 * 86400, "key", now, "Asia/Kolkata"),
        "latency p50/p95 + TTFT, month": lambda s: s.aggregate(
            LATENCY_SQL, latency_params(hour(now - 30 * 86400), hour(now) + 3600)),
        "top keys by spend, month": lambda s: s.aggregate(SPEND_BY_KEY_SQL, [hour(now - 30 * 86400), hour(now) + 3600]),
        "budget burn (spend since month start) + last use": lambda s: asyncio.gather(
            s.aggregate(SPEND_BY_KEY_SQL, [hour(now - 30 * 86400), 2**62]), s.aggregate(LAST_USED_SQL, [])),
    }


async def measure(name: str, store: Store, now: float) -> dict[str, tuple[float, float]]:
    results = {}
    for label, query in queries(now).items():
        times = []
        for _ in range(5):
            started = time.perf_counter()
            await query(store)  # type: ignore[operator]
            times.append((time.perf_counter() - started) * 1000)
        results[label] = (min(times), statistics.median(times))
        print(f"  {name:10s} {label:52s} best {min(times):7.1f} ms  median {statistics.median(times):7.1f} ms",
              flush=True)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    now = time.time()
    data = rows(args.rows, now)
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = build_store(f"sqlite:///{tmp}/bench.db", Path(tmp))
        await sqlite.open()
        print(f"SQLite: filled {args.rows} rows in {await fill(sqlite, data):.1f} s", flush=True)
        await measure("SQLite", sqlite, now)
        await sqlite.close()
    schema = "sb_bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(args.pg)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        pg = build_store(f"{args.pg}?search_path={schema}", Path("."))
        await pg.open()
        print(f"PostgreSQL: filled {args.rows} rows in {await fill(pg, data):.1f} s", flush=True)
        await pg.aggregate("ANALYZE", [])
        await measure("PostgreSQL", pg, now)
        await pg.close()
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
