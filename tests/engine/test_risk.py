"""Daily loss cap: realized (journal) + unrealized (venue view) since the local day start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.clock import ManualClock
from engine.control import ControlService, HoldKind
from engine.domain import events as ev
from engine.domain.values import PositionSide
from engine.metrics import Metrics
from engine.risk import DailyLossCap, day_start
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import SimVenue
from storage.repositories import StateRepo
from tests.engine.conftest import BTC, default_policy, make_guard, open_db

MOSCOW = ZoneInfo("Europe/Moscow")


def test_day_start_is_local_midnight() -> None:
    now = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)  # already 01:30 on 2 March in Moscow
    assert day_start(now, MOSCOW) == datetime(2026, 3, 2, 0, 0, tzinfo=MOSCOW)
    assert day_start(now, ZoneInfo("UTC")) == datetime(2026, 3, 1, tzinfo=ZoneInfo("UTC"))


async def test_loss_cap_holds_the_account_once_and_stays_quiet_after_a_lift(
        tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    exchange = SimExchange(clock, seed=3)
    hand = HandApi(exchange)
    db, journal = await open_db(tmp_path / "v.db")
    try:
        events: list[ev.Event] = []
        guard = make_guard(SimVenue(exchange, clock), db, journal, clock, default_policy(),
                           Metrics(), sink=events)
        state = StateRepo(db)
        bus = guard.bus
        control = ControlService({"paper": guard}, venues_testnet={}, state=state, bus=bus,
                                 clock=clock, mode="paper")
        realized = {"paper": Decimal("-120")}  # already lost today, from closed positions

        async def realized_since(account: str, since: datetime) -> Decimal:
            assert since == day_start(clock.now(), MOSCOW)
            return realized[account]

        cap = DailyLossCap(control, limit=Decimal(200), tz=MOSCOW, realized_since=realized_since,
                           state=state, bus=bus, clock=clock)
        hand.open(BTC, PositionSide.LONG, Decimal("0.1"))
        await guard.load()
        await guard.reconcile_now()
        assert await cap.check() == []  # -120 + about -1.3 unrealized: above -200

        exchange.set_mark(BTC, Decimal("64100"))  # about -90 unrealized on 0.1 BTC
        await guard.reconcile_now()
        assert await cap.pnl_today("paper") <= Decimal(-200)
        assert await cap.check() == ["paper"]
        hold = control.hold_of("paper")
        assert hold is not None and hold.kind == HoldKind.LOSS_CAP and hold.by == "risk"
        assert not control.entries_allowed("paper")
        assert control.resume_needs_approval
        assert [e.kind for e in events if isinstance(e, ev.LossLimitHit | ev.HoldSet)] == [
            "loss_limit_hit", "hold_set"]
        assert exchange.open_orders(), "the stop stays on HOLD"
        assert await cap.check() == []  # already held: no second alert

        await control.resume("admin")
        assert await cap.check() == []  # lifted by a person: quiet for the rest of the day
        await clock.advance(timedelta(days=1).total_seconds())  # the next local day
        assert await cap.check() == ["paper"]

        restarted = ControlService({"paper": guard}, venues_testnet={}, state=state, bus=bus,
                                   clock=clock, mode="paper")
        await restarted.load()
        reloaded = restarted.hold_of("paper")
        assert reloaded is not None and reloaded.kind == HoldKind.LOSS_CAP  # survives restarts
        await guard.stop()
    finally:
        await db.close()


async def test_a_loss_cap_replaces_a_manual_hold(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    db, journal = await open_db(tmp_path / "v.db")
    try:
        guard = make_guard(SimVenue(SimExchange(clock), clock), db, journal, clock,
                           default_policy(), Metrics())
        control = ControlService({"paper": guard}, venues_testnet={}, state=StateRepo(db),
                                 bus=guard.bus, clock=clock, mode="paper")
        assert (await control.hold("news", "admin")).changed
        assert not (await control.hold("again", "admin")).changed
        await control.hold("daily loss limit", "risk", kind=HoldKind.LOSS_CAP)
        hold = control.hold_of("paper")
        assert hold is not None and hold.kind == HoldKind.LOSS_CAP  # resume now needs Confirm
        assert control.resume_needs_approval
    finally:
        await db.close()
