"""The account as the venue last told us, merged from REST snapshots and the stream.

A snapshot is taken over some latency; anything the stream or our own commands changed after it
started is newer than the snapshot and must survive the merge, or we would "forget" a stop we
just placed and place a second one.

REST may also lag the stream (a position the stream already reported is not in the snapshot
yet). A snapshot's silence about a position the stream saw open within `absence_grace` seconds is
not taken as a close: the stream says so when it closes, and a later snapshot confirms it.
That holds only while the stream is unbroken: after a gap (a drop, a reconnect) the close may be
among the events lost, so a snapshot begun after the gap is the truth for every position the
stream reported before it (issue 13: streaming-200ms-clean-chaos-harsh seeds 13, 116).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Generic, TypeVar

from engine.clock import Clock
from engine.domain.reports import OrderReport, PositionReport, VenueSnapshot
from engine.errors import OutcomeUnknown
from engine.retry import retry_transient

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T | None  # None: a tombstone (closed position / order gone)
    version: int
    streamed_at: datetime | None = None  # when the stream last reported it open


@dataclass(slots=True)
class AccountView:
    _positions: dict[str, _Entry[PositionReport]] = field(default_factory=dict)
    _orders: dict[str, _Entry[OrderReport]] = field(default_factory=dict)
    # The resting orders of `_orders` by symbol, in the same order: `orders(symbol)` runs per
    # position per pass and must not scan the whole book.
    _by_symbol: dict[str, dict[str, OrderReport]] = field(default_factory=dict)
    version: int = 0
    snapshots: int = 0
    absence_grace: float = 0.0  # seconds a streamed position outlives snapshots not showing it
    gap_version: int = 0  # the version at the stream's last gap: older stream reports are unvouched

    def mark(self) -> int:
        """Call before starting a snapshot; pass the result to `apply_snapshot`. Each mark is
        its own version, so of two snapshots the one begun later wins, whichever ends first."""
        self.version += 1
        return self.version

    def stream_gap(self) -> None:
        """The stream broke (dropped, ended, failed): what it reported before may have been
        undone by events lost meanwhile, so no snapshot begun from now on keeps a position on
        the stream's word alone."""
        self.gap_version = self.mark()
        for entry in self._positions.values():
            entry.streamed_at = None  # no grace from here on, nor handed on to a snapshot's entry

    def apply_snapshot(self, snapshot: VenueSnapshot, started_at: int,
                       now: datetime | None = None) -> None:
        self.snapshots += 1
        positions = {p.symbol: p for p in snapshot.positions}
        orders = {o.order_id: o for o in snapshot.orders if o.is_resting}
        merged = self._merge(self._positions, positions, started_at)
        for symbol, entry in self._positions.items():
            if symbol in merged and merged[symbol].streamed_at is None:
                merged[symbol].streamed_at = entry.streamed_at
        if now is not None and self.absence_grace > 0:
            for symbol, entry in self._positions.items():
                if (symbol not in merged and entry.value is not None
                        and entry.streamed_at is not None
                        and (now - entry.streamed_at).total_seconds() < self.absence_grace):
                    merged[symbol] = entry  # the stream saw it open moments ago: REST lags
        for symbol in self._positions.keys() - merged.keys():
            # Flat as of this snapshot: a tombstone, so an older snapshot that ends later
            # cannot bring the position back (one per symbol ever held: bounded).
            merged[symbol] = _Entry(None, started_at)
        self._positions = merged
        self._orders = self._merge(self._orders, orders, started_at)
        self._by_symbol = {}
        for order_id, entry in self._orders.items():
            if entry.value is not None:
                self._by_symbol.setdefault(entry.value.symbol, {})[order_id] = entry.value

    @staticmethod
    def _merge(current: dict[str, _Entry[T]], fresh: dict[str, T],
                  started_at: int) -> dict[str, _Entry[T]]:
        merged = {k: _Entry(v, started_at) for k, v in fresh.items()}
        for key, entry in current.items():
            if entry.version > started_at:  # changed after the snapshot began: ours is newer
                merged[key] = entry
        return merged

    def set_position(self, symbol: str, report: PositionReport | None, *,
                     streamed_at: datetime | None = None) -> None:
        """`streamed_at`: the stream reported it (now); our own inferences pass nothing."""
        self.version += 1
        self._positions[symbol] = _Entry(report, self.version,
                                         streamed_at if report is not None else None)

    def note_mark(self, symbol: str, mark: Decimal) -> None:
        """A fresher mark from the price stream. Not a change of the position (no version
        bump): a snapshot taken meanwhile still wins on everything else."""
        entry = self._positions.get(symbol)
        if entry is not None and entry.value is not None and entry.value.mark_price != mark:
            entry.value = replace(entry.value, mark_price=mark)

    def set_order(self, order: OrderReport) -> None:
        current = self._orders.get(order.order_id)
        if order.is_resting and current is not None and current.value is None:
            return  # gone is final: a late stream event must not bring an order back
        self.version += 1
        self._orders[order.order_id] = _Entry(order if order.is_resting else None, self.version)
        if (not order.is_resting or current is None or current.value is None
                or current.value.symbol != order.symbol):
            self._unindex(current)
        if order.is_resting:  # an update keeps its place, as it does in `_orders`
            self._by_symbol.setdefault(order.symbol, {})[order.order_id] = order

    def drop_order(self, order_id: str) -> None:
        self.version += 1
        self._unindex(self._orders.get(order_id))
        self._orders[order_id] = _Entry(None, self.version)

    def _unindex(self, entry: _Entry[OrderReport] | None) -> None:
        if entry is None or entry.value is None:
            return
        by_id = self._by_symbol.get(entry.value.symbol)
        if by_id is not None:
            by_id.pop(entry.value.order_id, None)
            if not by_id:
                del self._by_symbol[entry.value.symbol]

    def vouched(self, symbol: str) -> bool:
        """False when the symbol's position was last reported before the stream's last gap and
        no snapshot begun since has confirmed it: the event that ended it may have been lost."""
        entry = self._positions.get(symbol)
        return entry is None or entry.value is None or entry.version > self.gap_version

    def positions(self) -> dict[str, PositionReport]:
        return {k: e.value for k, e in self._positions.items() if e.value is not None}

    def position(self, symbol: str) -> PositionReport | None:
        entry = self._positions.get(symbol)
        return entry.value if entry else None

    def orders(self, symbol: str | None = None) -> list[OrderReport]:
        if symbol is not None:
            return list(self._by_symbol.get(symbol, {}).values())
        return [e.value for e in self._orders.values() if e.value is not None]


