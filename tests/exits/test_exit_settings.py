"""`[exits]` in the settings file -> exit plans and amend limits; bad values are refused."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from engine.exits.plan import Breakeven, LadderStep, Trailing
from tests.test_settings import clean_env  # noqa: F401 (autouse: no VIGIL_* from outside)
from vigil.exits import amend_limits, exit_defaults
from vigil.settings import SettingsError, load_settings

D = Decimal


def test_exits_section_maps_to_plans_per_symbol(tmp_path: Path) -> None:
    config = tmp_path / "v.toml"
    config.write_text(
        "[exits]\nbreakeven_at_r = 1\ntrail_activation_percent = 1.5\n"
        "trail_callback_percent = 0.8\nladder = [[2, 0.5]]\nmin_interval_seconds = 5\n"
        "account_amends_per_minute = 20\n"
        '[exits.symbols."ETH/USDT:USDT"]\ntrail_activation_percent = 1\n'
        "trail_callback_percent = 0.5\n", encoding="utf-8")
    settings = load_settings(config)
    defaults = exit_defaults(settings.exits)
    assert defaults.plan.trailing == Trailing(D("1.5"), D("0.8"))
    assert defaults.plan.breakeven == Breakeven(at_r=D(1))
    assert defaults.plan.ladder == (LadderStep(D(2), D("0.5")),)
    eth = defaults.for_symbol("ETH/USDT:USDT")
    assert eth.trailing == Trailing(D(1), D("0.5")) and eth.breakeven is None
    assert defaults.for_symbol("BTC/USDT:USDT") is defaults.plan
    limits = amend_limits(settings.exits)
    assert limits.min_interval_seconds == 5 and limits.account_per_minute == 20


@pytest.mark.parametrize(("text", "reason"), [
    ("trail_activation_percent = 1", "go together"),
    ("trail_callback_percent = 0", "greater than 0"),
    ("ladder = [[1, 2]]", "lock must be above 0 and below at"),
    ("min_interval = 3", "Extra inputs"),
])
def test_bad_exit_settings_are_refused_by_name(tmp_path: Path, text: str, reason: str) -> None:
    config = tmp_path / "v.toml"
    config.write_text(f"[exits]\n{text}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    assert "exits" in str(caught.value) and reason in str(caught.value)
