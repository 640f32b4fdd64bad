"""Requests and tokens per minute, per virtual key (its rpm/tpm) and per model (`models.X.rpm/tpm`).

Token buckets in the shared state: a request takes one request token from every applicable
requests bucket and needs at least one token in every tokens bucket, all-or-nothing. The tokens a
response used are counted after it (`charge`), so a tpm limit gates the next requests. Over a
limit: 429 with OpenAI's shape (type `requests` or `tokens`, code `rate_limit_exceeded`) and
`retry-after`; the `x-ratelimit-*` headers go on every response to which a limit applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Config
from ..errors import GatewayError
from ..shared_state import Bucket, SharedState
from ..store import VirtualKey

__all__ = ["Limit", "RateLimiter", "format_reset", "limits_unavailable"]

_ALWAYS = -1e18  # `need` of a charge: always succeeds, may leave the bucket in debt


@dataclass(slots=True, frozen=True)
class Limit:
    kind: str  # "requests" or "tokens"
    scope: str  # "key" or "model"
    name: str
    per_minute: int

    def bucket(self, cost: float, need: float) -> Bucket:
        # Model names are user-visible strings; the key id is ours. Both are safe in a Redis key.
        return Bucket(f"rl:{self.scope}:{self.name}:{self.kind}", self.per_minute, self.per_minute / 60.0, cost, need)


def format_reset(seconds: float) -> str:
    """OpenAI's duration format for x-ratelimit-reset-*: `20ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


class RateLimiter:
    def __init__(self, config: Config, state: SharedState) -> None:
        self.state = state
        self.models = {name: (m.rpm, m.tpm) for name, m in config.models.items() if m.rpm or m.tpm}

    def limits(self, key: VirtualKey | None, model: str | None) -> list[Limit]:
        out: list[Limit] = []
        if key is not None:
            if key.rpm:
                out.append(Limit("requests", "key", key.id, key.rpm))
            if key.tpm:
                out.append(Limit("tokens", "key", key.id, key.tpm))
        if model is not None and model in self.models:
            rpm, tpm = self.models[model]
            if rpm:
                out.append(Limit("requests", "model", model, rpm))
            if tpm:
                out.append(Limit("tokens", "model", model, tpm))
        return out

    async def admit(self, limits: Sequence[Limit]) -> dict[str, str]:
        """Take this request from every limit; the x-ratelimit headers, or a 429 carrying them."""
        if not limits:
            return {}
        buckets = [lim.bucket(1.0, 1.0) if lim.kind == "requests" else lim.bucket(0.0, 1.0) for lim in limits]
        allowed, levels = await self.state.take(buckets)
        headers = _headers(limits, levels)
        if allowed:
            return headers
        # The limit that frees up last decides how long to wait.
        waits = [((1.0 - level) / (lim.per_minute / 60.0), lim) for lim, level in zip(limits, levels, strict=True)
                 if level < 1.0]
        wait, lim = max(waits, key=lambda w: w[0])
        retry = max(1, math.ceil(wait))
        unit = "requests per min (RPM)" if lim.kind == "requests" else "tokens per min (TPM)"
        where = f"API key `{_safe(lim.name)}`" if lim.scope == "key" else f"model `{_safe(lim.name)}`"
        raise GatewayError(
            429, f"Rate limit reached for {where} on {unit}: Limit {lim.per_minute}. Please try again in {retry}s.",
            lim.kind, code="rate_limit_exceeded", headers={**headers, "retry-after": str(retry),
                                                            "retry-after-ms": str(math.ceil(wait * 1000))},
            retryable=False)

    async def charge(self, limits: Sequence[Limit], tokens: int) -> None:
        token_limits = [lim for lim in limits if lim.kind == "tokens"]
        if token_limits and tokens > 0:
            await self.state.take([lim.bucket(float(tokens), _ALWAYS) for lim in token_limits])


def limits_unavailable(retry_after_s: float) -> GatewayError:
    """The 503 of `shared_state.on_failure: closed` while the shared state cannot be reached."""
    retry = max(1, math.ceil(retry_after_s))
    return GatewayError(
        503, f"Rate limits and budgets cannot be checked right now (the shared state is unreachable), so this "
             f"request is refused. Please try again in {retry}s.",
        code="shared_state_unavailable", headers={"retry-after": str(retry)}, retryable=False)


def _safe(name: str) -> str:
    return name[:80]


def _headers(limits: Sequence[Limit], levels: Sequence[float]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        pairs = [(lim, level) for lim, level in zip(limits, levels, strict=True) if lim.kind == kind]
        if not pairs:
            continue
        # The tightest limit is the one a client must pace itself by.
        lim, level = min(pairs, key=lambda p: p[1] / p[0].per_minute)
        rate = lim.per_minute / 60.0
        headers[f"x-ratelimit-limit-{kind}"] = str(lim.per_minute)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(level)))
        headers[f"x-ratelimit-reset-{kind}"] = format_reset(max(0.0, (lim.per_minute - level) / rate))
    return headers
