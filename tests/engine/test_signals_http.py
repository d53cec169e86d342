"""The signal webhook over real HTTP (aiohttp's TestServer on 127.0.0.1), the engine on the
simulated exchange and a real SQLite journal: a good signal opens a protected position; every
bad one gets its 4xx and changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal as D
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from engine.control import ControlService
from engine.domain import events as ev
from engine.domain.reports import OrderKind
from tests.engine.conftest import ACCOUNT, BTC, Rig, RigFactory, drive
from vigil.settings import SignalsSettings
from vigil.signals_http import SIGNATURE, TIMESTAMP, TOKEN, add_signal_routes, sign

SECRET = "s3cret-s3cret-s3cret"


@dataclass
class Hook:
    rig: Rig
    client: TestClient

    def stamp(self, offset: float = 0) -> str:
        return str(int(self.rig.clock.now().timestamp() + offset))

    async def post(self, payload: Any, *, source: str = "tv", secret: str = SECRET,
                   offset: float = 0, headers: dict[str, str] | None = None,
                   raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        body = raw if raw is not None else json.dumps(payload).encode()
        stamp = self.stamp(offset)
        sent = headers if headers is not None else {
            TIMESTAMP: stamp, SIGNATURE: sign(secret, stamp, body)}
        response = await self.client.post(f"/signal/{source}", data=body, headers={
            "Content-Type": "application/json", **sent})
        return response.status, await response.json()

    def orders(self) -> int:
        return len(self.rig.exchange.orders)


SIGNAL = {"account": ACCOUNT, "symbol": "BTCUSDT", "side": "buy", "size": "$500", "sl": "2%",
          "id": "alert-1"}


@pytest.fixture
async def hook(rig_factory: RigFactory) -> AsyncIterator[Hook]:
    rig = await rig_factory()
    control = ControlService({ACCOUNT: rig.guard}, venues_testnet={}, state=rig.guard.state,
                             bus=rig.guard.bus, clock=rig.clock, mode="paper")
    settings = SignalsSettings(sources={"tv": {"secret": SECRET}}, max_body_bytes=512,
                               rate_per_minute=20, alert_after_failures=3)
    app = web.Application()
    add_signal_routes(app, control=control, settings=settings, clock=rig.clock,
                      bus=rig.guard.bus)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield Hook(rig, client)


async def test_good_signal_opens_a_protected_position_once(hook: Hook) -> None:
    status, body = await hook.post(SIGNAL)
    assert status == 200 and body["status"] == "protected", body
    assert body["qty"] == "0.007" and body["stop"] == "63700.0"
    assert hook.rig.exchange.positions[BTC].qty == D("0.007")
    assert [o.trigger_price for o in hook.rig.stops(BTC)] == [D("63700.0")]
    # the sender retries the same alert (its own id): the earlier result, no second order
    orders = hook.orders()
    status, again = await hook.post(SIGNAL, offset=1)
    assert status == 200 and again["replayed"] and hook.orders() == orders
    entries = [o for o in hook.rig.exchange.orders.values()
               if o.kind is OrderKind.MARKET and not o.reduce_only]
    assert len(entries) == 1


async def test_limit_signals_rest_at_their_price_and_end_protected_or_flat(
        hook: Hook) -> None:
    # through the mark: fills at once, sized and stopped from its own price
    status, body = await hook.post({**SIGNAL, "id": "lim-1", "type": "limit", "price": "66000"})
    assert status == 200 and body["status"] == "protected", body
    assert body["stop"] == "64680.0" and hook.rig.exchange.positions[BTC].qty == D("0.007")
    # under the mark on another symbol: rests, nothing fills, cancelled at the timeout
    eth = "ETH/USDT:USDT"
    status, body = await drive(hook.rig.clock, hook.post(
        {**SIGNAL, "symbol": "ETHUSDT", "id": "lim-2", "price": "3000", "size": "0.1"}))
    assert status == 200 and body["status"] == "not_filled", body
    [limit] = [o for o in hook.rig.exchange.orders.values()
               if o.kind is OrderKind.LIMIT and o.symbol == eth]
    assert limit.price == D(3000) and not limit.is_resting and limit.filled == 0
    assert eth not in hook.rig.exchange.positions and hook.rig.stops(eth) == []


async def test_token_header_authenticates_too(hook: Hook) -> None:
    status, body = await hook.post({**SIGNAL, "side": "short", "sl": "66000"},
                                   headers={TOKEN: SECRET})
    assert status == 200 and body["status"] == "protected", body
    status, body = await hook.post({**SIGNAL, "id": "x"}, headers={TOKEN: "wrong" * 4})
    assert (status, body["error"]) == (401, "bad_token")


@pytest.mark.parametrize(("case", "status", "error"), [
    ("bad_signature", 401, "bad_signature"),
    ("unsigned", 401, "unauthenticated"),
    ("stale", 401, "stale_timestamp"),
    ("oversized", 413, "body_too_large"),
    ("malformed", 400, "malformed_json"),
    ("unknown_symbol", 400, "unknown_symbol"),
    ("unknown_source", 404, "unknown_source"),
    ("bad_side", 400, "bad_side"),
    ("bad_size", 400, "bad_number"),
    ("missing_id", 400, "missing_field"),
    ("unknown_account", 400, "unknown_account"),
    ("extra_field", 400, "unknown_field"),
    ("bad_type", 400, "bad_type"),
    ("limit_without_price", 400, "missing_field"),
    ("market_with_price", 400, "bad_field"),
    ("bad_price", 400, "bad_number"),
])
async def test_each_bad_signal_gets_its_4xx_and_changes_nothing(
        hook: Hook, case: str, status: int, error: str) -> None:
    kwargs: dict[str, Any] = {}
    payload: Any = dict(SIGNAL)
    match case:
        case "bad_signature":
            kwargs["secret"] = "not-the-secret-at-all"
        case "unsigned":
            kwargs["headers"] = {}
        case "stale":
            kwargs["offset"] = -31
        case "oversized":
            kwargs["raw"] = json.dumps({**SIGNAL, "pad": "x" * 600}).encode()
        case "malformed":
            kwargs["raw"] = b'{"symbol": "BTCUSDT", '
        case "unknown_symbol":
            payload["symbol"] = "NOPEUSDT"
        case "unknown_source":
            kwargs["source"] = "who"
        case "bad_side":
            payload["side"] = "up"
        case "bad_size":
            payload["size"] = "-5"
        case "missing_id":
            del payload["id"]
        case "unknown_account":
            payload["account"] = "nobody"
        case "extra_field":
            payload["leverage"] = 100
        case "bad_type":
            payload["type"] = "stop"
        case "limit_without_price":
            payload["type"] = "limit"
        case "market_with_price":
            payload |= {"type": "market", "price": "64000"}
        case "bad_price":
            payload["price"] = "0"
    got, body = await hook.post(payload, **kwargs)
    assert (got, body["error"]) == (status, error), body
    assert hook.orders() == 0 and hook.rig.exchange.positions == {}


async def test_a_replayed_signature_is_refused(hook: Hook) -> None:
    body = json.dumps({**SIGNAL, "id": "r1"}).encode()
    stamp = hook.stamp()
    headers = {TIMESTAMP: stamp, SIGNATURE: sign(SECRET, stamp, body)}
    first, _ = await hook.post(None, raw=body, headers=headers)
    again, answer = await hook.post(None, raw=body, headers=headers)
    assert first == 200 and (again, answer["error"]) == (409, "replay")


async def test_gates_refuse_with_422_and_the_reason(hook: Hook) -> None:
    status, body = await hook.post({**SIGNAL, "sl": "70000"})
    assert status == 422 and body["reason"] == "stop_wrong_side" and hook.orders() == 0


async def test_rate_limit_and_an_admin_alert_for_repeated_failures(hook: Hook) -> None:
    for _ in range(3):
        status, _body = await hook.post(SIGNAL, secret="not-the-secret-at-all")
        assert status == 401
    alerts = [e for e in hook.rig.events if isinstance(e, ev.SignalsFailing)]
    assert [(a.source, a.failures, a.reason) for a in alerts] == [("tv", 3, "bad_signature")]
    for i in range(17):  # 20 a minute: 3 used above
        status, _body = await hook.post({**SIGNAL, "id": f"n{i}", "sl": "70000"})
        assert status == 422
    status, body = await hook.post({**SIGNAL, "id": "late"})
    assert (status, body["error"]) == (429, "rate_limited")
    await hook.rig.clock.advance(61)
    status, body = await hook.post({**SIGNAL, "id": "later"})
    assert status == 200, body
