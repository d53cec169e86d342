"""The simulated exchange's matching core: marks, one-way positions, market and trigger orders.

Synchronous and deterministic for a seed; `SimVenue` puts the async Venue port (latency, faults,
call counting) in front of it, and `HandApi` acts as a person in the exchange's own app would.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from engine.clock import Clock
from engine.domain.reports import (
    Fill,
    FillUpdate,
    MarketInfo,
    OrderKind,
    OrderReport,
    OrderStatus,
    OrderUpdate,
    PositionReport,
    PositionUpdate,
    PriceTick,
    VenueEvent,
)
from engine.domain.values import ZERO, OrderSide, PositionSide, floor_to_step, round_to_step
from engine.errors import Rejected, RejectReason

DEFAULT_MARKETS: dict[str, tuple[str, str, str, str]] = {
    # symbol: (start mark, tick, lot, min qty)
    "BTC/USDT:USDT": ("65000", "0.1", "0.001", "0.001"),
    "ETH/USDT:USDT": ("3200", "0.01", "0.01", "0.01"),
    "SOL/USDT:USDT": ("150", "0.01", "0.1", "0.1"),
    "XRP/USDT:USDT": ("0.55", "0.0001", "1", "1"),
    "DOGE/USDT:USDT": ("0.12", "0.00001", "1", "1"),
}


class ClientIdScope(StrEnum):
    """Where a venue requires a client order id to be unique."""

    ACCOUNT = "account"  # never reused on the account, whatever became of the first order
    OPEN_ORDERS = "open_orders"  # only among open orders: a filled or cancelled order's id is free


@dataclass(frozen=True, slots=True)
class VenueRules:
    """One venue's order-identity and listing rules, as the simulated exchange enforces them."""

    name: str
    client_id_scope: ClientIdScope
    client_id_pattern: re.Pattern[str]  # the whole id must match
    open_orders_page: int | None = None  # orders per listing page; None: one call lists all

    def check_client_id(self, client_id: str) -> None:
        if not self.client_id_pattern.fullmatch(client_id):
            raise Rejected(RejectReason.INVALID_ORDER,
                           f"client id {client_id!r} does not match {self.name}'s "
                           f"{self.client_id_pattern.pattern}")


# Sources: ../shared/VENUES.md ("Client ids", "Learned since"), engine/domain/ids.py (limits) and
# each venue's order-create docs.
# Binance USD-M: newClientOrderId / clientAlgoId `^[.A-Z:/a-z0-9_-]{1,36}$`, unique only among
# OPEN orders, so the id of a filled close may be sent again and executes again (issue 15 #5).
BINANCE_USDM = VenueRules("binanceusdm", ClientIdScope.OPEN_ORDERS,
                          re.compile(r"[.A-Z:/a-z0-9_-]{1,36}"))
# Bybit v5: orderLinkId up to 36 of letters, digits, '-' and '_'; a reused one is refused with
# 110072 "OrderLinkedID is duplicate" also after the first order ended (we take the documented
# "unique" as per account, for ever: the stricter reading). Listing pages by 50 (cursor).
BYBIT = VenueRules("bybit", ClientIdScope.ACCOUNT, re.compile(r"[A-Za-z0-9_-]{1,36}"),
                   open_orders_page=50)
# Bitget v2 mix: clientOid unique (40786 "Duplicate clientOid"), up to 40 characters per our ids
# module; listing pages by 100 (idLessThan).
BITGET = VenueRules("bitget", ClientIdScope.ACCOUNT, re.compile(r"[A-Za-z0-9_-]{1,40}"),
                    open_orders_page=100)
# The default: the strictest of the three wherever it costs nothing (unique for ever, Bybit's
# length and characters). Listing stays one call, so call counts match the venue layer's budget.
STRICT = VenueRules("strict", ClientIdScope.ACCOUNT, re.compile(r"[A-Za-z0-9_-]{1,36}"))
RULES: dict[str, VenueRules] = {r.name: r for r in (STRICT, BINANCE_USDM, BYBIT, BITGET)}


@dataclass(slots=True)
class SimPosition:
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    opened_at: object  # datetime; kept loose to stay slot-friendly
    realized_pnl: Decimal = ZERO


@dataclass(slots=True)
class SimOrder:
    report: OrderReport
    seq: int = field(default=0)


HISTORY_LIMIT = 10_000  # ended orders (and fills) kept for look-ups; older ones are dropped


