"""Paper mode's demo account: two positions, and only one of them has a stop."""

from __future__ import annotations

from decimal import Decimal

from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi, SimExchange


def seed_demo(exchange: SimExchange) -> None:
    hand = HandApi(exchange)
    hand.open("BTC/USDT:USDT", PositionSide.LONG, Decimal("0.05"))
    hand.place_stop("BTC/USDT:USDT", Decimal("63000"))
    hand.open("ETH/USDT:USDT", PositionSide.SHORT, Decimal("1.5"))  # left without a stop
