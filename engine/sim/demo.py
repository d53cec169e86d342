"""Paper mode's demo account: two positions, and only one of them has a stop; optionally an
orphaned stop on a flat symbol, placed some time before start (to try the zombie clean-up)."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.values import OrderSide, PositionSide
from engine.sim.exchange import HandApi, SimExchange


def seed_demo(exchange: SimExchange, orphan_stop_age_seconds: float | None = None) -> None:
    hand = HandApi(exchange)
    hand.open("BTC/USDT:USDT", PositionSide.LONG, Decimal("0.05"))
    hand.place_stop("BTC/USDT:USDT", Decimal("63000"))
    hand.open("ETH/USDT:USDT", PositionSide.SHORT, Decimal("1.5"))  # left without a stop
    if orphan_stop_age_seconds is not None:
        hand.place_old_stop("SOL/USDT:USDT", OrderSide.SELL, Decimal("1"), Decimal("140"),
                            orphan_stop_age_seconds)
