"""ccxt exceptions -> our error tree, at the adapter edge.

The order of the checks matters: ccxt's hierarchy nests the classes that need different handling
(RequestTimeout is a NetworkError, OrderNotFound an InvalidOrder, BadSymbol a BadRequest), and a
venue code, when we know it, says more than the class ccxt picked for it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ccxt.base import errors as cx

from engine.errors import (
    OperatorError,
    OutcomeUnknown,
    Rejected,
    RejectReason,
    Transient,
    VenueError,
)

_CODE_KEYS = ("code", "retCode", "err_code")
_CODE_RE = re.compile(r'"(?:code|retCode|err_code)"\s*:\s*"?(-?\d+)')
_SIGNATURE_RE = re.compile(r"(signature|sign)=[^&\s\"']+", re.IGNORECASE)
_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class VenueCodes:
    """Venue error codes whose meaning the ccxt class alone does not carry."""

    would_trigger: frozenset[str] = frozenset()
    duplicate_client_id: frozenset[str] = frozenset()
    order_not_found: frozenset[str] = frozenset()
    reduce_only: frozenset[str] = frozenset()
    too_many_stops: frozenset[str] = frozenset()
    transient: frozenset[str] = frozenset()
    outcome_unknown: frozenset[str] = frozenset()
    operator: frozenset[str] = frozenset()  # a person must act (revoked key, IP not allowed)
    # Where codes are undocumented or many: a message (regex, case-insensitive) that means the
    # stop would trigger at once.
    would_trigger_message: str | None = None
    by_reason: dict[str, RejectReason] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        table: dict[str, RejectReason] = {}
        for codes, reason in (
            (self.would_trigger, RejectReason.WOULD_TRIGGER_IMMEDIATELY),
            (self.duplicate_client_id, RejectReason.DUPLICATE_CLIENT_ID),
            (self.order_not_found, RejectReason.ORDER_NOT_FOUND),
            (self.reduce_only, RejectReason.REDUCE_ONLY_REJECTED),
            (self.too_many_stops, RejectReason.TOO_MANY_STOPS),
        ):
            table.update(dict.fromkeys(codes, reason))
        object.__setattr__(self, "by_reason", table)


def venue_code(exc: BaseException) -> str | None:
    """The venue's own error code: ccxt puts the raw response body in the message."""
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            body = json.loads(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            for key in _CODE_KEYS:
                if body.get(key) is not None:
                    return str(body[key])
    match = _CODE_RE.search(text)
    return match.group(1) if match else None


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """Remove credentials (and request signatures) from a text before it leaves the adapter."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _SIGNATURE_RE.sub(r"\1=***", text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def translate(exc: BaseException, *, venue: str, action: str, codes: VenueCodes,
              secrets: Iterable[str | None] = ()) -> VenueError:
    """Our error for a failed venue call. Never raises; unknown failures become OutcomeUnknown
    because, for a command, "we do not know" is the only safe answer."""
    if isinstance(exc, VenueError):
        return exc
    message = scrub(f"{venue} {action}: {type(exc).__name__}: {exc}", secrets)
    if not isinstance(exc, cx.BaseError):
        return OutcomeUnknown(message)

    code = venue_code(exc)
    if code is not None:
        if code in codes.transient:
            return Transient(message)
        if code in codes.outcome_unknown:
            return OutcomeUnknown(message)
        if code in codes.operator:
            return OperatorError(message)
        if code in codes.by_reason:
            return Rejected(codes.by_reason[code], message)
    if codes.would_trigger_message and isinstance(exc, cx.ExchangeError) and re.search(
            codes.would_trigger_message, str(exc), re.IGNORECASE):
        return Rejected(RejectReason.WOULD_TRIGGER_IMMEDIATELY, message)

    # OperationFailed branch: RequestTimeout and BadResponse first, they sit inside it.
    if isinstance(exc, cx.RequestTimeout | cx.BadResponse | cx.CancelPending):
        return OutcomeUnknown(message)
    if isinstance(exc, cx.NetworkError):  # DDoS, rate limit, not available, maintenance, nonce
        return Transient(message)
    if isinstance(exc, cx.OperationFailed):
        return OutcomeUnknown(message)

    if isinstance(exc, cx.AuthenticationError):  # incl. PermissionDenied, AccountSuspended
        return OperatorError(message)
    reason = _reject_reason(exc)
    if reason is not None:
        return Rejected(reason, message)
    return Rejected(RejectReason.OTHER, message)


def _reject_reason(exc: cx.BaseError) -> RejectReason | None:
    # Subclasses before their parents: OrderNotFound < InvalidOrder, BadSymbol < BadRequest.
    table: tuple[tuple[type[cx.BaseError], RejectReason], ...] = (
        (cx.OrderImmediatelyFillable, RejectReason.WOULD_TRIGGER_IMMEDIATELY),
        (cx.OrderNotFound, RejectReason.ORDER_NOT_FOUND),
        (cx.DuplicateOrderId, RejectReason.DUPLICATE_CLIENT_ID),
        (cx.InsufficientFunds, RejectReason.INSUFFICIENT_FUNDS),
        (cx.BadSymbol, RejectReason.BAD_SYMBOL),
        (cx.InvalidOrder, RejectReason.INVALID_ORDER),
        (cx.BadRequest, RejectReason.OTHER),
    )
    for cls, reason in table:
        if isinstance(exc, cls):
            return reason
    return None
