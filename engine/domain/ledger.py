"""Money movements on an account, as venues report them in their income/bill/transaction logs:
realized PnL, trading fees, funding. Daily PnL is summed from these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class LedgerKind(StrEnum):
    REALIZED_PNL = "realized_pnl"
    FEE = "fee"  # negative when paid, positive for rebates
    FUNDING = "funding"  # positive when received


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    ref: str  # the venue's id for this movement: the same movement always has the same ref
    symbol: str | None
    kind: LedgerKind
    amount: Decimal  # signed, in the settlement currency (USDT)
    at: datetime
