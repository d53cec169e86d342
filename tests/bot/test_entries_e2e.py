"""/long and /short end to end: real aiogram over real HTTP against the fake Bot API, the
simulated exchange behind the engine, approvals in SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from engine.domain.reports import OrderKind, OrderStatus
from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi
from tests.bot.conftest import ADMIN, TRADER, VIEWER, Running, running
from tests.bot.test_approvals_e2e import answer, ask, edited, sim, tap
from tests.fakes import FakeBotAPI

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@pytest.fixture
async def flat(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[Running]:
    monkeypatch.chdir(tmp_path)
    async with running(api, tmp_path / "data", sim={"demo_positions": False},
                       risk={"approval_notional": "1000"}) as r:
        yield r


async def reply_to(r: Running, user: int, text: str) -> str:
    """The reply in the user's own chat (alerts go to the admin's)."""
    def mine(c: object) -> bool:
        return c.params.get("chat_id") == user  # type: ignore[attr-defined]
    before = len([c for c in r.api.sent("sendMessage") if mine(c)])
    r.api.push_message(user, text)
    calls = await r.api.wait_for("sendMessage", mine, count=before + 1)
    return calls[-1].text or ""


async def test_long_with_confirm_opens_the_position_and_the_stop_rests(flat: Running) -> None:
    approval, message = await ask(flat, TRADER, "/long BTCUSDT $500 sl 2%")
    prompt = flat.api.messages[message]["text"]
    assert "Open LONG BTC/USDT:USDT on paper" in prompt
    assert "market order for 0.007" in prompt and "stop-loss 63700" in prompt
    assert "risk at the stop 9.1" in prompt and "fees ≈" in prompt
    assert sim(flat).positions == {}  # nothing before the tap
    await answer(flat, tap(flat, TRADER, approval, message))
    final = await edited(flat, message, "opened; stop 63700")
    assert "time to protect" in final.text
    position = sim(flat).positions[BTC]
    assert position.qty == D("0.007")
    stops = [o for o in sim(flat).open_orders() if o.kind is OrderKind.STOP_LOSS]
    assert [(s.trigger_price, s.qty) for s in stops] == [(D("63700.0"), D("0.007"))]
    # the alert chat hears it, with the time to protect
    await flat.api.wait_for("sendMessage", lambda c: "🟢" in (c.text or "")
                            and "via Telegram" in (c.text or ""))
    listing = await reply_to(flat, VIEWER, "/positions")
    assert "BTC/USDT:USDT · LONG 0.007" in listing and "via Telegram" in listing
    await flat.control.fix_sl()  # later passes do not take it for a stranger either
    await reply_to(flat, VIEWER, "/positions")
    assert not [c for c in flat.api.sent("sendMessage") if "found on the venue" in (c.text or "")]
    # a second tap runs nothing again
    await answer(flat, tap(flat, TRADER, approval, message))
    assert len([o for o in sim(flat).orders.values()
                if o.kind is OrderKind.MARKET and o.client_id]) == 1


async def test_long_on_hold_is_refused_with_the_reason(flat: Running) -> None:
    await flat.control.hold("maintenance", "admin")
    text = await reply_to(flat, TRADER, "/long BTCUSDT $500 sl 2%")
    assert "Refused: the account is on HOLD (maintenance)" in text
    assert sim(flat).positions == {} and sim(flat).orders == {}


async def test_bad_words_and_gates_each_say_why(flat: Running) -> None:
    assert "Usage: /long" in await reply_to(flat, TRADER, "/long BTCUSDT")
    assert "size must be a positive number, not -3" in await reply_to(
        flat, TRADER, "/short BTCUSDT -3")
    assert "wrong side" in await reply_to(flat, TRADER, "/short BTCUSDT $500 sl 60000")
    assert "unknown symbol NOPEUSDT" in await reply_to(flat, TRADER, "/long NOPEUSDT $500")
    assert sim(flat).orders == {}


async def test_over_the_notional_threshold_only_an_admin_confirms(flat: Running) -> None:
    approval, message = await ask(flat, TRADER, "/short BTCUSDT 0.02 sl 66000")
    assert "an admin must confirm" in flat.api.messages[message]["text"]
    refused = await answer(flat, tap(flat, TRADER, approval, message))
    assert "admin must confirm" in refused.params["text"]
    assert sim(flat).positions == {}
    await answer(flat, tap(flat, ADMIN, approval, message))
    await edited(flat, message, "opened; stop 66000")
    assert sim(flat).positions[BTC].qty == D("0.02")


async def test_a_limit_long_shows_its_price_and_opens_through_the_same_confirm(
        flat: Running) -> None:
    assert "limit price must be a positive number, not abc" in await reply_to(
        flat, TRADER, "/long BTCUSDT 0.01 @abc")
    approval, message = await ask(flat, TRADER, "/long BTCUSDT 0.01 @66000 sl 2%")
    prompt = flat.api.messages[message]["text"]
    assert "limit order for 0.01 at 66000" in prompt and "in 60 s is cancelled" in prompt
    assert "stop-loss 64680" in prompt  # 2 % under its own price, not the mark's
    assert sim(flat).orders == {}  # nothing before the tap
    await answer(flat, tap(flat, TRADER, approval, message))
    await edited(flat, message, "opened; stop 64680")
    [limit] = [o for o in sim(flat).orders.values() if o.kind is OrderKind.LIMIT]
    assert limit.price == D(66000) and sim(flat).positions[BTC].qty == D("0.01")


async def test_close_while_a_limit_long_rests_cancels_the_rest_then_closes_the_fill(
        flat: Running) -> None:
    """/close does not wait for the limit's 60 s timeout: one reply says the unfilled rest was
    cancelled first and what filled was closed; the /long's own message ends as opened."""
    approval, message = await ask(flat, TRADER, "/long BTCUSDT 0.01 @64000 sl 2%")
    tap(flat, TRADER, approval, message)  # its answer comes once the entry has ended
    exchange = sim(flat)
    for _ in range(500):
        limits = [o for o in exchange.open_orders() if o.kind is OrderKind.LIMIT]
        if limits:
            break
        await asyncio.sleep(0.01)
    exchange.fill_limit(limits[0].order_id, D("0.004"))
    for _ in range(500):  # the fill is protected while the rest still rests
        if [o for o in exchange.open_orders() if o.kind is OrderKind.STOP_LOSS] and \
                flat.control.close_targets("BTCUSDT"):
            break
        await asyncio.sleep(0.01)
    started = time.monotonic()
    close_id, close_message = await ask(flat, TRADER, "/close BTCUSDT")
    tap(flat, TRADER, close_id, close_message)
    final = await edited(flat, close_message, "cancelled first")
    assert time.monotonic() - started < 30  # not the limit's 60 s
    assert "closed 0.004" in (final.text or "")
    assert BTC not in exchange.positions and exchange.open_orders() == []
    await edited(flat, message, "opened; stop 62720")  # the entry ended protected, then closed


