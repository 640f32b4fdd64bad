"""`map_bounded`: run one coroutine per item with at most N in flight, results in item order.

For an adapter that must fan one client request out into several upstream calls (Bedrock's Titan
embeddings take one text per call). The first failure cancels the calls still running and is raised
as itself (not wrapped in an ExceptionGroup), so the caller maps it like any single call's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

__all__ = ["map_bounded"]

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(call: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int) -> list[R]:
    """`[await call(item) for item in items]`, with up to `limit` calls running at once."""
    if len(items) == 1:
        return [await call(items[0])]
    results: list[R | None] = [None] * len(items)
    pending = iter(enumerate(items))

    async def worker() -> None:
        for index, item in pending:  # one shared iterator: each item is taken by exactly one worker
            results[index] = await call(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(limit, len(items))))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return results  # type: ignore[return-value]  # every slot was filled: no worker failed
