"""Access control around each API request: virtual keys, rate limits, budgets and the usage log.

Every Gateway has one (built from the config unless given): the authenticator resolves unknown
bearer tokens through the key store (`resolve`), `Gateway.admit` calls `admit` once the model is
known, and the gateway observer `observe` counts each finished request (tokens for tpm, cost for
budgets, one usage row). The store opens at gateway start and closes with it.

Counting happens in a task started by the observer; the next admission of the same key or model
in this process first waits for those tasks, so a limit hit by one response gates the very next
request (other instances see it as soon as the shared state is written, microseconds later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..config import Config
from ..errors import GatewayError
from ..hub import Usage, milliseconds
from ..request_record import RequestRecord
from ..shared_state import SharedState, SharedStateUnavailable, build_shared_state
from ..store import Store, UsageValues, VirtualKey
from ..store import build_store as _build_store
from ..store.response_purger import ResponsePurger
from ..store.usage_writer import UsageWriter
from .auth import Principal
from .budgets import Budgets, price_book
from .keys import KeyService
from .rate_limits import Limit, RateLimiter, limits_unavailable

__all__ = ["AccessControl", "Admission"]

log = logging.getLogger("switchboard.access")


@dataclass(slots=True)
class Admission:
    """What `admit` decided for one request; read back by the observer when it finishes."""

    key: VirtualKey | None
    model: str
    limits: list[Limit]


def _usage_values(record: RequestRecord, usage: Usage | None, cost: float | None) -> UsageValues:
    """The request's usage log row, as the tuple the store writes (the order of `USAGE_COLUMNS`)."""
    latency, ttft = record.latency_s, record.first_token_s
    if usage is None:
        return (record.started_wall, record.request_id, record.key_id, record.endpoint, record.model,
                record.provider, record.upstream_model, record.status, 1 if record.stream else 0, 0, 0, cost,
                milliseconds(latency), milliseconds(ttft), 0, 0, 0, 0)
    return (record.started_wall, record.request_id, record.key_id, record.endpoint, record.model, record.provider,
            record.upstream_model, record.status, 1 if record.stream else 0,
            usage.prompt_tokens, usage.completion_tokens, cost, milliseconds(latency), milliseconds(ttft),
            usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens, 1 if usage.estimated else 0)


