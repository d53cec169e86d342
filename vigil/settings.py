"""Settings: a TOML file (--config or VIGIL_CONFIG), overridden by VIGIL_<SECTION>__<KEY>
environment variables and .env. Frozen; unknown keys are rejected; secrets are SecretStr."""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
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
    # Webhook mode (polling when unset): Telegram POSTs updates to this URL, served by the [http]
    # app at the URL's path; the secret comes back in X-Telegram-Bot-Api-Secret-Token.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

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

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must start with https:// (http:// only behind a local Bot API)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", value.get_secret_value()):
            raise ValueError("must be 16 to 256 characters of A-Z, a-z, 0-9, _ and - "
                             "(what Telegram accepts as secret_token)")
        return value

    @model_validator(mode="after")
    def _webhook_complete(self) -> TelegramSettings:
        if self.webhook_url is not None and (self.webhook_secret is None or self.token is None):
            raise ValueError("webhook_url needs webhook_secret and token")
        return self


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
    # Entry gates (engine/entries/gates.py); unset limits are off.
    max_open_positions: int | None = Field(default=None, ge=1)
    max_position_notional: Decimal | None = Field(default=None, gt=0)
    max_account_notional: Decimal | None = Field(default=None, gt=0)
    max_leverage: Decimal | None = Field(default=None, gt=0)
    min_stop_percent: Decimal = Field(default=Decimal("0.1"), ge=0, lt=100)
    max_stop_percent: Decimal = Field(default=Decimal("25"), gt=0, lt=100)
    stop_out_streak: int = Field(default=3, ge=1)
    cool_down_minutes: float = Field(default=60.0, ge=0)
    fee_rate_percent: Decimal = Field(default=Decimal("0.06"), ge=0, lt=10)
    # Entries above this notional need an admin's approval (Telegram) or Confirm (webhook).
    approval_notional: Decimal | None = Field(default=None, gt=0)
    # A limit entry's unfilled rest is cancelled this long after it was sent.
    limit_timeout_seconds: float = Field(default=60.0, gt=0, le=86_400)


class SignalSource(Section):
    """One sender of signals (`POST /signal/{source}`): its secret, and its default account."""

    secret: SecretStr
    account: str | None = None  # when the signal names none

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("a signal secret needs at least 16 characters")
        return value


class SignalsSettings(Section):
    """The signal webhook (vigil/signals_http.py), mounted on the shared HTTP app."""

    sources: dict[str, SignalSource] = Field(default_factory=dict)
    replay_window_seconds: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=4096, ge=256, le=1_000_000)
    rate_per_minute: int = Field(default=30, ge=1)
    alert_after_failures: int = Field(default=5, ge=1)  # in a row, per source
    # Signals above this notional are not sent: an admin confirms them in Telegram first.
    confirm_notional: Decimal | None = Field(default=None, gt=0)
    confirm_chat: int | None = None  # where the Confirm goes; default: the first admin


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


class JournalSettings(Section):
    # Rows older than this many days move to gzip archives (with their chain's anchor hash) in
    # `archive_dir` (default: <data_dir>/journal-archive), once a day at `archive_time` UTC.
    # None keeps every row in the database.
    retention_days: int | None = Field(default=None, ge=1)
    archive_time: time = time(3, 0)
    archive_dir: Path | None = None
class HttpSettings(Section):
    """The ops HTTP app (vigil/http): health, readiness, metrics, reports, Telegram webhook."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    # Bearer token for everything but /healthz and the Telegram webhook (unset: none asked).
    token: SecretStr | None = None
    loop_stall_seconds: float = Field(default=1.0, gt=0)  # /healthz 503 past this loop lag
    stream_down_seconds: float = Field(default=60.0, gt=0)  # readiness: stream down longer
    snapshot_stale_seconds: float = Field(default=120.0, gt=0)  # readiness: no snapshot since

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class ChaosSettings(Section):
    """Faults injected at the venue port (engine/chaos.py). A named profile, optionally with
    some of its values overridden; `custom` starts from no faults at all."""

    profile: Literal["off", "mild", "harsh", "custom"] = "off"
    stream_drop_probability: float | None = Field(default=None, ge=0, le=1)
    stream_outage_seconds: float | None = Field(default=None, ge=0)
    rest_timeout_probability: float | None = Field(default=None, ge=0, le=1)
    order_delay_ms: int | None = Field(default=None, ge=0)
    rejection_probability: float | None = Field(default=None, ge=0, le=1)
    seed: int = 0  # each account draws from seed + its index: a run replays

    def set_fields(self) -> list[str]:
        return sorted(self.model_dump(exclude={"profile", "seed"}, exclude_none=True))

    def overrides(self) -> dict[str, float]:
        """The values set here, in engine.chaos.ChaosProfile's fields."""
        values = self.model_dump(exclude={"profile", "seed"}, exclude_none=True)
        if "order_delay_ms" in values:
            values["order_delay_seconds"] = values.pop("order_delay_ms") / 1000
        return values


