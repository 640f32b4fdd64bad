"""The `prices:` section: the config's own prices per model (USD per 1M tokens), which override the
bundled table of prices.py.
"""

from __future__ import annotations

from .section import _Section


def _read_prices(s: _Section) -> dict[str, dict[str, float]]:
    prices: dict[str, dict[str, float]] = {}
    for model in list(s.items):
        p = s.section(model)
        prices[model] = {
            "input": p.positive("input", float, 0.0, allow_zero=True),
            "output": p.positive("output", float, 0.0, allow_zero=True),
        }
        # Optional (USD per 1M tokens): absent, cached input and cache writes cost the input price and
        # reasoning the output price (see prices.py).
        for optional in ("cached_input", "cache_write", "reasoning"):
            if optional in p.items:
                prices[model][optional] = p.positive(optional, float, 0.0, allow_zero=True)
        p.done()
        s.seen.add(model)
    s.done()
    return prices
