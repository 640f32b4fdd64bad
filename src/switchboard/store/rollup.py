"""The usage log's rollups: per-bucket sums and latency histograms, kept by the usage writer for the dashboard.

Each batch `insert_usage` writes also updates, in the same transaction:

- `sb_usage_rollup`: one row per (grain, bucket start, dimension, value) with the request, error,
  token and cost sums, where the dimension is `model`, `provider` or `key` (one row per model, one
  per provider, one per key: a month of hours is ~720 x the number of models rows, not x every
  key-model pair), for two grains: 15 minutes and 1 hour (unix-aligned). An hourly grain serves
  every bucket of a time zone whose offset is whole hours; 15 minutes serves the others (India,
  Nepal...). A NULL key / model / provider is kept as '' (a primary key column cannot be NULL).
- `sb_latency_rollup`: per (grain, bucket, model, metric) a histogram of latency / time to first
  token in logarithmic bins (each `BIN_RATIO` wider than the last: percentiles within about 7 %), by
  hour and by UTC day (a month's percentiles read whole days and only the ragged hours at its ends).
- `sb_key_last_used`: each key's newest request time.

A batch is folded here first (`rollup_deltas`), so a batch of 2,000 rows costs a handful of upserts.
The SQL text lives here once, `{}` placeholders filled per dialect like base.py's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..background_threads import yield_to_loop
from .dialects import PostgresOnly, SqliteOnly
from .records import USAGE_COLUMNS

__all__ = [
    "BIN_RATIO",
    "GRAINS",
    "LAST_USED_SQL",
    "LATENCY_COLUMNS",
    "LATENCY_CONFLICT",
    "LATENCY_GRAINS",
    "LATENCY_SQL",
    "ROLLUP_COLUMNS",
    "ROLLUP_CONFLICT",
    "ROLLUP_MIGRATION",
    "SPEND_BY_KEY_SQL",
    "RollupDeltas",
    "bin_value",
    "last_used_conflict",
    "latency_bin",
    "latency_params",
    "rollup_deltas",
    "series_sql",
]

GRAINS = (3600, 900)
BIN_RATIO = 1.15
_LOG_RATIO = math.log(BIN_RATIO)

_TS, _KEY, _MODEL, _PROVIDER, _STATUS, _PROMPT, _COMPLETION, _COST, _LATENCY, _TTFT = (
    USAGE_COLUMNS.index(c) for c in ("ts", "key_id", "model", "provider", "status", "prompt_tokens",
                                     "completion_tokens", "cost_usd", "latency_ms", "ttft_ms"))

ROLLUP_COLUMNS = ("grain", "bucket", "dim", "value", "requests", "errors", "prompt_tokens",
                  "completion_tokens", "cost_usd", "unpriced", "latency_ms_sum")
LATENCY_COLUMNS = ("grain", "bucket", "model", "metric", "bin", "n")
LATENCY_GRAINS = (3600, 86400)


def latency_bin(ms: float) -> int:
    """The histogram bin of a duration: 0 below 1 ms, then log base BIN_RATIO."""
    return int(math.log(ms) / _LOG_RATIO) if ms > 1.0 else 0


def bin_value(b: int) -> float:
    """The milliseconds a bin stands for (its geometric middle)."""
    return float(BIN_RATIO ** (b + 0.5)) if b > 0 else 1.0


_ROWS_BETWEEN_YIELDS = 32  # ~0.15 ms of folding (issue 14: the loop's p99 at concurrency 1)


@dataclass(slots=True)
class RollupDeltas:
    rollup: list[tuple[Any, ...]]  # ROLLUP_COLUMNS order, sorted (so concurrent writers lock rows in one order)
    latency: list[tuple[Any, ...]]  # LATENCY_COLUMNS order, sorted
    last_used: list[tuple[str, float]]  # (key id, newest ts), sorted


def rollup_deltas(rows: Sequence[tuple[Any, ...]]) -> RollupDeltas:
    """A batch of usage rows (`base.UsageValues`) folded into the upserts of the three tables.

    Each row costs one sum update (per 15 minutes and key, model, provider) and one histogram update per
    duration; the grains and dimensions are expanded from those few aggregates afterwards."""
    fine: dict[tuple[int, str, str, str], list[Any]] = {}  # (15-minute bucket, key, model, provider) -> sums
    hours: dict[tuple[int, str, str, int], int] = {}  # (hour, model, metric, bin) -> count
    last: dict[str, float] = {}
    log, log_ratio = math.log, _LOG_RATIO
    for i, row in enumerate(rows):
        if i % _ROWS_BETWEEN_YIELDS == _ROWS_BETWEEN_YIELDS - 1:
            yield_to_loop()  # a worker thread's long Python loop must not hold the GIL from the event loop
        ts = row[_TS]
        key, model = row[_KEY] or "", row[_MODEL] or ""
        combo = (int(ts // 900) * 900, key, model, row[_PROVIDER] or "")
        cell = fine.get(combo)
        if cell is None:
            cell = fine[combo] = [0, 0, 0, 0, 0.0, 0, 0.0]
        cell[0] += 1
        if row[_STATUS] >= 400:
            cell[1] += 1
        cell[2] += row[_PROMPT]
        cell[3] += row[_COMPLETION]
        cost = row[_COST]
        if cost is None:
            cell[5] += 1
        else:
            cell[4] += cost
        latency, ttft = row[_LATENCY], row[_TTFT]
        if latency is not None:
            cell[6] += latency
            hkey = (combo[0] // 3600 * 3600, model, "latency", int(log(latency) / log_ratio) if latency > 1.0 else 0)
            hours[hkey] = hours.get(hkey, 0) + 1
        if ttft is not None:
            hkey = (combo[0] // 3600 * 3600, model, "ttft", int(log(ttft) / log_ratio) if ttft > 1.0 else 0)
            hours[hkey] = hours.get(hkey, 0) + 1
        if key and ts > last.get(key, 0.0):
            last[key] = ts
    sums: dict[tuple[int, int, str, str], list[Any]] = {}
    for (bucket, key, model, provider), cell in fine.items():
        for grain in GRAINS:
            start = bucket // grain * grain
            for dim, value in (("model", model), ("provider", provider), ("key", key)):
                total = sums.get((grain, start, dim, value))
                if total is None:
                    sums[(grain, start, dim, value)] = list(cell)
                else:
                    for i, v in enumerate(cell):
                        total[i] += v
    hist: dict[tuple[int, int, str, str, int], int] = {}
    for (hour, model, metric, b), n in hours.items():
        for grain in LATENCY_GRAINS:
            cell_key = (grain, hour // grain * grain, model, metric, b)
            hist[cell_key] = hist.get(cell_key, 0) + n
    return RollupDeltas(
        rollup=[(g, b, d, v, *cell) for (g, b, d, v), cell in sorted(sums.items())],
        latency=[(*k, n) for k, n in sorted(hist.items())],
        last_used=sorted(last.items()))


def _backfill(dialect_floor: str, ln: str) -> list[str]:
    """The rollups of the rows already logged; `dialect_floor` floors `{x}` to an integer."""
    out = []
    for grain in GRAINS:
        bucket = dialect_floor.format(x=f"ts / {grain}") + f" * {grain}"
        for dim, column in (("model", "model"), ("provider", "provider"), ("key", "key_id")):
            out.append(
                f"INSERT INTO sb_usage_rollup ({', '.join(ROLLUP_COLUMNS)}) "
                f"SELECT {grain}, {bucket}, '{dim}', COALESCE({column}, ''), COUNT(*), "
                "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(prompt_tokens), SUM(completion_tokens), "
                "COALESCE(SUM(cost_usd), 0), COUNT(*) - COUNT(cost_usd), COALESCE(SUM(latency_ms), 0) "
                "FROM sb_usage GROUP BY 1, 2, 3, 4")
    for grain in LATENCY_GRAINS:
        bucket = dialect_floor.format(x=f"ts / {grain}") + f" * {grain}"
        for metric, column in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
            b = f"CASE WHEN {column} > 1 THEN {dialect_floor.format(x=f'{ln}({column}) / {_LOG_RATIO!r}')} ELSE 0 END"
            out.append(f"INSERT INTO sb_latency_rollup ({', '.join(LATENCY_COLUMNS)}) "
                       f"SELECT {grain}, {bucket}, COALESCE(model, ''), '{metric}', {b}, COUNT(*) FROM sb_usage "
                       f"WHERE {column} IS NOT NULL GROUP BY 1, 2, 3, 4, 5")
    out.append("INSERT INTO sb_key_last_used (key_id, last_ts) SELECT key_id, MAX(ts) FROM sb_usage "
               "WHERE key_id IS NOT NULL GROUP BY key_id")
    return out


ROLLUP_MIGRATION: list[str | PostgresOnly | SqliteOnly] = [
    """CREATE TABLE IF NOT EXISTS sb_usage_rollup (
        grain INTEGER NOT NULL,
        bucket BIGINT NOT NULL,
        dim TEXT NOT NULL,
        value TEXT NOT NULL,
        requests BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        prompt_tokens BIGINT NOT NULL,
        completion_tokens BIGINT NOT NULL,
        cost_usd {float} NOT NULL,
        unpriced BIGINT NOT NULL,
        latency_ms_sum {float} NOT NULL,
        PRIMARY KEY (grain, dim, bucket, value))""",
    """CREATE TABLE IF NOT EXISTS sb_latency_rollup (
        grain INTEGER NOT NULL,
        bucket BIGINT NOT NULL,
        model TEXT NOT NULL,
        metric TEXT NOT NULL,
        bin INTEGER NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (grain, bucket, model, metric, bin))""",
    "CREATE TABLE IF NOT EXISTS sb_key_last_used (key_id TEXT PRIMARY KEY, last_ts {float} NOT NULL)",
    *(SqliteOnly(s) for s in _backfill("CAST({x} AS INTEGER)", "ln")),
    *(PostgresOnly(s) for s in _backfill("floor({x})::bigint", "ln")),
]
"""Part of migration 30: the tables, filled from the usage log already there."""


ROLLUP_CONFLICT = ("ON CONFLICT (grain, dim, bucket, value) DO UPDATE SET "
                   + ", ".join(f"{c} = sb_usage_rollup.{c} + excluded.{c}" for c in ROLLUP_COLUMNS[4:]))
LATENCY_CONFLICT = ("ON CONFLICT (grain, bucket, model, metric, bin) DO UPDATE SET "
                    "n = sb_latency_rollup.n + excluded.n")


def last_used_conflict(dialect: str) -> str:
    greatest = "MAX" if dialect == "sqlite" else "GREATEST"
    return f"ON CONFLICT (key_id) DO UPDATE SET last_ts = {greatest}(sb_key_last_used.last_ts, excluded.last_ts)"


def series_sql(grain: int, group_by: str, key_id: str | None, model: str | None,
               raw_bucket: str, regular: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
    """Sums per (bucket, group) over [since, until): from the rollup for its grains when no filter is
    given, else from the usage log itself (`raw_bucket`: the dialect's floor of `{x}`). With `regular`
    (origin, width: the output buckets are that evenly spaced) the rollup's rows are summed per output
    bucket in the database; otherwise per grain bucket, for the caller to place. The first two
    parameters (since, until) are the caller's; the filters' follow."""
    if grain in GRAINS and key_id is None and model is None:
        dim = {"model": "model", "provider": "provider", "key": "key", "none": "provider"}[group_by]
        group = "''" if group_by == "none" else "value"
        bucket = "bucket"
        if regular is not None and regular[1] > grain:
            origin, width = int(regular[0]), int(regular[1])
            bucket = f"{origin} + " + raw_bucket.format(x=f"(bucket - {origin}) / {width}") + f" * {width}"
        return (f"SELECT {bucket}, {group}, SUM(requests), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens), "
                f"SUM(cost_usd), SUM(unpriced) FROM sb_usage_rollup WHERE grain = {grain} AND dim = '{dim}' "
                "AND bucket >= {} AND bucket < {} GROUP BY 1, 2", [])
    raw_group = {"model": "COALESCE(model, '')", "provider": "COALESCE(provider, '')",
                 "key": "COALESCE(key_id, '')", "none": "''"}[group_by]
    filters: list[str] = []
    params: list[Any] = []
    if key_id is not None:
        filters.append("key_id = {}")
        params.append(key_id)
    if model is not None:
        filters.append("model = {}")
        params.append(model)
    where = "".join(f" AND {f}" for f in filters)
    bucket = raw_bucket.format(x=f"ts / {grain}") + f" * {grain}"
    return (f"SELECT {bucket}, {raw_group}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
            "SUM(prompt_tokens), SUM(completion_tokens), COALESCE(SUM(cost_usd), 0), COUNT(*) - COUNT(cost_usd) "
            f"FROM sb_usage WHERE ts >= {{}} AND ts < {{}}{where} GROUP BY 1, 2", params)


def latency_params(since: int, until: int) -> list[int]:
    """LATENCY_SQL's parameters for an hour-aligned window: its whole UTC days, and the hours outside those."""
    first_day = -(-since // 86400) * 86400
    last_day = max(first_day, until // 86400 * 86400)
    if first_day >= last_day:
        return [0, 0, since, until, 0, 0]
    return [first_day, last_day, since, first_day, last_day, until]


LATENCY_SQL = ("SELECT model, metric, bin, SUM(n) FROM sb_latency_rollup WHERE "
               "(grain = 86400 AND bucket >= {} AND bucket < {}) OR "
               "(grain = 3600 AND ((bucket >= {} AND bucket < {}) OR (bucket >= {} AND bucket < {}))) "
               "GROUP BY 1, 2, 3")
"""Parameters: `latency_params(since, until)`. The histogram of each (model, metric) over the window."""

SPEND_BY_KEY_SQL = ("SELECT value, SUM(cost_usd), SUM(requests), SUM(prompt_tokens + completion_tokens) "
                    "FROM sb_usage_rollup WHERE grain = 3600 AND dim = 'key' AND bucket >= {} AND bucket < {} "
                    "AND value <> '' GROUP BY value")
"""Parameters: (since, until), hour-aligned."""

LAST_USED_SQL = "SELECT key_id, last_ts FROM sb_key_last_used"
