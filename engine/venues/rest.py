"""One gate for every REST call to ccxt: counts the calls and translates the errors."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from engine.venues.errors import VenueCodes, translate

T = TypeVar("T")
Raw = dict[str, Any]


class Rest:
    """A counting view on one exchange; make a fresh one per operation so concurrent operations
    do not mix their counts (snapshot.calls must be exact)."""

    def __init__(self, exchange: Any, *, venue: str, codes: VenueCodes,
                 secrets: tuple[str | None, ...]) -> None:
        self.exchange = exchange
        self.venue = venue
        self.codes = codes
        self.secrets = secrets
        self.calls = 0

    def fresh(self) -> Rest:
        return Rest(self.exchange, venue=self.venue, codes=self.codes, secrets=self.secrets)

    async def __call__(self, action: str, awaitable: Awaitable[T]) -> T:
        """Await one ccxt REST method (one HTTP request) and translate its failure."""
        self.calls += 1
        try:
            return await awaitable
        except Exception as exc:  # CancelledError is a BaseException and passes through
            raise translate(exc, venue=self.venue, action=action, codes=self.codes,
                            secrets=self.secrets) from None
