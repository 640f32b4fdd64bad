"""ServerState: the once-a-second sweep closes keep-alive connections idle too long, and
draining closes idle connections at once and lets busy ones finish their response."""

from __future__ import annotations

from switchboard.server.protocol import ServerState


class StubConnection:
    def __init__(self, idle_since: float | None, reading_since: float | None = None) -> None:
        self.idle_since = idle_since
        self.reading_since = reading_since
        self.cycles: list[object] = [] if idle_since is not None else [object()]
        self.keep_alive = True
        self.closed = False
        self.timed_out_at: float | None = None

    def close(self) -> None:
        self.closed = True

    def stalled_since(self, since: float) -> bool:
        return self.reading_since is not None and self.reading_since < since

    def timed_out(self) -> None:
        self.timed_out_at = self.reading_since


def make_state(*conns: StubConnection) -> ServerState:
    state = ServerState(app=None, keepalive_timeout_s=75.0)  # type: ignore[arg-type]
    state.connections.update(conns)  # type: ignore[arg-type]
    return state


def test_sweep_closes_only_connections_idle_past_the_timeout() -> None:
    stale, fresh, busy = StubConnection(10.0), StubConnection(90.0), StubConnection(None)
    make_state(stale, fresh, busy).sweep(now=100.0)
    assert (stale.closed, fresh.closed, busy.closed) == (True, False, False)


def test_sweep_refreshes_the_date_header() -> None:
    state = make_state()
    state.date_header = b"date: stale\r\n"
    state.sweep(now=0.0)
    assert state.date_header.startswith(b"date: ") and state.date_header.endswith(b" GMT\r\n")


def test_drain_closes_idle_connections_and_ends_keep_alive_for_busy_ones() -> None:
    idle, busy = StubConnection(5.0), StubConnection(None)
    state = make_state(idle, busy)
    state.drain()
    assert state.draining and idle.closed and not busy.closed
    assert busy.keep_alive is False


def test_sweep_times_out_a_request_that_trickles_in() -> None:
    slow, fresh = StubConnection(None, reading_since=10.0), StubConnection(None, reading_since=95.0)
    make_state(slow, fresh).sweep(now=100.0)  # HEAD_TIMEOUT_S = 30
    assert slow.timed_out_at == 10.0 and fresh.timed_out_at is None and not slow.closed
