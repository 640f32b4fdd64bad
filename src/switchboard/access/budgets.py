"""Budgets: the cost of each response from the price table, and a key's spend per period.

Cost = prompt tokens x input price + completion tokens x output price (USD per 1M tokens), the
price looked up by the public model name, then `provider/upstream_model`, then the upstream model.
A key's spend in its current period (UTC day, ISO week, calendar month, or all time) is one of the
request's counters (`counters`), seeded once per period from the usage log so a restart forgets
nothing that was written. A key whose spend reached its budget gets 429 `insufficient_quota` until
the period resets. A request admitted under budget may finish over it: the check is before, the
cost after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..errors import GatewayError
from ..hub import Usage
from ..store import VirtualKey

__all__ = ["budget_exhausted", "cost_of", "period_bounds"]


def period_bounds(period: str, now: float) -> tuple[float, float | None]:
    """Start and end (None: never) of the budget period containing `now`."""
    if period == "total":
        return 0.0, None
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
    elif period == "weekly":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:  # monthly
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()


def cost_of(prices: dict[str, dict[str, float]], usage: Usage | None, model: str | None, provider: str | None,
            upstream_model: str | None) -> float:
    if usage is None:
        return 0.0
    names = [model, f"{provider}/{upstream_model}" if provider and upstream_model else None, upstream_model]
    price = next((prices[n] for n in names if n and n in prices), None)
    if price is None:
        return 0.0
    return (usage.prompt_tokens * price["input"] + usage.completion_tokens * price["output"]) / 1_000_000


def budget_exhausted(key: VirtualKey, now: float) -> GatewayError:
    """The 429 of a key whose spend reached its budget in the period containing `now`."""
    _, end = period_bounds(key.budget_period, now)
    when = "" if end is None else f" It resets at {datetime.fromtimestamp(end, UTC).strftime('%Y-%m-%d %H:%M UTC')}."
    return GatewayError(
        429, f"You exceeded your current quota: this API key's {key.budget_period} budget of "
             f"${key.budget_usd:g} is used up.{when}",
        "insufficient_quota", code="insufficient_quota", headers={"x-should-retry": "false"}, retryable=False)
