"""The rows the store keeps: virtual API keys, usage log rows, usage queries and their totals, stored responses.

Plain dataclasses shared by both backends, the access layer, the admin API, the CLI and the Responses headend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUDGET_PERIODS", "KEY_FIELDS", "KEY_ROLES", "USAGE_COLUMNS", "StoredResponse", "UsageQuery", "UsageRow",
           "UsageTotals", "VirtualKey"]

BUDGET_PERIODS = ("daily", "weekly", "monthly", "total")

# Fields of a key that may change after creation (the secret never does).
KEY_FIELDS = ("name", "models", "expires_at", "rpm", "tpm", "budget_usd", "budget_period", "revoked", "role")

# The usage log's columns, in the order of a written row (`base.UsageValues`).
USAGE_COLUMNS = ("ts", "request_id", "key_id", "endpoint", "model", "provider", "upstream_model", "status", "stream",
                 "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "ttft_ms",
                 "cached_tokens", "cache_write_tokens", "reasoning_tokens", "estimated", "trace_id")

# What a key may do on the admin API and the dashboard: `viewer` reads, `admin` also changes keys.
# A key without a role (None) has no admin access; the master key is always `admin`.
KEY_ROLES = ("viewer", "admin")


@dataclass(slots=True)
class VirtualKey:
    """A client API key issued by the gateway. Only the SHA-256 hex digest of its secret is kept."""

    id: str
    name: str
    secret_hash: str
    hint: str  # "sk-sb-...wxyz": enough to recognise a key in a list, useless to an attacker
    models: list[str] = field(default_factory=lambda: ["*"])
    expires_at: float | None = None  # unix time
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: str = "monthly"
    revoked: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    role: str | None = None  # None, "viewer" or "admin" (KEY_ROLES)

    def public(self) -> dict[str, object]:
        """The admin API view: everything except the hash."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "hint": self.hint,
            "models": list(self.models),
            "expires_at": self.expires_at,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "revoked": self.revoked,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "role": self.role,
        }


@dataclass(slots=True)
class UsageRow:
    """One request in the usage log. Token counts as in `hub.Usage`: `prompt_tokens` includes the
    cached and cache-write tokens, `completion_tokens` the reasoning tokens. `cost_usd` is None when
    the model has no price; `estimated`: the gateway counted the tokens (a stream cut before usage)."""

    ts: float
    request_id: str
    key_id: str | None
    endpoint: str
    model: str | None
    provider: str | None
    upstream_model: str | None
    status: int
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_ms: float | None
    ttft_ms: float | None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    trace_id: str | None = None  # the request's trace (tracing configured), 32 hex digits

    def public(self) -> dict[str, object]:
        return {
            "ts": self.ts, "request_id": self.request_id, "key_id": self.key_id, "endpoint": self.endpoint,
            "model": self.model, "provider": self.provider, "upstream_model": self.upstream_model,
            "status": self.status, "stream": self.stream, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens, "reasoning_tokens": self.reasoning_tokens,
            "estimated": self.estimated, "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms, "ttft_ms": self.ttft_ms, "trace_id": self.trace_id,
        }


@dataclass(slots=True)
class UsageQuery:
    key_id: str | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    status: int | None = None
    limit: int = 100


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    unpriced: int = 0  # requests whose model has no price (not in `cost_usd`)
    estimated: int = 0  # requests whose tokens the gateway estimated

    def public(self) -> dict[str, object]:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens, "reasoning_tokens": self.reasoning_tokens,
                "cost_usd": round(self.cost_usd, 10), "unpriced_requests": self.unpriced,
                "estimated_requests": self.estimated}


@dataclass(slots=True)
class StoredResponse:
    """One turn of a Responses API conversation, kept for `previous_response_id`, retrieve and input_items.

    A conversation is the chain of these linked by `previous_response_id`; each row holds only its own turn.
    """

    id: str  # "resp_..."
    key_id: str | None  # the key that created it (None when auth is disabled); only that key may read it
    created_at: float  # unix seconds
    expires_at: float  # created_at + ttl; invisible from then on, purged later
    previous_response_id: str | None
    model: str
    items: list[dict[str, Any]]  # this turn's input items followed by its output items (Responses item objects)
    input_count: int  # how many of `items` are input items
    response: dict[str, Any]  # the full Response object as returned to the client
