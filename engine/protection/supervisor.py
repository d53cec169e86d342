"""One supervisor per guarded position: the only code that changes that position's stops.

Everything else (reconcile, the stream, /fix_sl, closes, trailing later) asks it to act. It holds a
lock, re-plans from the freshest view every time it acts, and journals each intent (with its
deterministic client id) before calling the venue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.position import GuardedPosition, PositionState, StopRef
from engine.domain.reports import (
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    OrderStatus,
    PositionReport,
    StopRequest,
)
from engine.domain.values import ZERO
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason, Transient
from engine.protection.policy import CrossedPolicy
from engine.protection.reconcile import (
    Action,
    AdoptPosition,
    AdoptStop,
    CancelStop,
    ClosePosition,
    PlaceStop,
    RecordClose,
    Resized,
    ResizeStop,
    plan_position,
)
from engine.retry import retry_transient

if TYPE_CHECKING:
    from engine.protection.guard import AccountGuard

MAX_ROUNDS = 4  # plan -> act -> re-plan; a healthy position settles in one or two
REJECT_BACKOFF = (0.5, 30.0)  # after a hard rejection: first pause, longest pause (doubling)


class _Halted(Exception):
    """The account went on HALT: no further venue commands (journal-only work may go on)."""


class PositionSupervisor:
    def __init__(self, guard: AccountGuard, symbol: str,
                 known: GuardedPosition | None = None) -> None:
        self.guard = guard
        self.symbol = symbol
        self.known = known
        self.finished = False
        self._lock = asyncio.Lock()
        self._wake_pending = False
        self._events: list[ev.Event] = []
        self._missing_announced = False
        self.backoff_until: float = 0.0  # after a hard rejection, don't hammer the venue
        self._rejections = 0  # in a row; the backoff doubles with each

    # --- requests ----------------------------------------------------------------------------
    async def ensure(self) -> list[ev.Event]:
        """Bring this position to exactly one stop, sized to it; return what was done."""
        async with self._lock:
            self._wake_pending = False
            return await self._run(self._ensure)

    def wake(self) -> asyncio.Task[list[ev.Event]] | None:
        """Fire-and-forget ensure, coalesced: at most one waiting wake per position."""
        if self._wake_pending or self.finished:
            return None
        self._wake_pending = True
        return self.guard.spawn(self.ensure(), f"ensure {self.symbol}")

    async def close(self, reason: str, *, max_qty: Decimal | None = None) -> list[ev.Event]:
        """Reduce-only market close (of at most `max_qty`); the stop stays until the venue
        shows the position flat. Does nothing while an earlier close is still in flight."""
        async with self._lock:
            async def do() -> None:
                report = self.guard.view.position(self.symbol)
                if report is None or self.known is None or self.closing:
                    return
                qty = report.qty if max_qty is None else min(max_qty, report.qty)
                await self._close(ClosePosition(self.symbol, qty, reason))
                await self._ensure()
            return await self._run(do)

    @property
    def closing(self) -> bool:
        pending = self.known.close_pending_until if self.known is not None else None
        return pending is not None and self.guard.clock.now() < pending

    async def _run(self, body: Callable[[], Awaitable[None]]) -> list[ev.Event]:
        self._events = []
        if self.finished:
            return []
        try:
            await body()
        except _Halted:
            pass
        except OperatorError as exc:
            await self.guard.halt(f"{self.symbol}: {exc}")
        except (Transient, OutcomeUnknown) as exc:
            await self._publish(ev.VenueFailure(
                account=self.guard.account, operation=f"protect {self.symbol}",
                error=type(exc).__name__, message=str(exc)))
        finally:
            self._account_for_protection()
            if self.known is None and self.guard.view.position(self.symbol) is None:
                self.finished = True  # nothing (left) to guard: never linger
                self.guard.retire(self)
        return self._events

    # --- the loop ----------------------------------------------------------------------------
    async def _ensure(self) -> None:
        for _ in range(MAX_ROUNDS):
            if self.finished:
                return
            if self.guard.clock.monotonic() < self.backoff_until:
                return
            actions = plan_position(self.known, self.guard.view.position(self.symbol),
                                    self.guard.view.orders(self.symbol),
                                    self.guard.venue.market(self.symbol), self.guard.policy,
                                    self.guard.clock.now())
            if not actions:
                return
            for action in actions:
                await self._execute(action)
                if self.finished:
                    return

    async def _execute(self, action: Action) -> None:
        match action:
            case AdoptPosition(position=report):
                await self._adopt(report)
            case RecordClose(leftovers=leftovers):
                await self._record_close(leftovers)
            case Resized(new_qty=new_qty, old_qty=old_qty):
                assert self.known is not None
                self.known.qty = new_qty
                await self.guard.store.save(self.known)
                await self._publish(ev.PositionResized(
                    account=self.guard.account, symbol=self.symbol, old_qty=old_qty,
                    new_qty=new_qty))
            case PlaceStop():
                await self._place(action)
            case AdoptStop(order=order):
                await self._adopt_stop(order)
            case ResizeStop(order=order, qty=qty):
                await self._resize(order, qty)
            case CancelStop(order=order, reason=reason):
                await self._cancel(order, reason)
            case ClosePosition():
                await self._close(action)

    # --- actions -----------------------------------------------------------------------------
    async def _adopt(self, report: PositionReport) -> None:
        g = self.guard
        generation = await g.state.incr("generation", f"{g.account}|{self.symbol}")
        opened = report.opened_at
        since = max(opened, g.started_at) if opened else g.clock.now()
        self.known = GuardedPosition(
            account=g.account, symbol=self.symbol, side=report.side, qty=report.qty,
            entry_price=report.entry_price, generation=generation, opened_at=opened,
            unprotected_since=since, last_mark=report.mark_price)
        await g.store.save(self.known)
        await self._publish(ev.PositionAdopted(
            account=g.account, symbol=self.symbol, side=report.side.value, qty=report.qty,
            entry_price=report.entry_price, generation=generation))

    async def _record_close(self, leftovers: tuple[OrderReport, ...]) -> None:
        g, known = self.guard, self.known
        assert known is not None
        if leftovers and not g.halted and await self._fresh_position() is not None:
            return  # our view said flat, the venue says otherwise: keep every stop, re-plan
        for order in leftovers:  # the venue shows it flat: now, and only now, its stops may go
            if g.halted:
                break  # no commands on HALT; they stay as zombies for later
            await self._cancel(order, "position_closed")
        realized, exit_price = g.realized_since(self.symbol, known.opened_at)
        if exit_price is None:
            exit_price = known.last_mark
            if exit_price is not None:
                realized = (exit_price - known.entry_price) * known.qty * known.side.sign
        known.move_to(PositionState.CLOSED)
        await g.store.delete(g.account, self.symbol)
        await self._publish(ev.PositionClosed(
            account=g.account, symbol=self.symbol, side=known.side.value, qty=known.qty,
            entry_price=known.entry_price, exit_price=exit_price, realized_pnl=realized,
            reason="closed on venue"))
        self.known = None
        if g.view.position(self.symbol) is None:
            self.finished = True
            g.retire(self)

    async def _place(self, action: PlaceStop, *, replacing: OrderReport | None = None) -> bool:
        g, known = self.guard, self.known
        assert known is not None
        now = g.clock.now()
        if replacing is None and known.unprotected_since is None:
            known.unprotected_since = now
        if replacing is None and known.state is not PositionState.UNPROTECTED:
            known.move_to(PositionState.UNPROTECTED)
        if replacing is None:
            await self._announce_missing()
        self._check_halt()
        report = g.view.position(self.symbol)
        if action.crossed_from is not None and report is not None:
            await self._publish(ev.StopCrossed(
                account=g.account, symbol=self.symbol, stop_price=action.crossed_from,
                mark_price=report.mark_price, action="tighten"))
        cid = client_order_id(g.account, self.symbol, known.generation, OrderPurpose.STOP,
                              known.stop_seq)
        await self._publish(ev.StopIntent(
            account=g.account, symbol=self.symbol, action="replace" if replacing else "place",
            client_id=cid, trigger_price=action.trigger_price, qty=action.qty))
        request = StopRequest(self.symbol, known.side, action.qty, action.trigger_price, cid)
        try:
            order = await self._create(cid, lambda: g.venue.place_stop(request), "place_stop")
        except Rejected as exc:
            known.stop_seq += 1
            await g.store.save(known)
            if exc.reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY and report is not None:
                await self._on_would_trigger(action, report)
            else:
                await self._rejected(cid, exc)
            return False
        known.stop_seq += 1
        if not order.is_resting:  # found by client id, but it already fired or was cancelled
            await g.store.save(known)
            return False
        g.view.set_order(order)
        known.stop = _stop_ref(order)
        ttp = None
        if replacing is None and known.unprotected_since is not None:
            ttp = Decimal(str(round((g.clock.now() - known.unprotected_since).total_seconds(),
                                    3)))
            known.last_time_to_protect = ttp
            g.metrics.time_to_protect.labels(g.account).observe(float(ttp))
        g.metrics.stoploss_placed.labels(g.account).inc()
        self._mark_protected()
        await g.store.save(known)
        await self._publish(ev.StopPlaced(
            account=g.account, symbol=self.symbol, order_id=order.order_id, client_id=cid,
            trigger_price=action.trigger_price, qty=action.qty, time_to_protect=ttp))
        return True

    async def _on_would_trigger(self, action: PlaceStop, report: PositionReport) -> None:
        """The venue says the stop is already through the market: the policy decides."""
        g = self.guard
        market = g.venue.market(self.symbol)
        if g.policy.crossed is CrossedPolicy.TIGHTEN and action.crossed_from is None:
            # Our mark is older than the venue's: tighten from a fresh one, or we would be
            # refused again and close a position the policy said to keep.
            fresh = await self._fresh_position()
            if fresh is None:
                return  # gone meanwhile: the next round records the close
            tight = g.policy.tightened(fresh.side, fresh.mark_price, market)
            await self._place(replace(action, trigger_price=tight,
                                      crossed_from=action.trigger_price))
            return
        await self._close(ClosePosition(self.symbol, report.qty, "stop_crossed",
                                         action.trigger_price, report.mark_price))

    async def _fresh_position(self) -> PositionReport | None:
        g = self.guard
        snapshot = await retry_transient(g.venue.snapshot, g.clock, rng=g.rng)
        fresh = snapshot.position(self.symbol)
        if fresh is not None:  # its absence may be REST lag: the reconcile loop decides that
            g.view.set_position(self.symbol, fresh)
        return fresh

    async def _adopt_stop(self, order: OrderReport) -> None:
        known = self.known
        assert known is not None
        known.stop = _stop_ref(order)
        self._mark_protected()
        await self.guard.store.save(known)
        await self._publish(ev.StopAdopted(
            account=self.guard.account, symbol=self.symbol, order_id=order.order_id,
            client_id=order.client_id, trigger_price=order.trigger_price, qty=order.qty))

    async def _resize(self, order: OrderReport, qty: Decimal) -> None:
        g, known = self.guard, self.known
        assert known is not None and order.trigger_price is not None
        if g.venue.capabilities.amend_stop_in_place:
            self._check_halt()
            await self._publish(ev.StopIntent(
                account=g.account, symbol=self.symbol, action="amend",
                client_id=order.client_id or order.order_id, trigger_price=order.trigger_price,
                qty=qty))
            try:
                amended = await retry_transient(
                    lambda: g.venue.amend_stop(order, order.trigger_price, qty),  # type: ignore[arg-type]
                    g.clock, rng=g.rng)
            except OutcomeUnknown:
                return  # the next snapshot tells whether it took; the stop is still resting
            except Rejected as exc:
                if exc.reason is RejectReason.ORDER_NOT_FOUND:
                    g.view.drop_order(order.order_id)
                    return
                await self._rejected(order.client_id or order.order_id, exc)
                return
            g.view.set_order(amended)
            known.stop = _stop_ref(amended)
            await g.store.save(known)
            await self._publish(ev.StopAmended(
                account=g.account, symbol=self.symbol, order_id=amended.order_id,
                trigger_price=order.trigger_price, qty=qty))
            return
        # No amend on this venue: the new stop rests before the old one goes, never a gap.
        placed = await self._place(PlaceStop(self.symbol, order.trigger_price, qty),
                                   replacing=order)
        if placed:
            await self._cancel(order, "replaced")

    async def _cancel(self, order: OrderReport, reason: str) -> None:
        g = self.guard
        self._check_halt()
        await self._publish(ev.CancelIntent(account=g.account, symbol=self.symbol,
                                            order_id=order.order_id, client_id=order.client_id,
                                            reason=reason))
        try:
            await retry_transient(lambda: g.venue.cancel_order(order), g.clock, rng=g.rng)
        except Rejected as exc:
            if exc.reason is not RejectReason.ORDER_NOT_FOUND:
                await self._rejected(order.client_id or order.order_id, exc)
                return
        except OutcomeUnknown:
            return  # still in the view; the next look decides
        g.view.drop_order(order.order_id)
        await self._publish(ev.StopCancelled(
            account=g.account, symbol=self.symbol, order_id=order.order_id,
            client_id=order.client_id, reason=reason))

    async def _close(self, action: ClosePosition) -> None:
        g, known = self.guard, self.known
        assert known is not None
        if action.reason == "stop_crossed":
            await self._announce_missing()
        self._check_halt()
        if action.reason == "stop_crossed":
            await self._publish(ev.StopCrossed(
                account=g.account, symbol=self.symbol, stop_price=action.stop_price or ZERO,
                mark_price=action.mark_price or ZERO, action="close"))
        cid = client_order_id(g.account, self.symbol, known.generation, OrderPurpose.CLOSE,
                              known.close_seq)
        await self._publish(ev.CloseIntent(account=g.account, symbol=self.symbol,
                                           client_id=cid, qty=action.qty, reason=action.reason))
        request = MarketOrderRequest(self.symbol, known.side.close_side, action.qty, True, cid)
        try:
            order = await self._create(cid, lambda: g.venue.market_order(request), "close")
        except Rejected as exc:
            known.close_seq += 1
            await g.store.save(known)
            await self._rejected(cid, exc)
            return
        known.close_seq += 1
        known.move_to(PositionState.CLOSING)
        known.close_pending_until = g.clock.now() + timedelta(
            seconds=g.policy.close_pending_seconds)
        await g.store.save(known)
        if order.status is OrderStatus.FILLED and order.qty is not None:
            # Filled now: the position is smaller or gone; don't wait for the next snapshot to
            # know it, or we might close twice. A reduce-only fill smaller than asked means the
            # venue clamped it to the position: flat, whatever our (older) view said.
            report = g.view.position(self.symbol)
            if report is not None:
                left = report.qty - order.qty if order.qty >= action.qty else ZERO
                g.view.set_position(self.symbol, replace(report, qty=left) if left > 0 else None)
        await self._publish(ev.CloseSubmitted(account=g.account, symbol=self.symbol,
                                              order_id=order.order_id, qty=action.qty,
                                              reason=action.reason))

    # --- helpers -----------------------------------------------------------------------------
    async def _create(self, cid: str, call: Callable[[], Awaitable[OrderReport]],
                      operation: str) -> OrderReport:
        """Create with retries; after an unknown outcome, look the order up by client id first,
        so a lost response never becomes a second order."""
        g = self.guard
        for _ in range(3):
            self._check_halt()
            try:
                return await retry_transient(call, g.clock, rng=g.rng)
            except Rejected as exc:
                if exc.reason is not RejectReason.DUPLICATE_CLIENT_ID:
                    raise
            except OutcomeUnknown:
                pass
            found = await retry_transient(lambda: g.venue.find_order(self.symbol, cid), g.clock,
                                          rng=g.rng)
            if found is not None:
                return found
        raise OutcomeUnknown(f"{operation} {self.symbol}: outcome still unknown for {cid}")

    async def _rejected(self, client_id: str, exc: Rejected) -> None:
        first, longest = REJECT_BACKOFF
        pause = min(first * 2 ** self._rejections, longest)
        self._rejections += 1
        self.backoff_until = self.guard.clock.monotonic() + pause
        await self._publish(ev.StopRejected(
            account=self.guard.account, symbol=self.symbol, client_id=client_id,
            reason=exc.reason.value, message=exc.message))

    def _mark_protected(self) -> None:
        known = self.known
        assert known is not None
        known.move_to(PositionState.PROTECTED)
        known.unprotected_since = None
        known.sla_alerted = False
        known.close_pending_until = None
        self._missing_announced = False
        self._rejections = 0

    async def _announce_missing(self) -> None:
        known = self.known
        assert known is not None
        if self._missing_announced:
            return
        self._missing_announced = True
        self.guard.metrics.stoploss_missing.labels(self.guard.account).inc()
        await self._publish(ev.StopMissing(account=self.guard.account, symbol=self.symbol,
                                           side=known.side.value, qty=known.qty))

    def _check_halt(self) -> None:
        """Called before every venue command."""
        if self.guard.halted:
            raise _Halted

    def _account_for_protection(self) -> None:
        """Keep the in-memory truth the SLA watchdog and /positions read."""
        known = self.known
        report = self.guard.view.position(self.symbol)
        if known is None or report is None:
            return
        known.last_mark = report.mark_price
        stops = [o for o in self.guard.view.orders(self.symbol) if o.is_stop_for(known.side)]
        if not stops and known.unprotected_since is None:
            known.unprotected_since = self.guard.clock.now()

    async def _publish(self, event: ev.Event) -> None:
        self._events.append(event)
        await self.guard.bus.publish(event)

    @property
    def protected(self) -> bool:
        return self.known is not None and self.known.unprotected_since is None

    def unprotected_for(self, now: datetime) -> float:
        if self.known is None or self.known.unprotected_since is None:
            return 0.0
        return (now - self.known.unprotected_since).total_seconds()


def _stop_ref(order: OrderReport) -> StopRef:
    assert order.kind is OrderKind.STOP_LOSS and order.trigger_price is not None
    return StopRef(order.order_id, order.client_id, order.trigger_price, order.qty)
