"""AccountGuard: one per account. Keeps the view fresh (snapshots + stream), runs reconcile,
routes work to the position supervisors, cancels zombies and watches the SLA."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

from loguru import logger

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.reports import (
    Fill,
    FillUpdate,
    OrderReport,
    OrderUpdate,
    PositionUpdate,
    PriceTick,
    StreamStatus,
    VenueEvent,
)
from engine.domain.values import ZERO, PositionSide
from engine.entries.model import EntryRefused, PriceSpec
from engine.entries.sizing import stop_price, take_profit_price
from engine.errors import OperatorError, VenueError
from engine.exits.book import ExitBook
from engine.exits.plan import ExitPlan, is_tighter
from engine.exits.requests import (
    MoveResult,
    MoveStatus,
    PlanResult,
    PlanStatus,
    TakeProfitResult,
    TakeProfitStatus,
)
from engine.exits.ticks import TickFeed
from engine.metrics import Metrics
from engine.pacing import LoopPacer
from engine.ports import PositionStore, StateStore, Venue, WeighsRequests
from engine.protection.context import AccountContext
from engine.protection.orders import AccountFlags, AccountHalted, Cancelled, OrderGateway
from engine.protection.policy import ProtectionPolicy
from engine.protection.reconcile import (
    CancelZombie,
    ZombieClock,
    reconcile,
    take_profit_reached,
)
from engine.protection.supervisor import CloseResult, PositionSupervisor, SupervisorRetired
from engine.protection.view import AccountView, read_snapshot
from engine.results import (
    AccountStatus,
    CancelSkip,
    CloseStatus,
    PositionView,
    ReconcileReport,
    StreamHealth,
)
from engine.retry import retry_transient

T = TypeVar("T")
STREAM_RESTART_SECONDS = 5.0
START_RETRY_MAX = 60.0
MIN_POLL_SECONDS = 1.0  # never poll faster than this, whatever the SLA (venue weight budgets)


@dataclass(slots=True)
class _Stream:
    up: bool = False
    reason: str = "not started"
    fills: dict[str, list[Fill]] = field(default_factory=dict)
    since: datetime | None = None  # when `up` last changed (readiness bounds a long outage)
    streams: bool = True  # the venue streams at all

    def set(self, up: bool, reason: str, now: datetime) -> None:
        if up != self.up or self.since is None:
            self.since = now
        self.up, self.reason = up, reason


class AccountGuard:
    def __init__(self, account: str, venue: Venue, *, bus: EventBus, store: PositionStore,
                 state: StateStore, policy: ProtectionPolicy, metrics: Metrics, clock: Clock,
                 interval_seconds: float, seed: int | None = None,
                 exits: ExitBook | None = None, pacer: LoopPacer | None = None) -> None:
        """`pacer`: the engine's one pacer for its loop, shared by all accounts (a pacer per
        account would let each use the budget of a loop turn)."""
        self.account = account
        if exits is not None:  # the exit plans price the stops, over the guard's own pricer
            exits.base = policy.pricer
            policy = replace(policy, pricer=exits, take_profits=exits)
        self.exits = exits
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
        self.flags = AccountFlags()
        self.pacer = pacer or LoopPacer()
        self.orders = OrderGateway(account, venue, view=self.view, bus=bus, clock=clock,
                                   rng=self.rng, metrics=metrics, flags=self.flags)
        self.ctx = AccountContext(
            account=account, venue=venue, view=self.view, orders=self.orders, flags=self.flags,
            clock=clock, bus=bus, store=store, state=state, policy=policy, metrics=metrics,
            rng=self.rng, started_at=clock.now(), spawn=self.spawn, halt=self.halt,
            realized_since=self.realized_since, retire=self._retire, exits=exits,
            pace=self.pacer)
        self.zombies = ZombieClock()
        self.stream = _Stream()
        self.last_reconcile: datetime | None = None
        self.last_error: str | None = None
        self.supervisors: dict[str, PositionSupervisor] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._move_timers: set[str] = set()  # symbols whose held-back move waits on a timer
        self._reconcile_lock = asyncio.Lock()
        self._sweep: asyncio.Task[Any] | None = None  # the zombie clean-up the loop started
        self._stopping = False
        self._symbols_version = 0  # bumped when a supervisor comes or goes (tick feed)
        self.ticks: TickFeed | None = None
        if exits is not None:
            self.ticks = TickFeed(venue, clock, self._guarded_symbols,
                                  lambda: self._symbols_version + exits.version, self._on_tick)

    @property
    def halted(self) -> str | None:
        return self.flags.halted

    @property
    def started_at(self) -> datetime:
        return self.ctx.started_at

    # --- lifecycle -------------------------------------------------------------------------
    async def load(self) -> None:
        """Start-up: the journal's positions first, then the venue's view decides."""
        self.ctx.started_at = self.clock.now()
        self.flags.halted = await self.state.get("halt", self.account)
        if self.exits is not None:
            await self.exits.load()
        for known in await self.store.load(self.account):
            self.supervisors[known.symbol] = PositionSupervisor(self.ctx, known.symbol, known)
        if self.exits is not None:  # a plan whose position the journal no longer holds goes
            alive = {s: sup.known for s, sup in self.supervisors.items() if sup.known}
            for dropped in await self.exits.prune(alive):
                await self.bus.publish(dropped)

    async def start_venue(self, *, retry: bool = True) -> None:
        """The venue's start-up self-check (markets, account readable). Each distinct failure
        is alerted once and an operator error halts the account; with `retry` it is retried
        with back-off until it passes (`vigil run`), else the error is raised (`vigil check`)."""
        delay = 1.0
        while True:
            try:
                await self.venue.start()
                return
            except Exception as exc:  # not only VenueError: an account must never go silent
                error = f"start-up check failed: {exc}"
                if error != self.last_error:  # alert once per distinct failure, not per retry
                    self.last_error = error
                    await self.bus.publish(ev.VenueFailure(
                        account=self.account, operation="start-up check",
                        error=type(exc).__name__, message=str(exc)))
                    if isinstance(exc, OperatorError):
                        await self.halt(error)
                if not retry:
                    raise
                await self.clock.sleep(delay)
                delay = min(delay * 2, START_RETRY_MAX)

    async def run(self) -> None:
        """Reconcile loop, stream consumer and SLA watchdog until `stop()`."""
        self.spawn(self._stream_loop(), "stream")
        self.spawn(self._sla_loop(), "sla")
        if self.ticks is not None:
            self.spawn(self.ticks.run(), "mark prices")
        while not self._stopping:
            try:
                await self.reconcile_now(wait=False)
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
            await self.clock.sleep(self.poll_interval)

    @property
    def poll_interval(self) -> float:
        """Seconds to the next snapshot. While the stream is down (or the venue has none),
        snapshots are the only way to see a new position, and REST may show it a moment late:
        look three times per SLA (within every venue's weight budget: a Binance cycle weighs
        about 41 of the 2,400 a minute)."""
        if self.stream.up:
            return self.interval
        return min(self.interval, max(self.policy.sla_seconds / 3, MIN_POLL_SECONDS))

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
    async def reconcile_now(self, symbol: str | None = None, *,
                            wait: bool = True) -> ReconcileReport:
        """Snapshot (constant venue calls), pure reconcile, then let supervisors act. With
        `wait` (/fix_sl, `vigil check`) the report says what they did; the loop does not wait:
        one position's slow venue work must never hold back the next look at all the others."""
        async with self._reconcile_lock:
            snapshot = await read_snapshot(self.view, self.venue.snapshot, self.clock,
                                           rng=self.rng)
            self.metrics.venue_calls.labels(self.account, "snapshot").inc(snapshot.calls)
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
            if not wait:
                for s in positions:
                    self.supervisor(s).wake()
                if zombies and (self._sweep is None or self._sweep.done()):
                    self._sweep = self.spawn(self._cancel_zombies(zombies), "zombies")
                self._update_gauge()
                return ReconcileReport(
                    account=self.account, positions=len(self.view.positions()),
                    unprotected_before=result.unprotected,
                    unprotected_after=result.unprotected, events=(), venue_calls=snapshot.calls)
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
            if report is not None:
                sup.position_seen(report)
                self._on_mark(sup, report.mark_price)

    async def _cancel_zombies(self, actions: list[CancelZombie]) -> list[ev.Event]:
        events: list[ev.Event] = []
        for action in actions:
            if self.halted:
                break
            order = action.order
            try:
                skipped = await self._cancel_flat(order, ev.CancelReason.ZOMBIE)
            except VenueError as exc:  # still in the view; the next look decides
                await self.bus.publish(ev.VenueFailure(
                    account=self.account, operation=f"cancel zombie {order.order_id}",
                    error=type(exc).__name__, message=str(exc)))
                continue
            if skipped is not None and skipped is not CancelSkip.GONE:
                continue
            self.metrics.zombies_cancelled.labels(self.account).inc()
            event = ev.ZombieCancelled(account=self.account, symbol=order.symbol,
                                       order_id=order.order_id, client_id=order.client_id,
                                       order_kind=order.kind)
            events.append(event)
            await self.bus.publish(event)
        return events

    async def _cancel_flat(self, order: OrderReport, reason: ev.CancelReason, by: str = ""
                           ) -> CancelSkip | None:
        """The owner of orders on flat symbols: cancel one under the symbol's writer lock, so a
        position opening meanwhile (whose supervisor would adopt this very order as its stop)
        waits until the cancel is done and then sees the truth. None: cancelled. Raises the
        venue's error when the cancel failed."""
        async with self.orders.writer(order.symbol):
            sup = self.supervisors.get(order.symbol)
            if self.view.position(order.symbol) is not None or (sup and sup.known):
                return CancelSkip.PROTECTS  # a position appeared: not ours to cancel any more
            try:
                done = await self.orders.cancel(order, reason, self.bus.publish, by=by)
            except AccountHalted:
                return CancelSkip.HALTED
        return CancelSkip.GONE if done is Cancelled.GONE else None

    # --- supervisors -------------------------------------------------------------------------
    def supervisor(self, symbol: str) -> PositionSupervisor:
        sup = self.supervisors.get(symbol)
        if sup is None:
            sup = self.supervisors[symbol] = PositionSupervisor(self.ctx, symbol)
            self._symbols_version += 1
        return sup

    def _retire(self, symbol: str, sup: object) -> None:
        if self.supervisors.get(symbol) is sup:
            del self.supervisors[symbol]
            self._symbols_version += 1

    # --- mark prices (exit plans) -------------------------------------------------------------
    def _guarded_symbols(self) -> frozenset[str]:
        """Guarded positions whose exit plan moves the stop: the ones that need ticks."""
        exits = self.exits
        return frozenset(s for s, sup in self.supervisors.items()
                         if sup.known is not None and exits is not None
                         and exits.plan_for(s).moves)

    def _on_tick(self, tick: PriceTick) -> None:
        sup = self.supervisors.get(tick.symbol)
        if sup is not None:
            self._on_mark(sup, tick.mark, tick.at)

    def _on_mark(self, sup: PositionSupervisor, mark: Decimal,
                 at: datetime | None = None) -> None:
        """One mark for a guarded position: the exit plan evaluates it in memory; a released
        move wakes the supervisor (coalesced), with the view's mark brought up to date first so
        its plan does not judge the new stop against an older mark."""
        exits, known = self.exits, sup.known
        if exits is None or known is None or sup.finished:
            return
        if exits.on_mark(known, mark, at or self.clock.now()):
            self.view.note_mark(sup.symbol, mark)
            sup.wake()
        elif sup.symbol in exits.held and sup.symbol not in self._move_timers:
            self._move_timers.add(sup.symbol)
            self.spawn(self._move_when_due(sup), f"move timer {sup.symbol}")

    async def _move_when_due(self, sup: PositionSupervisor) -> None:
        """A move the per-position interval held back goes when the interval ends, even if no
        tick comes by then: the mark that wanted it is evaluated again (issue 12)."""
        symbol, exits = sup.symbol, self.exits
        try:
            while exits is not None and (due := exits.held_until(symbol)) is not None:
                wait = (due - self.clock.now()).total_seconds()
                if wait <= 0:
                    break
                await self.clock.sleep(wait)
        finally:
            self._move_timers.discard(symbol)
        mark = exits.held.pop(symbol, None) if exits is not None else None
        if mark is not None and self.supervisors.get(symbol) is sup:
            self._on_mark(sup, mark)

    def _attend(self, symbol: str) -> None:
        """A stream event touched this symbol: its supervisor looks at once."""
        if self._stopping:
            return
        if symbol in self.supervisors or self.view.position(symbol) is not None:
            self.supervisor(symbol).wake()

    # --- stream ------------------------------------------------------------------------------
    async def _stream_loop(self) -> None:
        if not self.venue.capabilities.streams:
            self.stream = _Stream(up=False, reason="streams off: REST snapshots only",
                                  since=self.clock.now(), streams=False)
            return
        while not self._stopping:
            self.stream.set(True, "", self.clock.now())
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
            self.view.stream_gap()
            self.stream.set(False, reason, self.clock.now())
            await self.clock.sleep(STREAM_RESTART_SECONDS)

    async def _on_stream_event(self, event: VenueEvent) -> None:
        match event:
            case PositionUpdate(position=report, symbol=symbol):
                self.view.set_position(symbol, report, streamed_at=self.clock.now())
                sup = self.supervisors.get(symbol)
                if sup is not None:
                    sup.position_seen(report)
                    if report is not None:
                        self._on_mark(sup, report.mark_price)
                self._attend(symbol)
            case OrderUpdate(order=order):
                self.view.set_order(order)
                sup = self.supervisors.get(order.symbol)
                if sup is not None:
                    sup.order_seen(order)
                self._attend(order.symbol)
            case FillUpdate(fill=fill):
                self.stream.fills.setdefault(fill.symbol, []).append(fill)
            case StreamStatus(up=up, reason=reason):
                if not up:  # events from now until the reconnect may be lost
                    self.view.stream_gap()
                self.stream.set(up, reason, self.clock.now())
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
            waited = sup.sla_breached(now)
            if waited is not None:
                await self.pacer()  # hundreds breached at once take turns on the loop
                await self.bus.publish(ev.SlaBreached(
                    account=self.account, symbol=sup.symbol,
                    unprotected_seconds=Decimal(str(round(waited, 1))),
                    generation=sup.known.generation if sup.known else None))
        self._update_gauge()

    def _update_gauge(self) -> None:
        count = sum(1 for s in self.supervisors.values() if s.known and not s.protected)
        self.metrics.positions_unprotected.labels(self.account).set(count)

    # --- HALT ----------------------------------------------------------------------------------
    async def halt(self, reason: str) -> None:
        if self.halted:
            return
        self.flags.halted = reason
        await self.state.put("halt", self.account, reason)
        await self.bus.publish(ev.AccountHalted(account=self.account, reason=reason))

    async def unhalt(self) -> None:
        self.flags.halted = None
        await self.state.put("halt", self.account, None)

    # --- the read model: typed answers, nothing of the guard's insides ------------------------
    @property
    def venue_name(self) -> str:
        return self.venue.name

    def resolve_symbol(self, text: str) -> str:
        return self.venue.resolve_symbol(text)

    def status(self) -> AccountStatus:
        sups = [s for s in self.supervisors.values() if s.known is not None]
        ttps = [s.known.last_time_to_protect for s in sups
                if s.known is not None and s.known.last_time_to_protect is not None]
        return AccountStatus(
            name=self.account, venue=self.venue.name, halted=self.halted,
            stream=StreamHealth(self.stream.up, self.stream.reason, self.stream.since,
                                self.stream.streams),
            amend_in_place=self.venue.capabilities.amend_stop_in_place,
            last_reconcile=self.last_reconcile, last_error=self.last_error,
            positions=len(self.view.positions()),
            unprotected=sum(1 for s in sups if not s.protected),
            last_time_to_protect=ttps[-1] if ttps else None,
            weight=self.venue.request_weight() if isinstance(self.venue, WeighsRequests) else None)

    def positions(self) -> list[PositionView]:
        """Every open position with its protection, by symbol."""
        now = self.clock.now()
        views = []
        for symbol, report in sorted(self.view.positions().items()):
            sup = self.supervisors.get(symbol)
            known = sup.known if sup else None
            stops = [o for o in self.view.orders(symbol) if o.is_stop_for(report.side)]
            views.append(PositionView(
                account=self.account, symbol=symbol, side=report.side, qty=report.qty,
                entry_price=report.entry_price, mark_price=report.mark_price,
                unrealized_pnl=report.unrealized_pnl,
                stop_price=stops[0].trigger_price if stops else None,
                unprotected_seconds=sup.unprotected_for(now) if sup else 0.0,
                last_time_to_protect=known.last_time_to_protect if known else None,
                generation=known.generation if known else None,
                whole_position_stop=bool(stops) and stops[0].whole_position,
                exit=self.exits.view(symbol, report.side) if self.exits else None))
        return views

    def unrealized_pnl(self) -> Decimal:
        return sum((p.unrealized_pnl for p in self.view.positions().values()), ZERO)

    async def resting_orders(self) -> list[OrderReport]:
        """Every resting order: trigger orders from the view, plain ones (limits) asked for now
        (one call; snapshots list trigger orders only)."""
        orders = {o.order_id: o for o in self.view.orders()}
        for order in await retry_transient(self.venue.fetch_open_orders, self.clock,
                                           rng=self.rng):
            orders.setdefault(order.order_id, order)
        return list(orders.values())

    def known_orders(self) -> list[OrderReport]:
        """The trigger orders the view holds (no venue call)."""
        return self.view.orders()

    def is_protective_stop(self, order: OrderReport) -> bool:
        position = self.view.position(order.symbol)
        return position is not None and order.is_stop_for(position.side)

    # --- requests from the control layer, each through the symbol's one writer --------------
    async def as_writer(self, symbol: str, body: Callable[[AccountContext], Awaitable[T]], *,
                        entry: str = "") -> T:
        """Run an entry (its key: `entry`) as the symbol's supervisor (made now if none), which
        then adopts and protects what the entry left (engine/entries)."""
        while True:
            try:
                return await self.supervisor(symbol).as_writer(body, entry=entry)
            except SupervisorRetired:
                continue  # it ended just before: the next one is fresh


    async def close_position(self, symbol: str, *, by: str, side: PositionSide,
                             max_qty: Decimal, generation: int | None) -> CloseResult:
        if self.view.position(symbol) is None and symbol not in self.supervisors:
            return CloseResult(CloseStatus.ALREADY_FLAT)
        return await self.supervisor(symbol).close(
            ev.CloseReason.MANUAL, by=by, max_qty=max_qty, side=side, generation=generation)

    async def cancel_order(self, order: OrderReport, *, by: str) -> CancelSkip | None:
        """A person's cancel of one resting order (never a position's stop): through the
        position's supervisor, or the flat-symbol owner. None: cancelled."""
        if self.view.position(order.symbol) is not None or order.symbol in self.supervisors:
            return await self.supervisor(order.symbol).cancel_order(order, by=by)
        return await self._cancel_flat(order, ev.CancelReason.CANCEL_ALL, by)

    # --- exit plans: requests from the control layer (issue 12) ---------------------------------
    async def set_exit_plan(self, symbol: str,
                            change: Callable[[ExitPlan], ExitPlan]) -> PlanResult:
        """Give a guarded position its own plan (`change` of the one it has now)."""
        sup = self.supervisors.get(symbol)
        known = sup.known if sup is not None else None
        if self.exits is None or known is None or self.view.position(symbol) is None:
            return PlanResult(self.account, symbol, PlanStatus.NO_POSITION)
        await self.exits.set_plan(known, change(self.exits.plan_for(symbol)))
        report = self.view.position(symbol)
        if report is not None:  # a plan already in the money acts on the current mark
            self._on_mark(sup, report.mark_price)  # type: ignore[arg-type]
        return PlanResult(self.account, symbol, PlanStatus.SET,
                          self.exits.view(symbol, known.side))

    async def set_take_profit(self, symbol: str, spec: PriceSpec | None) -> TakeProfitResult:
        """The position's take-profit (/tp; None: off), priced like an entry's `tp` (a percent
        from the mark in favour, on the tick). One at or past the mark is refused: it would
        fill at once. The supervisor places, resizes and cancels it (reconcile's
        `plan_take_profit`)."""
        sup = self.supervisors.get(symbol)
        report = self.view.position(symbol)
        known = sup.known if sup is not None else None
        result = partial(TakeProfitResult, self.account, symbol)
        if self.exits is None or sup is None or known is None or report is None:
            return result(TakeProfitStatus.NO_POSITION)
        mark = report.mark_price
        price = None
        if spec is not None:
            try:
                price = take_profit_price(spec, report.side, mark, self.venue.market(symbol))
            except EntryRefused:
                price = None
            if price is None or price <= 0:
                return result(TakeProfitStatus.BAD_PRICE, mark=mark)
            if take_profit_reached(report.side, price, mark):
                return result(TakeProfitStatus.THROUGH_MARK, price=price, mark=mark)
        await self.exits.set_plan(known, replace(self.exits.plan_for(symbol), take_profit=price))
        await sup.ensure()
        return result(TakeProfitStatus.SET if price is not None else TakeProfitStatus.OFF,
                      price=price, mark=mark)

    async def move_stop(self, symbol: str, spec: PriceSpec, *, confirmed: bool) -> MoveResult:
        """A person's stop price (/sl). Tighter: at once. Looser: only `confirmed` (the plan's
        moves end, or they would tighten it straight back). Never through the mark."""
        sup = self.supervisors.get(symbol)
        report = self.view.position(symbol)
        known = sup.known if sup is not None else None
        if self.exits is None or sup is None or known is None or report is None:
            return MoveResult(self.account, symbol, MoveStatus.NO_POSITION)
        # Priced as an entry's stop is (a percent from the mark; rounding never loosens it).
        price = stop_price(spec, report.side, report.mark_price, self.venue.market(symbol))
        old = known.stop.trigger_price if known.stop is not None else None
        result = partial(MoveResult, self.account, symbol, old=old, new=price,
                         mark=report.mark_price)
        if self.policy.is_crossed(report.side, price, report.mark_price):
            return result(MoveStatus.THROUGH_MARK)
        if old is None:
            return result(MoveStatus.NO_STOP)
        if price == old:
            return result(MoveStatus.UNCHANGED)
        tighter = is_tighter(report.side, price, old)
        if not tighter and not confirmed:
            return result(MoveStatus.NEEDS_CONFIRM)
        if tighter:
            await self.exits.move_by_hand(known, price)
        else:
            await self.exits.loosen_by_hand(known)
        await sup.move_stop_to(price)
        now = sup.known.stop.trigger_price if sup.known and sup.known.stop else None
        return result(MoveStatus.MOVED if now == price else MoveStatus.FAILED)
