"""A big book served the way each venue pages it, for the real ccxt classes (issue 16 item 8).

N long positions, each with a resting sell stop, on N extra markets (`PG0000USDT`...). The
routes answer like the venue: Binance USD-M lists every position (`/fapi/v3/positionRisk`) and
every open algo order (`/fapi/v1/openAlgoOrders`) in one answer; Bybit v5 pages
`/v5/position/list` (at most 200, default 20) and `/v5/order/realtime` (at most 50, default 20)
by `nextPageCursor`; Bitget v2 lists every position (`all-position`) and pages
`orders-plan-pending` (at most 100, newest first) by `idLessThan` / `endId`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.clock import Clock
from tests.venues import payloads as p
from tests.venues.conftest import Harness, Recorder, Request, build

Json = dict[str, Any]

# (max, default) page sizes per paged listing, from the venues' API docs
BYBIT_POSITIONS = (200, 20)
BYBIT_ORDERS = (50, 20)
BITGET_PLAN_ORDERS = (100, 100)
FIRST_ORDER_ID = 10_000_000  # Bitget ids grow with time; older pages hold smaller ids


def bases(n: int) -> list[str]:
    return [f"PG{i:04d}" for i in range(n)]


def symbols(n: int) -> list[str]:
    return [f"{b}/USDT:USDT" for b in bases(n)]


def client_id(i: int) -> str:
    return f"vgsbook{i:06d}"


@dataclass(frozen=True, slots=True)
class Book:
    venue: str
    size: int
    protected: bool = True  # False: no position has its stop yet (the venue takes placements)

    def markets(self) -> Json:
        """The venue's market listing with the book's markets added (one template copied)."""
        if self.venue == "binance":
            info = p.binance_exchange_info()
            template = next(s for s in info["symbols"] if s["baseAsset"] == "ETH")
            info["symbols"] += [{**template, "symbol": f"{b}USDT", "pair": f"{b}USDT",
                                 "baseAsset": b} for b in bases(self.size)]
            return info
        if self.venue == "bybit":
            answer = p.bybit_instruments()
            template = next(i for i in answer["result"]["list"] if i["baseCoin"] == "ETH")
            answer["result"]["list"] += [{**template, "symbol": f"{b}USDT", "baseCoin": b}
                                         for b in bases(self.size)]
            return answer
        answer = p.bitget_contracts()
        template = next(c for c in answer["data"] if c["baseCoin"] == "ETH")
        answer["data"] += [{**template, "symbol": f"{b}USDT", "baseCoin": b}
                           for b in bases(self.size)]
        return answer

    def positions(self) -> list[Json]:
        return [p.long_position(self.venue, b) for b in bases(self.size)]

    def stops(self) -> list[Json]:
        """Newest first, as the paged venues list them."""
        if not self.protected:
            return []
        return [p.resting_stop(self.venue, str(FIRST_ORDER_ID + i), client_id(i), base=b)
                for i, b in reversed(list(enumerate(bases(self.size))))]


# where a stop placement carries our client id, size and trigger
PLACED_FIELDS = {"binance": ("clientAlgoId", "quantity", "triggerPrice"),
                 "bybit": ("orderLinkId", "qty", "triggerPrice"),
                 "bitget": ("clientOid", "size", "triggerPrice")}


@dataclass(slots=True)
class Placements:
    """The venue's side of a stop placement: the stop, as asked, joins the listing of resting
    stops, and the venue answers as it does. Bitget lists newest first by id (a walk of older
    pages is not shifted); Bybit's cursor here is an offset, so a new stop goes to the end."""

    venue: str
    stops: list[Json]
    next_id: int

    def __call__(self, request: Request) -> Json:
        key, qty, trigger = (request.params[k] for k in PLACED_FIELDS[self.venue])
        order_id, self.next_id = str(self.next_id), self.next_id + 1
        base = str(request.params["symbol"]).removesuffix("USDT")
        if self.venue == "binance":
            row = p.binance_algo_order(int(order_id), key, base=base, qty=qty, trigger=trigger)
            self.stops.append(row)
            return row  # Binance answers with the algo order itself
        if self.venue == "bybit":
            self.stops.append(p.bybit_stop_order(order_id, key, base=base, qty=qty,
                                                 trigger=trigger))
        else:
            self.stops.insert(0, p.bitget_plan_order(order_id, key, base=base, size=qty,
                                                     trigger=trigger))
        return p.placed(self.venue, order_id, key)


