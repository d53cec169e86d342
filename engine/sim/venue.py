"""The Venue port over the simulated exchange, with latency, call counting and injected faults."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from engine.clock import Clock
from engine.domain.ledger import LedgerEntry
from engine.domain.reports import (
    MarketInfo,
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    PriceTick,
    StopRequest,
    VenueCapabilities,
    VenueEvent,
    VenueSnapshot,
)
from engine.domain.values import Symbol
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.sim.exchange import SimExchange
from engine.sim.ledger import sim_ledger

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Probabilities per venue command, drawn from a seeded RNG (deterministic for a seed)."""

    seed: int = 0
    transient: float = 0.0  # fails before reaching the venue
    timeout_before: float = 0.0  # times out, request never executed
    lost_response: float = 0.0  # executed, but the caller only sees a timeout
    reject: float = 0.0  # rejected as invalid
    late_positions_seconds: float = 0.0  # snapshots miss positions younger than this
    # Executed, but the caller sees a transient error: an HTTP 5xx, which ccxt maps to
    # ExchangeNotAvailable though Binance documents it as "execution status unknown".
    error_after: float = 0.0

    @property
    def any(self) -> bool:
        return any((self.transient, self.timeout_before, self.lost_response, self.reject,
                    self.late_positions_seconds, self.error_after))


