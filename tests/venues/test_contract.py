"""Behaviour every venue must share, run against each real ccxt class with canned HTTP."""

from __future__ import annotations

from decimal import Decimal

import pytest
from ccxt.base.errors import RequestTimeout

from engine.domain.reports import OrderKind, OrderStatus, StopRequest
from engine.domain.values import OrderSide, PositionSide
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason
from engine.ports import Venue
from tests.venues import payloads as p
from tests.venues.conftest import VENUES, Account, Harness, Reply, build

BTC = "BTC/USDT:USDT"


def stop(client_id: str = "vgs0123456789abcdef0123", side: PositionSide = PositionSide.LONG,
         price: str = "60000.04", qty: str = "0.0105") -> StopRequest:
    return StopRequest(BTC, side, Decimal(qty), Decimal(price), client_id)


async def test_implements_the_venue_port(venue: Harness) -> None:
    assert isinstance(venue.venue, Venue)
    assert venue.venue.name == {"binance": "binanceusdm", "bybit": "bybit",
                                "bitget": "bitget"}[venue.name]


@pytest.mark.parametrize("name", VENUES)
async def test_snapshot_takes_the_same_calls_for_1_and_50_positions(name: str) -> None:
    counts = []
    for n in (1, 50):
        bases = p.BASES[:n]
        account = Account(
            positions=[p.long_position(name, base) for base in bases],
            stops=[p.resting_stop(name, str(1000 + i), f"vgs{i:020d}", base)
                   for i, base in enumerate(bases)])
        harness = await build(name, account=account)
        mark = harness.mark()
        snapshot = await harness.venue.snapshot()
        await harness.venue.close()

        assert len(snapshot.positions) == n and len(snapshot.orders) == n
        assert snapshot.calls == len(harness.since(mark))  # the count is the real HTTP count
        counts.append(snapshot.calls)
    assert counts == [2, 2]


async def test_snapshot_reports_only_open_positions_with_decimals(venue: Harness) -> None:
    venue.account.positions = [p.long_position(venue.name, "BTC", "0.010"),
                               p.long_position(venue.name, "ETH", "0")]
    snapshot = await venue.venue.snapshot()

    (position,) = snapshot.positions
    assert position.symbol == BTC and position.side is PositionSide.LONG
    assert position.qty == Decimal("0.01") and isinstance(position.qty, Decimal)
    assert position.mark_price == Decimal("64500") and position.entry_price == Decimal("65000")
    assert position.updated_at.tzinfo is not None
    assert snapshot.taken_at.tzinfo is not None


async def test_resting_stop_is_recognised_as_a_stop_loss(venue: Harness) -> None:
    venue.account.stops = [p.resting_stop(venue.name, "501", "vgsabc")]
    (order,) = (await venue.venue.snapshot()).orders

    assert order.kind is OrderKind.STOP_LOSS and order.side is OrderSide.SELL
    assert order.trigger_price == Decimal("60000.1") and order.qty == Decimal("0.01")
    assert order.reduce_only and order.status is OrderStatus.OPEN
    assert order.client_id == "vgsabc" and order.order_id == "501"
    assert order.is_stop_for(PositionSide.LONG)


@pytest.mark.parametrize("name", VENUES)
async def test_auth_failure_at_start_is_an_operator_error_without_secrets(name: str) -> None:
    harness = await build(name, start=False)
    status, body = p.auth_failure(name)
    harness.http.route(*p.POSITIONS[name], Reply(status, body))
    harness.http.route("GET", "/fapi/v1/positionSide/dual", Reply(status, body))

    with pytest.raises(OperatorError) as caught:
        await harness.venue.start()
    await harness.venue.close()

    assert all(secret not in str(caught.value) for secret in harness.secrets)
    assert caught.value.__suppress_context__  # the raw ccxt exception is not chained along


@pytest.mark.parametrize("name", VENUES)
async def test_timeout_is_outcome_unknown_then_the_order_is_found_by_client_id(
        name: str) -> None:
    harness = await build(name)
    client_id = "vgs9f8e7d6c5b4a39281706"
    harness.http.route(*p.PLACE_STOP[name], RequestTimeout(f"{harness.venue.name} POST timed out"))

    with pytest.raises(OutcomeUnknown):
        await harness.venue.place_stop(stop(client_id))
    # ...the venue did take it: it now rests among the stops
    harness.account.stops = [p.resting_stop(name, "9001", "vgsother"),
                             p.resting_stop(name, "9002", client_id)]
    found = await harness.venue.find_order(BTC, client_id)
    await harness.venue.close()

    assert found is not None and found.order_id == "9002" and found.client_id == client_id
    assert found.kind is OrderKind.STOP_LOSS and found.is_resting


