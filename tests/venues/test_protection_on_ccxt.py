"""The protection engine, unchanged, on the real ccxt venue classes with canned venue JSON.

A position the venue shows without a stop gets exactly one stop-loss request with the venue's
own endpoint and parameters; once the venue lists that stop, the next reconcile sends nothing.
When the venue says the stop would trigger at once, the guard closes reduce-only instead."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot import render
from bot.i18n import build_i18n
from engine.bus import EventBus
from engine.domain import events as ev
from engine.domain.ids import OrderPurpose, client_order_id
from engine.domain.values import PositionSide
from engine.metrics import Metrics
from engine.protection.guard import AccountGuard
from engine.protection.policy import FixedDistancePricer, ProtectionPolicy
from engine.results import AccountStatus, EngineStatus, StreamHealth
from storage.db import Database
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo
from tests.venues import payloads as p
from tests.venues.conftest import VENUES, Account, Harness, Reply, Request, build

BTC = "BTC/USDT:USDT"
T = TypeVar("T")
QTY = "0.5"
ENTRY = "65001.37"  # 2 % off this is not on the 0.1 tick: the rounding direction shows
MARK = "64000"
# long: 65001.37 * 0.98 = 63701.3426 -> up to 63701.4 (tighter, never looser)
# short: 65001.37 * 1.02 = 66301.3974 -> down to 66301.3
STOP_PRICE = {PositionSide.LONG: "63701.4", PositionSide.SHORT: "66301.3"}
PLACED_ID = {"binance": "4001", "bybit": "bb-4001", "bitget": "4001"}
MARKET_CLOSE = {
    "binance": ("POST", "/fapi/v1/order"),
    "bybit": ("POST", "/v5/order/create"),
    "bitget": ("POST", "/api/v2/mix/order/place-order"),
}


# --- the venue's words ------------------------------------------------------------------------
def position_json(venue: str, side: PositionSide) -> dict[str, Any]:
    """One BTC position of 0.5, entry 65001.37, mark 64000, as the venue lists it."""
    long = side is PositionSide.LONG
    if venue == "binance":
        return p.binance_position("BTC", QTY if long else f"-{QTY}", entry=ENTRY, mark=MARK)
    if venue == "bybit":
        return {**p.bybit_position("BTC", "Buy" if long else "Sell", QTY),
                "avgPrice": ENTRY, "markPrice": MARK}
    return {**p.bitget_position("BTC", "long" if long else "short", QTY),
            "openPriceAvg": ENTRY, "markPrice": MARK}


def resting_stop_json(venue: str, side: PositionSide, client_id: str) -> dict[str, Any]:
    """The stop we placed, as the venue's listing of resting stops shows it afterwards."""
    long = side is PositionSide.LONG
    trigger = STOP_PRICE[side]
    if venue == "binance":
        return p.binance_algo_order(int(PLACED_ID[venue]), client_id, side="SELL" if long
                                    else "BUY", qty="0.500", trigger=trigger)
    if venue == "bybit":
        return p.bybit_stop_order(PLACED_ID[venue], client_id, side="Sell" if long else "Buy",
                                  qty=QTY, trigger=trigger, direction=2 if long else 1)
    return p.bitget_plan_order(PLACED_ID[venue], client_id, side="sell" if long else "buy",
                               size=QTY, trigger=trigger)


