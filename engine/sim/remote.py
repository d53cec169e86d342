"""The Venue port over a paper exchange in another process (`vigil paper-exchange serve`), spoken
over HTTP + a WebSocket (engine/sim/server.py's protocol). `venue = "sim"` with `sim.url`.

Errors map as on a real venue: not sent (connection refused) or 503 -> Transient; a command
that timed out or lost its connection after being sent, or 504 -> OutcomeUnknown (the gateway
looks it up by client id); 400 -> Rejected with the exchange's reason; 429 -> Transient."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp

from engine.clock import Clock
from engine.domain.ledger import LedgerEntry
from engine.domain.reports import (
    MarketInfo,
    MarketOrderRequest,
    OrderReport,
    PriceTick,
    StopRequest,
    StreamStatus,
    VenueCapabilities,
    VenueEvent,
    VenueSnapshot,
)
from engine.domain.values import Symbol
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.sim.wire import decode, decode_event, encode, parse_decimal

REQUEST_TIMEOUT_SECONDS = 5.0


class RemoteSimVenue:
    name = "sim"

    def __init__(self, url: str, clock: Clock, *,
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._markets: dict[str, MarketInfo] = {}
        self._capabilities = VenueCapabilities(amend_stop_in_place=True, streams=True)
        self._streamed_before = False
        self._closed = False

    @property
    def capabilities(self) -> VenueCapabilities:
        return self._capabilities

    async def start(self) -> None:
        markets = await self._call("GET", "/markets")
        self._markets = {m.symbol: m for m in (decode(MarketInfo, raw) for raw in markets)}

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    def market(self, symbol: str) -> MarketInfo:
        try:
            return self._markets[symbol]
        except KeyError:
            raise Rejected(RejectReason.BAD_SYMBOL, f"unknown market {symbol}") from None

    def resolve_symbol(self, text: str) -> str:
        try:
            symbol = str(Symbol.parse(text))
        except ValueError as exc:
            raise Rejected(RejectReason.BAD_SYMBOL, str(exc)) from None
        self.market(symbol)
        return symbol

    # --- snapshots ---------------------------------------------------------------------------
    async def snapshot(self) -> VenueSnapshot:
        return decode(VenueSnapshot, await self._call("GET", "/snapshot"))

    async def fetch_open_orders(self) -> list[OrderReport]:
        return [decode(OrderReport, raw) for raw in await self._call("GET", "/open_orders")]

    async def fetch_ledger(self, since: datetime) -> list[LedgerEntry]:
        raw = await self._call("GET", "/ledger", params={"since": since.isoformat()})
        return [decode(LedgerEntry, entry) for entry in raw]

    async def find_order(self, symbol: str, client_id: str) -> OrderReport | None:
        raw = await self._call("GET", "/order", params={"symbol": symbol, "client_id": client_id})
        return None if raw is None else decode(OrderReport, raw)

    # --- quotes (engine/ports.py Quotes): what an entry sizes itself with ------------------------
    async def mark_price(self, symbol: str) -> Decimal:
        return parse_decimal(await self._call("GET", "/mark", params={"symbol": symbol}))

    async def equity(self) -> Decimal:
        return parse_decimal(await self._call("GET", "/equity"))

    # --- commands ----------------------------------------------------------------------------
    async def place_stop(self, request: StopRequest) -> OrderReport:
        return await self._command("/orders/stop", encode(request))

    async def amend_stop(self, order: OrderReport, trigger_price: Decimal,
                         qty: Decimal) -> OrderReport:
        return await self._command("/orders/amend", {
            "order": encode(order), "trigger_price": str(trigger_price), "qty": str(qty)})

    async def cancel_order(self, order: OrderReport) -> None:
        await self._call("POST", "/orders/cancel", json={"order": encode(order)}, command=True)

    async def market_order(self, request: MarketOrderRequest) -> OrderReport:
        return await self._command("/orders/market", encode(request))

    # --- stream ------------------------------------------------------------------------------
    async def events(self) -> AsyncIterator[VenueEvent]:
        """Until the exchange closes the socket; the guard calls again to reconnect, and a
        reconnect says so (StreamStatus up) so that the guard reconciles what it missed."""
        try:
            ws = await self._http().ws_connect(f"{self.url}/stream", heartbeat=10)
        except (aiohttp.ClientError, OSError) as exc:
            raise Transient(f"paper exchange stream: {exc}") from None
        try:
            if self._streamed_before:
                yield StreamStatus(up=True, reason="reconnected")
            self._streamed_before = True
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                yield decode_event(json.loads(message.data))
            if not self._closed:
                yield StreamStatus(up=False, reason="the paper exchange closed the stream")
        finally:
            await ws.close()

    async def price_ticks(self, symbols: frozenset[str]
                          ) -> AsyncIterator[tuple[PriceTick, ...]]:
        """The exchange's mark prices of `symbols` (GET /ticks, a WebSocket), in the batches it
        sends; ends when it closes the socket (the caller subscribes again)."""
        try:
            ws = await self._http().ws_connect(
                f"{self.url}/ticks", params={"symbols": ",".join(sorted(symbols))},
                heartbeat=10)
        except (aiohttp.ClientError, OSError) as exc:
            raise Transient(f"paper exchange ticks: {exc}") from None
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                yield tuple(decode(PriceTick, tick) for tick in json.loads(message.data))
        finally:
            await ws.close()

    # --- plumbing ----------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _command(self, path: str, body: dict[str, Any]) -> OrderReport:
        return decode(OrderReport, await self._call("POST", path, json=body, command=True))

    async def _call(self, method: str, path: str, *, json: Any = None,
                    params: dict[str, str] | None = None, command: bool = False) -> Any:
        """One request. `command`: the request may have executed when no answer came."""
        unknown = OutcomeUnknown if command else Transient
        try:
            async with self._http().request(method, self.url + path, json=json,
                                            params=params) as response:
                status = response.status
                body = await response.json(content_type=None)
        except aiohttp.ClientConnectorError as exc:  # never reached the exchange
            raise Transient(f"paper exchange unreachable: {exc}") from None
        except TimeoutError:
            raise unknown(f"paper exchange timed out on {path}") from None
        except (aiohttp.ClientError, ValueError) as exc:  # sent, answer lost or unreadable
            raise unknown(f"paper exchange {path}: {type(exc).__name__}: {exc}") from None
        if status == 200:
            return body
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        if status == 400 and isinstance(body, dict):
            try:
                reason = RejectReason(body.get("reason", "other"))
            except ValueError:
                reason = RejectReason.OTHER
            raise Rejected(reason, message)
        if status == 429:
            raise Transient(f"paper exchange rate limit on {path} (429)")
        if status == 503:
            raise Transient(f"paper exchange {path}: {message}")
        if status == 504:
            raise unknown(f"paper exchange {path}: {message}")
        if status == 422:
            raise Rejected(RejectReason.OTHER, f"paper exchange refused the request: {message}")
        raise unknown(f"paper exchange {path}: HTTP {status} {message}")
