"""Settings: defaults, TOML file, VIGIL_* environment and .env; readable `field: reason` errors."""

from __future__ import annotations

import os
from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from vigil.settings import Settings, SettingsError, load_settings

TOKEN = "123456789:AAE-top-secret-token-value"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cwd (no stray .env) and no VIGIL_* variables from the outer environment."""
    for name in list(os.environ):
        if name.upper().startswith("VIGIL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_of(*args: object, **kwargs: object) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_defaults_are_one_sim_account_in_paper_mode() -> None:
    settings = load_settings()

    assert [(a.name, a.venue) for a in settings.accounts] == [("paper", "sim")]
    assert settings.paper_mode
    assert settings.telegram.token is None and settings.telegram.admins == ()
    assert settings.guard.sla_seconds == 5.0 and settings.guard.stop_percent == Decimal("2")
    assert settings.guard.crossed_policy == "close"
    assert settings.reports.timezone == "UTC"
    assert settings.db_path == Path("data") / "vigil.sqlite3"


def test_values_come_from_the_toml_file(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", """
data_dir = "/srv/vigil"
log_level = "DEBUG"

[telegram]
token = "123456789:AAE-top-secret-token-value"
admins = [11, 12]
default_language = "ru"

[[accounts]]
name = "main"
venue = "bybit"
testnet = false

[[accounts]]
name = "paper"

[guard]
sla_seconds = 3.5
stop_percent = "1.5"
crossed_policy = "tighten"

[guard.symbols."BTC/USDT:USDT"]
stop_percent = "0.8"

[reports]
daily_time = "21:30"
timezone = "Europe/Moscow"
""")
    settings = load_settings(config)

    assert settings.data_dir == Path("/srv/vigil") and settings.log_level == "DEBUG"
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == TOKEN
    assert settings.telegram.admins == (11, 12) and settings.telegram.default_language == "ru"
    assert [(a.name, a.venue, a.testnet) for a in settings.accounts] == [
        ("main", "bybit", False), ("paper", "sim", True)]
    assert not settings.paper_mode
    assert settings.guard.sla_seconds == 3.5 and settings.guard.stop_percent == Decimal("1.5")
    assert settings.guard.crossed_policy == "tighten"
    assert settings.guard.symbols["BTC/USDT:USDT"].stop_percent == Decimal("0.8")
    assert settings.guard.interval_seconds == 10.0  # untouched keys keep their defaults
    assert settings.reports.daily_time == time(21, 30)
    assert settings.reports.timezone == "Europe/Moscow"


def test_environment_overrides_the_file_key_by_key(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "vigil.toml", """
[guard]
interval_seconds = 20
sla_seconds = 4