async def test_quantity_is_floored_and_the_stop_rounded_toward_the_mark(
        venue: Harness) -> None:
    venue.http.route(*p.PLACE_STOP[venue.name], p.placed(venue.name, "77", "vgsq"))
    place = venue.venue.place_stop
    long_stop = await place(stop("vgsq", PositionSide.LONG, "60000.04", "0.0105"))
    short_stop = await place(stop("vgsq", PositionSide.SHORT, "70000.06", "0.0109"))

    assert (long_stop.qty, long_stop.trigger_price) == (Decimal("0.010"), Decimal("60000.1"))
    assert (short_stop.qty, short_stop.trigger_price) == (Decimal("0.010"), Decimal("70000.0"))
    assert long_stop.side is OrderSide.SELL and short_stop.side is OrderSide.BUY
    assert not long_stop.whole_position and not short_stop.whole_position


@pytest.mark.parametrize("qty", ["0", "-0.01"])
async def test_a_size_that_is_not_positive_is_rejected_before_any_call(venue: Harness,
                                                                      qty: str) -> None:
    mark = venue.mark()
    with pytest.raises(Rejected) as caught:
        await venue.venue.place_stop(stop(qty=qty))
    assert caught.value.reason is RejectReason.INVALID_ORDER
    assert venue.since(mark) == []


# What each venue must receive for a stop that closes the whole position when it fires.
WHOLE_POSITION_FORM = {
    "binance": {"closePosition": "true", "triggerPrice": "60000.1", "workingType": "MARK_PRICE",
                "side": "SELL", "type": "STOP_MARKET"},
    "bybit": {"qty": "0", "reduceOnly": True, "closeOnTrigger": True, "triggerPrice": "60000.1",
              "triggerBy": "MarkPrice", "side": "Sell"},
    "bitget": {"planType": "pos_loss", "holdSide": "buy", "triggerPrice": "60000.1",
               "triggerType": "mark_price"},
}
ABSENT_FROM_WHOLE_POSITION_FORM = {
    "binance": ("quantity", "reduceOnly"),  # Binance refuses either with closePosition
    "bybit": (),
    "bitget": ("size",),
}


@pytest.mark.parametrize("qty", ["0.0009", "0.0000004"])
async def test_below_the_minimum_the_stop_closes_the_whole_position(venue: Harness,
                                                                    qty: str) -> None:
    venue.http.route(*p.PLACE_STOP[venue.name], p.placed(venue.name, "78", "vgsw"))
    order = await venue.venue.place_stop(stop("vgsw", qty=qty))

    sent = venue.http.last(*p.PLACE_STOP[venue.name]).params
    expected = WHOLE_POSITION_FORM[venue.name]
    assert {k: sent.get(k) for k in expected} == expected
    assert not set(ABSENT_FROM_WHOLE_POSITION_FORM[venue.name]) & set(sent)
    assert order.whole_position and order.qty is None and order.order_id == "78"
    assert order.is_stop_for(PositionSide.LONG)
    # it never needs resizing, however the position changes
    assert order.covers(Decimal(qty)) and order.covers(Decimal("3"))


async def test_a_listed_whole_position_stop_covers_the_position(venue: Harness) -> None:
    venue.account.positions = [p.long_position(venue.name, "BTC", "0.010")]
    venue.account.stops = [p.whole_position_stop(venue.name, "601", "vgsw")]
    snapshot = await venue.venue.snapshot()

    (order,) = snapshot.orders
    assert order.kind is OrderKind.STOP_LOSS and order.whole_position and order.qty is None
    assert order.is_stop_for(PositionSide.LONG) and order.covers(snapshot.positions[0].qty)


@pytest.mark.parametrize("name", VENUES)
async def test_hedge_mode_is_refused_at_start(name: str) -> None:
    account = Account(hedged=True)
    if name == "bybit":
        account.positions = [p.bybit_position("BTC", "Buy", "0.01", position_idx=1)]
    elif name == "bitget":
        account.positions = [p.bitget_position("BTC", "long", "0.01", pos_mode="hedge_mode")]
    harness = await build(name, start=False, account=account)

    with pytest.raises(OperatorError, match="hedge mode is not supported: switch account "
                                            f"acct-{name} to one-way mode"):
        await harness.venue.start()
    await harness.venue.close()
