"""Worker threads that must not delay the event loop: the SQLite store's and the metrics renderer's.

A serving process runs its event loop on one thread and a few workers beside it (SQLite calls, the
`/metrics` render). On one core a busy worker holds the CPU (and, between its C calls, the GIL) when
a request arrives, and the loop waits: the writer's batch of usage rows put 3-5 ms stalls on the p99
at concurrency 1 (`bench/field.py`, issue 14). Two things keep a worker out of the loop's way:

- `background_thread()` (a `ThreadPoolExecutor` initializer) lowers the thread's scheduling priority
  to `nice` 10 (Linux: per thread): low enough that the kernel runs the loop thread first whenever it
  wakes up, high enough (a tenth of the CPU against a saturated loop) that the usage writer keeps up;
- `yield_to_loop()`, called by a worker between the units of a long job, gives up the GIL and the
  CPU, so a loop thread waiting for either gets them now instead of after the interpreter's switch
  interval (5 ms).
"""

from __future__ import annotations

import os
import threading

__all__ = ["background_thread", "yield_to_loop"]

LOWER_PRIORITY = 10


def background_thread() -> None:
    """Lower the calling thread's priority to LOWER_PRIORITY (a no-op where the OS cannot do it per thread)."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None or not hasattr(threading, "get_native_id"):
        return
    try:
        setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWER_PRIORITY)  # Linux: a thread's id
    except OSError:
        pass


def yield_to_loop() -> None:
    """Release the GIL and the CPU for a moment (`sched_yield` runs without the GIL)."""
    sched_yield = getattr(os, "sched_yield", None)
    if sched_yield is not None:
        sched_yield()
