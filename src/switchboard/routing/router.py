"""The router: picks a deployment (provider + upstream model + key) for a public model name and
runs an attempt against it with retries, backoff and fallbacks. It knows nothing of wire formats:
an attempt is any coroutine function taking a `Deployment`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..config import Config, ModelConfig, ProviderKey
from ..errors import GatewayError, model_not_found
from ..providers.base import ChatProvider

__all__ = ["Deployment", "Outcome", "Route", "Router"]

T = TypeVar("T")


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


@dataclass(slots=True)
class Outcome:
    """What the router did for one request, for response headers, logs and metrics."""

    deployment: Deployment
    attempts: int
    fallback: bool

    def headers(self) -> dict[str, str]:
        return {
            "x-switchboard-provider": self.deployment.provider.name,
            "x-switchboard-model": self.deployment.model,
            "x-switchboard-attempts": str(self.attempts),
            "x-switchboard-fallback": "true" if self.fallback else "false",
        }


class _KeyPicker:
    """Weighted random choice among the keys of a provider allowed for one upstream model."""

    __slots__ = ("keys", "weights")

    def __init__(self, keys: list[ProviderKey]) -> None:
        self.keys = keys
        self.weights = [k.weight for k in keys]

    def pick(self, exclude: set[str]) -> ProviderKey | None:
        if not self.keys:
            return None
        if len(self.keys) == 1:
            return self.keys[0]
        pool = [(k, w) for k, w in zip(self.keys, self.weights, strict=True) if k.id not in exclude]
        if not pool:  # every key failed already: any of them may have recovered
            return random.choices(self.keys, self.weights)[0]
        return random.choices([k for k, _ in pool], [w for _, w in pool])[0]


def _context_window_error(err: GatewayError) -> bool:
    text = f"{err.code or ''} {err.message}".lower()
    return err.status == 400 and ("context_length" in text or "context window" in text or "maximum context" in text
                                  or "too many tokens" in text or "prompt is too long" in text)


class Router:
    def __init__(self, config: Config, providers: dict[str, ChatProvider]) -> None:
        self.config = config
        self.providers = providers
        self._pickers: dict[tuple[str, str], _KeyPicker] = {}
        self._routes: dict[str, list[Route]] = {}
        for name, model in config.models.items():
            self._routes[name] = [self._parse(t) for t in [model.route, *model.fallbacks]]

    @staticmethod
    def _parse(target: str) -> Route:
        provider, _, model = target.partition("/")
        return Route(provider, model)

    def knows(self, model: str) -> bool:
        try:
            self.routes(model)
        except GatewayError:
            return False
        return True

    def routes(self, model: str) -> list[Route]:
        """The targets for a public model name, primary first; 404 if there are none."""
        routes = self._routes.get(model)
        if routes is not None:
            return routes
        provider, sep, upstream = model.partition("/")
        if sep and upstream and provider in self.providers:
            route = [Route(provider, upstream)]
            self._routes[model] = route
            return route
        raise model_not_found(model)

    def model_config(self, model: str) -> ModelConfig | None:
        return self.config.models.get(model)

    def _picker(self, route: Route) -> _KeyPicker:
        picker = self._pickers.get((route.provider, route.model))
        if picker is None:
            keys = [
                k for k in self.providers[route.provider].config.keys
                if k.models is None or any(fnmatch.fnmatchcase(route.model, p) for p in k.models)
            ]
            if not keys and self.providers[route.provider].config.keys:
                raise GatewayError(
                    400,
                    f"No key of provider `{route.provider}` is allowed for model `{route.model}`.",
                    "invalid_request_error", param="model", code="no_provider_key", retryable=False)
            picker = self._pickers[(route.provider, route.model)] = _KeyPicker(keys)
        return picker

    def _may_fall_back(self, err: GatewayError, model: str) -> bool:
        if err.retryable:
            return True
        mc = self.config.models.get(model)
        if mc is None:
            return False
        if "context_window" in mc.fallback_on and _context_window_error(err):
            return True
        return "content_filter" in mc.fallback_on and err.code == "content_filter"

    @staticmethod
    def _backoff_s(attempt: int, err: GatewayError, initial_ms: int, max_ms: int) -> float:
        hinted = _retry_after_s(err.headers)
        if hinted is not None:
            return min(hinted, max_ms / 1000 * 4)
        base = min(max_ms, initial_ms * (2 ** attempt)) / 1000
        return random.uniform(base / 2, base)  # "equal jitter": spreads retries, keeps a floor

    async def execute(self, model: str, attempt: Callable[[Deployment], Awaitable[T]]) -> tuple[T, Outcome]:
        routes = self.routes(model)
        attempts = 0
        last: GatewayError | None = None
        for index, route in enumerate(routes):
            provider = self.providers[route.provider]
            retry = provider.config.retries
            picker = self._picker(route)
            failed_keys: set[str] = set()
            for n in range(retry.max + 1):
                key = picker.pick(failed_keys)
                deployment = Deployment(provider, route.model, key)
                attempts += 1
                try:
                    result = await attempt(deployment)
                except GatewayError as err:
                    last = err
                    if key is not None:
                        failed_keys.add(key.id)
                    if not err.retryable:
                        break
                    if n < retry.max:
                        await asyncio.sleep(self._backoff_s(n, err, retry.backoff_initial_ms, retry.backoff_max_ms))
                    continue
                return result, Outcome(deployment, attempts, index > 0)
            assert last is not None
            if not self._may_fall_back(last, model):
                raise last
        assert last is not None
        raise last


def _retry_after_s(headers: dict[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None
