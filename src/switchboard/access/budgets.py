"""Budgets: the cost of each response from the price table, and a key's spend per period.

Cost: the five token counts of the usage (uncached input, cached input read, cache write, output,
reasoning) times their prices (USD per 1M tokens), from the config's `prices:` over the bundled table
(`prices.PriceBook`); a model without a price costs None, and is not charged.
A key's spend in its current period (UTC day, ISO week, calendar month, or all time) is a counter
of the request's counters (`counters`), seeded once per period from the usage log so a restart
forgets nothing that was written. A key whose spend reached its budget gets 429 `insufficient_quota` until the period
resets. A request admitted under budget may finish over it: the check is before, the cost after.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from ..errors import GatewayError
from ..hub import Usage
from ..prices import Price, PriceBook
from ..store import VirtualKey

__all__ = ["budget_exhausted", "cost_of", "period_bounds", "price_book"]


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


def price_book(prices: Mapping[str, Mapping[str, float]]) -> PriceBook:
    """The prices in force for the config's `prices:` (model -> input, output and the optional
    cached_input, cache_write, reasoning), over the bundled table."""
    return PriceBook({name: Price.of(p["input"], p["output"], p.get("cached_input"), p.get("cache_write"),
                                     p.get("reasoning")) for name, p in prices.items()})


def cost_of(prices: PriceBook | Mapping[str, Mapping[str, float]], usage: Usage | None, model: str | None,
            provider: str | None, upstream_model: str | None) -> float | None:
    """The USD cost of a response's usage: 0 without usage, None when its model has no price."""
    book = prices if isinstance(prices, PriceBook) else price_book(prices)
    return book.cost(usage, model, provider, upstream_model)


def budget_exhausted(key: VirtualKey, now: float) -> GatewayError:
    """The 429 of a key whose spend reached its budget in the period containing `now`."""
    _, end = period_bounds(key.budget_period, now)
    when = "" if end is None else f" It resets at {datetime.fromtimestamp(end, UTC).strftime('%Y-%m-%d %H:%M UTC')}."
    return GatewayError(
        429, f"You exceeded your current quota: this API key's {key.budget_period} budget of "
             f"${key.budget_usd:g} is used up.{when}",
        "insufficient_quota", code="insufficient_quota", headers={"x-should-retry": "false"}, retryable=False)
