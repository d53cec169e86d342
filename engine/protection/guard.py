"""AccountGuard: one per account. Keeps the view fresh (snapshots + stream), runs reconcile,
routes work to the position supervisors, cancels zombies and watches the SLA."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from loguru import logger

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.reports import (
    Fill,
    FillUpdate,
    OrderUpdate,
    PositionUpdate,
    StreamStatus,
    VenueEvent,
)
from engine.domain.values import ZERO
from engine.errors import (
    OperatorError,
    OutcomeUnknown,
    Rejected,
    RejectReason,
    Transient,
    VenueError,
)
from engine.metrics import Metrics
from engine.ports import PositionStore, StateStore, Venue
from engine.protection.policy import ProtectionPolicy
from engine.protection.reconcile import CancelZombie, ZombieClock, reconcile
from engine.protection.supervisor import PositionSupervisor
from engine.protection.view import AccountView
from engine.retry import retry_transient

STREAM_RESTART_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    account: str
    positions: int
    unprotected_before: tuple[str, ...]
    unprotected_after: tuple[str, ...]
    events: tuple[ev.Event, ...]
    venue_calls: int
    error: str | None = None  # the account could not be reconciled (venue down, halted)


@dataclass(slots=True)
class _Stream:
    up: bool = False
    reason: str = "not started"
    fills: dict[str, list[Fill]] = field(default_factory=dict)


class AccountGuard:
    def __init__(self, account: str, venue: Venue, *, bus: EventBus, store: PositionStore,
                 state: StateStore, policy: ProtectionPolicy, metrics: Metrics, clock: Clock,
                 interval_seconds: float, seed: int | None = None) -> None:
        self.account = account
        self.venue = venue
        self.bus = bus
        self.store = store
        self.state = state
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.interval = interval_seconds
        self.rng = random.Random(seed)
        self.view = AccountView(absence_grace=policy.snapshot_lag_seconds)
        self.zombies = ZombieClock()
        self.stream = _Stream()
        self.started_at: datetime = clock.now()
        self.halted: str | None = None
        self.last_reconcile: datetime | None = None
        self.last_error: str | None = None
        self.supervisors: dict[str, PositionSupervisor] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconcile_lock = asyncio.Lock()
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------------
    async def load(self) -> None:
        """Start-up: the journal's positions first, then the venue's view decides."""
        self.started_at = self.clock.now()
        self.halted = await self.state.get("halt", self.account)
        for known in await self.store.load(self.account):
            self.supervisors[known.symbol] = PositionSupervisor(self, known.symbol, known)

    async def run(self) -> None:
        """Reconcile loop, stream consumer and SLA watchdog until `stop()`."""
        self.spawn(self._stream_loop(), "stream")
        self.spawn(self._sla_loop(), "sla")
        while not self._stopping:
            try:
                await self.reconcile_now()
            except OperatorError as exc:
                await self.halt(str(exc))
            except VenueError as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                await self.bus.publish(ev.VenueFailure(
                    account=self.account, operation="snapshot", error=type(exc).__name__,
                    message=str(exc)))
            except Exception as exc:  # a bug or a storage hiccup must not end protection
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("reconcile of {} failed", self.account)
            await self.clock.sleep(self.interval)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.account}: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("task {} failed", task.get_name())

    # --- reconcile -------------------------------------------------------------------------
    async def reconcile_now(self, symbol: str | None = None) -> ReconcileReport:
        """Snapshot (constant venue calls), pure reconcile, then let supervisors act."""
        async with self._reconcile_lock:
            marker = self.view.mark()
            snapshot = await retry_transient(self.venue.snapshot, self.clock, rng=self.rng)
            self.metrics.venue_calls.labels(self.account, "snapshot").inc(snapshot.calls)
            self.view.apply_snapshot(snapshot, marker, self.clock.now())
            self.last_reconcile = self.clock.now()
            self.last_error = None
            self._note_marks()
            result = self._plan()
            self.zombies.update(result.zombie_candidates, self.clock.now())
            symbols = result.symbols()
            if symbol is not None:
                symbols &= {symbol}
            zombies = [a for a in result.actions
                       if isinstance(a, CancelZombie) and a.order.symbol in symbols]
            positions = sorted({s for s in symbols
                                if any(not isinstance(a, CancelZombie)
                                       for a in result.for_symbol(s))})
            # Protection first, all positions at once; zombies are only clean-up.
            done = await asyncio.gather(*(self.supervisor(s).ensure() for s in positions))
            zombie_events = await self._cancel_zombies(zombies)
            after = self._plan()
            self._update_gauge()
            events = tuple(zombie_events) + tuple(e for batch in done for e in batch)
            return ReconcileReport(
                account=self.account, positions=len(self.view.positions()),
                unprotected_before=result.unprotected, unprotected_after=after.unprotected,
                events=events, venue_calls=snapshot.calls)

    def _plan(self):
        positions = self.view.positions()
        orders = self.view.orders()
        known = {s: sup.known for s, sup in self.supervisors.items() if sup.known is not None}
        symbols = set(positions) | set(known) | {o.symbol for o in orders}
        markets = {s: self.venue.market(s) for s in symbols}
        return reconcile(known, positions, orders, markets, self.clock.now(), self.policy,
                         self.zombies.first_seen)

    def _note_marks(self) -> None:
        """Keep each guarded position's last mark fresh (it prices the close if it vanishes)."""
        for sup in self.supervisors.values():
            report = self.view.position(sup.symbol)
            if sup.known is not None and report is not None:
                sup.known.last_mark = report.mark_price

    async def _cancel_zombies(self, actions: list[CancelZombie]) -> list[ev.Event]:
        events: list[ev.Event] = []
        for action in actions:
            if self.halted:
                break
            order = action.order
            sup = self.supervisors.get(order.symbol)
            if self.view.position(order.symbol) is not None or (sup and sup.known):
                continue  # a position appeared meanwhile: it is not a zombie any more
            await self.bus.publish(ev.CancelIntent(
                account=self.account, symbol=order.symbol, order_id=order.order_id,
                client_id=order.client_id, reason="zombie"))
            try:
                await retry_transient(lambda o=order: self.venue.cancel_order(o), self.clock,
                                      rng=self.rng)
            except Rejected as exc:
                if exc.reason is not RejectReason.ORDER_NOT_FOUND:
                    await self._zombie_failed(order.order_id, exc)
                    continue
            except (Transient, OutcomeUnknown) as exc:  # still in the view; the next look decides
                await self._zombie_failed(order.order_id, exc)
                continue
            self.view.drop_order(order.order_id)
            self.metrics.zombies_cancelled.labels(self.account).inc()
            event = ev.ZombieCancelled(account=self.account, symbol=order.symbol,
                                       order_id=order.order_id, client_id=order.client_id,
                                       order_kind=order.kind.value)
            events.append(event)
            await self.bus.publish(event)
        return events

    async def _zombie_failed(self, order_id: str, exc: Exception) -> None:
        await self.bus.publish(ev.VenueFailure(
            account=self.account, operation=f"cancel zombie {order_id}",
            error=type(exc).__name__, message=str(exc)))

    # --- supervisors -------------------------------------------------------------------------
    def supervisor(self, symbol: str) -> PositionSupervisor:
        sup = self.supervisors.get(symbol)
        if sup is None:
            sup = self.supervisors[symbol] = PositionSupervisor(self, symbol)
        return sup

    def retire(self, sup: PositionSupervisor) -> None:
        if self.supervisors.get(sup.symbol) is sup:
            del self.supervisors[sup.symbol]

    def _attend(self, symbol: str) -> None:
        """A stream event touched this symbol: its supervisor looks at once."""
        if self._stopping:
            return
        if symbol in self.supervisors or self.view.position(symbol) is not None:
            self.supervisor(symbol).wake()

    # --- stream ------------------------------------------------------------------------------
    async def _stream_loop(self) -> None:
        if not self.venue.capabilities.streams:
            self.stream = _Stream(up=False, reason="streams off: REST snapshots only")
            return
        while not self._stopping:
            self.stream.up, self.stream.reason = True, ""
            try:
                async for event in self.venue.events():
                    try:
                        await self._on_stream_event(event)
                    except Exception:  # one bad event must not cost us the stream
                        logger.exception("{}: stream event {} failed", self.account, event)
                reason = "stream ended"
            except Exception as exc:
                logger.exception("{}: stream failed", self.account)
                reason = f"{type(exc).__name__}: {exc}"
            if self._stopping:
                return
            # REST snapshots carry protection meanwhile; /status says the stream is down.
            self.stream.up, self.stream.reason = False, reason
            await self.clock.sleep(STREAM_RESTART_SECONDS)

    async def _on_stream_event(self, event: VenueEvent) -> None:
        match event:
            case PositionUpdate(position=report, symbol=symbol):
                self.view.set_position(symbol, report, streamed_at=self.clock.now())
                sup = self.supervisors.get(symbol)
                if report is not None and sup is not None and sup.known is not None:
                    sup.known.last_mark = report.mark_price
                self._attend(symbol)
            case OrderUpdate(order=order):
                self.view.set_order(order)
                self._attend(order.symbol)
            case FillUpdate(fill=fill):
                self.stream.fills.setdefault(fill.symbol, []).append(fill)
            case StreamStatus(up=up, reason=reason):
                self.stream.up, self.stream.reason = up, reason
                await self.bus.publish(ev.StreamChanged(account=self.account, up=up,
                                                        reason=reason))
                if up:  # we may have missed events while it was down
                    self.spawn(self.reconcile_now(), "reconcile after reconnect")

    def realized_since(self, symbol: str, since: datetime | None
                       ) -> tuple[Decimal | None, Decimal | None]:
        """Realized PnL (net of fees) and last exit price of a symbol from streamed fills.

        Consumes the fills up to the last closing one; later fills (a position re-opened at
        once) stay for the next position."""
        buffered = self.stream.fills.pop(symbol, [])
        last = max((i for i, f in enumerate(buffered) if f.realized_pnl != 0 or f.reduce_only),
                   default=None)
        if last is None:
            if buffered:
                self.stream.fills[symbol] = buffered
            return None, None
        if last + 1 < len(buffered):
            self.stream.fills[symbol] = buffered[last + 1:]
        fills = [f for f in buffered[:last + 1] if since is None or f.at >= since]
        realized = sum((f.realized_pnl - f.fee for f in fills), ZERO)
        return realized, buffered[last].price

    # --- SLA -------------------------------------------------------------------------------
    async def _sla_loop(self) -> None:
        period = max(min(self.policy.sla_seconds / 4, 1.0), 0.05)
        while not self._stopping:
            await self.clock.sleep(period)
            try:
                await self.check_sla()
            except Exception:  # the watchdog must outlive a failed publish
                logger.exception("SLA check failed")

    async def check_sla(self) -> None:
        now = self.clock.now()
        for sup in list(self.supervisors.values()):
            known = sup.known
            if known is None or known.sla_alerted:
                continue
            waited = sup.unprotected_for(now)
            if waited > self.policy.sla_seconds:
                known.sla_alerted = True
                await self.bus.publish(ev.SlaBreached(
                    account=self.account, symbol=sup.symbol,
                    unprotected_seconds=Decimal(str(round(waited, 1)))))
        self._update_gauge()

    def _update_gauge(self) -> None:
        count = sum(1 for s in self.supervisors.values() if s.known and not s.protected)
        self.metrics.positions_unprotected.labels(self.account).set(count)

    # --- HALT ----------------------------------------------------------------------------------
    async def halt(self, reason: str) -> None:
        if self.halted:
            return
        self.halted = reason
        await self.state.put("halt", self.account, reason)
        await self.bus.publish(ev.AccountHalted(account=self.account, reason=reason))

    async def unhalt(self) -> None:
        self.halted = None
        await self.state.put("halt", self.account, None)
