"""Every venue code we classify, through the real ccxt class with its HTTP intercepted: the body
goes through ccxt's own handle_errors, then through our translation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.reports import StopRequest
from engine.domain.values import PositionSide
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason, Transient
from tests.venues import payloads as p
from tests.venues.conftest import Harness, Reply, build

BTC = "BTC/USDT:USDT"
CID = "vgs0123456789abcdef0123"
BITGET_WOULD_TRIGGER = ("40917", "45122", "40740", "40834", "43015", "45062", "31005", "40742",
                        "40836", "43016")


def stop(side: PositionSide = PositionSide.LONG) -> StopRequest:
    return StopRequest(BTC, side, Decimal("0.01"), Decimal("60000"), CID)


async def placing(name: str, status: int, body: object) -> Exception:
    """What place_stop raises when the venue answers `status` / `body`."""
    harness = await build(name)
    harness.http.route(*p.PLACE_STOP[name], Reply(status, body))
    try:
        with pytest.raises(Exception) as caught:
            await harness.venue.place_stop(stop())
    finally:
        await harness.venue.close()
    return caught.value


def rejected(error: Exception, reason: RejectReason) -> bool:
    return isinstance(error, Rejected) and error.reason is reason


@pytest.mark.parametrize(("code", "expected"), [
    (10000, OutcomeUnknown),  # server timeout: the order may exist, look it up by client id
    (5004, OutcomeUnknown),
    (429, Transient),
    (110079, Transient),  # "the order is being processed, try again later"
    (10016, Transient),
])
async def test_bybit_codes_say_what_to_do(code: int, expected: type[Exception]) -> None:
    error = await placing("bybit", 200, p.bybit_error(code, "server says no"))
    assert type(error) is expected and str(code) in str(error)


async def test_bybit_too_many_conditional_orders_is_its_own_reason() -> None:
    error = await placing("bybit", 200, p.bybit_error(
        110009, "The number of stop orders exceeds maximum limit allowed"))
    assert rejected(error, RejectReason.TOO_MANY_STOPS)


async def test_binance_max_stop_orders_is_too_many_stops() -> None:
    error = await placing("binance", 400, p.binance_error(-4045, "Reach max stop order limit."))
    assert rejected(error, RejectReason.TOO_MANY_STOPS)


@pytest.mark.parametrize("key_worked", [True, False])
async def test_binance_2015_is_an_operator_error(binance: Harness, key_worked: bool) -> None:
    # Once a signed call has succeeded, ccxt raises DDoSProtection (a "temporary ban") for
    # -2015; it also means a revoked key or a dropped IP whitelist, which no retry mends.
    binance.http.options["hasAlreadyAuthenticatedSuccessfully"] = key_worked
    binance.http.route(*p.PLACE_STOP["binance"], Reply(401, p.binance_error(
        -2015, "Invalid API-key, IP, or permissions for action.")))

    with pytest.raises(OperatorError) as caught:
        await binance.venue.place_stop(stop())
    assert "-2015" in str(caught.value)
    assert all(secret not in str(caught.value) for secret in binance.secrets)


@pytest.mark.parametrize("code", BITGET_WOULD_TRIGGER)
async def test_bitget_would_trigger_codes(code: str) -> None:
    error = await placing("bitget", 400, p.bitget_error(code, "Trigger price is invalid"))
    assert rejected(error, RejectReason.WOULD_TRIGGER_IMMEDIATELY)


@pytest.mark.parametrize("message", [
    "The stop loss price of long positions should be less than the mark price",
    "Trigger price should be ≥ the current market price",
    "Take profit price for short positions please < mark price 64500",
])
async def test_bitget_would_trigger_is_read_from_an_unlisted_codes_message(message: str) -> None:
    error = await placing("bitget", 400, p.bitget_error("49999", message))
    assert rejected(error, RejectReason.WOULD_TRIGGER_IMMEDIATELY)


async def test_bitget_an_unlisted_code_about_something_else_is_not_would_trigger() -> None:
    error = await placing("bitget", 400, p.bitget_error("49999", "Parameter size error"))
    assert isinstance(error, Rejected)
    assert error.reason is not RejectReason.WOULD_TRIGGER_IMMEDIATELY


@pytest.mark.parametrize("code", ["40819", "45057", "22001", "25575"])
async def test_bitget_gone_order_codes_are_order_not_found(bitget: Harness, code: str) -> None:
    bitget.account.stops = [p.bitget_plan_order("bg-1", CID)]
    (order,) = (await bitget.venue.snapshot()).orders
    bitget.http.route("POST", "/api/v2/mix/order/cancel-plan-order",
                      Reply(400, p.bitget_error(code, "The order does not exist")))

    with pytest.raises(Rejected) as caught:
        await bitget.venue.cancel_order(order)
    assert caught.value.reason is RejectReason.ORDER_NOT_FOUND
