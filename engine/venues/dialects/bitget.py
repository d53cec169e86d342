"""Bitget USDT-M futures, classic v2 mix API (ccxt `bitget`).

Our stop is a sized `loss_plan` (POST /api/v2/mix/order/place-tpsl-order, triggerType=mark_price):
unlike `pos_loss` (whole position) it can be resized with the position; a position below the
minimum order size gets a `pos_loss` (no size: it closes whatever is held). Resting TP/SL orders are
listed with planType=profit_loss; every cancel must name the order's planType or Bitget answers
"success" without cancelling anything. Demo trading is the live host plus a PAPTRADING header."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.domain.reports import (
    MarketOrderRequest,
    OrderKind,
    OrderReport,
    StopRequest,
    VenueCapabilities,
)
from engine.domain.values import OrderSide, PositionSide
from engine.errors import Rejected, RejectReason
from engine.venues.budget import BudgetLimits
from engine.venues.convert import fmt, info, positive
from engine.venues.dialects.base import (
    TRIGGER_KINDS,
    Dialect,
    Subscription,
    ccxt_orders,
    ccxt_positions,
)
from engine.venues.errors import VenueCodes
from engine.venues.ledger import entry, unified_symbol, windows
from engine.venues.rest import Raw, Rest

PRODUCT_TYPE = "USDT-FUTURES"
STOP_PLAN_TYPE = "profit_loss"  # lists pos_loss/loss_plan/pos_profit/profit_plan: our stops and TPs
PAGE = 100  # orders-pending and orders-plan-pending maximum page size
# The orders-algo websocket channel abbreviates the planType of the REST API.
_WS_PLAN_TYPES = {"sl": "loss_plan", "psl": "pos_loss", "tp": "profit_plan",
                  "ptp": "pos_profit", "pl": "normal_plan", "track": "track_plan"}
_SL_PLANS = frozenset({"pos_loss", "loss_plan"})
_TP_PLANS = frozenset({"pos_profit", "profit_plan"})
_WHOLE_POSITION_PLANS = frozenset({"pos_loss", "pos_profit"})
_REMEMBERED = 4096  # bound on the planType / margin-mode caches
BILL_PAGE = 100  # /api/v2/mix/account/bill maximum page size
BILL_WINDOW_MS = 30 * 24 * 3600 * 1000  # endTime - startTime <= 30 days
# Bills of trades (hedge-mode open/close names and one-way buy/sell names, forced and liquidation
# ones included): amount is the realized PnL (0 on an opening trade), fee is signed (negative
# when paid). contract_settle_fee is funding, its amount signed (negative when paid).
_TRADE_BILLS = frozenset({
    "open_long", "open_short", "close_long", "close_short", "force_close_long",
    "force_close_short", "burst_long_loss_query", "burst_short_loss_query", "buy", "sell",
    "force_buy", "force_sell", "burst_buy", "burst_sell", "delivery_long", "delivery_short"})
_FUNDING_BILLS = frozenset({"contract_settle_fee"})


class BitgetDialect(Dialect):
    name = "bitget"
    ccxt_id = "bitget"
    needs_password = True
    capabilities = VenueCapabilities(
        amend_stop_in_place=True,
        streams=True,
        attached_stop=True,
        notes=("classic (non-UTA) accounts only: the adapter speaks the v2 mix API",),
    )
    codes = VenueCodes(
        # Trigger prices on the wrong side of the mark (or last) price: many codes, some
        # undocumented, hence the message too.
        would_trigger=frozenset({"40917", "45122", "40740", "40834", "43015", "45062", "31005",
                                 "40742", "40836", "43016"}),
        would_trigger_message=r"(trigger|stop|loss|profit)[^{}]*(mark|market|current) price",
        duplicate_client_id=frozenset({"40786"}),  # not in ccxt's table: a bare ExchangeError
        order_not_found=frozenset({"40109", "40768", "43001", "43020", "43025", "40819",
                                   "45057", "22001", "25575"}),
        reduce_only=frozenset({"22002"}),  # "No position to close"
    )
    # Per-UID limits per endpoint (place-tpsl-order 10/s, all-position 5/s...), in ccxt's
    # units: 1 unit = 50 ms, 20 a second.
    budget = BudgetLimits(limit=20, window=1, reserve=4,
                          source="Bitget v2 mix per-UID rate limits, 20 ccxt units/s")

    def __init__(self) -> None:
        self._plan_types: dict[str, str] = {}
        self._margin_modes: dict[str, str] = {}
        self._marks: dict[str, Decimal] = {}  # symbol -> mark of the open position
        self._protects: dict[str, PositionSide] = {}  # our client id -> the side it protects

    def configure(self, exchange: Any, *, testnet: bool) -> None:
        super().configure(exchange, testnet=False)
        # Without this ccxt asks /api/v3/account/settings before many calls to find out.
        exchange.options["uta"] = False
        exchange.options["fetchMarkets"] = {"types": ["swap"]}
        if testnet:
            exchange.enable_demo_trading(True)  # PAPTRADING: 1 on every request

    async def list_positions(self, rest: Rest) -> list[Raw]:
        # GET all-position: every symbol of the product type in one answer
        exchange = rest.exchange
        response = await rest("fetch_positions", exchange.privateMixGetV2MixPositionAllPosition(
            {"marginCoin": self.settle, "productType": PRODUCT_TYPE}))
        return await ccxt_positions(exchange.safe_list(response, "data", []),
                                    exchange.parse_position)

    def list_stops_params(self) -> dict[str, Any]:
        # planType=profit_loss lists pos_loss/loss_plan/pos_profit/profit_plan, all symbols;
        # {'trigger': True} alone would list normal_plan orders and miss every stop.
        return {"planType": STOP_PLAN_TYPE, "productType": PRODUCT_TYPE, "type": "swap"}

    async def list_stops(self, rest: Rest, symbol: str | None) -> list[Raw]:
        # GET orders-plan-pending (ccxt's fetch_open_orders with the params above)
        return await _pending(rest, symbol, rest.exchange.privateMixGetV2MixOrderOrdersPlanPending,
                              {"planType": STOP_PLAN_TYPE})

    async def list_orders(self, rest: Rest) -> list[Raw]:
        # No planType: GET /api/v2/mix/order/orders-pending (every symbol of the product type)
        return await _pending(rest, None, rest.exchange.privateMixGetV2MixOrderOrdersPending, {})

    async def find_closed(self, rest: Rest, symbol: str, client_id: str) -> Raw | None:
        exchange = rest.exchange
        history = await rest("fetch_canceled_and_closed_orders",
                             exchange.fetch_canceled_and_closed_orders(
                                 symbol, None, None,
                                 {**self.list_stops_params(), "clientOid": client_id}))
        found = next((o for o in history if o.get("clientOrderId") == client_id), None)
        if found is not None:
            return found
        try:  # a plain (market) order: GET /api/v2/mix/order/detail
            return await rest("fetch_order", exchange.fetch_order(
                None, symbol, {"clientOid": client_id}))
        except Rejected as exc:
            if exc.reason is RejectReason.ORDER_NOT_FOUND:
                return None
            raise

    async def fetch_ledger(self, rest: Rest, since_ms: int, until_ms: int) -> list[LedgerEntry]:
        # GET /api/v2/mix/account/bill: every symbol of USDT-FUTURES, at most 30 days per
        # request, newest first; older pages by idLessThan=endId.
        exchange = rest.exchange
        entries: list[LedgerEntry] = []
        for start, end in windows(since_ms, until_ms, BILL_WINDOW_MS):
            before: str | None = None
            while True:
                params = {"productType": PRODUCT_TYPE, "startTime": str(start),
                          "endTime": str(end), "limit": str(BILL_PAGE)}
                if before:
                    params["idLessThan"] = before
                response = await rest("fetch_bills", exchange.privateMixGetV2MixAccountBill(params))
                data = response.get("data") if isinstance(response, dict) else None
                data = data if isinstance(data, dict) else {}
                bills: list[Raw] = data.get("bills") or []
                for bill in bills:
                    entries.extend(self._bill_entries(exchange, bill))
                before = str(data.get("endId") or "")
                if len(bills) < BILL_PAGE or not before:
                    break
        return entries

    def _bill_entries(self, exchange: Any, bill: Raw) -> list[LedgerEntry]:
        business = str(bill.get("businessType") or "")
        bill_id = bill.get("billId")
        if not bill_id or bill.get("coin", self.settle) != self.settle:
            return []
        symbol, at = unified_symbol(exchange, bill.get("symbol")), bill.get("cTime")
        found: tuple[LedgerEntry | None, ...] = ()
        if business in _TRADE_BILLS:
            found = (entry(f"{bill_id}:pnl", symbol, LedgerKind.REALIZED_PNL, bill.get("amount"),
                           at),
                     entry(f"{bill_id}:fee", symbol, LedgerKind.FEE, bill.get("fee"), at))
        elif business in _FUNDING_BILLS:
            found = (entry(f"{bill_id}:funding", symbol, LedgerKind.FUNDING, bill.get("amount"),
                           at),)
        return [e for e in found if e is not None]

    def observe_order(self, raw: Raw) -> None:
        plan_type = _plan_type(raw)
        if raw.get("id") and plan_type:
            _remember(self._plan_types, str(raw["id"]), str(plan_type))

    def observe_position(self, raw: Raw) -> None:
        symbol = raw.get("symbol")
        if not symbol:
            return
        mode = info(raw).get("marginMode")
        if mode in ("crossed", "isolated"):
            _remember(self._margin_modes, str(symbol), "cross" if mode == "crossed" else "isolated")
        mark = positive(raw.get("markPrice"))
        if positive(raw.get("contracts")) is None:
            self._marks.pop(str(symbol), None)  # flat: its old mark says nothing any more
        elif mark is not None:
            _remember(self._marks, str(symbol), mark)

    async def place_stop(self, rest: Rest, request: StopRequest, trigger: str,
                         qty: str | None) -> Raw:
        _remember(self._protects, request.client_id, request.position_side)
        if qty is not None:
            return await super().place_stop(rest, request, trigger, qty)
        # pos_loss takes no size, which ccxt's create_order always sends: the endpoint itself.
        exchange = rest.exchange
        market = exchange.market(request.symbol)
        body = {
            "symbol": market["id"],
            "productType": PRODUCT_TYPE,
            "marginCoin": market["settleId"],
            "planType": "pos_loss",
            "triggerPrice": trigger,
            "triggerType": "mark_price",
            # one-way mode: the side of the position held (buy = long)
            "holdSide": "buy" if request.position_side is PositionSide.LONG else "sell",
            "clientOid": request.client_id,
        }
        response = await rest("create_order(stop)",
                               exchange.privateMixPostV2MixOrderPlaceTpslOrder(body))
        return _answer(response, None)

    def stop_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        return {
            "stopLossPrice": trigger,
            "planType": "loss_plan",  # sized; ccxt's default pos_loss closes the whole position
            "triggerType": "mark_price",
            "clientOrderId": request.client_id,  # -> clientOid
        }

    def take_profit_params(self, request: StopRequest, trigger: str) -> dict[str, Any]:
        return {
            "takeProfitPrice": trigger,
            "planType": "profit_plan",  # sized; ccxt's default pos_profit takes the whole position
            "triggerType": "mark_price",
            "clientOrderId": request.client_id,  # -> clientOid
        }

    def cancel_params(self, order: OrderReport) -> dict[str, Any]:
        if order.kind not in TRIGGER_KINDS:
            return {}
        return {"trigger": True, "planType": self.plan_type(order)}

    def plan_type(self, order: OrderReport) -> str:
        """The planType Bitget needs to cancel this order: as listed, else from kind and size."""
        remembered = self._plan_types.get(order.order_id)
        if remembered:
            return remembered
        whole = order.qty is None
        if order.kind is OrderKind.STOP_LOSS:
            return "pos_loss" if whole else "loss_plan"
        if order.kind is OrderKind.TAKE_PROFIT:
            return "pos_profit" if whole else "profit_plan"
        return "normal_plan"

    def check_cancelled(self, raw: Raw, order: OrderReport) -> None:
        # cancel-plan-order answers code 00000 with an empty successList when nothing matched.
        if not raw.get("id"):
            raise Rejected(RejectReason.ORDER_NOT_FOUND,
                           f"bitget did not cancel {order.order_id} ({order.symbol}): "
                           f"not in its successList")

    async def amend_stop(self, rest: Rest, order: OrderReport, trigger: str,
                         qty: str | None) -> Raw:
        # The implicit endpoint, not edit_order: ccxt drops triggerType from the modify body, and
        # the trigger basis must stay the mark price.
        exchange = rest.exchange
        market = exchange.market(order.symbol)
        body: dict[str, Any] = {
            "orderId": order.order_id,
            "symbol": market["id"],
            "productType": PRODUCT_TYPE,
            "marginCoin": market["settleId"],
            "triggerPrice": trigger,
            "triggerType": "mark_price",
            # pos_loss covers the whole position: the endpoint wants the size empty, not absent
            "size": "" if qty is None else qty,
        }
        response = await rest("modify-tpsl-order",
                              exchange.privateMixPostV2MixOrderModifyTpslOrder(body))
        return _answer(response, order.order_id)

    def attached_stop_params(self, stop_loss: Decimal) -> dict[str, Any]:
        # v2 place-order presetStopLossPrice (ccxt maps stopLoss.triggerPrice to it): the
        # position's stop-loss comes with the fill.
        return {"stopLoss": {"triggerPrice": fmt(stop_loss)}}

    def market_order_params(self, request: MarketOrderRequest) -> dict[str, Any]:
        params = super().market_order_params(request)
        margin_mode = self._margin_modes.get(request.symbol)
        if margin_mode:  # place-order needs the position's margin mode; ccxt assumes cross
            params["marginMode"] = margin_mode
        return params

    def subscriptions(self) -> tuple[Subscription, ...]:
        return (
            Subscription("positions", "positions"),  # ccxt defaults to USDT-FUTURES
            Subscription("orders", "orders", {"type": "swap"}),
            # trigger (plan and TP/SL) orders come on their own channel (orders-algo)
            Subscription("trigger-orders", "orders", {"type": "swap", "trigger": True}),
        )

    # --- raw orders --------------------------------------------------------------------------
    def order_kind(self, raw: Raw) -> OrderKind:
        plan_type = _plan_type(raw)
        if plan_type in _SL_PLANS:
            return OrderKind.STOP_LOSS
        if plan_type in _TP_PLANS:
            return OrderKind.TAKE_PROFIT
        if plan_type:
            return OrderKind.OTHER_TRIGGER
        return OrderKind.LIMIT if raw.get("type") == "limit" else OrderKind.MARKET

    def order_side(self, raw: Raw, kind: OrderKind) -> OrderSide | None:
        if kind not in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT):
            return super().order_side(raw, kind)
        held = self._protected_side(raw, kind)
        if held is not None:
            return held.close_side
        return super().order_side(raw, kind)  # nothing better: take `side` as the closing side

    def _protected_side(self, raw: Raw, kind: OrderKind) -> PositionSide | None:
        """Which position a TP/SL order protects, from what cannot be misread. Its `side` can:
        in one-way mode Bitget does not document it as the closing side, and in hedge mode a
        long's stop has been listed as `buy`."""
        raw_info = info(raw)
        held = raw_info.get("holdSide") or raw_info.get("posSide")  # "net" in one-way mode
        if held in ("long", "buy"):
            return PositionSide.LONG
        if held in ("short", "sell"):
            return PositionSide.SHORT
        ours = self._protects.get(str(raw.get("clientOrderId") or ""))
        if ours is not None:
            return ours
        # A resting stop-loss sits on the far side of the mark from where the position gains:
        # below it for a long, above it for a short (a take-profit the other way round).
        mark, trigger = self._marks.get(str(raw.get("symbol"))), self.order_trigger(raw)
        if mark is None or trigger is None or trigger == mark:
            return None
        below = trigger < mark
        if kind is OrderKind.STOP_LOSS:
            return PositionSide.LONG if below else PositionSide.SHORT
        return PositionSide.SHORT if below else PositionSide.LONG

    def order_qty(self, raw: Raw, kind: OrderKind) -> Decimal | None:
        if _plan_type(raw) in _WHOLE_POSITION_PLANS:
            return None
        return super().order_qty(raw, kind)

    def order_reduce_only(self, raw: Raw, kind: OrderKind) -> bool:
        return kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT) or super().order_reduce_only(
            raw, kind)


