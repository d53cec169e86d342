"""`vigil paper-exchange serve`: the simulated exchange as its own process on 127.0.0.1.

HTTP + JSON (engine/sim/wire.py) for the venue calls, a WebSocket at /stream for its events, the
HandApi under /hand/ (what a person or a test does in the exchange's app), /faults to change the
injected faults at run time and /state for the exchange's own records (what the soak checks).
Venue calls go through a `SimVenue`, so the faults are the in-process ones (engine/sim/venue.py),
plus two only a wire has: HTTP 429 and dropped streams.

Errors: 400 {"error": "rejected", "reason", "message"}; 503 transient (not executed); 504 outcome
unknown (maybe executed); 429 rate limited; 422 a request the server cannot read."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from aiohttp import WSMsgType, web
from loguru import logger

from engine.clock import Clock
from engine.domain.reports import (
    MarketOrderRequest,
    OrderReport,
    PriceTick,
    StopRequest,
    VenueEvent,
)
from engine.domain.values import OrderSide, PositionSide
from engine.errors import OutcomeUnknown, Rejected, RejectReason, Transient
from engine.sim.exchange import HandApi, SimExchange
from engine.sim.venue import FaultPlan, SimVenue, run_price_feed
from engine.sim.watch import ProtectionWatch, TradeLog
from engine.sim.wire import decode, encode, encode_event, parse_decimal, parse_time

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WireFaults:
    """Faults only a process boundary has, on top of the venue's `FaultPlan`."""

    rate_limited: float = 0.0  # a venue call answered 429 (not executed)
    stream_drop: float = 0.0  # per streamed event: the socket is closed after sending it


def parse_faults(data: dict[str, Any]) -> tuple[FaultPlan, WireFaults]:
    """Probabilities by field name (both classes' fields); anything else is refused."""
    plan_names = {f.name for f in fields(FaultPlan)}
    wire_names = {f.name for f in fields(WireFaults)}
    unknown = sorted(set(data) - plan_names - wire_names)
    if unknown:
        raise ValueError(f"unknown fault fields {unknown}; known: "
                         f"{sorted(plan_names | wire_names)}")
    for name, value in data.items():
        if name == "seed":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"seed must be an integer, got {value!r}")
            continue
        if name == "late_positions_seconds":
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability between 0 and 1, got {value!r}")
    plan = FaultPlan(**{k: v for k, v in data.items() if k in plan_names})
    wire = WireFaults(**{k: v for k, v in data.items() if k in wire_names})
    return plan, wire


