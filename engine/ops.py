"""The ops report and live readiness, built only from ControlService's read model.

Served by the HTTP app (`/live-readiness`, `/api/ops_report`, its CSV and `/api/positions.csv`)
and sent by `/report` in the chat. Nothing here knows about HTTP or Telegram; the CSV headers
below are the documented ones (docs/HTTP.md).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from engine.clock import Clock
from engine.control import ControlService
from engine.results import AccountStatus, EngineStatus, HoldKind, PositionView


class OnOff(StrEnum):
    ON = "ON"
    OFF = "OFF"


class DailyLossBadge(StrEnum):
    OK = "OK"
    BREACH = "BREACH"  # an account is on the loss cap's HOLD


class WatchdogBadge(StrEnum):
    OK = "OK"
    DEGRADED = "DEGRADED"  # a stream down, a venue failing, a position waiting for its stop
    AUTO_HOLD = "AUTO_HOLD"  # the engine stopped entries itself: HALT or the loss cap


@dataclass(frozen=True, slots=True)
class Badges:
    auto_trade: OnOff  # ON: every account takes new entries (no HOLD, no HALT)
    risk_checks: OnOff  # ON: a daily loss limit is configured
    daily_loss: DailyLossBadge
    watchdog: WatchdogBadge


@dataclass(frozen=True, slots=True)
class ReadinessBounds:
    sla_seconds: float  # a position without a stop for longer is a reason
    stream_down_seconds: float
    snapshot_stale_seconds: float


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    reasons: tuple[str, ...]  # "kind:account[:symbol]", e.g. "hold:main", "stream_down:bn"


@dataclass(frozen=True, slots=True)
class VenueHealth:
    account: str
    venue: str
    testnet: bool
    hold: str | None  # the HOLD's reason
    halted: str | None
    streams: bool  # False: the venue has none (REST snapshots only)
    stream_up: bool
    stream_note: str
    stream_age_seconds: float | None  # since the stream last went up or down
    snapshot_age_seconds: float | None  # since the last successful snapshot (None: none yet)
    last_error: str | None
    positions: int
    unprotected: int
    weight_used: float | None
    weight_limit: float | None


@dataclass(frozen=True, slots=True)
class AccountDay:
    """Today (the report time zone's calendar day) of one account, and its loss cap."""

    account: str
    net: Decimal  # realized + fees + funding since local midnight
    unrealized: Decimal
    loss_limit: Decimal | None  # None: no cap configured
    breached: bool  # on the loss cap's HOLD
    error: str | None = None  # the venue's ledger could not be read: figures may be incomplete

    @property
    def pnl_today(self) -> Decimal:
        return self.net + self.unrealized  # what the loss cap compares with -limit


@dataclass(frozen=True, slots=True)
class OpsReport:
    at: datetime
    mode: str
    badges: Badges
    readiness: Readiness
    venues: tuple[VenueHealth, ...]
    positions: tuple[PositionView, ...]
    days: tuple[AccountDay, ...]


def age_seconds(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 3)


def _loss_capped(account: AccountStatus) -> bool:
    return account.hold is not None and account.hold.kind == HoldKind.LOSS_CAP


def readiness(status: EngineStatus, positions: Iterable[PositionView], now: datetime,
              bounds: ReadinessBounds) -> Readiness:
    """Not ready for live trading while any of these holds, one reason each."""
    reasons: list[str] = []
    for a in status.accounts:
        if _loss_capped(a):
            reasons.append(f"daily_loss:{a.name}")
        elif a.hold is not None:
            reasons.append(f"hold:{a.name}")
        if a.halted:
            reasons.append(f"halt:{a.name}")
        stream = a.stream
        if stream.streams and not stream.up and stream.since is not None \
                and (now - stream.since).total_seconds() > bounds.stream_down_seconds:
            reasons.append(f"stream_down:{a.name}")
        snapshot_age = age_seconds(now, a.last_reconcile)
        if a.last_error is not None or snapshot_age is None \
                or snapshot_age > bounds.snapshot_stale_seconds:
            reasons.append(f"venue:{a.name}")
    reasons.extend(f"unprotected:{p.account}:{p.symbol}" for p in positions
                   if p.unprotected_seconds > bounds.sla_seconds)
    return Readiness(not reasons, tuple(reasons))


def badges(status: EngineStatus, ready: Readiness, *, risk_checks: bool) -> Badges:
    auto_hold = any(a.halted or _loss_capped(a) for a in status.accounts)
    degraded = status.unprotected > 0 or any(
        r.startswith(("stream_down:", "venue:")) for r in ready.reasons)
    watchdog = (WatchdogBadge.AUTO_HOLD if auto_hold
                else WatchdogBadge.DEGRADED if degraded else WatchdogBadge.OK)
    entries = all(a.hold is None and not a.halted for a in status.accounts)
    return Badges(
        auto_trade=OnOff.ON if entries else OnOff.OFF,
        risk_checks=OnOff.ON if risk_checks else OnOff.OFF,
        daily_loss=(DailyLossBadge.BREACH if any(_loss_capped(a) for a in status.accounts)
                    else DailyLossBadge.OK),
        watchdog=watchdog)


def venue_health(a: AccountStatus, now: datetime) -> VenueHealth:
    stream = a.stream
    return VenueHealth(
        account=a.name, venue=a.venue, testnet=a.testnet,
        hold=a.hold.reason if a.hold else None, halted=a.halted,
        streams=stream.streams, stream_up=stream.up, stream_note=stream.note,
        stream_age_seconds=age_seconds(now, stream.since),
        snapshot_age_seconds=age_seconds(now, a.last_reconcile), last_error=a.last_error,
        positions=a.positions, unprotected=a.unprotected,
        weight_used=a.weight.used if a.weight else None,
        weight_limit=a.weight.limit if a.weight else None)


class OpsReports:
    def __init__(self, control: ControlService, *, loss_limit: Decimal | None,
                 bounds: ReadinessBounds, clock: Clock) -> None:
        self.control = control
        self.loss_limit = loss_limit
        self.bounds = bounds
        self.clock = clock

    def readiness(self) -> Readiness:
        return readiness(self.control.status(), self.control.positions(), self.clock.now(),
                         self.bounds)

    def positions_csv(self) -> str:
        """The positions export alone: each row's unrealized PnL is the position's own, so
        the day's PnL (a ledger read) that the whole report needs is not computed for it."""
        return positions_csv(self.clock.now(), self.control.positions())

    async def days(self, status: EngineStatus | None = None) -> tuple[AccountDay, ...]:
        """Today per account (the report time zone's day, as /pnl shows it) and its loss cap."""
        pnl = await self.control.pnl(1)
        status = status or self.control.status()
        capped = {a.name for a in status.accounts if _loss_capped(a)}
        return tuple(AccountDay(account=p.account, net=p.net, unrealized=p.unrealized,
                                loss_limit=self.loss_limit, breached=p.account in capped,
                                error=p.error) for p in pnl.accounts)

    async def report(self) -> OpsReport:
        status = self.control.status()
        days = await self.days(status)
        positions = self.control.positions()
        now = self.clock.now()
        ready = readiness(status, positions, now, self.bounds)
        return OpsReport(
            at=now, mode=status.mode,
            badges=badges(status, ready, risk_checks=self.loss_limit is not None),
            readiness=ready, venues=tuple(venue_health(a, now) for a in status.accounts),
            positions=tuple(positions), days=days)


# --- rendering: JSON-ready dicts and CSV ------------------------------------------------------

def _value(value: Any) -> Any:
    """Decimals as strings (exact), datetimes as ISO-8601 UTC, enums as their value."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    return value


def _row(obj: Any, fields: Sequence[str]) -> dict[str, Any]:
    return {name: _value(getattr(obj, name)) for name in fields}


POSITION_FIELDS = ("account", "symbol", "side", "qty", "entry_price", "mark_price",
                   "unrealized_pnl", "stop_price", "unprotected_seconds",
                   "last_time_to_protect", "whole_position_stop")
VENUE_FIELDS = ("account", "venue", "testnet", "hold", "halted", "streams", "stream_up",
                "stream_note", "stream_age_seconds", "snapshot_age_seconds", "last_error",
                "positions", "unprotected", "weight_used", "weight_limit")
DAY_FIELDS = ("account", "net", "unrealized", "pnl_today", "loss_limit", "breached", "error")
BADGE_FIELDS = ("auto_trade", "risk_checks", "daily_loss", "watchdog")

OPS_CSV_VENUE_FIELDS = ("account", "venue", "testnet", "hold", "halted", "stream_up",
                        "stream_age_seconds", "snapshot_age_seconds", "last_error", "positions",
                        "unprotected")
OPS_CSV_HEADER = ("timestamp", "mode", *BADGE_FIELDS, "ready", *OPS_CSV_VENUE_FIELDS,
                  "pnl_today_net", "unrealized", "pnl_today", "loss_limit", "loss_cap_breached")
POSITIONS_CSV_HEADER = ("timestamp", *POSITION_FIELDS, "protected")


def report_dict(report: OpsReport) -> dict[str, Any]:
    return {
        "at": report.at.isoformat(), "mode": report.mode,
        "badges": _row(report.badges, BADGE_FIELDS),
        "ready": report.readiness.ok, "reasons": list(report.readiness.reasons),
        "venues": [_row(v, VENUE_FIELDS) for v in report.venues],
        "positions": [_row(p, POSITION_FIELDS) | {"protected": p.stop_price is not None}
                      for p in report.positions],
        "pnl_today": [_row(d, DAY_FIELDS) for d in report.days],
        "pnl_today_total": str(sum((d.net for d in report.days), Decimal(0))),
    }


def _csv(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def ops_csv(report: OpsReport) -> str:
    """One row per account: the badges repeated, its venue health, today's PnL and loss cap."""
    days = {d.account: d for d in report.days}
    rows = []
    for v in report.venues:
        day = days.get(v.account)
        rows.append({
            "timestamp": report.at.isoformat(), "mode": report.mode,
            **_row(report.badges, BADGE_FIELDS), "ready": report.readiness.ok,
            **_row(v, OPS_CSV_VENUE_FIELDS),
            "pnl_today_net": _value(day.net) if day else None,
            "unrealized": _value(day.unrealized) if day else None,
            "pnl_today": _value(day.pnl_today) if day else None,
            "loss_limit": _value(day.loss_limit) if day else None,
            "loss_cap_breached": day.breached if day else None})
    return _csv(OPS_CSV_HEADER, rows)


def positions_csv(at: datetime, positions: Iterable[PositionView]) -> str:
    """One row per open position (header: POSITIONS_CSV_HEADER, documented in docs/HTTP.md)."""
    return _csv(POSITIONS_CSV_HEADER, (
        {"timestamp": at.isoformat(), **_row(p, POSITION_FIELDS),
         "protected": p.stop_price is not None} for p in positions))
