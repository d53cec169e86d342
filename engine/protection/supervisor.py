"""One supervisor per guarded position: the only code that changes that position's stops.

Everything else (reconcile, the stream, /fix_sl, closes, /cancel_all, trailing later) asks it to
act. It holds the symbol's writer lock, re-plans from the freshest view every time it acts, and
changes orders only through the account's OrderGateway (intent journaled first, with its
deterministic client id). It talks to its account through an AccountContext, never the guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, client_order_id, has_purpose
from engine.domain.position import GuardedPosition, PositionState, StopRef
from engine.domain.reports import (
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    OrderStatus,
    PositionReport,
    StopRequest,
)
from engine.domain.values import ZERO, PositionSide
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason, Transient
from engine.protection.context import AccountContext
from engine.protection.orders import AccountHalted, Cancelled, SideGone
from engine.protection.policy import CrossedPolicy
from engine.protection.reconcile import (
    Action,
    AdoptPosition,
    AdoptStop,
    CancelStop,
    CancelTakeProfit,
    ClosePosition,
    MoveStop,
    PlaceStop,
    PlaceTakeProfit,
    RecordClose,
    Resized,
    ResizeStop,
    is_our_take_profit,
    pick_stop,
    plan_position,
)
from engine.protection.view import read_snapshot
from engine.results import CancelSkip, CloseStatus

# plan -> act -> re-plan. Each round sends at most one venue command, then plans again from the
# view that command changed; a healthy position settles in one to three rounds.
MAX_ROUNDS = 12
REJECT_BACKOFF = (0.5, 30.0)  # after a hard rejection: first pause, longest pause (doubling)
REJECTIONS_FORGOTTEN_AFTER = 60.0  # seconds without a rejection: the next one starts over
# Refusals that retrying the same stop will not fix. After GIVE_UP_AFTER of them in a row the
# position is reported loudly (it stays on the SLA clock) and tried again only every
# GIVE_UP_PAUSE seconds, or at once when it changes.
PERMANENT = frozenset({RejectReason.INVALID_ORDER, RejectReason.INSUFFICIENT_FUNDS,
                       RejectReason.BAD_SYMBOL, RejectReason.TOO_MANY_STOPS})
GIVE_UP_AFTER = 4
GIVE_UP_PAUSE = 300.0
VENUE_ACTIONS = (PlaceStop, ResizeStop, CancelStop, ClosePosition, RecordClose, MoveStop,
                 PlaceTakeProfit, CancelTakeProfit)


T = TypeVar("T")


class SupervisorRetired(Exception):
    """The supervisor ended (its position closed) before it could act as writer."""


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What a requested close did; `events` tell the details (fill, PnL)."""

    status: CloseStatus
    events: tuple[ev.Event, ...] = ()
    detail: str = ""