class AccessControl:
    def __init__(self, config: Config, store: Store | None = None, state: SharedState | None = None) -> None:
        self.store = store or _build_store(config.store_url, config.base_dir)
        self.state = state or build_shared_state(config.shared_state_url, config.shared_state_prefix,
                                                 config.shared_state_timeout_s, config.shared_state_on_failure)
        self.fail_closed = config.shared_state_on_failure == "closed"
        self.unchecked = {"admitted": 0, "refused": 0}  # requests whose limits the shared state could not check
        self.keys = KeyService(self.store)
        self.limiter = RateLimiter(config, self.state)
        self.budgets = Budgets(self.state, self.store)
        self.usage = UsageWriter(self.store)
        self.purger = ResponsePurger(self.store)  # stored Responses API turns past `responses.ttl_days`
        self.prices = price_book(config.prices)  # the config's `prices:` over the bundled table
        self._pending: dict[str, set[asyncio.Task[None]]] = {}

    def collect(self) -> Iterator[Metric]:
        """Prometheus collector protocol: the usage log's queue (register on the metrics registry)."""
        yield CounterMetricFamily("switchboard_usage_rows_dropped", "Usage log rows dropped (queue full or write "
                                  "failed).", value=self.usage.dropped)
        yield GaugeMetricFamily("switchboard_usage_rows_queued", "Usage log rows waiting to be written.",
                                value=self.usage.queued)
        unchecked = CounterMetricFamily("switchboard_limits_unchecked", "Requests whose rate limits or budget the "
                                        "shared state could not check: admitted (on_failure: open) or refused "
                                        "with 503 (on_failure: closed).", labels=["outcome"])
        for outcome, count in self.unchecked.items():
            unchecked.add_metric([outcome], count)
        yield unchecked
        state_metrics = getattr(self.state, "collect", None)  # a guarded remote state: its breaker
        if state_metrics is not None:
            yield from state_metrics()

    async def start(self) -> None:
        await self.store.open()
        await self.state.start()
        self.usage.start()
        self.purger.start()

    async def aclose(self) -> None:
        tasks = [t for group in self._pending.values() for t in group]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.purger.aclose()
            await self.usage.aclose()
        finally:
            await self.state.aclose()
            await self.store.close()

    async def resolve(self, digest: bytes) -> Principal | None:
        try:
            return await self.keys.resolve(digest)
        except GatewayError:
            raise
        except Exception as exc:
            log.error("key store lookup failed: %s", type(exc).__name__)
            raise GatewayError(503, "The key store is unavailable; try again shortly.", "api_error",
                               code="store_unavailable") from None

    def needs_admission(self, principal: Principal, model: str) -> bool:
        """Whether `admit` has anything to check (a virtual key, or limits on the model)."""
        return principal.virtual is not None or bool(self.limiter.limits(None, model))

    async def admit(self, principal: Principal, model: str, record: RequestRecord) -> None:
        key = principal.virtual
        limits = self.limiter.limits(key, model)
        if key is None and not limits:
            return
        await self._settle(key, model)
        try:
            if key is not None:
                await self.budgets.check(key, time.time())
            record.headers.update(await self.limiter.admit(limits))
        except GatewayError:
            raise
        except SharedStateUnavailable as exc:  # logged once per outage by the guarded state, not per request
            if self.fail_closed:
                self.unchecked["refused"] += 1
                raise limits_unavailable(exc.retry_after_s) from None
            self.unchecked["admitted"] += 1
        except Exception as exc:
            # Fail open: an outage of Redis (or the store, for a budget's first check) must not take every
            # client down with it; limits resume when it is back.
            log.warning("rate limit / budget check skipped, shared state unavailable: %s", type(exc).__name__)
        record.admission = Admission(key, model, limits)

    async def _settle(self, key: VirtualKey | None, model: str) -> None:
        names = ([f"k:{key.id}"] if key is not None else []) + [f"m:{model}"]
        tasks = [t for n in names for t in self._pending.get(n, ())]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def observe(self, record: RequestRecord) -> None:
        if record.model is None:
            return  # not a model call (model listing); nothing to count
        usage = record.usage
        cost = self.prices.cost(usage, record.model, record.provider, record.upstream_model)
        self.usage.add(_usage_values(record, usage, cost))
        admission = record.admission
        if not isinstance(admission, Admission) or usage is None:
            return
        needs_tokens = any(lim.kind == "tokens" for lim in admission.limits) and usage.total_tokens > 0
        needs_cost = admission.key is not None and admission.key.budget_usd is not None and bool(cost)
        if not (needs_tokens or needs_cost):
            return
        task = asyncio.get_running_loop().create_task(self._charge(admission, usage.total_tokens, cost))
        names = ([f"k:{admission.key.id}"] if admission.key is not None else []) + [f"m:{admission.model}"]
        for name in names:
            self._pending.setdefault(name, set()).add(task)
        task.add_done_callback(lambda t: self._forget(t, names))

    def _forget(self, task: asyncio.Task[None], names: list[str]) -> None:
        for name in names:
            group = self._pending.get(name)
            if group is not None:
                group.discard(task)
                if not group:
                    del self._pending[name]

    async def _charge(self, admission: Admission, tokens: int, cost: float | None) -> None:
        try:
            await self.limiter.charge(admission.limits, tokens)
            if admission.key is not None:
                await self.budgets.charge(admission.key, cost, time.time())
        except SharedStateUnavailable:
            pass  # counted, and logged once per outage, by the guarded state
        except Exception:
            log.exception("counting usage against limits failed")
