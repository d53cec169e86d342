"""ControlService: the one door into the engine for the bot, the console and (later) HTTP.
Commands in, typed results out; nothing here knows about Telegram."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from decimal import Decimal

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, has_purpose
from engine.domain.pnl import MAX_REPORT_DAYS, DailyReport
from engine.domain.reports import OrderReport, OrderStatus
from engine.entries.gates import RiskLimits
from engine.entries.model import EntryPlan, EntryRequest, EntryResult, PriceKind, PriceSpec
from engine.entries.service import EntryService
from engine.errors import Rejected, RejectReason, VenueError
from engine.exits.plan import Breakeven, ExitPlan, Trailing
from engine.exits.requests import MoveResult, MoveStatus, PlanResult, TakeProfitResult
from engine.pnl.service import PnlReports
from engine.ports import StateStore
from engine.protection.guard import AccountGuard
from engine.results import (
    AccountStatus,
    CancelOutcome,
    CancelSkip,
    CloseOutcome,
    CloseStatus,
    CloseTarget,
    EngineStatus,
    HoldKind,
    HoldResult,
    HoldState,
    OrderTarget,
    PositionView,
    ReconcileReport,
)

__all__ = [  # the result types, re-exported: callers need only this module
    "MAX_REPORT_DAYS", "AccountStatus", "CancelOutcome", "CancelSkip", "CloseOutcome",
    "CloseStatus", "CloseTarget", "ControlService", "DailyReport", "EngineStatus", "HoldKind",
    "HoldResult", "HoldState", "OrderTarget", "PositionView", "ReconcileReport",
]


class ControlService:
    def __init__(self, guards: dict[str, AccountGuard], *, venues_testnet: dict[str, bool],
                 state: StateStore, bus: EventBus, clock: Clock, mode: str,
                 limits: RiskLimits | None = None) -> None:
        self._guards = guards
        self._testnet = venues_testnet
        self.state = state
        self.bus = bus
        self.clock = clock
        self.mode = mode
        self.started_at = clock.now()
        self._holds: dict[str, HoldState] = {}
        self.reports: PnlReports | None = None  # wired by the composition root
        self.chaos_profile: str | None = None  # faults injected at the venues (engine/chaos.py)
        self.entries = EntryService(guards, limits=limits or RiskLimits(), state=state, bus=bus,
                                    clock=clock, hold_of=self._hold_reason)
        bus.subscribe(self.entries.note_close)  # stop-out streaks for the cool-down gate

    # --- PnL --------------------------------------------------------------------------------
    async def pnl(self, days: int) -> DailyReport:
        """The last `days` local calendar days, today included, up to now."""
        if self.reports is None:
            raise RuntimeError("PnL reports are not wired")
        return await self.reports.for_days(days)

    async def pnl_for_slot(self, slot: datetime, previous: datetime) -> DailyReport:
        """The scheduled daily report for [previous, slot)."""
        if self.reports is None:
            raise RuntimeError("PnL reports are not wired")
        return await self.reports.for_slot(slot, previous)

    async def load(self) -> None:
        await self.entries.load()
        for name in self._guards:
            raw = await self.state.get("hold", name)
            if raw:
                self._holds[name] = HoldState(**raw | {"kind": HoldKind(raw.get("kind",
                                                                               "manual"))})

    # --- reading ---------------------------------------------------------------------------
    def accounts(self) -> list[str]:
        return list(self._guards)

    def venue_name(self, account: str) -> str:
        return self._guards[account].venue_name

    def unrealized_pnl(self, account: str) -> Decimal:
        return self._guards[account].unrealized_pnl()

    def status(self) -> EngineStatus:
        accounts = [replace(guard.status(), testnet=self._testnet.get(name, False),
                            hold=self._holds.get(name))
                    for name, guard in self._guards.items()]
        return EngineStatus(self.mode, self.started_at, self.hold_state, tuple(accounts),
                            chaos=self.chaos_profile)

    def positions(self) -> list[PositionView]:
        return [replace(view, source=self.entries.source_of(view.account, view.symbol,
                                                            view.generation).value)
                for guard in self._guards.values() for view in guard.positions()]

    @property
    def hold_state(self) -> HoldState | None:
        """The HOLD to show first: a loss-cap one if any account has it."""
        holds = sorted(self._holds.values(), key=lambda h: h.kind != HoldKind.LOSS_CAP)
        return holds[0] if holds else None

    def hold_of(self, account: str) -> HoldState | None:
        return self._holds.get(account)

    def _hold_reason(self, account: str) -> str | None:
        hold = self._holds.get(account)
        return hold.reason if hold is not None else None

    # --- entries (engine/entries) ------------------------------------------------------------
    async def preview_entry(self, request: EntryRequest) -> EntryPlan:
        """What `open` would send now; raises EntryRefused with the gate's reason."""
        return await self.entries.preview(request)

    async def open(self, request: EntryRequest) -> EntryResult:
        """Open a position with its stop as one act (or roll it back, verified flat). The same
        idempotency key returns the earlier result and never sends a second entry."""
        return await self.entries.open(request)

    def entries_allowed(self, account: str) -> bool:
        """New entries wait while an account is on HOLD or HALTED; protection never does."""
        return account not in self._holds and not self._guards[account].halted

    @property
    def resume_needs_approval(self) -> bool:
        return any(h.kind == HoldKind.LOSS_CAP for h in self._holds.values())

    # --- commands --------------------------------------------------------------------------
    async def hold(self, reason: str, by: str, *, accounts: list[str] | None = None,
                   kind: HoldKind = HoldKind.MANUAL) -> HoldResult:
        """Block new entries. Protection never stops and stops are never removed."""
        changed = False
        for name in accounts or list(self._guards):
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
        for name, guard in self._guards.items():
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
        for guard in self._guards.values():
            symbol = None
            if symbol_text is not None:
                try:
                    symbol = guard.resolve_symbol(symbol_text)
                except Rejected as exc:
                    if exc.reason is RejectReason.BAD_SYMBOL and len(self._guards) > 1:
                        continue
                    raise
            try:
                reports.append(await guard.reconcile_now(symbol))
            except VenueError as exc:  # one failing account must not hide the others
                reports.append(ReconcileReport(
                    account=guard.account, positions=guard.status().positions,
                    unprotected_before=(), unprotected_after=(), events=(), venue_calls=0,
                    error=f"{type(exc).__name__}: {exc}"))
        return reports

    # --- closing and cancelling (run after an approval) ------------------------------------
    def resolve(self, symbol_text: str) -> list[tuple[str, str]]:
        """(account, venue symbol) for every account that lists this market."""
        found = []
        for name, guard in self._guards.items():
            try:
                found.append((name, guard.resolve_symbol(symbol_text)))
            except Rejected:
                continue
        if not found:
            raise Rejected(RejectReason.BAD_SYMBOL, f"no account trades {symbol_text}")
        return found

    def close_targets(self, symbol_text: str | None = None) -> list[CloseTarget]:
        """What a close (one symbol, or all with None) would close right now."""
        wanted = set(self.resolve(symbol_text)) if symbol_text is not None else None
        return [CloseTarget(p.account, p.symbol, p.side, p.qty, p.mark_price, p.unrealized_pnl,
                            p.generation)
                for p in self.positions()
                if wanted is None or (p.account, p.symbol) in wanted]

    async def close(self, targets: list[CloseTarget], by: str) -> list[CloseOutcome]:
        """Reduce-only market closes of what was approved, through each position's supervisor:
        never more than the approved size, never a position that flipped or was re-opened
        since. Its stop is cancelled only once the venue shows it flat. A flat, halted or
        already closing position is a no-op that says so."""
        outcomes = []
        for t in targets:
            # A limit entry resting there holds the symbol's writer lock until its timeout:
            # it cancels its rest now and protects what filled; then the close runs.
            cut = self.entries.cut_short(t.account, t.symbol)
            try:
                result = await self._guards[t.account].close_position(
                    t.symbol, by=by, side=t.side, max_qty=t.qty, generation=t.generation)
            except VenueError as exc:
                outcomes.append(CloseOutcome(t.account, t.symbol, CloseStatus.FAILED,
                                             detail=str(exc)))
                continue
            outcome = _close_outcome(t.account, t.symbol, result.status, result.events,
                                     result.detail)
            # "cancelled first" only once the venue showed the rest gone (review)
            gone = cut and self.entries.cut_ended(t.account, t.symbol) is not None
            outcomes.append(replace(outcome, entry_cut=True) if gone else outcome)
        return outcomes

    async def cancel_resting_entries(self, symbol_text: str | None,
                                     skip: frozenset[tuple[str, str]] = frozenset()
                                     ) -> list[EntryResult]:
        """A close (one symbol, or all with None) of symbols with no position to close: each
        limit entry resting there cancels its unfilled rest now, verified gone, and ends (what
        filled meanwhile is protected: its result says). Without a Confirm: it only reduces
        exposure. `skip`: (account, symbol) whose close will cut the entry itself."""
        wanted = set(self.resolve(symbol_text)) if symbol_text is not None else None
        results = []
        for account, symbol in self.entries.resting():
            if (account, symbol) in skip or (wanted is not None
                                             and (account, symbol) not in wanted):
                continue
            result = await self.entries.cancel_resting(account, symbol)
            if result is not None:
                results.append(result)
        return results

    async def resting_orders(self, account: str) -> list[OrderReport]:
        return await self._guards[account].resting_orders()

    async def cancel_targets(self) -> list[OrderTarget]:
        """Resting orders that are not the protective stop of an open position: entries,
        take-profits, stray orders. Protective stops are never part of a cancel-all."""
        targets = []
        for name, guard in self._guards.items():
            try:
                orders = await guard.resting_orders()
            except VenueError:
                orders = guard.known_orders()  # the trigger orders we know of, at least
            targets.extend(_order_target(name, o) for o in orders
                           if not guard.is_protective_stop(o))
        return sorted(targets, key=lambda t: (t.account, t.symbol, t.order_id))

    async def cancel(self, targets: list[OrderTarget], by: str) -> list[CancelOutcome]:
        """Cancel what was approved, re-checked now (under each symbol's writer): gone orders
        and orders that became a position's stop are skipped and said so."""
        outcomes = []
        resting: dict[str, dict[str, OrderReport]] = {}
        for target in targets:
            guard = self._guards[target.account]
            if target.account not in resting:
                try:
                    resting[target.account] = {
                        o.order_id: o for o in await guard.resting_orders()}
                except VenueError as exc:
                    outcomes.append(CancelOutcome(target, False, str(exc)))
                    continue
            order = resting[target.account].get(target.order_id)
            if order is None:
                outcomes.append(CancelOutcome(target, False, CancelSkip.GONE))
                continue
            # Our resting limit entry holds its symbol's writer lock: it cancels its own rest now
            # (verified gone, what filled protected) instead of at its timeout.
            cut = has_purpose(order.client_id, OrderPurpose.ENTRY) and self.entries.cut_short(
                target.account, target.symbol)
            try:
                skipped = await guard.cancel_order(order, by=by)
                ended = self.entries.cut_ended(target.account, target.symbol) if cut else None
                if (skipped is CancelSkip.GONE and ended is not None
                        and ended.order_id == order.order_id
                        and ended.status is OrderStatus.CANCELLED):
                    skipped = None  # gone because the entry cancelled it just now
            except Rejected as exc:
                outcomes.append(CancelOutcome(target, False, exc.message or str(exc)))
                continue
            except VenueError as exc:
                outcomes.append(CancelOutcome(target, False, str(exc)))
                continue
            outcomes.append(CancelOutcome(target, skipped is None, skipped or ""))
        return outcomes


    # --- exit plans (issue 12): /trail, /breakeven, /sl ---------------------------------------
    async def set_trailing(self, symbol_text: str, trailing: Trailing | None
                           ) -> list[PlanResult]:
        """Trail the position's stop (None: trailing off) on every account holding it."""
        return await self._set_plan(symbol_text, lambda p: replace(p, trailing=trailing))

    async def set_breakeven(self, symbol_text: str, breakeven: Breakeven) -> list[PlanResult]:
        return await self._set_plan(symbol_text, lambda p: replace(p, breakeven=breakeven))

    async def _set_plan(self, symbol_text: str,
                        change: Callable[[ExitPlan], ExitPlan]) -> list[PlanResult]:
        return [await self._guards[account].set_exit_plan(symbol, change)
                for account, symbol in self.resolve(symbol_text)]

    async def set_take_profit(self, symbol_text: str, spec: PriceSpec | None
                              ) -> list[TakeProfitResult]:
        """The position's take-profit (/tp; None: off) on every account holding it."""
        return [await self._guards[account].set_take_profit(symbol, spec)
                for account, symbol in self.resolve(symbol_text)]

    async def move_stop(self, symbol_text: str, spec: PriceSpec, *,
                        confirmed: bool = False) -> list[MoveResult]:
        """Move the stop by hand: tighter at once; looser only `confirmed` (after Confirm)."""
        results = []
        for account, symbol in self.resolve(symbol_text):
            try:
                results.append(await self._guards[account].move_stop(symbol, spec,
                                                                     confirmed=confirmed))
            except VenueError:
                results.append(MoveResult(account, symbol, MoveStatus.FAILED))
        return results

    async def confirm_stop_moves(self, moves: list[MoveResult]) -> list[MoveResult]:
        """Run the looser moves a Confirm approved, each at the exact price shown."""
        results = []
        for m in moves:
            guard = self._guards.get(m.account)
            if guard is None or m.new is None:
                results.append(replace(m, status=MoveStatus.NO_POSITION))
                continue
            try:
                results.append(await guard.move_stop(
                    m.symbol, PriceSpec(PriceKind.PRICE, m.new), confirmed=True))
            except VenueError:
                results.append(replace(m, status=MoveStatus.FAILED))
        return results


def _order_target(account: str, order: OrderReport) -> OrderTarget:
    return OrderTarget(account, order.symbol, order.order_id, order.kind, order.side, order.qty,
                       order.trigger_price)


def _close_outcome(account: str, symbol: str, status: CloseStatus,
                   events: tuple[ev.Event, ...], detail: str) -> CloseOutcome:
    closed = next((e for e in events if isinstance(e, ev.PositionClosed)), None)
    submitted = next((e for e in events if isinstance(e, ev.CloseSubmitted)), None)
    rejected = next((e for e in events if isinstance(e, ev.StopRejected)), None)
    if status is CloseStatus.CLOSED and closed is not None:
        return CloseOutcome(account, symbol, status, closed.qty, closed.exit_price,
                            closed.realized_pnl)
    if status is CloseStatus.SUBMITTED and submitted is not None:
        return CloseOutcome(account, symbol, status, submitted.qty)
    if status is CloseStatus.FAILED and rejected is not None:
        detail = f"{rejected.reason} {rejected.message}".strip()
    return CloseOutcome(account, symbol, status, detail=detail)
