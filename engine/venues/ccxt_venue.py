"""`CcxtVenue`: the Venue port on ccxt (REST via ccxt.async_support, streams via ccxt.pro).

Everything venue-specific is delegated to a Dialect; this class owns precision (quantities floored
on the lot, stop prices rounded toward the mark), the whole-position stop for positions below the
minimum order size, call counting, the request budget and the report types."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from engine.clock import Clock, SystemClock
from engine.domain.ledger import LedgerEntry
from engine.domain.reports import (
    MarketInfo,
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    OrderStatus,
    OrderUpdate,
    PositionReport,
    PositionUpdate,
    PriceTick,
    StopRequest,
    VenueCapabilities,
    VenueEvent,
    VenueSnapshot,
)
from engine.domain.values import (
    OrderSide,
    PositionSide,
    Symbol,
    conservative_stop,
    floor_to_step,
    take_profit_on_tick,
)
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason
from engine.results import VenueWeight
from engine.venues.budget import Lane, RequestBudget
from engine.venues.convert import dec, fmt, order_report, position_report
from engine.venues.dialects.base import TRIGGER_KINDS, Dialect, Subscription
from engine.venues.errors import translate
from engine.venues.ledger import tidy, to_ms
from engine.venues.rest import Raw, Rest
from engine.venues.streams import Backoff, ExchangeWatcher, StreamMux, Watcher
from engine.venues.ticks import ExchangeMarkWatcher, MarkWatcher, watch_marks
from engine.venues.turns import in_turns

Made = TypeVar("Made", OrderReport, PositionReport)


class CcxtVenue:
    """One exchange account. Build it with `make_venue`; call `start()` before anything else."""

    def __init__(self, exchange: Any, dialect: Dialect, *, account: str,
                 secrets: tuple[str | None, ...] = (), clock: Clock | None = None,
                 watcher: Watcher | None = None, backoff: Backoff | None = None,
                 rng: random.Random | None = None, marks: MarkWatcher | None = None) -> None:
        self.name: str = exchange.id
        self.account = account
        self._exchange = exchange
        self._dialect = dialect
        self._clock: Clock = clock or SystemClock()
        self._budget = RequestBudget(f"{self.name}[{account}]", dialect.budget, self._clock)
        self._budget.install(exchange)
        self._rest = Rest(exchange, venue=f"{self.name}[{account}]", codes=dialect.codes,
                          secrets=secrets, budget=self._budget)
        self._streams = StreamMux(
            dialect.subscriptions(), watcher or ExchangeWatcher(exchange), self._stream_events,
            self._describe_stream_error, sleep=self._clock.sleep,
            backoff=backoff or Backoff(), rng=rng or random.Random())
        self._marks: MarkWatcher = marks or ExchangeMarkWatcher(exchange)
        # symbol -> (the ccxt market it was read from, ours): every reconcile asks for each
        # guarded symbol's market twice, and reading ccxt's numbers into Decimals was a third
        # of a 2,000-position cycle's planning block
        self._market_info: dict[str, tuple[dict[str, Any], MarketInfo]] = {}

    # --- extras beyond the port ------------------------------------------------------------
    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def budget(self) -> RequestBudget:
        """Request weight spent and left; `budget.stats()` for /status and the metrics."""
        return self._budget

    def request_weight(self) -> VenueWeight:
        """The port's optional WeighsRequests: this account's weight for /status."""
        return self._budget.stats().weight()

    @property
    def exchange(self) -> Any:
        """The ccxt exchange (pro class): for wiring and tests, never for engine logic."""
        return self._exchange

    def symbols(self) -> tuple[str, ...]:
        """Every loaded perpetual this venue guards, e.g. ("BTC/USDT:USDT", ...)."""
        markets = self._exchange.markets or {}
        return tuple(sorted(s for s, m in markets.items() if self._is_perpetual(m)))

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def capabilities(self) -> VenueCapabilities:
        return self._dialect.capabilities

    async def start(self) -> None:
        rest = self._rest.fresh("start")
        await rest("load_markets", self._exchange.load_markets())
        await self._dialect.prepare(rest)
        if await self._dialect.is_hedged(rest):
            raise self._hedge_mode()

    async def close(self) -> None:
        self._streams.close()
        with contextlib.suppress(Exception):  # closing sockets must not mask the caller's error
            await self._exchange.close()

    # --- markets ---------------------------------------------------------------------------
    def market(self, symbol: str) -> MarketInfo:
        market = self._perpetual(symbol)
        cached = self._market_info.get(symbol)
        if cached is not None and cached[0] is market:  # a reload builds new market dicts
            return cached[1]
        info = self._read_market(symbol, market)
        self._market_info[symbol] = (market, info)
        return info

    def _read_market(self, symbol: str, market: dict[str, Any]) -> MarketInfo:
        precision = market.get("precision") or {}
        tick, lot = dec(precision.get("price")), dec(precision.get("amount"))
        if not tick or not lot:
            raise Rejected(RejectReason.BAD_SYMBOL, f"{symbol}: {self.name} gives no tick/lot")
        limits = market.get("limits") or {}
        minimum = dec((limits.get("amount") or {}).get("min"))
        notional = dec((limits.get("cost") or {}).get("min"))
        return MarketInfo(symbol=symbol, tick=tick, lot=lot, min_qty=minimum or lot,
                          min_notional=notional or Decimal(0))

    def resolve_symbol(self, text: str) -> str:
        cleaned = text.strip()
        markets = self._exchange.markets or {}
        if self._is_perpetual(markets.get(cleaned)):
            return cleaned
        try:
            parsed = Symbol.parse(cleaned)
        except ValueError:
            raise Rejected(RejectReason.BAD_SYMBOL,
                           f"{text!r} is not a symbol: write it like BTCUSDT or BTC/USDT") from None
        candidate = str(parsed)
        if self._is_perpetual(markets.get(candidate)):
            return candidate
        raise Rejected(RejectReason.BAD_SYMBOL,
                       f"{text!r}: {self.name} has no {self._dialect.settle}-margined perpetual "
                       f"{candidate}" + ("" if markets else " (markets not loaded: start() first)"))

    # --- snapshots ---------------------------------------------------------------------------
    async def snapshot(self) -> VenueSnapshot:
        """Positions (with marks) and resting stops of every symbol: two calls on every venue."""
        rest = self._rest.fresh("snapshot")
        raw_positions, raw_orders = await _both(self._dialect.list_positions(rest),
                                                self._dialect.list_stops(rest, None))
        now = self._clock.now()
        # in turns of the loop, like the dialect's parsing (engine/venues/turns.py)
        positions = await in_turns(raw_positions, lambda rows: self._positions(rows, now))
        orders = await in_turns(raw_orders, lambda rows: self._orders(rows, now))
        return VenueSnapshot(tuple(positions), tuple(orders), taken_at=now, calls=rest.calls,
                             weight=rest.weight)

    async def fetch_open_orders(self) -> list[OrderReport]:
        """Resting non-trigger orders (limit entries, plain reduce-only limit take-profits) of
        every symbol: one call, more only past a full page (Bybit 50, Bitget 100)."""
        rest = self._rest.fresh("fetch_open_orders")
        if not self._exchange.markets:  # asked before start() finished: symbols need markets
            await rest("load_markets", self._exchange.load_markets())
        raws = await self._dialect.list_orders(rest)
        now = self._clock.now()
        orders = await in_turns(raws, lambda rows: self._orders(rows, now))
        return [o for o in orders if o.kind not in TRIGGER_KINDS and o.is_resting]

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        """Realized PnL, fees and funding since `since` (all symbols), oldest first, each
        movement once."""
        since_ms, now_ms = to_ms(since), to_ms(self._clock.now())
        if since_ms >= now_ms:  # nothing can have happened yet (or our clock is behind)
            return []
        rest = self._rest.fresh("fetch_ledger")
        if not self._exchange.markets:  # asked before start() finished: symbols need markets
            await rest("load_markets", self._exchange.load_markets())
        entries = await self._dialect.fetch_ledger(rest, since_ms, now_ms)
        return tidy(entries, since)

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        self._perpetual(symbol)
        # The lookup after an unknown outcome decides whether a stop is placed again: priority.
        rest = self._rest.fresh("find_order", Lane.PRIORITY)
        resting = await self._dialect.list_stops(rest, symbol)
        match = next((o for o in self._orders(resting) if o.client_id == client_id), None)
        if match is not None:
            return match
        raw = await self._dialect.find_closed(rest, symbol, client_id)
        return next(iter(self._orders([raw])), None) if raw else None

    # --- commands ----------------------------------------------------------------------------
    async def place_stop(self, request: StopRequest) -> OrderReport:
        """A stop sized to the position, or a whole-position stop where the sized form cannot
        rest (the position is below the venue's minimum order size)."""
        market = self.market(request.symbol)
        take_profit = request.kind is OrderKind.TAKE_PROFIT
        # A take-profit is always sized (the whole-position form is for stops that must rest).
        whole = not take_profit and self._below_minimum(market, request.qty)
        qty = None if whole else self._qty(market, request.qty)
        if take_profit:
            trigger = take_profit_on_tick(request.trigger_price, request.position_side,
                                          market.tick)
        else:
            trigger = self._stop_price(market, request.trigger_price, request.position_side)
        side = request.position_side.close_side
        raw = await self._dialect.place_stop(self._rest.fresh("place_stop", Lane.PRIORITY),
                                             request, fmt(trigger),
                                             None if qty is None else fmt(qty))
        return OrderReport(
            order_id=_order_id(raw, request.client_id),
            client_id=raw.get("clientOrderId") or request.client_id,
            symbol=request.symbol,
            kind=request.kind,
            side=side,
            qty=qty,
            trigger_price=trigger,
            reduce_only=True,
            status=OrderStatus.OPEN,
            updated_at=self._clock.now(),
            whole_position=whole,
        )

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal,
                         qty: Decimal) -> OrderReport:
        if not self.capabilities.amend_stop_in_place:
            raise Rejected(RejectReason.OTHER, f"{self.name} cannot amend a stop in place: "
                                               "place the new one, then cancel the old one")
        if order.kind is not OrderKind.STOP_LOSS:
            raise Rejected(RejectReason.INVALID_ORDER,
                           f"only stop-loss orders are amended, not {order.kind.value}")
        market = self.market(order.symbol)
        held = PositionSide.LONG if order.side is OrderSide.SELL else PositionSide.SHORT
        whole = order.whole_position or order.qty is None  # its size is not ours to change
        new_qty = None if whole else self._qty(market, qty)
        trigger = self._stop_price(market, trigger_price, held)
        raw = await self._dialect.amend_stop(self._rest.fresh("amend_stop", Lane.PRIORITY),
                                             order, fmt(trigger),
                                             None if new_qty is None else fmt(new_qty))
        return dataclasses.replace(order, order_id=str(raw.get("id") or order.order_id),
                                   qty=new_qty,
                                   trigger_price=trigger,
                                   status=OrderStatus.OPEN, updated_at=self._clock.now())

    async def cancel_order(self, order: OrderReport) -> None:
        # Cancels are protective (a duplicate, a zombie, the old stop after a replacement).
        rest = self._rest.fresh("cancel_order", Lane.PRIORITY)
        raw = await rest("cancel_order", self._exchange.cancel_order(
            order.order_id, order.symbol, self._dialect.cancel_params(order)))
        self._dialect.check_cancelled(raw or {}, order)

    async def market_order(self, request: MarketOrderRequest) -> OrderReport:
        market = self.market(request.symbol)
        qty = self._qty(market, request.qty)
        lane = Lane.PRIORITY if request.reduce_only else Lane.READ  # a close goes first
        rest = self._rest.fresh("market_order", lane)
        limit = request.limit_price  # a limit entry rests (GTC) at its price
        kind = OrderKind.MARKET if limit is None else OrderKind.LIMIT
        raw = await rest(f"create_order({kind.value})", self._exchange.create_order(
            request.symbol, kind.value, request.side.value, fmt(qty),
            None if limit is None else fmt(limit), self._dialect.market_order_params(request)))
        status = (self._dialect.order_status(raw, kind) if raw.get("status")
                  else OrderStatus.OPEN)
        return OrderReport(
            order_id=_order_id(raw, request.client_id),
            client_id=raw.get("clientOrderId") or request.client_id,
            symbol=request.symbol,
            kind=kind,
            side=request.side,
            qty=qty,
            trigger_price=None,
            reduce_only=request.reduce_only,
            status=status,
            updated_at=self._clock.now(),
            price=limit,
            filled=dec(raw.get("filled")),
        )

    # --- quotes (engine/ports.py Quotes): what an entry sizes itself on ----------------------
    async def mark_price(self, symbol: str) -> Decimal:
        self.market(symbol)
        rest = self._rest.fresh("mark_price")
        if self._exchange.has.get("fetchMarkPrice"):  # one light call (Binance premiumIndex)
            raw = await rest("fetch_mark_price", self._exchange.fetch_mark_price(symbol))
        else:  # Bybit's ticker carries the mark
            raw = await rest("fetch_ticker", self._exchange.fetch_ticker(symbol))
        price = dec(raw.get("markPrice")) or dec(raw.get("last"))
        if not price:
            raise Rejected(RejectReason.BAD_SYMBOL, f"{symbol}: {self.name} gives no price")
        return price

    async def equity(self) -> Decimal:
        rest = self._rest.fresh("fetch_balance")
        raw = await rest("fetch_balance", self._exchange.fetch_balance())
        total = self._dialect.equity(raw)
        if total is None:
            raise Rejected(RejectReason.OTHER, f"{self.name} gives no USDT balance")
        return total

    # --- stream ------------------------------------------------------------------------------
    def events(self) -> AsyncIterator[VenueEvent]:
        return self._streams.events()

    def price_ticks(self, symbols: frozenset[str]) -> AsyncIterator[tuple[PriceTick, ...]]:
        return watch_marks(self._marks, symbols, self._clock.now, self._translate_ticks,
                           lambda: asyncio.sleep(0))

    def _translate_ticks(self, exc: Exception) -> Exception:
        return translate(exc, venue=self._rest.venue, action="watch mark prices",
                         codes=self._dialect.codes, secrets=self._rest.secrets)

    def _stream_events(self, sub: Subscription, raws: list[Raw]) -> list[VenueEvent]:
        now = self._clock.now()
        events: list[VenueEvent] = []
        if sub.channel == "positions":
            for raw in raws:
                symbol = raw.get("symbol")
                if raw.get("contracts") is None:
                    continue  # a partial update says nothing about the size: never "flat"
                if self._is_perpetual_symbol(symbol):
                    self._dialect.observe_position(raw)
                    events.append(PositionUpdate(position_report(raw, self._dialect, now),
                                                 str(symbol)))
            return events
        events.extend(OrderUpdate(order) for order in self._orders(raws))
        return events

    def _describe_stream_error(self, sub: Subscription, exc: Exception) -> str:
        error = translate(exc, venue=self._rest.venue, action=f"watch {sub.name}",
                          codes=self._dialect.codes, secrets=self._rest.secrets)
        return f"{sub.name} stream down: {type(error).__name__}: {error}"

    # --- helpers -----------------------------------------------------------------------------
    def _hedge_mode(self) -> OperatorError:
        return OperatorError(
            f"hedge mode is not supported: switch account {self.account} to one-way mode")

    def _positions(self, raws: Sequence[Raw], now: datetime) -> list[PositionReport]:
        if any(raw.get("hedged") is True for raw in raws):  # a mode switch while running
            raise self._hedge_mode()
        return self._reports(raws, self._dialect.observe_position, position_report, now)

    def _orders(self, raws: Sequence[Raw], now: datetime | None = None) -> list[OrderReport]:
        return self._reports(raws, self._dialect.observe_order, order_report,
                             now or self._clock.now())

    def _reports(self, raws: Sequence[Raw], observe: Callable[[Raw], None],
                 report: Callable[[Raw, Dialect, datetime], Made | None],
                 now: datetime) -> list[Made]:
        """Our reports of the rows on guarded perpetuals (None: a row that says nothing)."""
        reports: list[Made] = []
        for raw in raws:
            if not self._is_perpetual_symbol(raw.get("symbol")):
                continue
            observe(raw)
            made = report(raw, self._dialect, now)
            if made is not None:
                reports.append(made)
        return reports

    def _perpetual(self, symbol: str) -> dict[str, Any]:
        market = (self._exchange.markets or {}).get(symbol)
        if not self._is_perpetual(market):
            raise Rejected(RejectReason.BAD_SYMBOL,
                           f"{symbol!r} is not a {self._dialect.settle}-margined perpetual "
                           f"on {self.name}; resolve it with resolve_symbol()")
        return market  # type: ignore[return-value]

    def _is_perpetual(self, market: object) -> bool:
        return (isinstance(market, dict) and market.get("swap") is True
                and market.get("linear") is True and market.get("settle") == self._dialect.settle)

    def _is_perpetual_symbol(self, symbol: object) -> bool:
        return isinstance(symbol, str) and self._is_perpetual(
            (self._exchange.markets or {}).get(symbol))

    @staticmethod
    def _qty(market: MarketInfo, qty: Decimal) -> Decimal:
        floored = floor_to_step(qty, market.lot)
        if floored <= 0 or floored < market.min_qty:
            raise Rejected(RejectReason.INVALID_ORDER,
                           f"{market.symbol}: quantity {qty} is below the minimum "
                           f"{market.min_qty} (lot {market.lot})")
        return floored

    @staticmethod
    def _below_minimum(market: MarketInfo, qty: Decimal) -> bool:
        """A positive size the sized stop cannot carry: under the minimum once on the lot."""
        if qty <= 0:
            return False  # a bad request: _qty says so
        floored = floor_to_step(qty, market.lot)
        return floored <= 0 or floored < market.min_qty

    @staticmethod
    def _stop_price(market: MarketInfo, price: Decimal, side: PositionSide) -> Decimal:
        rounded = conservative_stop(price, side, market.tick)
        if rounded <= 0:
            raise Rejected(RejectReason.INVALID_ORDER, f"{market.symbol}: stop price {price}")
        return rounded


def _order_id(raw: Raw, client_id: str) -> str:
    order_id = raw.get("id")
    if not order_id:
        # Accepted but unidentified: only a lookup by client id can tell what happened.
        raise OutcomeUnknown(f"venue answered without an order id; look up {client_id}")
    return str(order_id)


async def _both(first: Awaitable[list[Raw]],
                second: Awaitable[list[Raw]]) -> tuple[list[Raw], list[Raw]]:
    """Run two calls concurrently; raise the first failure only after both have finished."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]  # type: ignore[return-value]