class MarkedFetch:
    """A snapshot fetch that marks the view right before each attempt, for `retry_transient`:
    after retries `marker` is the attempt that succeeded, not the first. A snapshot read late
    must not count as begun early, or an older one that ends after it overrules it (issue 15
    chaos: rest-only-50ms-harsh seed 401)."""

    def __init__(self, view: AccountView, fetch: Callable[[], Awaitable[VenueSnapshot]]) -> None:
        self.view = view
        self.fetch = fetch
        self.marker = view.mark()

    async def __call__(self) -> VenueSnapshot:
        self.marker = self.view.mark()
        return await self.fetch()


async def read_snapshot(view: AccountView, fetch: Callable[[], Awaitable[VenueSnapshot]],
                        clock: Clock, *, rng: random.Random) -> VenueSnapshot:
    """A fresh snapshot, merged into `view` as of the attempt that succeeded. A snapshot is a
    read: a timeout (ccxt RequestTimeout -> OutcomeUnknown) changed nothing on the venue and is
    retried like a reset connection. The one way the guard and the supervisors look."""
    marked = MarkedFetch(view, fetch)
    snapshot = await retry_transient(marked, clock, rng=rng, also=(OutcomeUnknown,))
    view.apply_snapshot(snapshot, marked.marker, clock.now())
    return snapshot
