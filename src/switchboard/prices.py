"""Token prices: the bundled price table, the config's overrides, and the cost of one response's usage.

A price is USD per 1M tokens for five counts: uncached input, cached input read, cache write,
output (visible) and reasoning. The cost of a `Usage`:

    (prompt - cached - cache_write) x input + cached x cached_input + cache_write x cache_write
    + (completion - reasoning) x output + reasoning x reasoning

(`prompt_tokens` counts all input, cached included; `completion_tokens` counts all output,
reasoning included: OpenAI's convention, which every translator follows.)

`PriceBook` looks a price up by the public model name, then `provider/upstream_model`, then the
upstream model, first in the config's `prices:` and then in the bundled table (`BUNDLED`), whose
names are matched after normalising the upstream id: a Bedrock region prefix (`us.`), a vendor
prefix (`anthropic.`), a version suffix (`-v1:0`) and a date suffix (`-20250514`, `-2024-08-06`,
`-latest`) are dropped. A model without a price costs None (unknown, not free), logged once.
Lookups are cached per (model, provider, upstream model), so the hot path pays one dict lookup.

The bundled figures were taken from the providers' public price pages (standard tier, pay as you
go, no batch discount; Anthropic's cache write is the 5-minute write, 1.25 x input; Bedrock and
Azure list the same per-token prices as the model vendors for on-demand/global deployments in
US regions): https://openai.com/api/pricing/ , https://docs.anthropic.com/en/docs/about-claude/pricing ,
https://aws.amazon.com/bedrock/pricing/ ,
https://azure.microsoft.com/en-us/pricing/details/cognitive-services/openai-service/ .
Check them against your own bill; override any in the config.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .hub import Usage

__all__ = ["BUNDLED", "PRICES_TAKEN", "Price", "PriceBook", "normalise_model"]

log = logging.getLogger("switchboard.prices")

PRICES_TAKEN = "2025-08-15"
"""When the bundled figures were read from the price pages above."""


@dataclass(slots=True, frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    reasoning: float

    @classmethod
    def of(cls, input: float, output: float, cached_input: float | None = None, cache_write: float | None = None,
           reasoning: float | None = None) -> Price:
        """Missing figures default the way the providers bill: cached and cache write at the input price,
        reasoning at the output price."""
        return cls(input, output, input if cached_input is None else cached_input,
                   input if cache_write is None else cache_write, output if reasoning is None else reasoning)

    def cost(self, usage: Usage) -> float:
        cached, write, reasoning = usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens
        uncached = max(usage.prompt_tokens - cached - write, 0)
        visible = max(usage.completion_tokens - reasoning, 0)
        return (uncached * self.input + cached * self.cached_input + write * self.cache_write
                + visible * self.output + reasoning * self.reasoning) / 1_000_000


def _anthropic(input: float, output: float) -> Price:
    """Anthropic's cache pricing: read 0.1 x input, 5-minute write 1.25 x input; thinking bills as output."""
    return Price.of(input, output, round(input * 0.1, 6), round(input * 1.25, 6))


