"""A frozen Redis (it accepts and never answers) costs a short deadline once, not a wait per request.

Through the real server, with its Redis behind a proxy that the test freezes (the real Redis never
is): `shared_state.on_failure: open` admits requests unchecked, `closed` refuses those that need a
limit or budget with a 503; the breaker opens, is exported and logged once, and closes again when
Redis answers. The breaker itself is checked on a scripted state with a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import httpx
import pytest

from switchboard.shared_state import Grant, GuardedState, LeaseRequest, SharedStateUnavailable
from switchboard.shared_state.guarded import CLOSED, HALF_OPEN, OPEN
from tests.access.backends import redis_prefix
from tests.access.helpers import eventually
from tests.fakes.freezable_proxy import FreezableProxy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.metrics_util import metric, scrape
from tests.server import SwitchboardProcess

MASTER = "sk-test-master-frozen"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
UNREACHABLE = "shared state unreachable"
REACHABLE = "shared state reachable again"


def _config(fake: FakeOpenAI, redis_url: str, prefix: str, on_failure: str) -> str:
    return f"""
auth: {{master_key: {MASTER}}}
providers:
  up: {{type: openai, base_url: "{fake.base_url}", keys: [sk-up-frozen], retries: {{max: 0}}}}
models:
  limited: {{route: up/limited, rpm: 100000}}
  free: {{route: up/free}}
store: {{url: "sqlite:///usage.db"}}
shared_state: {{url: "{redis_url}", key_prefix: "{prefix}", timeout_ms: 200, on_failure: {on_failure}}}
"""


@pytest.fixture
def proxy() -> Iterator[FreezableProxy]:
    p = FreezableProxy("127.0.0.1", 6379).start()
    yield p
    p.stop()


def _server(fake: FakeOpenAI, proxy: FreezableProxy, on_failure: str) -> Iterator[SwitchboardProcess]:
    with redis_prefix() as prefix:
        server = SwitchboardProcess(_config(fake, proxy.url, prefix, on_failure)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def open_server(fake_openai: FakeOpenAI, proxy: FreezableProxy) -> Iterator[SwitchboardProcess]:
    yield from _server(fake_openai, proxy, "open")


@pytest.fixture
def closed_server(fake_openai: FakeOpenAI, proxy: FreezableProxy) -> Iterator[SwitchboardProcess]:
    yield from _server(fake_openai, proxy, "closed")


def _chat(server: SwitchboardProcess, model: str) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", json={**CHAT, "model": model}, timeout=30,
                      headers={"authorization": f"Bearer {MASTER}"})


def _limited_requests(server: SwitchboardProcess, n: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {MASTER}"}) as client:
            return await asyncio.gather(*(client.post(server.url + "/v1/chat/completions",
                                                      json={**CHAT, "model": "limited"}) for _ in range(n)))

    return asyncio.run(run())


def test_frozen_redis_fails_open_at_once_and_recovers(open_server: SwitchboardProcess,
                                                      proxy: FreezableProxy) -> None:
    assert "x-ratelimit-limit-requests" in _chat(open_server, "limited").headers
    proxy.freeze()
    answers = [_chat(open_server, "limited"), *_limited_requests(open_server, 8), _chat(open_server, "limited")]
    assert [r.status_code for r in answers] == [200] * 10
    assert all("x-ratelimit-limit-requests" not in r.headers for r in answers)  # admitted unchecked
    text = scrape(open_server)
    assert metric(text, "switchboard_shared_state_breaker_state") == OPEN
    assert metric(text, "switchboard_shared_state_failures_total") >= 1
    assert metric(text, "switchboard_shared_state_skipped_total") >= 1  # later requests did not wait for Redis
    assert metric(text, "switchboard_limits_unchecked_total", outcome="admitted") == 10
    assert metric(text, "switchboard_shared_state_on_failure", mode="open") == 1
    assert open_server.logs().count(UNREACHABLE) == 1  # once per outage, not per request
    assert "not enforced" in open_server.logs()

    proxy.thaw()  # the breaker probes again within its pause (1 s after the first failure, then 2 s, ...)
    assert eventually(lambda: "x-ratelimit-limit-requests" in _chat(open_server, "limited").headers, timeout=20)
    assert metric(scrape(open_server), "switchboard_shared_state_breaker_state") == CLOSED
    assert open_server.logs().count(REACHABLE) == 1


def test_frozen_redis_fails_closed_with_a_503_when_configured(closed_server: SwitchboardProcess,
                                                              proxy: FreezableProxy) -> None:
    assert _chat(closed_server, "limited").status_code == 200
    proxy.freeze()
    for _ in range(3):
        r = _chat(closed_server, "limited")
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["code"] == "shared_state_unavailable" and error["type"] == "service_unavailable_error"
        assert "shared state is unreachable" in error["message"]
        assert int(r.headers["retry-after"]) >= 1
    assert _chat(closed_server, "free").status_code == 200  # needs no limit: not refused
    text = scrape(closed_server)
    assert metric(text, "switchboard_limits_unchecked_total", outcome="refused") == 3
    assert metric(text, "switchboard_shared_state_on_failure", mode="closed") == 1
    assert closed_server.logs().count(UNREACHABLE) == 1 and "get 503" in closed_server.logs()

    proxy.thaw()
    assert eventually(lambda: _chat(closed_server, "limited").status_code == 200, timeout=20)
    assert metric(scrape(closed_server), "switchboard_shared_state_breaker_state") == CLOSED


# -- the breaker on a scripted state


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Scripted:
    """A shared state whose `lease` fails, times out, waits or answers as the test says; counts the calls."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        self.release = asyncio.Event()

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def ping(self) -> None: ...

    async def lease(self, requests: Sequence[LeaseRequest]) -> list[Grant]:
        self.calls += 1
        if self.mode == "fail":
            raise ConnectionError("refused")
        if self.mode == "timeout":  # what the backend raises when its deadline passes
            raise TimeoutError("no answer")
        if self.mode == "wait":
            await self.release.wait()
        return [GRANT]

    async def mark(self, key: str, ttl_s: float) -> None: ...
    async def marked(self, key: str) -> float: return 0.0


