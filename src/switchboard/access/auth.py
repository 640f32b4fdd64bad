"""Authentication of clients: the master key and the static keys from config.

Keys are compared by their SHA-256 digest (a dict lookup on digests leaks nothing about the
secret) and the master key with `hmac.compare_digest`. Secrets are never logged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import AuthConfig
from ..errors import GatewayError

if TYPE_CHECKING:
    from ..store import VirtualKey

__all__ = ["ANONYMOUS", "Authenticator", "Principal", "bearer_token"]


@dataclass(slots=True)
class Principal:
    """The authenticated caller."""

    key_id: str | None
    name: str
    models: list[str] = field(default_factory=lambda: ["*"])
    is_master: bool = False
    virtual: VirtualKey | None = None  # set for keys issued through the admin API / CLI (access.keys)

    @property
    def role(self) -> str | None:
        """Its admin role: "admin" for the master key, a virtual key's own role, else None (no admin access)."""
        if self.is_master:
            return "admin"
        return self.virtual.role if self.virtual is not None else None

    def may_use(self, model: str) -> bool:
        if self.is_master:
            return True
        return any(p == "*" or p == model or fnmatch.fnmatchcase(model, p) for p in self.models)


ANONYMOUS = Principal(key_id=None, name="anonymous", is_master=True)


def bearer_token(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("api-key") or headers.get("x-api-key") or None


def _invalid_key() -> GatewayError:
    return GatewayError(401, "Incorrect API key provided.", "authentication_error", code="invalid_api_key",
                        retryable=False)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Authenticator:
    def __init__(self, config: AuthConfig,
                 resolver: Callable[[bytes], Awaitable[Principal | None]] | None = None) -> None:
        self.enabled = config.master_key is not None
        self._master = _digest(config.master_key) if config.master_key else None
        self._master_principal = Principal(key_id="master", name="master", is_master=True)  # shared, never mutated
        self._keys = {
            _digest(k.value): Principal(key_id=f"cfg:{k.name}", name=k.name, models=list(k.models))
            for k in config.keys
        }
        # Looks up tokens that are neither the master key nor a config key (virtual keys in the store).
        self.resolver = resolver

    def known(self, headers: dict[str, str]) -> tuple[Principal | None, bytes | None]:
        """The caller when no I/O is needed to tell (auth off, the master key, a config key), else
        (None, digest) for the resolver (a virtual key) to look up. Raises 401 for a missing key, and
        for a wrong one when there is no resolver."""
        if not self.enabled:
            return ANONYMOUS, None
        token = bearer_token(headers)
        if token is None:
            raise GatewayError(401, "Missing API key. Pass it as `Authorization: Bearer <key>`.",
                               "authentication_error", code="missing_api_key", retryable=False)
        digest = _digest(token)
        if self._master is not None and hmac.compare_digest(digest, self._master):
            return self._master_principal, None
        principal = self._keys.get(digest)
        if principal is not None:
            return principal, None
        if self.resolver is None:
            raise _invalid_key()
        return None, digest

    async def authenticate(self, headers: dict[str, str]) -> Principal:
        principal, digest = self.known(headers)
        if principal is not None:
            return principal
        assert digest is not None
        return await self.resolve(digest)

    async def resolve(self, digest: bytes) -> Principal:
        """A key not known in memory, by the digest `known` returned: asks the resolver (the key store)."""
        principal = await self.resolver(digest) if self.resolver is not None else None
        if principal is None:
            raise _invalid_key()
        return principal

    @staticmethod
    def check_model(principal: Principal, model: str) -> None:
        if not principal.may_use(model):
            raise GatewayError(403, f"This API key is not allowed to use model `{model}`.", "permission_error",
                               param="model", code="model_not_allowed", retryable=False)
