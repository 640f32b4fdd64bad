"""Usage time series: bucket edges in a time zone, and the sums of each bucket per group.

Buckets up to an hour are fixed widths aligned to the zone's local clock (a 5-minute bucket starts at
local :00, :05...); `6h`, `1d`, `1w` (Monday) and `1mo` follow the local calendar, so a day across a
DST change is 23 or 25 hours long. `since` is moved back to the start of its bucket and `until`
forward to the end of its own.

The sums come from the rollups (store/rollup.py) at the coarsest grain that divides every edge
(1 hour, else 15 minutes: every zone's offset is a multiple of 15 minutes), or, for buckets below
15 minutes, from the usage log itself by minute. Each grain bucket lies inside one output bucket,
so the answer is exact either way.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..store.rollup import GRAINS, series_sql

__all__ = ["BUCKETS", "MAX_BUCKETS", "MAX_GROUPS", "Series", "bucket_edges", "grain_for", "series_query"]

# Fixed widths (seconds), or calendar steps.
BUCKETS: dict[str, int | None] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": None, "1d": None, "1w": None,
                                  "1mo": None}
MAX_BUCKETS = 1500
MAX_GROUPS = 12  # the largest groups by requests get a series each; the rest add up to "(other)"
_RAW_GRAIN = 60


def _local_floor(moment: datetime, bucket: str) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if bucket == "6h":
        return day.replace(hour=moment.hour - moment.hour % 6)
    if bucket == "1w":
        return day - timedelta(days=day.weekday())
    if bucket == "1mo":
        return day.replace(day=1)
    return day


def _local_next(start: datetime, bucket: str) -> datetime:
    if bucket == "6h":
        naive = start.replace(tzinfo=None) + timedelta(hours=6)
    elif bucket == "1d":
        naive = start.replace(tzinfo=None) + timedelta(days=1)
    elif bucket == "1w":
        naive = start.replace(tzinfo=None) + timedelta(days=7)
    else:
        naive = (start.replace(tzinfo=None, day=1) + timedelta(days=32)).replace(day=1)
    return naive.replace(tzinfo=start.tzinfo)


def bucket_edges(bucket: str, since: float, until: float, tz: ZoneInfo) -> list[float]:
    """The edges e0 <= since < ... <= en (at least two), ValueError past MAX_BUCKETS buckets."""
    width = BUCKETS[bucket]
    edges: list[float] = []
    if width is not None:
        offset = datetime.fromtimestamp(since, tz).utcoffset()
        off = int(offset.total_seconds()) if offset is not None else 0
        edge = float((int(since) + off) // width * width - off)
        edges.append(edge)
        while edge < until or len(edges) < 2:
            edge += width
            edges.append(edge)
            if len(edges) > MAX_BUCKETS + 1:
                raise ValueError(bucket)
        return edges
    local = _local_floor(datetime.fromtimestamp(since, tz), bucket)
    edges.append(local.timestamp())
    while edges[-1] < until or len(edges) < 2:
        local = _local_next(local, bucket)
        ts = local.timestamp()
        if ts > edges[-1]:  # a local time skipped by a DST change maps onto its neighbour: keep edges increasing
            edges.append(ts)
        if len(edges) > MAX_BUCKETS + 1:
            raise ValueError(bucket)
    return edges


def grain_for(edges: list[float]) -> int:
    """The coarsest rollup grain dividing every edge, else the usage log's minute."""
    for grain in GRAINS:
        if all(e % grain == 0 for e in edges):
            return grain
    return _RAW_GRAIN


@dataclass(slots=True)
class Series:
    group: str
    requests: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    unpriced: list[int] = field(default_factory=list)

    @classmethod
    def empty(cls, group: str, n: int) -> Series:
        return cls(group, [0] * n, [0] * n, [0] * n, [0] * n, [0.0] * n, [0] * n)

    def add(self, i: int, row: tuple[Any, ...]) -> None:
        self.requests[i] += int(row[2])
        self.errors[i] += int(row[3] or 0)
        self.prompt_tokens[i] += int(row[4] or 0)
        self.completion_tokens[i] += int(row[5] or 0)
        self.cost_usd[i] += float(row[6] or 0.0)
        self.unpriced[i] += int(row[7] or 0)

    def public(self, label: str | None) -> dict[str, Any]:
        return {"group": self.group, "label": label or self.group or "(none)", "requests": self.requests,
                "errors": self.errors, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "tokens": [p + c for p, c in zip(self.prompt_tokens, self.completion_tokens, strict=True)],
                "cost_usd": [round(c, 10) for c in self.cost_usd], "unpriced": self.unpriced}


def series_query(edges: list[float], group_by: str, key_id: str | None, model: str | None,
                 floor_sql: str) -> tuple[int, str, list[Any]]:
    """(grain, SQL, parameters) of the sums between the first and last edge."""
    grain = grain_for(edges)
    widths = {b - a for a, b in itertools.pairwise(edges)}
    regular = (int(edges[0]), int(widths.pop())) if len(widths) == 1 else None
    sql, filters = series_sql(grain, group_by, key_id, model, floor_sql, regular)
    return grain, sql, [int(edges[0]) if grain in GRAINS else edges[0],
                        int(edges[-1]) if grain in GRAINS else edges[-1], *filters]


def assemble(edges: list[float], rows: list[tuple[Any, ...]]) -> list[Series]:
    """Each (grain bucket, group, sums...) row added to the output bucket holding it; the largest
    MAX_GROUPS groups by requests, the rest summed as "(other)"."""
    n = len(edges) - 1
    by_group: dict[str, Series] = {}
    for row in rows:
        i = bisect.bisect_right(edges, float(row[0])) - 1
        if not 0 <= i < n:
            continue
        group = str(row[1] or "")
        series = by_group.get(group)
        if series is None:
            series = by_group[group] = Series.empty(group, n)
        series.add(i, row)
    ranked = sorted(by_group.values(), key=lambda s: (-sum(s.requests), s.group))
    if len(ranked) <= MAX_GROUPS:
        return ranked
    other = Series.empty("(other)", n)
    for series in ranked[MAX_GROUPS - 1:]:
        for i in range(n):
            other.add(i, (None, None, series.requests[i], series.errors[i], series.prompt_tokens[i],
                          series.completion_tokens[i], series.cost_usd[i], series.unpriced[i]))
    return [*ranked[:MAX_GROUPS - 1], other]
