"""Binance USD-M futures (ccxt `binanceusdm`).

Conditional orders live on the Algo API since 2025-12 (POST/DELETE /fapi/v1/algoOrder,
GET /fapi/v1/openAlgoOrders): ccxt routes there when `stopLossPrice` (create) or
`trigger: True` (list, cancel, fetch) is given. An algo stop has its own algoId and clientAlgoId;
there is no amend, so a stop is replaced by placing the new one and cancelling the old. A
position below the minimum order size gets a closePosition=true stop (no quantity)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.domain.reports import OrderKind, StopRequest, VenueCapabilities
from engine.domain.values import PositionSide
from engine.errors import Rejected, RejectReason
from engine.venues.budget import BudgetLimits
from engine.venues.convert import dec, info, positive
from engine.venues.dialects.base import Dialect, ccxt_orders, ccxt_positions, flag
from engine.venues.errors import VenueCodes
from engine.venues.ledger import entry, unified_symbol
from engine.venues.rest import Raw, Rest

_STOP_TYPES = frozenset({"STOP_MARKET", "STOP"})
_TAKE_PROFIT_TYPES = frozenset({"TAKE_PROFIT_MARKET", "TAKE_PROFIT"})
INCOME_PAGE = 1000  # /fapi/v1/income maximum page size
# incomeType -> our kind; income is signed (commission negative when paid, funding positive
# when received). Transfers, bonuses, rebates and the rest are not trading PnL.
_INCOME_KINDS = {
    "REALIZED_PNL": LedgerKind.REALIZED_PNL,
    "COMMISSION": LedgerKind.FEE,
    "FUNDING_FEE": LedgerKind.FUNDING,
}


class BinanceDialect(Dialect):
    name = "binance"
    ccxt_id = "binanceusdm"
    capabilities = VenueCapabilities(
        amend_stop_in_place=False,
        streams=True,
        notes=("stops are algo orders: replace = place the new stop, then cancel the old one",),
    )
    codes = VenueCodes(
        would_trigger=frozenset({"-2021"}),
        duplicate_client_id=frozenset({"-4116", "-20132"}),
        # -20124: "Invalid algo id or it has been completed" is what a gone algo stop answers.
        order_not_found=frozenset({"-2011", "-2013", "-20124"}),
        reduce_only=frozenset({"-2022", "-4118"}),
        too_many_stops=frozenset({"-4045"}),  # "Reach max stop order limit"
        transient=frozenset({"-1001", "-1008"}),
        outcome_unknown=frozenset({"-1006", "-1007"}),
        # "Invalid API-key, IP, or permissions for action": ccxt calls it DDoSProtection once
        # the key has worked, but a revoked key or a dropped IP whitelist needs a person.
        operator=frozenset({"-2015"}),
    )
    # REQUEST_WEIGHT 2,400 a minute (per IP, USD-M); ccxt's costs are these weights.
    budget = BudgetLimits(limit=2400, window=60, reserve=240,
                          source="Binance USD-M REQUEST_WEIGHT 2,400/min",
                          used_header="X-MBX-USED-WEIGHT-1M")

    def configure(self, exchange: Any, *, testnet: bool) -> None:
        super().configure(exchange, testnet=False)
        if testnet:
            # ccxt 4.5 refuses the futures testnet for private calls; demo trading replaced it.
            exchange.enable_demo_trading(True)  # demo-fapi.binance.com
        open_orders = exchange.options.setdefault("fetchOpenOrders", {})
        open_orders["warnWithoutSymbol"] = False  # all-symbol listing is the point (weight 40)

    async def prepare(self, rest: Rest) -> None:
        # fetch_positions loads leverage brackets lazily: do it now so a snapshot is 2 calls.
        await rest("load_leverage_brackets", rest.exchange.load_leverage_brackets())

    async def is_hedged(self, rest: Rest) -> bool:
        mode = await rest("fetch_position_mode", rest.exchange.fetch_position_mode())
        return mode.get("hedged") is True

    async def list_positions(self, rest: Rest) -> list[Raw]:
        # GET /fapi/v3/positionRisk, every symbol in one answer; like ccxt's fetch_positions,
        # only the rows with an entry price, through its parse_position_risk.
        exchange = rest.exchange
        rows: list[Raw] = await rest("fetch_positions", _position_risk(exchange))
        held = [row for row in rows or [] if positive(row.get("entryPrice")) is not None]
        return await ccxt_positions(held, exchange.parse_position_risk)

    async def list_stops(self, rest: Rest, symbol: str | None) -> list[Raw]:
        # GET /fapi/v1/openAlgoOrders: where ccxt's fetch_open_orders goes with trigger=True
        exchange = rest.exchange
        market = exchange.market(symbol) if symbol else None
        request = {"symbol": market["id"]} if market else {}
        rows = await rest("fetch_open_orders", exchange.fapiPrivateGetOpenAlgoOrders(request))
        return await ccxt_orders(exchange, rows, market)

    async def list_orders(self, rest: Rest) -> list[Raw]:
        # GET /fapi/v1/openOrders without a symbol (weight 40; warnWithoutSymbol is off)
        exchange = rest.exchange
        rows = await rest("fetch_open_orders", exchange.fapiPrivateGetOpenOrders({}))
        return await ccxt_orders(exchange, rows)

    async def fetch_ledger(self, rest: Rest, since_ms: int, until_ms: int) -> list[LedgerEntry]:
        # GET /fapi/v1/income without incomeType: every type and symbol in one call (weight 30),
        # oldest first from startTime; a full page continues from its newest time (inclusive,
        # repeats are dropped by ref). tranId is unique per incomeType only (a trade's
        # REALIZED_PNL and COMMISSION share it), hence the type in the ref.
        exchange = rest.exchange
        entries: list[LedgerEntry] = []
        start = since_ms
        while True:
            page: list[Raw] = await rest("fetch_income", exchange.fapiPrivateGetIncome(
                {"startTime": start, "endTime": until_ms, "limit": INCOME_PAGE}))
            for row in page:
                kind = _INCOME_KINDS.get(str(row.get("incomeType")))
                if kind is None or row.get("asset", self.settle) != self.settle:
                    continue
                ref = f"{row.get('incomeType')}:{row.get('tranId') or row.get('time')}"
                item = entry(ref, unified_symbol(exchange, row.get("symbol")), kind,
                             row.get("income"), row.get("time"))
                if item is not None:
                    entries.append(item)
            if len(page) < INCOME_PAGE:
                return entries
            newest = max(int(row.get("time") or 0) for row in page)
            start = newest if newest > start else start + 1

    def stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        return {
            "stopLossPrice": trigger,
            "reduceOnly": True,
            "workingType": "MARK_PRICE",
            "clientOrderId": request.client_id,  # ccxt sends it as clientAlgoId
        }

    def take_profit_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        # ccxt turns takeProfitPrice into a TAKE_PROFIT_MARKET algo order, like the stop.
        return {
            "takeProfitPrice": trigger,
            "reduceOnly": True,
            "workingType": "MARK_PRICE",
            "clientOrderId": request.client_id,
        }

    def whole_position_stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        # closePosition=true closes whatever is held when it fires; Binance refuses it together
        # with a quantity or reduceOnly (-4137, -4138).
        return {
            "stopLossPrice": trigger,
            "closePosition": True,
            "workingType": "MARK_PRICE",
            "clientOrderId": request.client_id,
        }

    async def find_closed(self, rest: Rest, symbol: str, client_id: str) -> Raw | None:
        fetch = rest.exchange.fetch_order
        lookups: tuple[dict[str, Any], ...] = (
            {"trigger": True, "clientAlgoId": client_id},  # GET /fapi/v1/algoOrder
            {"origClientOrderId": client_id},  # GET /fapi/v1/order (market orders)
        )
        for params in lookups:
            try:
                return await rest("fetch_order", fetch(None, symbol, params))
            except Rejected as exc:
                if exc.reason is not RejectReason.ORDER_NOT_FOUND:
                    raise
        return None

    def position_side(self, raw: Raw) -> PositionSide | None:
        # One-way mode: the sign of positionAmt (REST) / pa (websocket) is the side; ccxt infers
        # it from notional on REST, which is zero when the mark is missing.
        raw_info = info(raw)
        amount = dec(raw_info.get("positionAmt", raw_info.get("pa")))
        if amount:
            return PositionSide.LONG if amount > 0 else PositionSide.SHORT
        return super().position_side(raw)

    # --- raw orders: REST algo orders, REST regular orders and websocket updates differ ------
    def order_kind(self, raw: Raw) -> OrderKind:
        raw_info = info(raw)
        ws_type = raw_info.get("o") if isinstance(raw_info.get("o"), str) else None
        order_type = str(raw_info.get("orderType") or raw_info.get("type") or ws_type or "")
        order_type = order_type.upper()
        if order_type in _STOP_TYPES:
            # A STOP_MARKET that does not reduce is a stop-entry, not a protective stop.
            closing = self._reduces(raw)
            return OrderKind.STOP_LOSS if closing else OrderKind.OTHER_TRIGGER
        if order_type in _TAKE_PROFIT_TYPES:
            return OrderKind.TAKE_PROFIT
        if order_type == "MARKET":
            return OrderKind.MARKET
        if order_type == "LIMIT":
            return OrderKind.LIMIT
        if positive(raw.get("triggerPrice")) is not None or order_type:
            return OrderKind.OTHER_TRIGGER
        return super().order_kind(raw)

    def order_qty(self, raw: Raw, kind: OrderKind) -> Decimal | None:
        if flag(info(raw), "closePosition", "cp"):
            return None
        return super().order_qty(raw, kind)

    def order_reduce_only(self, raw: Raw, kind: OrderKind) -> bool:
        return self._reduces(raw)

    @staticmethod
    def _reduces(raw: Raw) -> bool:
        return raw.get("reduceOnly") is True or flag(info(raw), "reduceOnly", "R",
                                                     "closePosition", "cp")


async def _position_risk(exchange: Any) -> list[Raw]:
    # parse_position_risk reads the leverage brackets: loaded by prepare(), so no request here
    await exchange.load_leverage_brackets()
    return await exchange.fapiPrivateV3GetPositionRisk({})  # type: ignore[no-any-return]