class PositionSupervisor:
    def __init__(self, ctx: AccountContext, symbol: str,
                 known: GuardedPosition | None = None) -> None:
        self.ctx = ctx
        self.symbol = symbol
        self.known = known
        self.finished = False
        self._lock = ctx.orders.writer(symbol)  # shared with the zombie owner of this symbol
        self._wake_pending = False
        self._events: list[ev.Event] = []
        self._missing_announced = False
        self.backoff_until: float = 0.0  # after a hard rejection, don't hammer the venue
        self._rejections = 0  # in a row; the backoff doubles with each
        self._last_rejection = float("-inf")
        self._last_refusal: tuple[RejectReason, str] | None = None
        self._permanent = 0  # permanent refusals in a row
        self._failures = 0  # venue failures (unknown outcome, transient) in a row
        self.entry_key = ""  # an entry of ours runs (or ran) here: its position is no stranger
        # The take-profit (price, qty) the venue refused: not sent again until either changes.
        self._tp_refused: tuple[Decimal, Decimal] | None = None
        self._tp_fired = False  # the stream showed our take-profit fire (this position)
        self._last_refused: Rejected | None = None  # the venue's last refusal, for _move
        self._move_failing = False  # a failed move was reported; quiet until one succeeds
        # The price of our take-profit as it rested when this supervisor last acted: what a
        # hit closed at, where no streamed fill tells better.
        self._tp_resting: Decimal | None = None
        self._resumed = known is not None  # from the journal: its exit plan is checked once

    # --- requests ----------------------------------------------------------------------------
    async def ensure(self) -> list[ev.Event]:
        """Bring this position to exactly one stop, sized to it; return what was done."""
        async with self._lock:
            self._wake_pending = False
            return await self._run(self._ensure)

    async def as_writer(self, body: Callable[[AccountContext], Awaitable[T]], *,
                        entry: str = "") -> T:
        """Run an entry (engine/entries) as this position's writer, then adopt and protect what
        it left before any other writer may act on the symbol. Raises SupervisorRetired when
        this supervisor ended meanwhile (the caller asks its guard for a new one)."""
        async with self._lock:
            if self.finished:
                raise SupervisorRetired(self.symbol)
            self.entry_key = entry or self.entry_key  # what it opens is ours, not "found"
            try:
                return await body(self.ctx)
            finally:
                self._wake_pending = False
                await self._run(self._ensure)

    def wake(self) -> asyncio.Task[list[ev.Event]] | None:
        """Fire-and-forget ensure, coalesced: at most one waiting wake per position."""
        if self._wake_pending or self.finished:
            return None
        self._wake_pending = True
        return self.ctx.spawn(self.ensure(), f"ensure {self.symbol}")

    async def close(self, reason: ev.CloseReason, *, by: str = "",
                    max_qty: Decimal | None = None, side: PositionSide | None = None,
                    generation: int | None = None) -> CloseResult:
        """Reduce-only market close (of at most `max_qty`) of the position approved (`side`,
        `generation`); the stop stays until the venue shows the position flat. Nothing is sent
        while an earlier close is still in flight, on HALT, or when the position is not the
        one approved."""
        async with self._lock:
            status: list[CloseResult] = []

            async def do() -> None:
                if self.known is None:
                    await self._ensure()  # not adopted yet: adopt (and protect) it first
                report, known = self.ctx.view.position(self.symbol), self.known
                if self.ctx.halted:
                    status.append(CloseResult(CloseStatus.HALTED, detail=self.ctx.halted))
                    return
                if report is None:
                    status.append(CloseResult(CloseStatus.ALREADY_FLAT))
                    return
                if side is not None and report.side is not side:
                    status.append(CloseResult(CloseStatus.CHANGED, detail=report.side.value))
                    return
                if (generation is not None and known is not None
                        and known.generation != generation):
                    status.append(CloseResult(CloseStatus.CHANGED, detail="reopened"))
                    return
                if known is None or self.closing:
                    status.append(CloseResult(CloseStatus.IN_PROGRESS))
                    return
                qty = report.qty if max_qty is None else min(max_qty, report.qty)
                await self._close(ClosePosition(self.symbol, qty, reason), by=by)
                gone = next((e for e in self._events if isinstance(e, ev.CloseSideGone)), None)
                if gone is not None:  # reversed by someone else: not closed, say what it is
                    status.append(CloseResult(CloseStatus.CHANGED, detail=gone.now.value))
                await self._ensure()

            events = await self._run(do)
            if status:
                return replace(status[0], events=tuple(events))
            return CloseResult(_close_status(events, halted=self.ctx.halted), tuple(events))

    async def cancel_order(self, order: OrderReport, *, by: str) -> CancelSkip | None:
        """A person's cancel (/cancel_all) of an order on this position's symbol. Re-checked
        under the writer lock: the position's own stop is never cancelled this way."""
        async with self._lock:
            report = self.ctx.view.position(self.symbol)
            known_stop = self.known.stop if self.known is not None else None
            if ((report is not None and order.is_stop_for(report.side))
                    or (known_stop is not None and known_stop.order_id == order.order_id)):
                return CancelSkip.PROTECTS
            try:
                done = await self.ctx.orders.cancel(order, ev.CancelReason.CANCEL_ALL,
                                                    self.ctx.bus.publish, by=by)
            except AccountHalted:
                return CancelSkip.HALTED
            if done is Cancelled.GONE:
                return CancelSkip.GONE
            self.wake()  # what is left of the symbol's orders is re-planned at once
            return None

    async def move_stop_to(self, price: Decimal) -> list[ev.Event]:
        """A person's stop price (/sl; a looser one was confirmed before): the resting stop is
        moved there under the writer lock, sized to the position, never through the mark."""
        async with self._lock:
            async def do() -> None:
                report, known = self.ctx.view.position(self.symbol), self.known
                if report is None or known is None or self.ctx.halted:
                    return
                stops = [o for o in self.ctx.view.orders(self.symbol)
                         if o.is_stop_for(report.side)]
                if not stops or self.ctx.policy.is_crossed(report.side, price,
                                                          report.mark_price):
                    return
                keep = pick_stop(stops, known.stop, report.side)
                await self._move(MoveStop(self.symbol, keep, price, report.qty))

            return await self._run(do)

    def order_seen(self, order: OrderReport) -> None:
        """The stream reported one of this symbol's orders: note when it is our stop firing."""
        known = self.known
        if (known is not None and known.stop is not None
                and order.order_id == known.stop.order_id
                and order.status in (OrderStatus.FILLED, OrderStatus.TRIGGERED)):
            known.stop_fired = True
        if (known is not None and order.kind is OrderKind.TAKE_PROFIT
                and has_purpose(order.client_id, OrderPurpose.TAKE_PROFIT)
                and order.status in (OrderStatus.FILLED, OrderStatus.TRIGGERED)):
            self._tp_fired = True
            self._tp_resting = order.trigger_price or self._tp_resting

    def sla_breached(self, now: datetime) -> float | None:
        """Seconds without a stop, the first time they pass the SLA (once per episode)."""
        known = self.known
        if known is None or known.sla_alerted:
            return None
        waited = self.unprotected_for(now)
        if waited <= self.ctx.policy.sla_seconds:
            return None
        known.sla_alerted = True
        return waited

    def position_seen(self, report: PositionReport | None) -> None:
        """The venue reported the symbol: keep the last mark (it prices the close if the
        position vanishes). Flat after our stop fired is this position's end, even if a new
        one on the same side is open before we look."""
        known = self.known
        if known is None:
            return
        if report is not None:
            known.last_mark = report.mark_price
        elif known.stop_fired:
            known.flat_after_stop = True

    @property
    def closing(self) -> bool:
        pending = self.known.close_pending_until if self.known is not None else None
        return pending is not None and self.ctx.clock.now() < pending

    async def _run(self, body: Callable[[], Awaitable[None]]) -> list[ev.Event]:
        self._events = []
        if self.finished:
            return []
        try:
            await body()
        except AccountHalted:
            pass
        except OperatorError as exc:
            await self.ctx.halt(f"{self.symbol}: {exc}")
        except (Transient, OutcomeUnknown) as exc:
            await self._publish(ev.VenueFailure(
                account=self.ctx.account, operation=f"protect {self.symbol}",
                error=type(exc).__name__, message=str(exc)))
            self._retry_after_failure()
        finally:
            self._account_for_protection()
            if self.known is None and self.ctx.view.position(self.symbol) is None:
                self._finish()  # nothing (left) to guard: never linger
        return self._events

    def _finish(self) -> None:
        self.finished = True
        self.ctx.retire(self.symbol, self)

    # --- the loop ----------------------------------------------------------------------------
    async def _ensure(self) -> None:
        ctx = self.ctx
        for _ in range(MAX_ROUNDS):
            await ctx.pace()  # a round plans over the view: ready rounds take turns
            if self.finished:
                return
            if ctx.clock.monotonic() < self.backoff_until and not self._changed_since_give_up():
                return
            await self._confirm_after_gap()
            if self._resumed:
                await self._check_resumed_plan()
            actions = plan_position(self.known, ctx.view.position(self.symbol),
                                    ctx.view.orders(self.symbol), ctx.venue.market(self.symbol),
                                    ctx.policy, ctx.clock.now())
            if not actions:
                return
            if ctx.halted:
                # No venue commands on HALT; what only the journal needs (adopting a position
                # or a resting stop, a new size) still happens.
                for action in actions:
                    if not isinstance(action, VENUE_ACTIONS):
                        await self._execute(action)
                return
            for action in actions:
                progressed = await self._execute(action)
                if self.finished or not progressed:
                    return  # nothing changed: the next wake or look tries again
                if isinstance(action, VENUE_ACTIONS):
                    break  # the venue moved on: plan again on what it now shows

    async def _execute(self, action: Action) -> bool:
        """Carry out one action; False when it made no progress (refused, unknown, halted)."""
        match action:
            case AdoptPosition(position=report):
                await self._adopt(report)
            case RecordClose(leftovers=leftovers):
                return await self._record_close(leftovers)
            case Resized(new_qty=new_qty, old_qty=old_qty, entry_price=entry_price):
                assert self.known is not None
                self.known.qty = new_qty
                if entry_price > 0:  # an add moves the average: breakeven's base follows it
                    self.known.entry_price = entry_price
                await self._publish(ev.PositionResized(
                    account=self.ctx.account, symbol=self.symbol, old_qty=old_qty,
                    new_qty=new_qty, entry_price=self.known.entry_price))
                await self.ctx.store.save(self.known)
                if self.ctx.exits is not None:
                    await self.ctx.exits.resized(self.known)
            case PlaceStop():
                return await self._place(action)
            case AdoptStop(order=order):
                await self._adopt_stop(order)
            case ResizeStop(order=order, qty=qty):
                return await self._resize(order, qty)
            case MoveStop():
                return await self._move(action)
            case CancelStop(order=order, reason=reason):
                return await self._cancel(order, ev.CancelReason(reason))
            case ClosePosition():
                return await self._close(action)
            case PlaceTakeProfit():
                return await self._place_take_profit(action)
            case CancelTakeProfit(order=order, reason=reason):
                return await self._cancel_take_profit(order, ev.CancelReason(reason))
        return True

    # --- actions -----------------------------------------------------------------------------
    async def _check_resumed_plan(self) -> None:
        """The first look after a restart: is the venue's position still the one its exit plan
        was made for (`ExitBook.check_resumed`)? Else the plan goes, said and journaled."""
        known, report, exits = self.known, self.ctx.view.position(self.symbol), self.ctx.exits
        if known is None or report is None or report.side is not known.side:
            return  # gone or flipped: recording the close forgets the plan
        self._resumed = False
        if report.opened_at is not None and report.opened_at == known.opened_at:
            return  # a venue that tells open times: the same position (another is re-adopted)
        stop = known.stop
        rests = stop is not None and any(
            o.order_id == stop.order_id for o in self.ctx.view.orders(self.symbol))
        if exits is not None and (
                dropped := await exits.check_resumed(known, report.entry_price, rests)):
            await self._publish(dropped)

    async def _adopt(self, report: PositionReport) -> None:
        ctx = self.ctx
        generation = await ctx.state.incr("generation", f"{ctx.account}|{self.symbol}")
        opened = report.opened_at
        since = max(opened, ctx.started_at) if opened else ctx.clock.now()
        self.known = GuardedPosition(
            account=ctx.account, symbol=self.symbol, side=report.side, qty=report.qty,
            entry_price=report.entry_price, generation=generation, opened_at=opened,
            unprotected_since=since, last_mark=report.mark_price)
        await self._publish(ev.PositionAdopted(
            account=ctx.account, symbol=self.symbol, side=report.side, qty=report.qty,
            entry_price=report.entry_price, generation=generation, entry=self.entry_key))
        self.entry_key = ""  # a later position on the symbol is whoever's it is
        await ctx.store.save(self.known)

    async def _record_close(self, leftovers: tuple[OrderReport, ...]) -> bool:
        ctx, known = self.ctx, self.known
        assert known is not None
        if leftovers and not ctx.halted:
            fresh = await self._fresh_position()
            if fresh is not None and fresh.side is known.side:
                return False  # our view said flat, the venue says otherwise: keep every stop
            # Flat, or flipped: the old side is closed either way (its close is recorded).
        tp_hit = self._tp_fired or self._tp_gone(leftovers)
        for order in leftovers:  # the venue shows it flat: now, and only now, its stops may go
            if ctx.halted:
                break  # no commands on HALT; they stay as zombies for later
            if order.kind is OrderKind.TAKE_PROFIT:
                await self._cancel_take_profit(order, ev.CancelReason.POSITION_CLOSED)
            else:
                await self._cancel(order, ev.CancelReason.POSITION_CLOSED)
        realized, exit_price = ctx.realized_since(self.symbol, known.opened_at)
        if exit_price is None:
            exit_price = self._tp_resting if tp_hit else known.last_mark
            if exit_price is not None:
                realized = (exit_price - known.entry_price) * known.qty * known.side.sign
        known.move_to(PositionState.CLOSED)
        await self._publish(ev.PositionClosed(
            account=ctx.account, symbol=self.symbol, side=known.side, qty=known.qty,
            entry_price=known.entry_price, exit_price=exit_price, realized_pnl=realized,
            reason=ev.CloseReason.TAKE_PROFIT if tp_hit else ev.CloseReason.ON_VENUE))
        self._tp_fired, self._tp_refused, self._tp_resting = False, None, None
        self._move_failing = False
        await ctx.store.delete(ctx.account, self.symbol)
        if ctx.exits is not None:
            await ctx.exits.forget(self.symbol)
        self.known = None
        if ctx.view.position(self.symbol) is None:
            self._finish()
        return True

    async def _place(self, action: PlaceStop, *, replacing: OrderReport | None = None,
                     moving: bool = False) -> bool:
        ctx, known = self.ctx, self.known
        assert known is not None
        now = ctx.clock.now()
        if replacing is None and known.unprotected_since is None:
            known.unprotected_since = now
        if replacing is None and known.state is not PositionState.UNPROTECTED:
            known.move_to(PositionState.UNPROTECTED)
        if replacing is None:
            await self._announce_missing()
        if ctx.halted:
            raise AccountHalted(ctx.halted)
        report = ctx.view.position(self.symbol)
        if action.crossed_from is not None and report is not None:
            await self._publish(ev.StopCrossed(
                account=ctx.account, symbol=self.symbol, stop_price=action.crossed_from,
                mark_price=report.mark_price, action=ev.CrossedAction.TIGHTEN))
        cid = client_order_id(ctx.account, self.symbol, known.generation, OrderPurpose.STOP,
                              known.stop_seq)
        request = StopRequest(self.symbol, known.side, action.qty, action.trigger_price, cid)
        kind = ev.StopAction.REPLACE if replacing else ev.StopAction.PLACE
        try:
            order = await ctx.orders.place_stop(request, kind, self._publish)
        except (Transient, OutcomeUnknown):
            # The id may have placed an order after all (adopted when it shows): it is used up,
            # or a venue that takes a finished order's id again (Binance) would run it twice.
            known.stop_seq += 1
            await ctx.store.save(known)
            raise
        except Rejected as exc:
            known.stop_seq += 1
            await ctx.store.save(known)
            if (exc.reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY and report is not None
                    and replacing is None):
                return await self._on_would_trigger(action, report)
            # A replacement through the venue's fresher mark: the old stop still rests and
            # protects; never a close for it (and the old one is not cancelled).
            await self._rejected(cid, exc, moving=moving)
            return False
        known.stop_seq += 1
        self._succeeded()
        if not order.is_resting:  # found by client id, but it already fired or was cancelled
            await ctx.store.save(known)
            return False
        known.stop = _stop_ref(order)
        ttp = None
        if replacing is None and known.unprotected_since is not None:
            ttp = Decimal(str(round((ctx.clock.now() - known.unprotected_since).total_seconds(),
                                    3)))
            known.last_time_to_protect = ttp
            ctx.metrics.time_to_protect.labels(ctx.account).observe(float(ttp))
        ctx.metrics.stoploss_placed.labels(ctx.account).inc()
        self._mark_protected()
        await self._publish(ev.StopPlaced(
            account=ctx.account, symbol=self.symbol, order_id=order.order_id, client_id=cid,
            trigger_price=action.trigger_price, qty=action.qty, time_to_protect=ttp))
        await ctx.store.save(known)
        return True

    async def _on_would_trigger(self, action: PlaceStop, report: PositionReport) -> bool:
        """The venue says the stop is already through the market: the policy decides."""
        ctx = self.ctx
        market = ctx.venue.market(self.symbol)
        closing = self.closing  # a close is in flight: never a second one
        if (ctx.policy.crossed is CrossedPolicy.TIGHTEN or closing) and action.crossed_from is None:
            # Our mark is older than the venue's: tighten from a fresh one, or we would be
            # refused again and close a position the policy said to keep.
            fresh = await self._fresh_position()
            if fresh is None:
                return True  # gone meanwhile: the next round records the close
            tight = ctx.policy.tightened(fresh.side, fresh.mark_price, market)
            return await self._place(replace(action, trigger_price=tight,
                                             crossed_from=action.trigger_price))
        if closing:
            return False
        return await self._close(ClosePosition(
            self.symbol, report.qty, ev.CloseReason.STOP_CROSSED, action.trigger_price,
            report.mark_price))

    async def _fresh_position(self) -> PositionReport | None:
        ctx = self.ctx
        # Into the view as the snapshot it is (its merge rules: the stream's word stands; a
        # snapshot begun later wins), also where it shows a symbol flat: else the next round
        # re-plans on an older picture and adopts a position that is gone (issue 15 chaos:
        # rest-only-0ms-today seed 301, 200ms seeds 543, 456; 50ms-harsh seed 401).
        snapshot = await read_snapshot(ctx.view, ctx.venue.snapshot, ctx.clock, rng=ctx.rng)
        return snapshot.position(self.symbol)

    async def _confirm_after_gap(self) -> None:
        """Before adopting a position the stream reported ahead of a gap in it, look again: the
        close may have been among the events lost, and a stale adoption puts a stop on a flat
        symbol (issue 13 chaos: streaming-50ms-clean-chaos-harsh seed 116)."""
        report, known = self.ctx.view.position(self.symbol), self.known
        if (report is not None and not self.ctx.view.vouched(self.symbol)
                and (known is None or known.side is not report.side)):
            await self._fresh_position()

    async def _adopt_stop(self, order: OrderReport) -> None:
        known = self.known
        assert known is not None
        known.stop = _stop_ref(order)
        self._mark_protected()
        await self._publish(ev.StopAdopted(
            account=self.ctx.account, symbol=self.symbol, order_id=order.order_id,
            client_id=order.client_id, trigger_price=order.trigger_price, qty=order.qty))
        await self.ctx.store.save(known)

    async def _move(self, action: MoveStop) -> bool:
        """Tighten the stop for the exit plan: its state is stored before the amend is sent."""
        exits, known = self.ctx.exits, self.known
        assert known is not None
        if exits is not None:
            await exits.before_move(known, action.trigger_price)
        self._last_refused = None
        done = False
        try:
            done = await self._resize(action.order, action.qty, action.trigger_price)
        except Transient as exc:  # past the gateway's retries
            await self._move_failed(action, type(exc).__name__, str(exc))
            raise
        finally:  # also on HALT or a bug: the book must not think it still in flight
            if exits is not None:
                exits.after_move(self.symbol, action.trigger_price, done)
        if done:
            self._move_failing = False
            if action.order.trigger_price is not None:
                await self._publish(ev.StopMoved(
                    account=self.ctx.account, symbol=self.symbol,
                    old_price=action.order.trigger_price, new_price=action.trigger_price))
        elif (self._last_refused is not None
              and self._last_refused.reason is not RejectReason.WOULD_TRIGGER_IMMEDIATELY):
            # (Through the venue's fresher mark: the price came back; the next tick decides.)
            await self._move_failed(action, self._last_refused.reason.value,
                                    self._last_refused.message)
        return done

    async def _move_failed(self, action: MoveStop, reason: str, message: str) -> None:
        """Loud, and once per position until a move succeeds: a venue that keeps refusing
        must page a person once, not at every tick's retry (an outcome unknown is not a
        failure: the next look tells whether the move took)."""
        if self._move_failing:
            return
        self._move_failing = True
        await self._publish(ev.StopMoveFailed(
            account=self.ctx.account, symbol=self.symbol,
            old_price=action.order.trigger_price, new_price=action.trigger_price,
            reason=reason, message=message))

    async def _resize(self, order: OrderReport, qty: Decimal,
                      trigger: Decimal | None = None) -> bool:
        ctx, known = self.ctx, self.known
        assert known is not None and order.trigger_price is not None
        price = order.trigger_price if trigger is None else trigger
        if ctx.venue.capabilities.amend_stop_in_place:
            try:
                amended = await ctx.orders.amend_stop(order, price, qty, self._publish)
            except OutcomeUnknown:
                return False  # the next snapshot tells whether it took; the stop still rests
            except Rejected as exc:
                await self._rejected(order.client_id or order.order_id, exc,
                                     moving=trigger is not None)
                return False
            self._succeeded()
            if amended is None:
                return True  # gone: the next round places a new one
            known.stop = _stop_ref(amended)
            await self._publish(ev.StopAmended(
                account=ctx.account, symbol=self.symbol, order_id=amended.order_id,
                trigger_price=price, qty=qty))
            await ctx.store.save(known)
            return True
        # No amend on this venue: the new stop rests before the old one goes, never a gap.
        placed = await self._place(PlaceStop(self.symbol, price, qty), replacing=order,
                                   moving=trigger is not None)
        if placed:
            await self._cancel(order, ev.CancelReason.REPLACED)
        return placed

    async def _cancel(self, order: OrderReport, reason: ev.CancelReason) -> bool:
        try:
            await self.ctx.orders.cancel(order, reason, self._publish)
        except Rejected as exc:
            await self._rejected(order.client_id or order.order_id, exc)
            return False
        except OutcomeUnknown:
            return False  # still in the view; the next look decides
        self._succeeded()
        await self._publish(ev.StopCancelled(
            account=self.ctx.account, symbol=self.symbol, order_id=order.order_id,
            client_id=order.client_id, reason=reason))
        return True

    async def _place_take_profit(self, action: PlaceTakeProfit) -> bool:
        """The plan's take-profit, reduce-only, sized to the position. A refusal is reported
        once and not retried until the price or the size changes; the stop is never touched."""
        ctx, known = self.ctx, self.known
        assert known is not None
        if self._tp_refused == (action.trigger_price, action.qty):
            return False
        seq = await ctx.state.incr("take_profit_seq",
                                   f"{ctx.account}|{self.symbol}|{known.generation}")
        cid = client_order_id(ctx.account, self.symbol, known.generation,
                              OrderPurpose.TAKE_PROFIT, seq)
        request = StopRequest(self.symbol, known.side, action.qty, action.trigger_price, cid,
                              kind=OrderKind.TAKE_PROFIT)
        try:
            order = await ctx.orders.place_take_profit(request, self._publish)
        except Rejected as exc:
            if exc.reason is not RejectReason.WOULD_TRIGGER_IMMEDIATELY:
                self._tp_refused = (action.trigger_price, action.qty)  # else: the mark moved
            await self._publish(ev.TakeProfitRejected(
                account=ctx.account, symbol=self.symbol, trigger_price=action.trigger_price,
                reason=exc.reason.value, message=exc.message))
            return False
        self._tp_refused = None
        await self._publish(ev.TakeProfitPlaced(
            account=ctx.account, symbol=self.symbol, order_id=order.order_id,
            client_id=order.client_id, trigger_price=action.trigger_price, qty=action.qty))
        return True

    async def _cancel_take_profit(self, order: OrderReport, reason: ev.CancelReason) -> bool:
        try:
            await self.ctx.orders.cancel(order, reason, self._publish)
        except (Rejected, OutcomeUnknown):
            return False  # still in the view; the next look decides
        await self._publish(ev.TakeProfitCancelled(
            account=self.ctx.account, symbol=self.symbol, order_id=order.order_id,
            reason=reason))
        return True

    def _tp_gone(self, leftovers: tuple[OrderReport, ...]) -> bool:
        """Flat with our stop still resting and the plan's take-profit no longer there: it was
        the take-profit that closed the position (what a venue without a stream tells us)."""
        known = self.known
        if known is None or known.stop is None or self._tp_resting is None:
            return False
        stop_rests = any(o.order_id == known.stop.order_id for o in leftovers)
        tp_rests = any(is_our_take_profit(o, known.side) for o in leftovers)
        return stop_rests and not tp_rests

    async def _close(self, action: ClosePosition, *, by: str = "") -> bool:
        ctx, known = self.ctx, self.known
        assert known is not None
        reason = ev.CloseReason(action.reason)
        if reason is ev.CloseReason.STOP_CROSSED:
            await self._announce_missing()
            if ctx.halted:
                raise AccountHalted(ctx.halted)
            await self._publish(ev.StopCrossed(
                account=ctx.account, symbol=self.symbol, stop_price=action.stop_price or ZERO,
                mark_price=action.mark_price or ZERO, action=ev.CrossedAction.CLOSE))
        cid = client_order_id(ctx.account, self.symbol, known.generation, OrderPurpose.CLOSE,
                              known.close_seq)
        before = ctx.view.position(self.symbol)
        request = MarketOrderRequest(self.symbol, known.side.close_side, action.qty, True, cid)
        try:
            order = await ctx.orders.close(request, reason, by, self._publish)
        except (Transient, OutcomeUnknown):
            known.close_seq += 1  # used up, as for stops
            await ctx.store.save(known)
            raise
        except SideGone as exc:  # not a refusal to back off from: the position changed
            known.close_seq += 1
            await ctx.store.save(known)
            await self._publish(ev.CloseSideGone(
                account=ctx.account, symbol=self.symbol, client_id=cid, side=known.side,
                now=exc.side, qty=action.qty))
            return True  # the view shows the new side: plan again (its stop comes next)
        except Rejected as exc:
            known.close_seq += 1
            await ctx.store.save(known)
            await self._rejected(cid, exc)
            return False
        self._succeeded()
        known.close_seq += 1
        known.move_to(PositionState.CLOSING)
        # No second close for a while (REST may show the position at its old size after the
        # fill). Filled: what the view still shows gets a stop at once; accepted but not filled
        # yet: nothing races the close until a size other than `close_from_qty` shows the fill.
        known.close_filled = order.status is OrderStatus.FILLED
        known.close_from_qty = before.qty if before is not None else None
        known.close_pending_until = ctx.clock.now() + timedelta(
            seconds=ctx.policy.close_pending_seconds)
        await self._publish(ev.CloseSubmitted(account=ctx.account, symbol=self.symbol,
                                              order_id=order.order_id, qty=action.qty,
                                              reason=reason, by=by))
        await ctx.store.save(known)
        return True

    # --- helpers -----------------------------------------------------------------------------
    async def _rejected(self, client_id: str, exc: Rejected, *, moving: bool = False) -> None:
        """Back off after a hard refusal, doubling while they repeat; while the position still
        has SLA time left, the next try comes before it runs out (then the doubling goes on,
        with the SLA alert already loud). A refused move of a resting stop (`moving`) backs
        off the same way, but its alert is `_move`'s: the old stop still protects."""
        self._last_refused = exc
        now = self.ctx.clock.monotonic()
        if now - self._last_rejection > REJECTIONS_FORGOTTEN_AFTER:
            self._rejections = 0  # an old refusal says nothing about this one
        pause = self._pause(self._rejections)
        self._rejections += 1
        self._last_rejection = now
        if not moving:
            self._permanent = self._permanent + 1 if exc.reason in PERMANENT else 0
            if self._permanent >= GIVE_UP_AFTER:
                pause = GIVE_UP_PAUSE
        self.backoff_until = now + pause
        self.ctx.spawn(self._wake_after(pause), f"retry {self.symbol}")
        if moving:
            return
        said = (exc.reason, exc.message)
        if self._rejections == 1 or said != self._last_refusal:
            # Once per streak (or when the venue says something new): a venue that keeps
            # refusing must not flood the chats; each try's intent is journaled all the same.
            await self._publish(ev.StopRejected(
                account=self.ctx.account, symbol=self.symbol, client_id=client_id,
                reason=exc.reason.value, message=exc.message))
        self._last_refusal = said
        if self._permanent == GIVE_UP_AFTER:
            await self._publish(ev.StopCannotRest(
                account=self.ctx.account, symbol=self.symbol, reason=exc.reason.value,
                message=exc.message, attempts=self._permanent,
                retry_in_seconds=Decimal(str(GIVE_UP_PAUSE)),
                generation=self.known.generation if self.known else None))

    def _pause(self, streak: int) -> float:
        """The back-off after `streak` failed tries in a row, doubling; while the position
        still has SLA time left, the next try comes before it runs out."""
        first, longest = REJECT_BACKOFF
        pause = min(first * 2 ** streak, longest)
        if self.known is not None and self.known.unprotected_since is not None:
            left = self.ctx.policy.sla_seconds - self.unprotected_for(self.ctx.clock.now())
            if left > 0:
                pause = min(pause, max(left / 2, first))
        return pause

    def _retry_after_failure(self) -> None:
        """The venue failed a command past the gateway's retries (outcome still unknown, or
        transient errors): an unprotected position must not wait for the next reconcile pass
        (10 s while the stream is up) or a stream event that a quiet position never gets. Try
        again soon, doubling while it goes on (issue 15: a 9.75 s gap, chaos streaming modes)."""
        if self.known is None or self.protected or self.finished:
            return
        pause = self._pause(self._failures)
        self._failures += 1
        self.ctx.spawn(self._wake_after(pause), f"retry {self.symbol}")

    def _changed_since_give_up(self) -> bool:
        """A new size or side on the venue lifts any back-off (after giving up, too): the
        refusals were about another position, and a flipped or re-sized one must not wait them
        out unprotected (soak seed 9: 25 s)."""
        if self.backoff_until == 0.0 or self.known is None:
            return False
        report = self.ctx.view.position(self.symbol)
        if report is None or (report.side, report.qty) != (self.known.side, self.known.qty):
            self._permanent, self.backoff_until = 0, 0.0
            return True
        return False

    async def _wake_after(self, pause: float) -> None:
        """Try again as soon as the back-off ends, not at the next reconcile pass."""
        await self.ctx.clock.sleep(pause)
        self.wake()

    def _succeeded(self) -> None:
        """The venue took a command: earlier refusals no longer slow this position down."""
        self._rejections = 0
        self._permanent = 0
        self._failures = 0
        self.backoff_until = 0.0

    def _mark_protected(self) -> None:
        known = self.known
        assert known is not None
        known.move_to(PositionState.PROTECTED)
        known.unprotected_since = None
        known.sla_alerted = False
        known.close_pending_until = None
        known.close_from_qty = None
        known.close_filled = False
        self._missing_announced = False
        self._rejections = 0

    async def _announce_missing(self) -> None:
        known = self.known
        assert known is not None
        if self._missing_announced:
            return
        self._missing_announced = True
        self.ctx.metrics.stoploss_missing.labels(self.ctx.account).inc()
        await self._publish(ev.StopMissing(account=self.ctx.account, symbol=self.symbol,
                                           side=known.side, qty=known.qty))

    def _account_for_protection(self) -> None:
        """Keep the in-memory truth the SLA watchdog and /positions read."""
        known = self.known
        report = self.ctx.view.position(self.symbol)
        if known is None or report is None:
            return
        self._tp_resting = next(
            (o.trigger_price for o in self.ctx.view.orders(self.symbol)
             if is_our_take_profit(o, known.side)), None)
        known.last_mark = report.mark_price
        stops = [o for o in self.ctx.view.orders(self.symbol) if o.is_stop_for(known.side)]
        if not stops and known.unprotected_since is None:
            known.unprotected_since = self.ctx.clock.now()

    async def _publish(self, event: ev.Event) -> None:
        await self.ctx.pace()
        self._events.append(await self.ctx.bus.publish(event))

    @property
    def protected(self) -> bool:
        return self.known is not None and self.known.unprotected_since is None

    def unprotected_for(self, now: datetime) -> float:
        if self.known is None or self.known.unprotected_since is None:
            return 0.0
        return (now - self.known.unprotected_since).total_seconds()


def _close_status(events: list[ev.Event], *, halted: str | None) -> CloseStatus:
    """A close that ran: never "flat" unless the venue said so (a PositionClosed)."""
    kinds = {type(e) for e in events}
    if ev.PositionClosed in kinds:
        return CloseStatus.CLOSED
    if ev.CloseSubmitted in kinds:
        return CloseStatus.SUBMITTED
    if halted:
        return CloseStatus.HALTED
    return CloseStatus.FAILED


def _stop_ref(order: OrderReport) -> StopRef:
    assert order.kind is OrderKind.STOP_LOSS and order.trigger_price is not None
    return StopRef(order.order_id, order.client_id, order.trigger_price, order.qty)
