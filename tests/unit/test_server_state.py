"""ServerState: the once-a-second sweep closes keep-alive connections idle too long, times out
requests that trickle in and cuts clients that stop reading, and draining closes idle connections
at once and lets busy ones finish their response."""

from __future__ import annotations

from switchboard.server.protocol import HttpProtocol, ServerState


class StubTransport:
    def __init__(self, buffered: int) -> None:
        self.buffered = buffered
        self.aborted = self.closed = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True


class StubConnection:
    def __init__(self, idle_since: float | None, reading_since: float | None = None) -> None:
        self.idle_since = idle_since
        self.reading_since = reading_since
        self.write_stalled_since: float | None = None
        self.linger_until: float | None = None
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


def paused_writer(state: ServerState, since: float, buffered: int) -> StubTransport:
    """A connection of `state` whose writing paused at `since` with `buffered` bytes the client has
    not read; returns its transport."""
    conn = HttpProtocol.__new__(HttpProtocol)  # only the fields the sweep reads
    transport = StubTransport(buffered)
    conn.transport = transport  # type: ignore[assignment]
    conn.state = state
    conn.idle_since = None
    conn.reading_since = None
    conn.write_stalled_since = since
    conn.linger_until = None
    conn._write_backlog = buffered
    state.connections.add(conn)
    return transport


def test_sweep_cuts_a_client_that_read_nothing_for_the_send_timeout() -> None:
    state = ServerState(app=None, send_timeout_s=60.0)  # type: ignore[arg-type]
    stuck, recent = paused_writer(state, since=10.0, buffered=100_000), paused_writer(state, 95.0, 100_000)
    state.sweep(now=100.0)
    assert stuck.aborted and not recent.aborted


def test_sweep_spares_a_client_that_reads_slowly() -> None:
    state = ServerState(app=None, send_timeout_s=60.0)  # type: ignore[arg-type]
    slow = paused_writer(state, since=10.0, buffered=100_000)
    for now in range(11, 200, 10):  # paused all along, but the client reads a little between two sweeps
        slow.buffered -= 1000
        state.sweep(now=float(now))
    assert not slow.aborted
    state.sweep(now=400.0)  # then nothing for longer than the timeout
    assert slow.aborted


def test_sweep_ends_a_lingering_close_unless_the_client_still_reads_the_last_response() -> None:
    state = ServerState(app=None)  # type: ignore[arg-type]
    done, reading, stuck = (paused_writer(state, since=0.0, buffered=n) for n in (0, 50_000, 50_000))
    for transport in (done, reading, stuck):
        conn = next(c for c in state.connections if c.transport is transport)
        conn.write_stalled_since = None
        conn.linger_until = 5.0  # our side was closed 2 s before
    reading.buffered = 20_000  # read some of it since
    state.sweep(now=6.0)
    assert (done.closed, done.aborted) == (True, False)
    assert (reading.closed, reading.aborted) == (False, False)  # still lingering, for another while
    assert (stuck.closed, stuck.aborted) == (False, True)


def test_sweep_cuts_an_idle_connection_whose_client_left_its_answer_unread() -> None:
    state = ServerState(app=None, send_timeout_s=60.0)  # type: ignore[arg-type]
    stuck = paused_writer(state, since=10.0, buffered=100_000)
    next(iter(state.connections)).idle_since = 11.0  # the answer was written whole, then the connection idled
    state.sweep(now=100.0)  # before the keep-alive timeout (75 s): only the send timeout applies
    assert stuck.aborted