def expected_stop_request(venue: str, side: PositionSide, client_id: str) -> dict[str, Any]:
    """Exactly what the venue must receive for our stop (see VENUES.md)."""
    long = side is PositionSide.LONG
    trigger = STOP_PRICE[side]
    if venue == "binance":
        return {"symbol": "BTCUSDT", "side": "SELL" if long else "BUY", "type": "STOP_MARKET",
                "algoType": "CONDITIONAL", "quantity": QTY, "triggerPrice": trigger,
                "reduceOnly": "true", "workingType": "MARK_PRICE", "clientAlgoId": client_id}
    if venue == "bybit":
        return {"symbol": "BTCUSDT", "category": "linear", "side": "Sell" if long else "Buy",
                "orderType": "Market", "qty": QTY, "triggerPrice": trigger,
                "triggerDirection": 2 if long else 1, "triggerBy": "MarkPrice",
                "reduceOnly": True, "closeOnTrigger": True, "positionIdx": 0,
                "orderLinkId": client_id}
    return {"symbol": "BTCUSDT", "productType": "USDT-FUTURES", "marginCoin": "USDT",
            "planType": "loss_plan", "triggerType": "mark_price", "triggerPrice": trigger,
            "size": QTY, "holdSide": "buy" if long else "sell", "clientOid": client_id}


def market_close_reply(venue: str, request: Request) -> Any:
    if venue == "binance":
        # newOrderRespType=RESULT: a market order answers with its final (filled) state
        filled = request.params.get("newOrderRespType") == "RESULT"
        return {"orderId": 9001, "clientOrderId": request.params["newClientOrderId"],
                "symbol": "BTCUSDT", "status": "FILLED" if filled else "NEW", "side": "SELL",
                "type": "MARKET", "origQty": QTY, "executedQty": QTY if filled else "0",
                "avgPrice": "63990.0" if filled else "0", "positionSide": "BOTH",
                "reduceOnly": True, "updateTime": p.NOW_MS}
    if venue == "bybit":
        return p.bybit_ok({"orderId": "bb-9001", "orderLinkId": request.params["orderLinkId"]})
    return p.bitget_ok({"orderId": "9001", "clientOid": request.params["clientOid"]})


def rendered(fn: Callable[[T], str], value: T, locale: str = "en") -> str:
    """What the bot would send: the render function inside a locale's context."""
    i18n = build_i18n(locale)
    with i18n.context(), i18n.use_locale(locale):
        return fn(value)


# --- the engine, as runtime would build it ------------------------------------------------------
@dataclass
class Rig:
    harness: Harness
    guard: AccountGuard
    journal: Journal

    @property
    def account(self) -> Account:
        return self.harness.account

    def writes(self, since: int) -> list[Request]:
        """Every request that could change something on the venue."""
        return [r for r in self.harness.since(since) if r.method != "GET"]

    async def intents(self) -> list[ev.StopIntent]:
        rows = await self.journal.rows(kinds=("stop_intent",))
        return [r.event() for r in rows]  # type: ignore[misc]


