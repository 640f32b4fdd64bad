"""Units of the request hot path's cheap forms: limiter fast path, field type checks, access log writes."""

from __future__ import annotations

import asyncio
import itertools
import select
from typing import Any

import orjson
import pytest

from switchboard.config import parse_config
from switchboard.errors import GatewayError
from switchboard.headends.validation import _JSON_TYPES, check_fields
from switchboard.observability import access_log
from switchboard.observability.access_log import _write_lines
from switchboard.providers import build_provider
from switchboard.routing.limits import Limiter
from switchboard.routing.router import Deployment, Router


def _reference_is(value: Any, kind: str) -> bool:
    """The straightforward reading of a JSON type name, which the compiled checks must agree with."""
    if value is None:
        return kind in ("null", "any")
    if kind == "null":
        return False
    if isinstance(value, bool) and kind not in ("boolean", "any"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[kind])


VALUES: list[Any] = [None, True, False, 0, 7, -3, 1.0, 2.5, "", "s", [], [1], {}, {"a": 1}]
KINDS = ["string", "number", "integer", "boolean", "object", "array", "any", "null"]


@pytest.mark.parametrize("spec", ["|".join(c) for r in (1, 2) for c in itertools.combinations(KINDS, r)])
def test_compiled_type_checks_agree_with_the_json_type_names(spec: str) -> None:
    for value in VALUES:
        expected = any(_reference_is(value, k) for k in spec.split("|"))
        try:
            check_fields({"f": value}, {"f": spec})
            accepted = True
        except GatewayError:
            accepted = False
        assert accepted is expected, (spec, value)


def test_type_error_names_the_first_bad_field_in_spec_order() -> None:
    spec = {"a": "integer", "b": "string", "c": "boolean"}
    with pytest.raises(GatewayError) as info:
        check_fields({"c": 1, "x": object(), "a": "no"}, spec)  # body order: c first; spec order: a first
    assert info.value.param == "a" and "expected integer, got string" in info.value.message


async def test_try_acquire_takes_free_slots_and_never_jumps_the_queue() -> None:
    limiter = Limiter("provider", "p", max_in_flight=1, queue=4)
    first = limiter.try_acquire()
    assert first is not None and limiter.in_flight == 1
    assert limiter.try_acquire() is None  # full: the caller must queue
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.waiting == 1
    first.release()  # the slot goes to the queued waiter, not to a later try_acquire
    assert limiter.try_acquire() is None
    second = await waiter
    second.release()
    assert limiter.in_flight == 0 and limiter.waiting == 0
    third = limiter.try_acquire()
    assert third is not None
    third.release()


def test_access_lines_are_written_whole_and_in_pipe_atomic_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [orjson.dumps({"request_id": f"req_{i}", "pad": "x" * (i * 37 % 900)}) for i in range(200)]
    writes: list[bytes] = []

    def fake_write(fd: int, data: bytes | memoryview) -> int:
        data = bytes(data)
        taken = min(len(data), 1000) if len(writes) == 3 else len(data)  # one short write, as a file may do
        writes.append(data[:taken])
        return taken

    monkeypatch.setattr(access_log.os, "write", fake_write)
    _write_lines(2, lines)
    assert b"".join(writes).split(b"\n") == [*lines, b""]
    assert len(writes) < len(lines) / 3  # batched
    full = [w for i, w in enumerate(writes) if i not in (3, 4)]  # around the short write
    assert all(len(w) <= select.PIPE_BUF and w.endswith(b"\n") for w in full)


SELF_BOUNDED_CONFIG = """
server: {request_timeout_s: 600}
providers:
  quick: {type: openai, base_url: "http://127.0.0.1:1/v1", timeout_s: 5, connect_timeout_s: 1, retries: {max: 0}}
models:
  near: {route: quick/x, timeout_s: 0.05}
  far: {route: quick/x}
"""


def _router() -> Router:
    cfg = parse_config(SELF_BOUNDED_CONFIG, environ={})
    return Router(cfg, {name: build_provider(p) for name, p in cfg.providers.items()})


async def test_self_bounded_attempt_still_gets_the_deadline_when_it_is_nearer_than_the_provider_bound() -> None:
    router = _router()

    async def hang(d: Deployment) -> str:
        await asyncio.sleep(10)
        return "late"

    with pytest.raises(GatewayError) as err:
        await router.execute("near", hang, self_bounded=True)
    assert err.value.code == "deadline_exceeded"


async def test_self_bounded_attempt_runs_untimed_when_the_deadline_is_far() -> None:
    router = _router()
    timers: list[float] = []

    async def attempt(d: Deployment) -> str:
        loop = asyncio.get_running_loop()
        timers.extend(h.when() for h in getattr(loop, "_scheduled", []) if not h.cancelled())
        return "ok"

    result, outcome = await router.execute("far", attempt, self_bounded=True)
    assert result == "ok" and outcome.attempts == 1 and timers == []
    await router.execute("far", attempt)  # without the hint the deadline timer is there
    assert len(timers) == 1
