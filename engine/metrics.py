"""Prometheus metrics on a registry of our own (one per engine, so tests never share state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.venues.budget import BudgetStats


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stoploss_missing = Counter(
            "vigil_stoploss_missing", "Positions found without a stop-loss", ["account"],
            registry=r)
        self.stoploss_placed = Counter(
            "vigil_stoploss_placed", "Stop-loss orders placed", ["account"], registry=r)
        self.zombies_cancelled = Counter(
            "vigil_zombies_cancelled", "Orphaned stop/reduce-only orders cancelled", ["account"],
            registry=r)
        self.positions_unprotected = Gauge(
            "vigil_positions_unprotected", "Open positions with no resting stop", ["account"],
            registry=r)
        self.time_to_protect = Histogram(
            "vigil_time_to_protect_seconds", "Seconds from a position being unprotected to its stop"
            " resting on the venue", ["account"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120), registry=r)
        self.venue_calls = Counter(
            "vigil_venue_calls", "Venue API calls", ["account", "operation"], registry=r)
        self._budgets: dict[str, Callable[[], BudgetStats]] = {}
        self._budget_collector_registered = False

    def track_budget(self, account: str, stats: Callable[[], BudgetStats]) -> None:
        """Export a venue's request budget (e.g. `venue.budget.stats`), read at each scrape."""
        self._budgets[account] = stats
        if not self._budget_collector_registered:
            self.registry.register(_BudgetCollector(self._budgets))
            self._budget_collector_registered = True


    def track_bus(self, backlog: Callable[[], int], waits: Callable[[], int]) -> None:
        """Export the bus's queued backlog and how often publishing waited for it (its
        back-pressure), read at each scrape."""
        self.registry.register(_BusCollector(backlog, waits))


class _BusCollector(Collector):
    def __init__(self, backlog: Callable[[], int], waits: Callable[[], int]) -> None:
        self._backlog, self._waits = backlog, waits

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("vigil_bus_backlog", "Events queued for the bus's queued "
                                "subscribers (the notifier) or being delivered to them",
                                value=self._backlog())
        yield CounterMetricFamily("vigil_bus_publish_waits", "Publishes that waited for a "
                                  "subscriber over its backlog's high-water mark",
                                  value=self._waits())


class _BudgetCollector(Collector):
    def __init__(self, sources: dict[str, Callable[[], BudgetStats]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("vigil_venue_weight_used",
                                 "Request weight spent in the venue's current rate window",
                                 labels=["account"])
        limit = GaugeMetricFamily("vigil_venue_weight_limit",
                                  "Request weight the venue allows per rate window",
                                  labels=["account"])
        spent = CounterMetricFamily("vigil_venue_weight_spent",
                                    "Request weight spent since start, per lane",
                                    labels=["account", "lane"])
        last = GaugeMetricFamily("vigil_venue_operation_weight",
                                 "Request weight of the last run of each venue operation "
                                 "(snapshot: one guard cycle)", labels=["account", "operation"])
        wait = GaugeMetricFamily("vigil_venue_priority_wait_max_seconds",
                                 "Longest wait of a protective request for request budget",
                                 labels=["account"])
        interval = GaugeMetricFamily("vigil_venue_min_poll_interval_seconds",
                                     "Snapshot interval at which snapshots alone would use up "
                                     "the read share of the budget", labels=["account"])
        for account, source in sorted(self._sources.items()):
            stats = source()
            used.add_metric([account], stats.used)
            limit.add_metric([account], stats.limits.limit)
            for lane, weight in stats.spent.items():
                spent.add_metric([account, lane.value], weight)
            for operation, weight in sorted(stats.last_weight.items()):
                last.add_metric([account, operation], weight)
            wait.add_metric([account], stats.priority_wait_max)
            interval.add_metric([account], stats.min_poll_interval)
        yield from (used, limit, spent, last, wait, interval)
