"""Settings: a TOML file (--config or VIGIL_CONFIG), overridden by VIGIL_<SECTION>__<KEY>
environment variables and .env. Frozen; unknown keys are rejected; secrets are SecretStr."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_config_file: ContextVar[Path | None] = ContextVar("vigil_config_file", default=None)

VenueName = Literal["sim", "binanceusdm", "bybit", "bitget"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TelegramSettings(Section):
    token: SecretStr | None = None
    api_url: str = "https://api.telegram.org"
    admins: tuple[int, ...] = ()
    traders: tuple[int, ...] = ()
    viewers: tuple[int, ...] = ()
    alert_chats: tuple[int, ...] = ()
    default_language: Literal["en", "ru"] = "en"
    # at most one "unknown users wrote" digest per admin in this many seconds
    stranger_window_seconds: float = Field(default=600.0, gt=0)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        bot_id, sep, rest = value.get_secret_value().partition(":")
        if not (sep and bot_id.isdigit() and rest):
            raise ValueError("must look like <bot id digits>:<secret> as given by @BotFather")
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class SymbolPolicy(Section):
    stop_percent: Decimal = Field(gt=0, lt=100)


class GuardSettings(Section):
    interval_seconds: float = Field(default=10.0, gt=0)
    sla_seconds: float = Field(default=5.0, gt=0)
    stop_percent: Decimal = Field(default=Decimal("2"), gt=0, lt=100)
    crossed_policy: Literal["close", "tighten"] = "close"
    tighten_buffer_percent: Decimal = Field(default=Decimal("0.2"), gt=0, lt=100)
    zombie_grace_seconds: float = Field(default=30.0, ge=0)
    symbols: dict[str, SymbolPolicy] = Field(default_factory=dict)


class AccountSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    venue: VenueName = "sim"
    testnet: bool = True


class SimSettings(Section):
    seed: int = 7
    latency_ms: int = Field(default=0, ge=0)
    price_interval_seconds: float = Field(default=1.0, gt=0)
    demo_positions: bool = True
    # With demo_positions: also an orphaned stop on SOL (flat), created this long before start.
    demo_orphan_stop_age_seconds: float | None = Field(default=None, ge=0)
    # A paper exchange run as its own process (`vigil paper-exchange serve`), e.g.
    # http://127.0.0.1:8765; None: in-process, its state in data_dir.
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _local_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://127.0.0.1:8765")
        return value.rstrip("/")


class RiskSettings(Section):
    daily_loss_limit: Decimal | None = Field(default=None, gt=0)


class ReportSettings(Section):
    daily_time: time = time(20, 0)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name like Europe/Moscow") from None
        return value


class ApprovalSettings(Section):
    two_person: bool = False
    ttl_seconds: int = Field(default=120, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", env_file=".env", extra="forbid",
        # .env may also hold VIGIL_MASTER_KEY or VIGIL_CONFIG, which are not settings fields
        # (typos inside a section, like VIGIL_GUARD__SLA_SECOND, are still rejected).
        dotenv_filtering="only_existing",
        frozen=True)

    data_dir: Path = Path("data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    telegram: TelegramSettings = TelegramSettings()
    accounts: tuple[AccountSettings, ...] = (AccountSettings(name="paper", venue="sim"),)
    guard: GuardSettings = GuardSettings()
    sim: SimSettings = SimSettings()
    risk: RiskSettings = RiskSettings()
    reports: ReportSettings = ReportSettings()
    approvals: ApprovalSettings = ApprovalSettings()

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, accounts: tuple[AccountSettings, ...]
                         ) -> tuple[AccountSettings, ...]:
        # A field validator, so the error line names `accounts`, not the whole settings.
        names = [a.name for a in accounts]
        if not names:
            raise ValueError("at least one account is required")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate account names {dupes}")
        return accounts

    @property
    def db_path(self) -> Path:
        return self.data_dir / "vigil.sqlite3"

    @property
    def paper_mode(self) -> bool:
        return all(a.venue == "sim" for a in self.accounts)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


class SettingsError(Exception):
    """A readable list of what is wrong, one `field: reason` per line."""


def load_settings(config: Path | None = None, **overrides: object) -> Settings:
    from pydantic import ValidationError

    if config is not None and not config.is_file():
        raise SettingsError(f"config: file not found: {config}")
    token = _config_file.set(config)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"{where}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
    except ValueError as exc:  # malformed TOML
        raise SettingsError(f"config: {exc}") from None
    finally:
        _config_file.reset(token)
