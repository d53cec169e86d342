"""fetch_ledger on each venue: the exact request, and how rows become realized PnL, fees and
funding (kinds and signs), against the real ccxt classes with canned HTTP."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.errors import OperatorError
from tests.venues import payloads as p
from tests.venues.conftest import VENUES, Harness, Reply, Request, build

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
NOW = datetime.fromtimestamp(p.NOW_MS / 1000, UTC)  # the harness clock
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
PNL, FEE, FUNDING = LedgerKind.REALIZED_PNL, LedgerKind.FEE, LedgerKind.FUNDING
INCOME = "/fapi/v1/income"
TX_LOG = "/v5/account/transaction-log"
CONTRACT_TX_LOG = "/v5/account/contract-transaction-log"
BILLS = "/api/v2/mix/account/bill"
LEDGER_PATHS = {"binance": INCOME, "bybit": TX_LOG, "bitget": BILLS}


def ms_ago(hours: float) -> int:
    return p.NOW_MS - int(hours * HOUR_MS)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def brief(entries: list[LedgerEntry]) -> list[tuple[str, str | None, LedgerKind, Decimal]]:
    return [(e.ref, e.symbol, e.kind, e.amount) for e in entries]


# --- Binance USD-M: /fapi/v1/income --------------------------------------------------------------
def income(tran_id: int, kind: str, amount: str, ms: int, symbol: str = "BTCUSDT",
           asset: str = "USDT") -> dict[str, Any]:
    return {"symbol": symbol, "incomeType": kind, "income": amount, "asset": asset,
            "info": kind, "time": ms, "tranId": tran_id, "tradeId": "" if kind in (
                "FUNDING_FEE", "TRANSFER") else "2059192"}


async def test_binance_income_is_one_call_for_every_symbol(binance: Harness) -> None:
    binance.http.route("GET", INCOME, [
        income(7001, "COMMISSION", "-0.01250000", ms_ago(5)),
        income(7001, "REALIZED_PNL", "12.50000000", ms_ago(5)),  # same tranId, another type
        income(7002, "FUNDING_FEE", "-0.40000000", ms_ago(4), symbol="ETHUSDT"),
        income(7003, "FUNDING_FEE", "0.10000000", ms_ago(3)),
        income(7004, "TRANSFER", "500", ms_ago(2), symbol=""),  # not trading PnL
        income(7005, "COMMISSION", "-0.001", ms_ago(2), asset="BNB"),  # not in USDT
        income(7006, "COMMISSION", "0.002", ms_ago(1)),  # a rebate
    ])
    since = NOW - timedelta(days=1)
    mark = binance.mark()

    entries = await binance.venue.fetch_ledger(since)

    (request,) = binance.since(mark)
    assert (request.method, request.path) == ("GET", INCOME)
    assert {k: v for k, v in request.query.items() if k not in ("timestamp", "signature",
                                                                  "recvWindow")} == {
        "startTime": str(p.NOW_MS - DAY_MS), "endTime": str(p.NOW_MS), "limit": "1000"}
    assert brief(entries) == [
        ("COMMISSION:7001", BTC, FEE, Decimal("-0.0125")),
        ("REALIZED_PNL:7001", BTC, PNL, Decimal("12.5")),
        ("FUNDING_FEE:7002", ETH, FUNDING, Decimal("-0.4")),
        ("FUNDING_FEE:7003", BTC, FUNDING, Decimal("0.1")),
        ("COMMISSION:7006", BTC, FEE, Decimal("0.002")),
    ]
    assert entries[0].at == at(ms_ago(5))
    assert all(isinstance(e.amount, Decimal) and e.at.tzinfo is UTC for e in entries)


async def test_binance_full_page_continues_from_its_newest_time(binance: Harness) -> None:
    first = [income(10_000 + i, "COMMISSION", "-0.01", ms_ago(20) + i) for i in range(1000)]
    newest = first[-1]["time"]
    second = [first[-1], income(20_000, "REALIZED_PNL", "3", newest + 5)]  # boundary repeated

    def answer(request: Request) -> list[dict[str, Any]]:
        return first if request.query["startTime"] == str(ms_ago(24)) else second

    binance.http.route("GET", INCOME, answer)
    entries = await binance.venue.fetch_ledger(NOW - timedelta(hours=24))

    starts = [r.query["startTime"] for r in binance.http.sent("GET", INCOME)]
    assert starts == [str(ms_ago(24)), str(newest)]
    assert len(entries) == 1001  # the repeated row once
    assert entries[-1].ref == "REALIZED_PNL:20000"
    assert [e.at for e in entries] == sorted(e.at for e in entries)


# --- Bybit v5: /v5/account/transaction-log -------------------------------------------------------
def log_row(row_id: str, kind: str, ms: int, *, cash_flow: str = "0", fee: str = "0",
            funding: str = "", symbol: str = "BTCUSDT", currency: str = "USDT") -> dict[str, Any]:
    return {"id": row_id, "symbol": symbol, "category": "linear", "side": "Sell",
            "transactionTime": str(ms), "type": kind, "transSubType": "", "qty": "0.01",
            "size": "0", "currency": currency, "tradePrice": "65000", "funding": funding,
            "fee": fee, "cashFlow": cash_flow, "change": "0", "cashBalance": "1000",
            "feeRate": "0.00055", "bonusChange": "", "tradeId": f"t-{row_id}",
            "orderId": f"o-{row_id}", "orderLinkId": ""}


def log_page(rows: list[dict[str, Any]], cursor: str = "") -> dict[str, Any]:
    return p.bybit_ok({"list": rows, "nextPageCursor": cursor})


async def test_bybit_transaction_log_maps_cash_flow_fee_and_funding(bybit: Harness) -> None:
    bybit.http.route("GET", TX_LOG, log_page([
        log_row("b1", "TRADE", ms_ago(6), fee="0.02"),  # opening: fee only
        log_row("b2", "TRADE", ms_ago(5), cash_flow="12.5", fee="0.0357"),  # closing
        log_row("b3", "SETTLEMENT", ms_ago(4), funding="-0.4", symbol="ETHUSDT"),  # paid
        log_row("b4", "SETTLEMENT", ms_ago(3), funding="0.1"),  # received
        log_row("b5", "TRANSFER_IN", ms_ago(2), cash_flow="500", symbol=""),  # not PnL
        log_row("b6", "TRADE", ms_ago(2), cash_flow="1", currency="USDC"),  # other settle coin
        log_row("b7", "TRADE", ms_ago(1), fee="-0.003"),  # maker rebate
    ]))
    mark = bybit.mark()

    entries = await bybit.venue.fetch_ledger(NOW - timedelta(days=1))

    (request,) = bybit.since(mark)
    assert (request.method, request.path) == ("GET", TX_LOG)
    assert request.query == {"accountType": "UNIFIED", "category": "linear", "currency": "USDT",
                             "startTime": str(p.NOW_MS - DAY_MS), "endTime": str(p.NOW_MS),
                             "limit": "50"}
    assert brief(entries) == [
        ("b1:fee", BTC, FEE, Decimal("-0.02")),
        ("b2:fee", BTC, FEE, Decimal("-0.0357")),
        ("b2:pnl", BTC, PNL, Decimal("12.5")),
        ("b3:funding", ETH, FUNDING, Decimal("-0.4")),
        ("b4:funding", BTC, FUNDING, Decimal("0.1")),
        ("b7:fee", BTC, FEE, Decimal("0.003")),
    ]


async def test_bybit_asks_seven_days_at_a_time_and_follows_the_cursor(bybit: Harness) -> None:
    def answer(request: Request) -> dict[str, Any]:
        start = int(request.query["startTime"])
        if start == ms_ago(31 * 24) and "cursor" not in request.query:
            return log_page([log_row("p1", "TRADE", start + 1, fee="0.1")], cursor="next%3A1")
        return log_page([log_row(f"w{start}", "TRADE", start + 2, fee="0.1")])

    bybit.http.route("GET", TX_LOG, answer)
    entries = await bybit.venue.fetch_ledger(NOW - timedelta(days=31))

    sent = bybit.http.sent("GET", TX_LOG)
    spans = [(int(r.query["startTime"]), int(r.query["endTime"])) for r in sent
             if "cursor" not in r.query]
    assert spans[0][0] == ms_ago(31 * 24) and spans[-1][1] == p.NOW_MS
    assert all(end - start <= 7 * DAY_MS for start, end in spans)
    assert all(b[0] == a[1] for a, b in itertools.pairwise(spans))  # no gap
    assert len(spans) == 5
    # the first window's second page; the cursor goes back as Bybit gave it (already encoded)
    assert "cursor=next%3A1" in sent[1].url
    assert len(sent) == 6
    assert len(entries) == 6 and all(e.kind is FEE for e in entries)


async def test_bybit_classic_account_reads_the_contract_log_with_its_funding_sign() -> None:
    harness = await build("bybit", start=False)
    harness.http.options["enableUnifiedAccount"] = False
    await harness.venue.start()
    harness.http.route("GET", CONTRACT_TX_LOG, log_page([
        log_row("c1", "SETTLEMENT", ms_ago(3), funding="0.25"),  # classic: positive = paid
        log_row("c2", "TRADE", ms_ago(2), cash_flow="-3", fee="0.01"),
    ]))
    try:
        entries = await harness.venue.fetch_ledger(NOW - timedelta(hours=12))
    finally:
        await harness.venue.close()

    request = harness.http.last("GET", CONTRACT_TX_LOG)
    assert request.query == {"currency": "USDT", "startTime": str(ms_ago(12)),
                             "endTime": str(p.NOW_MS), "limit": "50"}
    assert brief(entries) == [
        ("c1:funding", BTC, FUNDING, Decimal("-0.25")),
        ("c2:fee", BTC, FEE, Decimal("-0.01")),
        ("c2:pnl", BTC, PNL, Decimal("-3")),
    ]


# --- Bitget v2: /api/v2/mix/account/bill ---------------------------------------------------------
def bill(bill_id: str, business: str, amount: str, fee: str, ms: int,
         symbol: str = "BTCUSDT", coin: str = "USDT") -> dict[str, Any]:
    return {"billId": bill_id, "symbol": symbol, "amount": amount, "fee": fee,
            "feeByCoupon": "", "businessType": business, "coin": coin, "balance": "1000",
            "cTime": str(ms)}


def bills(rows: list[dict[str, Any]], end_id: str | None = None) -> dict[str, Any]:
    return p.bitget_ok({"bills": rows, "endId": end_id})


async def test_bitget_bills_map_trades_fees_and_funding(bitget: Harness) -> None:
    bitget.http.route("GET", BILLS, bills([  # newest first, as Bitget answers
        bill("9", "trans_from_exchange", "500", "0", ms_ago(1), symbol=""),  # not PnL
        bill("8", "sell", "2.5", "-0.03", ms_ago(2)),  # one-way mode close
        bill("7", "close_long", "4", "-0.1", ms_ago(3)),
        bill("6", "contract_settle_fee", "-0.3", "0", ms_ago(4), symbol="ETHUSDT"),
        bill("5", "contract_settle_fee", "0.05", "0", ms_ago(5)),
        bill("4", "open_short", "0", "-0.2", ms_ago(6)),
        bill("3", "close_short", "1", "-0.1", ms_ago(7), coin="USDC"),  # other margin coin
    ], end_id="3"))
    mark = bitget.mark()

    entries = await bitget.venue.fetch_ledger(NOW - timedelta(days=1))

    (request,) = bitget.since(mark)
    assert (request.method, request.path) == ("GET", BILLS)
    assert request.query == {"productType": "USDT-FUTURES", "startTime": str(p.NOW_MS - DAY_MS),
                             "endTime": str(p.NOW_MS), "limit": "100"}
    assert brief(entries) == [  # oldest first
        ("4:fee", BTC, FEE, Decimal("-0.2")),
        ("5:funding", BTC, FUNDING, Decimal("0.05")),
        ("6:funding", ETH, FUNDING, Decimal("-0.3")),
        ("7:fee", BTC, FEE, Decimal("-0.1")),
        ("7:pnl", BTC, PNL, Decimal("4")),
        ("8:fee", BTC, FEE, Decimal("-0.03")),
        ("8:pnl", BTC, PNL, Decimal("2.5")),
    ]


async def test_bitget_pages_back_by_end_id_within_30_day_windows(bitget: Harness) -> None:
    full = [bill(str(1000 - i), "open_long", "0", "-0.01", ms_ago(1) - i) for i in range(100)]

    def answer(request: Request) -> dict[str, Any]:
        if int(request.query["startTime"]) < ms_ago(24):  # the older window
            return bills([bill("1", "close_long", "5", "-0.1", ms_ago(30 * 24 + 12))], "1")
        if "idLessThan" not in request.query:
            return bills(full, end_id="901")
        return bills([bill("900", "close_long", "2", "-0.1", ms_ago(3))], end_id="900")

    bitget.http.route("GET", BILLS, answer)
    entries = await bitget.venue.fetch_ledger(NOW - timedelta(days=31))

    sent = bitget.http.sent("GET", BILLS)
    spans = [(int(r.query["startTime"]), int(r.query["endTime"])) for r in sent]
    assert all(end - start <= 30 * DAY_MS for start, end in spans)
    assert spans[0][0] == ms_ago(31 * 24) and spans[-1][1] == p.NOW_MS
    assert [r.query.get("idLessThan") for r in sent] == [None, None, "901"]
    assert len(entries) == 100 + 2 * 2


# --- every venue ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VENUES)
async def test_bad_keys_on_the_ledger_are_an_operator_error_without_secrets(name: str) -> None:
    harness = await build(name)
    status, body = p.auth_failure(name)
    harness.http.route("GET", LEDGER_PATHS[name], Reply(status, body))
    try:
        with pytest.raises(OperatorError) as caught:
            await harness.venue.fetch_ledger(NOW - timedelta(hours=1))
    finally:
        await harness.venue.close()
    assert all(secret not in str(caught.value) for secret in harness.secrets)


@pytest.mark.parametrize("name", VENUES)
async def test_an_empty_ledger_is_empty(name: str) -> None:
    harness = await build(name)
    empty: Any = {"binance": [], "bybit": log_page([]), "bitget": bills([])}[name]
    harness.http.route("GET", LEDGER_PATHS[name], empty)
    try:
        assert await harness.venue.fetch_ledger(NOW - timedelta(hours=1)) == []
    finally:
        await harness.venue.close()


async def test_a_ledger_asked_for_before_start_still_names_symbols() -> None:
    harness = await build("binance", start=False)  # the sync may run before start() is done
    harness.http.route("GET", INCOME, [income(1, "REALIZED_PNL", "2", ms_ago(1))])
    try:
        [entry] = await harness.venue.fetch_ledger(NOW - timedelta(hours=2))
    finally:
        await harness.venue.close()
    assert entry.symbol == BTC
    assert [r.path for r in harness.http.requests] == ["/fapi/v1/exchangeInfo", INCOME]
