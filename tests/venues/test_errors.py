"""ccxt exception -> our error tree: the class order and the venue codes."""

from __future__ import annotations

import pytest
from ccxt.base import errors as cx

from engine.errors import OperatorError, OutcomeUnknown, Rejected, RejectReason, Transient
from engine.venues.errors import VenueCodes, scrub, translate, venue_code

NO_CODES = VenueCodes()


def tr(exc: BaseException, codes: VenueCodes = NO_CODES) -> Exception:
    return translate(exc, venue="x", action="test", codes=codes)


@pytest.mark.parametrize(("exc", "expected"), [
    (cx.RequestTimeout("timed out"), OutcomeUnknown),  # a NetworkError, but not retryable blind
    (cx.BadResponse("garbled"), OutcomeUnknown),
    (cx.NullResponse("empty"), OutcomeUnknown),
    (cx.NetworkError("reset"), Transient),
    (cx.RateLimitExceeded("slow down"), Transient),
    (cx.DDoSProtection("418"), Transient),
    (cx.ExchangeNotAvailable("503"), Transient),
    (cx.OnMaintenance("maintenance"), Transient),
    (cx.InvalidNonce("clock"), Transient),
    (cx.AuthenticationError("bad key"), OperatorError),
    (cx.PermissionDenied("no trade permission"), OperatorError),
    (cx.AccountSuspended("suspended"), OperatorError),
    (ValueError("not ccxt"), OutcomeUnknown),
])
def test_error_classes(exc: BaseException, expected: type[Exception]) -> None:
    assert type(tr(exc)) is expected


@pytest.mark.parametrize(("exc", "reason"), [
    (cx.OrderImmediatelyFillable("x"), RejectReason.WOULD_TRIGGER_IMMEDIATELY),
    (cx.OrderNotFound("x"), RejectReason.ORDER_NOT_FOUND),
    (cx.DuplicateOrderId("x"), RejectReason.DUPLICATE_CLIENT_ID),
    (cx.InsufficientFunds("x"), RejectReason.INSUFFICIENT_FUNDS),
    (cx.BadSymbol("x"), RejectReason.BAD_SYMBOL),
    (cx.InvalidOrder("x"), RejectReason.INVALID_ORDER),
    (cx.BadRequest("x"), RejectReason.OTHER),
    (cx.ExchangeError("x"), RejectReason.OTHER),
])
def test_reject_reasons(exc: BaseException, reason: RejectReason) -> None:
    error = tr(exc)
    assert isinstance(error, Rejected) and error.reason is reason


def test_venue_code_is_read_from_the_body_in_the_message() -> None:
    assert venue_code(cx.ExchangeError('binanceusdm {"code":-2021,"msg":"x"}')) == "-2021"
    assert venue_code(cx.ExchangeError('bybit {"retCode":110093,"retMsg":"x"}')) == "110093"
    assert venue_code(cx.ExchangeError('bitget {"code":"40917","msg":"x {0}"}')) == "40917"
    assert venue_code(cx.ExchangeError("bitget POST https://x 500 Internal")) is None


def test_secrets_and_signatures_are_scrubbed_from_messages() -> None:
    exc = cx.AuthenticationError(
        'bybit {"retMsg":"key AKEY-12345 mismatch"} url?x=1&signature=abcdef0123&y=2 SECRET-999')
    error = translate(exc, venue="bybit", action="start", codes=NO_CODES,
                      secrets=("AKEY-12345", "SECRET-999", None))
    text = str(error)
    assert "AKEY-12345" not in text and "SECRET-999" not in text and "abcdef0123" not in text
    assert isinstance(error, OperatorError) and "***" in text


def test_scrub_bounds_long_bodies() -> None:
    assert len(scrub("x" * 5000, ())) < 600
