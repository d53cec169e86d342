"""Limit entries on the simulated exchange (real SQLite journal): each fill is protected as it is
seen, the stop follows further fills, and at the timeout the unfilled rest is cancelled and gone
from the venue, leaving a stop sized to the final fill, or nothing at all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal as D

import pytest

from bot import render
from bot.i18n import build_i18n
from engine.control import CloseStatus, CloseTarget, ControlService
from engine.domain import events as ev
from engine.domain.reports import OrderKind, OrderStatus
from engine.domain.values import PositionSide
from engine.entries.gates import RiskLimits
from engine.entries.model import (
    Amount,
    EntryRefused,
    EntryRequest,
    EntryResult,
    EntrySource,
    EntryStatus,
    PriceKind,
    PriceSpec,
    Refusal,
    SizeKind,
    request_from_json,
    request_to_json,
)
from engine.entries.service import EntryService
from engine.errors import Rejected, RejectReason
from storage.repositories import StateRepo
from tests.engine.conftest import (
    ACCOUNT,
    BTC,
    Rig,
    SpyRigFactory,
    SpyVenue,
    StopWatch,
    drive,
    eventually,
)

LIMIT = D(64000)  # under the 65,000 mark: a buy rests


def service(rig: Rig, timeout: float = 5.0) -> EntryService:
    return EntryService({ACCOUNT: rig.guard}, limits=RiskLimits(limit_timeout_seconds=timeout),
                        state=rig.guard.state, bus=rig.guard.bus, clock=rig.clock,
                        hold_of=lambda account: None)


def limit_long(key: str = "L1", price: D = LIMIT, qty: str = "0.007") -> EntryRequest:
    return EntryRequest(ACCOUNT, "BTCUSDT", PositionSide.LONG, Amount(SizeKind.QTY, D(qty)),
                        PriceSpec(PriceKind.PERCENT, D(2)), key, EntrySource.WEBHOOK,
                        limit_price=price)


def control_of(rig: Rig) -> ControlService:
    """The bot's door over the rig's guard; a limit rests up to 600 s (no test waits for it)."""
    return ControlService({ACCOUNT: rig.guard}, venues_testnet={}, state=StateRepo(rig.db),
                          bus=rig.guard.bus, clock=rig.clock, mode="paper",
                          limits=RiskLimits(limit_timeout_seconds=600))


async def resting_entry(rig: Rig, control: ControlService) -> asyncio.Future[EntryResult]:
    """A limit long opened through `control`, running until its limit rests on the venue."""
    entry = asyncio.ensure_future(control.open(limit_long()))
    await eventually(lambda: any(o.kind is OrderKind.LIMIT for o in rig.exchange.orders.values()))
    return entry


def entry_order(rig: Rig):  # type: ignore[no-untyped-def]
    [order] = [o for o in rig.exchange.orders.values() if o.kind is OrderKind.LIMIT]
    return order


def fills_at(rig: Rig, spy: SpyVenue, plan: dict[int, D | None],
             then: Callable[[str, int], None] | None = None) -> None:
    """Fill the resting limit by `plan[n]` (None: the rest) before the n-th look-up of it;
    `then(method, looks so far)` runs before every call after that (to crash or refuse)."""
    looks = [0]

    async def hook(method: str, arg: object) -> None:
        if method == "find_order":
            looks[0] += 1
            if looks[0] in plan:
                rig.exchange.fill_limit(entry_order(rig).order_id, plan[looks[0]])
        if then is not None:
            then(method, looks[0])
    spy.before = hook


async def test_partial_fills_are_protected_and_the_rest_cancelled_at_the_timeout(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    fills_at(rig, spy, {2: D("0.003"), 5: D("0.002")})
    result = await drive(rig.clock, service(rig).open(limit_long()))
    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.005")
    order = entry_order(rig)  # the rest is gone from the venue, its fills kept
    assert order.status is OrderStatus.CANCELLED and order.filled == D("0.005")
    assert order.price == LIMIT and rig.exchange.open_orders(BTC) == rig.stops(BTC)
    (stop,) = rig.stops(BTC)  # one stop, sized to the final fill, 2 % under the limit
    assert stop.qty == D("0.005") == rig.exchange.positions[BTC].qty
    assert stop.trigger_price == D("62720.0")
    assert rig.exchange.positions[BTC].entry_price == LIMIT  # filled as a maker, at the limit
    # the first fill waited at most one look-up for its stop; never naked after that
    assert result.time_to_protect is not None and result.time_to_protect <= D("0.1")
    # the stop followed the second fill in place (never unprotected), then the rest went
    assert spy.commands() == ["market_order", "place_stop", "amend_stop", "cancel_order"]
    kinds = await rig.kinds()
    assert kinds.index("entry_intent") < kinds.index("entry_filled") < kinds.index(
        "stop_intent") < kinds.index("cancel_intent") < kinds.index("entry_protected")
    steps = [r["step"] for r in await rig.rows("entry_rollback_step")]
    assert steps == ["limit_cancelled"]
    assert rig.guard.supervisors[BTC].protected  # handed to the supervisor, stop adopted


async def test_an_unfilled_limit_ends_flat_with_nothing_left(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    result = await drive(rig.clock, service(rig, timeout=3).open(limit_long()))
    assert result.status is EntryStatus.NOT_FILLED and "timeout" in result.detail
    assert entry_order(rig).status is OrderStatus.CANCELLED
    assert rig.exchange.positions == {} and rig.exchange.open_orders() == []
    assert "place_stop" not in spy.commands()
    assert spy.commands() == ["market_order", "cancel_order"]


async def test_the_mark_reaching_the_limit_fills_it_all_before_the_timeout(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    async def hook(method: str, arg: object) -> None:
        if method == "find_order":
            rig.exchange.set_mark(BTC, D(63990))
    spy.before = hook
    result = await drive(rig.clock, service(rig).open(limit_long()))
    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.007")
    assert entry_order(rig).status is OrderStatus.FILLED
    assert "cancel_order" not in spy.commands()
    assert [s.qty for s in rig.stops(BTC)] == [D("0.007")]


async def test_a_limit_through_the_mark_fills_at_once_like_a_market_entry(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    result = await drive(rig.clock, service(rig).open(limit_long(price=D(66000))))
    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.007")
    assert spy.commands() == ["market_order", "place_stop"]
    assert [s.trigger_price for s in rig.stops(BTC)] == [D("64680.0")]  # 2 % under 66,000


async def test_attached_stop_rides_in_with_the_first_fill(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(attached_stop=True)
    watch = StopWatch.attach(rig.exchange, rig.clock)
    fills_at(rig, spy, {2: D("0.004")})
    assert rig.stops(BTC) == []
    result = await drive(rig.clock, service(rig).open(limit_long()))
    watch.drain()
    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.004")
    assert result.time_to_protect == 0 and watch.gaps == []
    (stop,) = rig.stops(BTC)
    assert stop.whole_position and stop.trigger_price == D("62720.0")
    assert "place_stop" not in spy.commands()


async def test_an_unfilled_attached_limit_leaves_no_stop(spy_rig: SpyRigFactory) -> None:
    rig, _ = await spy_rig(attached_stop=True)
    result = await drive(rig.clock, service(rig, timeout=2).open(limit_long()))
    assert result.status is EntryStatus.NOT_FILLED
    assert rig.exchange.open_orders() == [] and rig.exchange.positions == {}


async def test_a_crash_while_the_limit_rests_resumes_and_never_resends(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()

    class Crash(BaseException):
        pass

    def crash(method: str, looks: int) -> None:
        if method == "find_order" and looks == 4:
            raise Crash  # after the first fill's stop rested
    fills_at(rig, spy, {2: D("0.003")}, crash)
    with pytest.raises(Crash):
        await drive(rig.clock, service(rig).open(limit_long()))
    assert [s.qty for s in rig.stops(BTC)] == [D("0.003")]
    assert entry_order(rig).is_resting
    again, spy2 = await spy_rig(exchange=rig.exchange)  # same DB file, same exchange
    fills_at(again, spy2, {3: D("0.001")})
    resumed = await drive(again.clock, service(again).resume())
    assert [r.status for r in resumed] == [EntryStatus.PROTECTED]
    assert resumed[0].filled_qty == D("0.004")
    assert "market_order" not in spy2.commands()  # never a second entry
    assert entry_order(again).status is OrderStatus.CANCELLED
    assert [s.qty for s in again.stops(BTC)] == [D("0.004")]


async def test_a_first_fill_that_cannot_be_protected_cancels_the_rest_and_rolls_back(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    def refuse(method: str, looks: int) -> None:
        if method == "place_stop":
            raise Rejected(RejectReason.INVALID_ORDER, "no")
    fills_at(rig, spy, {1: D("0.003")}, refuse)
    result = await drive(rig.clock, service(rig).open(limit_long()))
    assert result.status is EntryStatus.ROLLED_BACK and result.filled_qty == D("0.003")
    assert entry_order(rig).status is OrderStatus.CANCELLED
    assert rig.exchange.positions == {} and rig.exchange.open_orders() == []


async def test_a_limit_request_is_sized_from_its_price_and_kept_through_an_approval(
        spy_rig: SpyRigFactory) -> None:
    rig, _ = await spy_rig()
    request = EntryRequest(ACCOUNT, "BTCUSDT", PositionSide.LONG,
                           Amount(SizeKind.NOTIONAL, D(640)), PriceSpec(PriceKind.PERCENT, D(2)),
                           "L9", EntrySource.TELEGRAM, limit_price=LIMIT)
    plan = await drive(rig.clock, service(rig).preview(request))
    assert (plan.qty, plan.limit_price, plan.stop_price) == (D("0.01"), LIMIT, D("62720.0"))
    assert plan.risk == D("12.800") and plan.limit_timeout == 5.0
    assert request_from_json(request_to_json(request)) == request
    with pytest.raises(EntryRefused) as caught:  # a stop above a long's limit
        await drive(rig.clock, service(rig).preview(EntryRequest(
            ACCOUNT, "BTCUSDT", PositionSide.LONG, Amount(SizeKind.QTY, D("0.01")),
            PriceSpec(PriceKind.PRICE, D(64500)), "L10", EntrySource.TELEGRAM,
            limit_price=LIMIT)))
    assert caught.value.reason is Refusal.STOP_WRONG_SIDE and "limit" in caught.value.detail


async def test_without_amend_in_place_the_new_stop_rests_before_the_old_goes(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(amend_in_place=False)
    fills_at(rig, spy, {2: D("0.003"), 5: D("0.002")})
    result = await drive(rig.clock, service(rig).open(limit_long()))
    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.005")
    assert spy.commands() == ["market_order", "place_stop", "place_stop", "cancel_order",
                              "cancel_order"]
    ended = {o.kind: o.status for o in rig.exchange.orders.values()}
    assert ended[OrderKind.LIMIT] is OrderStatus.CANCELLED  # the rest, at the timeout
    assert [s.qty for s in rig.stops(BTC)] == [D("0.005")]


async def test_a_streamed_fill_is_protected_before_the_next_venue_look(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig(streaming=True)
    run = asyncio.create_task(rig.guard.run())  # the stream feeds the view

    async def book_trades() -> None:
        await rig.clock.sleep(0.1)  # between the send and the first look-up (0.5 s)
        rig.exchange.fill_limit(entry_order(rig).order_id, D("0.004"))
    filler = asyncio.create_task(book_trades())
    try:
        result = await drive(rig.clock, service(rig).open(limit_long()), step=0.02)
    finally:
        run.cancel()
        await rig.guard.stop()
        await asyncio.gather(run, filler, return_exceptions=True)
    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.004")
    calls = [m for m, _ in spy.log if m in ("place_stop", "find_order")]
    assert calls[0] == "place_stop"  # the stream's news, not a look-up, placed the stop
    assert result.time_to_protect is not None and result.time_to_protect <= D("0.1")
    assert [s.qty for s in rig.stops(BTC)] == [D("0.004")]


def halt_at_look(rig: Rig, spy: SpyVenue, look: int, fills: dict[int, D | None]) -> list[str]:
    """Fill the limit by `fills`, and HALT the account (as guard.halt sets it) at its `look`-th
    look-up; returns the commands sent from the HALT on."""
    after: list[str] = []

    def halt_then(method: str, looks: int) -> None:
        if rig.guard.halted and method not in ("snapshot", "find_order"):
            after.append(method)
        if method == "find_order" and looks == look:
            rig.guard.flags.halted = "bad keys"
    fills_at(rig, spy, fills, halt_then)
    return after


async def test_halt_while_the_limit_rests_cancels_the_rest_and_sends_nothing_else(
        spy_rig: SpyRigFactory) -> None:
    """HALT sends no command, but the limit entry's cancel of its own unfilled rest: left
    resting, it would fill unprotected until /resume. What filled before keeps its stop; no new
    stop or close goes; a resume ends the entry."""
    rig, spy = await spy_rig()
    entries = service(rig, timeout=600)
    after = halt_at_look(rig, spy, 2, {1: D("0.003")})
    result = await drive(rig.clock, entries.open(limit_long()), limit=10)
    assert result.status is EntryStatus.PENDING and "halted" in result.detail
    order = entry_order(rig)  # cancelled at once, not at the 600 s timeout
    assert order.status is OrderStatus.CANCELLED and order.filled == D("0.003")
    assert after == ["cancel_order"]  # the one command sent on HALT
    assert [r["reason"] for r in await rig.rows("cancel_intent")] == ["entry_halt"]
    assert [s.qty for s in rig.stops(BTC)] == [D("0.003")]  # what filled before is protected
    spy.before = None
    await rig.guard.unhalt()
    [resumed] = await drive(rig.clock, entries.resume())
    assert resumed.status is EntryStatus.PROTECTED and resumed.filled_qty == D("0.003")
    assert spy.commands().count("market_order") == 1


async def test_halt_before_any_fill_cancels_the_rest_and_ends_the_entry_flat(
        spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    after = halt_at_look(rig, spy, 1, {})
    result = await drive(rig.clock, service(rig, timeout=600).open(limit_long()), limit=10)
    assert result.status is EntryStatus.NOT_FILLED and "HALT" in result.detail
    assert entry_order(rig).status is OrderStatus.CANCELLED
    assert after == ["cancel_order"]
    assert rig.exchange.positions == {} and rig.exchange.open_orders() == []
    assert await rig.rows("entry_rest_left") == []


async def test_halt_with_the_rests_cancel_refused_names_the_order_and_sends_nothing_else(
        spy_rig: SpyRigFactory) -> None:
    """The venue refuses the cancel: the order still rests, so the critical alert names it (a
    person cancels it on the venue); nothing else is sent, the entry waits for /resume."""
    rig, spy = await spy_rig()
    after = halt_at_look(rig, spy, 2, {1: D("0.003")})
    hook = spy.before
    assert hook is not None

    async def refuse_cancels(method: str, arg: object) -> None:
        await hook(method, arg)
        if method == "cancel_order":
            raise Rejected(RejectReason.INVALID_ORDER, "cancel refused")
    spy.before = refuse_cancels
    result = await drive(rig.clock, service(rig, timeout=600).open(limit_long()), limit=10)
    assert result.status is EntryStatus.PENDING and "still rests" in result.detail
    order = entry_order(rig)
    assert order.is_resting and order.filled == D("0.003")
    assert after == ["cancel_order"]  # tried once; no stop, no close
    [left] = await rig.rows("entry_rest_left")
    assert left["order_id"] == order.order_id and D(left["qty"]) == D("0.004")
    assert D(left["price"]) == LIMIT and "cancel refused" in left["reason"]
    assert [s.qty for s in rig.stops(BTC)] == [D("0.003")]
    [event] = [e for e in rig.events if isinstance(e, ev.EntryRestLeft)]
    for lang, words in (("en", "Cancel it on the venue"), ("ru", "Отмените его на бирже")):
        i18n = build_i18n(lang)
        with i18n.context(), i18n.use_locale(lang):
            alert = render.event(event) or ""
        assert words in alert and order.order_id in alert and "0.004 @ 64000" in alert


async def test_a_close_while_the_limit_rests_cancels_the_rest_and_closes_at_once(
        spy_rig: SpyRigFactory) -> None:
    """/close of a symbol whose limit entry rests (it holds the symbol's writer lock): the rest
    is cancelled now and seen gone, what filled is protected and handed over, then the close
    runs; nobody waits for the 600 s timeout."""
    rig, spy = await spy_rig()
    control = control_of(rig)
    fills_at(rig, spy, {2: D("0.003")})
    entry = asyncio.ensure_future(control.open(limit_long()))
    while not rig.stops(BTC):  # the first fill is protected while the rest still rests
        await asyncio.sleep(0.001)
        await rig.clock.advance(0.05)
    assert entry_order(rig).is_resting and not entry.done()
    start = rig.clock.monotonic()
    # what the Confirm approved: the filled part (the guard's view lists it; generation None:
    # not adopted yet while the entry holds the symbol)
    target = CloseTarget(ACCOUNT, BTC, PositionSide.LONG, D("0.003"), D(65000), D(0))
    [outcome] = await drive(rig.clock, control.close([target], "a"), limit=10)
    result = await drive(rig.clock, entry, limit=1)
    assert rig.clock.monotonic() - start < 5  # at once, not at the limit's timeout

    assert result.status is EntryStatus.PROTECTED and result.filled_qty == D("0.003")
    order = entry_order(rig)  # the rest is gone from the venue, its fill kept
    assert order.status is OrderStatus.CANCELLED and order.filled == D("0.003")
    cancels = await rig.rows("cancel_intent")
    assert cancels[0]["reason"] == "entry_cut"
    assert outcome.entry_cut and outcome.status is CloseStatus.CLOSED
    assert outcome.qty == D("0.003")
    assert BTC not in rig.exchange.positions and rig.exchange.open_orders() == []
    kinds = await rig.kinds()
    assert kinds.index("entry_protected") < kinds.index("close_intent") < kinds.index(
        "position_closed")


async def test_cancel_all_of_a_resting_limit_entry_does_not_wait_for_its_timeout(
        spy_rig: SpyRigFactory) -> None:
    """/cancel_all lists our resting limit entry; its cancel went through the symbol's writer,
    which the entry holds until its timeout. Now the entry cancels its own rest at once."""
    rig, _ = await spy_rig()
    control = control_of(rig)
    entry = await resting_entry(rig, control)
    assert control.entries.cut_short(ACCOUNT, "ETH/USDT:USDT") is False  # nothing rests there
    start = rig.clock.monotonic()
    targets = await control.cancel_targets()
    assert [t.order_id for t in targets] == [entry_order(rig).order_id]
    [outcome] = await drive(rig.clock, control.cancel(targets, "a"), limit=10)
    result = await drive(rig.clock, entry, limit=1)
    assert rig.clock.monotonic() - start < 5
    assert outcome.cancelled  # the entry cancelled it, verified gone: said as "cancelled"
    assert result.status is EntryStatus.NOT_FILLED and "/cancel_all" in result.detail
    assert entry_order(rig).status is OrderStatus.CANCELLED
    # the entry's own cancel first; /cancel_all's, under the lock after it, finds it gone
    assert [r["reason"] for r in await rig.rows("cancel_intent")] == ["entry_cut", "cancel_all"]
    assert rig.exchange.positions == {} and rig.exchange.open_orders() == []


async def test_a_close_while_the_limit_rests_unfilled_cancels_it_instead_of_no_position(
        spy_rig: SpyRigFactory) -> None:
    """/close SYMBOL (and /close_all) with nothing filled yet: there is no position to close,
    but the trader wants out. The resting entry cancels its rest now (verified gone) and ends
    as not filled; before, it was "no open position" and the limit kept resting (and could
    fill a moment later). A symbol being closed anyway is left to its close (`skip`)."""
    rig, spy = await spy_rig()
    control = control_of(rig)
    entry = await resting_entry(rig, control)
    assert control.close_targets("BTCUSDT") == []  # nothing filled: no position to close
    assert control.entries.resting() == [(ACCOUNT, BTC)]
    assert await control.cancel_resting_entries(None, skip=frozenset({(ACCOUNT, BTC)})) == []
    assert await control.cancel_resting_entries("ETHUSDT") == []
    assert entry_order(rig).is_resting
    start = rig.clock.monotonic()
    [result] = await drive(rig.clock, control.cancel_resting_entries("BTCUSDT"), limit=10)
    assert rig.clock.monotonic() - start < 5  # at once, not at the limit's timeout
    assert result.status is EntryStatus.NOT_FILLED and result.filled_qty == 0
    assert (await drive(rig.clock, entry, limit=1)).status is EntryStatus.NOT_FILLED
    assert entry_order(rig).status is OrderStatus.CANCELLED
    assert [r["reason"] for r in await rig.rows("cancel_intent")] == ["entry_cut"]
    assert spy.commands() == ["market_order", "cancel_order"]  # no stop, no close
    assert rig.exchange.positions == {} and rig.exchange.open_orders() == []
    assert control.entries.resting() == []
    assert await control.cancel_resting_entries(None) == []  # nothing runs any more


async def test_a_close_before_the_limit_is_sent_sends_nothing(spy_rig: SpyRigFactory) -> None:
    """The entry waits for the symbol's writer (another writer holds it) when the close comes:
    it never sends the limit it would cancel at once."""
    rig, spy = await spy_rig()
    control = control_of(rig)
    async with rig.guard.orders.writer(BTC):
        entry = asyncio.ensure_future(control.open(limit_long()))
        await eventually(lambda: control.entries.resting() == [(ACCOUNT, BTC)])
        cut = asyncio.ensure_future(control.cancel_resting_entries("BTCUSDT"))
        await asyncio.sleep(0.01)
        assert not cut.done()  # it waits for the entry to let go of the symbol
    [result] = await drive(rig.clock, cut, limit=5)
    assert result.status is EntryStatus.NOT_FILLED and "nothing was sent" in result.detail
    assert (await drive(rig.clock, entry, limit=1)).status is EntryStatus.NOT_FILLED
    assert spy.commands() == [] and rig.exchange.orders == {}


