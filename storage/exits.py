"""Exit plans and trail states in SQLite (migration 007): Decimals TEXT, times fixed-width UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from engine.domain.values import PositionSide
from engine.exits.book import StoredExit
from engine.exits.plan import Breakeven, ExitPlan, LadderStep, Trailing, TrailState
from storage.db import Database
from storage.repositories import _dec
from storage.times import from_text, to_text


def _s(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def plan_to_json(plan: ExitPlan) -> str:
    be, tr = plan.breakeven, plan.trailing
    return json.dumps({
        "stop_percent": _s(plan.stop_percent),
        "breakeven": None if be is None else {
            "at_percent": _s(be.at_percent), "at_r": _s(be.at_r),
            "fee_percent": str(be.fee_percent), "buffer_percent": str(be.buffer_percent)},
        "trailing": None if tr is None else {
            "activation_percent": str(tr.activation_percent),
            "callback_percent": str(tr.callback_percent)},
        "ladder": [[str(s.at_percent), str(s.lock_percent)] for s in plan.ladder],
        "take_profit": _s(plan.take_profit),
    }, sort_keys=True)


def plan_from_json(text: str) -> ExitPlan:
    raw = json.loads(text)
    be, tr = raw.get("breakeven"), raw.get("trailing")
    return ExitPlan(
        stop_percent=_dec(raw.get("stop_percent")),
        breakeven=None if be is None else Breakeven(
            at_percent=_dec(be["at_percent"]), at_r=_dec(be["at_r"]),
            fee_percent=Decimal(be["fee_percent"]), buffer_percent=Decimal(be["buffer_percent"])),
        trailing=None if tr is None else Trailing(Decimal(tr["activation_percent"]),
                                                  Decimal(tr["callback_percent"])),
        ladder=tuple(LadderStep(Decimal(a), Decimal(b)) for a, b in raw.get("ladder", [])),
        take_profit=_dec(raw.get("take_profit")))


class ExitRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, row: StoredExit) -> None:
        st = row.state
        await self.db.conn.execute(
            "INSERT OR REPLACE INTO exits (account, symbol, plan, generation, side, entry, risk,"
            " activated, best_mark, breakeven_done, wanted, last_amend_at, last_amend_price,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.account, row.symbol, plan_to_json(row.plan) if row.plan else None,
             st.generation if st else None, st.side.value if st else None,
             _s(st.entry) if st else None, _s(st.risk) if st else None,
             int(st.activated) if st else 0, _s(st.best_mark) if st else None,
             int(st.breakeven_done) if st else 0, _s(st.wanted) if st else None,
             to_text(st.last_amend_at) if st and st.last_amend_at else None,
             _s(st.last_amend_price) if st else None, to_text(datetime.now(UTC))))
        await self.db.conn.commit()

    async def delete(self, account: str, symbol: str) -> None:
        await self.db.conn.execute("DELETE FROM exits WHERE account = ? AND symbol = ?",
                                   (account, symbol))
        await self.db.conn.commit()

    async def load(self, account: str) -> list[StoredExit]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT * FROM exits WHERE account = ? ORDER BY symbol", (account,))
        result = []
        for r in rows:
            state = None
            if r["generation"] is not None:
                state = TrailState(
                    generation=r["generation"], side=PositionSide(r["side"]),
                    entry=Decimal(r["entry"]), risk=_dec(r["risk"]),
                    activated=bool(r["activated"]), best_mark=_dec(r["best_mark"]),
                    breakeven_done=bool(r["breakeven_done"]), wanted=_dec(r["wanted"]),
                    last_amend_at=from_text(r["last_amend_at"]) if r["last_amend_at"] else None,
                    last_amend_price=_dec(r["last_amend_price"]))
            result.append(StoredExit(r["account"], r["symbol"],
                                     plan_from_json(r["plan"]) if r["plan"] else None, state))
        return result
