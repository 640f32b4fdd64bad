"""Where the benchmark's processes run: the gateway on one CPU, the load generator and the upstream
on the others, so that wrk and nginx do not take CPU time from the process being measured (and
the other way round) in ways that change from run to run.

`place(gateway_cpus, load_cpus)` is called once by run.py (`--no-pin` leaves everything to the
scheduler); `for_gateway()` / `for_load()` give the `preexec_fn` for the processes started later.
A single-worker gateway gets CPU 0, wrk and nginx the rest; with several workers nothing is pinned.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["describe", "for_gateway", "for_load", "pin_tree", "place", "unpinned"]

_gateway: set[int] | None = None
_load: set[int] | None = None


def place(gateway_cpus: set[int] | None, load_cpus: set[int] | None) -> None:
    global _gateway, _load
    _gateway, _load = gateway_cpus, load_cpus


def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def for_gateway() -> Callable[[], None] | None:
    return _pin(_gateway)


def for_load() -> Callable[[], None] | None:
    return _pin(_load)


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Move a running process and its children (nginx's workers) to `cpus`."""
    os.sched_setaffinity(pid, cpus)
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return
    for child in children:
        pin_tree(int(child), cpus)


class unpinned:
    """`with unpinned(upstream_pid):` the direct measurement: wrk and nginx alone on the machine get
    every CPU, so the upstream's ceiling is not lowered by the placement meant for the gateways."""

    def __init__(self, upstream_pid: int) -> None:
        self.pid = upstream_pid
        self.saved: tuple[set[int] | None, set[int] | None] = (None, None)

    def __enter__(self) -> None:
        self.saved = (_gateway, _load)
        if _load is not None:
            pin_tree(self.pid, os.sched_getaffinity(0))
        place(None, None)

    def __exit__(self, *exc: object) -> None:
        place(*self.saved)
        if _load is not None:
            pin_tree(self.pid, _load)


def describe() -> str:
    if _gateway is None:
        return "not pinned"
    return (f"gateway on CPU {','.join(map(str, sorted(_gateway)))}, "
            f"wrk + nginx on CPU {','.join(map(str, sorted(_load or ())))}")