class PaperExchangeServer:
    def __init__(self, exchange: SimExchange, clock: Clock, *, faults: FaultPlan | None = None,
                 wire_faults: WireFaults | None = None,
                 price_interval: float | None = None) -> None:
        self.exchange = exchange
        self.clock = clock
        self.hand = HandApi(exchange)
        self.watch = ProtectionWatch(exchange)
        self.log = TradeLog(exchange)
        self.price_interval = price_interval
        self.faults_injected = 0
        self._set_faults(faults or FaultPlan(), wire_faults or WireFaults())
        self._sockets: set[web.WebSocketResponse] = set()
        self._tick_sockets: set[web.WebSocketResponse] = set()  # market data (GET /ticks)
        self.stream_connected = asyncio.Event()  # set at each new stream (tests wait on it)
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._errors])
        get, post = web.get, web.post
        self.app.add_routes([
            get("/markets", self._markets), get("/snapshot", self._snapshot),
            get("/open_orders", self._open_orders), get("/ledger", self._ledger),
            get("/order", self._order), post("/orders/stop", self._place_stop),
            post("/orders/amend", self._amend), post("/orders/cancel", self._cancel),
            post("/orders/market", self._market_order), get("/stream", self._stream),
            get("/ticks", self._ticks), get("/mark", self._mark), get("/equity", self._equity),
            post("/hand/open", self._hand_open), post("/hand/close", self._hand_close),
            post("/hand/stop", self._hand_stop), post("/hand/cancel", self._hand_cancel),
            post("/hand/mark", self._hand_mark), post("/hand/drop_streams", self._drop_streams),
            get("/faults", self._get_faults), post("/faults", self._post_faults),
            get("/state", self._state), get("/history", self._history)])

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port (an ephemeral one when `port` is 0)."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        if self.price_interval:
            self._tasks.append(asyncio.create_task(
                run_price_feed(self.exchange, self.clock, self.price_interval), name="prices"))
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        return int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ws in [*self._sockets, *self._tick_sockets]:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _set_faults(self, plan: FaultPlan, wire: WireFaults) -> None:
        if hasattr(self, "venue"):
            self.faults_injected += self.venue.faults_injected
        self.venue = SimVenue(self.exchange, self.clock, faults=plan)
        self.wire_faults = wire
        self._rng = random.Random(plan.seed + 1)

    # --- plumbing ----------------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Rejected as exc:
            return _error(400, "rejected", str(exc), exc.reason.value)
        except OutcomeUnknown as exc:
            return _error(504, "outcome_unknown", str(exc))
        except Transient as exc:
            return _error(503, "transient", str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return _error(422, "bad_request", f"{type(exc).__name__}: {exc}")
        finally:
            self.exchange.save()  # what the answer reports is on disk before it leaves

    def _rate_limit(self) -> None:
        if self.wire_faults.rate_limited and self._rng.random() < self.wire_faults.rate_limited:
            self.faults_injected += 1
            raise web.HTTPTooManyRequests(headers={"Retry-After": "1"},
                                          text='{"error": "rate_limited"}',
                                          content_type="application/json")

    async def _venue_call(self, call: Callable[[], Awaitable[Any]]) -> web.Response:
        self._rate_limit()  # before the call: a 429 never reaches the venue
        return web.json_response(encode(await call()))

    # --- the venue port ----------------------------------------------------------------------
    async def _markets(self, request: web.Request) -> web.Response:
        return web.json_response(encode(list(self.exchange.markets.values())))

    async def _snapshot(self, request: web.Request) -> web.Response:
        return await self._venue_call(lambda: self.venue.snapshot())

    async def _open_orders(self, request: web.Request) -> web.Response:
        return await self._venue_call(lambda: self.venue.fetch_open_orders())

    async def _mark(self, request: web.Request) -> web.Response:
        return await self._venue_call(lambda: self.venue.mark_price(request.query["symbol"]))

    async def _equity(self, request: web.Request) -> web.Response:
        return await self._venue_call(lambda: self.venue.equity())

    async def _ledger(self, request: web.Request) -> web.Response:
        since = parse_time(request.query["since"])
        return await self._venue_call(lambda: self.venue.fetch_ledger(since))

    async def _order(self, request: web.Request) -> web.Response:
        q = request.query
        return await self._venue_call(lambda: self.venue.find_order(q["symbol"], q["client_id"]))

    async def _place_stop(self, request: web.Request) -> web.Response:
        stop = decode(StopRequest, await request.json())
        return await self._venue_call(lambda: self.venue.place_stop(stop))

    async def _amend(self, request: web.Request) -> web.Response:
        body = await request.json()
        order = decode(OrderReport, body["order"])
        return await self._venue_call(lambda: self.venue.amend_stop(
            order, parse_decimal(body["trigger_price"]), parse_decimal(body["qty"])))

    async def _cancel(self, request: web.Request) -> web.Response:
        order = decode(OrderReport, (await request.json())["order"])
        return await self._venue_call(lambda: self.venue.cancel_order(order))

    async def _market_order(self, request: web.Request) -> web.Response:
        order = decode(MarketOrderRequest, await request.json())
        return await self._venue_call(lambda: self.venue.market_order(order))

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        """The event stream: every position, order and fill update, one message each."""
        async def send(ws: web.WebSocketResponse, events: list[VenueEvent]) -> bool:
            self.exchange.save()  # a streamed change is on disk before it leaves, as an answer
            for event in events:
                await ws.send_json(encode_event(event))
                drop = self.wire_faults.stream_drop
                if drop and self._rng.random() < drop:
                    self.faults_injected += 1
                    return False
            return True

        self.stream_connected.set()
        return await self._socket(request, self._sockets, self.exchange.listen, send)

    async def _ticks(self, request: web.Request) -> web.WebSocketResponse:
        """The market-data stream: marks of `?symbols=A,B` as they change, each message a JSON
        list of the ticks that came together (one step of the price feed)."""
        symbols = frozenset(s for s in request.query.get("symbols", "").split(",") if s)

        def listen(put: Callable[[PriceTick], None]) -> Callable[[], None]:
            return self.exchange.listen_marks(
                lambda tick: put(tick) if tick.symbol in symbols else None)

        async def send(ws: web.WebSocketResponse, ticks: list[PriceTick]) -> bool:
            await ws.send_json(encode(ticks))
            return True

        return await self._socket(request, self._tick_sockets, listen, send)

    async def _socket(self, request: web.Request, sockets: set[web.WebSocketResponse],
                      listen: Callable[[Callable[[T], None]], Callable[[], None]],
                      send: Callable[[web.WebSocketResponse, list[T]], Awaitable[bool]]
                      ) -> web.WebSocketResponse:
        """A WebSocket fed by an exchange listener until the client goes away or `send` says
        to drop it; what queued up meanwhile goes as one batch."""
        ws = web.WebSocketResponse(heartbeat=10)
        await ws.prepare(request)
        queue: asyncio.Queue[T] = asyncio.Queue()
        remove = listen(queue.put_nowait)
        sockets.add(ws)
        reader = asyncio.create_task(self._drain(ws))
        try:
            while not ws.closed:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:  # the client went away
                    getter.cancel()
                    break
                batch = [getter.result()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                if not await send(ws, batch):
                    break
        except ConnectionError:
            pass
        finally:
            remove()
            sockets.discard(ws)
            reader.cancel()
            await ws.close()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse) -> None:
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                return

    # --- the hand ----------------------------------------------------------------------------
    async def _hand_open(self, request: web.Request) -> web.Response:
        body = await request.json()
        return _ok(self.hand.open(body["symbol"], PositionSide(body["side"]),
                                  parse_decimal(body["qty"])))

    async def _hand_close(self, request: web.Request) -> web.Response:
        body = await request.json()
        qty = body.get("qty")
        return _ok(self.hand.close(body["symbol"], parse_decimal(qty) if qty is not None else None))

    async def _hand_stop(self, request: web.Request) -> web.Response:
        """A stop placed by hand: on a position (its close side, default its whole size), or
        with an explicit side and qty on any symbol (an orphan on a flat one)."""
        body = await request.json()
        symbol, price = body["symbol"], parse_decimal(body["trigger_price"])
        qty = parse_decimal(body["qty"]) if body.get("qty") is not None else None
        if body.get("side") is not None:
            if qty is None:
                raise ValueError("a stop with a side needs a qty")
            return _ok(self.hand.place_old_stop(symbol, OrderSide(body["side"]), qty, price,
                                                float(body.get("age_seconds", 0))))
        if symbol not in self.exchange.positions:
            raise Rejected(RejectReason.INVALID_ORDER, f"no position on {symbol}: give a side")
        return _ok(self.hand.place_stop(symbol, price, qty))

    async def _hand_cancel(self, request: web.Request) -> web.Response:
        return _ok(self.hand.cancel(str((await request.json())["order_id"])))

    async def _hand_mark(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.exchange.set_mark(body["symbol"], parse_decimal(body["price"]))
        return _ok({"symbol": body["symbol"], "mark": self.exchange.marks[body["symbol"]]})

    async def _drop_streams(self, request: web.Request) -> web.Response:
        sockets = list(self._sockets)
        for ws in sockets:
            await ws.close()
        return _ok({"dropped": len(sockets)})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return _ok({**encode(self.venue.faults), **encode(self.wire_faults)})

    async def _post_faults(self, request: web.Request) -> web.Response:
        plan, wire = parse_faults(await request.json())
        self._set_faults(plan, wire)
        return await self._get_faults(request)

    async def _state(self, request: web.Request) -> web.Response:
        """The exchange's own records: positions, resting orders, marks, every client id used
        more than once, counters, and the unprotected intervals from index `after` on."""
        ex = self.exchange
        seen: dict[str, int] = {}
        for order in ex.orders.values():
            if order.client_id:
                seen[order.client_id] = seen.get(order.client_id, 0) + 1
        intervals, next_index = self.watch.intervals(int(request.query.get("after", "0")))
        return _ok({
            "positions": [ex.position_report(s) for s in sorted(ex.positions)],
            "open_orders": ex.open_orders(), "marks": dict(ex.marks),
            "markets": list(ex.markets.values()),
            "client_ids_reused": sorted(cid for cid, n in seen.items() if n > 1),
            "orders_total": len(ex.orders), "fills_total": len(ex.fills),
            "faults_injected": self.faults_injected + self.venue.faults_injected,
            "unprotected": intervals, "unprotected_next": next_index,
            "streams": len(self._sockets)})

    async def _history(self, request: web.Request) -> web.Response:
        """Fills and stop trigger prices since this process started, from the given indexes."""
        fills, stops = (int(request.query.get(name, "0")) for name in ("fills_after",
                                                                         "stops_after"))
        if fills < 0 or stops < 0:
            raise ValueError(f"fills_after and stops_after must be >= 0, got {fills}, {stops}")
        return _ok(self.log.since(fills, stops))


def _ok(payload: Any) -> web.Response:
    return web.json_response(encode(payload))


def _error(status: int, kind: str, message: str, reason: str | None = None) -> web.Response:
    body = {"error": kind, "message": message}
    if reason is not None:
        body["reason"] = reason
    return web.json_response(body, status=status)


async def serve(exchange: SimExchange, clock: Clock, *, host: str, port: int,
                faults: FaultPlan, wire_faults: WireFaults, price_interval: float | None,
                stop: asyncio.Event, on_ready: Callable[[int], None]) -> None:
    """Run until `stop` is set."""
    server = PaperExchangeServer(exchange, clock, faults=faults, wire_faults=wire_faults,
                                 price_interval=price_interval)
    bound = await server.start(host, port)
    on_ready(bound)
    try:
        await stop.wait()
    finally:
        with suppress(Exception):
            await server.stop()
        logger.info("paper exchange stopped")