class SimVenue:
    name = "sim"

    def __init__(self, exchange: SimExchange, clock: Clock, *, latency: float = 0.0,
                 streaming: bool = True, amend_in_place: bool = True,
                 faults: FaultPlan | None = None, attached_stop: bool = False) -> None:
        self.exchange = exchange
        self.clock = clock
        self.latency = latency
        self.streaming = streaming
        self.faults = faults or FaultPlan()
        self._rng = random.Random(self.faults.seed)
        self._capabilities = VenueCapabilities(amend_stop_in_place=amend_in_place,
                                               streams=streaming, attached_stop=attached_stop)
        self.calls = 0
        self.calls_by_method: dict[str, int] = {}
        self.faults_injected = 0
        self._closed = False

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._capabilities

    async def start(self) -> None:
        await self._rest("load_markets")

    async def close(self) -> None:
        self._closed = True

    def market(self, symbol: str) -> MarketInfo:
        return self.exchange.market(symbol)

    def resolve_symbol(self, text: str) -> str:
        try:
            symbol = str(Symbol.parse(text))
        except ValueError as exc:
            raise Rejected(RejectReason.BAD_SYMBOL, str(exc)) from None
        self.exchange.market(symbol)
        return symbol

    # --- snapshots ---------------------------------------------------------------------------
    async def snapshot(self) -> VenueSnapshot:
        await self._rest("fetch_positions", can_fail=True)
        now = self.clock.now()
        hide_after = now - timedelta(seconds=self.faults.late_positions_seconds)
        positions = tuple(
            report for symbol in sorted(self.exchange.positions)
            if (report := self.exchange.position_report(symbol)) is not None
            and not (self.faults.late_positions_seconds and report.opened_at
                     and report.opened_at > hide_after))
        page = self.exchange.rules.open_orders_page
        pages = max(1, -(-len(self.exchange.open_orders()) // page)) if page else 1
        for _ in range(pages):  # a venue that pages its listing charges a call per page
            await self._rest("fetch_open_orders", can_fail=True)
        orders = tuple(self.exchange.open_orders())
        return VenueSnapshot(positions=positions, orders=orders, taken_at=now, calls=1 + pages)

    async def fetch_open_orders(self) -> list[OrderReport]:
        """Resting non-trigger orders, all symbols, one call. The sim rests only trigger orders
        today (its market orders fill at once), so this is empty unless LIMIT orders appear."""
        await self._rest("fetch_open_orders(plain)", can_fail=True)
        return [o for o in self.exchange.open_orders()
                if o.kind in (OrderKind.LIMIT, OrderKind.MARKET)]

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        await self._rest("fetch_ledger", can_fail=True)
        return sim_ledger(self.exchange, since)

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        await self._rest("fetch_order", can_fail=True)
        return self.exchange.find_by_client_id(client_id)

    # --- commands ----------------------------------------------------------------------------
    async def place_stop(self, request: StopRequest) -> OrderReport:
        return await self._command("place_stop", lambda: self.exchange.place_trigger(
            symbol=request.symbol, side=request.position_side.close_side, qty=request.qty,
            trigger_price=request.trigger_price, kind=request.kind,
            client_id=request.client_id))

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal,
                         qty: Decimal) -> OrderReport:
        if not self._capabilities.amend_stop_in_place:
            raise Rejected(RejectReason.INVALID_ORDER, "amend in place not supported")
        return await self._command("amend_stop", lambda: self.exchange.amend_trigger(
            order.order_id, trigger_price, qty))

    async def cancel_order(self, order: OrderReport) -> None:
        await self._command("cancel_order", lambda: self.exchange.cancel(order.order_id))

    async def market_order(self, request: MarketOrderRequest) -> OrderReport:
        if not request.reduce_only:
            if request.stop_loss is not None and not self._capabilities.attached_stop:
                raise Rejected(RejectReason.INVALID_ORDER, "this venue attaches no stop-loss")
            return await self._command("market_order", lambda: self.exchange.entry_order(
                symbol=request.symbol, side=request.side, qty=request.qty,
                client_id=request.client_id, stop_loss=request.stop_loss,
                limit_price=request.limit_price))
        return await self._command("market_order", lambda: self.exchange.market_order(
            symbol=request.symbol, side=request.side, qty=request.qty,
            reduce_only=request.reduce_only, client_id=request.client_id))

    # --- quotes (engine/ports.py Quotes) --------------------------------------------------
    async def mark_price(self, symbol: str) -> Decimal:
        await self._rest("fetch_ticker", can_fail=True)
        self.exchange.market(symbol)
        return self.exchange.marks[symbol]

    async def equity(self) -> Decimal:
        await self._rest("fetch_balance", can_fail=True)
        return self.exchange.equity()

    # --- stream ------------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[VenueEvent]:
        """Each event arrives `latency / 2` after it happened: a transport delay, not a queue
        that slows down under a burst."""
        if not self.streaming:
            return
        queue: asyncio.Queue[tuple[float, VenueEvent]] = asyncio.Queue()
        stop_listening = self.exchange.listen(
            lambda event: queue.put_nowait((self.clock.monotonic(), event)))
        try:
            while not self._closed:
                sent, event = await queue.get()
                if self.latency:
                    await self.clock.sleep(sent + self.latency / 2 - self.clock.monotonic())
                self.exchange.save()  # what the stream tells is on disk, as for an answer
                yield event
        finally:
            stop_listening()

    async def price_ticks(self, symbols: frozenset[str]
                          ) -> AsyncIterator[tuple[PriceTick, ...]]:
        """One subscription for every symbol asked; ticks that arrive together (one step of the
        price feed) come as one batch. Same transport delay as `events()`. A venue built with
        `streaming=False` has no stream: the iterator ends at once (snapshot marks remain)."""
        if not self.streaming:
            return
        queue: asyncio.Queue[tuple[float, PriceTick]] = asyncio.Queue()

        def on_tick(tick: PriceTick) -> None:
            if tick.symbol in symbols:
                queue.put_nowait((self.clock.monotonic(), tick))

        stop_listening = self.exchange.listen_marks(on_tick)
        try:
            while not self._closed:
                sent, tick = await queue.get()
                batch = [tick]
                while not queue.empty():
                    batch.append(queue.get_nowait()[1])
                if self.latency:
                    await self.clock.sleep(sent + self.latency / 2 - self.clock.monotonic())
                yield tuple(batch)
        finally:
            stop_listening()

    # --- plumbing ----------------------------------------------------------------------------
    def _count(self, method: str) -> None:
        self.calls += 1
        self.calls_by_method[method] = self.calls_by_method.get(method, 0) + 1

    def _fault(self, error: Exception) -> Exception:
        self.faults_injected += 1
        return error

    async def _rest(self, method: str, *, can_fail: bool = False) -> None:
        self._count(method)
        if self.latency:
            await self.clock.sleep(self.latency)
        if can_fail and self.faults.transient and self._rng.random() < self.faults.transient:
            raise self._fault(Transient(f"simulated network error in {method}"))
        self.exchange.save()  # what a read reports is on disk, as for a command's answer

    async def _command(self, method: str, execute: Callable[[], T]) -> T:
        self._count(method)
        f = self.faults
        if self.latency:
            await self.clock.sleep(self.latency / 2)
        roll = self._rng.random()
        if roll < f.transient:
            raise self._fault(Transient(f"simulated network error in {method}"))
        roll -= f.transient
        if roll < f.timeout_before:
            raise self._fault(OutcomeUnknown(f"simulated timeout in {method} (not executed)"))
        roll -= f.timeout_before
        if roll < f.reject:
            raise self._fault(Rejected(RejectReason.OTHER, f"simulated rejection of {method}"))
        roll -= f.reject
        result = execute()
        if self.latency:
            await self.clock.sleep(self.latency / 2)
        self.exchange.save()  # durable before the answer (after a sleep the turn's commit was)
        if roll < f.lost_response:
            raise self._fault(OutcomeUnknown(f"simulated timeout in {method} (executed)"))
        roll -= f.lost_response
        if roll < f.error_after:
            raise self._fault(Transient(f"simulated HTTP 503 in {method} (executed)"))
        return result


async def run_price_feed(exchange: SimExchange, clock: Clock, interval: float) -> None:
    """Paper mode's market: a seeded random walk, one step per interval, until cancelled."""
    while True:
        await clock.sleep(interval)
        exchange.random_walk()
