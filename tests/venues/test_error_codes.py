"""Every venue code we classify, in one table for the three venues, through the real ccxt class
with its HTTP intercepted: the reply goes through ccxt's own handle_errors, then through our
translation. A row: the venue, what we asked (place a stop, cancel one, take a snapshot), the
venue's HTTP reply, and the error class and RejectReason the engine must get."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from engine.domain.reports import StopRequest
from engine.domain.values import PositionSide
from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason, Transient
from tests.venues import payloads as p
from tests.venues.conftest import Harness, Reply, build

BTC = "BTC/USDT:USDT"
CID = "vgs0123456789abcdef0123"
CANCEL_STOP = {
    "binance": ("DELETE", "/fapi/v1/algoOrder"),
    "bybit": ("POST", "/v5/order/cancel"),
    "bitget": ("POST", "/api/v2/mix/order/cancel-plan-order"),
}
R = RejectReason


@dataclass(frozen=True, slots=True)
class Row:
    venue: str
    code: str  # the venue's code, as the error message must name it ("" when it has none)
    reply: Reply
    error: type[Exception]
    reason: RejectReason | None = None  # for Rejected only
    action: str = "place"  # place | cancel | snapshot

    @property
    def id(self) -> str:
        return f"{self.venue}-{self.action}-{self.code or 'nocode'}"


def binance(code: int, error: type[Exception], reason: RejectReason | None = None, *,
            msg: str = "no", status: int = 400, action: str = "place") -> Row:
    return Row("binance", str(code), Reply(status, p.binance_error(code, msg)), error, reason,
               action)


def bybit(code: int, error: type[Exception], reason: RejectReason | None = None, *,
          msg: str = "no", status: int = 200, action: str = "place") -> Row:
    return Row("bybit", str(code), Reply(status, p.bybit_error(code, msg)), error, reason, action)


def bitget(code: str, error: type[Exception], reason: RejectReason | None = None, *,
           msg: str = "no", status: int = 400, action: str = "place") -> Row:
    return Row("bitget", code, Reply(status, p.bitget_error(code, msg)), error, reason, action)


BITGET_WOULD_TRIGGER = ("40917", "45122", "40740", "40834", "43015", "45062", "31005", "40742",
                        "40836", "43016")
BITGET_MARK_MESSAGES = (  # undocumented codes: the message about the mark price says it
    "The stop loss price of long positions should be less than the mark price",
    "Trigger price should be ≥ the current market price",
    "Take profit price for short positions please < mark price 64500",
)
BYBIT_WOULD_TRIGGER_MSG = "expect Falling, but trigger_price[70000] >= current[64500]??MarkPrice"

TABLE = [
    # --- Binance USD-M ---
    binance(-2021, Rejected, R.WOULD_TRIGGER_IMMEDIATELY, msg="Order would immediately trigger."),
    binance(-4116, Rejected, R.DUPLICATE_CLIENT_ID),
    binance(-20132, Rejected, R.DUPLICATE_CLIENT_ID, msg="dup algo id"),
    binance(-2019, Rejected, R.INSUFFICIENT_FUNDS),
    binance(-2022, Rejected, R.REDUCE_ONLY_REJECTED),
    binance(-4164, Rejected, R.INVALID_ORDER),
    binance(-4045, Rejected, R.TOO_MANY_STOPS, msg="Reach max stop order limit."),
    binance(-1001, Transient, msg="Internal error; unable to process your request."),
    binance(-1008, Transient, msg="Server is currently overloaded with other requests."),
    binance(-1006, OutcomeUnknown, msg="An unexpected response was received."),
    binance(-1007, OutcomeUnknown, msg="Timeout waiting for response from backend server."),
    binance(-2011, Rejected, R.ORDER_NOT_FOUND, msg="Unknown order sent.", action="cancel"),
    # --- Bybit v5 (errors come with HTTP 200) ---
    bybit(110092, Rejected, R.WOULD_TRIGGER_IMMEDIATELY, msg=BYBIT_WOULD_TRIGGER_MSG),
    bybit(110093, Rejected, R.WOULD_TRIGGER_IMMEDIATELY, msg=BYBIT_WOULD_TRIGGER_MSG),
    bybit(110072, Rejected, R.DUPLICATE_CLIENT_ID),
    bybit(110007, Rejected, R.INSUFFICIENT_FUNDS),
    bybit(110017, Rejected, R.REDUCE_ONLY_REJECTED),
    bybit(110001, Rejected, R.ORDER_NOT_FOUND),
    # too many conditional orders on the symbol: its own reason (duplicate cleanup, then retry)
    bybit(110009, Rejected, R.TOO_MANY_STOPS,
          msg="The number of stop orders exceeds maximum limit allowed"),
    # server timeout: the order may exist, look it up by client id
    bybit(10000, OutcomeUnknown, msg="server timeout"),
    bybit(5004, OutcomeUnknown, msg="server timeout"),
    bybit(429, Transient),
    bybit(110079, Transient, msg="the order is being processed, try again later"),
    bybit(10016, Transient, msg="System error. Please try again later."),
    bybit(10006, Transient, msg="Too many visits!", status=429, action="snapshot"),
    # --- Bitget USDT-M ---
    *[bitget(code, Rejected, R.WOULD_TRIGGER_IMMEDIATELY, msg="Trigger price is invalid")
      for code in BITGET_WOULD_TRIGGER],
    *[bitget("49999", Rejected, R.WOULD_TRIGGER_IMMEDIATELY, msg=msg)
      for msg in BITGET_MARK_MESSAGES],
    bitget("49999", Rejected, R.OTHER, msg="Parameter size error"),  # not about the mark
    bitget("40786", Rejected, R.DUPLICATE_CLIENT_ID),  # ccxt has no class for it
    bitget("43025", Rejected, R.ORDER_NOT_FOUND),
    bitget("40762", Rejected, R.INSUFFICIENT_FUNDS),
    bitget("10016", Rejected, R.OTHER),  # transient on Bybit only: codes are per venue
    *[bitget(code, Rejected, R.ORDER_NOT_FOUND, msg="The order does not exist", action="cancel")
      for code in ("40819", "45057", "22001", "25575")],
]


def stop() -> StopRequest:
    return StopRequest(BTC, PositionSide.LONG, Decimal("0.01"), Decimal("60000"), CID)


async def attempt(harness: Harness, row: Row) -> None:
    if row.action == "place":
        harness.http.route(*p.PLACE_STOP[row.venue], row.reply)
        await harness.venue.place_stop(stop())
    elif row.action == "cancel":
        harness.account.stops = [p.resting_stop(row.venue, "501", CID)]
        (order,) = (await harness.venue.snapshot()).orders
        harness.http.route(*CANCEL_STOP[row.venue], row.reply)
        await harness.venue.cancel_order(order)
    else:
        harness.http.route(*p.POSITIONS[row.venue], row.reply)
        await harness.venue.snapshot()


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
async def test_the_venues_answer_says_what_to_do(row: Row) -> None:
    harness = await build(row.venue)
    try:
        with pytest.raises(Exception) as caught:
            await attempt(harness, row)
    finally:
        await harness.venue.close()
    error = caught.value
    assert type(error) is row.error, error
    if row.reason is not None:
        assert isinstance(error, Rejected) and error.reason is row.reason, error
    assert row.code in str(error)
    assert all(secret not in str(error) for secret in harness.secrets)


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


async def test_bitget_a_cancel_that_cancelled_nothing_is_order_not_found(bitget: Harness) -> None:
    # HTTP 200 and code 00000: the failure is only in the body's failureList
    bitget.account.stops = [p.bitget_plan_order("bg-1", CID)]
    (order,) = (await bitget.venue.snapshot()).orders
    bitget.http.route(*CANCEL_STOP["bitget"], p.bitget_ok({"successList": [], "failureList": [
        {"orderId": "bg-1", "clientOid": CID, "errorMsg": "order does not exist"}]}))

    with pytest.raises(Rejected) as caught:
        await bitget.venue.cancel_order(order)
    assert caught.value.reason is RejectReason.ORDER_NOT_FOUND
