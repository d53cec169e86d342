"""ChaosVenue (engine/chaos.py) over the simulated exchange on a manual clock: each fault is
injected as the real adapters report it, from a seeded RNG, and changes nothing it should not."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from engine.chaos import HARSH, MILD, OFF, ChaosProfile, ChaosVenue, build_profile, with_chaos
from engine.clock import ManualClock
from engine.domain.reports import StopRequest, StreamStatus
from engine.domain.values import PositionSide
from engine.errors import OutcomeUnknown, Rejected
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import SimVenue

D = Decimal
SYMBOL = "BTC/USDT:USDT"


def make(profile: ChaosProfile, seed: int = 0) -> tuple[ChaosVenue, SimExchange, ManualClock]:
    clock = ManualClock()
    exchange = SimExchange(clock, seed=1)
    HandApi(exchange).open(SYMBOL, PositionSide.LONG, D("0.01"))
    return ChaosVenue(SimVenue(exchange, clock), profile, clock, seed=seed), exchange, clock


async def settle() -> None:
    for _ in range(10):  # the stream's pump task and the sim's listener get going
        await asyncio.sleep(0)


def stop(n: int = 0) -> StopRequest:
    return StopRequest(SYMBOL, PositionSide.LONG, D("0.01"), D("1000"), f"vgstest{n:017d}")


def test_off_leaves_the_venue_unwrapped_and_profiles_check_their_values() -> None:
    clock = ManualClock()
    venue = SimVenue(SimExchange(clock), clock)
    assert with_chaos(venue, OFF, clock, seed=0) is venue
    assert isinstance(with_chaos(venue, MILD, clock, seed=0), ChaosVenue)
    with pytest.raises(ValueError, match=r"rejection_probability must be within 0\.\.1"):
        ChaosProfile("x", rejection_probability=1.5)
    assert build_profile("harsh", {"order_delay_seconds": 0.0}).order_delay_seconds == 0.0
    assert build_profile("custom", {"rejection_probability": 0.5}) == ChaosProfile(
        "custom", rejection_probability=0.5)
    assert HARSH.active and not OFF.active


async def test_a_rejection_never_reaches_the_exchange() -> None:
    venue, exchange, _ = make(ChaosProfile("r", rejection_probability=1.0))
    with pytest.raises(Rejected, match="chaos: place_stop rejected"):
        await venue.place_stop(stop())
    assert exchange.open_orders() == []
    assert venue.injected == {"rejection": 1}


async def test_a_command_timeout_may_or_may_not_have_executed_and_is_found_by_client_id(
) -> None:
    venue, exchange, _ = make(ChaosProfile("t", rest_timeout_probability=1.0), seed=3)
    outcomes = []
    for n in range(12):
        with pytest.raises(OutcomeUnknown, match="chaos: request timed out in place_stop"):
            await venue.place_stop(stop(n))
        outcomes.append(exchange.find_by_client_id(stop(n).client_id) is not None)
    assert any(outcomes) and not all(outcomes)  # both halves happen
    with pytest.raises(OutcomeUnknown, match="in snapshot"):  # reads time out as ccxt's do
        await venue.snapshot()
    venue.profile = OFF  # healed: the lookup the gateway does afterwards answers
    executed = outcomes.index(True)
    found = await venue.find_order(SYMBOL, stop(executed).client_id)
    assert found is not None and found.trigger_price == D("1000")


async def test_orders_wait_on_the_injected_clock() -> None:
    venue, exchange, clock = make(ChaosProfile("d", order_delay_seconds=2.0))
    task = asyncio.ensure_future(venue.place_stop(stop()))
    await asyncio.sleep(0)
    assert not task.done() and exchange.open_orders() == []
    await clock.advance(2.0)
    order = await task
    assert order.client_id == stop().client_id
    assert (await venue.snapshot()).orders == (order,)  # reads are not delayed


async def test_the_same_seed_injects_the_same_faults() -> None:
    async def faults(seed: int) -> list[str]:
        venue, _, _ = make(ChaosProfile("s", rest_timeout_probability=0.3,
                                        rejection_probability=0.3), seed=seed)
        seen = []
        for n in range(40):
            try:
                await venue.place_stop(stop(n))
                seen.append("ok")
            except (Rejected, OutcomeUnknown) as exc:
                seen.append(type(exc).__name__)
        return seen

    assert await faults(5) == await faults(5)
    assert await faults(5) != await faults(6)


async def test_a_stream_drop_reports_down_loses_what_came_meanwhile_then_up() -> None:
    venue, exchange, clock = make(ChaosProfile("s", stream_drop_probability=1.0,
                                               stream_outage_seconds=3.0))
    hand = HandApi(exchange)
    stream = venue.events()
    first = asyncio.ensure_future(anext(stream))
    await settle()
    hand.open("ETH/USDT:USDT", PositionSide.LONG, D("0.1"))  # the event that is lost
    assert await first == StreamStatus(False, "chaos: stream dropped")
    nxt = asyncio.ensure_future(anext(stream))
    await settle()
    hand.close("ETH/USDT:USDT")  # while down: lost too
    await clock.advance(3.0)
    assert await nxt == StreamStatus(True, "chaos: stream reconnected")
    venue.profile = OFF
    third = asyncio.ensure_future(anext(stream))
    await settle()
    hand.close(SYMBOL)
    event = await third
    # the first event through is about BTC: nothing of ETH's (lost while down) was kept
    assert not isinstance(event, StreamStatus) and SYMBOL in repr(event)
    assert "ETH" not in repr(event)
    assert venue.injected == {"stream_drop": 1}
    await stream.aclose()


def test_the_wrapped_venue_keeps_its_extras_visible() -> None:
    venue, exchange, _ = make(MILD)
    assert venue.exchange is exchange  # type: ignore[attr-defined]
    assert venue.name == "sim" and venue.capabilities.streams
