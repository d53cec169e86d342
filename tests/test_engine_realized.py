"""The loss cap's realized figure comes from the venue's own ledger (fees included)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from engine.clock import ManualClock
from engine.domain.values import PositionSide
from engine.sim.exchange import HandApi
from vigil.runtime import Engine
from vigil.settings import load_settings

ETH = "ETH/USDT:USDT"


async def test_realized_since_sums_the_ledger_net_of_fees(tmp_path: Path) -> None:
    clock = ManualClock()
    engine = await Engine.build(load_settings(None, data_dir=tmp_path / "data"), clock)
    try:
        since = clock.now() - timedelta(minutes=1)
        sim = engine.sims["paper"]
        opening_fees = sum((f.fee for f in sim.fills), Decimal(0))  # the demo's two entries
        assert await engine.realized_since("paper", since) == -opening_fees

        sim.set_mark(ETH, Decimal("3100"))  # the demo's ETH short is in profit
        HandApi(sim).close(ETH, Decimal("0.5"))
        closing = sim.fills[-1]
        await clock.advance(31)  # past the loss cap's ledger freshness
        expected = closing.realized_pnl - closing.fee - opening_fees
        assert await engine.realized_since("paper", since) == expected
        assert closing.realized_pnl > 0
        assert await engine.realized_since("paper", clock.now()) == 0  # nothing since now
        HandApi(sim).open(ETH, PositionSide.SHORT, Decimal("1"))
        assert await engine.realized_since("paper", since) == expected  # fresh enough: cached
    finally:
        await engine.stop()
        await engine.close()
