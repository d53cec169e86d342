"""The composition root exports each ccxt account's request budget (vigil/runtime.py)."""

from __future__ import annotations

import os
from pathlib import Path

from engine.clock import ManualClock
from storage.db import Database
from storage.secrets import ApiCredentials, KeyStore
from vigil.runtime import Engine
from vigil.settings import load_settings


async def test_every_ccxt_account_has_its_budget_in_the_metrics_and_status(
        tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data", accounts=[
        {"name": "paper"}, {"name": "bn", "venue": "binanceusdm"}, {"name": "bb", "venue": "bybit"},
        {"name": "nokeys", "venue": "bitget"}])
    settings.data_dir.mkdir(parents=True)
    db = await Database.open(settings.db_path)
    keys = KeyStore(db.conn, KeyStore.load_master_key(settings.data_dir, os.environ))
    for name in ("bn", "bb"):
        await keys.put(name, ApiCredentials.of(f"KEY-{name}-0123456789", "SECRET-abcdef012345"))
    await db.close()

    engine = await Engine.build(settings, ManualClock())  # builds venues; nothing is sent yet
    try:
        sample = engine.metrics.registry.get_sample_value
        assert sample("vigil_venue_weight_limit", {"account": "bn"}) == 2400  # per minute
        assert sample("vigil_venue_weight_limit", {"account": "bb"}) == 50  # per second
        # the simulator has no limit, and an account without keys has no venue to budget
        assert sample("vigil_venue_weight_limit", {"account": "paper"}) is None
        assert sample("vigil_venue_weight_limit", {"account": "nokeys"}) is None

        weights = {a.name: a.weight for a in engine.control.status().accounts}
        assert weights["paper"] is None and weights["nokeys"] is None
        bn = weights["bn"]
        assert bn is not None and (bn.limit, bn.window_seconds, bn.used) == (2400, 60, 0)
    finally:
        await engine.close()
