"""plan_position's take-profit part (pure): ours told by client id, exactly one at the plan's
price sized to the position, only once the stop rests, never through the mark."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.reports import OrderKind, OrderReport
from engine.protection.reconcile import (
    CancelTakeProfit,
    PlaceStop,
    PlaceTakeProfit,
    plan_position,
)
from tests.engine.test_reconcile import BTC, MARKETS, POLICY, known, order, pos

D = Decimal
TP_CID = client_order_id("paper", BTC, 1, OrderPurpose.TAKE_PROFIT, 1)


@dataclass(frozen=True)
class Fixed:
    price: Decimal | None

    def take_profit(self, symbol: str) -> Decimal | None:
        return self.price


def plan(tp: str | None, orders: list[OrderReport], qty: str = "0.5", mark: str = "60000"):  # type: ignore[no-untyped-def]
    stop = next((o for o in orders if o.kind is OrderKind.STOP_LOSS), None)
    policy = replace(POLICY, take_profits=Fixed(D(tp) if tp else None))
    return plan_position(known(qty=qty, stop=stop), pos(qty=qty, mark=mark), orders,
                         MARKETS[BTC], policy)


def tp(oid: str, price: str = "63000", qty: str = "0.5", cid: str | None = TP_CID
       ) -> OrderReport:
    return order(oid, price, qty=qty, kind=OrderKind.TAKE_PROFIT, client_id=cid)


def test_placed_on_the_tick_away_from_the_mark_once_the_stop_rests() -> None:
    assert plan("63000.04", [order("1")]) == [PlaceTakeProfit(BTC, D("63000.1"), D("0.5"))]
    # No stop yet: protection first; the take-profit waits for the next round.
    actions = plan_position(known(), pos(), [], MARKETS[BTC],
                            replace(POLICY, take_profits=Fixed(D(63000))))
    assert [type(a) for a in actions] == [PlaceStop]


def test_ours_at_the_price_and_size_is_kept_a_persons_is_left_alone() -> None:
    hands = tp("9", "61000", cid=None)
    assert plan("63000", [order("1"), tp("2"), hands]) == []
    assert plan(None, [order("1"), hands]) == []  # plan off: a person's TP is not ours


def test_a_new_size_or_price_is_cancel_then_place_and_a_second_one_goes() -> None:
    old = tp("2", qty="0.4")
    assert plan("63000", [order("1"), old]) == [CancelTakeProfit(BTC, old, "replaced")]
    assert plan("64000", [order("1"), tp("2")]) == [CancelTakeProfit(BTC, tp("2"), "replaced")]
    second = tp("3", cid=client_order_id("paper", BTC, 1, OrderPurpose.TAKE_PROFIT, 2))
    assert plan("63000", [order("1"), tp("2"), second]) == [
        CancelTakeProfit(BTC, second, "duplicate")]


def test_off_cancels_ours_and_past_the_mark_places_nothing() -> None:
    assert plan(None, [order("1"), tp("2")]) == [
        CancelTakeProfit(BTC, tp("2"), "take_profit_off")]
    assert plan("63000", [order("1")], mark="63000") == []  # reached: it would fill at once


def test_a_take_profit_is_never_the_stop() -> None:
    # Only our TP rests: the position is unprotected and gets a stop; the TP stays as it is.
    actions = plan_position(known(), pos(), [tp("2")], MARKETS[BTC],
                            replace(POLICY, take_profits=Fixed(D(63000))))
    assert [type(a) for a in actions] == [PlaceStop]
