"""Approvals end to end: real aiogram over real HTTP, the fake Bot API, the simulated venue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.approvals import ApprovalCallback
from engine.clock import ManualClock
from engine.control import HoldKind
from engine.domain.reports import (
    OrderKind,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    VenueEvent,
)
from engine.domain.values import OrderSide
from tests.bot.conftest import ADMIN, STRANGER, TRADER, VIEWER, Running, running
from tests.fakes import FakeBotAPI, SentCall

ADMIN2 = 101
ETH = "ETH/USDT:USDT"
BTC = "BTC/USDT:USDT"


@pytest.fixture
async def clocked(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[Running, ManualClock]]:
    monkeypatch.chdir(tmp_path)
    clock = ManualClock()
    async with running(api, tmp_path / "data", clock=clock) as r:
        await _protected(r)
        yield r, clock


async def _protected(r: Running) -> None:
    """Wait until the demo's missing stop was placed (the first reconcile is done)."""
    await r.api.wait_for("sendMessage", lambda c: "had no stop; placed at" in (c.text or ""))


def sim(r: Running):
    assert r.runtime.engine is not None
    return r.runtime.engine.sims["paper"]


async def ask(r: Running, user: int, text: str, chat: int | None = None) -> tuple[str, int]:
    """Send a command that needs approval; return (approval id, message id) of the prompt."""
    before = len(r.api.sent("sendMessage"))
    r.api.push_message(user, text, chat_id=chat)
    calls = await r.api.wait_for(
        "sendMessage", lambda c: c.params.get("reply_markup") is not None, count=1 + sum(
            1 for c in r.api.sent("sendMessage")[:before] if c.params.get("reply_markup")))
    prompt = calls[-1]
    button = prompt.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    return ApprovalCallback.unpack(button).id, prompt.response["result"]["message_id"]


def tap(r: Running, user: int, approval_id: str, message_id: int, yes: bool = True,
        chat: int | None = None) -> str:
    return r.api.push_callback(user, ApprovalCallback(id=approval_id, yes=yes).pack(),
                               message_id=message_id, chat_id=chat)


async def answer(r: Running, query_id: str) -> SentCall:
    [call] = await r.api.wait_for(
        "answerCallbackQuery", lambda c: c.params.get("callback_query_id") == query_id)
    return call


async def edited(r: Running, message_id: int, contains: str) -> SentCall:
    calls = await r.api.wait_for(
        "editMessageText",
        lambda c: c.params.get("message_id") == message_id and contains in (c.text or ""))
    return calls[-1]


async def advance_until(r: Running, clock: ManualClock, match: Callable[[SentCall], bool],
                        seconds: float) -> None:
    """Move the clock, then nudge it a second at a time until the expected edit was sent
    (the expiry loop does database I/O between its clock sleeps)."""
    await clock.advance(seconds)
    for _ in range(30):
        if any(match(c) for c in r.api.sent("editMessageText")):
            return
        await asyncio.sleep(0.01)  # let the database thread finish; time itself stays put
        await clock.advance(1)


