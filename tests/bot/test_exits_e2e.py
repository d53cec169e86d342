"""Exit plans over the fake Bot API: /trail, then prices move on the simulated exchange, the
stop follows, /positions shows the trail; /sl tighter at once, looser only after Confirm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from engine.clock import ManualClock
from engine.domain.reports import OrderKind
from tests.bot.conftest import ADMIN, TRADER, VIEWER, Running, running
from tests.bot.test_approvals_e2e import ask, edited, sim, tap
from tests.fakes import FakeBotAPI, SentCall

BTC = "BTC/USDT:USDT"
D = Decimal


@pytest.fixture
async def paper(api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[tuple[Running, ManualClock]]:
    monkeypatch.chdir(tmp_path)
    clock = ManualClock()
    # The paper price feed stays still: this test moves the prices itself.
    async with running(api, tmp_path / "data", clock=clock,
                       sim={"price_interval_seconds": 3600}) as r:
        await r.api.wait_for("sendMessage", lambda c: "had no stop; placed at" in (c.text or ""))
        yield r, clock


def to(chat: int, contains: str):
    def match(call: SentCall) -> bool:
        return call.chat_id == chat and contains in (call.text or "")
    return match


def btc_stops(r: Running) -> list[Decimal]:
    return [o.trigger_price for o in sim(r).open_orders()
            if o.symbol == BTC and o.kind is OrderKind.STOP_LOSS]


async def until(clock: ManualClock, condition, seconds: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Move the clock a little at a time until `condition()` (database work in between)."""
    for _ in range(int(seconds * 10)):
        if condition():
            return
        await asyncio.sleep(0.005)
        await clock.advance(0.1)
    raise AssertionError("condition not met")


async def test_trail_then_prices_move_and_the_stop_follows(
        paper: tuple[Running, ManualClock]) -> None:
    r, clock = paper
    assert btc_stops(r) == [D(63000)]
    r.api.push_message(TRADER, "/trail btcusdt 1 0.5")
    [reply] = await r.api.wait_for("sendMessage", to(TRADER, "plan set"))
    assert "trail inactive: starts at +1 %, 0.5 % behind" in reply.text
    entry = sim(r).positions[BTC].entry_price
    await clock.advance(2)  # the mark-price feed subscribes to BTC now that it trails
    sim(r).set_mark(BTC, entry * D("1.02"))
    best = sim(r).marks[BTC]
    wanted = best * D("0.995")
    await until(clock, lambda: btc_stops(r) and btc_stops(r)[0] >= wanted - D("0.1"))
    sim(r).set_mark(BTC, entry * D("1.018"))  # a dip above the stop: the stop stays
    await clock.advance(3)
    [stop] = btc_stops(r)
    assert wanted - D("0.1") <= stop <= wanted + D("0.1")
    # The move is a silent alert without a price (pending ones coalesce), never a loud one.
    [alert] = await r.api.wait_for("sendMessage", to(ADMIN, f"{BTC}: stop moved; /positions"))
    assert alert.params.get("disable_notification") in (True, "true")
    r.api.push_message(VIEWER, "/positions")
    [shown] = await r.api.wait_for("sendMessage", to(VIEWER, "trail active"))
    assert f"best {best.normalize():f}" in shown.text
    assert f"stop {stop.normalize():f}" in shown.text


