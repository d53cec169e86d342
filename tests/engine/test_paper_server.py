"""The paper exchange as its own server (issue 14), over real HTTP and a real WebSocket on
127.0.0.1: Vigil's `sim.url` venue protects what the hand opens, the venue's errors keep their
meaning across the wire, faults change at run time, bad requests change nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine.clock import ManualClock
from engine.domain.reports import (
    FillUpdate,
    OrderKind,
    OrderUpdate,
    PositionUpdate,
    StopRequest,
    StreamStatus,
)
from engine.domain.values import PositionSide
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.sim.exchange import SimExchange
from engine.sim.remote import RemoteSimVenue
from engine.sim.server import PaperExchangeServer
from vigil.cli import main
from vigil.runtime import Engine
from vigil.settings import load_settings

SOL, ETH = "SOL/USDT:USDT", "ETH/USDT:USDT"


@dataclass
class Served:
    server: PaperExchangeServer
    exchange: SimExchange
    url: str
    http: aiohttp.ClientSession

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        async with self.http.post(self.url + path, json=body) as response:
            payload = await response.json()
            assert response.status == status, payload
            return payload

    async def state(self) -> dict[str, Any]:
        async with self.http.get(self.url + "/state") as response:
            return await response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    exchange = SimExchange(ManualClock(), seed=5)
    server = PaperExchangeServer(exchange, exchange.clock)
    port = await server.start("127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        yield Served(server, exchange, f"http://127.0.0.1:{port}", http)
    await server.stop()


@pytest.fixture
async def venue(served: Served) -> AsyncIterator[RemoteSimVenue]:
    venue = RemoteSimVenue(served.url, ManualClock(), timeout=5)
    await venue.start()
    yield venue
    await venue.close()


def _stop(symbol: str, price: str, client_id: str, qty: str = "2") -> StopRequest:
    return StopRequest(symbol=symbol, position_side=PositionSide.LONG, qty=Decimal(qty),
                       trigger_price=Decimal(price), client_id=client_id)


async def test_vigil_on_sim_url_protects_what_the_hand_opens(served: Served,
                                                              tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data", sim={"url": served.url})
    engine = await Engine.build(settings, ManualClock())
    try:
        assert engine.sims == {} and engine.paper_stores == {}  # nothing in-process
        await served.post("/hand/open", {"symbol": SOL, "side": "long", "qty": "2"})
        guard = engine.guards["paper"]
        await guard.load()
        await guard.start_venue(retry=False)
        report = await guard.reconcile_now()
        assert report.unprotected_after == ()
        state = await served.state()
        (stop,) = state["open_orders"]
        assert stop["symbol"] == SOL and stop["kind"] == "stop_loss" and stop["qty"] == "2"
        assert stop["reduce_only"] and stop["client_id"]
        # the exchange's own record: SOL went without a stop only until Vigil's pass
        (interval,) = state["unprotected"]
        assert interval["symbol"] == SOL and interval["until"] is not None
    finally:
        await engine.stop()
        await engine.close()


async def test_the_stream_carries_events_and_says_when_it_reconnects(
        served: Served, venue: RemoteSimVenue) -> None:
    events = venue.events()
    first = asyncio.ensure_future(anext(events))
    await asyncio.wait_for(served.server.stream_connected.wait(), 5)  # before the hand acts
    await served.post("/hand/open", {"symbol": SOL, "side": "long", "qty": "1"})
    got = [await asyncio.wait_for(first, 5)]
    got += [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
    assert [type(e) for e in got] == [FillUpdate, PositionUpdate, OrderUpdate]  # the sim's order
    position = next(e for e in got if isinstance(e, PositionUpdate))
    assert position.position is not None and position.position.qty == Decimal("1")

    assert (await served.post("/hand/drop_streams", {}))["dropped"] == 1
    down = await asyncio.wait_for(anext(events), 5)
    assert down == StreamStatus(up=False, reason="the paper exchange closed the stream")
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)
    again = venue.events()
    assert await asyncio.wait_for(anext(again), 5) == StreamStatus(up=True, reason="reconnected")
    await again.aclose()


async def test_errors_keep_their_meaning_over_the_wire(served: Served,
                                                      venue: RemoteSimVenue) -> None:
    await served.post("/hand/open", {"symbol": SOL, "side": "long", "qty": "2"})
    with pytest.raises(Rejected) as rejected:
        await venue.place_stop(_stop(SOL, "999", "vg-high"))  # above the mark: would trigger
    assert rejected.value.reason is RejectReason.WOULD_TRIGGER_IMMEDIATELY

    await served.post("/faults", {"lost_response": 1.0})
    with pytest.raises(OutcomeUnknown):
        await venue.place_stop(_stop(SOL, "140", "vg-lost"))
    await served.post("/faults", {})
    found = await venue.find_order(SOL, "vg-lost")  # it executed: the lookup finds it
    assert found is not None and found.kind is OrderKind.STOP_LOSS and found.is_resting

    await served.post("/faults", {"timeout_before": 1.0})
    with pytest.raises(OutcomeUnknown):
        await venue.place_stop(_stop(SOL, "139", "vg-never"))
    await served.post("/faults", {"rate_limited": 1.0})
    with pytest.raises(Transient, match="429"):
        await venue.snapshot()
    await served.post("/faults", {})
    assert await venue.find_order(SOL, "vg-never") is None  # never executed
    with pytest.raises(Rejected) as duplicate:
        await venue.place_stop(_stop(SOL, "138", "vg-lost"))
    assert duplicate.value.reason is RejectReason.DUPLICATE_CLIENT_ID

    snapshot = await venue.snapshot()
    assert [o.client_id for o in snapshot.orders] == ["vg-lost"]
    assert snapshot.positions[0].qty == Decimal("2")
    amended = await venue.amend_stop(found, Decimal("141"), Decimal("2"))
    assert amended.order_id == found.order_id and amended.trigger_price == Decimal("141")
    await venue.cancel_order(amended)
    with pytest.raises(Rejected) as gone:
        await venue.cancel_order(amended)
    assert gone.value.reason is RejectReason.ORDER_NOT_FOUND
    assert (await served.state())["faults_injected"] == 3


async def test_a_stopped_exchange_is_transient_for_reads_and_unknown_for_nothing(
        served: Served, venue: RemoteSimVenue) -> None:
    await served.server.stop()
    with pytest.raises(Transient, match="unreachable"):
        await venue.snapshot()
    with pytest.raises(Transient, match="unreachable"):  # never sent: safe to retry
        await venue.place_stop(_stop(SOL, "140", "vg-down"))


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/hand/open", {"symbol": SOL, "side": "long", "qty": 1.5}, "decimal string"),
    ("/hand/open", {"symbol": SOL, "side": "sideways", "qty": "1"}, "sideways"),
    ("/hand/open", {"symbol": SOL, "side": "long", "qty": "NaN"}, "finite"),
    ("/faults", {"reject": 2}, "between 0 and 1"),
    ("/faults", {"rejects": 0.1}, "unknown fault fields ['rejects']"),
    ("/hand/stop", {"symbol": SOL, "trigger_price": "100", "side": "sell"}, "needs a qty"),
    ("/orders/stop", {"symbol": SOL}, "missing field 'position_side'"),
])
async def test_a_bad_request_is_refused_with_its_reason_and_changes_nothing(
        served: Served, path: str, body: dict[str, Any], message: str) -> None:
    before = await served.state()
    refused = await served.post(path, body, status=422)
    assert refused["error"] == "bad_request" and message in refused["message"]
    after = await served.state()
    assert after == before


async def test_hand_requests_the_exchange_refuses_come_back_as_rejections(
        served: Served) -> None:
    refused = await served.post("/hand/stop", {"symbol": ETH, "trigger_price": "3000"},
                                status=400)
    assert refused["reason"] == "invalid_order" and "no position" in refused["message"]
    refused = await served.post("/hand/open", {"symbol": "NOPE/USDT:USDT", "side": "long",
                                               "qty": "1"}, status=400)
    assert refused["reason"] == "bad_symbol"
    assert (await served.state())["orders_total"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--faults", '{"rejects": 0.1}'], "unknown fault fields ['rejects']"),
    (["--faults", "[1]"], "must be a JSON object"),
    (["--faults", '{"reject": 1.5}'], "between 0 and 1"),
    (["--port", "70000"], "bad --port 70000"),
    (["--price-interval", "-1"], "--price-interval must be >= 0"),
])
def test_serve_refuses_bad_arguments_before_opening_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        args: list[str], message: str) -> None:
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path / "data"))
    assert main(["paper-exchange", "serve", "--db", str(tmp_path / "x.sqlite3"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.sqlite3").exists()


async def test_the_history_holds_each_fill_and_every_trigger_a_stop_took(
        served: Served, venue: RemoteSimVenue) -> None:
    """What the soak checks entries, approvals and trailing against (bench/soak.py)."""
    await served.post("/hand/open", {"symbol": SOL, "side": "long", "qty": "2"})
    stop = await venue.place_stop(_stop(SOL, "140", "vg-trail"))
    stop = await venue.amend_stop(stop, Decimal("142"), Decimal("2"))
    await venue.amend_stop(stop, Decimal("142"), Decimal("2"))  # the same price: no new entry
    await served.post("/hand/close", {"symbol": SOL})  # fills; the stop is cancelled
    async with served.http.get(served.url + "/history") as response:
        history = await response.json()
    assert [(s["client_id"], s["side"], s["trigger_price"]) for s in history["stops"]] == [
        ("vg-trail", "sell", "140"), ("vg-trail", "sell", "142")]
    assert [(f["side"], f["qty"], f["reduce_only"]) for f in history["fills"]] == [
        ("buy", "2", False), ("sell", "2", True)]
    async with served.http.get(served.url + "/history?fills_after=1&stops_after=2") as response:
        later = await response.json()
    assert (len(later["fills"]), later["fills_next"], later["stops"]) == (1, 2, [])
    async with served.http.get(served.url + "/history?fills_after=-1") as response:
        assert response.status == 422 and "must be >= 0" in (await response.json())["message"]


async def test_the_exchange_process_keeps_its_state_through_a_kill_9(tmp_path: Path) -> None:
    """`vigil paper-exchange serve` SIGKILLed and started again on its SQLite file: positions,
    resting orders (with their amended triggers), marks and client ids are as they were."""
    db = tmp_path / "paper.sqlite3"

    async def serve() -> tuple[asyncio.subprocess.Process, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vigil.cli", "paper-exchange", "serve", "--port", "0",
            "--price-interval", "0", "--db", str(db), cwd=tmp_path,
            env={**os.environ, "VIGIL_DATA_DIR": str(tmp_path)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        return proc, line.split("listening on ", 1)[1].split()[0]

    def kept(state: dict[str, Any]) -> dict[str, Any]:
        positions = [{k: v for k, v in p.items() if k != "updated_at"}  # the time of asking
                     for p in state["positions"]]
        return {"positions": positions, **{k: state[k] for k in (
            "open_orders", "marks", "orders_total", "fills_total", "client_ids_reused")}}

    proc, url = await serve()
    try:
        venue = RemoteSimVenue(url, ManualClock(), timeout=5)
        await venue.start()
        async with aiohttp.ClientSession() as http:
            served = Served(None, None, url, http)  # type: ignore[arg-type]
            await served.post("/hand/open", {"symbol": SOL, "side": "long", "qty": "2"})
            await served.post("/hand/open", {"symbol": ETH, "side": "short", "qty": "1"})
            stop = await venue.place_stop(_stop(SOL, "140", "vg-kept"))
            await venue.amend_stop(stop, Decimal("141"), Decimal("2"))
            await served.post("/hand/mark", {"symbol": ETH, "price": "3100"})
            await served.post("/hand/close", {"symbol": ETH, "qty": "0.4"})
            before = kept(await served.state())
            await venue.close()
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            proc, url = await serve()
            served.url = url
            after = kept(await served.state())
        assert after == before
        assert [o["trigger_price"] for o in after["open_orders"]] == ["141"]
        assert {p["symbol"]: p["qty"] for p in after["positions"]} == {SOL: "2", ETH: "0.6"}
        assert after["marks"][ETH] == "3100"
        refused = RemoteSimVenue(url, ManualClock(), timeout=5)
        await refused.start()
        try:  # its client id is still known: the same id is found, not placed again
            found = await refused.find_order(SOL, "vg-kept")
            assert found is not None and found.trigger_price == Decimal("141")
        finally:
            await refused.close()
    finally:
        proc.kill()
        await proc.wait()


async def test_a_take_profit_crosses_the_wire_and_fires_on_the_mark_reduce_only(
        served: Served, venue: RemoteSimVenue) -> None:
    await served.post("/hand/open", {"symbol": SOL, "side": "long", "qty": "2"})
    mark = served.exchange.marks[SOL]
    request = StopRequest(symbol=SOL, position_side=PositionSide.LONG, qty=Decimal(3),
                          trigger_price=mark + 10, client_id="vgt-tp",
                          kind=OrderKind.TAKE_PROFIT)
    placed = await venue.place_stop(request)
    assert (placed.kind, placed.reduce_only, placed.trigger_price) == (
        OrderKind.TAKE_PROFIT, True, mark + 10)
    served.exchange.set_mark(SOL, mark + 11)  # through it: fires, closes at most the position
    assert SOL not in served.exchange.positions  # reduce-only: 2 closed, never a short of 1
    assert served.exchange.open_orders(SOL) == []
