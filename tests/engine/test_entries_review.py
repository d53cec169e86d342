"""Entries: our own positions are not "found", an entry never merges into an open position,
and the per-key lock lives only while its request runs."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from bot import render
from bot.i18n import build_i18n
from engine.domain import events as ev
from engine.domain.values import PositionSide
from engine.entries.gates import RiskLimits
from engine.entries.model import EntryStatus, PriceKind, PriceSpec, Refusal
from tests.engine.conftest import BTC, SpyRigFactory, drive
from tests.engine.test_entries import entry_orders, long_500, service


async def test_our_own_entry_is_adopted_as_ours_not_found(spy_rig: SpyRigFactory) -> None:
    rig, _ = await spy_rig()
    result = await drive(rig.clock, service(rig).open(long_500()))
    assert result.status is EntryStatus.PROTECTED
    [adopted] = [e for e in rig.events if isinstance(e, ev.PositionAdopted)]
    assert adopted.entry == "k1"
    i18n = build_i18n("en")
    with i18n.context(), i18n.use_locale("en"):
        assert render.event(adopted) is None  # no "found on the venue" alert for it
    # a position opened by hand on another symbol still is "found"
    rig.hand.open("ETH/USDT:USDT", PositionSide.LONG, D(1))
    await drive(rig.clock, rig.guard.reconcile_now())
    hand = [e for e in rig.events if isinstance(e, ev.PositionAdopted) and not e.entry]
    assert [e.symbol for e in hand] == ["ETH/USDT:USDT"]
    with i18n.context(), i18n.use_locale("en"):
        assert "found on the venue" in (render.event(hand[0]) or "")


async def test_an_entry_on_an_open_position_is_refused_each_way(spy_rig: SpyRigFactory) -> None:
    rig, spy = await spy_rig()
    entries = service(rig)
    first = await drive(rig.clock, entries.open(long_500()))
    assert first.status is EntryStatus.PROTECTED
    more = await drive(rig.clock, entries.open(long_500(key="k2")))
    assert more.status is EntryStatus.REFUSED and more.refusal is Refusal.POSITION_OPEN
    other = await drive(rig.clock, entries.open(long_500(
        key="k3", stop="3", side=PositionSide.SHORT)))
    assert other.status is EntryStatus.REFUSED and other.refusal is Refusal.OPPOSITE_POSITION
    assert "long" in other.detail
    # nothing sent for either: the position and its one stop are as they were
    assert len(entry_orders(rig)) == 1 and spy.commands() == ["market_order", "place_stop"]
    assert rig.exchange.positions[BTC].qty == D("0.007")
    assert [s.qty for s in rig.stops(BTC)] == [D("0.007")]


async def test_same_key_at_once_sends_one_entry_and_the_key_lock_goes(
        spy_rig: SpyRigFactory) -> None:
    rig, _ = await spy_rig()
    entries = service(rig)
    both = asyncio.gather(entries.open(long_500()), entries.open(long_500()))
    first, second = await drive(rig.clock, both)  # type: ignore[misc]
    assert {first.replayed, second.replayed} == {False, True}
    assert len(entry_orders(rig)) == 1
    assert entries._keys == {}  # no lock is kept for a finished key


def test_the_default_stop_is_one_rule() -> None:
    limits = RiskLimits(default_stop_percent=D("1.5"))
    assert limits.stop_or_default(None) == PriceSpec(PriceKind.PERCENT, D("1.5"))
    named = PriceSpec(PriceKind.PRICE, D(60000))
    assert limits.stop_or_default(named) is named
