"""Tests that need PostgreSQL or Redis: skipped with the reason when one is unreachable, failed instead
when SWITCHBOARD_REQUIRE_SERVICES is set (as `.ci/run` does)."""

from __future__ import annotations

import socket

import pytest

from tests.access import backends
from tests.access.backends import REQUIRE_SERVICES, pg_schema, redis_prefix, service_decision

Skipped = pytest.skip.Exception
Failed = pytest.fail.Exception


def test_a_reachable_service_runs() -> None:
    assert service_decision("Redis", None, {}) == ("run", "")
    assert service_decision("Redis", None, {REQUIRE_SERVICES: "1"}) == ("run", "")


def test_an_unreachable_service_skips_with_the_reason() -> None:
    action, reason = service_decision("PostgreSQL", "ConnectionRefusedError: [Errno 111]", {})
    assert action == "skip"
    assert reason.startswith("PostgreSQL is not reachable (ConnectionRefusedError: [Errno 111])")
    assert REQUIRE_SERVICES in reason
    assert service_decision("Redis", "down", {REQUIRE_SERVICES: "0"})[0] == "skip"
    assert service_decision("Redis", "down", {REQUIRE_SERVICES: ""})[0] == "skip"


def test_an_unreachable_required_service_fails() -> None:
    action, reason = service_decision("Redis", "TimeoutError: timed out", {REQUIRE_SERVICES: "1"})
    assert action == "fail"
    assert reason == f"Redis is required ({REQUIRE_SERVICES} is set) but not reachable: TimeoutError: timed out"


def test_the_fixtures_skip_or_fail_on_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_postgres_problem", lambda: "OSError: no route")
    monkeypatch.setattr(backends, "_redis_problem", lambda: "OSError: refused")
    monkeypatch.delenv(REQUIRE_SERVICES, raising=False)
    with pytest.raises(Skipped, match="PostgreSQL is not reachable"), pg_schema():
        pass
    with pytest.raises(Skipped, match="Redis is not reachable"), redis_prefix():
        pass
    monkeypatch.setenv(REQUIRE_SERVICES, "1")
    with pytest.raises(Failed, match="PostgreSQL is required"), pg_schema():
        pass
    with pytest.raises(Failed, match="Redis is required"), redis_prefix():
        pass


def test_the_probes_report_a_closed_port() -> None:
    with socket.socket() as s:  # bound, never listening: connecting to it is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        redis = backends._redis_problem("127.0.0.1", port)
        postgres = backends._postgres_problem(f"postgresql://postgres@127.0.0.1:{port}/test")
    assert redis is not None and redis.startswith(f"redis://127.0.0.1:{port}: ConnectionRefusedError")
    assert postgres is not None and postgres.startswith(f"postgresql://postgres@127.0.0.1:{port}/test: ")


def test_the_probes_see_the_services_of_this_machine() -> None:
    # PostgreSQL and Redis are up wherever the suite runs in full (CI sets REQUIRE_SERVICES); elsewhere
    # this says which is missing, as the tests that need them do.
    backends.require_postgres()
    backends.require_redis()
