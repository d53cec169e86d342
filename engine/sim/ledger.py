"""The simulated exchange's ledger, built from its fills:
one REALIZED_PNL entry per fill that realized something and one FEE entry per fill."""

from __future__ import annotations

from datetime import datetime

from engine.domain.ledger import LedgerEntry, LedgerKind
from engine.sim.exchange import SimExchange


def sim_ledger(exchange: SimExchange, since: datetime) -> list[LedgerEntry]:
    """Money movements of the simulated account at or after `since`, oldest first."""
    entries: list[LedgerEntry] = []
    for fill in exchange.fills:
        if fill.at < since:
            continue
        if fill.realized_pnl:
            entries.append(LedgerEntry(ref=f"{fill.order_id}:pnl", symbol=fill.symbol,
                                       kind=LedgerKind.REALIZED_PNL, amount=fill.realized_pnl,
                                       at=fill.at))
        if fill.fee:
            entries.append(LedgerEntry(ref=f"{fill.order_id}:fee", symbol=fill.symbol,
                                       kind=LedgerKind.FEE, amount=-fill.fee, at=fill.at))
    entries.sort(key=lambda e: e.at)
    return entries
