"""Where a call went: a route (provider + upstream model), the deployment an attempt used (with the
provider key, which never leaves the routing layer), and the outcome of a routed call (for response
headers, logs and metrics, and the concurrency slots a stream holds until it ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import ProviderKey
from ..providers.base import ChatProvider
from .limits import Lease

if TYPE_CHECKING:
    from ..observability.spans import CallTrace

__all__ = ["Deployment", "Outcome", "Route"]


@dataclass(slots=True, frozen=True)
class Route:
    """One target of a model: a provider and the model name it knows."""

    provider: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(slots=True)
class Deployment:
    provider: ChatProvider
    model: str
    key: ProviderKey | None

    @property
    def key_value(self) -> str | None:
        return self.key.value if self.key is not None else None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None

    @property
    def id(self) -> str:
        """The deployment's non-secret identity for cooldowns and metrics: the key id, or the provider."""
        return self.key.id if self.key is not None else self.provider.name


@dataclass(slots=True)
class Outcome:
    """What the router did for one request, for response headers, logs and metrics.

    With `execute(..., hold=True)` it also holds the concurrency slots of the request, which the
    caller must `release()` when it is done with the result (a stream: when the stream ends).
    """

    deployment: Deployment
    attempts: int
    fallback: bool
    leases: list[Lease] = field(default_factory=list)
    trace: CallTrace | None = None  # traced: the call whose stream attempt span ends with the stream

    def release(self) -> None:
        for lease in self.leases:
            lease.release()

    def headers(self) -> dict[str, str]:
        return {
            "x-switchboard-provider": self.deployment.provider.name,
            "x-switchboard-model": self.deployment.model,
            "x-switchboard-attempts": str(self.attempts),
            "x-switchboard-fallback": "true" if self.fallback else "false",
        }