BUCKETS = [LeaseRequest("k", budget=False, limit=10, rate=1, want=1)]
GRANT = Grant(1.0, 9.0)


async def _unavailable(state: GuardedState) -> SharedStateUnavailable:
    with pytest.raises(SharedStateUnavailable) as err:
        await state.lease(BUCKETS)
    return err.value


async def test_breaker_opens_skips_probes_with_growing_pauses_and_closes() -> None:
    inner, clock = _Scripted(), _Clock()
    state = GuardedState(inner, timeout_s=0.05, clock=clock)  # type: ignore[arg-type]
    assert await state.lease(BUCKETS) == [GRANT]

    inner.mode = "timeout"
    await _unavailable(state)  # the deadline, once
    assert (state.state, state.failures, inner.calls) == (OPEN, 1, 2)
    skipped = await _unavailable(state)  # at once, without calling Redis
    assert inner.calls == 2 and state.skipped == 1 and skipped.retry_after_s == pytest.approx(1.0)

    inner.mode = "fail"
    clock.now += 1.0  # the pause is over: one probe, which fails; the next pause is twice as long
    await _unavailable(state)
    assert (state.state, state.failures, inner.calls) == (OPEN, 2, 3)
    clock.now += 1.5
    assert (await _unavailable(state)).retry_after_s == pytest.approx(0.5)
    assert inner.calls == 3

    inner.mode = "wait"
    clock.now += 0.5
    probe = asyncio.ensure_future(state.lease(BUCKETS))
    await asyncio.sleep(0)
    assert state.state == HALF_OPEN
    await _unavailable(state)  # while the probe is out, the others do not pile onto Redis
    inner.release.set()
    assert await probe == [GRANT]
    assert state.state == CLOSED and inner.calls == 4
    assert await state.lease(BUCKETS) == [GRANT]
    assert state.calls == inner.calls == 5  # the round trips made (the skipped calls made none)


async def test_a_probe_whose_caller_leaves_lets_the_next_call_probe() -> None:
    inner, clock = _Scripted(), _Clock()
    state = GuardedState(inner, timeout_s=5, clock=clock)  # type: ignore[arg-type]
    inner.mode = "fail"
    await _unavailable(state)
    clock.now += 1.0
    inner.mode = "wait"
    probe = asyncio.ensure_future(state.lease(BUCKETS))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert state.state == OPEN
    inner.release.set()
    assert await state.lease(BUCKETS) == [GRANT]
    assert state.state == CLOSED


def test_shared_state_failure_settings_are_read_and_checked() -> None:
    from switchboard.config import ConfigError, parse_config

    base = 'providers: {up: {type: openai, base_url: "http://127.0.0.1:9"}}\n'
    default = parse_config(base + 'shared_state: {url: "redis://127.0.0.1:1/0"}\n')
    assert (default.shared_state_timeout_s, default.shared_state_on_failure) == (0.25, "open")
    custom = parse_config(base + "shared_state: {timeout_ms: 80, on_failure: closed}\n")
    assert (custom.shared_state_timeout_s, custom.shared_state_on_failure) == (0.08, "closed")
    for bad, message in (("on_failure: shut", "must be `open` or `closed`"), ("timeout_ms: 0", "must be > 0"),
                         ("timeout_ms: fast", "must be float")):
        with pytest.raises(ConfigError, match=message):
            parse_config(base + f"shared_state: {{{bad}}}\n")