# The bundled table. (input, output, cached input); OpenAI charges nothing extra for cache writes and
# bills reasoning tokens as output tokens. Figures marked "unsure" are the ones to check first.
BUNDLED: dict[str, Price] = {
    # OpenAI (and Azure OpenAI global deployments, same prices)
    "gpt-5": Price.of(1.25, 10.00, 0.125),
    "gpt-5-mini": Price.of(0.25, 2.00, 0.025),
    "gpt-5-nano": Price.of(0.05, 0.40, 0.005),
    "gpt-5-chat": Price.of(1.25, 10.00, 0.125),
    "gpt-4.1": Price.of(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price.of(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price.of(0.10, 0.40, 0.025),
    "gpt-4o": Price.of(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price.of(0.15, 0.60, 0.075),
    "chatgpt-4o": Price.of(5.00, 15.00),
    "gpt-4-turbo": Price.of(10.00, 30.00),
    "gpt-4": Price.of(30.00, 60.00),
    "gpt-3.5-turbo": Price.of(0.50, 1.50),
    "o1": Price.of(15.00, 60.00, 7.50),
    "o1-mini": Price.of(1.10, 4.40, 0.55),
    "o1-pro": Price.of(150.00, 600.00),
    "o3": Price.of(2.00, 8.00, 0.50),  # after the June 2025 price cut
    "o3-mini": Price.of(1.10, 4.40, 0.55),
    "o3-pro": Price.of(20.00, 80.00),
    "o4-mini": Price.of(1.10, 4.40, 0.275),
    "text-embedding-3-small": Price.of(0.02, 0.0),
    "text-embedding-3-large": Price.of(0.13, 0.0),
    "text-embedding-ada-002": Price.of(0.10, 0.0),
    # Anthropic (and Claude on Bedrock, on-demand, same prices)
    "claude-opus-4-5": _anthropic(5.00, 25.00),  # unsure: the newest model, price as announced
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-opus-4": _anthropic(15.00, 75.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00),  # up to 200k input tokens; longer prompts cost more
    "claude-sonnet-4": _anthropic(3.00, 15.00),  # likewise
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-7-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-sonnet": _anthropic(3.00, 15.00),
    "claude-3-5-haiku": _anthropic(0.80, 4.00),
    "claude-3-opus": _anthropic(15.00, 75.00),
    "claude-3-haiku": Price.of(0.25, 1.25, 0.03, 0.30),
    # Amazon Nova on Bedrock (us-east-1); cached reads at a 75 % discount
    "amazon.nova-premier": Price.of(2.50, 12.50, 0.625),  # unsure
    "amazon.nova-pro": Price.of(0.80, 3.20, 0.20),
    "amazon.nova-lite": Price.of(0.06, 0.24, 0.015),
    "amazon.nova-micro": Price.of(0.035, 0.14, 0.00875),
    # Meta Llama on Bedrock (us-east-1); unsure: Bedrock's third-party prices change often
    "meta.llama3-3-70b-instruct": Price.of(0.72, 0.72),
    "meta.llama3-1-70b-instruct": Price.of(0.72, 0.72),
    "meta.llama3-1-8b-instruct": Price.of(0.22, 0.22),
    "mistral.mistral-large-2407": Price.of(2.00, 6.00),  # unsure
}

_REGION = re.compile(r"^(?:us|eu|apac|au|ca|jp|us-gov|global)\.")
_VERSION = re.compile(r"-v\d+(?::\d+)?$")
_DATE = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
_VENDORS = ("anthropic.",)


def normalise_model(name: str) -> str:
    """A provider's model id as the bundled table names it (see the module docstring)."""
    name = _REGION.sub("", name.lower())
    for vendor in _VENDORS:
        if name.startswith(vendor):
            name = name[len(vendor):]
    name = _VERSION.sub("", name)
    return _DATE.sub("", name)


class PriceBook:
    """The prices in force: the config's `prices:` over the bundled table."""

    def __init__(self, overrides: Mapping[str, Price] | None = None, bundled: Mapping[str, Price] = BUNDLED) -> None:
        self.overrides = dict(overrides or {})
        self.bundled = bundled
        self._resolved: dict[tuple[str | None, str | None, str | None], Price | None] = {}
        self._unpriced: set[str] = set()

    def price(self, model: str | None, provider: str | None, upstream_model: str | None) -> Price | None:
        key = (model, provider, upstream_model)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        names = [n for n in (model, f"{provider}/{upstream_model}" if provider and upstream_model else None,
                             upstream_model) if n]
        found = next((self.overrides[n] for n in names if n in self.overrides), None)
        if found is None:
            found = next((self.bundled[m] for n in names if (m := normalise_model(n)) in self.bundled), None)
        if found is None:
            label = upstream_model or model or "?"
            if label not in self._unpriced and len(self._unpriced) < 10_000:
                self._unpriced.add(label)
                log.warning("no price for model %r (public name %r): its cost is recorded as unknown; add it "
                            "under `prices:` in the config", label, model)
        if len(self._resolved) < 10_000:
            self._resolved[key] = found
        return found

    def cost(self, usage: Usage | None, model: str | None, provider: str | None,
             upstream_model: str | None) -> float | None:
        """The USD cost of `usage`: 0 without usage (nothing was generated), None when the model has no price."""
        if usage is None:
            return 0.0
        price = self.price(model, provider, upstream_model)
        return None if price is None else price.cost(usage)
