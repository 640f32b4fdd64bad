"""A scrape of /metrics renders off the event loop: requests keep being served while it runs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from switchboard.config import parse_config
from switchboard.gateway import Gateway
from switchboard.observability.metrics import Metrics

CONFIG = """
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9", keys: [sk-up]}
models:
  chat: {route: up/m1}
"""


class _SlowCollector:
    """Blocks its scrape until the event loop has run something else (or gives up after a while)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.loop_ran = threading.Event()
        self.saw_loop_run: list[bool] = []
        self.threads: list[int] = []

    def describe(self) -> list[Metric]:  # registering reads this, not `collect`
        return [GaugeMetricFamily("t_slow", "A slow collector.")]

    def collect(self) -> Iterator[Metric]:
        self.threads.append(threading.get_ident())
        self.started.set()
        self.saw_loop_run.append(self.loop_ran.wait(timeout=5))
        yield GaugeMetricFamily("t_slow", "A slow collector.", value=1)


async def test_scrape_renders_in_a_worker_thread_while_the_loop_runs(tmp_path: Path) -> None:
    metrics = Metrics(Gateway(parse_config(CONFIG, base_dir=tmp_path)))
    slow = _SlowCollector()
    metrics.registry.register(slow)  # type: ignore[arg-type]

    async def meanwhile_on_the_loop() -> None:
        for _ in range(500):  # bounded: 5 s
            if slow.started.is_set():
                break
            await asyncio.sleep(0.01)
        slow.loop_ran.set()

    try:
        scrapes = [asyncio.ensure_future(metrics.handle(None)) for _ in range(3)]  # type: ignore[arg-type]
        *responses, _ = await asyncio.gather(*scrapes, meanwhile_on_the_loop())
        assert slow.saw_loop_run == [True]  # the loop ran while the scrape was under way; once for three scrapes
        assert slow.threads != [threading.get_ident()]
        for response in responses:
            assert b"t_slow 1.0" in response.body and b"switchboard_in_flight" in response.body
    finally:
        await metrics.aclose()