def _limit(request: Request, sizes: tuple[int, int]) -> int:
    most, default = sizes
    asked = request.params.get("limit")
    return min(int(asked), most) if asked else default


def _of_symbol(rows: list[Json], request: Request) -> list[Json]:
    """A listing asked for one symbol holds that symbol's rows only."""
    symbol = request.params.get("symbol")
    return rows if symbol is None else [r for r in rows if r.get("symbol") == symbol]


def _cursor_page(rows: list[Json], request: Request, sizes: tuple[int, int]) -> Json:
    """Bybit: an opaque cursor (here the offset); empty on the last page."""
    rows = _of_symbol(rows, request)
    start = int(request.params.get("cursor") or 0)
    end = start + _limit(request, sizes)
    return p.bybit_ok({"category": "linear", "list": rows[start:end],
                       "nextPageCursor": str(end) if end < len(rows) else ""})


def _id_page(rows: list[Json], request: Request, sizes: tuple[int, int]) -> Json:
    """Bitget: newest first; `idLessThan` continues below the last page's `endId`."""
    below = request.params.get("idLessThan")
    older = [r for r in _of_symbol(rows, request)
             if below is None or int(r["orderId"]) < int(below)]
    page = older[:_limit(request, sizes)]
    return p.bitget_ok({"entrustedList": page or None,
                        "endId": page[-1]["orderId"] if page else None})


def serve(harness: Harness, book: Book) -> None:
    """Install the book's routes (markets too: call before `venue.start()`)."""
    route_book(harness.http, book)


def route_book(http: Recorder, book: Book) -> None:
    """`serve` on a bare exchange (one `intercept` took over)."""
    positions, stops = book.positions(), book.stops()
    if not book.protected:
        http.route(*p.PLACE_STOP[book.venue],
                   Placements(book.venue, stops, FIRST_ORDER_ID + book.size))
    if book.venue == "binance":
        http.route("GET", "/fapi/v1/exchangeInfo", book.markets())
        http.route("GET", "/fapi/v3/positionRisk", positions)
        http.route("GET", "/fapi/v1/openAlgoOrders", stops)
    elif book.venue == "bybit":
        instruments = book.markets()
        http.route("GET", "/v5/market/instruments-info",
                   lambda r: p.bybit_ok({"category": "linear", "list": []})
                   if r.query.get("status") == "PreLaunch" else instruments)
        http.route("GET", "/v5/position/list",
                   lambda r: _cursor_page(positions, r, BYBIT_POSITIONS))
        http.route("GET", "/v5/order/realtime", lambda r: _cursor_page(stops, r, BYBIT_ORDERS))
    else:
        contracts = book.markets()
        http.route("GET", "/api/v2/mix/market/contracts",
                   lambda r: contracts if r.query.get("productType") == "USDT-FUTURES"
                   else p.bitget_ok([]))
        http.route("GET", "/api/v2/mix/position/all-position", p.bitget_ok(positions))
        http.route("GET", "/api/v2/mix/order/orders-plan-pending",
                   lambda r: _id_page(stops, r, BITGET_PLAN_ORDERS))


async def book_venue(venue: str, size: int, *, clock: Clock | None = None) -> Harness:
    """A started CcxtVenue over the real ccxt class, serving a book of `size` positions."""
    harness = await build(venue, start=False, clock=clock)
    serve(harness, Book(venue, size))
    await harness.venue.start()
    return harness
