"""What a client sees of the rate limits: the `x-ratelimit-*` headers and the 429.

The limits are requests and tokens per minute, per virtual key (its `rpm`/`tpm`) and per model
(`models.X.rpm/tpm`, all callers together); the counting is in `counters`. The headers go on every
response to which a limit applies, with the tightest limit of each kind; over a limit the answer
is a 429 in OpenAI's shape (type `requests` or `tokens`, code `rate_limit_exceeded`) with
`retry-after` (and `retry-after-ms`) for the limit that frees up last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from ..errors import GatewayError

__all__ = ["LimitCounter", "format_reset", "limits_unavailable", "rate_limited", "ratelimit_headers"]


class LimitCounter(Protocol):
    """What the headers and the 429 read of a counter (access.counters.Counter)."""

    kind: str  # "requests" or "tokens"
    scope: str  # "key" or "model"
    name: str
    limit: float
    limit_text: str
    rate: float

    def remaining(self, now: float) -> float: ...

_NAMES = {kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
          for kind in ("requests", "tokens")}


def format_reset(seconds: float) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: `20ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def ratelimit_headers(groups: Sequence[tuple[str, Sequence[LimitCounter]]], now: float) -> dict[str, str]:
    """For each kind (requests, tokens), the tightest of its counters: the one a client must pace itself by."""
    headers: dict[str, str] = {}
    for kind, counters in groups:
        best = counters[0]
        level = best.remaining(now)
        for counter in counters[1:]:
            other = counter.remaining(now)
            if other / counter.limit < level / best.limit:
                best, level = counter, other
        limit_name, remaining_name, reset_name = _NAMES[kind]
        headers[limit_name] = best.limit_text
        headers[remaining_name] = str(int(level)) if level >= 1 else "0"  # int() is floor for level >= 0
        reset = (best.limit - level) / best.rate
        headers[reset_name] = f"{math.ceil(reset * 1000)}ms" if 0 < reset < 1 else format_reset(max(0.0, reset))
    return headers


def rate_limited(waits: Sequence[tuple[float, LimitCounter]], headers: dict[str, str]) -> GatewayError:
    """The 429 of the refusing counters, each with the seconds until it admits again."""
    wait, counter = max(waits, key=lambda w: w[0])
    retry = max(1, math.ceil(wait))
    unit = "requests per min (RPM)" if counter.kind == "requests" else "tokens per min (TPM)"
    where = f"API key `{_safe(counter.name)}`" if counter.scope == "key" else f"model `{_safe(counter.name)}`"
    return GatewayError(
        429, f"Rate limit reached for {where} on {unit}: Limit {counter.limit_text}. Please try again in {retry}s.",
        counter.kind, code="rate_limit_exceeded", headers={**headers, "retry-after": str(retry),
                                                         "retry-after-ms": str(math.ceil(wait * 1000))},
        retryable=False)


def limits_unavailable(retry_after_s: float) -> GatewayError:
    """The 503 of `shared_state.on_failure: closed` while the shared state cannot be reached."""
    retry = max(1, math.ceil(retry_after_s))
    return GatewayError(
        503, f"Rate limits and budgets cannot be checked right now (the shared state is unreachable), so this "
             f"request is refused. Please try again in {retry}s.",
        code="shared_state_unavailable", headers={"retry-after": str(retry)}, retryable=False)


def _safe(name: str) -> str:
    return name[:80]
