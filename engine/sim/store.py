"""The paper exchange's durable state in its own SQLite file (not Vigil's database: the exchange
is another party, and in `vigil paper-exchange serve` another process).

The store listens to every exchange mutation (orders, fills, positions, the mark of the symbol
touched) and commits them in one transaction at the end of the event-loop turn, or earlier
when an answer is about to leave: the venue (engine/sim/venue.py: commands, reads and its
stream) and the exchange server call `SimExchange.save()` first, so nothing is reported before
it is on disk. At 50 ms of latency the 2,000 stops of a first cycle, executed in one turn, are
one commit instead of 4,000 (each held the shared loop ~45 us); an answer sent at once (no
latency) is still one commit per answer. Without a running loop each mutation commits at once.
Marks moved by the price feed alone are saved by `run_checkpoints`. Money and times are TEXT
(engine/sim/wire.py's encoding). The ledger is the fills (engine/sim/ledger.py), and the
client-id history is the orders table."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from engine.clock import Clock
from engine.domain.reports import (
    Fill,
    FillUpdate,
    MarketInfo,
    OrderReport,
    OrderUpdate,
    PositionUpdate,
    VenueEvent,
)
from engine.domain.values import PositionSide
from engine.sim.demo import seed_demo
from engine.sim.exchange import SimExchange, SimPosition
from engine.sim.wire import decode, encode

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS markets (
    symbol TEXT PRIMARY KEY, tick TEXT NOT NULL, lot TEXT NOT NULL, min_qty TEXT NOT NULL,
    mark TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, side TEXT NOT NULL, qty TEXT NOT NULL, entry_price TEXT NOT NULL,
    opened_at TEXT NOT NULL, realized_pnl TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, client_id TEXT, symbol TEXT NOT NULL, status TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_client_id ON orders (client_id);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status);
CREATE TABLE IF NOT EXISTS fills (id INTEGER PRIMARY KEY, order_id TEXT NOT NULL,
    body TEXT NOT NULL);
"""


class PaperStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # autocommit: each mutation is its own transaction, committed before the call returns
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: paper exchange schema {row[0]}, expected "
                               f"{SCHEMA_VERSION}")
        self.fresh = row is None
        self.exchange: SimExchange | None = None
        self._removers: list[Callable[[], None]] = []
        # Rows of mutations not yet committed (SQL, parameters), in order; marks by symbol.
        self._rows: list[tuple[str, tuple[object, ...]]] = []
        self._marks: dict[str, str] = {}
        self._flush_scheduled = False

    # --- attaching ---------------------------------------------------------------------------
    def attach(self, exchange: SimExchange) -> None:
        """Load the saved state into `exchange` (or save its initial one), then write through."""
        self.exchange = exchange
        if self.fresh:
            self.checkpoint()
            self.conn.execute("INSERT INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))
            self.fresh = False
        else:
            self._load(exchange)
        self._removers = [exchange.listen(self._on_event), exchange.on_save(self.flush)]

    def _load(self, exchange: SimExchange) -> None:
        markets, marks = {}, {}
        for symbol, tick, lot, min_qty, mark in self.conn.execute(
                "SELECT symbol, tick, lot, min_qty, mark FROM markets"):
            markets[symbol] = MarketInfo(symbol, Decimal(tick), Decimal(lot), Decimal(min_qty))
            marks[symbol] = Decimal(mark)
        positions = {
            symbol: SimPosition(symbol, PositionSide(side), Decimal(qty), Decimal(entry),
                                _time(opened), Decimal(realized))
            for symbol, side, qty, entry, opened, realized in self.conn.execute(
                "SELECT symbol, side, qty, entry_price, opened_at, realized_pnl FROM positions")}
        orders = [decode(OrderReport, json.loads(body)) for (body,) in self.conn.execute(
            "SELECT body FROM orders ORDER BY order_id")]
        fills = [decode(Fill, json.loads(body)) for (body,) in self.conn.execute(
            "SELECT body FROM fills ORDER BY id")]
        exchange.restore(markets=markets, marks=marks, positions=positions, orders=orders,
                         fills=fills)

    def close(self) -> None:
        if self.exchange is not None:
            self.save_marks()
        for remove in self._removers:
            remove()
        self._removers = []
        self.conn.close()

    # --- writing -----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Everything the exchange holds, in one transaction."""
        ex = self._ex()
        for symbol, info in ex.markets.items():
            self._write("INSERT OR REPLACE INTO markets VALUES (?, ?, ?, ?, ?)",
                        (symbol, str(info.tick), str(info.lot), str(info.min_qty),
                         str(ex.marks[symbol])))
        self._write("DELETE FROM positions", ())
        for symbol in ex.positions:
            self._save_position(symbol)
        for order in ex.orders.values():
            self._save_order(order)
        self._write("DELETE FROM fills", ())
        for fill in ex.fills:
            self._save_fill(fill)
        self.flush()

    def save_marks(self) -> None:
        ex = self._ex()
        self.flush()
        with self._transaction():
            self.conn.executemany("UPDATE markets SET mark = ? WHERE symbol = ?",
                                  [(str(mark), symbol) for symbol, mark in ex.marks.items()])

    async def run_checkpoints(self, clock: Clock, interval: float) -> None:
        """Marks that moved without an order event, saved every `interval` until cancelled."""
        while True:
            await clock.sleep(interval)
            self.save_marks()

    def flush(self) -> None:
        """Commit the mutations seen so far, in one transaction."""
        self._flush_scheduled = False
        if not self._rows and not self._marks:
            return
        rows, marks = self._rows, self._marks
        with self._transaction():
            for sql, params in rows:
                self.conn.execute(sql, params)
            self.conn.executemany("UPDATE markets SET mark = ? WHERE symbol = ?",
                                  [(mark, symbol) for symbol, mark in marks.items()])
        # only once committed: a failed commit keeps them for the next try, and raises
        self._rows, self._marks = [], {}

    def _on_event(self, event: VenueEvent) -> None:
        ex = self._ex()
        match event:
            case OrderUpdate(order=order):
                self._save_order(order)
                symbol = order.symbol
            case FillUpdate(fill=fill):
                self._save_fill(fill)
                symbol = fill.symbol
            case PositionUpdate(symbol=symbol):
                self._save_position(symbol)
            case _:
                return
        self._marks[symbol] = str(ex.marks[symbol])
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (tools, sync tests): write through
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)  # at the start of the next turn, before any timer fires

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        self._rows.append((sql, params))

    def _save_order(self, order: OrderReport) -> None:
        self._write("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?)",
                    (int(order.order_id), order.client_id, order.symbol,
                     order.status.value, json.dumps(encode(order))))

    def _save_fill(self, fill: Fill) -> None:
        self._write("INSERT INTO fills (order_id, body) VALUES (?, ?)",
                    (fill.order_id, json.dumps(encode(fill))))

    def _save_position(self, symbol: str) -> None:
        pos = self._ex().positions.get(symbol)
        if pos is None:
            self._write("DELETE FROM positions WHERE symbol = ?", (symbol,))
            return
        self._write("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?)",
                    (symbol, pos.side.value, str(pos.qty), str(pos.entry_price),
                     _time_text(pos.opened_at), str(pos.realized_pnl)))

    def _transaction(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn  # its context manager commits, or rolls back on an error

    def _ex(self) -> SimExchange:
        if self.exchange is None:
            raise RuntimeError("the paper store is not attached to an exchange")
        return self.exchange


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _time_text(moment: object) -> str:
    if not isinstance(moment, datetime):
        raise TypeError(f"position opened_at must be a datetime, got {moment!r}")
    return moment.isoformat()


def open_paper_exchange(path: Path, clock: Clock, *, seed: int, demo: bool = False,
                        orphan_stop_age_seconds: float | None = None
                        ) -> tuple[SimExchange, PaperStore]:
    """The simulated exchange with its state in `path`: restored if the file holds one, else
    new (with the demo positions, created this once when `demo`)."""
    store = PaperStore(path)
    exchange = SimExchange(clock, seed=seed)
    if store.fresh and demo:
        seed_demo(exchange, orphan_stop_age_seconds)
    store.attach(exchange)
    return exchange, store