class ExitPlanSettings(Section):
    """An exit plan (issue 12): breakeven, trailing, a step ladder. Unset parts are off."""

    stop_percent: Decimal | None = Field(default=None, gt=0, lt=100)  # None: guard.stop_percent
    breakeven_at_percent: Decimal | None = Field(default=None, gt=0, lt=100)
    breakeven_at_r: Decimal | None = Field(default=None, gt=0, lt=100)
    breakeven_fee_percent: Decimal = Field(default=Decimal("0.1"), ge=0, lt=100)
    breakeven_buffer_percent: Decimal = Field(default=Decimal("0.05"), ge=0, lt=100)
    trail_activation_percent: Decimal | None = Field(default=None, ge=0, lt=100)
    trail_callback_percent: Decimal | None = Field(default=None, gt=0, lt=100)
    ladder: tuple[tuple[Decimal, Decimal], ...] = ()  # ((at %, lock %), ...)

    @model_validator(mode="after")
    def _trail_pair(self) -> ExitPlanSettings:
        if (self.trail_activation_percent is None) != (self.trail_callback_percent is None):
            raise ValueError("trail_activation_percent and trail_callback_percent go together")
        for at, lock in self.ladder:
            if not (0 < lock < at):
                raise ValueError(f"ladder step ({at}, {lock}): lock must be above 0 and below at")
        return self


class ExitSettings(ExitPlanSettings):
    """`[exits]`: the default plan, plans per symbol, and how often a stop may be amended."""

    min_step_percent: Decimal = Field(default=Decimal("0.05"), ge=0, lt=100)
    min_step_ticks: int = Field(default=1, ge=1)
    min_interval_seconds: float = Field(default=2.0, ge=0)
    account_amends_per_minute: int = Field(default=60, ge=1)
    symbols: dict[str, ExitPlanSettings] = Field(default_factory=dict)


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
    journal: JournalSettings = JournalSettings()
    http: HttpSettings = HttpSettings()
    chaos: ChaosSettings = ChaosSettings()
    signals: SignalsSettings = SignalsSettings()
    exits: ExitSettings = ExitSettings()

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

    @model_validator(mode="after")
    def _webhook_needs_http(self) -> Settings:
        if self.telegram.webhook_url is not None and not self.http.enabled:
            raise ValueError("telegram.webhook_url needs http.enabled = true (the [http] app "
                             "serves the webhook)")
        return self

    @field_validator("chaos")
    @classmethod
    def _chaos_only_off_live(cls, chaos: ChaosSettings, info: ValidationInfo) -> ChaosSettings:
        # Faults on purpose are for paper and testnets; a real account must never get them.
        if chaos.profile == "off":
            if chaos.set_fields():
                raise ValueError(f"chaos.profile is off, so {chaos.set_fields()} would "
                                 "do nothing: set profile to mild, harsh or custom")
            return chaos
        live = [a for a in info.data.get("accounts", ()) if a.venue != "sim" and not a.testnet]
        if live:
            raise ValueError(
                f"chaos.profile = {chaos.profile!r} is refused: account {live[0].name!r} "
                f"({live[0].venue}) is live, not a testnet; chaos runs only in paper mode or "
                "on testnets")
        return chaos

    @property
    def db_path(self) -> Path:
        return self.data_dir / "vigil.sqlite3"

    @property
    def journal_archive_dir(self) -> Path:
        return self.journal.archive_dir or self.data_dir / "journal-archive"

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