[telegram]
admins = [5]
""")
    monkeypatch.setenv("VIGIL_GUARD__SLA_SECONDS", "2.5")
    monkeypatch.setenv("VIGIL_TELEGRAM__ADMINS", "[1,2]")
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "WARNING")

    settings = load_settings(config)

    assert settings.guard.sla_seconds == 2.5
    assert settings.guard.interval_seconds == 20.0  # the file's sibling key survives the merge
    assert settings.telegram.admins == (1, 2)
    assert settings.log_level == "WARNING"


def test_dotenv_is_read_and_the_environment_beats_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / ".env", "VIGIL_GUARD__SLA_SECONDS=7\nVIGIL_LOG_LEVEL=ERROR\n"
                             f"VIGIL_TELEGRAM__TOKEN={TOKEN}\n")
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "DEBUG")

    settings = load_settings()

    assert settings.guard.sla_seconds == 7.0
    assert settings.log_level == "DEBUG"
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == TOKEN


def test_dotenv_may_hold_the_master_key_but_not_a_misspelt_setting(tmp_path: Path) -> None:
    """VIGIL_MASTER_KEY and VIGIL_CONFIG are read by vigil itself, not settings fields."""
    write(tmp_path / ".env", "VIGIL_MASTER_KEY=abc\nVIGIL_CONFIG=x.toml\n"
                             "VIGIL_GUARD__SLA_SECONDS=3\n")
    assert load_settings().guard.sla_seconds == 3.0
    write(tmp_path / ".env", "VIGIL_GUARD__SLA_SECOND=3\n")
    with pytest.raises(SettingsError, match=r"guard\.sla_second"):
        load_settings()


def test_explicit_overrides_win_over_everything(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "vigil.toml", 'log_level = "ERROR"\n')
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "WARNING")
    assert load_settings(config, log_level="DEBUG").log_level == "DEBUG"


def test_unknown_key_in_the_file_is_rejected_by_name(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", "[telegram]\nfoo = 1\n")
    message = error_of(config)
    assert message.splitlines() == ["telegram.foo: Extra inputs are not permitted"]


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", "colour = 'blue'\n")
    assert error_of(config).startswith("colour: ")


def test_unknown_nested_key_in_the_environment_is_rejected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TELEGRAM__FOO", "1")
    assert error_of().startswith("telegram.foo: ")


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", '[guard]\nsla_seconds = "soon"\n')
    message = error_of(config)
    assert message.startswith("guard.sla_seconds: ")
    assert "number" in message


def test_every_problem_is_listed_one_per_line(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", """
log_level = "LOUD"
[guard]
sla_seconds = -1
[telegram]
admins = ["bob"]
""")
    fields = sorted(line.split(":", 1)[0] for line in error_of(config).splitlines())
    assert fields == ["guard.sla_seconds", "log_level", "telegram.admins.0"]


@pytest.mark.parametrize("token", ["no-colon-here", "abc:def", "123:", ":secret"])
def test_badly_shaped_token_is_rejected_without_echoing_it(
        token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TELEGRAM__TOKEN", token)
    message = error_of()
    assert message.startswith("telegram.token: ")
    assert "@BotFather" in message
    assert token not in message


def test_empty_token_means_no_bot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TELEGRAM__TOKEN", "")
    assert load_settings().telegram.token is None


def test_unknown_time_zone_is_rejected(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", '[reports]\ntimezone = "Mars/Olympus_Mons"\n')
    message = error_of(config)
    assert message.startswith("reports.timezone: ")
    assert "Mars/Olympus_Mons" in message and "IANA" in message


def test_duplicate_account_names_are_rejected(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", """
[[accounts]]
name = "main"
venue = "binanceusdm"
[[accounts]]
name = "main"
venue = "bybit"
""")
    message = error_of(config)
    assert message.startswith("accounts: ")
    assert "duplicate account names ['main']" in message


def test_no_accounts_is_rejected() -> None:
    assert error_of(accounts=[]).startswith("accounts: ")


def test_bad_account_name_and_venue_are_named(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", """
[[accounts]]
name = "has space"
venue = "kraken"
""")
    fields = sorted(line.split(":", 1)[0] for line in error_of(config).splitlines())
    assert fields == ["accounts.0.name", "accounts.0.venue"]


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    assert error_of(missing) == f"config: file not found: {missing}"


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    assert error_of(tmp_path).startswith("config: file not found")


def test_malformed_toml(tmp_path: Path) -> None:
    config = write(tmp_path / "vigil.toml", "[guard\nsla_seconds = 1\n")
    message = error_of(config)
    assert message.startswith("config: ")
    assert "line 1" in message


def test_secret_token_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TELEGRAM__TOKEN", TOKEN)
    settings = load_settings()

    assert isinstance(settings.telegram.token, SecretStr)
    for text in (repr(settings), str(settings), repr(settings.telegram),
                 str(settings.model_dump()), settings.model_dump_json()):
        assert TOKEN not in text
        assert "AAE-top-secret" not in text
    assert settings.telegram.token.get_secret_value() == TOKEN


def test_settings_are_frozen() -> None:
    settings = load_settings()

    with pytest.raises(ValidationError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.guard.sla_seconds = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.accounts[0].venue = "bybit"  # type: ignore[misc]
    assert settings.log_level == "INFO" and settings.guard.sla_seconds == 5.0


def test_a_failed_load_does_not_leak_the_config_into_the_next(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "[telegram]\nfoo = 1\n")
    error_of(bad)
    assert load_settings() == Settings()  # the next load without a file sees only defaults


def test_http_section_defaults_and_bad_values() -> None:
    h = load_settings(None).http
    assert (h.enabled, h.host, h.port, h.token) == (False, "127.0.0.1", 8080, None)
    for bad, where in (({"port": 70000}, "http.port"), ({"token": "short"}, "http.token"),
                       ({"loop_stall_seconds": 0}, "http.loop_stall_seconds")):
        with pytest.raises(SettingsError, match=where.replace(".", r"\.")):
            load_settings(None, http=bad)
