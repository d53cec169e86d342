"""Risk gates: every entry passes all of them before anything is sent; each refusal says which
and why (engine/entries/model.py `Refusal`). Pure: the caller brings the account's picture."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.domain.values import HUNDRED, PositionSide
from engine.entries.model import EntryPlan, EntryRefused, PriceKind, PriceSpec, Refusal


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Settings `[risk]`; None switches a limit off."""

    daily_loss_limit: Decimal | None = None
    max_open_positions: int | None = None
    max_position_notional: Decimal | None = None
    max_account_notional: Decimal | None = None
    max_leverage: Decimal | None = None  # account notional / equity, this entry included
    min_stop_percent: Decimal = Decimal("0.1")  # closer than this to the mark: noise stops it
    max_stop_percent: Decimal = Decimal("25")
    stop_out_streak: int = 3  # this many stop-outs in a row on a symbol ...
    cool_down_seconds: float = 3600.0  # ... and no entry there for this long
    fee_rate: Decimal = Decimal("0.0006")  # taker, for the estimate shown before Confirm
    approval_notional: Decimal | None = None  # above it, an admin must approve (Telegram)
    default_stop_percent: Decimal = Decimal("2")  # when a request names no stop
    limit_timeout_seconds: float = 60.0  # a limit entry's unfilled rest is cancelled after it

    def stop_or_default(self, stop: PriceSpec | None) -> PriceSpec:
        """The stop a request names, else the default distance (/long and the webhook alike)."""
        return stop if stop is not None else PriceSpec(PriceKind.PERCENT,
                                                       self.default_stop_percent)


@dataclass(frozen=True, slots=True)
class AccountPicture:
    """What the gates need to know about the account right now."""

    hold: str | None
    halted: str | None
    pnl_today: Decimal | None
    open_positions: int
    open_notional: Decimal
    symbol_open: bool
    equity: Decimal | None
    cool_down_left: float  # seconds; 0 when none
    open_side: PositionSide | None = None  # the symbol's position, if any (symbol_open)


def open_refusal(plan: EntryPlan, open_side: PositionSide) -> EntryRefused:
    """An entry on a symbol that already has a position is refused, never merged: the one stop
    was sized and priced for that position, and a rollback of the add would have to tell the
    added part from the rest. The other way, it would close or flip the position: /close does
    that on purpose."""
    if open_side is plan.side:
        return EntryRefused(Refusal.POSITION_OPEN, plan.symbol)
    return EntryRefused(Refusal.OPPOSITE_POSITION, f"{plan.symbol} {open_side.value}")


def check(plan: EntryPlan, limits: RiskLimits, account: AccountPicture) -> None:
    """Raise EntryRefused for the first gate that says no."""
    if account.halted:
        raise EntryRefused(Refusal.HALT, account.halted)
    if account.hold:
        raise EntryRefused(Refusal.HOLD, account.hold)
    if (limits.daily_loss_limit is not None and account.pnl_today is not None
            and account.pnl_today <= -limits.daily_loss_limit):
        raise EntryRefused(Refusal.DAILY_LOSS,
                           f"PnL today {account.pnl_today:.2f} ≤ -{limits.daily_loss_limit}")
    if account.cool_down_left > 0:
        raise EntryRefused(Refusal.COOL_DOWN, f"{account.cool_down_left:.0f}")
    if account.symbol_open:
        raise open_refusal(plan, account.open_side or plan.side)
    if (limits.max_open_positions is not None
            and account.open_positions >= limits.max_open_positions):
        raise EntryRefused(Refusal.MAX_POSITIONS, str(limits.max_open_positions))
    if limits.max_position_notional is not None and plan.notional > limits.max_position_notional:
        raise EntryRefused(Refusal.POSITION_NOTIONAL,
                           f"{plan.notional:.2f} > {limits.max_position_notional}")
    total = account.open_notional + plan.notional
    if limits.max_account_notional is not None and total > limits.max_account_notional:
        raise EntryRefused(Refusal.ACCOUNT_NOTIONAL,
                           f"{total:.2f} > {limits.max_account_notional}")
    if limits.max_leverage is not None:
        if account.equity is None or account.equity <= 0:
            raise EntryRefused(Refusal.LEVERAGE, "equity unknown")
        leverage = total / account.equity
        if leverage > limits.max_leverage:
            raise EntryRefused(Refusal.LEVERAGE, f"{leverage:.2f} > {limits.max_leverage}")
    distance = abs(plan.price - plan.stop_price) / plan.price * HUNDRED
    if distance < limits.min_stop_percent:
        raise EntryRefused(Refusal.STOP_TOO_CLOSE,
                           f"{distance:.3f}% < {limits.min_stop_percent}%")
    if distance > limits.max_stop_percent:
        raise EntryRefused(Refusal.STOP_TOO_FAR, f"{distance:.2f}% > {limits.max_stop_percent}%")
