"""events(): ccxt pro watch results -> our events; reconnection with backoff, no real sleeps.

The websocket client cannot be intercepted at `fetch`, so a FakeWatcher stands in for the watch
calls; the dicts it returns are produced by the exchange's own ccxt parsers from venue payloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from ccxt.base import errors as cx

from engine.domain.reports import (
    OrderKind,
    OrderStatus,
    OrderUpdate,
    PositionUpdate,
    StreamStatus,
    VenueEvent,
)
from engine.domain.values import PositionSide
from tests.venues import payloads as p
from tests.venues.conftest import Harness, build

BTC = "BTC/USDT:USDT"


async def next_event(events: AsyncIterator[VenueEvent]) -> VenueEvent:
    return await asyncio.wait_for(anext(events), timeout=2)


def binance_algo_update(status: str = "NEW") -> dict[str, Any]:
    """The `o` of an ALGO_UPDATE user-data event (what watch_orders parses)."""
    return {"caid": "vgsws", "aid": 7001, "at": "CONDITIONAL", "o": "STOP_MARKET",
            "s": "BTCUSDT", "S": "SELL", "ps": "BOTH", "f": "GTC", "q": "0.010", "X": status,
            "ai": "", "tp": "60000.10", "p": "0", "wt": "MARK_PRICE", "cp": False, "R": True,
            "T": p.NOW_MS}


async def test_binance_algo_updates_and_positions_become_events(binance: Harness) -> None:
    exchange = binance.http
    events = binance.venue.events()
    binance.watcher.push("orders", [exchange.parse_ws_order(binance_algo_update())])
    order_event = await next_event(events)
    binance.watcher.push("positions", [exchange.parse_ws_position(
        {"s": "BTCUSDT", "pa": "-0.5", "ep": "65000", "up": "1.5", "mt": "cross", "ps": "BOTH"}),
        exchange.parse_ws_position({"s": "ETHUSDT", "pa": "0", "ep": "0", "up": "0",
                                    "mt": "cross", "ps": "BOTH"})])
    short, flat = await next_event(events), await next_event(events)

    assert isinstance(order_event, OrderUpdate)
    order = order_event.order
    assert (order.order_id, order.client_id, order.kind) == ("7001", "vgsws", OrderKind.STOP_LOSS)
    assert (order.trigger_price, order.qty, order.status) == (
        Decimal("60000.1"), Decimal("0.01"), OrderStatus.OPEN)
    assert isinstance(short, PositionUpdate) and short.position is not None
    assert (short.symbol, short.position.side, short.position.qty) == (
        BTC, PositionSide.SHORT, Decimal("0.5"))
    assert flat == PositionUpdate(None, "ETH/USDT:USDT")


async def test_a_failing_stream_goes_down_once_backs_off_and_comes_back(bybit: Harness) -> None:
    events = bybit.venue.events()
    bybit.watcher.push("orders", cx.NetworkError("bybit socket closed"))
    bybit.watcher.push("orders", cx.RequestTimeout("bybit ping-pong timeout"))
    bybit.watcher.push("orders", cx.NetworkError("bybit connection refused"))
    bybit.watcher.push("orders", [bybit.http.parse_order(p.bybit_stop_order("bb-1", "vgs1"))])

    down = await next_event(events)
    up = await next_event(events)
    update = await next_event(events)

    assert isinstance(down, StreamStatus) and not down.up and "orders" in down.reason
    assert up == StreamStatus(True, "orders reconnected")
    assert isinstance(update, OrderUpdate) and update.order.kind is OrderKind.STOP_LOSS
    # exponential backoff with jitter in [d/2, d]: 1, 2, 4 seconds, none slept for real
    delays = bybit.clock.slept
    assert len(delays) == 3
    assert [0.5 <= delays[0] <= 1, 1 <= delays[1] <= 2, 2 <= delays[2] <= 4] == [True] * 3


async def test_up_is_reported_only_when_every_stream_has_recovered(binance: Harness) -> None:
    events = binance.venue.events()
    binance.watcher.push("orders", cx.NetworkError("down"))
    first_down = await next_event(events)
    binance.watcher.push("positions", cx.NetworkError("down too"))
    second_down = await next_event(events)
    binance.watcher.push("orders", [])
    binance.watcher.push("positions", [])
    recovered = await next_event(events)

    assert [first_down.up, second_down.up, recovered.up] == [False, False, True]  # type: ignore[union-attr]
    assert "positions" in recovered.reason or "orders" in recovered.reason  # type: ignore[union-attr]


async def test_bitget_subscribes_to_trigger_orders_separately(bitget: Harness) -> None:
    subscriptions = {s.name: s for s in bitget.venue.dialect.subscriptions()}
    assert subscriptions["trigger-orders"].params == {"type": "swap", "trigger": True}
    assert subscriptions["orders"].params == {"type": "swap"}

    events = bitget.venue.events()
    bitget.watcher.push("trigger-orders", [
        bitget.http.parse_order(p.bitget_plan_order("bg-1", "vgs1"))])
    event = await next_event(events)
    assert isinstance(event, OrderUpdate) and event.order.kind is OrderKind.STOP_LOSS
    await asyncio.sleep(0)
    assert set(bitget.watcher.calls) >= {"positions", "orders", "trigger-orders"}


async def test_stream_errors_never_carry_secrets(bybit: Harness) -> None:
    key, secret = bybit.secrets[0], bybit.secrets[1]
    events = bybit.venue.events()
    bybit.watcher.push("positions", cx.AuthenticationError(f"bybit auth failed {key} {secret}"))
    down = await next_event(events)

    assert isinstance(down, StreamStatus) and not down.up
    assert key not in down.reason and secret not in down.reason
    assert "OperatorError" in down.reason


async def test_close_ends_the_iterator_and_stops_the_pumps() -> None:
    harness = await build("binance")
    events = harness.venue.events()
    harness.watcher.push("orders", [])
    consumer = asyncio.create_task(anext(events))
    await asyncio.sleep(0)
    await harness.venue.close()

    done = await asyncio.wait_for(asyncio.gather(consumer, return_exceptions=True), timeout=2)
    assert isinstance(done[0], StopAsyncIteration)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("stream:")] == []
