"""Virtual API keys: issuing secrets, validating key fields, and resolving a bearer token to a key.

A secret (`sk-sb-` + 43 random URL-safe characters) is returned once, at creation; the store keeps
only its SHA-256 hex digest and a short hint. Resolved keys are cached in process for at most
`CACHE_TTL_S` so a revocation or change made through another instance (or the CLI, which writes
the store directly) takes effect everywhere within that time, while a hot key costs one store
lookup per second per instance: the requests that find its entry expired share one lookup rather
than each making its own. Changes made through this instance's admin API apply at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import GatewayError, bad_request
from ..store import BUDGET_PERIODS, KEY_ROLES, Store, VirtualKey
from ..store.base import INT64_MAX
from .auth import Principal

__all__ = ["CACHE_TTL_S", "SECRET_PREFIX", "KeyService", "hash_secret", "parse_expiry", "validate_key_fields"]

SECRET_PREFIX = "sk-sb-"
CACHE_TTL_S = 1.0
_CACHE_MAX = 10000
_NAME = re.compile(r"^[\w.@:-]{1,64}$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_expiry(value: Any, param: str = "expires_at") -> float | None:
    """Unix seconds, or an ISO date/datetime (UTC when no offset is given); null clears it."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise bad_request(f"`{param}` must be a unix time or an ISO 8601 date.", param=param, code="invalid_value")
    if isinstance(value, int | float):
        seconds = _finite(value)
        if seconds is None:
            raise bad_request(f"`{param}` is out of range: a unix time is a finite number of seconds.", param=param,
                              code="invalid_value")
        return seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    raise bad_request(f"`{param}` must be a unix time or an ISO 8601 date, got {str(value)[:40]!r}.", param=param,
                      code="invalid_value")


def _finite(value: int | float) -> float | None:
    """`value` as a float when a double holds it (what both stores keep), else None."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a double's range
        return None
    return number if math.isfinite(number) else None


def _positive_int(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise bad_request(f"`{param}` must be a positive integer or null.", param=param, code="invalid_value")
    if value > INT64_MAX:  # the stores' columns are 64-bit
        raise bad_request(f"`{param}` is too large: at most {INT64_MAX}.", param=param, code="invalid_value")
    return value


def validate_key_fields(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """The key fields present in `body`, checked; unknown fields are an error (a typo must not pass)."""
    allowed = {"name", "models", "expires_at", "rpm", "tpm", "budget_usd", "budget_period", "role"} | (
        set() if creating else {"revoked"})
    for field in body:
        if field not in allowed:
            raise bad_request(f"Unknown field `{field}`; allowed: {', '.join(sorted(allowed))}.", param=field,
                              code="unknown_parameter")
    out: dict[str, Any] = {}
    if "name" in body or creating:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad_request("`name` is required: 1-64 letters, digits or `_.@:-`.", param="name",
                              code="invalid_value")
        out["name"] = name
    if "models" in body:
        models = body["models"]
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
            raise bad_request("`models` must be a non-empty list of model or agent names (glob patterns allowed).",
                              param="models", code="invalid_value")
        out["models"] = models
    if "expires_at" in body:
        out["expires_at"] = parse_expiry(body["expires_at"])
    for name in ("rpm", "tpm"):
        if name in body:
            out[name] = _positive_int(body[name], name)
    if "budget_usd" in body:
        budget = body["budget_usd"]
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                                   or _finite(budget) is None or budget < 0):
            raise bad_request("`budget_usd` must be a finite number >= 0 or null.", param="budget_usd",
                              code="invalid_value")
        out["budget_usd"] = None if budget is None else float(budget)
    if "budget_period" in body:
        if body["budget_period"] not in BUDGET_PERIODS:
            raise bad_request(f"`budget_period` must be one of {', '.join(BUDGET_PERIODS)}.", param="budget_period",
                              code="invalid_value")
        out["budget_period"] = body["budget_period"]
    if "role" in body:
        if body["role"] is not None and body["role"] not in KEY_ROLES:
            raise bad_request(f"`role` must be null (no admin access) or one of {', '.join(KEY_ROLES)}.", param="role",
                              code="invalid_value")
        out["role"] = body["role"]
    if "revoked" in body:
        if not isinstance(body["revoked"], bool):
            raise bad_request("`revoked` must be a boolean.", param="revoked", code="invalid_value")
        out["revoked"] = body["revoked"]
    return out


def _auth_error(message: str, code: str) -> GatewayError:
    return GatewayError(401, message, "authentication_error", code=code, retryable=False)


class KeyService:
    """Key lifecycle on top of a Store, and bearer-token resolution with a short cache."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}  # secret hash -> (its key's principal, fetched at)
        self._lookups: dict[str, asyncio.Task[VirtualKey | None]] = {}  # secret hash -> the lookup under way
        self._changes = 0  # changes made here: a lookup that started before one may have read an old row

    async def create(self, fields: dict[str, Any]) -> tuple[VirtualKey, str]:
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        key = VirtualKey(id="key_" + secrets.token_hex(8), name=fields["name"], secret_hash=hash_secret(secret),
                         hint=f"{SECRET_PREFIX}...{secret[-4:]}", created_at=now, updated_at=now)
        for name, value in fields.items():
            setattr(key, name, value)
        await self.store.create_key(key)
        return key, secret

    async def update(self, key_id: str, changes: dict[str, Any]) -> VirtualKey | None:
        key = await self.store.update_key(key_id, changes) if changes else await self.store.get_key(key_id)
        if key is not None:
            self._cache.pop(key.secret_hash, None)
            self._lookups.pop(key.secret_hash, None)
            self._changes += 1
        return key

    def _forget_lookup(self, secret_hash: str, lookup: asyncio.Task[VirtualKey | None]) -> None:
        if self._lookups.get(secret_hash) is lookup:
            del self._lookups[secret_hash]
        if not lookup.cancelled():
            lookup.exception()  # retrieved: each waiter gets it from its own await

    async def resolve(self, digest: bytes) -> Principal | None:
        """The principal of a virtual key, None when no key has this digest; revoked/expired raise 401."""
        secret_hash = digest.hex()
        now = time.monotonic()
        cached = self._cache.get(secret_hash)
        if cached is not None and now - cached[1] < CACHE_TTL_S:
            principal = cached[0]
        else:
            changes = self._changes
            lookup = self._lookups.get(secret_hash)
            if lookup is None:
                lookup = self._lookups[secret_hash] = asyncio.get_running_loop().create_task(
                    self.store.key_by_hash(secret_hash))
                lookup.add_done_callback(lambda t: self._forget_lookup(secret_hash, t))
            found = await asyncio.shield(lookup)  # one caller going away does not cancel it for the others
            if found is None:
                self._cache.pop(secret_hash, None)
                return None  # not cached: a key created a moment ago on another instance must work at once
            cached = self._cache.get(secret_hash)
            if cached is not None and cached[0].virtual is found:
                principal = cached[0]  # another request of this lookup made it
            else:
                # One principal per fetch, shared by the requests of the next second (nothing mutates it).
                principal = Principal(key_id=found.id, name=found.name, models=list(found.models), virtual=found)
                if changes == self._changes:  # no change made here since: what was read is current
                    if len(self._cache) >= _CACHE_MAX:
                        self._cache.clear()
                    self._cache[secret_hash] = (principal, time.monotonic())
        key = principal.virtual
        assert key is not None
        if key.revoked:
            raise _auth_error("This API key has been revoked.", "revoked_api_key")
        if key.expires_at is not None and key.expires_at <= self._clock():
            raise _auth_error("This API key has expired.", "expired_api_key")
        return principal
