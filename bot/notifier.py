"""Alerts: engine events rendered per chat language, written to the durable outbox, and sent.

`on_event` (`on_events`: events raised together) renders for every chat and awaits one outbox
transaction, so an alert exists before anyone tries to send it. From the bus (`on_published`)
it writes a batch only once the journal has committed its events, and records the batch's last
journal sequence in the same transaction; `catch_up`, on start, turns the journal's events after
that checkpoint into alerts, so an event journaled before a crash is alerted exactly once and an
event the crash took from the journal never is (docs/BENCHMARKS.md, issue 16 item 2). The sender
(`run`) delivers each chat's due rows critical first, then oldest first:
- every pass reads each chat's own first rows, so one chat's backlog never hides another chat's
  alerts, and chats with a critical alert are served first; a message carries alerts of one
  priority only, so a critical alert never waits behind routine ones;
- routine alerts older than `routine_max_age` are dropped, and the chat gets one note counting
  them; critical alerts are never dropped for age;
- alerts for one chat that are due together go as one message (one per line; an alert raised
  several times while waiting is one line with a count), split at 4096 characters between
  alerts (inside an alert only when it is longer than a message by itself, on line boundaries);
- an alert about one position carries its buttons ([Close] [Fix now] [Positions], stored with
  it): a keyboard row each, naming its market when the message carries several, at most
  `MAX_PER_MESSAGE` of them a message;
- pacing: at least 1 s between messages to one chat (3 s to a group: Telegram allows a group
  about 20 a minute) and at most 25 messages in any second overall, of which routine messages
  use at most 20 (a critical alert never waits for the global budget because of them);
- critical alerts ring (disable_notification=False), the rest arrive silently;
- a 429 holds the chat for `retry_after`; network errors, 5xx and anything unexpected hold it
  for an exponential backoff with jitter, keeping the alert. Holds live in the outbox (rows
  rescheduled; a chat's alerts never overtake each other), so a restart honours them;
- a 400 drops the alert (logged); a chat that blocked the bot is dropped from the alert list
  with its pending alerts, and the admins are told;
- anything still pending at shutdown is delivered after the next start.
Strangers: admins get at most one digest per `stranger_window` (the first stranger at once, the
rest summed up when the window ends), naming the newest few safely with their ids; reported
strangers are remembered in the database (the newest `strangers_kept`), so a restart does not
report them again.
Delivery is at least once: a crash between Telegram's answer and the outbox write repeats a
message.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
)
from aiogram.types import InlineKeyboardMarkup, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from loguru import logger

from bot import render
from bot.alert_buttons import MAX_PER_MESSAGE, buttons_for, keyboard
from bot.i18n import user_locale
from bot.roles import RoleBook
from bot.split import Chunk, pack, split_message
from engine.bus import JournalFeed, Published
from engine.clock import Clock
from engine.domain.events import Event, Severity
from engine.outbox import AlertButtons, NewAlert, Outbox, OutboxRow, Priority
from engine.ports import StateStore

PER_CHAT_INTERVAL = 1.0  # seconds between two messages to one private chat
GROUP_INTERVAL = 3.0  # ... to a group (negative chat id)
GLOBAL_RATE = 25  # messages in any one second, all chats together
CRITICAL_RESERVE = 5  # of those, routine messages leave this many for critical ones
BACKOFF_BASE = 1.0  # first retry after a network error or 5xx, doubled per attempt
BACKOFF_MAX = 300.0
KEEP_DAYS = 30  # delivered and dropped alerts are kept this long for the record
PER_CHAT_BATCH = 100  # rows read for a chat about to get a message: more than one can carry
ROUTINE_MAX_AGE = 3600.0  # seconds: older routine alerts are dropped, with a count
STALE_CHECK_INTERVAL = 5.0  # seconds between two looks for stale routine alerts
STALE_NOTE_KEY = "outbox:stale-routine-dropped"  # the one note per chat counting them
STRANGER_WINDOW = 600.0  # seconds: at most one stranger digest per admin in this long
STRANGERS_KEPT = 10_000  # reported strangers remembered (the newest), so memory stays bounded
DIGEST_NAMES = 5  # newest strangers named in a digest
DIGEST_IDS = 20  # newest stranger ids listed in a digest
EPSILON = 1e-6  # seconds: float and microsecond rounding; a time this close counts as "now"
CATCH_UP_PAGE = 1000  # journal events read, rendered and written per transaction at start


@dataclass(frozen=True, slots=True)
class _Pass:
    """What one sender pass did: sent something (go again at once), or else when (clock
    monotonic time) the next send may happen (None: nothing pending), and when the next send
    of an alert that is due and waits only for pacing may happen (None: there is none; what is
    pending is held by a 429 or a backoff)."""

    sent: bool
    wake_at: float | None = None
    paced_at: float | None = None


def dedupe_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _alert(chat_id: int, text: str, loud: bool, buttons: AlertButtons | None) -> NewAlert:
    # Critical alerts ring, and they go before everything else queued for the chat.
    return NewAlert(chat_id, text, loud, dedupe_key(text),
                    Priority.CRITICAL if loud else Priority.ROUTINE, buttons=buttons)


def _is_closed(exc: BaseException) -> bool:
    """aiosqlite's answer once the database was closed (the engine stopped)."""
    return isinstance(exc, ValueError) and ("closed" in str(exc) or "no active" in str(exc))


