"""A close reports what really happened: one the venue never showed, on a position someone else
reversed meanwhile, is "the position is short now; not closed", never "closed" (real guard,
real SQLite journal, SimExchange behind a SpyVenue that scripts the venue's answers)."""

from __future__ import annotations

from decimal import Decimal as D

from bot import render
from bot.i18n import build_i18n
from engine.control import CloseStatus, CloseTarget, ControlService
from engine.domain import events as ev
from engine.domain.reports import OrderKind, OrderSide
from engine.domain.values import PositionSide
from engine.errors import Transient
from storage.repositories import StateRepo
from tests.engine.conftest import ACCOUNT, BTC, SpyRigFactory, drive

LONG, SHORT = PositionSide.LONG, PositionSide.SHORT


async def test_a_close_overtaken_by_a_reversal_is_reported_as_not_run(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    control = ControlService({ACCOUNT: rig.guard}, venues_testnet={}, state=StateRepo(rig.db),
                             bus=rig.guard.bus, clock=rig.clock, mode="paper")
    rig.hand.open(BTC, LONG, D("0.5"))
    await rig.guard.reconcile_now()
    generation = rig.guard.supervisors[BTC].known.generation  # type: ignore[union-attr]
    sends = [0]

    async def reversed_before_our_close(method: str, arg: object) -> None:
        if method == "market_order":
            sends[0] += 1
            if sends[0] == 1:  # someone sells 0.8 in the app; our send never reaches the venue
                rig.exchange.market_order(symbol=BTC, side=OrderSide.SELL, qty=D("0.8"),
                                          reduce_only=False, client_id=None)
                raise Transient("connection reset (not executed)")

    spy.before = reversed_before_our_close
    target = CloseTarget(ACCOUNT, BTC, LONG, D("0.5"), D(65000), D(0), generation)
    [outcome] = await drive(rig.clock, control.close([target], "a"))

    assert outcome.status is CloseStatus.CHANGED and outcome.detail == "short"
    assert sends == [1]  # nothing sent again on a guess
    assert rig.exchange.positions[BTC].side is SHORT
    assert rig.exchange.positions[BTC].qty == D("0.3")  # the reversed position is untouched
    assert not [o for o in rig.exchange.orders.values()
                if o.kind is OrderKind.MARKET and o.client_id is not None]
    kinds = await rig.kinds()
    assert "close_side_gone" in kinds and "close_submitted" not in kinds
    assert "stop_rejected" not in kinds  # not a refused stop either
    [gone] = [e for e in rig.events if isinstance(e, ev.CloseSideGone)]
    assert (gone.side, gone.now, gone.qty) == (LONG, SHORT, D("0.5"))
    i18n = build_i18n("en")
    with i18n.context(), i18n.use_locale("en"):
        alert = render.event(gone) or ""
        reply = render.close_outcomes([outcome])
    assert "close of the LONG 0.5 did not run" in alert and "it is SHORT now" in alert
    assert reply.endswith("the position is SHORT now; not closed")
    with i18n.context(), i18n.use_locale("ru"):
        assert "не выполнено" in (render.event(gone) or "")
    # the old long's end is journaled as the venue's doing, and the short is guarded
    closed = await rig.rows("position_closed")
    assert [(r["side"], r["reason"]) for r in closed] == [("long", "closed on venue")]
    [stop] = rig.stops(BTC)
    assert stop.side is OrderSide.BUY and stop.qty == D("0.3")
