"""Daily loss cap: realized (journal) + unrealized (venue view) PnL since the day started in the
report time zone; at or below -limit the account goes on HOLD with a critical alert. Once an
admin lifts that HOLD (through an approval), the cap stays quiet for the rest of that day."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from loguru import logger

from engine.bus import EventBus
from engine.clock import Clock
from engine.control import ControlService, HoldKind
from engine.domain import events as ev
from engine.pnl.model import local_midnight
from engine.ports import StateStore

RealizedSince = Callable[[str, datetime], Awaitable[Decimal]]


def day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """Midnight of `now`'s local day in `tz` (the same day the PnL reports use)."""
    return local_midnight(now.astimezone(tz).date(), tz)


class DailyLossCap:
    def __init__(self, control: ControlService, *, limit: Decimal, tz: ZoneInfo,
                 realized_since: RealizedSince, state: StateStore, bus: EventBus,
                 clock: Clock) -> None:
        self.control = control
        self.limit = limit
        self.tz = tz
        self.realized_since = realized_since
        self.state = state
        self.bus = bus
        self.clock = clock

    async def pnl_today(self, account: str) -> Decimal:
        start = day_start(self.clock.now(), self.tz)
        realized = await self.realized_since(account, start)
        return realized + self.control.unrealized_pnl(account)

    async def check(self) -> list[str]:
        """Put every account past the limit on HOLD; return the accounts newly held."""
        today = day_start(self.clock.now(), self.tz).date().isoformat()
        tripped = []
        for account in self.control.accounts():
            hold = self.control.hold_of(account)
            if hold is not None and hold.kind == HoldKind.LOSS_CAP:
                continue
            if await self.state.get("loss_cap_tripped", account) == today:
                continue  # it tripped today and a person lifted it: quiet until tomorrow
            pnl = await self.pnl_today(account)
            if pnl > -self.limit:
                continue
            await self.state.put("loss_cap_tripped", account, today)
            shown = pnl.quantize(Decimal("0.01"))
            reason = f"daily loss limit {self.limit} reached (PnL today {shown})"
            await self.bus.publish(ev.LossLimitHit(account=account, pnl=pnl, limit=self.limit))
            await self.control.hold(reason, "risk", accounts=[account], kind=HoldKind.LOSS_CAP)
            tripped.append(account)
        return tripped

    async def run(self, period: float) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a failed look must not switch the cap off for good
                logger.exception("daily loss cap check failed; trying again next period")
            await self.clock.sleep(period)
