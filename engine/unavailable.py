"""A venue that could not even be built (no API keys, unreadable key store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import NoReturn

from engine.domain.ledger import LedgerEntry
from engine.domain.reports import (
    MarketInfo,
    MarketOrderRequest,
    OrderReport,
    PriceTick,
    StopRequest,
    VenueCapabilities,
    VenueEvent,
    VenueSnapshot,
)
from engine.errors import OperatorError, Rejected, RejectReason


class UnavailableVenue:
    """Stands in for an account whose venue cannot even be built (no keys): its start-up check
    fails with the reason, the account shows HALTED, and the other accounts run on."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        self.capabilities = VenueCapabilities(amend_stop_in_place=False, streams=False)

    def _fail(self) -> NoReturn:
        raise OperatorError(self.reason)

    async def start(self) -> None:
        self._fail()

    async def close(self) -> None:
        return None

    def market(self, symbol: str) -> MarketInfo:
        self._fail()

    def resolve_symbol(self, text: str) -> str:
        raise Rejected(RejectReason.BAD_SYMBOL, self.reason)

    async def snapshot(self) -> VenueSnapshot:
        self._fail()

    async def fetch_open_orders(self) -> list[OrderReport]:
        self._fail()

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        self._fail()

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        self._fail()

    async def place_stop(self, request: StopRequest) -> OrderReport:
        self._fail()

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal,
                         qty: Decimal) -> OrderReport:
        self._fail()

    async def cancel_order(self, order: OrderReport) -> None:
        self._fail()

    async def market_order(self, request: MarketOrderRequest) -> OrderReport:
        self._fail()

    async def events(self) -> AsyncIterator[VenueEvent]:
        return
        yield  # pragma: no cover - an empty async generator

    async def price_ticks(self, symbols: frozenset[str]
                          ) -> AsyncIterator[tuple[PriceTick, ...]]:
        return
        yield  # pragma: no cover - an empty async generator