async def test_close_confirmed_closes_once_and_cancels_the_stop_after_flat(
        clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    approval, message = await ask(r, TRADER, "/close ethusdt")
    prompt = r.api.messages[message]
    assert "ETH/USDT:USDT · SHORT 1.5" in prompt["text"]
    assert "Confirm within 120 s" in prompt["text"]
    assert ETH in sim(r).positions  # nothing happens before the tap
    watch = sim(r).subscribe()  # the exchange's own record of every change, in order
    resting = {o.order_id for o in sim(r).open_orders()
               if o.symbol == ETH and o.kind is OrderKind.STOP_LOSS}
    await answer(r, tap(r, TRADER, approval, message))
    final = await edited(r, message, "closed 1.5")
    assert unprotected_moments(watch, ETH, open_qty=D("1.5"), resting=resting) == 0
    assert "stop cancelled after flat" in final.text
    assert final.params.get("reply_markup") is None  # buttons gone
    assert ETH not in sim(r).positions
    closes = [o for o in sim(r).orders.values() if o.symbol == ETH and o.kind is OrderKind.MARKET
              and o.client_id is not None]
    assert len(closes) == 1
    stops = [o for o in sim(r).orders.values() if o.symbol == ETH and o.kind is OrderKind.STOP_LOSS]
    assert stops and all(o.status is OrderStatus.CANCELLED for o in stops)
    rows = await r.runtime.engine.journal.rows(kinds=("close_submitted", "stop_cancelled"))
    kinds = [row.kind for row in rows if row.payload["symbol"] == ETH]
    assert kinds == ["close_submitted", "stop_cancelled"]  # the stop went only after the fill


def unprotected_moments(queue: asyncio.Queue[VenueEvent], symbol: str, *, open_qty: D,
                        resting: set[str]) -> int:
    """Replay the exchange's events: how often was the position open with no resting stop?"""
    qty, stops, bad = open_qty, set(resting), 0
    while not queue.empty():
        match queue.get_nowait():
            case PositionUpdate(position=p, symbol=s) if s == symbol:
                qty = p.qty if p is not None else D(0)
            case OrderUpdate(order=o) if o.symbol == symbol and o.kind is OrderKind.STOP_LOSS:
                (stops.add if o.status is OrderStatus.OPEN else stops.discard)(o.order_id)
            case _:
                continue
        bad += qty > 0 and not stops
    return bad


async def test_cancel_button_does_nothing(clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    approval, message = await ask(r, TRADER, "/close BTC/USDT")
    await answer(r, tap(r, TRADER, approval, message, yes=False))
    await edited(r, message, "Cancelled by")
    assert BTC in sim(r).positions
    late = await answer(r, tap(r, TRADER, approval, message))
    assert "Already handled" in late.params["text"]
    assert BTC in sim(r).positions


async def test_expiry_removes_buttons_and_nothing_runs(
        clocked: tuple[Running, ManualClock]) -> None:
    r, clock = clocked
    approval, message = await ask(r, TRADER, "/close_all")
    await clock.advance(119)
    assert (await r.runtime.dp["approvals"].approvals.store.get(approval)).status == "pending"
    await advance_until(r, clock, lambda c: c.params.get("message_id") == message, 2)
    final = await edited(r, message, "Expired: nothing was done")
    assert final.params.get("reply_markup") is None
    reply = await answer(r, tap(r, TRADER, approval, message))
    assert "Expired" in reply.params["text"]
    assert set(sim(r).positions) == {BTC, ETH}


async def test_double_tap_executes_once(clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    approval, message = await ask(r, TRADER, "/close_all")
    first, second = tap(r, TRADER, approval, message), tap(r, TRADER, approval, message)
    answers = sorted([(await answer(r, first)).params["text"],
                      (await answer(r, second)).params["text"]])
    assert answers == ["Already handled.", "Done."]
    await edited(r, message, "Confirmed by")
    closes = [o for o in sim(r).orders.values()
              if o.kind is OrderKind.MARKET and o.client_id is not None]
    assert sorted(o.symbol for o in closes) == [BTC, ETH]  # each closed exactly once
    assert sim(r).positions == {}
    assert not [o for o in sim(r).open_orders()]  # no stop left behind


async def test_strangers_button_press_does_nothing(clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    approval, message = await ask(r, TRADER, "/close ETHUSDT")
    tap(r, STRANGER, approval, message)
    viewer_tap = tap(r, VIEWER, approval, message)  # known but not allowed to decide
    reply = await answer(r, viewer_tap)
    assert "requester or an admin" in reply.params["text"]
    assert ETH in sim(r).positions
    assert r.api.sent("editMessageText") == []
    stored = await r.runtime.dp["approvals"].approvals.store.get(approval)
    assert stored.status == "pending"


async def test_two_person_rule(api: FakeBotAPI, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with running(api, tmp_path / "data", clock=ManualClock(),
                       approvals={"two_person": True}) as r:
        await _protected(r)
        approval, message = await ask(r, ADMIN, "/close ETHUSDT")
        assert "A second admin must confirm" in r.api.messages[message]["text"]
        own = await answer(r, tap(r, ADMIN, approval, message))
        assert "second admin" in own.params["text"]
        assert ETH in sim(r).positions
        trader = await answer(r, tap(r, TRADER, approval, message))
        assert "requester or an admin" in trader.params["text"]
        assert ETH in sim(r).positions


async def test_second_admin_confirms_in_a_group(api: FakeBotAPI, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    group = -1001
    async with running(api, tmp_path / "data", clock=ManualClock(),
                       approvals={"two_person": True}) as r:
        await _protected(r)
        approval, message = await ask(r, TRADER, "/close ETHUSDT", chat=group)
        done = await answer(r, tap(r, ADMIN, approval, message, chat=group))
        assert done.params["text"] == "Done."
        await edited(r, message, "closed 1.5")
        assert ETH not in sim(r).positions


async def test_close_of_a_flat_symbol_says_so(clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    r.api.push_message(TRADER, "/close SOLUSDT")
    await r.api.wait_for("sendMessage", lambda c: "No open position on SOLUSDT" in (c.text or ""))
    r.api.push_message(TRADER, "/close")
    await r.api.wait_for("sendMessage", lambda c: "Usage: /close SYMBOL" in (c.text or ""))


async def test_an_approval_cut_off_by_a_crash_is_reported_not_rerun(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with running(api, tmp_path / "data", clock=ManualClock()) as r:
        await _protected(r)
        approval, message = await ask(r, TRADER, "/close ETHUSDT")
        repo = r.runtime.dp["approvals"].approvals.store
        assert await repo.claim(approval, ADMIN, r.runtime.clock.now())  # "crash" mid-run
    async with running(api, tmp_path / "data", clock=ManualClock()) as r:
        final = await edited(r, message, "restarted while this was running")
        assert final.params.get("reply_markup") is None
        assert (await r.runtime.dp["approvals"].approvals.store.get(approval)).status == "done"


async def test_resume_after_the_loss_cap_needs_a_confirmation(
        clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    await r.control.hold("daily loss limit 200 reached", "risk", kind=HoldKind.LOSS_CAP)
    approval, message = await ask(r, ADMIN, "/resume")
    assert "Lift the HOLD set by the daily loss limit" in r.api.messages[message]["text"]
    assert r.control.hold_state is not None  # nothing lifted before the tap
    await answer(r, tap(r, ADMIN, approval, message))
    await edited(r, message, "HOLD lifted")
    assert r.control.hold_state is None


async def test_cancel_all_cancels_other_orders_and_keeps_every_protective_stop(
        clocked: tuple[Running, ManualClock]) -> None:
    r, _ = clocked
    take_profit = sim(r).place_trigger(
        symbol=BTC, side=OrderSide.SELL, qty=D("0.05"), trigger_price=D("70000"),
        kind=OrderKind.TAKE_PROFIT, client_id=None)
    stops_before = {o.order_id for o in sim(r).open_orders() if o.kind is OrderKind.STOP_LOSS}
    assert len(stops_before) == 2
    await r.runtime.engine.guards["paper"].reconcile_now()  # the guard sees the new order
    approval, message = await ask(r, TRADER, "/cancel_all")
    prompt = r.api.messages[message]["text"]
    assert f"(id {take_profit.order_id})" in prompt
    assert not any(f"(id {sid})" in prompt for sid in stops_before)
    await answer(r, tap(r, TRADER, approval, message))
    await edited(r, message, f"{take_profit.order_id}: cancelled")
    assert sim(r).orders[take_profit.order_id].status is OrderStatus.CANCELLED
    assert {o.order_id for o in sim(r).open_orders()} == stops_before
    intents = await r.runtime.engine.journal.rows(kinds=("cancel_intent",))
    assert [row.payload["order_id"] for row in intents][-1:] == [take_profit.order_id]
