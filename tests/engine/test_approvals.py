"""The approval rules (engine/approvals.py) on a real SQLite file: who may decide, expiry, and
at most once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from engine.approvals import Approval, Approvals, ApprovalStatus, Decision
from engine.bus import EventBus
from engine.clock import ManualClock
from engine.control import ControlService, HoldKind
from storage.approvals import ApprovalRepo
from storage.db import Database
from storage.journal import Journal
from tests.engine.conftest import MemoryState

REQUESTER, ADMIN, OTHER_ADMIN, TRADER = 1, 2, 3, 4


async def book(db: Database, clock: ManualClock, *, two_person: bool = False
               ) -> tuple[Approvals, ControlService]:
    bus = EventBus(Journal(db).append)
    control = ControlService({}, venues_testnet={}, state=MemoryState(), bus=bus, clock=clock,
                             mode="paper")
    return Approvals(ApprovalRepo(db), control, clock=clock, ttl_seconds=120,
                     two_person=two_person), control


async def ask(approvals: Approvals) -> Approval:
    return await approvals.request_resume("daily loss limit", user_id=REQUESTER,
                                          user_name="Ann", chat_id=10, lang="en")


async def test_a_cancel_tap_after_the_ttl_is_expired_not_cancelled(db: Database) -> None:
    """Issue 15 finding 12: a Cancel tap after the TTL but before the expiry loop ran."""
    clock = ManualClock()
    approvals, _ = await book(db, clock)
    approval = await ask(approvals)
    await clock.advance(121)

    verdict = await approvals.decide(approval.id, yes=False, user_id=REQUESTER,
                                     user_name="Ann", is_admin=False)

    assert verdict.decision is Decision.EXPIRED
    (expired,) = await approvals.expire_due()
    assert expired.id == approval.id and expired.status is ApprovalStatus.EXPIRED


async def test_concurrent_confirms_run_the_action_once(db: Database) -> None:
    clock = ManualClock()
    approvals, control = await book(db, clock)
    await control.hold("cap", "risk", kind=HoldKind.LOSS_CAP)  # (no accounts: nothing held)
    approval = await ask(approvals)

    verdicts = await asyncio.gather(*(
        approvals.decide(approval.id, yes=True, user_id=uid, user_name="x", is_admin=True)
        for uid in (ADMIN, OTHER_ADMIN, ADMIN, REQUESTER)))

    assert sorted(v.decision for v in verdicts) == sorted(
        [Decision.DONE, Decision.ALREADY, Decision.ALREADY, Decision.ALREADY])


@pytest.mark.parametrize(("two_person", "user", "admin", "yes", "decision"), [
    (False, REQUESTER, False, True, Decision.DONE),
    (False, TRADER, False, True, Decision.NOT_ALLOWED),
    (False, TRADER, False, False, Decision.NOT_ALLOWED),
    (False, ADMIN, True, False, Decision.CANCELLED),
    (True, REQUESTER, True, True, Decision.SECOND_ADMIN),
    (True, OTHER_ADMIN, True, True, Decision.DONE),
    (True, TRADER, False, True, Decision.NOT_ALLOWED),
])
async def test_who_may_decide(db: Database, two_person: bool, user: int, admin: bool, yes: bool,
                              decision: Decision) -> None:
    clock = ManualClock()
    approvals, _ = await book(db, clock, two_person=two_person)
    approval = await ask(approvals)
    await clock.advance(timedelta(seconds=5).total_seconds())

    verdict = await approvals.decide(approval.id, yes=yes, user_id=user, user_name="x",
                                     is_admin=admin)

    assert verdict.decision is decision
    stored = await approvals.store.get(approval.id)
    assert stored is not None
    expected = {Decision.DONE: ApprovalStatus.EXECUTING, Decision.CANCELLED:
                ApprovalStatus.CANCELLED}.get(decision, ApprovalStatus.PENDING)
    assert stored.status is expected
