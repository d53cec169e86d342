"""Per-symbol indexes answer exactly what the scans they replaced answered, in the same order."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from engine.domain.reports import OrderKind, OrderReport, OrderStatus, VenueSnapshot
from engine.domain.values import OrderSide
from engine.protection.reconcile import (
    AdoptStop,
    CancelStop,
    CancelZombie,
    PlaceStop,
    ReconcileResult,
)
from engine.protection.view import AccountView

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT")
T = datetime(2026, 1, 5, tzinfo=UTC)


def order(rng: random.Random, order_id: str, *, resting: bool | None = None) -> OrderReport:
    open_ = rng.random() < 0.8 if resting is None else resting
    symbol = SYMBOLS[int(order_id) % len(SYMBOLS)]  # an order never changes its symbol
    return OrderReport(order_id, None, symbol, OrderKind.STOP_LOSS, OrderSide.SELL,
                       Decimal(rng.randint(1, 5)), Decimal(100),
                       rng.random() < 0.5, OrderStatus.OPEN if open_ else OrderStatus.CANCELLED, T)


def scan(view: AccountView, symbol: str) -> list[OrderReport]:
    """The behaviour before the index: every live order, filtered."""
    return [o for o in view.orders() if o.symbol == symbol]


def test_view_orders_by_symbol_match_a_scan_through_snapshots_stream_and_drops() -> None:
    rng = random.Random(16)
    view = AccountView()
    ids = [str(i) for i in range(40)]
    checks = 0
    for _ in range(3000):
        step = rng.random()
        if step < 0.05:
            started = view.mark()
            for _ in range(rng.randint(0, 3)):  # the stream moves while the snapshot is taken
                view.set_order(order(rng, rng.choice(ids)))
            fresh = tuple(order(rng, i) for i in rng.sample(ids, rng.randint(0, 25)))
            view.apply_snapshot(VenueSnapshot((), fresh, T), started)
        elif step < 0.8:
            view.set_order(order(rng, rng.choice(ids)))
        else:
            view.drop_order(rng.choice(ids))
        for symbol in SYMBOLS:
            assert view.orders(symbol) == scan(view, symbol)
            checks += 1
    assert checks == 12000
    assert view.orders("DOGE/USDT:USDT") == []


def test_an_order_update_keeps_its_place_among_its_symbols_orders() -> None:
    rng = random.Random(1)
    view = AccountView()
    first, second = order(rng, "1", resting=True), order(rng, "5", resting=True)
    view.set_order(first)
    view.set_order(second)
    view.set_order(OrderReport(**{**_fields(first), "qty": Decimal(9)}))
    assert [o.order_id for o in view.orders(first.symbol)] == ["1", "5"]
    assert view.orders(first.symbol)[0].qty == Decimal(9)


def _fields(o: OrderReport) -> dict[str, object]:
    return {name: getattr(o, name) for name in OrderReport.__slots__}  # type: ignore[attr-defined]


def test_reconcile_result_for_symbol_matches_a_scan() -> None:
    rng = random.Random(3)
    actions = []
    for i in range(200):
        symbol = rng.choice(SYMBOLS)
        stop = OrderReport(str(i), None, symbol, OrderKind.STOP_LOSS, OrderSide.SELL,
                           Decimal(1), Decimal(1), True, OrderStatus.OPEN, T)
        actions.append(rng.choice([PlaceStop(symbol, Decimal(1), Decimal(1)),
                                   AdoptStop(symbol, stop), CancelStop(symbol, stop, "duplicate"),
                                   CancelZombie(stop)]))
    result = ReconcileResult(tuple(actions), frozenset(), ())

    for symbol in SYMBOLS:
        expected = tuple(a for a in actions
                         if (a.order.symbol if isinstance(a, CancelZombie) else a.symbol)
                         == symbol)
        assert result.for_symbol(symbol) == expected and expected
    assert result.for_symbol("DOGE/USDT:USDT") == ()
    assert result.symbols() == set(SYMBOLS)
    assert result == ReconcileResult(tuple(actions), frozenset(), ())  # the index is no field