class Rigs:
    """Builds rigs and closes every venue and database it opened, whatever the test did."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.closers: list[Any] = []

    async def new(self, venue: str, side: PositionSide,
                  position: dict[str, Any] | None = None, *, rate_limit: bool = False) -> Rig:
        """`rate_limit`: ccxt calls the request budget (as make_venue builds it)."""
        position = position or position_json(venue, side)
        harness = await build(venue, account=Account(positions=[position]),
                              rate_limit=rate_limit)
        self.closers.append(harness.venue.close)
        db = await Database.open(self.tmp_path / f"{venue}.sqlite3")
        self.closers.append(db.close)
        journal = Journal(db)
        guard = AccountGuard(
            f"acct-{venue}", harness.venue, bus=EventBus(journal.append),
            store=PositionRepo(db), state=StateRepo(db),
            policy=ProtectionPolicy(FixedDistancePricer(Decimal(2))), metrics=Metrics(),
            clock=harness.clock, interval_seconds=1)
        return Rig(harness, guard, journal)

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[Rigs]:
    made = Rigs(tmp_path)
    yield made
    await made.close()


# --- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", [PositionSide.LONG, PositionSide.SHORT], ids=["long", "short"])
@pytest.mark.parametrize("venue", VENUES)
async def test_a_position_without_a_stop_gets_exactly_the_right_stop_once(
        venue: str, side: PositionSide, rigs: Rigs) -> None:
    rig = await rigs.new(venue, side)
    create = p.PLACE_STOP[venue]
    rig.harness.http.route(*create, lambda r: p.placed(venue, PLACED_ID[venue],
                                                       _client_id_of(venue, r)))
    await rig.guard.load()

    mark = rig.harness.mark()
    report = await rig.guard.reconcile_now()

    (intent,) = await rig.intents()
    expected_cid = client_order_id(f"acct-{venue}", BTC, 1, OrderPurpose.STOP, 0)
    assert intent.client_id == expected_cid
    assert (intent.trigger_price, intent.qty) == (Decimal(STOP_PRICE[side]), Decimal(QTY))
    (sent,) = rig.writes(mark)
    assert (sent.method, sent.path) == create
    expected = expected_stop_request(venue, side, intent.client_id)
    if venue == "bybit":
        assert sent.body == expected
    else:
        assert {k: sent.params.get(k) for k in expected} == expected
    if venue == "binance":
        assert "closePosition" not in sent.params  # sized to the position
    assert report.unprotected_before == (BTC,) and report.unprotected_after == ()
    placed = [e for e in report.events if isinstance(e, ev.StopPlaced)]
    assert [(e.order_id, e.client_id) for e in placed] == [(PLACED_ID[venue], expected_cid)]

    # the venue now lists the stop: nothing more to do
    rig.account.stops = [resting_stop_json(venue, side, intent.client_id)]
    mark = rig.harness.mark()
    again = await rig.guard.reconcile_now()

    assert rig.writes(mark) == []
    assert again.unprotected_before == () and again.unprotected_after == ()
    assert [e.kind for e in again.events] == []
    assert len(await rig.intents()) == 1
    assert (await rig.journal.verify()).ok
    (view,) = rig.guard.positions()  # a sized stop is not marked
    assert view.stop_price == intent.trigger_price and not view.whole_position_stop
    assert "whole position" not in rendered(render.positions, [view])


# What each venue must receive for a stop that closes the whole position (see test_contract).
WHOLE_POSITION_KEYS = {"binance": {"closePosition": "true"}, "bybit": {"qty": "0"},
                       "bitget": {"planType": "pos_loss"}}


@pytest.mark.parametrize("venue", VENUES)
async def test_a_position_below_the_minimum_size_gets_one_whole_position_stop_never_resized(
        venue: str, rigs: Rigs) -> None:
    rig = await rigs.new(venue, PositionSide.LONG, p.long_position(venue, "BTC", "0.0004"))
    rig.harness.http.route(*p.PLACE_STOP[venue], lambda r: p.placed(
        venue, PLACED_ID[venue], _client_id_of(venue, r)))
    await rig.guard.load()

    mark = rig.harness.mark()
    report = await rig.guard.reconcile_now()

    (sent,) = rig.writes(mark)
    expected = WHOLE_POSITION_KEYS[venue]
    assert {k: sent.params.get(k) for k in expected} == expected
    assert report.unprotected_after == ()
    (intent,) = await rig.intents()

    # listed as resting; then the position grows past the minimum: still covered, no resize
    for qty in ("0.0004", "0.01"):
        rig.account.positions = [p.long_position(venue, "BTC", qty)]
        rig.account.stops = [p.whole_position_stop(venue, PLACED_ID[venue], intent.client_id,
                                                   trigger=str(intent.trigger_price))]
        mark = rig.harness.mark()
        again = await rig.guard.reconcile_now()
        assert rig.writes(mark) == [] and again.unprotected_after == ()
        # /positions says so: the stop closes whatever is open, it has no size of its own
        (view,) = rig.guard.positions()
        assert view.whole_position_stop and view.stop_price == intent.trigger_price
        assert rendered(render.positions, [view]).splitlines()[1].endswith(
            f"stop {render.num(intent.trigger_price)} (whole position)")
    assert len(await rig.intents()) == 1


# ccxt's cost of one guard cycle's snapshot (see tests/venues/test_budget.py)
CYCLE_WEIGHT = {"binance": 41, "bybit": 10, "bitget": 6}
LIMITS = {"binance": (2400, 60), "bybit": (50, 1), "bitget": (20, 1)}


@pytest.mark.parametrize("venue", VENUES)
async def test_status_shows_the_weight_of_a_guard_cycle_and_the_weight_used(
        venue: str, rigs: Rigs) -> None:
    rig = await rigs.new(venue, PositionSide.LONG, rate_limit=True)
    rig.harness.http.route(*p.PLACE_STOP[venue], lambda r: p.placed(
        venue, PLACED_ID[venue], _client_id_of(venue, r)))
    await rig.guard.load()
    used_at_start = rig.harness.venue.budget.stats().used  # markets, account mode

    await rig.guard.reconcile_now()  # one snapshot and the stop

    weight = rig.guard.status().weight
    assert weight is not None
    assert (weight.per_cycle, weight.limit, weight.window_seconds) == (
        CYCLE_WEIGHT[venue], *LIMITS[venue])
    stop_weight = rig.harness.venue.budget.stats().last_weight["place_stop"]
    assert stop_weight > 0  # the clock stands still: nothing left the window
    assert weight.used == used_at_start + CYCLE_WEIGHT[venue] + stop_weight

    status = EngineStatus("live", rig.harness.clock.now(), None, (AccountStatus(
        name="main", venue=venue, testnet=False, halted=None, hold=None,
        stream=StreamHealth(True, ""), amend_in_place=False, last_reconcile=None, last_error=None,
        positions=1, unprotected=0, last_time_to_protect=None, weight=weight),))
    limit, window = LIMITS[venue]
    used = render.weight(weight.used)
    assert (f"  request weight: {CYCLE_WEIGHT[venue]} per guard cycle · {used} of {limit} used"
            f" per {window} s") in rendered(render.status, status).splitlines()
    assert (f"  вес запросов: {CYCLE_WEIGHT[venue]} за цикл проверки · израсходовано {used} из "
            f"{limit} за {window} с") in rendered(render.status, status, "ru").splitlines()


async def test_a_venue_without_a_budget_shows_no_weight(tmp_path: Path) -> None:
    from engine.clock import ManualClock
    from engine.sim.exchange import SimExchange
    from engine.sim.venue import SimVenue

    clock = ManualClock()
    db = await Database.open(tmp_path / "sim.sqlite3")
    try:
        guard = AccountGuard(
            "paper", SimVenue(SimExchange(clock), clock), bus=EventBus(Journal(db).append),
            store=PositionRepo(db), state=StateRepo(db),
            policy=ProtectionPolicy(FixedDistancePricer(Decimal(2))), metrics=Metrics(),
            clock=clock, interval_seconds=1)
        assert guard.status().weight is None
    finally:
        await db.close()


WOULD_TRIGGER_CODE = {"binance": "-2021", "bybit": "110092", "bitget": "40917"}
async def crossed_rig(rigs: Rigs, venue: str) -> Rig:
    """The venue rejects our stop as "would trigger immediately" and takes market closes."""
    rig = await rigs.new(venue, PositionSide.LONG)
    status, body = p.would_trigger(venue, WOULD_TRIGGER_CODE[venue])
    create, close = p.PLACE_STOP[venue], MARKET_CLOSE[venue]

    def answer_create(request: Request) -> Any:
        if venue == "bybit" and "triggerPrice" not in request.body:
            return market_close_reply(venue, request)  # Bybit: one endpoint for both
        return Reply(status, body)

    rig.harness.http.route(*create, answer_create)
    if close != create:
        rig.harness.http.route(*close, lambda r: market_close_reply(venue, r))
    await rig.guard.load()
    return rig


def expected_close_request(venue: str, client_id: str) -> dict[str, Any]:
    if venue == "binance":
        return {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": QTY,
                "reduceOnly": "true", "newClientOrderId": client_id,
                "newOrderRespType": "RESULT"}  # the answer carries the fill
    if venue == "bybit":
        return {"symbol": "BTCUSDT", "category": "linear", "side": "Sell",
                "orderType": "Market", "qty": QTY, "reduceOnly": True, "orderLinkId": client_id}
    return {"symbol": "BTCUSDT", "productType": "USDT-FUTURES", "marginMode": "crossed",
            "marginCoin": "USDT", "side": "sell", "orderType": "market", "size": QTY,
            "reduceOnly": "YES", "clientOid": client_id}


@pytest.mark.parametrize("venue", VENUES)
async def test_would_trigger_immediately_falls_back_to_a_reduce_only_market_close(
        venue: str, rigs: Rigs) -> None:
    rig = await crossed_rig(rigs, venue)

    mark = rig.harness.mark()
    report = await rig.guard.reconcile_now()

    stop_cid = client_order_id(f"acct-{venue}", BTC, 1, OrderPurpose.STOP, 0)
    close_cid = client_order_id(f"acct-{venue}", BTC, 1, OrderPurpose.CLOSE, 0)
    first, second = rig.writes(mark)[:2]
    assert (first.method, first.path) == p.PLACE_STOP[venue]
    assert _client_id_of(venue, first) == stop_cid
    assert (second.method, second.path) == MARKET_CLOSE[venue]
    expected = expected_close_request(venue, close_cid)
    if venue == "bybit":
        assert second.body == expected  # a plain market order: no trigger of any kind
    else:
        assert {k: second.params.get(k) for k in expected} == expected
        assert not {"stopPrice", "triggerPrice", "stopLossPrice"} & set(second.params)

    kinds = [e.kind for e in report.events]
    assert kinds[:6] == ["position_adopted", "stop_missing", "stop_intent", "stop_crossed",
                         "close_intent", "close_submitted"]
    assert "stop_placed" not in kinds and "stop_rejected" not in kinds
    crossed = next(e for e in report.events if isinstance(e, ev.StopCrossed))
    assert (crossed.action, crossed.stop_price, crossed.mark_price) == (
        "close", Decimal(STOP_PRICE[PositionSide.LONG]), Decimal(MARK))
    intent = next(e for e in report.events if isinstance(e, ev.CloseIntent))
    assert (intent.client_id, intent.qty, intent.reason) == (close_cid, Decimal(QTY),
                                                             "stop_crossed")
    assert (await rig.journal.verify()).ok


@pytest.mark.parametrize("venue", [
    "binance",  # the fill is known at once: ccxt asks Binance for newOrderRespType=RESULT
    "bybit",  # answers a create with ids only: the fill is not known when the close returns
    "bitget",
])
async def test_a_crossed_position_is_closed_exactly_once(
        venue: str, rigs: Rigs) -> None:
    rig = await crossed_rig(rigs, venue)

    mark = rig.harness.mark()
    await rig.guard.reconcile_now()

    writes = [(r.method, r.path, r.params.get("triggerPrice")) for r in rig.writes(mark)]
    closes = [r for r in rig.writes(mark) if (r.method, r.path) == MARKET_CLOSE[venue]
              and "triggerPrice" not in r.params]
    assert len(closes) == 1, f"{len(closes)} market closes sent: {writes}"

    # the venue now shows the position flat: the guard records it and sends nothing more
    rig.account.positions = []
    mark = rig.harness.mark()
    after = await rig.guard.reconcile_now()

    assert rig.writes(mark) == []
    assert [e.kind for e in after.events] in ([], ["position_closed"])
    closed = await rig.journal.rows(kinds=("position_closed",))
    assert len(closed) == 1


def _client_id_of(venue: str, request: Request) -> str:
    key = {"binance": "clientAlgoId", "bybit": "orderLinkId", "bitget": "clientOid"}[venue]
    return str(request.params[key])
