"""OrderGateway: the one path by which any order of an account is placed, amended or cancelled.

Every change goes the same way: the intent is journaled (with its deterministic client id) before
the venue is called, transient errors are retried with back-off, an unknown outcome of a create is
looked up by client id before anything is sent again, "already gone" is one answer, and the view
is updated once. Nothing else in the engine calls a venue's commands.

Who may call it: a position's supervisor for that symbol's orders, and the account's zombie owner
for orders on flat symbols. Both hold the symbol's writer lock (`writer(symbol)`) across their
check and the venue call, so no other writer can act on the symbol in between; the gateway
refuses a call made without it. On HALT it sends nothing, but a limit entry's cancel of its own
unfilled rest (`cancel_entry_rest`): that only reduces exposure.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from enum import StrEnum

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, has_purpose
from engine.domain.reports import (
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    OrderStatus,
    PositionReport,
    StopRequest,
)
from engine.domain.values import PositionSide
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.metrics import Metrics
from engine.ports import Venue
from engine.protection.view import AccountView
from engine.retry import retry_transient

CREATE_LOOKUPS = 3  # create -> unknown -> look up by client id, at most this many rounds
CLOSE_RECHECK_SECONDS = 0.2  # a close not found yet may still be in flight: wait, look again


class AccountHalted(Exception):
    """The account is on HALT: no venue command is sent (journal-only work may go on)."""


class SideGone(Rejected):
    """A close whose side is no longer held: the position flipped (someone else reversed it)
    and the close was not found on the venue, so it did not run, and being reduce-only it
    cannot. Never reported as "ran": the caller says what the position is now."""

    def __init__(self, symbol: str, side: PositionSide) -> None:
        super().__init__(RejectReason.REDUCE_ONLY_REJECTED,
                         f"close {symbol}: the position is now {side.value}; nothing of the "
                         "side this close was for is left")
        self.side = side


class Cancelled(StrEnum):
    DONE = "done"
    GONE = "gone"  # the venue no longer had it (filled, triggered, cancelled meanwhile)


class AccountFlags:
    """Per-account state every writer must respect; owned by the guard."""

    def __init__(self) -> None:
        self.halted: str | None = None


class OrderGateway:
    def __init__(self, account: str, venue: Venue, *, view: AccountView, bus: EventBus,
                 clock: Clock, rng: random.Random, metrics: Metrics,
                 flags: AccountFlags) -> None:
        self.account = account
        self.venue = venue
        self.view = view
        self.bus = bus
        self.clock = clock
        self.rng = rng
        self.metrics = metrics
        self.flags = flags
        self._writers: dict[str, asyncio.Lock] = {}

    def writer(self, symbol: str) -> asyncio.Lock:
        """The symbol's writer lock: one writer (supervisor or zombie owner) at a time."""
        lock = self._writers.get(symbol)
        if lock is None:
            lock = self._writers[symbol] = asyncio.Lock()
        return lock

    # --- commands ------------------------------------------------------------------------------
    async def place_stop(self, request: StopRequest, action: ev.StopAction,
                         publish: Callable[[ev.Event], Awaitable[None]]) -> OrderReport:
        """Journal the intent, place (looking up by client id after an unknown outcome), and put
        the resting order in the view. Raises Rejected, OutcomeUnknown, AccountHalted."""
        return await self._place_trigger(request, ev.StopIntent(
            account=self.account, symbol=request.symbol, action=action,
            client_id=request.client_id, trigger_price=request.trigger_price, qty=request.qty),
            publish)

    async def place_take_profit(self, request: StopRequest,
                                publish: Callable[[ev.Event], Awaitable[None]]) -> OrderReport:
        """The exit plan's reduce-only take-profit (`request.kind` TAKE_PROFIT), the same way
        as a stop: intent first, looked up by client id after an unknown outcome."""
        return await self._place_trigger(request, ev.TakeProfitIntent(
            account=self.account, symbol=request.symbol, client_id=request.client_id,
            trigger_price=request.trigger_price, qty=request.qty), publish)

    async def _place_trigger(self, request: StopRequest, intent: ev.Event,
                             publish: Callable[[ev.Event], Awaitable[None]]) -> OrderReport:
        self._enter(request.symbol)
        await publish(intent)
        self._still_allowed()  # HALT may have come while the intent was being written
        order = await self._create(request.symbol, request.client_id,
                                   lambda: self.venue.place_stop(request), "place_stop")
        self._count("place_stop")
        if order.is_resting:
            self.view.set_order(order)
        return order

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal, qty: Decimal,
                         publish: Callable[[ev.Event], Awaitable[None]]) -> OrderReport | None:
        """Amend in place (venues that can). None: the order was gone (dropped from the view).
        Raises Rejected, OutcomeUnknown (it may or may not have taken), AccountHalted."""
        self._enter(order.symbol)
        await publish(ev.StopIntent(
            account=self.account, symbol=order.symbol, action=ev.StopAction.AMEND,
            client_id=order.client_id or order.order_id, trigger_price=trigger_price, qty=qty))
        self._still_allowed()  # HALT may have come while the intent was being written
        try:
            amended = await retry_transient(
                lambda: self.venue.amend_stop(order, trigger_price, qty), self.clock,
                rng=self.rng)
        except Rejected as exc:
            if exc.reason is not RejectReason.ORDER_NOT_FOUND:
                raise
            self.view.drop_order(order.order_id)
            return None
        finally:
            self._count("amend_stop")
        self.view.set_order(amended)
        return amended

    async def cancel(self, order: OrderReport, reason: ev.CancelReason,
                     publish: Callable[[ev.Event], Awaitable[None]], *,
                     by: str = "") -> Cancelled:
        """Journal the intent, cancel, drop it from the view. An order the venue no longer has
        is GONE, not an error. Raises Rejected (other reasons), OutcomeUnknown (still in the
        view: the next look decides), Transient past the retries, AccountHalted."""
        self._enter(order.symbol)
        return await self._cancel(order, reason, publish, by=by, on_halt=False)

    async def cancel_entry_rest(self, order: OrderReport, reason: ev.CancelReason,
                                publish: Callable[[ev.Event], Awaitable[None]]) -> Cancelled:
        """HALT's one exception: our own limit entry's unfilled rest is cancelled even on HALT.
        It can only reduce exposure, and left resting it fills unprotected until /resume.
        Anything else (a stop, a reduce-only order, a person's order) is refused here."""
        if (order.kind is not OrderKind.LIMIT or order.reduce_only
                or not has_purpose(order.client_id, OrderPurpose.ENTRY)):
            raise ValueError(f"{order.order_id} is not a limit entry of ours")
        if not self.writer(order.symbol).locked():
            raise RuntimeError(f"{order.symbol}: order change outside its writer")
        return await self._cancel(order, reason, publish, by="", on_halt=True)

    async def _cancel(self, order: OrderReport, reason: ev.CancelReason,
                      publish: Callable[[ev.Event], Awaitable[None]], *, by: str,
                      on_halt: bool) -> Cancelled:
        await publish(ev.CancelIntent(
            account=self.account, symbol=order.symbol, order_id=order.order_id,
            client_id=order.client_id, reason=reason, by=by))
        if not on_halt:
            self._still_allowed()  # HALT may have come while the intent was being written
        try:
            await retry_transient(lambda: self.venue.cancel_order(order), self.clock,
                                  rng=self.rng)
            outcome = Cancelled.DONE
        except Rejected as exc:
            if exc.reason is not RejectReason.ORDER_NOT_FOUND:
                raise
            outcome = Cancelled.GONE
        finally:
            self._count("cancel_order")
        self.view.drop_order(order.order_id)
        return outcome

    async def close(self, request: MarketOrderRequest, reason: ev.CloseReason, by: str,
                    publish: Callable[[ev.Event], Awaitable[None]]) -> OrderReport:
        """Reduce-only market close: journal the intent, send, and when it filled at once shrink
        the position in the view so nobody closes it a second time on an older picture.

        A market order is never sent twice on a guess. Any failed send may have executed (a
        5xx is "status unknown" on Binance, which also accepts a filled order's client id
        again), so before a resend the order is looked up by client id AND the position is
        read: if it already shrank by the requested size, the close is taken as done."""
        self._enter(request.symbol)
        await publish(ev.CloseIntent(account=self.account, symbol=request.symbol,
                                     client_id=request.client_id, qty=request.qty,
                                     reason=reason, by=by))
        self._still_allowed()  # HALT may have come while the intent was being written
        before = self.view.position(request.symbol)
        order = await self._send_close(request, before)
        report = self.view.position(request.symbol)
        if report is not before:
            return order  # the stream already told us what the fill left: it is fresher
        if report is not None and request.side is not report.side.close_side:
            # The position flipped before the close ran: this close cannot have reduced it, so
            # the view's size is left alone (shrinking it invented a position of a size the
            # venue never had; issue 15 chaos, streaming-50ms-harsh seed 404).
            return order
        if order.status is OrderStatus.FILLED and order.qty is not None and report is not None:
            if order.qty < request.qty:
                # A reduce-only fill smaller than asked: the venue clamped it to the position.
                self.view.set_position(request.symbol, None)
            elif report.qty > order.qty:
                self.view.set_position(request.symbol, replace(report, qty=report.qty - order.qty))
            else:
                # Our view says this closed it all, but the position may have grown since our
                # last look: ask, rather than take it for flat and leave the rest unguarded.
                snapshot = await retry_transient(self.venue.snapshot, self.clock, rng=self.rng)
                self._count("snapshot")
                self.view.set_position(request.symbol, snapshot.position(request.symbol))
        return order

    async def enter(self, request: MarketOrderRequest, intent: ev.EntryIntent,
                    publish: Callable[[ev.Event], Awaitable[None]]) -> OrderReport | None:
        """An entry (engine/entries): journal the intent, send it ONCE, and after any failure
        that may have reached the venue look it up by client id. Never a resend: Binance takes
        a filled order's id again, so a resend could open the position twice. None: the venue
        shows no such order (a late one is a position like any other: the guard adopts it).
        Raises Rejected (nothing was opened), AccountHalted."""
        self._enter(request.symbol)
        await publish(intent)
        self._still_allowed()  # HALT may have come while the intent was being written
        symbol, cid = request.symbol, request.client_id
        try:
            return await self.venue.market_order(request)
        except Rejected as exc:
            if exc.reason is not RejectReason.DUPLICATE_CLIENT_ID:
                raise
        except (Transient, OutcomeUnknown):
            pass  # may have executed: look it up, never send it again
        finally:
            self._count("entry_order")
        for attempt in range(CREATE_LOOKUPS):
            found = await retry_transient(lambda: self.venue.find_order(symbol, cid),
                                          self.clock, rng=self.rng)
            self._count("find_order")
            if found is not None:
                return found
            await self.clock.sleep(CLOSE_RECHECK_SECONDS * (attempt + 1))
        return None

    async def _send_close(self, request: MarketOrderRequest,
                          before: PositionReport | None) -> OrderReport:
        symbol, cid = request.symbol, request.client_id
        for attempt in range(CREATE_LOOKUPS):
            if self.flags.halted:
                raise AccountHalted(self.flags.halted)
            try:
                return await self.venue.market_order(request)
            except Rejected as exc:
                if attempt > 0 and exc.reason is RejectReason.REDUCE_ONLY_REJECTED:
                    flipped = self._flipped_away(request)
                    if flipped is None:
                        return self._ran(request)  # nothing left to reduce: the first send ran
                    # Nothing of the side this close was for is left because the position
                    # flipped, not because the first send ran: say so (refused, not "ran").
                    raise SideGone(symbol, flipped) from exc
                if exc.reason is not RejectReason.DUPLICATE_CLIENT_ID:
                    raise
            except (Transient, OutcomeUnknown):
                pass  # may have executed: find out before anything is sent again
            finally:
                self._count("market_order")
            found = await retry_transient(lambda: self.venue.find_order(symbol, cid),
                                          self.clock, rng=self.rng)
            self._count("find_order")
            if found is not None:
                return found
            snapshot = await retry_transient(self.venue.snapshot, self.clock, rng=self.rng)
            self._count("snapshot")
            now = snapshot.position(symbol)
            if now is not None:
                self.view.set_position(symbol, now)
            if before is not None and now is not None and now.side is not before.side:
                # Flipped, and our close not found: someone else reversed the position. A
                # reduce-only close of the old side cannot have made the new one: not "ran".
                raise SideGone(symbol, now.side)
            if before is not None and now is not None and now.qty <= before.qty - request.qty:
                return self._ran(request)  # not found by id (yet), but the position shrank
            # Still the size it was, or absent (REST may lag): a resend is safe, being
            # reduce-only it can never open or grow a position.
            await self.clock.sleep(CLOSE_RECHECK_SECONDS * (attempt + 1))
        raise OutcomeUnknown(f"close {symbol}: outcome still unknown for {cid}")

    def _flipped_away(self, request: MarketOrderRequest) -> PositionSide | None:
        """The side the view shows the symbol on when this close cannot reduce it, else None."""
        report = self.view.position(request.symbol)
        if report is None or request.side is report.side.close_side:
            return None
        return report.side

    def _ran(self, request: MarketOrderRequest) -> OrderReport:
        """A close we know ran, though the venue never showed us the order."""
        return OrderReport(
            order_id=f"unknown:{request.client_id}", client_id=request.client_id,
            symbol=request.symbol, kind=OrderKind.MARKET, side=request.side, qty=request.qty,
            trigger_price=None, reduce_only=True, status=OrderStatus.FILLED,
            updated_at=self.clock.now())

    # --- helpers -------------------------------------------------------------------------------
    def _still_allowed(self) -> None:
        if self.flags.halted:
            raise AccountHalted(self.flags.halted)

    def _enter(self, symbol: str) -> None:
        """Every command: the caller is the symbol's writer, and the account is not halted."""
        if not self.writer(symbol).locked():
            raise RuntimeError(f"{symbol}: order change outside its writer")
        if self.flags.halted:
            raise AccountHalted(self.flags.halted)

    async def _create(self, symbol: str, cid: str, call: Callable[[], Awaitable[OrderReport]],
                      operation: str) -> OrderReport:
        """Create; after any failure that may have reached the venue (an unknown outcome, a 5xx
        that ccxt calls transient, a reused id), look the order up by client id before sending
        it again, so a lost response never becomes a second order, even on a venue that takes
        a finished order's id again."""
        for attempt in range(CREATE_LOOKUPS):
            if self.flags.halted:
                raise AccountHalted(self.flags.halted)
            try:
                return await call()
            except Rejected as exc:
                if exc.reason is not RejectReason.DUPLICATE_CLIENT_ID:
                    raise
            except Transient:
                # Network, rate limit or a 5xx that may have run: back off (full jitter), and
                # look it up before sending it again.
                await self.clock.sleep(self.rng.uniform(0, 0.2 * 2 ** attempt))
            except OutcomeUnknown:
                pass  # the lookup below decides at once
            found = await retry_transient(lambda: self.venue.find_order(symbol, cid),
                                          self.clock, rng=self.rng)
            self._count("find_order")
            if found is not None:
                return found
        raise OutcomeUnknown(f"{operation} {symbol}: outcome still unknown for {cid}")

    def _count(self, operation: str) -> None:
        self.metrics.venue_calls.labels(self.account, operation).inc()

