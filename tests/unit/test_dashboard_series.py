"""Bucket edges in time zones (DST both ways, weeks, months, half-hour offsets), the grain each needs, and the
live requests ring buffer's bounds."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from switchboard.access.auth import Authenticator
from switchboard.config import AuthConfig
from switchboard.dashboard.live import RecentRequests
from switchboard.dashboard.series import MAX_BUCKETS, assemble, bucket_edges, grain_for
from switchboard.request_record import RequestRecord

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def local(tz: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_spring_forward_day_is_23_hours_and_6h_buckets_follow_the_wall_clock() -> None:
    edges = bucket_edges("1d", local(BERLIN, 2026, 3, 29, 12), local(BERLIN, 2026, 3, 29, 13), BERLIN)
    assert edges == [local(BERLIN, 2026, 3, 29), local(BERLIN, 2026, 3, 30)]
    assert edges[1] - edges[0] == 23 * 3600
    six = bucket_edges("6h", local(BERLIN, 2026, 3, 29, 1), local(BERLIN, 2026, 3, 29, 7), BERLIN)
    assert [datetime.fromtimestamp(e, BERLIN).hour for e in six] == [0, 6, 12]
    assert six[1] - six[0] == 5 * 3600  # the lost hour
    assert grain_for(six) == 3600


def test_weeks_start_on_monday_and_months_on_the_first() -> None:
    weeks = bucket_edges("1w", local(UTC, 2026, 12, 2), local(UTC, 2026, 12, 9), UTC)  # a Wednesday
    assert weeks[0] == local(UTC, 2026, 11, 30) and datetime.fromtimestamp(weeks[0], UTC).weekday() == 0
    months = bucket_edges("1mo", local(UTC, 2026, 12, 15), local(UTC, 2027, 1, 2), UTC)
    assert months == [local(UTC, 2026, 12, 1), local(UTC, 2027, 1, 1), local(UTC, 2027, 2, 1)]


def test_fixed_widths_align_to_the_local_clock_and_pick_their_grain() -> None:
    nepal = ZoneInfo("Asia/Kathmandu")  # UTC+5:45
    edges = bucket_edges("1h", local(UTC, 2026, 5, 1, 10, 20), local(UTC, 2026, 5, 1, 11, 0), nepal)
    assert [datetime.fromtimestamp(e, nepal).strftime("%H:%M") for e in edges] == ["16:00", "17:00"]
    assert grain_for(edges) == 900
    assert grain_for(bucket_edges("1h", 7200.5, 9000, UTC)) == 3600
    assert grain_for(bucket_edges("5m", 0, 900, UTC)) == 60
    with pytest.raises(ValueError):
        bucket_edges("1m", 0, 60 * (MAX_BUCKETS + 5), UTC)


def test_assemble_keeps_the_largest_groups_and_sums_the_rest() -> None:
    edges = [0.0, 60.0, 120.0]
    rows = [(0, f"m{i}", i + 1, 0, 1, 1, 0.5, 0) for i in range(15)] + [(60, "m14", 5, 1, 2, 2, 1.0, 1),
                                                                          (120, "m0", 9, 0, 0, 0, 0, 0)]
    series = assemble(edges, rows)
    assert len(series) == 12 and series[0].group == "m14" and series[0].requests == [15, 5]
    other = series[-1]
    assert other.group == "(other)" and other.requests == [1 + 2 + 3 + 4, 0]  # m0..m3; m0's row at 120 is outside


async def test_the_ring_buffer_and_subscriber_queues_are_bounded() -> None:
    recent = RecentRequests(Authenticator(AuthConfig()), capacity=5)
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue(2)
    recent._subscribers.add(queue)
    for i in range(8):
        recent.observe(RequestRecord(request_id=f"r{i}", endpoint="/chat/completions", model="m"))
    assert [r["request_id"] for r in recent.records] == ["r3", "r4", "r5", "r6", "r7"]
    assert sorted(recent._by_id) == ["r3", "r4", "r5", "r6", "r7"]
    assert queue.qsize() == 2 and recent.dropped == 6
    recent.observe(RequestRecord(request_id="x", endpoint="(unknown)"))
    assert recent.records[-1]["request_id"] == "r7"