class Notifier:
    def __init__(self, bot: Bot, *, chats: tuple[int, ...], roles: RoleBook, i18n: I18n,
                 state: StateStore, clock: Clock, outbox: Outbox,
                 per_chat_interval: float = PER_CHAT_INTERVAL,
                 group_interval: float = GROUP_INTERVAL, global_rate: int = GLOBAL_RATE,
                 shutdown_timeout: float = 5.0, rng: random.Random | None = None,
                 routine_max_age: float = ROUTINE_MAX_AGE,
                 stranger_window: float = STRANGER_WINDOW,
                 strangers_kept: int = STRANGERS_KEPT,
                 journal: JournalFeed | None = None) -> None:
        self.bot = bot
        self.chats = list(chats)
        self.roles = roles
        self.i18n = i18n
        self.state = state
        self.clock = clock
        self.outbox = outbox
        self.per_chat_interval = per_chat_interval
        self.group_interval = group_interval
        self.global_rate = global_rate
        self.shutdown_timeout = shutdown_timeout
        self.rng = rng or random.Random()
        self.routine_max_age = routine_max_age
        self.stranger_window = stranger_window
        self.strangers_kept = strangers_kept
        self._strangers = _StrangerDigest()
        self._digest_lock = asyncio.Lock()
        self._last_digest: float | None = None  # monotonic time of the last digest
        self._digest_due: float | None = None  # when the waiting strangers are reported
        self._stale_checked: float | None = None
        self._blocked: set[int] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one pass at a time (the sender and a flush)
        self._paced_until: dict[int, float] = {}  # chat -> monotonic time of its next message
        self._recent: deque[float] = deque()  # monotonic times of the last sends, all chats
        self._parts_sent: dict[int, int] = {}  # row id -> pieces of a giant alert delivered
        self.journal = journal  # where the bus's events are journaled (None: no catch-up)
        self._journal_lock = asyncio.Lock()  # catch-up and the bus's batches, one at a time
        self._consumed = 0  # journal sequence written to the outbox by this process

    # ------------------------------------------------------------------ enqueueing

    async def _locale(self, chat_id: int) -> str:
        """A private chat's id is its user's id: their /lang or Telegram language."""
        return await user_locale(self.state, chat_id, None, self.i18n.default_locale)

    async def enqueue(self, chat_id: int, text: str, *, loud: bool = False,
                      buttons: AlertButtons | None = None) -> None:
        """Write an alert (with its buttons, if any) to the outbox, coalescing with an
        identical pending one, then wake the sender."""
        await self._enqueue([_alert(chat_id, text, loud, buttons)])

    async def _enqueue(self, alerts: list[NewAlert], journal_seq: int | None = None) -> None:
        alerts = [a for a in alerts if a.chat_id not in self._blocked]
        if alerts or journal_seq is not None:  # one transaction for every chat of an alert
            await self.outbox.enqueue_many(alerts, now=self.clock.now(), journal_seq=journal_seq)
        if alerts:
            self._wake.set()

    async def on_event(self, event: Event) -> None:
        await self.on_events([event])

    async def on_events(self, events: list[Event], *, seq: int | None = None) -> None:
        """Alerts for events raised together (what the bus queued meanwhile), every chat's,
        written in one outbox transaction; with `seq` (the journal sequence of the last of
        them) that transaction also records that the journal is done up to it."""
        events = [e for e in events if e.severity >= Severity.INFO]
        alerts = []
        if events:
            locales = {chat_id: await self._locale(chat_id) for chat_id in list(self.chats)}
            for event in events:  # in publish order, as one at a time would write them
                loud, buttons = event.severity >= Severity.CRITICAL, buttons_for(event)
                for chat_id, locale in locales.items():
                    with self.i18n.context(), self.i18n.use_locale(locale):
                        text = render.event(event)
                    if text:
                        alerts.append(_alert(chat_id, text, loud, buttons))
        await self._enqueue(alerts, seq)

    async def on_published(self, batch: list[Published]) -> None:
        """The bus's batch subscriber: what `catch_up` already wrote is skipped, and the rest is
        written only once the journal has committed it (a crash before that commit takes the
        event from the journal, and then it must have no alert)."""
        async with self._journal_lock:
            fresh = [p for p in batch if p.seq > self._consumed]
            if not fresh:
                return
            if self.journal is not None:
                await self.journal.committed(fresh[-1].seq)
            await self.on_events([p.event for p in fresh], seq=fresh[-1].seq)
            self._consumed = fresh[-1].seq

    async def catch_up(self) -> int:
        """On start: the journal's events after the outbox's checkpoint (journaled, but the
        process stopped before their alerts were written) go through `on_events`, a page per
        transaction; returns how many events were read. Subscribe `on_published` first: its
        batches wait for this and skip what it wrote. A failure is logged and ends the catch-up
        (start-up goes on: alerts must never keep protection from starting); the events not
        caught up have no alert, as a failing batch from the bus."""
        await self._journal_lock.acquire()
        return await self._catch_up_holding_the_lock()

    async def start_catch_up(self) -> asyncio.Task[int]:
        """`catch_up` in the background, so the engine protects while old alerts are written:
        the lock is taken here, before anything new is published, so no live batch can pass
        (and move the checkpoint beyond) the events still to be replayed."""
        await self._journal_lock.acquire()
        return asyncio.create_task(self._catch_up_holding_the_lock(), name="alerts catch-up")

    async def _catch_up_holding_the_lock(self) -> int:
        if self.journal is None:
            self._journal_lock.release()
            return 0
        read = 0
        try:
            after = max(self._consumed, await self.outbox.journal_checkpoint())
            while True:
                last, page = await self.journal.events_after(after, CATCH_UP_PAGE)
                if last == after:
                    break
                await self.on_events([p.event for p in page], seq=last)
                read += last - after
                after = self._consumed = last
        except Exception:
            logger.exception("alerts: catching up with the journal failed after {} events; "
                             "the rest have no alert", read)
        finally:
            self._journal_lock.release()
        if read:
            logger.info("alerts: {} journal events after the last checkpoint replayed", read)
        return read

    async def on_stranger(self, user: User) -> None:
        """Admins hear once about each stranger, with the id they need to add them: the first
        at once, later ones in one digest per `stranger_window`."""
        if self._strangers.has(user.id) or await self.outbox.strangers_known((user.id,)):
            return
        if not self._strangers.add(user, self.strangers_kept):
            return  # another update from this stranger got here first
        await self._send_digest()

    async def _send_digest(self) -> None:
        """Report the waiting strangers to every admin and remember them as reported; if the
        last digest is younger than the window, only make sure the sender wakes when it ends
        (checked under the lock: concurrent strangers never make two digests in a window)."""
        async with self._digest_lock:
            mono = self.clock.monotonic()
            if self._last_digest is not None \
                    and mono < self._last_digest + self.stranger_window - EPSILON:
                if self._digest_due is None:
                    self._digest_due = self._last_digest + self.stranger_window
                    self._wake.set()  # the sender wakes for it
                return
            digest, self._strangers = self._strangers, _StrangerDigest()
            self._digest_due = None
            if not digest.count:
                return
            self._last_digest = self.clock.monotonic()
            for admin in self.roles.admins():
                with self.i18n.context(), self.i18n.use_locale(await self._locale(admin)):
                    text = digest.text(self.stranger_window)
                await self.enqueue(admin, text)
            await self.outbox.remember_strangers(digest.ids, now=self.clock.now(),
                                                 keep=self.strangers_kept)

    # ------------------------------------------------------------------ the sender

    async def run(self) -> None:
        """Deliver due alerts until cancelled (or until the database is closed)."""
        try:
            pruned = await self.outbox.prune(self.clock.now() - timedelta(days=KEEP_DAYS))
            if pruned:
                logger.debug("outbox: {} old alerts pruned", pruned)
        except Exception as exc:
            if _is_closed(exc):
                return
            logger.exception("outbox: pruning failed")
        while True:
            self._wake.clear()
            try:
                result = await self._pass()
            except Exception as exc:
                if _is_closed(exc):
                    logger.debug("outbox closed; the alert sender stops")
                    return
                logger.exception("alert sender failed; retrying")
                result = _Pass(False, self.clock.monotonic() + BACKOFF_BASE)
            if result.sent:
                continue
            await self._sleep_or_wake(result.wake_at)

    async def _sleep_until(self, deadline: float) -> None:
        # The remaining time is read when the sleep starts, not when it was decided on, so a
        # clock that moved in between (a test's ManualClock) does not stretch the wait.
        await self.clock.sleep(deadline - self.clock.monotonic())

    async def _sleep_or_wake(self, deadline: float | None) -> None:
        waiter = asyncio.ensure_future(self._wake.wait())
        if deadline is None:
            await waiter
            return
        sleeper = asyncio.ensure_future(self._sleep_until(deadline))
        try:
            await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def flush(self, timeout: float | None = None) -> None:
        """Send what can go now, waiting for pacing but not for a 429 or backoff hold (those
        alerts are in the outbox and go out after the next start); used at shutdown."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        deadline = self.clock.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                while True:
                    result = await self._pass()
                    if result.sent:
                        continue
                    if result.paced_at is None or result.paced_at > deadline:
                        break
                    await self._sleep_until(result.paced_at)
            left = await self.outbox.pending_count()
        except TimeoutError:
            left = await self.outbox.pending_count()
        except Exception as exc:
            if not _is_closed(exc):
                raise
            logger.debug("flush: the outbox is closed")
            return
        if left:
            logger.warning("shutdown: {} alerts stay in the outbox; they are sent after the "
                           "next start", left)

    async def _pass(self) -> _Pass:
        """One message at most per chat that may be sent to now."""
        if self._digest_due is not None and self.clock.monotonic() >= self._digest_due - EPSILON:
            await self._send_digest()
        async with self._lock:
            now, mono = self.clock.now(), self.clock.monotonic()  # the same instant
            await self._drop_stale(now, mono)
            due = now + timedelta(seconds=EPSILON)
            wakes: list[float] = [] if self._digest_due is None else [self._digest_due]
            paced: list[float] = []
            sent = False
            # Only chats that may be sent to now have their rows read: a chat's backlog costs
            # one summary row per pass, whatever its size.
            for chat in await self.outbox.due_chats(due):
                if sent and self._wake.is_set():
                    break  # something was queued meanwhile: re-read, most urgent chat first
                current = self.clock.monotonic()
                ready = max(self._paced_until.get(chat.chat_id, -math.inf),
                            self._global_ready(current, chat.priority))
                if ready > current + EPSILON:
                    wakes.append(ready)
                    paced.append(ready)
                    continue
                rows = await self.outbox.due_for_chat(chat.chat_id, due, PER_CHAT_BATCH)
                if rows:
                    await self._send_next(chat.chat_id, rows)
                    sent = True
            if sent:
                return _Pass(True)
            upcoming = await self.outbox.next_due_at()
            if upcoming is not None and upcoming > now:
                wakes.append(mono + (upcoming - now).total_seconds())
            return _Pass(False, min(wakes, default=None), min(paced, default=None))

    async def _drop_stale(self, now: datetime, mono: float) -> None:
        """Routine alerts that waited longer than `routine_max_age` are dropped; each chat gets
        one note counting them (coalesced into one row while it waits)."""
        if self._stale_checked is not None and mono < self._stale_checked + STALE_CHECK_INTERVAL:
            return
        self._stale_checked = mono
        before = now - timedelta(seconds=self.routine_max_age)
        dropped = await self.outbox.drop_stale_routine(
            before, f"routine alert older than {self.routine_max_age:g} s", STALE_NOTE_KEY)
        for chat_id, n in dropped.items():
            logger.warning("alerts to {}: {} routine alerts older than {:g} s dropped",
                           chat_id, n, self.routine_max_age)
            with self.i18n.context(), self.i18n.use_locale(await self._locale(chat_id)):
                text = _("ℹ️ Routine alerts dropped unsent: they waited more than {minutes} "
                         "min (critical alerts are never dropped)").format(
                    minutes=f"{self.routine_max_age / 60:g}")
            await self.outbox.enqueue(chat_id, text, now=now, dedupe_key=STALE_NOTE_KEY,
                                      count=n)

    def _global_ready(self, mono: float, priority: Priority = Priority.CRITICAL) -> float:
        """When the next message may go without more than `global_rate` in any second; routine
        messages leave `CRITICAL_RESERVE` of those for critical ones."""
        while self._recent and self._recent[0] <= mono - 1.0 + EPSILON:
            self._recent.popleft()
        limit = self.global_rate
        if priority is Priority.ROUTINE:
            limit = max(1, limit - CRITICAL_RESERVE)
        if len(self._recent) < limit:
            return -math.inf
        return self._recent[len(self._recent) - limit] + 1.0

    def _interval(self, chat_id: int) -> float:
        return self.group_interval if chat_id < 0 else self.per_chat_interval

    async def _first_chunk(self, chat_id: int, rows: list[OutboxRow]
                           ) -> tuple[Chunk, InlineKeyboardMarkup | None]:
        """The first message's worth of these alerts, and its buttons: a row for each alert
        with buttons whose last piece is in the message."""
        with self.i18n.context(), self.i18n.use_locale(await self._locale(chat_id)):
            texts = [_("{alert} (×{count})").format(alert=r.text, count=r.count)
                     if r.count > 1 else r.text for r in rows]
            pieces = []
            for row, text in zip(rows, texts, strict=True):
                parts = split_message(text)
                done = min(self._parts_sent.get(row.id, 0), len(parts) - 1)  # never skip the end
                pieces.append(parts[done:])
            chunk = pack(pieces)[0]
            markup = keyboard([(rows[i].id, b) for i in chunk.done
                               if (b := rows[i].buttons) is not None])
        return chunk, markup

    @staticmethod
    def _one_message(rows: list[OutboxRow]) -> list[OutboxRow]:
        """The alerts that may share the first message: of the first one's priority (a
        critical message is not padded with routine lines), and at most `MAX_PER_MESSAGE`
        with buttons."""
        same = [r for r in rows if r.priority == rows[0].priority]
        with_buttons = [i for i, r in enumerate(same) if r.buttons is not None]
        if len(with_buttons) > MAX_PER_MESSAGE:
            same = same[:with_buttons[MAX_PER_MESSAGE]]
        return same

    async def _send_next(self, chat_id: int, rows: list[OutboxRow]) -> None:
        """Send the first message's worth of this chat's due alerts and record the
        outcome."""
        rows = self._one_message(rows)
        chunk, markup = await self._first_chunk(chat_id, rows)
        in_chunk = [rows[i] for i in chunk.parts]
        loud = any(r.loud for r in in_chunk)
        mono = self.clock.monotonic()
        self._recent.append(mono)
        self._paced_until[chat_id] = mono + self._interval(chat_id)
        try:
            await self.bot.send_message(chat_id, chunk.text, disable_notification=not loud,
                                        reply_markup=markup)
        except TelegramRetryAfter as exc:
            logger.warning("alerts to {}: 429, retrying in {} s", chat_id, exc.retry_after)
            await self._hold(chat_id, in_chunk, exc.retry_after, f"429: {exc.message}")
        except TelegramMigrateToChat as exc:
            await self._migrated(chat_id, exc.migrate_to_chat_id)
        except TelegramForbiddenError as exc:
            await self._blocked_by(chat_id, exc.message)
        except TelegramBadRequest as exc:
            logger.error("alert to {} dropped, Telegram refused it: {} ({!r})", chat_id,
                         exc.message, chunk.text[:200])
            for row in in_chunk:
                await self.outbox.drop(row.id, f"400: {exc.message}")
                self._parts_sent.pop(row.id, None)
        except Exception as exc:  # network, 5xx, 401, anything: keep the alert and back off
            attempts = max(r.attempts for r in in_chunk)
            delay = min(BACKOFF_BASE * 2 ** attempts, BACKOFF_MAX)
            delay *= 0.5 + self.rng.random() / 2  # jitter: no thundering herd after an outage
            logger.warning("alerts to {} failed ({}: {}); retry {} in {:.1f} s", chat_id,
                           type(exc).__name__, exc, attempts + 1, delay)
            await self._hold(chat_id, in_chunk, delay, f"{type(exc).__name__}: {exc}")
        else:
            now = self.clock.now()
            for index, count in chunk.parts.items():
                row = rows[index]
                if index in chunk.done:
                    self._parts_sent.pop(row.id, None)
                    await self.outbox.mark_sent(row.id, now=now, count=row.count)
                else:  # the first pieces of an alert longer than one message
                    self._parts_sent[row.id] = self._parts_sent.get(row.id, 0) + count

    async def _hold(self, chat_id: int, rows: list[OutboxRow], seconds: float,
                    error: str) -> None:
        """Retry these alerts in `seconds`, and send nothing else to the chat before then (held
        in the outbox itself, so a restart honours it and the chat's order is kept)."""
        at = self.clock.now() + timedelta(seconds=seconds)
        for row in rows:
            await self.outbox.reschedule(row.id, at, error)
        await self.outbox.hold_chat(chat_id, at)

    async def _migrated(self, chat_id: int, new_chat_id: int) -> None:
        moved = await self.outbox.move_chat(chat_id, new_chat_id)
        self.chats = [new_chat_id if c == chat_id else c for c in self.chats]
        logger.warning("chat {} is now supergroup {}: {} alerts re-addressed; update "
                       "telegram.alert_chats", chat_id, new_chat_id, moved)

    async def _blocked_by(self, chat_id: int, message: str) -> None:
        dropped = await self.outbox.drop_chat(chat_id, f"403: {message}")
        self._blocked.add(chat_id)
        if chat_id in self.chats:
            self.chats.remove(chat_id)
        admins = [a for a in self.roles.admins() if a not in self._blocked]
        logger.warning("chat {} blocked the bot ({}); {} alerts dropped, no more go there",
                       chat_id, message, dropped)
        if not admins:
            logger.error("no admin left to tell that chat {} blocked the bot", chat_id)
        for admin in admins:
            with self.i18n.context(), self.i18n.use_locale(await self._locale(admin)):
                text = _("🚫 Chat {chat} blocked the bot or removed it: alerts no longer go "
                         "there ({n} undelivered dropped). Unblock the bot and restart Vigil "
                         "to send alerts there again.").format(chat=chat_id, n=dropped)
            await self.enqueue(admin, text, loud=True)


class _StrangerDigest:
    """Strangers waiting to be reported: how many, their ids (bounded) and the newest few."""

    def __init__(self) -> None:
        self.count = 0
        self._ids: dict[int, None] = {}  # insertion-ordered set
        self._newest: deque[User] = deque(maxlen=DIGEST_IDS)

    @property
    def ids(self) -> list[int]:
        return list(self._ids)

    def has(self, user_id: int) -> bool:
        return user_id in self._ids

    def add(self, user: User, keep: int) -> bool:
        """False when the stranger is already waiting; only the newest `keep` ids are kept."""
        if user.id in self._ids:
            return False
        self.count += 1
        self._ids[user.id] = None
        if len(self._ids) > keep:
            del self._ids[next(iter(self._ids))]
        self._newest.append(user)
        return True

    def text(self, window: float) -> str:
        newest = list(reversed(self._newest))
        if self.count == 1:
            user = newest[0]
            return _("🔒 {name} (id {id}) wrote to the bot and was ignored. To let them in, "
                     "add the id to telegram.viewers, traders or admins.").format(
                name=render.safe_name(user.full_name), id=user.id)
        names = ", ".join(render.shown_user(u.full_name, u.id) for u in newest[:DIGEST_NAMES])
        ids = ", ".join(str(u.id) for u in newest)
        return _("🔒 Unknown users who wrote to the bot in the last {minutes} min and were "
                 "ignored: {n}. Newest: {names}. Their ids, newest first: {ids}. To let "
                 "someone in, add their id to telegram.viewers, traders or admins.").format(
            minutes=f"{window / 60:g}", n=self.count, names=names, ids=ids)
