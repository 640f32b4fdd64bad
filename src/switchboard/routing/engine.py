"""The routing engine: picks a deployment (provider + upstream model + key) for a public model name
and runs an attempt against it with retries, backoff and fallbacks. It knows nothing of wire
formats: an attempt is any coroutine function taking a `Deployment` (the `Router` subclass in
router.py builds them for each kind of call).

Policy, in order, for one `execute`:
- one total deadline (`models.X.timeout_s`, else `server.request_timeout_s`) bounds every queue
  wait, attempt and backoff sleep; when it cuts an attempt the client gets 504 `deadline_exceeded`;
- the model's concurrency slot (`models.X.max_in_flight`) is taken once, a provider's slot per attempt;
  a full queue is 503 `queue_full` at once (a fallback on another provider may still take it);
- keys whose circuit is open (routing/health.py) are avoided, and so are routes with no healthy
  key while another route has one; when nothing is healthy every route is tried anyway, because a
  likely-failing attempt beats a certain failure;
- retryable errors are retried with exponential backoff and jitter, on another key when there is
  one; the upstream's `retry-after` is honoured when retrying the same key, and a hint longer than
  `backoff_max_ms` gives the route up instead of holding the request;
- the route's last error decides whether to fall back (`_may_fall_back`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..config import Config, ModelConfig, ProviderKey
from ..errors import GatewayError
from ..providers.base import ChatProvider
from .deadlines import DeadlineGuard, Deadlines
from .deployment import Deployment, Outcome, Route
from .health import Health
from .limits import Lease, Limits
from .routes import RouteTable

if TYPE_CHECKING:
    from ..observability.spans import CallTrace, Tracer

__all__ = ["Deployment", "Engine", "Outcome", "Route", "RouterEvent", "deadline_exceeded"]

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class RouterEvent:
    """Something the router did that metrics and logs count: "retry", "fallback" or "upstream_error"."""

    kind: str
    model: str
    provider: str
    deployment: str
    error: GatewayError | None = None


class _KeyPicker:
    """Weighted random choice among the keys of a provider allowed for one upstream model."""

    __slots__ = ("keys", "weights")

    def __init__(self, keys: list[ProviderKey]) -> None:
        self.keys = keys
        self.weights = [k.weight for k in keys]

    def pick(self, exclude: set[str], healthy: Callable[[ProviderKey], bool]) -> ProviderKey | None:
        """Prefer healthy keys not tried yet, then healthy ones, then untried ones, then any."""
        if not self.keys:
            return None
        if len(self.keys) == 1:
            return self.keys[0]
        pairs = list(zip(self.keys, self.weights, strict=True))
        for wanted in (lambda k: k.id not in exclude and healthy(k), healthy, lambda k: k.id not in exclude):
            pool = [(k, w) for k, w in pairs if wanted(k)]
            if pool:
                return random.choices([k for k, _ in pool], [w for _, w in pool])[0]
        return random.choices(self.keys, self.weights)[0]  # every key failed: any may have recovered


def deadline_exceeded(seconds: float) -> GatewayError:
    return GatewayError(504, f"The request did not complete within its deadline of {seconds:g}s.", "timeout_error",
                        code="deadline_exceeded", retryable=False)


def _counts_against_deployment(err: GatewayError) -> bool:
    """Whether an error says the deployment is unwell (a local queue_full or a 4xx answer does not)."""
    return err.retryable and err.code != "queue_full"


def _context_window_error(err: GatewayError) -> bool:
    text = f"{err.code or ''} {err.message}".lower()
    return err.status == 400 and ("context_length" in text or "context window" in text or "maximum context" in text
                                  or "too many tokens" in text or "prompt is too long" in text)


class Engine:
    def __init__(self, config: Config, providers: dict[str, ChatProvider], limits: Limits | None = None) -> None:
        self.config = config
        self.providers = providers
        self.health = Health(config)
        self.limits = limits or Limits(config)
        self.listeners: list[Callable[[RouterEvent], None]] = []
        self.tracer: Tracer | None = None  # set by the gateway when tracing is configured
        self._deadlines: Deadlines | None = None  # the attempts' deadlines, on the loop that runs them
        # Keyed by the ids of the allowed keys, not by model name: clients choose `provider/<anything>`
        # freely, and a cache keyed by their strings would grow without bound.
        self._pickers: dict[tuple[str, tuple[str, ...]], _KeyPicker] = {}
        self.table = RouteTable(config, providers)
        self._routes = self.table.by_model
        self._route_pickers: dict[Route, _KeyPicker] = {}
        for routes in self._routes.values():
            for route in routes:
                try:
                    self._route_pickers[route] = self._picker(route)
                except GatewayError:
                    pass  # no key allowed: reported when the route is used
        self.routes = self.table.routes
        self.knows = self.table.knows

    def model_config(self, model: str) -> ModelConfig | None:
        return self.config.models.get(model)

    def deadline_s(self, model: str) -> float:
        mc = self.config.models.get(model)
        if mc is not None and mc.timeout_s is not None:
            return mc.timeout_s
        return self.config.server.request_timeout_s

    def _picker(self, route: Route) -> _KeyPicker:
        picker = self._route_pickers.get(route)  # configured routes: resolved once, off the hot path
        if picker is not None:
            return picker
        all_keys = self.providers[route.provider].config.keys
        keys = [k for k in all_keys if k.models is None or any(fnmatch.fnmatchcase(route.model, p) for p in k.models)]
        if not keys and all_keys:
            raise GatewayError(
                400,
                f"No key of provider `{route.provider}` is allowed for model `{route.model}`.",
                "invalid_request_error", param="model", code="no_provider_key", retryable=False)
        cache_key = (route.provider, tuple(k.id for k in keys))
        picker = self._pickers.get(cache_key)
        if picker is None:
            picker = self._pickers[cache_key] = _KeyPicker(keys)
        return picker

    def _deployment_id(self, provider: str, key: ProviderKey | None) -> str:
        return key.id if key is not None else provider

    def _route_healthy(self, route: Route) -> bool:
        try:
            keys: list[ProviderKey | None] = list(self._picker(route).keys) or [None]
        except GatewayError:
            return False
        return any(self.health.available(self._deployment_id(route.provider, k), route.provider) for k in keys)

    def _may_fall_back(self, err: GatewayError, model: str) -> bool:
        if err.retryable:
            return True
        mc = self.config.models.get(model)
        if mc is None:
            return False
        if "context_window" in mc.fallback_on and _context_window_error(err):
            return True
        return "content_filter" in mc.fallback_on and err.code == "content_filter"

    def _emit(self, kind: str, model: str, deployment: Deployment, error: GatewayError | None = None) -> None:
        event = RouterEvent(kind, model, deployment.provider.name, deployment.id, error)
        for listener in self.listeners:
            listener(event)

    async def execute(self, model: str, attempt: Callable[[Deployment], Awaitable[T]], *,
                      hold: bool = False, observe: Callable[[Outcome], None] | None = None,
                      self_bounded: bool = False, trace: CallTrace | None = None) -> tuple[T, Outcome]:
        """Run `attempt` until one deployment answers; raise the error that ended the search.

        `hold=True` keeps the request's concurrency slots in the returned Outcome (for streams; the
        caller must call `outcome.release()`). `observe` also sees the Outcome of a failed request
        (which deployment was tried last and how many attempts were made), for logs and metrics.
        `self_bounded=True` says an attempt ends within its provider's `connect_timeout_s + timeout_s`
        (a non-stream call): while the deadline is further away than that, no timer guards it.
        `trace` (tracing configured) records a span per attempt; with `hold` the answering attempt's
        span stays open in the Outcome until the stream ends.
        """
        routes = self.routes(model)
        loop = asyncio.get_running_loop()
        total_s = self.deadline_s(model)
        deadline = loop.time() + total_s
        leases: list[Lease] = []
        tried: Deployment | None = None
        attempts = 0
        fallback = False
        try:
            model_limiter = self.limits.models.get(model)
            if model_limiter is not None:
                model_lease = model_limiter.try_acquire()
                if model_lease is None:  # must queue: only then is a timer needed
                    try:
                        async with asyncio.timeout_at(deadline):
                            model_lease = await model_limiter.acquire()
                    except TimeoutError:
                        raise deadline_exceeded(total_s) from None
                leases.append(model_lease)
            healthy = [r for r in routes if self._route_healthy(r)] if len(routes) > 1 else routes
            last: GatewayError | None = None
            for index, route in enumerate(routes):
                if healthy and route not in healthy:
                    continue
                if last is not None:
                    if not self._may_fall_back(last, model):
                        break
                    if tried is not None:
                        self._emit("fallback", model, tried, last)
                if loop.time() >= deadline:
                    break
                provider = self.providers[route.provider]
                retry = provider.config.retries
                picker = self._picker(route)
                limiter = self.limits.providers.get(route.provider)
                failed_keys: set[str] = set()

                def healthy_key(k: ProviderKey, p: str = route.provider) -> bool:
                    return self.health.available(k.id, p)

                for n in range(retry.max + 1):
                    key = picker.pick(failed_keys, healthy_key)
                    deployment = Deployment(provider, route.model, key)
                    lease: Lease | None = None
                    if limiter is not None and (lease := limiter.try_acquire()) is None:
                        try:
                            async with asyncio.timeout_at(deadline):
                                lease = await limiter.acquire()
                        except TimeoutError:
                            raise deadline_exceeded(total_s) from None
                        except GatewayError as err:
                            last = err  # queue full: no point retrying the same provider now
                            break
                    tried = deployment
                    fallback = index > 0
                    attempts += 1
                    self.health.begin(deployment.id, route.provider)
                    span = trace.attempt(deployment, attempts, fallback) if trace is not None else None
                    bound: DeadlineGuard | None = None
                    if not self_bounded or deadline - loop.time() <= _attempt_bound_s(provider):
                        deadlines = self._deadlines
                        if deadlines is None or deadlines.loop is not loop:
                            deadlines = self._deadlines = Deadlines(loop)
                        bound = deadlines.guard(deadline)
                    try:
                        if bound is None:
                            result = await attempt(deployment)
                        else:
                            with bound:
                                result = await attempt(deployment)
                    except TimeoutError as exc:
                        self._release(lease)
                        if span is not None:
                            span.failed(exc)
                        if bound is None or not bound.expired():
                            self.health.abandon(deployment.id, route.provider)
                            raise
                        self.health.failure(deployment.id, route.provider)
                        expired = deadline_exceeded(total_s)
                        self._emit("upstream_error", model, deployment, expired)
                        raise expired from None
                    except GatewayError as err:
                        self._release(lease)
                        if span is not None:
                            span.failed(err)
                        last = err
                        if _counts_against_deployment(err):
                            self.health.failure(deployment.id, route.provider)
                        else:
                            self.health.success(deployment.id, route.provider)
                        self._emit("upstream_error", model, deployment, err)
                        if key is not None:
                            failed_keys.add(key.id)
                        if not err.retryable or n >= retry.max:
                            break
                        delay = self._retry_delay(n, err, picker, failed_keys, route.provider, retry.backoff_initial_ms,
                                                  retry.backoff_max_ms)
                        if delay is None or loop.time() + delay >= deadline:
                            break
                        self._emit("retry", model, deployment, err)
                        await asyncio.sleep(delay)
                        continue
                    except BaseException as exc:
                        self._release(lease)
                        if span is not None:
                            span.failed(exc)
                        self.health.abandon(deployment.id, route.provider)
                        raise
                    if span is not None:
                        span.answered(result, hold)
                    self.health.success(deployment.id, route.provider)
                    if lease is not None:
                        leases.append(lease)
                    outcome = Outcome(deployment, attempts, fallback, leases if hold else [], trace)
                    if not hold:
                        for held in leases:
                            held.release()
                    leases = []
                    if observe is not None:
                        observe(outcome)
                    return result, outcome
            if last is None:
                last = deadline_exceeded(total_s)
            raise last
        except GatewayError as err:
            if tried is not None:
                failed = Outcome(tried, attempts, fallback)
                err.headers.update(failed.headers())
                if observe is not None:
                    observe(failed)
            raise
        except asyncio.CancelledError:  # the client went away (499): the log still names what it reached
            if tried is not None and observe is not None:
                observe(Outcome(tried, attempts, fallback))
            raise
        finally:
            for held in leases:
                held.release()

    @staticmethod
    def _release(lease: Lease | None) -> None:
        if lease is not None:
            lease.release()

    def _retry_delay(self, n: int, err: GatewayError, picker: _KeyPicker, failed: set[str], provider: str,
                     initial_ms: int, max_ms: int) -> float | None:
        """Seconds to wait before retry `n + 1`, or None to give the route up."""
        other_key = any(k.id not in failed and self.health.available(k.id, provider) for k in picker.keys)
        hinted = _retry_after_s(err.headers)
        if hinted is None or other_key:  # the hint is about the key that failed, not its siblings
            return _jittered_s(n, initial_ms, max_ms)
        if hinted > max_ms / 1000:
            return None  # the client, told the upstream's retry-after, can wait better than a held request
        return hinted


def _attempt_bound_s(provider: ChatProvider) -> float:
    """How long a self-bounded attempt can last at most: connecting, then the whole exchange, plus slack."""
    return provider.config.connect_timeout_s + provider.config.timeout_s + 1.0


def _jittered_s(attempt: int, initial_ms: int, max_ms: int) -> float:
    base = min(max_ms, initial_ms * (2 ** attempt)) / 1000
    return random.uniform(base / 2, base)  # "equal jitter": spreads retries, keeps a floor


def _retry_after_s(headers: dict[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None
