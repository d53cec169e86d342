"""The exchange's own record of how long each position went without a stop.

Listens to every mutation (like the randomized test's observer): a position is protected while a
stop that can only close it rests on its symbol. A flip or a re-open is a new position with its
own clock. Times are wall-clock seconds (time.time()), so another process can compare them with
when it started or killed Vigil."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.domain.reports import FillUpdate, OrderKind, OrderUpdate, PositionUpdate, VenueEvent
from engine.sim.exchange import SimExchange


@dataclass(frozen=True, slots=True)
class Unprotected:
    symbol: str
    since: float
    until: float | None  # None: still without a stop


class ProtectionWatch:
    def __init__(self, exchange: SimExchange, now: Callable[[], float] = time.time) -> None:
        self.exchange = exchange
        self.now = now
        self.closed: list[Unprotected] = []
        self._open: dict[str, tuple[object, float]] = {}  # symbol -> (position identity, since)
        self.remove = exchange.listen(self._on_event)
        for symbol in list(exchange.positions):
            self._observe(symbol)

    def intervals(self, after: int = 0) -> tuple[list[Unprotected], int]:
        """Finished intervals from index `after` on, then the open ones; and the next index."""
        current = [Unprotected(symbol, since, None) for symbol, (_, since) in self._open.items()]
        return self.closed[after:] + current, len(self.closed)

    def _on_event(self, event: VenueEvent) -> None:
        match event:
            case PositionUpdate(symbol=symbol):
                self._observe(symbol)
            case OrderUpdate(order=order):
                self._observe(order.symbol)
            case FillUpdate(fill=fill):
                self._observe(fill.symbol)

    def _observe(self, symbol: str) -> None:
        now = self.now()
        pos = self.exchange.positions.get(symbol)
        identity = (pos.side, pos.opened_at) if pos is not None else None
        current = self._open.get(symbol)
        if current is not None and current[0] != identity:  # that position ended or flipped
            self._finish(symbol, now)
            current = None
        if pos is None:
            return
        protected = any(o.is_stop_for(pos.side) for o in self.exchange.open_orders(symbol))
        if protected and current is not None:
            self._finish(symbol, now)
        elif not protected and current is None:
            self._open[symbol] = (identity, now)

    def _finish(self, symbol: str, now: float) -> None:
        _, since = self._open.pop(symbol)
        self.closed.append(Unprotected(symbol, since, now))


@dataclass(frozen=True, slots=True)
class StopPrice:
    """A stop's trigger as it rested on the exchange: placed, or amended to a new price."""

    symbol: str
    order_id: str
    client_id: str | None
    side: str  # the order's side: sell protects a long, buy a short
    trigger_price: str
    at: float


@dataclass(frozen=True, slots=True)
class FillRecord:
    order_id: str
    client_id: str | None
    symbol: str
    side: str
    qty: str
    reduce_only: bool
    at: float


class TradeLog:
    """Every fill and every trigger price a resting stop took, in order, as the exchange saw
    them: what the soak checks "never two entries for one key", "one close per approval" and
    "a trailed stop never loosens" against. In memory: a restarted exchange starts a new log."""

    def __init__(self, exchange: SimExchange, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.fills: list[FillRecord] = []
        self.stops: list[StopPrice] = []
        self._triggers: dict[str, str] = {}  # resting stop's order id -> its last trigger
        self.remove = exchange.listen(self._on_event)

    def since(self, fills_after: int, stops_after: int) -> dict[str, object]:
        return {"fills": self.fills[fills_after:], "fills_next": len(self.fills),
                "stops": self.stops[stops_after:], "stops_next": len(self.stops)}

    def _on_event(self, event: VenueEvent) -> None:
        match event:
            case FillUpdate(fill=fill):
                self.fills.append(FillRecord(
                    fill.order_id, fill.client_id, fill.symbol, fill.side.value, str(fill.qty),
                    fill.reduce_only, self.now()))
            case OrderUpdate(order=order) if order.kind is OrderKind.STOP_LOSS:
                if not order.is_resting:
                    self._triggers.pop(order.order_id, None)
                    return
                trigger = str(order.trigger_price)
                if self._triggers.get(order.order_id) != trigger:
                    self._triggers[order.order_id] = trigger
                    self.stops.append(StopPrice(order.symbol, order.order_id, order.client_id,
                                                order.side.value, trigger, self.now()))