async def resting_limit_long(r: Running) -> tuple[str, int]:
    """A confirmed /long @64000 (under the mark): its limit rests, nothing filled."""
    approval, message = await ask(r, TRADER, "/long BTCUSDT 0.01 @64000 sl 2%")
    tap(r, TRADER, approval, message)  # its answer comes once the entry has ended
    for _ in range(500):
        if [o for o in sim(r).open_orders() if o.kind is OrderKind.LIMIT]:
            break
        await asyncio.sleep(0.01)
    return approval, message


@pytest.mark.parametrize("command", ["/close BTCUSDT", "/close_all"])
async def test_close_while_a_limit_long_rests_unfilled_cancels_it(flat: Running,
                                                                  command: str) -> None:
    """Nothing filled yet: no position, but the trader wants out. The resting limit is cancelled
    at once (verified gone) and the reply says so; before, the reply was "no open position"
    and the limit kept resting, free to fill a moment later."""
    _approval, message = await resting_limit_long(flat)
    [limit] = [o for o in sim(flat).open_orders() if o.kind is OrderKind.LIMIT]
    started = time.monotonic()
    text = await reply_to(flat, TRADER, command)
    assert time.monotonic() - started < 30  # not the limit's 60 s
    assert "resting limit entry was cancelled" in text and "nothing had filled" in text
    assert sim(flat).orders[limit.order_id].status is OrderStatus.CANCELLED
    assert sim(flat).positions == {} and sim(flat).open_orders() == []
    await edited(flat, message, "Nothing filled")  # the /long's own message ends too
    assert "No open position" in await reply_to(flat, TRADER, command)  # nothing rests now


async def test_close_all_cancels_an_unfilled_resting_limit_and_asks_for_the_positions(
        flat: Running) -> None:
    """/close_all with an ETH position open and a BTC limit resting unfilled: the limit is
    cancelled at once (said in its own reply), the ETH close still waits for its Confirm."""
    await resting_limit_long(flat)
    HandApi(sim(flat)).open(ETH, PositionSide.SHORT, D("1.5"))
    for _ in range(500):
        if flat.control.close_targets("ETHUSDT"):
            break
        await asyncio.sleep(0.01)
    approval, message = await ask(flat, TRADER, "/close_all")
    prompt = flat.api.messages[message]["text"]
    assert "ETH/USDT:USDT · SHORT 1.5" in prompt and "BTC" not in prompt
    [cut] = [c for c in flat.api.sent("sendMessage")
             if "resting limit entry was cancelled" in (c.text or "")]
    assert "BTC/USDT:USDT" in (cut.text or "") and "nothing had filled" in (cut.text or "")
    assert [o.kind for o in sim(flat).open_orders()] == [OrderKind.STOP_LOSS]  # ETH's stop
    assert sim(flat).positions[ETH].qty == D("1.5")  # nothing closed before the Confirm
    await answer(flat, tap(flat, TRADER, approval, message))
    await edited(flat, message, "closed 1.5")
    assert sim(flat).positions == {}
