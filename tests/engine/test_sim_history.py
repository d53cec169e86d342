"""The simulated exchange's indexes and bounded history (issue 16): open orders by symbol and
client id agree with the orders themselves, and ended orders beyond the bound are dropped."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.clock import ManualClock
from engine.domain.reports import OrderKind, OrderReport
from engine.domain.values import OrderSide, PositionSide
from engine.errors import Rejected, RejectReason
from engine.sim.exchange import BINANCE_USDM, HandApi, SimExchange
from tests.engine.conftest import BTC, ETH

D = Decimal
ONE = D(1)


def stop(ex: SimExchange, symbol: str, trigger: Decimal, client_id: str | None = None,
         qty: Decimal = ONE) -> OrderReport:
    return ex.place_trigger(symbol=symbol, side=OrderSide.SELL, qty=qty, trigger_price=trigger,
                            kind=OrderKind.STOP_LOSS, client_id=client_id)


def test_open_orders_per_symbol_in_id_order_follow_amend_cancel_and_trigger() -> None:
    ex = SimExchange(ManualClock())
    hand = HandApi(ex)
    hand.open(BTC, PositionSide.LONG, D(2))
    hand.open(ETH, PositionSide.LONG, D(2))
    a = stop(ex, BTC, D(64000), "a")
    b = stop(ex, ETH, D(3100), "b", D("0.01"))
    c = stop(ex, BTC, D(63000), "c")
    ex.amend_trigger(a.order_id, D(64500), D(1))
    assert [o.order_id for o in ex.open_orders(BTC)] == [a.order_id, c.order_id]
    assert ex.open_orders(BTC)[0].trigger_price == D(64500)
    assert [o.order_id for o in ex.open_orders()] == [a.order_id, b.order_id, c.order_id]
    ex.cancel(c.order_id)
    ex.set_mark(BTC, D(64400))  # fires a, leaves ETH's stop alone
    assert ex.open_orders(BTC) == []
    assert ex.open_orders("DOGE/USDT:USDT") == []
    assert [o.order_id for o in ex.open_orders()] == [b.order_id]
    assert ex.positions[BTC].qty == D(1)  # one of the two closed by the trigger
    # The index agrees with a scan of every order kept.
    assert ex.open_orders() == [o for o in ex.orders.values() if o.is_resting]


def test_ended_orders_beyond_the_bound_are_dropped_and_open_ones_kept() -> None:
    ex = SimExchange(ManualClock(), history_limit=5)
    hand = HandApi(ex)
    hand.open(BTC, PositionSide.LONG, D(1))
    keep = stop(ex, BTC, D(60000), "keep")
    for i in range(10):
        ex.cancel(stop(ex, BTC, D(61000), f"gone-{i}").order_id)
    assert len(ex.orders) == 6  # the open stop and the newest five ended orders
    assert ex.orders[keep.order_id].is_resting
    assert ex.find_by_client_id("keep") == ex.orders[keep.order_id]
    assert ex.find_by_client_id("gone-9") is not None
    assert ex.find_by_client_id("gone-0") is None  # dropped with its order
    assert len(ex.fills) == 1
    for _ in range(6):
        hand.open(BTC, PositionSide.LONG, D(1))
    assert len(ex.fills) == 5  # fills are bounded the same way


def test_reused_client_id_answers_the_newest_and_survives_the_older_ones_trimming() -> None:
    ex = SimExchange(ManualClock(), rules=BINANCE_USDM, history_limit=2)
    HandApi(ex).open(BTC, PositionSide.LONG, D(1))
    first = stop(ex, BTC, D(60000), "same")
    with pytest.raises(Rejected) as err:  # unique among open orders on this venue
        stop(ex, BTC, D(60000), "same")
    assert err.value.reason is RejectReason.DUPLICATE_CLIENT_ID
    ex.cancel(first.order_id)
    second = stop(ex, BTC, D(59000), "same")
    assert ex.find_by_client_id("same") == second
    ex.cancel(stop(ex, BTC, D(61000), "x").order_id)
    ex.cancel(stop(ex, BTC, D(61000), "y").order_id)  # the first "same" is trimmed now
    assert first.order_id not in ex.orders
    assert ex.find_by_client_id("same") == second


def test_a_history_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="history_limit must be at least 1, not 0"):
        SimExchange(ManualClock(), history_limit=0)
