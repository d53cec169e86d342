"""Prometheus metrics on a registry of our own (one per engine, so tests never share state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
