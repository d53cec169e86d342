"""Our error tree, split by what the caller must do. Adapters convert venue errors into these."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    WOULD_TRIGGER_IMMEDIATELY = "would_trigger_immediately"
    REDUCE_ONLY_REJECTED = "reduce_only_rejected"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    ORDER_NOT_FOUND = "order_not_found"
    INVALID_ORDER = "invalid_order"
    BAD_SYMBOL = "bad_symbol"
    DUPLICATE_CLIENT_ID = "duplicate_client_id"
    # Too many conditional orders on the symbol (Bybit 110009, Binance -4045): clean up the
    # duplicates before placing again; retrying as is can never succeed.
    TOO_MANY_STOPS = "too_many_stops"
    OTHER = "other"


class VenueError(Exception):
    """Base of everything a venue call can raise."""


class Transient(VenueError):
    """Retry with backoff and jitter (network, rate limit, maintenance)."""


class OutcomeUnknown(VenueError):
    """The request may have been executed: look the order up by client id before retrying."""


class Rejected(VenueError):
    """The venue said no; retrying the same request will not help."""

    def __init__(self, reason: RejectReason, message: str = "") -> None:
        super().__init__(f"{reason.value}: {message}" if message else reason.value)
        self.reason = reason
        self.message = message


class OperatorError(VenueError):
    """A person must act (bad keys, missing permission): halt the account and alert loudly."""
