"""The fleet-wide usage APIs of the dashboard (they read the shared store, so every instance answers alike):

- `GET /admin/usage/series`: requests, errors, tokens and spend per bucket, grouped (series.py).
- `GET /admin/usage/latency`: p50/p95 latency and time to first token per model (the latency histograms).
- `GET /admin/usage/top_keys`: keys by spend over a window.
- `GET /admin/usage/keys`: every key's spend in its current budget period, budget burn and last use.

All need the `viewer` or `admin` role. Windows of the last three are whole hours (the rollups' grain).
"""

from __future__ import annotations

import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..access.admin import authorize
from ..access.auth import Authenticator
from ..access.budgets import period_bounds
from ..access.control import AccessControl
from ..access.keys import parse_expiry
from ..asgi import JSONResponse, Request, Response
from ..errors import bad_request
from ..routes import PlainRoute
from ..store.rollup import LAST_USED_SQL, LATENCY_SQL, SPEND_BY_KEY_SQL, bin_value, latency_params
from .series import BUCKETS, MAX_BUCKETS, assemble, bucket_edges, series_query

__all__ = ["UsageApi", "percentile"]

_DAY = 86400.0
_GROUPS = ("model", "provider", "key", "none")


def _check_params(params: dict[str, str], allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise bad_request(f"Unknown query parameter `{name}`; allowed: {', '.join(sorted(allowed))}.", param=name,
                          code="unknown_parameter")


def _time(params: dict[str, str], name: str, default: float) -> float:
    raw = params.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        parsed = parse_expiry(raw, name)
        assert parsed is not None
        value = parsed
    if not 0 <= value < 1e11:
        raise bad_request(f"`{name}` is out of range.", param=name, code="invalid_value")
    return value


def _window(params: dict[str, str], default_s: float = _DAY) -> tuple[float, float]:
    until = _time(params, "until", time.time())
    since = _time(params, "since", until - default_s)
    if since >= until:
        raise bad_request("`since` must be before `until`.", param="since", code="invalid_value")
    return since, until


def _hours(since: float, until: float) -> tuple[int, int]:
    """The window widened to whole hours."""
    return int(since // 3600) * 3600, -int(-until // 3600) * 3600


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram {bin: count}, as its bin's value in ms."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for b in sorted(histogram):
        seen += histogram[b]
        if seen >= rank:
            return round(bin_value(b), 1)
    return round(bin_value(max(histogram)), 1)


class UsageApi:
    def __init__(self, access: AccessControl, auth: Authenticator, key_names: dict[str, str]) -> None:
        self.access = access
        self.auth = auth
        self.config_key_names = key_names  # config keys and the master: "cfg:name" -> name

    def routes(self) -> list[PlainRoute]:
        return [PlainRoute("GET", "/admin/usage/series", self.series),
                PlainRoute("GET", "/admin/usage/latency", self.latency),
                PlainRoute("GET", "/admin/usage/top_keys", self.top_keys),
                PlainRoute("GET", "/admin/usage/keys", self.keys)]

    async def _names(self) -> dict[str, str]:
        names = dict(self.config_key_names)
        for key in await self.access.store.list_keys():
            names[key.id] = key.name
        return names

    async def series(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        params = request.query_params()
        _check_params(params, {"bucket", "group_by", "since", "until", "tz", "key_id", "model"})
        bucket = params.get("bucket") or "1h"
        if bucket not in BUCKETS:
            raise bad_request(f"`bucket` must be one of {', '.join(BUCKETS)}.", param="bucket", code="invalid_value")
        group_by = params.get("group_by") or "model"
        if group_by not in _GROUPS:
            raise bad_request(f"`group_by` must be one of {', '.join(_GROUPS)}.", param="group_by",
                              code="invalid_value")
        tz_name = params.get("tz") or "UTC"
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise bad_request(f"Unknown time zone `{tz_name[:64]}` (an IANA name such as Europe/Berlin).",
                              param="tz", code="invalid_value") from None
        since, until = _window(params)
        try:
            edges = bucket_edges(bucket, since, until, tz)
        except ValueError:
            raise bad_request(f"Too many buckets: at most {MAX_BUCKETS}; use a wider bucket or a shorter window.",
                              param="bucket", code="invalid_value") from None
        store = self.access.store
        grain, sql, args = series_query(edges, group_by, params.get("key_id") or None, params.get("model") or None,
                                        store.floor_sql)
        await self.access.usage.flush()  # this instance's own recent requests are in the answer
        rows = await store.aggregate(sql, args)
        series = assemble(edges, rows)
        names = await self._names() if group_by == "key" else {}
        totals = {"requests": sum(sum(s.requests) for s in series), "errors": sum(sum(s.errors) for s in series),
                  "tokens": sum(sum(s.prompt_tokens) + sum(s.completion_tokens) for s in series),
                  "cost_usd": round(sum(sum(s.cost_usd) for s in series), 10)}
        source = {3600: "rollup_1h", 900: "rollup_15m"}.get(grain, "usage_log")
        return JSONResponse({"object": "usage.series", "bucket": bucket, "group_by": group_by, "tz": tz_name,
                             "since": edges[0], "until": edges[-1], "buckets": edges[:-1], "source": source,
                             "series": [s.public(names.get(s.group)) for s in series], "totals": totals})

    async def latency(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        params = request.query_params()
        _check_params(params, {"since", "until"})
        since, until = _hours(*_window(params))
        await self.access.usage.flush()
        rows = await self.access.store.aggregate(LATENCY_SQL, latency_params(since, until))
        hists: dict[str, dict[str, dict[int, int]]] = {}
        for model, metric, b, n in rows:
            hists.setdefault(model or "(none)", {}).setdefault(metric, {})[int(b)] = int(n)
        data: list[dict[str, Any]] = []
        for model, metrics in hists.items():
            latency, ttft = metrics.get("latency", {}), metrics.get("ttft", {})
            data.append({"model": model, "requests": sum(latency.values()),
                         "latency_p50_ms": percentile(latency, 0.5), "latency_p95_ms": percentile(latency, 0.95),
                         "ttft_p50_ms": percentile(ttft, 0.5), "ttft_p95_ms": percentile(ttft, 0.95),
                         "streamed": sum(ttft.values())})
        data.sort(key=lambda d: (-d["requests"], d["model"]))
        return JSONResponse({"object": "list", "since": since, "until": until, "data": data})

    async def top_keys(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        params = request.query_params()
        _check_params(params, {"since", "until", "limit"})
        raw_limit = params.get("limit") or "10"
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise bad_request("`limit` must be an integer between 1 and 1000.", param="limit", code="invalid_value")
        since, until = _hours(*_window(params))
        await self.access.usage.flush()
        rows = await self.access.store.aggregate(SPEND_BY_KEY_SQL, [since, until])
        rows.sort(key=lambda r: (-float(r[1] or 0.0), -int(r[2]), r[0]))
        names = await self._names()
        data = [{"key_id": k, "name": names.get(k, k), "cost_usd": round(float(c or 0.0), 10), "requests": int(n),
                 "tokens": int(t or 0)} for k, c, n, t in rows[:int(raw_limit)]]
        return JSONResponse({"object": "list", "since": since, "until": until, "data": data})

    async def keys(self, request: Request) -> Response:
        await authorize(self.auth, request, write=False)
        _check_params(request.query_params(), set())
        await self.access.usage.flush()
        store = self.access.store
        now = time.time()
        keys = await store.list_keys()
        spend: dict[float, dict[str, float]] = {}  # period start -> key id -> spend
        data: list[dict[str, Any]] = []
        last_used = {k: float(t) for k, t in await store.aggregate(LAST_USED_SQL, [])}
        for key in keys:
            start, end = period_bounds(key.budget_period, now)
            start_hour = int(start // 3600) * 3600  # periods start at UTC midnight: whole hours
            if start_hour not in spend:
                rows = await store.aggregate(SPEND_BY_KEY_SQL, [start_hour, 2**62])
                spend[start_hour] = {k: float(c or 0.0) for k, c, _, _ in rows}
            spent = round(spend[start_hour].get(key.id, 0.0), 10)
            data.append({"key_id": key.id, "name": key.name, "budget_usd": key.budget_usd,
                         "budget_period": key.budget_period, "period_start": start, "period_end": end,
                         "spend_usd": spent,
                         "burn": (spent / key.budget_usd) if key.budget_usd else None,
                         "last_used_at": last_used.get(key.id), "revoked": key.revoked, "role": key.role})
        return JSONResponse({"object": "list", "data": data})
