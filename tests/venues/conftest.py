"""Real ccxt.pro exchange classes with their HTTP intercepted at `fetch`.

`Recorder.fetch` records each signed request and answers from a route table; replies go through the
exchange's own `handle_errors`, so ccxt's error mapping runs exactly as it would on the wire."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt.pro
import pytest

from engine.clock import Clock, ManualClock
from engine.venues import CcxtVenue, make_venue
from engine.venues.dialects.base import Subscription
from engine.venues.streams import Backoff
from tests.venues import payloads as p

VENUES = ("binance", "bybit", "bitget")
CREDENTIALS: dict[str, tuple[str, str, str | None]] = {
    "binance": ("BNKEY-7f3a91c2e4", "BNSECRET-0d9e8c7b6a5f", None),
    "bybit": ("BYKEY-52ac19e0d7", "BYSECRET-a1b2c3d4e5f6", None),
    "bitget": ("BGKEY-c0ffee1234", "BGSECRET-9988776655aa", "BGPASS-hunter2x"),
}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def params(self) -> dict[str, Any]:
        """Query and body together: venues differ on where the parameters go."""
        return {**self.query, **self.body}


Route = Callable[[Request], Any]


class Recorder:
    """Mixin in front of a ccxt.pro class: canned venue JSON instead of the network."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config or {})  # type: ignore[call-arg]
        self._record()

    def _record(self) -> None:
        self.timeout_on_exit = 0  # ccxt's close() waits 250 ms for aiohttp: nothing to wait for
        self.requests: list[Request] = []
        self.routes: dict[tuple[str, str], Route] = {}
        # False: the answer is ready in the same turn (tests rely on that order of events)
        self.answer_later = False
        self.latency = 0.0  # seconds each answer takes, as over the network (benchmarks)

    def route(self, method: str, path: str, answer: Any) -> None:
        """`answer`: JSON, a Reply, an exception to raise, or a callable(Request) of those."""
        self.routes[(method, path)] = answer if callable(answer) else (lambda _r: answer)

    async def fetch(self, url: str, method: str = "GET", headers: Any = None,
                    body: Any = None) -> Any:
        request = _parse(url, method, headers, body)
        self.requests.append(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        elif self.answer_later:  # in a later turn of the loop, as off the network
            await asyncio.sleep(0)
        handler = self.routes.get((method, request.path))
        if handler is None:
            raise AssertionError(f"no canned reply for {method} {request.path}")
        answer = handler(request)
        if isinstance(answer, BaseException):
            raise answer
        reply = answer if isinstance(answer, Reply) else Reply(200, answer)
        text = json.dumps(reply.body)
        # exactly what ccxt's own fetch does after reading a response
        if self.enableLastResponseHeaders:  # type: ignore[attr-defined]
            self.last_response_headers = dict(reply.headers)
        self.handle_errors(reply.status, "", url, method, {}, text, reply.body,  # type: ignore[attr-defined]
                           headers, body)
        self.handle_http_status_code(reply.status, "", url, method, text)  # type: ignore[attr-defined]
        # decoded afresh, as ccxt's fetch does: its JSON decoding is on the loop in the figures,
        # and what ccxt writes into a parsed answer never leaks into the canned one
        decoded = self.parse_json(text)  # type: ignore[attr-defined]
        return reply.body if decoded is None else decoded  # a bare scalar: as canned

    def sent(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def last(self, method: str, path: str) -> Request:
        found = self.sent(method, path)
        assert found, f"no {method} {path} among {[(r.method, r.path) for r in self.requests]}"
        return found[-1]


class FakeBinance(Recorder, ccxt.pro.binanceusdm):
    pass


class FakeBybit(Recorder, ccxt.pro.bybit):
    pass


class FakeBitget(Recorder, ccxt.pro.bitget):
    pass


def _parse(url: str, method: str, headers: Any, body: Any) -> Request:
    parts = urlsplit(url)
    parsed_body: dict[str, Any] = {}
    if isinstance(body, str) and body:
        parsed_body = json.loads(body) if body[0] in "[{" else dict(parse_qsl(body))
    return Request(method, url, parts.path, dict(parse_qsl(parts.query)), parsed_body,
                   dict(headers or {}))


# --- canned account state ---------------------------------------------------------------------
@dataclass
class Account:
    """What the fake venue currently holds; routes read it on every request."""

    positions: list[dict[str, Any]] = field(default_factory=list)
    stops: list[dict[str, Any]] = field(default_factory=list)
    hedged: bool = False


def _binance_routes(http: Recorder, account: Account) -> None:
    http.route("GET", "/fapi/v1/exchangeInfo", p.binance_exchange_info())
    http.route("GET", "/fapi/v1/leverageBracket", [])
    http.route("GET", "/fapi/v1/positionSide/dual",
               lambda _r: {"dualSidePosition": account.hedged})
    http.route("GET", "/fapi/v3/positionRisk", lambda _r: account.positions)
    http.route("GET", "/fapi/v1/openAlgoOrders", lambda _r: account.stops)


def _bybit_routes(http: Recorder, account: Account) -> None:
    instruments = p.bybit_instruments()
    http.route("GET", "/v5/market/instruments-info",
               lambda r: p.bybit_ok({"category": "linear", "list": []})
               if r.query.get("status") == "PreLaunch" else instruments)
    http.route("GET", "/v5/position/list", lambda _r: p.bybit_ok(
        {"category": "linear", "list": account.positions, "nextPageCursor": ""}))
    http.route("GET", "/v5/order/realtime", lambda _r: p.bybit_ok(
        {"category": "linear", "list": account.stops, "nextPageCursor": ""}))


def _bitget_routes(http: Recorder, account: Account) -> None:
    contracts = p.bitget_contracts()
    http.route("GET", "/api/v2/mix/market/contracts",
               lambda r: contracts if r.query.get("productType") == "USDT-FUTURES"
               else p.bitget_ok([]))
    http.route("GET", "/api/v2/mix/position/all-position",
               lambda _r: p.bitget_ok(account.positions))
    http.route("GET", "/api/v2/mix/order/orders-plan-pending",
               lambda _r: p.bitget_ok({"entrustedList": account.stops, "endId": None}))


FAKES: dict[str, type[Recorder]] = {"binance": FakeBinance, "bybit": FakeBybit,
                                    "bitget": FakeBitget}
ROUTES: dict[str, Callable[[Recorder, Account], None]] = {
    "binance": _binance_routes, "bybit": _bybit_routes, "bitget": _bitget_routes}


def _offline(exchange: Recorder, venue: str) -> Recorder:
    if venue == "bybit":
        # offline: ccxt would otherwise ask two private endpoints whether the account is unified
        exchange.options["enableUnifiedAccount"] = True  # type: ignore[attr-defined]
        exchange.options["enableUnifiedMargin"] = False  # type: ignore[attr-defined]
    return exchange


def new_exchange(venue: str, *, rate_limit: bool = False) -> Recorder:
    # Off by default: TestClock never advances, so a budget that had to wait would wait forever.
    # The budget tests turn it on (as make_venue does) and stay inside the budget.
    return _offline(FAKES[venue]({"enableRateLimit": rate_limit}), venue)


def intercept(exchange: Any, venue: str, account: Account | None = None) -> Recorder:
    """An exchange built elsewhere (the runtime's `make_venue`, rate limiter and our budget
    installed) answered from a route table from now on, the account's routes installed: it
    becomes the venue's fake class in place, so every ccxt method it has keeps running."""
    fake = FAKES[venue]
    assert isinstance(exchange, fake.__bases__[1]), f"{type(exchange).__name__} is no {venue}"
    exchange.__class__ = fake
    exchange._record()
    ROUTES[venue](exchange, account or Account())
    return _offline(exchange, venue)


# --- streams ------------------------------------------------------------------------------------
class FakeWatcher:
    """Scripted websocket: per subscription a queue of batches (lists of raw dicts) or errors."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[list[dict[str, Any]] | BaseException]] = {}
        self.calls: list[str] = []

    def queue(self, name: str) -> asyncio.Queue[list[dict[str, Any]] | BaseException]:
        return self.queues.setdefault(name, asyncio.Queue())

    def push(self, name: str, item: list[dict[str, Any]] | BaseException) -> None:
        self.queue(name).put_nowait(item)

    async def __call__(self, subscription: Subscription) -> list[dict[str, Any]]:
        self.calls.append(subscription.name)
        item = await self.queue(subscription.name).get()
        if isinstance(item, BaseException):
            raise item
        return item


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class TestClock(ManualClock):
    """ManualClock whose sleep only records: stream backoff must not wait in tests."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Harness:
    name: str
    venue: CcxtVenue
    http: Recorder
    account: Account
    watcher: FakeWatcher
    clock: Clock

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in CREDENTIALS[self.name] if s)

    def mark(self) -> int:
        return len(self.http.requests)

    def since(self, mark: int) -> list[Request]:
        return self.http.requests[mark:]


async def build(venue: str, *, start: bool = True, testnet: bool = False,
                account: Account | None = None, rate_limit: bool = False,
                clock: Clock | None = None) -> Harness:
    """`clock`: a ManualClock for tests that advance time, SystemClock for the bench (default:
    a TestClock)."""
    account = account or Account()
    http = new_exchange(venue, rate_limit=rate_limit)
    ROUTES[venue](http, account)
    key, secret, password = CREDENTIALS[venue]
    watcher, clock = FakeWatcher(), clock or TestClock()
    instance = make_venue(f"acct-{venue}", venue, api_key=key, secret=secret, password=password,
                          testnet=testnet, exchange=http, clock=clock, watcher=watcher,
                          backoff=Backoff(initial=1.0, factor=2.0, cap=8.0, jitter=0.5))
    harness = Harness(venue, instance, http, account, watcher, clock)
    if start:
        await instance.start()
    return harness


@pytest.fixture(params=VENUES)
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness = await build(request.param)
    yield harness
    await harness.venue.close()


@pytest.fixture
async def binance() -> AsyncIterator[Harness]:
    harness = await build("binance")
    yield harness
    await harness.venue.close()


@pytest.fixture
async def bybit() -> AsyncIterator[Harness]:
    harness = await build("bybit")
    yield harness
    await harness.venue.close()


@pytest.fixture
async def bitget() -> AsyncIterator[Harness]:
    harness = await build("bitget")
    yield harness
    await harness.venue.close()
