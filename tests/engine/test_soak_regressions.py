"""Bugs the kill -9 soak (bench/soak.py, issue 14) found, each pinned by its own test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D

import pytest

from engine.clock import ManualClock
from engine.domain.reports import OrderKind
from engine.domain.values import OrderSide, PositionSide
from engine.errors import Rejected, RejectReason
from engine.ports import Quotes
from engine.sim.exchange import SimExchange
from engine.sim.remote import RemoteSimVenue
from engine.sim.server import PaperExchangeServer
from engine.sim.venue import FaultPlan
from tests.engine.conftest import ETH, SOL, RigFactory, eventually


async def test_a_new_position_does_not_wait_out_the_back_off_of_the_one_before(
        rig_factory: RigFactory) -> None:
    """Soak seed 9: the venue refused every stop and close for a short (the back-off doubled to
    16 s); the hand then flipped the symbol long, and that new position sat without a stop for
    25 s, waiting out refusals that were about the old one. A new side or size on the venue
    lifts the back-off at once."""
    rig = await rig_factory(streaming=True)
    run = asyncio.create_task(rig.guard.run())
    try:
        await eventually(lambda: rig.guard.last_reconcile is not None)
        rig.venue.faults = FaultPlan(reject=1.0)
        rig.hand.open(SOL, PositionSide.SHORT, D("10"))
        for _ in range(1200):  # refusals past the SLA: the pause doubles; flip in a long one
            await rig.clock.advance(0.1)
            await asyncio.sleep(0.002)
            sup = rig.guard.supervisors[SOL]
            if sup.backoff_until - rig.clock.monotonic() > 3:
                break
        assert sup.backoff_until - rig.clock.monotonic() > 3
        assert rig.stops(SOL) == []

        rig.venue.faults = FaultPlan()  # the venue heals, and the hand flips the symbol
        rig.exchange.market_order(symbol=SOL, side=OrderSide.BUY, qty=D("25"),
                                  reduce_only=False, client_id=None)
        for _ in range(4):
            await rig.clock.advance(0.25)
            await asyncio.sleep(0.005)
        (stop,) = rig.stops(SOL)
        assert stop.kind is OrderKind.STOP_LOSS and stop.side is OrderSide.SELL
        assert stop.qty == D("15")
    finally:
        await rig.guard.stop()
        run.cancel()


@dataclass
class Remote:
    exchange: SimExchange
    server: PaperExchangeServer
    venue: RemoteSimVenue


@pytest.fixture
async def remote() -> AsyncIterator[Remote]:
    """The paper exchange served on 127.0.0.1, and Vigil's venue over it (`sim.url`)."""
    exchange = SimExchange(ManualClock(), seed=5)
    server = PaperExchangeServer(exchange, exchange.clock)
    port = await server.start("127.0.0.1", 0)
    venue = RemoteSimVenue(f"http://127.0.0.1:{port}", ManualClock(), timeout=5)
    await venue.start()
    yield Remote(exchange, server, venue)
    await venue.close()
    await server.stop()


async def test_the_remote_paper_venue_streams_marks_for_trailing(remote: Remote) -> None:
    """Soak with /trail: Vigil on `sim.url` logged "mark prices failed" again and again, since
    RemoteSimVenue had no `price_ticks` (AttributeError): a trailed stop followed only the
    snapshots. The exchange now serves its marks (GET /ticks) and the remote venue streams
    them, only the symbols asked for, in the batches they came in."""
    exchange, server, venue = remote.exchange, remote.server, remote.venue
    ticks = venue.price_ticks(frozenset({SOL}))
    first = asyncio.ensure_future(anext(ticks))
    await eventually(lambda: len(server._tick_sockets) == 1)
    exchange.set_mark(ETH, D("3100"))  # not asked for
    exchange.set_mark(SOL, D("151.5"))
    (tick,) = await asyncio.wait_for(first, 5)
    assert (tick.symbol, tick.mark) == (SOL, D("151.5"))
    exchange.set_mark(SOL, D("152"))
    (tick,) = await asyncio.wait_for(anext(ticks), 5)
    assert tick.mark == D("152")
    await ticks.aclose()  # type: ignore[attr-defined]
    await eventually(lambda: not server._tick_sockets)


async def test_the_remote_paper_venue_quotes_so_entries_can_size(remote: Remote) -> None:
    """Soak with entries: every `POST /signal/...` to Vigil on `sim.url` was refused with
    "sim gives no prices": RemoteSimVenue was no `Quotes` (mark and equity), which an entry
    sizes itself with. It is now, through the exchange's GET /mark and /equity."""
    exchange, venue = remote.exchange, remote.venue
    assert isinstance(venue, Quotes)
    exchange.set_mark(SOL, D("151.5"))
    assert await venue.mark_price(SOL) == D("151.5")
    assert await venue.equity() == exchange.equity()
    with pytest.raises(Rejected) as refused:
        await venue.mark_price("NOPE/USDT:USDT")
    assert refused.value.reason is RejectReason.BAD_SYMBOL
