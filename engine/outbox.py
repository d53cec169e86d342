"""What the chat needs from the durable alert outbox, with no storage import: the row type and a
Protocol. `storage.outbox.OutboxRepo` implements it; `bot.notifier` depends only on this."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Protocol


class Priority(IntEnum):
    """Critical alerts go before everything else in every chat; routine ones may be dropped
    (with a count) when they grow old, critical ones never."""

    ROUTINE = 0
    CRITICAL = 1


class AlertAction(StrEnum):
    """What a trader may do straight from an alert about one position."""

    CLOSE = "c"  # through the usual approval
    FIX = "f"  # what /fix_sl SYMBOL does
    POSITIONS = "p"  # show that position


@dataclass(frozen=True, slots=True)
class AlertButtons:
    """The buttons an alert carries, stored with it in the outbox: which position (its
    generation, so a stale button never closes a re-opened one) and which actions."""

    account: str
    symbol: str
    generation: int | None
    actions: tuple[AlertAction, ...]

    def to_json(self) -> str:
        return json.dumps({"account": self.account, "symbol": self.symbol,
                           "generation": self.generation,
                           "actions": [a.value for a in self.actions]})

    @classmethod
    def from_json(cls, text: str) -> AlertButtons:
        raw = json.loads(text)
        return cls(raw["account"], raw["symbol"], raw["generation"],
                   tuple(AlertAction(a) for a in raw["actions"]))


@dataclass(frozen=True, slots=True)
class NewAlert:
    """One alert to add to the outbox (see `Outbox.enqueue`)."""

    chat_id: int
    text: str
    loud: bool = False
    dedupe_key: str | None = None
    priority: Priority = Priority.ROUTINE
    count: int = 1
    buttons: AlertButtons | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    chat_id: int
    text: str
    loud: bool
    dedupe_key: str | None
    count: int
    created_at: datetime
    next_attempt_at: datetime
    attempts: int
    status: str
    sent_at: datetime | None
    last_error: str | None
    priority: Priority = Priority.ROUTINE
    buttons: AlertButtons | None = None


@dataclass(frozen=True, slots=True)
class DueChat:
    """A chat with alerts due: its most urgent priority and its oldest due alert's id."""

    chat_id: int
    priority: Priority
    first_id: int


class Outbox(Protocol):
    async def enqueue(self, chat_id: int, text: str, *, now: datetime, loud: bool = False,
                      dedupe_key: str | None = None, priority: Priority = Priority.ROUTINE,
                      count: int = 1, buttons: AlertButtons | None = None) -> int: ...

    async def enqueue_many(self, alerts: Sequence[NewAlert], *, now: datetime,
                           journal_seq: int | None = None) -> list[int]:
        """`enqueue` for each alert, in order, with one commit; returns their row ids. With
        `journal_seq`, the journal events up to it are recorded as done in the same commit
        (also when there are no alerts)."""
        ...

    async def journal_checkpoint(self) -> int:
        """The highest journal sequence recorded by `enqueue_many`."""
        ...

    async def get(self, row_id: int) -> OutboxRow | None: ...

    async def due_chats(self, now: datetime) -> list[DueChat]:
        """Chats with alerts due: those with a critical alert first, then oldest first."""
        ...

    async def due_for_chat(self, chat_id: int, now: datetime, limit: int) -> list[OutboxRow]:
        """One chat's due alerts, critical first, then oldest first."""
        ...

    async def next_due_at(self) -> datetime | None: ...

    async def pending_count(self, chat_id: int | None = None) -> int: ...

    async def mark_sent(self, row_id: int, *, now: datetime, count: int | None = None
                        ) -> bool: ...

    async def reschedule(self, row_id: int, at: datetime, error: str) -> None: ...

    async def hold_chat(self, chat_id: int, until: datetime) -> int: ...

    async def drop(self, row_id: int, reason: str) -> None: ...

    async def drop_chat(self, chat_id: int, reason: str) -> int: ...

    async def drop_stale_routine(self, before: datetime, reason: str,
                                 keep_key: str) -> dict[int, int]:
        """Drop pending routine alerts raised before `before` (never critical ones, nor the
        row keyed `keep_key`); return how many per chat."""
        ...

    async def move_chat(self, old_chat_id: int, new_chat_id: int) -> int: ...

    async def prune(self, before: datetime) -> int: ...

    async def strangers_known(self, user_ids: Iterable[int]) -> set[int]:
        """Which of these strangers were already reported to the admins."""
        ...

    async def remember_strangers(self, user_ids: Iterable[int], *, now: datetime,
                                 keep: int) -> None:
        """Record strangers as reported, keeping only the `keep` most recent."""
        ...