async def test_sl_tighter_at_once_looser_only_after_confirm(
        paper: tuple[Running, ManualClock]) -> None:
    r, _ = paper
    r.api.push_message(TRADER, "/sl btcusdt 64000")
    await r.api.wait_for("sendMessage", to(TRADER, "stop moved 63000 → 64000"))
    assert btc_stops(r) == [D(64000)]
    r.api.push_message(TRADER, "/sl btcusdt 1000000")
    await r.api.wait_for("sendMessage", to(TRADER, "is through the mark"))
    assert btc_stops(r) == [D(64000)]
    approval, message = await ask(r, TRADER, "/sl btcusdt 62500")
    await r.api.wait_for("sendMessage", to(TRADER, "needs Confirm"))
    assert btc_stops(r) == [D(64000)]  # nothing before the tap
    tap(r, TRADER, approval, message)
    await edited(r, message, "stop moved 64000 → 62500")
    assert btc_stops(r) == [D(62500)]
    r.api.push_message(TRADER, "/sl btcusdt abc")
    await r.api.wait_for("sendMessage", to(TRADER, "Usage: /sl"))
    r.api.push_message(TRADER, "/breakeven btcusdt at 1.5%")
    await r.api.wait_for("sendMessage", to(TRADER, "breakeven at +1.5 %"))
    r.api.push_message(TRADER, "/trail btcusdt 2 1")
    await r.api.wait_for("sendMessage", to(TRADER, "trail inactive: starts at +2 %, 1 % behind"))
    r.api.push_message(TRADER, "/trail btcusdt off")
    [off] = await r.api.wait_for("sendMessage", lambda c: c.chat_id == TRADER and "plan set"
                                 in (c.text or "") and "trail" not in (c.text or ""))
    assert "breakeven at +1.5 %" in off.text  # trailing off leaves breakeven as it was
    r.api.push_message(TRADER, "/trail nosuchcoin")
    await r.api.wait_for("sendMessage", to(TRADER, "Unknown symbol nosuchcoin"))
    r.api.push_message(TRADER, "/trail btcusdt 1 0")
    await r.api.wait_for("sendMessage", to(TRADER, "the callback between 0 % and 100 %"))
    r.api.push_message(VIEWER, "/trail btcusdt")
    await r.api.wait_for("sendMessage", to(VIEWER, "needs the trader role"))


def btc_take_profits(r: Running) -> list[tuple[Decimal | None, Decimal | None]]:
    return [(o.trigger_price, o.qty) for o in sim(r).open_orders()
            if o.symbol == BTC and o.kind is OrderKind.TAKE_PROFIT]


async def test_tp_rests_shows_in_positions_and_its_hit_is_reported_with_the_pnl(
        paper: tuple[Running, ManualClock]) -> None:
    r, clock = paper
    qty = sim(r).positions[BTC].qty
    r.api.push_message(TRADER, "/tp btcusdt 60000")  # a long's TP below the mark
    await r.api.wait_for("sendMessage", to(TRADER, "is at or past the mark"))
    r.api.push_message(TRADER, "/tp btcusdt abc")
    await r.api.wait_for("sendMessage", to(TRADER, "Usage: /tp"))
    r.api.push_message(VIEWER, "/tp btcusdt 66000")
    await r.api.wait_for("sendMessage", to(VIEWER, "needs the trader role"))
    assert btc_take_profits(r) == []
    r.api.push_message(TRADER, "/tp btcusdt 66000")
    await r.api.wait_for("sendMessage", to(TRADER, "take-profit set at 66000"))
    await until(clock, lambda: bool(btc_take_profits(r)))
    assert btc_take_profits(r) == [(D(66000), qty)]
    assert btc_stops(r) == [D(63000)]  # the stop stays; the TP is not a stop
    r.api.push_message(VIEWER, "/positions")
    [shown] = await r.api.wait_for("sendMessage", to(VIEWER, "take-profit 66000"))
    assert "stop 63000" in shown.text
    sim(r).set_mark(BTC, D(66100))  # the TP fires on the mark and closes reduce-only
    [alert] = await r.api.wait_for("sendMessage", to(ADMIN, f"{BTC}: take-profit hit"))
    assert "PnL +" in alert.text
    await until(clock, lambda: not [o for o in sim(r).open_orders() if o.symbol == BTC])
    assert BTC not in sim(r).positions
    r.api.push_message(TRADER, "/tp btcusdt off")
    await r.api.wait_for("sendMessage", to(TRADER, "no open position; nothing changed"))