class SimExchange:
    def __init__(self, clock: Clock, *, seed: int = 1, fee_rate: Decimal = Decimal("0.0005"),
                 slippage_bps: Decimal = Decimal("2"),
                 markets: dict[str, tuple[str, str, str, str]] | None = None,
                 rules: VenueRules = STRICT, history_limit: int = HISTORY_LIMIT) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, not {history_limit}")
        self.clock = clock
        self.rules = rules
        self.rng = random.Random(seed)
        self.fee_rate = fee_rate
        self.slippage = slippage_bps / Decimal(10_000)
        self.markets: dict[str, MarketInfo] = {}
        self.marks: dict[str, Decimal] = {}
        for symbol, (mark, tick, lot, min_qty) in (markets or DEFAULT_MARKETS).items():
            self.markets[symbol] = MarketInfo(symbol, Decimal(tick), Decimal(lot), Decimal(min_qty))
            self.marks[symbol] = Decimal(mark)
        self._symbols = sorted(self.marks)
        self.positions: dict[str, SimPosition] = {}
        self.history_limit = history_limit
        # Open orders plus the newest `history_limit` ended ones, by id (in id order).
        self.orders: dict[str, OrderReport] = {}
        self.fills: deque[Fill] = deque(maxlen=history_limit)
        # Indexes over `orders`, kept by `record`, so that a price update or a look-up never
        # walks the history: open orders (all, and per symbol, both in id order), the newest
        # order per client id, and the ended orders oldest first (what trimming drops).
        self._open: dict[str, OrderReport] = {}
        self._resting_by_symbol: dict[str, dict[str, OrderReport]] = {}
        self._by_client_id: dict[str, str] = {}
        self._ended: deque[str] = deque()
        self.realized_pnl = ZERO
        self.fees_paid = ZERO
        self.deposit = Decimal(10_000)  # the paper account's starting equity (USDT)
        self._ids = itertools.count(1)
        self._subscribers: list[asyncio.Queue[VenueEvent]] = []
        self._listeners: list[Callable[[VenueEvent], None]] = []
        self._mark_listeners: list[Callable[[PriceTick], None]] = []
        # Called before an answer leaves the exchange (engine/sim/store.py batches its writes
        # per loop turn; what it acknowledges must be on disk first).
        self._savers: list[Callable[[], None]] = []
        # A resting limit entry's attached stop-loss (order id -> price): rests from its fill.
        self._attached: dict[str, Decimal] = {}
        # Whether position reports say when the position opened (ccxt's do not).
        self.opened_at_known = True

    # --- streams ---------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[VenueEvent]:
        queue: asyncio.Queue[VenueEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[VenueEvent]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def listen(self, listener: Callable[[VenueEvent], None]) -> Callable[[], None]:
        """Call `listener` synchronously at every mutation, in order; returns the remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def listen_marks(self, listener: Callable[[PriceTick], None]) -> Callable[[], None]:
        """Call `listener` at every mark change (the market-data stream); returns the remover.
        Kept apart from `listen`: a busy price feed must not crowd the account's own events."""
        self._mark_listeners.append(listener)
        return lambda: self._mark_listeners.remove(listener)

    def on_save(self, saver: Callable[[], None]) -> Callable[[], None]:
        """Call `saver` in `save()`; returns the remover."""
        self._savers.append(saver)
        return lambda: self._savers.remove(saver)

    def save(self) -> None:
        """Make every mutation so far durable: called before an answer is sent."""
        for saver in list(self._savers):
            saver()

    def _emit(self, event: VenueEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)
        for listener in list(self._listeners):
            listener(event)

    def add_market(self, symbol: str, mark: Decimal, tick: Decimal, lot: Decimal,
                   min_qty: Decimal) -> None:
        """List one more market (a big paper book needs more than the defaults)."""
        self.markets[symbol] = MarketInfo(symbol, tick, lot, min_qty)
        self.marks[symbol] = mark
        self._symbols = sorted(self.marks)  # the random walk moves it too

    def restore(self, *, markets: dict[str, MarketInfo], marks: dict[str, Decimal],
                positions: dict[str, SimPosition], orders: list[OrderReport],
                fills: list[Fill]) -> None:
        """Take the state engine/sim/store.py saved (orders oldest first); new order ids
        continue after the highest one, so none is ever handed out twice."""
        self.markets, self.marks = dict(markets), dict(marks)
        self._symbols = sorted(self.marks)
        self.positions = dict(positions)
        self.orders, self._open, self._resting_by_symbol = {}, {}, {}
        self._by_client_id, self._ended = {}, deque()
        for order in orders:  # oldest first: the indexes and the history bound as they were
            self.record(order)
        self.fills = deque(fills, maxlen=self.history_limit)
        self.realized_pnl = sum((f.realized_pnl for f in fills), ZERO)
        self.fees_paid = sum((f.fee for f in fills), ZERO)
        self._ids = itertools.count(max((int(i) for i in self.orders), default=0) + 1)

    # --- reading -----------------------------------------------------------------------------
    def market(self, symbol: str) -> MarketInfo:
        try:
            return self.markets[symbol]
        except KeyError:
            raise Rejected(RejectReason.BAD_SYMBOL, f"unknown market {symbol}") from None

    def position_report(self, symbol: str) -> PositionReport | None:
        pos = self.positions.get(symbol)
        if pos is None:
            return None
        mark = self.marks[symbol]
        return PositionReport(
            symbol=symbol, side=pos.side, qty=pos.qty, entry_price=pos.entry_price,
            mark_price=mark, unrealized_pnl=(mark - pos.entry_price) * pos.qty * pos.side.sign,
            opened_at=pos.opened_at if self.opened_at_known else None,  # type: ignore[arg-type]
            updated_at=self.clock.now())

    def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Open orders in id order, of one symbol or all."""
        book = self._open if symbol is None else self._resting_by_symbol.get(symbol, {})
        return list(book.values())

    def find_by_client_id(self, client_id: str) -> OrderReport | None:
        """The newest order with this id (where ids may be reused, the venue answers the last),
        while it is open or among the `history_limit` newest ended orders."""
        order_id = self._by_client_id.get(client_id)
        return None if order_id is None else self.orders[order_id]

    def equity(self) -> Decimal:
        unrealized = sum(((self.marks[s] - p.entry_price) * p.qty * p.side.sign
                          for s, p in self.positions.items()), ZERO)
        return self.deposit + self.realized_pnl - self.fees_paid + unrealized

    # --- prices ------------------------------------------------------------------------------
    def set_mark(self, symbol: str, price: Decimal) -> None:
        info = self.market(symbol)
        mark = self.marks[symbol] = max(round_to_step(price, info.tick), info.tick)
        if self._mark_listeners:
            tick = PriceTick(symbol, mark, self.clock.now())
            for listener in list(self._mark_listeners):
                listener(tick)
        self._check_triggers(symbol)

    def random_walk(self, volatility: Decimal = Decimal("0.0008")) -> None:
        """One step of a seeded random walk on every market (paper mode's price feed)."""
        for symbol in self._symbols:
            move = Decimal(str(round(self.rng.gauss(0, 1), 6))) * volatility
            self.set_mark(symbol, self.marks[symbol] * (1 + move))

    # --- orders ------------------------------------------------------------------------------
    def place_trigger(self, *, symbol: str, side: OrderSide, qty: Decimal, trigger_price: Decimal,
                      kind: OrderKind, client_id: str | None, reduce_only: bool = True
                      ) -> OrderReport:
        info = self.market(symbol)
        self._check_client_id(client_id)
        self._check_steps(info, qty, trigger_price)
        mark = self.marks[symbol]
        fires_below = (kind is OrderKind.STOP_LOSS) == (side is OrderSide.SELL)
        if (fires_below and trigger_price >= mark) or (not fires_below and trigger_price <= mark):
            raise Rejected(RejectReason.WOULD_TRIGGER_IMMEDIATELY,
                           f"trigger {trigger_price} vs mark {mark}")
        order = OrderReport(
            order_id=str(next(self._ids)), client_id=client_id, symbol=symbol, kind=kind,
            side=side, qty=qty, trigger_price=trigger_price, reduce_only=reduce_only,
            status=OrderStatus.OPEN, updated_at=self.clock.now(), created_at=self.clock.now())
        self.record(order)
        self._emit(OrderUpdate(order))
        return order

    def amend_trigger(self, order_id: str, trigger_price: Decimal, qty: Decimal) -> OrderReport:
        order = self._resting(order_id)
        info = self.market(order.symbol)
        self._check_steps(info, qty, trigger_price)
        mark = self.marks[order.symbol]
        fires_below = (order.kind is OrderKind.STOP_LOSS) == (order.side is OrderSide.SELL)
        if (fires_below and trigger_price >= mark) or (not fires_below and trigger_price <= mark):
            raise Rejected(RejectReason.WOULD_TRIGGER_IMMEDIATELY,
                           f"trigger {trigger_price} vs mark {mark}")
        amended = replace(order, trigger_price=trigger_price, qty=qty, updated_at=self.clock.now())
        self.record(amended)
        self._emit(OrderUpdate(amended))
        return amended

    def cancel(self, order_id: str) -> OrderReport:
        order = self._resting(order_id)
        self._attached.pop(order_id, None)  # a limit entry's stop never rests unfilled
        cancelled = replace(order, status=OrderStatus.CANCELLED, updated_at=self.clock.now())
        self.record(cancelled)
        self._emit(OrderUpdate(cancelled))
        return cancelled

    def market_order(self, *, symbol: str, side: OrderSide, qty: Decimal, reduce_only: bool,
                     client_id: str | None) -> OrderReport:
        info = self.market(symbol)
        self._check_client_id(client_id)
        self._check_steps(info, qty, None)
        pos = self.positions.get(symbol)
        if reduce_only:
            if pos is None or pos.side.close_side is not side:
                raise Rejected(RejectReason.REDUCE_ONLY_REJECTED,
                               "reduce-only order would open or increase a position")
            qty = min(qty, pos.qty)
        order = OrderReport(
            order_id=str(next(self._ids)), client_id=client_id, symbol=symbol,
            kind=OrderKind.MARKET, side=side, qty=qty, trigger_price=None,
            reduce_only=reduce_only, status=OrderStatus.FILLED, updated_at=self.clock.now(),
            created_at=self.clock.now())
        self.record(order)
        self._fill(order, qty)
        self._emit(OrderUpdate(order))
        return order

    def entry_order(self, *, symbol: str, side: OrderSide, qty: Decimal, client_id: str | None,
                    stop_loss: Decimal | None, limit_price: Decimal | None = None
                    ) -> OrderReport:
        """A market entry, as strictly as the venues take one: id, lot, minimum notional, and an
        attached stop-loss on the losing side of the mark (else the whole order is refused and
        nothing fills, as on Bybit and Bitget). The attached stop rests for the whole position
        from the fill on (a position-level stop: no qty, never needs resizing)."""
        info = self.market(symbol)
        self._check_client_id(client_id)
        self._check_steps(info, qty, stop_loss)
        mark = self.marks[symbol]
        if qty * mark < info.min_notional:
            raise Rejected(RejectReason.INVALID_ORDER,
                           f"notional {qty * mark} below the minimum {info.min_notional}")
        if stop_loss is not None:
            below = side is OrderSide.BUY
            if (below and stop_loss >= mark) or (not below and stop_loss <= mark):
                raise Rejected(RejectReason.WOULD_TRIGGER_IMMEDIATELY,
                               f"attached stop {stop_loss} vs mark {mark}")
        if limit_price is not None:
            self._check_steps(info, qty, limit_price)
            order = OrderReport(
                order_id=str(next(self._ids)), client_id=client_id, symbol=symbol,
                kind=OrderKind.LIMIT, side=side, qty=qty, trigger_price=None,
                reduce_only=False, status=OrderStatus.OPEN, updated_at=self.clock.now(),
                created_at=self.clock.now(), price=limit_price, filled=ZERO)
            self.record(order)
            if stop_loss is not None:
                self._attached[order.order_id] = stop_loss  # rests from the first fill
            self._emit(OrderUpdate(order))
            if limit_price >= mark if side is OrderSide.BUY else limit_price <= mark:
                # through the mark: fills at once, as a taker, at the mark (inside its limit)
                return self.fill_limit(order.order_id, price=mark)
            return order  # rests on the book until the mark reaches it, or a cancel
        if stop_loss is not None:  # resting from the fill on: the venue shows it first
            self._attach_stop(symbol, side, stop_loss)
        return self.market_order(symbol=symbol, side=side, qty=qty, reduce_only=False,
                                 client_id=client_id)

    def fill_limit(self, order_id: str, qty: Decimal | None = None,
                   price: Decimal | None = None) -> OrderReport:
        """Fill `qty` (default: the rest) of a resting limit order at `price` (default: its
        own, as a maker); a partial fill leaves the rest on the book."""
        order = self._resting(order_id)
        if order.kind is not OrderKind.LIMIT or order.qty is None or order.price is None:
            raise Rejected(RejectReason.INVALID_ORDER, f"order {order_id} is not a limit order")
        done = order.filled or ZERO
        qty = order.qty - done if qty is None else min(qty, order.qty - done)
        self._check_steps(self.market(order.symbol), qty, None)
        stop_loss = self._attached.pop(order_id, None)
        if stop_loss is not None:  # the position's stop rides in with the first fill
            self._attach_stop(order.symbol, order.side, stop_loss)
        filled = done + qty
        status = OrderStatus.FILLED if filled == order.qty else OrderStatus.OPEN
        order = replace(order, filled=filled, status=status, updated_at=self.clock.now())
        self.record(order)
        self._fill(order, qty, price=price or order.price)
        self._emit(OrderUpdate(order))
        return order

    def _attach_stop(self, symbol: str, side: OrderSide, stop_loss: Decimal) -> None:
        """An entry's attached stop: a position-level stop (no qty, never needs resizing)."""
        stop = OrderReport(
            order_id=str(next(self._ids)), client_id=None, symbol=symbol,
            kind=OrderKind.STOP_LOSS, side=OrderSide.SELL if side is OrderSide.BUY
            else OrderSide.BUY, qty=None, trigger_price=stop_loss, reduce_only=True,
            status=OrderStatus.OPEN, updated_at=self.clock.now(),
            created_at=self.clock.now(), whole_position=True)
        self.record(stop)
        self._emit(OrderUpdate(stop))

    # --- internals ---------------------------------------------------------------------------
    def record(self, order: OrderReport) -> None:
        """Store a new or changed order and keep every index in step; trim the history."""
        order_id = order.order_id
        self.orders[order_id] = order
        if order.client_id is not None:
            self._by_client_id[order.client_id] = order_id
        book = self._resting_by_symbol.setdefault(order.symbol, {})
        if order.is_resting:
            self._open[order_id] = order
            book[order_id] = order
            return
        self._open.pop(order_id, None)
        book.pop(order_id, None)
        self._ended.append(order_id)  # an order ends once: ended orders never change again
        while len(self._ended) > self.history_limit:
            dropped = self.orders.pop(self._ended.popleft())
            if dropped.client_id is not None and \
                    self._by_client_id.get(dropped.client_id) == dropped.order_id:
                del self._by_client_id[dropped.client_id]

    def _check_client_id(self, client_id: str | None) -> None:
        if client_id is None:
            return
        self.rules.check_client_id(client_id)
        used = self.find_by_client_id(client_id)
        if used is None:
            return
        if self.rules.client_id_scope is ClientIdScope.ACCOUNT or used.is_resting:
            raise Rejected(RejectReason.DUPLICATE_CLIENT_ID, f"client id {client_id} already used")

    @staticmethod
    def _check_steps(info: MarketInfo, qty: Decimal, price: Decimal | None) -> None:
        if qty < info.min_qty or qty % info.lot != 0:
            raise Rejected(RejectReason.INVALID_ORDER, f"qty {qty} not on lot {info.lot}")
        if price is not None and (price <= 0 or price % info.tick != 0):
            raise Rejected(RejectReason.INVALID_ORDER, f"price {price} not on tick {info.tick}")

    def _resting(self, order_id: str) -> OrderReport:
        order = self.orders.get(order_id)
        if order is None or not order.is_resting:
            raise Rejected(RejectReason.ORDER_NOT_FOUND, f"order {order_id} is not open")
        return order

    def _fill(self, order: OrderReport, qty: Decimal, price: Decimal | None = None) -> None:
        """Fill at `price` (a limit's), else at mark with slippage against the taker; update
        the one-way position."""
        symbol, side = order.symbol, order.side
        info = self.markets[symbol]
        mark = self.marks[symbol]
        slip = mark * self.slippage
        if price is None:
            price = round_to_step(mark + slip if side is OrderSide.BUY else mark - slip,
                                  info.tick)
        fee = (price * qty * self.fee_rate).quantize(Decimal("0.00000001"))
        pos = self.positions.get(symbol)
        realized = ZERO
        remaining = qty
        if pos is not None and pos.side.close_side is side:
            closing = min(qty, pos.qty)
            realized = (price - pos.entry_price) * closing * pos.side.sign
            pos.qty -= closing
            remaining -= closing
            if pos.qty == 0:
                del self.positions[symbol]
                pos = None
        if remaining > 0:
            new_side = PositionSide.LONG if side is OrderSide.BUY else PositionSide.SHORT
            if pos is None:
                pos = SimPosition(symbol, new_side, remaining, price, self.clock.now())
                self.positions[symbol] = pos
            else:
                total = pos.qty + remaining
                pos.entry_price = round_to_step(
                    (pos.entry_price * pos.qty + price * remaining) / total, info.tick / 100)
                pos.qty = total
        self.realized_pnl += realized
        self.fees_paid += fee
        fill = Fill(order_id=order.order_id, client_id=order.client_id, symbol=symbol, side=side,
                    qty=qty, price=price, fee=fee, realized_pnl=realized,
                    reduce_only=order.reduce_only, at=self.clock.now())
        self.fills.append(fill)
        self._emit(FillUpdate(fill))
        self._emit(PositionUpdate(self.position_report(symbol), symbol))
        # Resting stops are NOT cancelled when the position goes flat: plain conditional orders
        # outlive their position on real venues too (zombies), and the guard must clean them up.

    def _check_triggers(self, symbol: str) -> None:
        mark = self.marks[symbol]
        for order in self.open_orders(symbol):  # a copy: triggering changes the index
            if order.kind is OrderKind.LIMIT and order.price is not None:
                if (mark <= order.price if order.side is OrderSide.BUY
                        else mark >= order.price):
                    self.fill_limit(order.order_id)  # the mark reached it: the rest fills
                continue
            if order.trigger_price is None:
                continue
            fires_below = (order.kind is OrderKind.STOP_LOSS) == (order.side is OrderSide.SELL)
            hit = mark <= order.trigger_price if fires_below else mark >= order.trigger_price
            if not hit:
                continue
            self._trigger(order)

    def _trigger(self, order: OrderReport) -> None:
        triggered = replace(order, status=OrderStatus.TRIGGERED, updated_at=self.clock.now())
        self.record(triggered)
        self._emit(OrderUpdate(triggered))
        pos = self.positions.get(order.symbol)
        if order.reduce_only and (pos is None or pos.side.close_side is not order.side):
            return  # reduce-only never opens or flips: the trigger fires into nothing
        qty = order.qty if order.qty is not None else (pos.qty if pos else ZERO)
        if order.reduce_only and pos is not None:
            qty = min(qty, pos.qty)
        if qty <= 0:
            return
        child = OrderReport(
            order_id=str(next(self._ids)), client_id=None, symbol=order.symbol,
            kind=OrderKind.MARKET, side=order.side, qty=qty, trigger_price=None,
            reduce_only=order.reduce_only, status=OrderStatus.FILLED, updated_at=self.clock.now(),
            created_at=self.clock.now())
        self.record(child)
        self._fill(child, qty)


class HandApi:
    """What a person does in the exchange's app: opens, closes, cancels, outside of Vigil."""

    def __init__(self, exchange: SimExchange) -> None:
        self.exchange = exchange

    def open(self, symbol: str, side: PositionSide, qty: Decimal) -> OrderReport:
        info = self.exchange.market(symbol)
        return self.exchange.market_order(symbol=symbol, side=side.entry_side,
                                          qty=floor_to_step(qty, info.lot), reduce_only=False,
                                          client_id=None)

    def close(self, symbol: str, qty: Decimal | None = None) -> OrderReport | None:
        pos = self.exchange.positions.get(symbol)
        if pos is None:
            return None
        return self.exchange.market_order(symbol=symbol, side=pos.side.close_side,
                                          qty=qty or pos.qty, reduce_only=True, client_id=None)

    def place_stop(self, symbol: str, trigger_price: Decimal, qty: Decimal | None = None
                   ) -> OrderReport:
        pos = self.exchange.positions[symbol]
        return self.exchange.place_trigger(
            symbol=symbol, side=pos.side.close_side, qty=qty or pos.qty,
            trigger_price=trigger_price, kind=OrderKind.STOP_LOSS, client_id=None)

    def cancel(self, order_id: str) -> OrderReport:
        return self.exchange.cancel(order_id)

    def place_old_stop(self, symbol: str, side: OrderSide, qty: Decimal, trigger_price: Decimal,
                       age_seconds: float) -> OrderReport:
        """A reduce-only stop placed `age_seconds` ago (before Vigil started), on any symbol:
        on a flat one it is an orphan, and the venue reports when it was created."""
        order = self.exchange.place_trigger(
            symbol=symbol, side=side, qty=qty, trigger_price=trigger_price,
            kind=OrderKind.STOP_LOSS, client_id=None)
        created = self.exchange.clock.now() - timedelta(seconds=age_seconds)
        order = replace(order, created_at=created, updated_at=created)
        self.exchange.record(order)
        self.exchange._emit(OrderUpdate(order))  # the back-dated order, for listeners (store)
        return order
