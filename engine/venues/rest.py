"""One gate for every REST call to ccxt: counts the calls, names the operation (and its lane) for
the request budget, and translates the errors."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from engine.venues.budget import Lane, Operation, RequestBudget, current_operation
from engine.venues.errors import VenueCodes, translate

T = TypeVar("T")
Raw = dict[str, Any]


class Rest:
    """A counting view on one exchange; make a fresh one per operation so concurrent operations
    do not mix their counts (snapshot.calls and its weight must be exact)."""

    def __init__(self, exchange: Any, *, venue: str, codes: VenueCodes,
                 secrets: tuple[str | None, ...], budget: RequestBudget | None = None,
                 operation: Operation | None = None) -> None:
        self.exchange = exchange
        self.venue = venue
        self.codes = codes
        self.secrets = secrets
        self.budget = budget
        self.operation = operation or Operation("other", Lane.READ)
        self.calls = 0

    def fresh(self, name: str = "other", lane: Lane = Lane.READ) -> Rest:
        return Rest(self.exchange, venue=self.venue, codes=self.codes, secrets=self.secrets,
                    budget=self.budget, operation=Operation(name, lane))

    @property
    def weight(self) -> float:
        """Request weight (ccxt cost units) this operation has spent so far."""
        return self.operation.weight

    async def __call__(self, action: str, awaitable: Awaitable[T]) -> T:
        """Await one ccxt REST method (one HTTP request) and translate its failure."""
        self.calls += 1
        token = current_operation().set(self.operation)  # the budget reads lane and weight here
        try:
            return await awaitable
        except Exception as exc:  # CancelledError is a BaseException and passes through
            raise translate(exc, venue=self.venue, action=action, codes=self.codes,
                            secrets=self.secrets) from None
        finally:
            current_operation().reset(token)
            if self.budget is not None:
                self.budget.finished(self.operation)
                # an error reply (a 429 above all) carries the venue's count too
                self.budget.observe(getattr(self.exchange, "last_response_headers", None))
