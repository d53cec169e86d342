"""Chaos profiles: faults injected at the venue port, for ANY venue (issue 13).

`ChaosVenue` wraps a `Venue` and, from a seeded RNG, drops the stream, times REST calls out,
delays orders and rejects them, each as the real adapters report such faults (engine/venues
maps a ccxt RequestTimeout to OutcomeUnknown, a dropped websocket to StreamStatus down/up). It
lets operators rehearse on paper or a testnet what a bad day at the exchange looks like; the
settings refuse it for a live non-testnet account.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from engine.clock import Clock
from engine.domain.ledger import LedgerEntry
from engine.domain.reports import (
    MarketInfo,
    MarketOrderRequest,
    OrderReport,
    StopRequest,
    StreamStatus,
    VenueCapabilities,
    VenueEvent,
    VenueSnapshot,
)
from engine.errors import OutcomeUnknown, Rejected, RejectReason
from engine.ports import Venue

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChaosProfile:
    name: str
    stream_drop_probability: float = 0.0  # per stream event: the stream goes down (event lost)
    stream_outage_seconds: float = 0.0  # how long it stays down; events meanwhile are lost
    rest_timeout_probability: float = 0.0  # per REST call; a command may have executed
    order_delay_seconds: float = 0.0  # each command waits up to this long (uniform) first
    rejection_probability: float = 0.0  # per command, refused before reaching the venue

    def __post_init__(self) -> None:
        for field_name in ("stream_drop_probability", "rest_timeout_probability",
                           "rejection_probability"):
            value = getattr(self, field_name)
            if not 0 <= value <= 1:
                raise ValueError(f"{field_name} must be within 0..1, got {value}")
        for field_name in ("stream_outage_seconds", "order_delay_seconds"):
            if getattr(self, field_name) < 0:
                raise ValueError(f"{field_name} must not be negative")

    @property
    def active(self) -> bool:
        return any((self.stream_drop_probability, self.rest_timeout_probability,
                    self.order_delay_seconds, self.rejection_probability))


OFF = ChaosProfile("off")
# A normal bad day: now and then a timeout, a refused order, a short websocket reconnect.
MILD = ChaosProfile("mild", stream_drop_probability=0.01, stream_outage_seconds=1.0,
                    rest_timeout_probability=0.02, order_delay_seconds=0.2,
                    rejection_probability=0.01)
# An exchange in trouble: one call in twenty times out, orders wait up to half a second, one
# stream event in twenty drops the stream for 3 s (what it carried meanwhile is lost).
HARSH = ChaosProfile("harsh", stream_drop_probability=0.05, stream_outage_seconds=3.0,
                     rest_timeout_probability=0.05, order_delay_seconds=0.5,
                     rejection_probability=0.03)
PROFILES: dict[str, ChaosProfile] = {p.name: p for p in (OFF, MILD, HARSH)}


class ChaosVenue:
    """A Venue that forwards to `inner`, injecting the faults of `profile`. Setting `profile`
    to OFF heals it at once (the tests' settle phase)."""

    def __init__(self, inner: Venue, profile: ChaosProfile, clock: Clock, *,
                 seed: int = 0) -> None:
        self.inner = inner
        self.profile = profile
        self.clock = clock
        self.name = inner.name
        self._rng = random.Random(seed)
        # (down, up) on the clock's monotonic, for the checks of what a drop lost; bounded: a
        # paper run under a profile lasts for days
        self.outages: deque[tuple[float, float]] = deque(maxlen=256)
        self.injected: dict[str, int] = {}  # fault kind -> count, for tests and the bench

    def __getattr__(self, attr: str) -> object:
        # Optional extras of the wrapped venue (request_weight, budget, the sim's exchange)
        # stay visible, so `isinstance(venue, WeighsRequests)` answers as for the inner one.
        return getattr(self.inner, attr)

    @property
    def faults_injected(self) -> int:
        return sum(self.injected.values())

    @property
    def capabilities(self) -> VenueCapabilities:
        return self.inner.capabilities

    async def start(self) -> None:
        await self.inner.start()  # the start-up self-check stays clean: chaos is for running

    async def close(self) -> None:
        await self.inner.close()

    def market(self, symbol: str) -> MarketInfo:
        return self.inner.market(symbol)

    def resolve_symbol(self, text: str) -> str:
        return self.inner.resolve_symbol(text)

    # --- reads ---------------------------------------------------------------------------------
    async def snapshot(self) -> VenueSnapshot:
        return await self._read("snapshot", self.inner.snapshot)

    async def fetch_open_orders(self) -> list[OrderReport]:
        return await self._read("fetch_open_orders", self.inner.fetch_open_orders)

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        return await self._read("fetch_ledger", lambda: self.inner.fetch_ledger(since))

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        return await self._read("find_order", lambda: self.inner.find_order(symbol, client_id))

    # --- commands ------------------------------------------------------------------------------
    async def place_stop(self, request: StopRequest) -> OrderReport:
        return await self._command("place_stop", lambda: self.inner.place_stop(request))

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal,
                         qty: Decimal) -> OrderReport:
        return await self._command(
            "amend_stop", lambda: self.inner.amend_stop(order, trigger_price, qty))

    async def cancel_order(self, order: OrderReport) -> None:
        await self._command("cancel_order", lambda: self.inner.cancel_order(order))

    async def market_order(self, request: MarketOrderRequest) -> OrderReport:
        return await self._command("market_order", lambda: self.inner.market_order(request))

    # --- stream --------------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[VenueEvent]:
        """The inner stream, pumped into a queue so that a drop can lose what arrives while it
        is down, as a real reconnect does; the guard resyncs with a snapshot when it is up."""
        queue: asyncio.Queue[VenueEvent | BaseException | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for event in self.inner.events():
                    queue.put_nowait(event)
            except Exception as exc:  # handed to the consumer: the guard reports it
                queue.put_nowait(exc)
                return
            queue.put_nowait(None)

        pumping = asyncio.ensure_future(pump())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                p = self.profile
                if not (p.stream_drop_probability
                        and self._rng.random() < p.stream_drop_probability):
                    yield item
                    continue
                self._count("stream_drop")
                self.outages.append((self.clock.monotonic(), float("inf")))  # for checks
                yield StreamStatus(False, "chaos: stream dropped")
                await self.clock.sleep(p.stream_outage_seconds)
                self.outages[-1] = (self.outages[-1][0], self.clock.monotonic())
                while not queue.empty():  # arrived while down: lost
                    lost = queue.get_nowait()
                    if lost is None or isinstance(lost, BaseException):
                        queue.put_nowait(lost)
                        break
                yield StreamStatus(True, "chaos: stream reconnected")
        finally:
            pumping.cancel()

    # --- plumbing ------------------------------------------------------------------------------
    def _count(self, kind: str) -> None:
        self.injected[kind] = self.injected.get(kind, 0) + 1

    def _times_out(self) -> bool:
        p = self.profile.rest_timeout_probability
        return bool(p) and self._rng.random() < p

    async def _read(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        if self._times_out():
            self._count("rest_timeout")
            raise OutcomeUnknown(f"chaos: request timed out in {method}")
        return await call()

    async def _command(self, method: str, call: Callable[[], Awaitable[T]]) -> T:
        p = self.profile
        if p.order_delay_seconds:
            await self.clock.sleep(self._rng.uniform(0, p.order_delay_seconds))
        if p.rejection_probability and self._rng.random() < p.rejection_probability:
            self._count("rejection")
            raise Rejected(RejectReason.OTHER, f"chaos: {method} rejected")
        if not self._times_out():
            return await call()
        self._count("rest_timeout")
        # Half the timeouts reach the venue: the caller must look the order up by client id.
        if self._rng.random() < 0.5:
            await call()
            raise OutcomeUnknown(f"chaos: request timed out in {method} (executed)")
        raise OutcomeUnknown(f"chaos: request timed out in {method} (not sent)")


def build_profile(name: str, overrides: Mapping[str, float] | None = None) -> ChaosProfile:
    """A named profile (`custom`: no faults) with some of its values replaced."""
    base = ChaosProfile("custom") if name == "custom" else PROFILES[name]
    return replace(base, **(overrides or {}))


def with_chaos(venue: Venue, profile: ChaosProfile, clock: Clock, *, seed: int) -> Venue:
    """The venue as is when the profile injects nothing, else wrapped."""
    if not profile.active:
        return venue
    return ChaosVenue(venue, profile, clock, seed=seed)
