"""Deterministic scenarios for the chaos failures of issue 15 that were bugs in Vigil (the
randomized test, tests/engine/test_protection_chaos.py, found them; each is pinned here without
the dice). Real guard, real SQLite journal, SimExchange behind SimVenue; the venue's answers are
scripted through SpyVenue's hook."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from engine.clock import ManualClock
from engine.domain.reports import OrderSide, OrderStatus, PositionReport
from engine.domain.values import PositionSide
from engine.protection.view import AccountView
from tests.engine.conftest import BTC, ETH, SpyRigFactory

D = Decimal
LONG = PositionSide.LONG


async def test_a_fresh_snapshot_showing_flat_is_not_undone_by_the_older_view(
        spy_rig: SpyRigFactory) -> None:
    """Chaos rest-only-0ms-today seed 301 (and 200ms seeds 543, 575, 615): the long is flipped
    to a short and the short closed before the supervisor's own fresh snapshot. That snapshot
    shows the symbol flat, so the long's close is recorded, and nothing more: before the fix the
    next round re-planned on the reconcile's older picture, adopted the short that was already
    gone and put a stop on a flat symbol."""
    rig, spy = await spy_rig()
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    (long_stop,) = rig.stops(BTC)
    rig.exchange.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.8"), reduce_only=False,
                              client_id=None)  # flipped: short 0.3
    snapshots = {"n": 0}

    async def close_before_the_second_look(method: str, arg: object) -> None:
        if method == "snapshot":
            snapshots["n"] += 1
            if snapshots["n"] == 2:  # the supervisor's own look, after the reconcile's
                rig.hand.close(BTC)

    spy.before = close_before_the_second_look
    await rig.guard.reconcile_now()

    assert snapshots["n"] == 2 and BTC not in rig.exchange.positions
    assert rig.exchange.orders[long_stop.order_id].status is OrderStatus.CANCELLED
    adopted = await rig.rows("position_adopted")
    assert [row["side"] for row in adopted] == ["long"]  # never the short that was gone
    closed = await rig.rows("position_closed")
    assert [row["side"] for row in closed] == ["long"]
    assert rig.stops(BTC) == [] and "stop_intent" not in (await rig.kinds())[-3:]
    assert BTC not in rig.guard.supervisors


def test_a_symbol_absent_from_a_fresh_look_drops_under_the_views_own_rules() -> None:
    """`confirm_absent` (what the supervisor's own snapshot does with a symbol it does not
    show) keeps the stream's word for `absence_grace` and anything changed after the look
    began, as `apply_snapshot` does; an older REST picture it drops."""
    clock = ManualClock()

    def report(symbol: str) -> PositionReport:
        return PositionReport(symbol, LONG, D(1), D(100), D(100), D(0), None, clock.now())

    view = AccountView(absence_grace=10)
    view.set_position(BTC, report(BTC), streamed_at=clock.now())
    view.set_position(ETH, report(ETH))
    marker = view.mark()
    assert not view.confirm_absent(BTC, marker, clock.now() + timedelta(seconds=9))
    assert view.position(BTC) is not None  # the stream saw it open moments ago: REST lags
    assert view.confirm_absent(ETH, marker, clock.now())
    assert view.position(ETH) is None
    assert view.confirm_absent(BTC, marker, clock.now() + timedelta(seconds=10))
    assert view.position(BTC) is None

    marker = view.mark()
    view.set_position(ETH, report(ETH))  # reported while the look was in flight: newer
    assert not view.confirm_absent(ETH, marker, clock.now())
    assert view.position(ETH) is not None
