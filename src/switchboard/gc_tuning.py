"""Garbage-collector settings for a serving process (`switchboard serve` and its workers).

A request allocates a few hundred short-lived containers. With CPython's default gen-0 threshold
(700), under a few hundred concurrent requests the collector runs many times a second and promotes
objects of requests still in flight to older generations, whose collections then walk them again:
about 7% of the CPU of a loaded worker. Raising the threshold lets almost all of them die young,
and freezing what exists once the app is built (modules, config, routes) keeps the rare full
collections from walking it. Called only where a server process starts, never on import, so an
embedding application keeps its own settings.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc_for_serving"]

GEN0_THRESHOLD = 20_000  # net container allocations between young collections (CPython default: 700)


def tune_gc_for_serving() -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