def _answer(response: Any, order_id: str | None) -> Raw:
    """The ccxt-like dict of a place/modify-tpsl-order answer: ids only."""
    data = response.get("data") if isinstance(response, dict) else None
    data = data if isinstance(data, dict) else {}
    return {"id": data.get("orderId") or order_id, "clientOrderId": data.get("clientOid")}


def _plan_type(raw: Raw) -> str | None:
    plan_type = info(raw).get("planType")
    if not plan_type:
        return None
    return _WS_PLAN_TYPES.get(str(plan_type), str(plan_type))


async def _pending(rest: Rest, symbol: str | None,
                   call: Callable[[dict[str, Any]], Awaitable[Raw]],
                   request: dict[str, Any]) -> list[Raw]:
    """orders-pending / orders-plan-pending, older pages by idLessThan past a full page."""
    exchange = rest.exchange
    market = exchange.market(symbol) if symbol else None
    request = {**request, "productType": PRODUCT_TYPE, "limit": PAGE}
    if market is not None:
        request["symbol"] = market["id"]
    rows: list[Raw] = []
    below: str | None = None
    # More than a page of orders is the only case where the listing takes more calls.
    while True:
        response = await rest("fetch_open_orders",
                              call({**request, "idLessThan": below} if below else request))
        page = exchange.safe_list(exchange.safe_dict(response, "data"), "entrustedList", [])
        rows.extend(page)
        if len(page) < PAGE or not (below := _oldest_id(page)):
            return await ccxt_orders(exchange, rows, market)


def _oldest_id(page: list[Raw]) -> str | None:
    """Bitget ids grow with time; the smallest of a page is where the next page starts."""
    ids = [int(str(o["orderId"])) for o in page if str(o.get("orderId") or "").isdigit()]
    return str(min(ids)) if ids else None


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _REMEMBERED and key not in cache:
        cache.pop(next(iter(cache)))
    cache[key] = value
