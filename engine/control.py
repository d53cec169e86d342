"""ControlService: the one door into the engine for the bot, the console and (later) HTTP.
Commands in, typed results out; nothing here knows about Telegram."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.bus import EventBus
from engine.clock import Clock
from engine.domain import events as ev
from engine.domain.values import PositionSide
from engine.errors import Rejected, RejectReason
from engine.ports import StateStore
from engine.protection.guard import AccountGuard, ReconcileReport


@dataclass(frozen=True, slots=True)
class HoldState:
    reason: str
    by: str
    since: str


@dataclass(frozen=True, slots=True)
class AccountStatus:
    name: str
    venue: str
    testnet: bool
    halted: str | None
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
        self._hold: HoldState | None = None

    async def load(self) -> None:
        raw = await self.state.get("engine", "hold")
        self._hold = HoldState(**raw) if raw else None

    # --- reading ---------------------------------------------------------------------------
    def status(self) -> EngineStatus:
        accounts = []
        for name, guard in self.guards.items():
            sups = [s for s in guard.supervisors.values() if s.known is not None]
            ttps = [s.known.last_time_to_protect for s in sups
                    if s.known and s.known.last_time_to_protect is not None]
            accounts.append(AccountStatus(
                name=name, venue=guard.venue.name, testnet=self._testnet.get(name, False),
                halted=guard.halted, stream_up=guard.stream.up, stream_note=guard.stream.reason,
                amend_in_place=guard.venue.capabilities.amend_stop_in_place,
                last_reconcile=guard.last_reconcile, last_error=guard.last_error,
                positions=len(guard.view.positions()),
                unprotected=sum(1 for s in sups if not s.protected),
                last_time_to_protect=ttps[-1] if ttps else None))
        return EngineStatus(self.mode, self.started_at, self._hold, tuple(accounts))

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
        return self._hold

    # --- commands --------------------------------------------------------------------------
    async def hold(self, reason: str, by: str) -> HoldResult:
        """Block new entries. Protection never stops and stops are never removed."""
        if self._hold is not None:
            return HoldResult(False, self._hold)
        self._hold = HoldState(reason=reason, by=by, since=self.clock.now().isoformat())
        await self.state.put("engine", "hold", {"reason": reason, "by": by,
                                                "since": self._hold.since})
        for name in self.guards:
            await self.bus.publish(ev.HoldSet(account=name, reason=reason, by=by))
        return HoldResult(True, self._hold)

    async def resume(self, by: str) -> HoldResult:
        changed = self._hold is not None or any(g.halted for g in self.guards.values())
        self._hold = None
        await self.state.put("engine", "hold", None)
        for name, guard in self.guards.items():
            if guard.halted:
                await guard.unhalt()
            if changed:
                await self.bus.publish(ev.HoldReleased(account=name, by=by))
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
            reports.append(await guard.reconcile_now(symbol))
        return reports
