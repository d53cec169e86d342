"""ControlService: the one door into the engine for the bot, the console and (later) HTTP.
Commands in, typed results out; nothing here knows about Telegram."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.reports import OrderReport
from engine.domain.values import PositionSide
from engine.errors import OutcomeUnknown, Rejected, RejectReason, VenueError
from engine.ports import StateStore
from engine.protection.guard import AccountGuard, ReconcileReport
from engine.retry import retry_transient


class HoldKind(StrEnum):
    MANUAL = "manual"
    LOSS_CAP = "loss_cap"


@dataclass(frozen=True, slots=True)
class HoldState:
    reason: str
    by: str
    since: str
    kind: str = HoldKind.MANUAL  # a loss-cap HOLD needs an approval to lift


@dataclass(frozen=True, slots=True)
class AccountStatus:
    name: str
    venue: str
    testnet: bool
    halted: str | None
    hold: HoldState | None
    stream_up: bool
    stream_note: str
    amend_in_place: bool
    last_reconcile: datetime | None
    last_error: str | None
    positions: int
    unprotected: int
    last_time_to_protect: Decimal | None


@dataclass(frozen=True, slots=True)
class EngineStatus:
    mode: str  # paper | live
    started_at: datetime
    hold: HoldState | None
    accounts: tuple[AccountStatus, ...]

    @property
    def positions(self) -> int:
        return sum(a.positions for a in self.accounts)

    @property
    def unprotected(self) -> int:
        return sum(a.unprotected for a in self.accounts)


@dataclass(frozen=True, slots=True)
class PositionView:
    account: str
    symbol: str
    side: PositionSide
    qty: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    stop_price: Decimal | None
    unprotected_seconds: float
    last_time_to_protect: Decimal | None


@dataclass(frozen=True, slots=True)
class CloseTarget:
    account: str
    symbol: str
    side: PositionSide
    qty: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal


class CloseStatus(StrEnum):
    CLOSED = "closed"  # flat now; its stops cancelled after flat
    SUBMITTED = "submitted"  # close sent; the venue has not shown it flat yet
    ALREADY_FLAT = "already_flat"
    IN_PROGRESS = "in_progress"  # an earlier close is still in flight
    CHANGED = "changed"  # the position flipped since the request (detail: its side now)
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    account: str
    symbol: str
    status: CloseStatus
    qty: Decimal | None = None
    exit_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderTarget:
    account: str
    symbol: str
    order_id: str
    kind: str
    side: str
    qty: Decimal | None
    price: Decimal | None


class CancelSkip(StrEnum):
    GONE = "gone"  # filled, cancelled or triggered meanwhile
    PROTECTS = "protects"  # it became the stop of a position: kept


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    target: OrderTarget
    cancelled: bool
    detail: str = ""  # a CancelSkip, or the venue's words


@dataclass(frozen=True, slots=True)
class HoldResult:
    changed: bool
    hold: HoldState | None


class ControlService:
    def __init__(self, guards: dict[str, AccountGuard], *, venues_testnet: dict[str, bool],
                 state: StateStore, bus: EventBus, clock: Clock, mode: str) -> None:
        self.guards = guards
        self._testnet = venues_testnet
        self.state = state
        self.bus = bus
        self.clock = clock
        self.mode = mode
        self.started_at = clock.now()
        self._holds: dict[str, HoldState] = {}

    async def load(self) -> None:
        for name in self.guards:
            raw = await self.state.get("hold", name)
            if raw:
                self._holds[name] = HoldState(**raw)

    # --- reading ---------------------------------------------------------------------------
    def status(self) -> EngineStatus:
        accounts = []
        for name, guard in self.guards.items():
            sups = [s for s in guard.supervisors.values() if s.known is not None]
            ttps = [s.known.last_time_to_protect for s in sups
                    if s.known and s.known.last_time_to_protect is not None]
            accounts.append(AccountStatus(
                name=name, venue=guard.venue.name, testnet=self._testnet.get(name, False),
                halted=guard.halted, hold=self._holds.get(name), stream_up=guard.stream.up,
                stream_note=guard.stream.reason,
                amend_in_place=guard.venue.capabilities.amend_stop_in_place,
                last_reconcile=guard.last_reconcile, last_error=guard.last_error,
                positions=len(guard.view.positions()),
                unprotected=sum(1 for s in sups if not s.protected),
                last_time_to_protect=ttps[-1] if ttps else None))
        return EngineStatus(self.mode, self.started_at, self.hold_state, tuple(accounts))

    def positions(self) -> list[PositionView]:
        now = self.clock.now()
        views = []
        for name, guard in self.guards.items():
            for symbol, report in sorted(guard.view.positions().items()):
                sup = guard.supervisors.get(symbol)
                known = sup.known if sup else None
                stops = [o for o in guard.view.orders(symbol) if o.is_stop_for(report.side)]
                stop_price = stops[0].trigger_price if stops else None
                views.append(PositionView(
                    account=name, symbol=symbol, side=report.side, qty=report.qty,
                    entry_price=report.entry_price, mark_price=report.mark_price,
                    unrealized_pnl=report.unrealized_pnl, stop_price=stop_price,
                    unprotected_seconds=sup.unprotected_for(now) if sup else 0.0,
                    last_time_to_protect=known.last_time_to_protect if known else None))
        return views

    @property
    def hold_state(self) -> HoldState | None:
        """The HOLD to show first: a loss-cap one if any account has it."""
        holds = sorted(self._holds.values(), key=lambda h: h.kind != HoldKind.LOSS_CAP)
        return holds[0] if holds else None

    def hold_of(self, account: str) -> HoldState | None:
        return self._holds.get(account)

    def entries_allowed(self, account: str) -> bool:
        """New entries wait while an account is on HOLD or HALTED; protection never does."""
        return account not in self._holds and not self.guards[account].halted

    @property
    def resume_needs_approval(self) -> bool:
        return any(h.kind == HoldKind.LOSS_CAP for h in self._holds.values())

    # --- commands --------------------------------------------------------------------------
    async def hold(self, reason: str, by: str, *, accounts: list[str] | None = None,
                   kind: HoldKind = HoldKind.MANUAL) -> HoldResult:
        """Block new entries. Protection never stops and stops are never removed."""
        changed = False
        for name in accounts or list(self.guards):
            held = self._holds.get(name)
            # A loss-cap HOLD replaces a manual one: lifting it must need the approval.
            upgrade = (held is not None and kind == HoldKind.LOSS_CAP
                       and held.kind != HoldKind.LOSS_CAP)
            if held is not None and not upgrade:
                continue
            hold = HoldState(reason=reason, by=by, since=self.clock.now().isoformat(),
                             kind=kind)
            self._holds[name] = hold
            await self.state.put("hold", name, asdict(hold))
            await self.bus.publish(ev.HoldSet(account=name, reason=reason, by=by))
            changed = True
        return HoldResult(changed, self.hold_state)

    async def resume(self, by: str) -> HoldResult:
        """Lift every HOLD and HALT (a loss-cap HOLD only through an approval)."""
        changed = False
        for name, guard in self.guards.items():
            if name not in self._holds and not guard.halted:
                continue
            self._holds.pop(name, None)
            await self.state.put("hold", name, None)
            if guard.halted:
                await guard.unhalt()
            await self.bus.publish(ev.HoldReleased(account=name, by=by))
            changed = True
        return HoldResult(changed, None)

    async def fix_sl(self, symbol_text: str | None = None) -> list[ReconcileReport]:
        """Reconcile now (all accounts, or the accounts trading that symbol)."""
        reports = []
        for guard in self.guards.values():
            symbol = None
            if symbol_text is not None:
                try:
                    symbol = guard.venue.resolve_symbol(symbol_text)
                except Rejected as exc:
                    if exc.reason is RejectReason.BAD_SYMBOL and len(self.guards) > 1:
                        continue
                    raise
            try:
                reports.append(await guard.reconcile_now(symbol))
            except VenueError as exc:  # one failing account must not hide the others
                reports.append(ReconcileReport(
                    account=guard.account, positions=len(guard.view.positions()),
                    unprotected_before=(), unprotected_after=(), events=(), venue_calls=0,
                    error=f"{type(exc).__name__}: {exc}"))
        return reports

    # --- closing and cancelling (run after an approval) ------------------------------------
    def resolve(self, symbol_text: str) -> list[tuple[str, str]]:
        """(account, venue symbol) for every account that lists this market."""
        found = []
        for name, guard in self.guards.items():
            try:
                found.append((name, guard.venue.resolve_symbol(symbol_text)))
            except Rejected:
                continue
        if not found:
            raise Rejected(RejectReason.BAD_SYMBOL, f"no account trades {symbol_text}")
        return found

    def close_targets(self, symbol_text: str | None = None) -> list[CloseTarget]:
        """What a close (one symbol, or all with None) would close right now."""
        wanted = set(self.resolve(symbol_text)) if symbol_text is not None else None
        targets = []
        for name, guard in self.guards.items():
            for symbol, p in sorted(guard.view.positions().items()):
                if wanted is None or (name, symbol) in wanted:
                    targets.append(CloseTarget(name, symbol, p.side, p.qty, p.mark_price,
                                               p.unrealized_pnl))
        return targets

    async def close(self, targets: list[CloseTarget], by: str) -> list[CloseOutcome]:
        """Reduce-only market closes of what was approved, through each position's supervisor:
        never more than the approved size, never a position that flipped since. Its stop is
        cancelled only once the venue shows it flat. A flat or already closing position is a
        no-op that says so."""
        outcomes = []
        for t in targets:
            guard = self.guards[t.account]
            now = guard.view.position(t.symbol)
            if now is None:
                outcomes.append(CloseOutcome(t.account, t.symbol, CloseStatus.ALREADY_FLAT))
                continue
            if now.side is not t.side:
                outcomes.append(CloseOutcome(t.account, t.symbol, CloseStatus.CHANGED,
                                             detail=now.side.value))
                continue
            sup = guard.supervisor(t.symbol)
            try:
                events = await sup.close(f"manual close by {by}", max_qty=t.qty)
            except VenueError as exc:
                outcomes.append(CloseOutcome(t.account, t.symbol, CloseStatus.FAILED,
                                             detail=str(exc)))
                continue
            outcome = _close_outcome(t.account, t.symbol, events)
            if not events and guard.view.position(t.symbol) is not None and sup.closing:
                outcome = CloseOutcome(t.account, t.symbol, CloseStatus.IN_PROGRESS)
            outcomes.append(outcome)
        return outcomes

    async def resting_orders(self, account: str) -> list[OrderReport]:
        """Every resting order: trigger orders from the view, plain ones (limits) asked for now
        (one call; snapshots list trigger orders only)."""
        guard = self.guards[account]
        orders = {o.order_id: o for o in guard.view.orders()}
        for order in await retry_transient(guard.venue.fetch_open_orders, self.clock):
            orders.setdefault(order.order_id, order)
        return list(orders.values())

    async def cancel_targets(self) -> list[OrderTarget]:
        """Resting orders that are not the protective stop of an open position: entries,
        take-profits, stray orders. Protective stops are never part of a cancel-all."""
        targets = []
        for name, guard in self.guards.items():
            try:
                orders = await self.resting_orders(name)
            except VenueError:
                orders = guard.view.orders()  # the trigger orders we know of, at least
            for order in orders:
                position = guard.view.position(order.symbol)
                if position is not None and order.is_stop_for(position.side):
                    continue
                targets.append(OrderTarget(name, order.symbol, order.order_id, order.kind.value,
                                           order.side.value, order.qty,
                                           order.trigger_price))
        return sorted(targets, key=lambda t: (t.account, t.symbol, t.order_id))

    async def cancel(self, targets: list[OrderTarget], by: str) -> list[CancelOutcome]:
        """Cancel what was approved, re-checked now: gone orders and orders that became a
        position's stop are skipped and said so."""
        outcomes = []
        resting: dict[str, dict[str, OrderReport]] = {}
        for target in targets:
            guard = self.guards[target.account]
            if target.account not in resting:
                try:
                    resting[target.account] = {
                        o.order_id: o for o in await self.resting_orders(target.account)}
                except VenueError as exc:
                    outcomes.append(CancelOutcome(target, False, str(exc)))
                    continue
            order = resting[target.account].get(target.order_id)
            position = guard.view.position(target.symbol)
            if order is None:
                outcomes.append(CancelOutcome(target, False, CancelSkip.GONE))
                continue
            if position is not None and order.is_stop_for(position.side):
                outcomes.append(CancelOutcome(target, False, CancelSkip.PROTECTS))
                continue
            await self.bus.publish(ev.CancelIntent(
                account=target.account, symbol=target.symbol, order_id=order.order_id,
                client_id=order.client_id, reason=f"cancel_all by {by}"))
            try:
                await retry_transient(lambda o=order, v=guard.venue: v.cancel_order(o), self.clock)
            except Rejected as exc:
                if exc.reason is RejectReason.ORDER_NOT_FOUND:
                    guard.view.drop_order(order.order_id)
                    outcomes.append(CancelOutcome(target, False, CancelSkip.GONE))
                else:
                    outcomes.append(CancelOutcome(target, False, exc.message or str(exc)))
                continue
            except (OutcomeUnknown, VenueError) as exc:
                outcomes.append(CancelOutcome(target, False, str(exc)))
                continue
            guard.view.drop_order(order.order_id)
            outcomes.append(CancelOutcome(target, True))
        return outcomes


def _close_outcome(account: str, symbol: str, events: list[ev.Event]) -> CloseOutcome:
    submitted = next((e for e in events if isinstance(e, ev.CloseSubmitted)), None)
    closed = next((e for e in events if isinstance(e, ev.PositionClosed)), None)
    rejected = next((e for e in events if isinstance(e, ev.StopRejected)), None)
    if closed is not None:
        return CloseOutcome(account, symbol, CloseStatus.CLOSED, closed.qty, closed.exit_price,
                            closed.realized_pnl)
    if submitted is not None:
        return CloseOutcome(account, symbol, CloseStatus.SUBMITTED, submitted.qty)
    if rejected is not None:
        return CloseOutcome(account, symbol, CloseStatus.FAILED,
                            detail=f"{rejected.reason} {rejected.message}".strip())
    return CloseOutcome(account, symbol, CloseStatus.ALREADY_FLAT)
