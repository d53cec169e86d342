"""[chaos] settings: named profiles, overrides, and the refusal for a live (non-testnet)
account, at load time and from the command line (exit 2, the field named)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.chaos import HARSH, ChaosVenue, build_profile
from vigil.cli import EXIT_CONFIG, main
from vigil.runtime import Engine
from vigil.settings import SettingsError, load_settings

LIVE = [{"name": "main", "venue": "binanceusdm", "testnet": False}]


def test_a_live_account_refuses_any_chaos_profile_naming_the_field() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(None, accounts=LIVE, chaos={"profile": "mild"})
    assert "chaos" in str(err.value) and "chaos.profile = 'mild' is refused" in str(err.value)
    assert "'main' (binanceusdm) is live" in str(err.value)


def test_testnet_and_paper_accounts_may_run_chaos() -> None:
    settings = load_settings(None, accounts=[{"name": "t", "venue": "bybit", "testnet": True},
                                             {"name": "p", "venue": "sim"}],
                             chaos={"profile": "harsh", "order_delay_ms": 100})
    profile = build_profile(settings.chaos.profile, settings.chaos.overrides())
    assert profile.order_delay_seconds == 0.1
    assert profile.rejection_probability == HARSH.rejection_probability


@pytest.mark.parametrize(("chaos", "message"), [
    ({"profile": "off", "rejection_probability": 0.5}, "chaos.profile is off"),
    ({"profile": "mild", "rejection_probability": 1.5}, "chaos.rejection_probability"),
    ({"profile": "wild"}, "chaos.profile"),
    ({"profile": "mild", "order_delay_ms": -1}, "chaos.order_delay_ms"),
])
def test_bad_chaos_values_are_refused(chaos: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(None, chaos=chaos)


def test_vigil_run_refuses_chaos_on_a_live_account_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n[chaos]\nprofile = "harsh"\n'
                      '[[accounts]]\nname = "main"\nvenue = "bybit"\ntestnet = false\n')
    assert main(["--config", str(config), "run"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "chaos.profile = 'harsh' is refused" in err
    assert not (tmp_path / "data").exists()  # nothing was started or created


async def test_the_engine_wraps_every_venue_and_status_names_the_profile(tmp_path: Path
                                                                          ) -> None:
    settings = load_settings(None, data_dir=tmp_path, chaos={"profile": "mild", "seed": 4})
    engine = await Engine.build(settings)
    try:
        assert all(isinstance(v, ChaosVenue) for v in engine.venues.values())
        assert engine.control.status().chaos == "mild"
    finally:
        await engine.stop()
        await engine.close()
    plain = await Engine.build(load_settings(None, data_dir=tmp_path))
    try:
        assert not any(isinstance(v, ChaosVenue) for v in plain.venues.values())
        assert plain.control.status().chaos is None
    finally:
        await plain.stop()
        await plain.close()
