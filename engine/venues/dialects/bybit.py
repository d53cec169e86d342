"""Bybit v5 linear (ccxt `bybit`).

Our stop is a qty-sized conditional market order (POST /v5/order/create with triggerPrice,
triggerDirection, reduceOnly, closeOnTrigger, triggerBy=MarkPrice, orderLinkId=client id). It can be
amended in place (/v5/order/amend); triggerBy must be sent again or Bybit resets it to LastPrice.
A position below the minimum order size gets the same order with qty "0", which closes the whole
position when it fires."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.domain.reports import (
    OrderKind,
    OrderReport,
    OrderStatus,
    StopRequest,
    VenueCapabilities,
)
from engine.venues.budget import BudgetLimits
from engine.venues.convert import dec, fmt, info, positive
from engine.venues.dialects.base import Dialect, ccxt_orders, ccxt_positions, flag
from engine.venues.errors import VenueCodes
from engine.venues.ledger import entry, unified_symbol, windows
from engine.venues.rest import Raw, Rest

PAGE = 50  # /v5/order/realtime maximum page size
POSITION_PAGE = 200  # /v5/position/list maximum page size (ccxt asks for it)
LOG_PAGE = 50  # transaction-log maximum page size
LOG_WINDOW_MS = 7 * 24 * 3600 * 1000  # transaction-log: endTime - startTime <= 7 days
# Transaction-log rows that move trading money: cashFlow is realized PnL (fees and funding
# excluded), fee is positive when paid, funding has its own field. Transfers, bonuses and
# interest also carry a cashFlow, which is not trading PnL: those types are left out.
_LOG_TYPES = frozenset({"TRADE", "SETTLEMENT", "LIQUIDATION", "ADL", "DELIVERY"})
_SL_TYPES = frozenset({"StopLoss", "PartialStopLoss"})
_TP_TYPES = frozenset({"TakeProfit", "PartialTakeProfit"})
_STATUS: dict[str, OrderStatus] = {
    "Created": OrderStatus.OPEN,
    "New": OrderStatus.OPEN,
    "Untriggered": OrderStatus.OPEN,
    "Active": OrderStatus.OPEN,
    "PartiallyFilled": OrderStatus.OPEN,
    "Triggered": OrderStatus.TRIGGERED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "Deactivated": OrderStatus.CANCELLED,
    "PartiallyFilledCanceled": OrderStatus.CANCELLED,
    "Rejected": OrderStatus.REJECTED,
}


class BybitDialect(Dialect):
    name = "bybit"
    ccxt_id = "bybit"
    capabilities = VenueCapabilities(amend_stop_in_place=True, streams=True, attached_stop=True)
    whole_position_amount = "0"
    codes = VenueCodes(
        would_trigger=frozenset({"110092", "110093"}),
        duplicate_client_id=frozenset({"110072"}),
        order_not_found=frozenset({"110001", "110008", "110010", "170213"}),
        reduce_only=frozenset({"110017"}),
        too_many_stops=frozenset({"110009"}),  # too many conditional orders on the symbol
        # 10016 "System error, please try again later"; 429 and 110079 ("the order is being
        # processed, try again later") ask for a retry.
        transient=frozenset({"10016", "429", "110079"}),
        outcome_unknown=frozenset({"10000", "5004"}),  # server timeout: it may have happened
    )
    # Per-UID limits per endpoint (order/create 10/s, position/list 10/s...), in ccxt's units:
    # 1 unit = 20 ms, 50 a second; ccxt's costs turn each endpoint's rate into units.
    budget = BudgetLimits(limit=50, window=1, reserve=10,
                          source="Bybit v5 per-UID rate limits, 50 ccxt units/s")


    def equity(self, balance: Raw) -> Decimal | None:
        # ccxt's total is the wallet balance; the coin's `equity` adds the unrealized PnL.
        accounts = ((balance.get("info") or {}).get("result") or {}).get("list") or []
        for account in accounts:
            for coin in account.get("coin") or []:
                if coin.get("coin") == "USDT":
                    return dec(coin.get("equity"))
        return super().equity(balance)

    def attached_stop_params(self, stop_loss: Decimal) -> dict[str, Any]:
        # v5 order/create: a position-level (Full) stop-loss that fires on the mark price,
        # resting from the fill on; ccxt turns the dict into stopLoss.
        return {"stopLoss": {"triggerPrice": fmt(stop_loss)}, "slTriggerBy": "MarkPrice",
                "tpslMode": "Full"}

    def configure(self, exchange: Any, *, testnet: bool) -> None:
        super().configure(exchange, testnet=testnet)
        exchange.options["defaultSettle"] = self.settle
        exchange.options["fetchMarkets"] = {"types": ["linear"]}

    async def prepare(self, rest: Rest) -> None:
        # create_order asks whether the account is unified (two calls) the first time: ask now.
        exchange = rest.exchange
        if exchange.options.get("enableUnifiedAccount") is None:
            await rest("is_unified_enabled", exchange.is_unified_enabled())

    async def list_positions(self, rest: Rest) -> list[Raw]:
        """GET /v5/position/list, following the cursor past a full page: without it a book
        of more than 200 positions showed only the first 200 in every snapshot."""
        exchange = rest.exchange
        request = {"category": "linear", "settleCoin": self.settle, "limit": POSITION_PAGE}
        rows = await _pages(rest, "fetch_positions", exchange.privateGetV5PositionList, request,
                            POSITION_PAGE)
        return await ccxt_positions(
            rows, lambda row: exchange.parse_position(_unwrapped_position(row)))

    async def list_stops(self, rest: Rest, symbol: str | None) -> list[Raw]:
        # orderFilter=StopOrder (ccxt's trigger=True); settleCoin makes one call cover every
        # symbol.
        return await _realtime(rest, symbol, {"orderFilter": "StopOrder",
                                              "settleCoin": self.settle})

    async def list_orders(self, rest: Rest) -> list[Raw]:
        # Without orderFilter a unified account answers every kind, conditional ones included:
        # orderFilter=Order keeps the active (non-conditional) orders only.
        return await _realtime(rest, None, {"orderFilter": "Order", "settleCoin": self.settle})

    async def find_closed(self, rest: Rest, symbol: str, client_id: str) -> Raw | None:
        exchange = rest.exchange
        # realtime by orderLinkId also answers recently closed orders on unified accounts.
        found = await rest("fetch_open_orders", exchange.fetch_open_orders(
            symbol, None, None, {"orderLinkId": client_id}))
        if not found:
            found = await rest("fetch_canceled_and_closed_orders",
                               exchange.fetch_canceled_and_closed_orders(
                                   symbol, None, None, {"orderLinkId": client_id}))
        return next((o for o in found if o.get("clientOrderId") == client_id), None)

    async def fetch_ledger(self, rest: Rest, since_ms: int, until_ms: int) -> list[LedgerEntry]:
        # Unified account: GET /v5/account/transaction-log (category=linear), funding positive
        # when received. Classic account: /v5/account/contract-transaction-log, where funding is
        # positive when paid. Both: at most 7 days per request, pages by cursor.
        exchange = rest.exchange
        unified = exchange.options.get("enableUnifiedAccount")
        if unified is None:
            unified = (await rest("is_unified_enabled", exchange.is_unified_enabled()))[1]
        if unified:
            call = exchange.privateGetV5AccountTransactionLog
            base: dict[str, Any] = {"accountType": "UNIFIED", "category": "linear",
                                    "currency": self.settle}
        else:
            call = exchange.privateGetV5AccountContractTransactionLog
            base = {"currency": self.settle}
        entries: list[LedgerEntry] = []
        for start, end in windows(since_ms, until_ms, LOG_WINDOW_MS):
            cursor = None
            while True:
                params = {**base, "startTime": start, "endTime": end, "limit": LOG_PAGE}
                if cursor:
                    params["cursor"] = cursor
                response = await rest("fetch_transaction_log", call(params))
                result = response.get("result") if isinstance(response, dict) else None
                result = result if isinstance(result, dict) else {}
                rows: list[Raw] = result.get("list") or []
                for row in rows:
                    entries.extend(self._log_entries(exchange, row, paid_funding=not unified))
                cursor = result.get("nextPageCursor")
                if not rows or not cursor:
                    break
        return entries

    def _log_entries(self, exchange: Any, row: Raw, *, paid_funding: bool) -> list[LedgerEntry]:
        if row.get("type") not in _LOG_TYPES or row.get("currency", self.settle) != self.settle:
            return []
        if row.get("category", "linear") != "linear":
            return []
        key = row.get("id") or (f"{row.get('transactionTime')}:{row.get('type')}:"
                                f"{row.get('tradeId') or row.get('orderId') or row.get('symbol')}")
        symbol, at = unified_symbol(exchange, row.get("symbol")), row.get("transactionTime")
        found = (entry(f"{key}:pnl", symbol, LedgerKind.REALIZED_PNL, row.get("cashFlow"), at),
                 entry(f"{key}:fee", symbol, LedgerKind.FEE, row.get("fee"), at, negate=True),
                 entry(f"{key}:funding", symbol, LedgerKind.FUNDING, row.get("funding"), at,
                       negate=paid_funding))
        return [e for e in found if e is not None]

    def stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        return {
            "stopLossPrice": trigger,
            "triggerBy": "MarkPrice",
            "reduceOnly": True,
            "closeOnTrigger": True,
            "positionIdx": 0,  # one-way mode
            "clientOrderId": request.client_id,  # -> orderLinkId
        }

    def take_profit_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        # A conditional reduce-only market order rising (long) or falling (short) through the
        # mark; no closeOnTrigger: that frees margin for a stop, a take-profit needs none.
        return {
            "takeProfitPrice": trigger,
            "triggerBy": "MarkPrice",
            "reduceOnly": True,
            "positionIdx": 0,  # one-way mode
            "clientOrderId": request.client_id,
        }

    def whole_position_stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        # qty "0" with reduceOnly and closeOnTrigger: closes the whole position when it fires.
        # ccxt drops a zero amount from the body, so the qty goes as a raw param.
        return {**self.stop_params(request, trigger), "qty": "0"}

    def cancel_params(self, order: OrderReport) -> dict[str, Any]:
        return {}  # one endpoint for every kind of linear order

    async def amend_stop(self, rest: Rest, order: OrderReport, trigger: str,
                         qty: str | None) -> Raw:
        # triggerPrice, not stopLossPrice: ccxt copies the raw params into the amend body, so
        # this string (already rounded toward the mark) is exactly what Bybit receives.
        params = {"triggerPrice": trigger, "triggerBy": "MarkPrice"}
        return await rest("edit_order", rest.exchange.edit_order(
            order.order_id, order.symbol, "market", order.side.value, qty, None, params))

    # --- raw orders --------------------------------------------------------------------------
    def order_kind(self, raw: Raw) -> OrderKind:
        raw_info = info(raw)
        stop_type = str(raw_info.get("stopOrderType") or "")
        if stop_type in _SL_TYPES:
            return OrderKind.STOP_LOSS
        if stop_type in _TP_TYPES:
            return OrderKind.TAKE_PROFIT
        if stop_type == "TrailingStop":
            return OrderKind.OTHER_TRIGGER
        if stop_type or positive(raw_info.get("triggerPrice")) is not None:
            return self._conditional_kind(raw)
        return OrderKind.LIMIT if raw.get("type") == "limit" else OrderKind.MARKET

    def _conditional_kind(self, raw: Raw) -> OrderKind:
        """A conditional order protects when it reduces and fires moving against the position:
        a sell that triggers on a fall (direction 2) or a buy that triggers on a rise (1)."""
        if not self.order_reduce_only(raw, OrderKind.OTHER_TRIGGER):
            return OrderKind.OTHER_TRIGGER
        direction = str(info(raw).get("triggerDirection"))
        side = raw.get("side")
        if (side, direction) in (("sell", "2"), ("buy", "1")):
            return OrderKind.STOP_LOSS
        if (side, direction) in (("sell", "1"), ("buy", "2")):
            return OrderKind.TAKE_PROFIT
        return OrderKind.OTHER_TRIGGER

    def order_reduce_only(self, raw: Raw, kind: OrderKind) -> bool:
        return raw.get("reduceOnly") is True or flag(info(raw), "reduceOnly", "closeOnTrigger")

    def order_status(self, raw: Raw, kind: OrderKind) -> OrderStatus:
        status = _STATUS.get(str(info(raw).get("orderStatus")))
        return status if status is not None else super().order_status(raw, kind)


async def _realtime(rest: Rest, symbol: str | None, request: dict[str, Any]) -> list[Raw]:
    """GET /v5/order/realtime, following the cursor past a full page."""
    exchange = rest.exchange
    market = exchange.market(symbol) if symbol else None
    request = {**request, "category": "linear", "limit": PAGE}
    if market is not None:
        request["symbol"] = market["id"]
    rows = await _pages(rest, "fetch_open_orders", exchange.privateGetV5OrderRealtime, request,
                        PAGE)
    return await ccxt_orders(exchange, rows, market)


async def _pages(rest: Rest, name: str, call: Callable[[dict[str, Any]], Awaitable[Raw]],
                 request: dict[str, Any], size: int) -> list[Raw]:
    """The raw rows of every page of a Bybit listing: a full page carries the cursor of the
    next. ccxt's own helper reads each answer (and pins the cursor on its first row, as the
    unified methods do)."""
    exchange = rest.exchange
    rows: list[Raw] = []
    cursor: str | None = None
    while True:
        response = await rest(name, call({**request, "cursor": cursor} if cursor else request))
        page: list[Raw] = exchange.add_pagination_cursor_to_result(response)
        rows.extend(page)
        cursor = str(page[0].get("nextPageCursor") or "") if page else ""
        if len(page) < size or not cursor:
            return rows


def _unwrapped_position(row: Raw) -> Raw:
    """A row as ccxt's fetch_positions hands it to parse_position: futures rows may come
    wrapped as {"data": ..., "is_valid": ...}."""
    if "data" in row and "is_valid" in row:
        return row["data"] or {}
    return row
