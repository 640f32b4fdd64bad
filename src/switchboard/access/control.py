"""Access control around each API request: virtual keys, rate limits, budgets and the usage log.

Every Gateway has one (built from the config unless given): the authenticator resolves unknown
bearer tokens through the key store (`resolve`), `Gateway.admit` calls `admit` once the model is
known (only when the key or the model has a limit: `needs_admission`), and the gateway observer
`observe` counts each finished request (tokens for tpm, cost for budgets, one usage row). The
store opens at gateway start and closes with it.

The counters live in this process (`local_counters`, exact) or, with a shared state (Redis), in
leases of it (`leases`: a round trip per lease, not per request). Either way an admission is one
synchronous pass over the request's counters (`counters`), and the observer charges the answer's
tokens and cost to them at once, so a limit hit by one response gates the very next request here
(other instances see it when it is settled: at once when idle, within 50 ms under load).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..config import Config
from ..errors import GatewayError
from ..hub import Usage, milliseconds
from ..request_record import RequestRecord
from ..shared_state import MemoryState, SharedState, SharedStateUnavailable, build_shared_state
from ..store import Store, UsageValues
from ..store import build_store as _build_store
from ..store.base import INT64_MAX
from ..store.response_purger import ResponsePurger
from ..store.usage_writer import UsageWriter
from .auth import Principal
from .budgets import price_book
from .counters import CounterEngine, Plan
from .keys import KeyService
from .leases import LeasedCounters
from .local_counters import LocalCounters
from .rate_limits import limits_unavailable

__all__ = ["AccessControl"]

log = logging.getLogger("switchboard.access")


def _usage_values(record: RequestRecord, usage: Usage | None, cost: float | None) -> UsageValues:
    """The request's usage log row, as the tuple the store writes (the order of `USAGE_COLUMNS`)."""
    latency, ttft = record.latency_s, record.first_token_s
    if usage is None:
        return (record.started_wall, record.request_id, record.key_id, record.endpoint, record.model,
                record.provider, record.upstream_model, record.status, 1 if record.stream else 0, 0, 0, cost,
                milliseconds(latency), milliseconds(ttft), 0, 0, 0, 0, record.trace_id)
    counts = [usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens,
              usage.reasoning_tokens]
    if max(counts) > INT64_MAX:  # an upstream's nonsense must not fail a whole batch
        counts = [min(c, INT64_MAX) for c in counts]
    prompt, completion, cached, cache_write, reasoning = counts
    return (record.started_wall, record.request_id, record.key_id, record.endpoint, record.model, record.provider,
            record.upstream_model, record.status, 1 if record.stream else 0, prompt, completion, cost,
            milliseconds(latency), milliseconds(ttft), cached, cache_write, reasoning, 1 if usage.estimated else 0,
            record.trace_id)


class AccessControl:
    def __init__(self, config: Config, store: Store | None = None, state: SharedState | None = None) -> None:
        self.store = store or _build_store(config.store_url, config.base_dir)
        self.state = state or build_shared_state(config.shared_state_url, config.shared_state_prefix,
                                                 config.shared_state_timeout_s, config.shared_state_on_failure)
        self.fail_closed = config.shared_state_on_failure == "closed"
        self.unchecked = {"admitted": 0, "refused": 0}  # requests whose limits the shared state could not check
        self.keys = KeyService(self.store)
        models = {name: (m.rpm, m.tpm) for name, m in config.models.items() if m.rpm or m.tpm}
        # In-process state: exact counters here. A shared one (Redis): leases of it.
        self.counters: CounterEngine = (LocalCounters(models, self.store) if isinstance(self.state, MemoryState)
                                        else LeasedCounters(models, self.state, self.store))
        self.usage = UsageWriter(self.store)
        self.purger = ResponsePurger(self.store)  # stored Responses API turns past `responses.ttl_days`
        self.prices = price_book(config.prices)  # the config's `prices:` over the bundled table

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
        if isinstance(self.counters, LeasedCounters):
            exchanges = CounterMetricFamily("switchboard_limits_exchanges", "Calls to the shared state for rate "
                                            "limits and budgets: to renew leases for admissions (lease) or only to "
                                            "settle usage (settle).", labels=["purpose"])
            exchanges.add_metric(["lease"], self.counters.renewals)
            exchanges.add_metric(["settle"], self.counters.settlements)
            yield exchanges
        state_metrics = getattr(self.state, "collect", None)  # a guarded remote state: its breaker
        if state_metrics is not None:
            yield from state_metrics()

    async def start(self) -> None:
        await self.store.open()
        await self.state.start()
        self.counters.start()
        self.usage.start()
        self.purger.start()

    async def aclose(self) -> None:
        try:
            await self.purger.aclose()
            await self.counters.aclose()  # settles what is owed, returns the money reserved
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
        """Whether `admit` has anything to check (a key with a limit or budget, or a limited model)."""
        key = principal.virtual
        return (key is not None and (key.rpm is not None or key.tpm is not None or key.budget_usd is not None)
                ) or model in self.counters.models

    async def admit(self, principal: Principal, model: str, record: RequestRecord) -> None:
        plan = self.counters.plan(principal.virtual, model)
        if plan is None:
            return
        try:
            headers = self.counters.admit_now(plan)  # no await while the counters have room
            if headers is None:
                headers = await self.counters.admit(plan)
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
        else:
            if headers:
                record.headers.update(headers)
        record.admission = plan  # its answer's usage is charged even when it was admitted unchecked

    def observe(self, record: RequestRecord) -> None:
        if record.model is None:
            return  # not a model call (model listing); nothing to count
        usage = record.usage
        cost = self.prices.cost(usage, record.model, record.provider, record.upstream_model)
        self.usage.add(_usage_values(record, usage, cost))
        plan = record.admission
        if usage is not None and isinstance(plan, Plan):
            self.counters.charge(plan, usage.total_tokens, cost if cost is not None else 0.0)  # None: unpriced
