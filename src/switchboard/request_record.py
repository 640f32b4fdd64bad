"""`RequestRecord`: what happened to one API request, filled in along its call path and read by the
observers (access log, metrics, usage log) once it is over.

The headend sets what it parsed (model, stream), authentication the key, the router where the call
went (`routed`, or `routed_turn` for each model call of an agent), the relay the usage, status and
time to first token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .hub import Usage
from .observability.spans import RequestTrace
from .routing.deployment import Outcome

__all__ = ["RequestRecord", "Turn"]


@dataclass(slots=True, frozen=True)
class Turn:
    """One model call an agent made for the request: who answered and after how many attempts."""

    provider: str
    model: str
    attempts: int
    fallback: bool


@dataclass(slots=True)
class RequestRecord:
    """What happened to one API request; filled in along the call path, read by observers."""

    request_id: str
    endpoint: str
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    upstream_model: str | None = None
    status: int = 200
    error_type: str | None = None
    stream: bool = False
    usage: Usage | None = None
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    first_token_s: float | None = None
    latency_s: float | None = None
    attempts: int = 0
    fallback: bool = False
    # Extra response headers decided before routing (x-ratelimit-*); the app adds them to the response.
    headers: dict[str, str] = field(default_factory=dict)
    admission: object | None = None  # what access control admitted (access.counters.Plan)
    agent: str | None = None  # the agent that answered, when the model is one
    facade: str | None = None  # the facade the request came through
    path: str | None = None  # the URL path, for requests no route took (404/405)
    turns: list[Turn] | None = None  # an agent's model calls, in order
    # With `observability.log_bodies` only: the parsed request body and a non-stream answer's bytes.
    body: object | None = None
    response_body: bytes | None = None
    trace: RequestTrace | None = None  # the server span, when tracing is configured (observability/spans.py)

    def routed(self, outcome: Outcome) -> None:
        self.provider = outcome.deployment.provider.name
        self.upstream_model = outcome.deployment.model
        self.attempts = outcome.attempts
        self.fallback = outcome.fallback

    def routed_turn(self, outcome: Outcome) -> None:
        """One model call of an agent was routed: keep it in `turns`; the totals count every turn,
        `provider`/`upstream_model` name the last one."""
        turn = Turn(outcome.deployment.provider.name, outcome.deployment.model, outcome.attempts, outcome.fallback)
        if self.turns is None:
            self.turns = []
            self.attempts = 0
        self.turns.append(turn)
        self.provider, self.upstream_model = turn.provider, turn.model
        self.attempts += turn.attempts
        self.fallback = self.fallback or turn.fallback

    @property
    def trace_id(self) -> str | None:
        return self.trace.trace_id_hex if self.trace is not None else None

    def mark_first_token(self) -> None:
        if self.first_token_s is None:
            self.first_token_s = time.perf_counter() - self.started
