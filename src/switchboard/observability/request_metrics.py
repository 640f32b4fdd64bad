"""Labelled counters and histograms kept as plain floats, scraped exactly like prometheus_client's own.

The request observer updates a few series per finished request. prometheus_client's `Counter` and
`Histogram` take a lock and run checks on every update (and a linear bucket search), which adds up
to microseconds per request. These families keep one small cell per label-value tuple instead,
updated on the event loop thread only. A scrape may run in another thread: it copies the cells of a
family in one step (`list(dict.items())`, atomic under the GIL) and reads plain floats, so no lock
is needed (a scrape can at most see a histogram's sum a moment before the matching bucket). `collect()`
renders the samples prometheus_client would for the same updates (names, label order, the float
arithmetic, and the `_created` series unless prometheus_client has them switched off), so the
/metrics text reads the same.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import Counter
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["CounterCell", "CounterFamily", "FamiliesCollector", "HistogramCell", "HistogramFamily",
           "created_series_enabled"]


def created_series_enabled() -> bool:
    """Whether prometheus_client's own metrics emit `_created` samples right now (it can be switched off)."""
    probe = Counter("switchboard_probe", "", registry=None)
    return any(s.name.endswith("_created") for m in probe.collect() for s in m.samples)


class CounterCell:
    """One labelled counter series: add to `value`."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class HistogramCell:
    """One labelled histogram series; `observe` as on a prometheus_client histogram."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0.0] * len(bounds)  # per bucket, not cumulative (summed at scrape time)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount == amount:  # NaN counts in no bucket, as in prometheus_client
            # The first bucket whose upper bound is >= amount (the last bound is +Inf).
            self.counts[bisect_left(self.bounds, amount)] += 1.0


class CounterFamily:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._cells: dict[tuple[str, ...], CounterCell] = {}

    def cell(self, *labels: str) -> CounterCell:
        cell = self._cells.get(labels)
        if cell is None:
            cell = self._cells[labels] = CounterCell()
        return cell

    def collect(self, created: bool) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, cell in list(self._cells.items()):
            family.add_metric(labels, cell.value, cell.created if created else None)
        return family


class HistogramFamily:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = [float(b) for b in buckets]
        if self.bounds != sorted(self.bounds) or self.bounds[-1] != float("inf"):
            raise ValueError("buckets must be sorted and end with +Inf")
        self._cells: dict[tuple[str, ...], HistogramCell] = {}

    def cell(self, *labels: str) -> HistogramCell:
        cell = self._cells.get(labels)
        if cell is None:
            cell = self._cells[labels] = HistogramCell(self.bounds)
        return cell

    def collect(self, created: bool) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        names: list[str] = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        for labels, cell in list(self._cells.items()):
            cumulative: list[tuple[str, float]] = []
            total = 0.0
            for name, count in zip(names, cell.counts, strict=True):
                total += count
                cumulative.append((name, total))
            family.add_metric(labels, cumulative, cell.sum)
            if created:
                family.samples.append(Sample(self.name + "_created", dict(zip(self.labelnames, labels, strict=True)),
                                             cell.created))
        return family


class FamiliesCollector:
    """A registry collector for some families: scraped in the order given."""

    def __init__(self, families: Sequence[CounterFamily | HistogramFamily]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        created = created_series_enabled()
        return [family.collect(created) for family in self.families]
