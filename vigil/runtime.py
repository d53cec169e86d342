"""The composition root: builds everything from settings, starts it in order, stops it in order."""

from __future__ import annotations

import asyncio
import gc
import os
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

from aiohttp import web
from loguru import logger

from engine.approvals import Approvals
from engine.bus import EventBus
from engine.chaos import build_profile, with_chaos
from engine.clock import Clock, SystemClock
from engine.control import ControlService
from engine.domain import events as ev
from engine.entries.gates import RiskLimits
from engine.errors import OperatorError
from engine.exits.book import ExitBook
from engine.metrics import Metrics
from engine.ops import OpsReports
from engine.pacing import LoopPacer
from engine.pnl.ledger_sync import LedgerSync
from engine.pnl.schedule import DailySchedule
from engine.pnl.service import PnlReports
from engine.ports import Venue
from engine.protection.guard import AccountGuard
from engine.protection.policy import CrossedPolicy, FixedDistancePricer, ProtectionPolicy
from engine.protection.reconcile import Orphan, orphans
from engine.results import ReconcileReport
from engine.risk import DailyLossCap
from engine.sim.exchange import SimExchange
from engine.sim.remote import RemoteSimVenue
from engine.sim.store import PaperStore, open_paper_exchange
from engine.sim.venue import SimVenue, run_price_feed
from engine.unavailable import UnavailableVenue
from storage.approvals import ApprovalRepo
from storage.db import Database
from storage.exits import ExitRepo
from storage.journal import Journal
from storage.ledger import LedgerRepo
from storage.lock import DataDirLock
from storage.outbox import OutboxRepo
from storage.repositories import PositionRepo, StateRepo
from storage.retention import JournalRetention
from storage.secrets import KeyStore
from vigil.exits import amend_limits, exit_defaults
from vigil.http.app import PUBLIC_PATHS
from vigil.http.server import HttpServer, ops_reports, ops_server
from vigil.logs import REDACTOR
from vigil.settings import AccountSettings, Settings

if TYPE_CHECKING:  # the chat (aiogram) is imported when a Runtime starts, not for `vigil check`
    from aiogram import Bot, Dispatcher
    from aiogram.utils.i18n import I18n

    from bot.approvals import ApprovalService
    from bot.notifier import Notifier
    from bot.reports import DailyReporter
    from bot.signal_confirm import TelegramConfirm
    from vigil.signals_http import SignalConfirm

LOSS_CAP_LEDGER_FRESH_SECONDS = 30.0  # the loss cap reads the venue ledger at most this often
JOURNAL_LINGER_SECONDS = 0.002  # a journal batch nobody waits on gathers rows this long
PAPER_CHECKPOINT_SECONDS = 5.0  # in-process paper mode saves its walked marks this often


def protection_policy(settings: Settings) -> ProtectionPolicy:
    g = settings.guard
    pricer = FixedDistancePricer(g.stop_percent,
                                 {k: v.stop_percent for k, v in g.symbols.items()})
    return ProtectionPolicy(pricer, crossed=CrossedPolicy(g.crossed_policy),
                            tighten_buffer_percent=g.tighten_buffer_percent,
                            sla_seconds=g.sla_seconds, zombie_grace_seconds=g.zombie_grace_seconds)


@dataclass
class Engine:
    """Storage, venues, guards and the control service: everything but the chat."""

    settings: Settings
    clock: Clock
    db: Database
    journal: Journal
    bus: EventBus
    state: StateRepo
    metrics: Metrics
    guards: dict[str, AccountGuard]
    control: ControlService
    sims: dict[str, SimExchange] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    lock: DataDirLock | None = None
    ledger_sync: LedgerSync | None = None
    venues: dict[str, Venue] = field(default_factory=dict)
    retention: JournalRetention | None = None
    paper_stores: dict[str, PaperStore] = field(default_factory=dict)

    @classmethod
    async def build(cls, settings: Settings, clock: Clock | None = None) -> Engine:
        clock = clock or SystemClock()
        lock = DataDirLock(settings.data_dir)
        lock.acquire()
        db: Database | None = None
        try:
            db = await Database.open(settings.db_path)
            journal = Journal(db, background=True, linger=JOURNAL_LINGER_SECONDS)
            # Every subscriber here does I/O (the notifier writes the outbox): each gets its own
            # queue, so publishing on the protection path never waits for them.
            bus = EventBus(journal.append, queue_subscribers=True, clock=clock)
            state, positions, metrics = StateRepo(db), PositionRepo(db), Metrics()
            metrics.track_bus(bus.backlog, lambda: bus.waits)
            policy = protection_policy(settings)
            guards: dict[str, AccountGuard] = {}
            venues: dict[str, Venue] = {}
            sims: dict[str, SimExchange] = {}
            stores: dict[str, PaperStore] = {}
            chaos = build_profile(settings.chaos.profile, settings.chaos.overrides())
            pacer = LoopPacer()  # one loop, one budget per turn for every account's steps
            for index, account in enumerate(settings.accounts):
                venue = venues[account.name] = with_chaos(
                    await _build_venue(account, settings, clock, db, sims, index, metrics,
                                       stores),
                    chaos, clock, seed=settings.chaos.seed + index)
                exits = ExitBook(account.name, policy.pricer, exit_defaults(settings.exits),
                                 amend_limits(settings.exits), clock, venue.market, ExitRepo(db))
                guards[account.name] = AccountGuard(
                    account.name, venue, bus=bus, store=positions, state=state, policy=policy,
                    metrics=metrics, clock=clock,
                    interval_seconds=settings.guard.interval_seconds, exits=exits, pacer=pacer)
            control = ControlService(
                guards, venues_testnet={a.name: a.testnet for a in settings.accounts},
                state=state, bus=bus, clock=clock,
                mode="paper" if settings.paper_mode else "live",
                limits=risk_limits(settings))
            control.chaos_profile = chaos.name if chaos.active else None
            await control.load()
        except BaseException:
            if db is not None:
                await db.close()
            for store in stores.values():
                store.close()
            lock.release()
            raise
        ledger_sync = LedgerSync(venues, LedgerRepo(db), clock)
        control.reports = PnlReports(control, ledger_sync.repo, ledger_sync,
                                     tz=settings.reports.timezone, clock=clock)
        return cls(settings, clock, db, journal, bus, state, metrics, guards, control, sims,
                   lock=lock, ledger_sync=ledger_sync, venues=venues, paper_stores=stores)

    async def start(self) -> None:
        for guard in self.guards.values():
            await guard.load()
            self.tasks.append(asyncio.create_task(self._run_account(guard),
                                                  name=f"guard {guard.account}"))
        for name, exchange in self.sims.items():
            interval = self.settings.sim.price_interval_seconds
            self.tasks.append(asyncio.create_task(
                run_price_feed(exchange, self.clock, interval), name=f"prices {name}"))
        for name, store in self.paper_stores.items():
            self.tasks.append(asyncio.create_task(store.run_checkpoints(
                self.clock, PAPER_CHECKPOINT_SECONDS), name=f"paper store {name}"))
        assert self.ledger_sync is not None
        self.tasks.append(asyncio.create_task(self.ledger_sync.run(), name="ledger sync"))
        limit = self.settings.risk.daily_loss_limit
        if limit is not None:
            cap = DailyLossCap(self.control, limit=limit,
                               tz=ZoneInfo(self.settings.reports.timezone),
                               realized_since=self.realized_since, state=self.state,
                               bus=self.bus, clock=self.clock)
            self.tasks.append(asyncio.create_task(
                cap.run(self.settings.guard.interval_seconds), name="daily loss cap"))
            self.control.entries.pnl_today = cap.pnl_today  # the entry gate asks the same
        retention = self.settings.journal
        if retention.retention_days is not None:
            self.retention = JournalRetention(
                self.journal, self.state, self.clock, days=retention.retention_days,
                directory=self.settings.journal_archive_dir, at=retention.archive_time)
            self.tasks.append(asyncio.create_task(self.retention.run(), name="journal archive"))
        await self.bus.publish(ev.EngineStarted(account="engine", mode=self.control.mode))

    async def realized_since(self, account: str, since: datetime) -> Decimal:
        """Realized PnL, fees and funding since a time, from the venue's own ledger; while the
        ledger cannot be read, the journal's closes (estimated where no fills were seen)."""
        sync = self.ledger_sync
        assert sync is not None
        await sync.sync_now(fresh_for=LOSS_CAP_LEDGER_FRESH_SECONDS)
        if account not in sync.errors:
            until = self.clock.now() + timedelta(seconds=1)
            totals = await sync.repo.sums(account, since, until)
            return sum((amount for kinds in totals.values() for amount in kinds.values()),
                       Decimal(0))
        rows = await self.journal.rows(account=account, kinds=("position_closed",),
                                       since_at=since, limit=1_000_000)
        return sum((Decimal(r.payload["realized_pnl"]) for r in rows
                    if r.payload.get("realized_pnl") is not None), Decimal(0))

    async def _run_account(self, guard: AccountGuard) -> None:
        """Start-up self-check, retried with backoff; a failing account never stops the rest."""
        await guard.start_venue(retry=True)
        try:  # entries a crash left pending: protected or verified flat before anything else
            await self.control.entries.resume(guard.account)
        except Exception:
            logger.exception("resuming the pending entries of {} failed", guard.account)
        await guard.run()

    async def check(self) -> tuple[list[ReconcileReport], dict[str, list[Orphan]], bool]:
        """`vigil check`: each account started as `run` starts it (journal first, then the
        venue's self-check), one protection pass; the orphaned stops still resting after it
        (young ones are left for their grace: a position may be on its way); and whether every
        position is protected with no overdue zombie left (its cancel failed)."""
        reports = []
        left: dict[str, list[Orphan]] = {}
        for guard in self.guards.values():
            await guard.load()
            try:
                await guard.start_venue(retry=False)
                reports.append(await guard.reconcile_now())
                left[guard.account] = orphans(
                    guard.known_orders(), {p.symbol for p in guard.positions()},
                    guard.zombies.first_seen, self.clock.now(), guard.policy.zombie_grace_seconds)
            except Exception as exc:  # one failing account must not hide the others
                reports.append(ReconcileReport(
                    account=guard.account, positions=0, unprotected_before=(),
                    unprotected_after=(), events=(), venue_calls=0,
                    error=f"{type(exc).__name__}: {exc}"))
        status = self.control.status()
        ok = (all(r.error is None and not r.unprotected_after for r in reports)
              and not any(a.halted for a in status.accounts)
              and not any(o.overdue for found in left.values() for o in found))
        return reports, left, ok

    async def stop(self) -> None:
        for guard in self.guards.values():
            await guard.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.bus.publish(ev.EngineStopped(account="engine"))
        await self.bus.stop()  # the notifier has every alert before the chat flushes it
        await self.journal.flush()

    async def close(self) -> None:
        """After stop(), and after the chat delivered what it could: venues, then storage."""
        for venue in self.venues.values():
            with suppress(Exception):
                await venue.close()
        for store in self.paper_stores.values():
            store.close()
        await self.db.close()
        if self.lock is not None:
            self.lock.release()


async def _build_venue(account: AccountSettings, settings: Settings, clock: Clock,
                       db: Database, sims: dict[str, SimExchange], index: int,
                       metrics: Metrics, stores: dict[str, PaperStore]) -> Venue:
    if account.venue == "sim" and settings.sim.url is not None:
        return RemoteSimVenue(settings.sim.url, clock)
    if account.venue == "sim":
        # In-process paper mode keeps its exchange in data_dir: positions survive a restart,
        # and the demo ones are created only with a new file.
        exchange, stores[account.name] = open_paper_exchange(
            settings.data_dir / f"paper-{account.name}.sqlite3", clock,
            seed=settings.sim.seed + index, demo=settings.sim.demo_positions,
            orphan_stop_age_seconds=settings.sim.demo_orphan_stop_age_seconds)
        sims[account.name] = exchange
        return SimVenue(exchange, clock, latency=settings.sim.latency_ms / 1000)
    from engine.venues.factory import make_venue

    try:
        keys = KeyStore(db.conn, KeyStore.load_master_key(settings.data_dir, os.environ))
        creds = await keys.get(account.name)
    except Exception as exc:  # unreadable key file, wrong master key: this account only
        return UnavailableVenue(account.venue, f"keys cannot be read: {exc}")
    if creds is None:
        return UnavailableVenue(account.venue, "no API keys stored; run `vigil keys add "
                                f"{account.name}` and restart")
    secrets = [creds.api_key.get_secret_value(), creds.secret.get_secret_value(),
               creds.password.get_secret_value() if creds.password else None]
    REDACTOR.add(secrets)
    try:
        venue = make_venue(account.name, account.venue, api_key=secrets[0], secret=secrets[1],
                           password=secrets[2], testnet=account.testnet, clock=clock)
    except OperatorError as exc:  # e.g. Bitget keys stored without the passphrase
        return UnavailableVenue(account.venue, str(exc))
    metrics.track_budget(account.name, venue.budget.stats)
    return venue


class Runtime:
    """Engine + chat (Telegram polling, or the console when no token is configured)."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 telegram_clock: Clock | None = None, stdin: TextIO | None = None,
                 stdout: TextIO | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        # Telegram's pacing and retry_after are real seconds, whatever clock drives the engine.
        self.telegram_clock = telegram_clock or SystemClock()
        self.stdin = stdin
        self.stdout = stdout
        self.console = settings.telegram.token is None
        self.engine: Engine | None = None
        self.bot: Bot | None = None  # commands: replies, callback answers, edits
        self.alert_bot: Bot | None = None  # the notifier's and the daily report's
        self.dp: Dispatcher | None = None
        self.notifier: Notifier | None = None
        self.reporter: DailyReporter | None = None
        self.i18n: I18n | None = None
        self.signal_confirm: TelegramConfirm | None = None  # [signals] confirm_notional
        self._tasks: list[asyncio.Task[Any]] = []
        self.menus: asyncio.Task[None] | None = None  # publishing the command menus
        self.http: HttpServer | None = None  # the ops HTTP app ([http]), webhook included

    async def start(self) -> None:
        # The chat's modules pull in aiogram (seconds of start-up): imported only here, so the
        # engine alone (`vigil check`, `vigil journal verify`) never pays for them.
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        from bot.approvals import ApprovalService
        from bot.console import CONSOLE_TOKEN, CONSOLE_USER_ID, ConsoleSession, run_console
        from bot.dispatcher import build_dispatcher
        from bot.i18n import build_i18n
        from bot.notifier import PER_CHAT_INTERVAL, Notifier
        from bot.reports import DailyReporter
        from bot.retry import ReplyRetry
        from bot.roles import RoleBook

        t = self.settings.telegram
        self.engine = engine = await Engine.build(self.settings, self.clock)
        self.i18n = i18n = build_i18n(t.default_language)
        admins = (*t.admins, CONSOLE_USER_ID) if self.console else t.admins
        roles = RoleBook(admins=admins, traders=t.traders, viewers=t.viewers)
        if self.console:
            self.bot = self.alert_bot = Bot(CONSOLE_TOKEN, session=ConsoleSession(
                self.stdout, pictures=self.settings.data_dir / "reports"))
            chats: tuple[int, ...] = (CONSOLE_USER_ID,)
        else:
            assert t.token is not None
            token = t.token.get_secret_value()
            REDACTOR.add([token])
            api = TelegramAPIServer.from_base(t.api_url)
            self.bot = Bot(token, session=AiohttpSession(api=api))
            self.bot.session.middleware(ReplyRetry(self.telegram_clock))
            # Alerts and scheduled reports get a session without that retry: they handle 429
            # themselves (the outbox holds the chat) and must not block inside a retry loop.
            self.alert_bot = Bot(token, session=AiohttpSession(api=api))
            chats = t.alert_chats
        # Telegram's rate limits and retry_after are real seconds, whatever the engine's clock.
        self.notifier = Notifier(self.alert_bot, chats=chats, roles=roles, i18n=i18n,
                                 state=engine.state, clock=self.telegram_clock,
                                 outbox=OutboxRepo(engine.db),
                                 stranger_window=t.stranger_window_seconds,
                                 # a terminal has no flood limits: no pacing at the console
                                 per_chat_interval=0.0 if self.console else PER_CHAT_INTERVAL,
                                 journal=engine.journal)
        engine.bus.subscribe(self.notifier.on_event, batch=self.notifier.on_published)
        # Alerts for what the journal has past the outbox's checkpoint (a crash came between the
        # two), written while the engine already protects: the bus's batches wait for it and
        # skip what it wrote.
        self._tasks.append(await self.notifier.start_catch_up())
        approvals = ApprovalService(Approvals(
            ApprovalRepo(engine.db), engine.control, clock=self.clock,
            ttl_seconds=self.settings.approvals.ttl_seconds,
            two_person=self.settings.approvals.two_person), i18n=i18n)
        self.dp = build_dispatcher(control=engine.control, approvals=approvals, roles=roles,
                                   i18n=i18n, state=engine.state,
                                   on_stranger=self.notifier.on_stranger,
                                   alert_outbox=self.notifier.outbox)
        reports = self.dp["ops"] = ops_reports(self.settings, engine.control, self.clock)
        self._tasks.append(asyncio.create_task(approvals.expire_loop(self.bot),
                                               name="approvals expiry"))
        self.signal_confirm = self._signal_confirm(approvals, admins)
        self._tasks.append(asyncio.create_task(self.notifier.run(), name="notifier"))
        # What start-up built (aiogram's and pydantic's types, the settings, ~200,000 objects)
        # lives as long as the process: out of the collector's sight, a full collection later
        # blocks the loop ~1 ms instead of ~120 ms (bench/composed.py, BENCHMARKS.md).
        gc.freeze()
        await engine.start()
        r = self.settings.reports
        self.reporter = DailyReporter(self.alert_bot, engine.control.pnl_for_slot,
                                      self.notifier, i18n=i18n, state=engine.state,
                                      clock=self.telegram_clock)
        schedule = self.reporter.schedule = DailySchedule(
            self.reporter.send_scheduled, at=r.daily_time, tz=r.timezone, clock=self.clock,
            state=engine.state)
        self._tasks.append(asyncio.create_task(schedule.run(), name="daily report"))
        webhook = None if self.console else t.webhook_url
        if self.settings.http.enabled:
            await self._start_http(reports, webhook)
        if self.console:
            self._tasks.append(asyncio.create_task(
                run_console(self.dp, self.bot, self.stdin), name="console"))
        else:
            # In the background: start-up and polling never wait on Telegram for the menus.
            self.menus = asyncio.create_task(self._set_menu(), name="menus")
            self._tasks.append(self.menus)
            if webhook is not None:  # Telegram POSTs to the [http] app instead of polling
                self._tasks.append(asyncio.create_task(self._set_webhook(webhook),
                                                       name="webhook"))
            else:
                self._tasks.append(asyncio.create_task(
                    self.dp.start_polling(self.bot, handle_signals=False,
                                          close_bot_session=False), name="polling"))

    def _signal_confirm(self, approvals: ApprovalService, admins: tuple[int, ...]
                        ) -> TelegramConfirm | None:
        """Large signals wait for an admin's Confirm ([signals] confirm_notional), sent to
        `confirm_chat` or the first admin."""
        from bot.signal_confirm import TelegramConfirm

        s = self.settings.signals
        if s.confirm_notional is None:
            return None
        chat = s.confirm_chat or (admins[-1] if self.console else admins[0] if admins else None)
        if chat is None:
            raise ValueError("[signals] confirm_notional needs [telegram] admins or "
                             "[signals] confirm_chat: nobody could confirm a large signal")
        assert self.bot is not None and self.i18n is not None
        return TelegramConfirm(approvals, self.bot, chat_id=chat,
                               lang=self.settings.telegram.default_language)

    async def _start_http(self, reports: OpsReports, webhook: str | None) -> None:
        """The ops HTTP app on [http]; with a webhook URL it serves Telegram's updates too."""
        assert self.engine is not None and self.dp is not None and self.bot is not None
        engine, t, h = self.engine, self.settings.telegram, self.settings.http
        REDACTOR.add([s.get_secret_value() for s in (t.webhook_secret, h.token) if s])
        extra = []
        if webhook is not None:
            from vigil.http.telegram import telegram_webhook  # aiogram: not on the shell's path

            assert t.webhook_secret is not None
            extra.append(telegram_webhook(self.dp, self.bot, url=webhook,
                                          secret=t.webhook_secret.get_secret_value()))
        if self.settings.signals.sources:
            extra.append(partial(_mount_signals, settings=self.settings, control=engine.control,
                                 clock=self.clock, bus=engine.bus, confirm=self.signal_confirm))
        self.http = ops_server(self.settings, control=engine.control, reports=reports,
                               journal=engine.journal, registry=engine.metrics.registry,
                               db=engine.db, clock=self.clock, extra=extra)
        await self.http.start()

    async def _set_menu(self) -> None:
        """Per-role command menus (bot/menus.py), sent only when they changed."""
        from bot.menus import publish_menus
        from bot.roles import RoleBook

        assert self.bot is not None and self.i18n is not None and self.engine is not None
        t = self.settings.telegram
        roles = RoleBook(admins=t.admins, traders=t.traders, viewers=t.viewers)
        by_user = {uid: role for uid in {*t.admins, *t.traders, *t.viewers}
                   if (role := roles.role_of(uid)) is not None}
        try:
            await publish_menus(self.bot, by_user, self.i18n, self.engine.state)
        except Exception as exc:  # a menu is a nicety; never fail start-up over it
            logger.warning("could not set the bot's command menus: {}", exc)

    async def _set_webhook(self, url: str) -> None:
        """setWebhook with the secret, retried until Telegram takes it (as polling retries)."""
        from vigil.http.telegram import set_webhook

        assert self.bot is not None and self.dp is not None
        secret = self.settings.telegram.webhook_secret
        assert secret is not None
        delay = 1.0
        while True:
            try:
                await set_webhook(self.dp, self.bot, url=url, secret=secret.get_secret_value())
                logger.info("Telegram webhook set: {}", url)
                return
            except Exception as exc:  # Telegram down at start: updates wait on its side
                logger.warning("setWebhook failed ({}); retrying in {:.0f}s", exc, delay)
                await self.telegram_clock.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def stop(self) -> None:
        """In order: stop taking commands, stop the engine, deliver what is queued, close."""
        if self.http is not None:
            await self.http.stop()
        if self.dp is not None and not self.console:
            with suppress(RuntimeError):  # polling never started
                await self.dp.stop_polling()
        for task in self._tasks:
            if task.get_name() != "notifier":
                task.cancel()
        if self.engine is not None:
            await self.engine.stop()
        if self.notifier is not None:
            await self.notifier.flush()  # the outbox keeps the rest for the next start
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.engine is not None:
            await self.engine.close()
        for bot in (self.bot, self.alert_bot):
            if bot is not None:  # the console's one session, closed twice, does not mind
                await bot.session.close()


def risk_limits(settings: Settings) -> RiskLimits:
    """Settings `[risk]` -> the entry gates' limits."""
    risk = settings.risk
    return RiskLimits(
        daily_loss_limit=risk.daily_loss_limit, max_open_positions=risk.max_open_positions,
        max_position_notional=risk.max_position_notional,
        max_account_notional=risk.max_account_notional, max_leverage=risk.max_leverage,
        min_stop_percent=risk.min_stop_percent, max_stop_percent=risk.max_stop_percent,
        stop_out_streak=risk.stop_out_streak, cool_down_seconds=risk.cool_down_minutes * 60,
        fee_rate=risk.fee_rate_percent / 100, approval_notional=risk.approval_notional,
        default_stop_percent=settings.guard.stop_percent,
        limit_timeout_seconds=risk.limit_timeout_seconds)


def _mount_signals(app: web.Application, *, settings: Settings, control: ControlService,
                   clock: Clock, bus: EventBus, confirm: SignalConfirm | None = None) -> None:
    """The signal webhook on the ops app. Its sources sign each body (HMAC), so their paths
    skip the ops bearer token, like Telegram's webhook."""
    from vigil.signals_http import add_signal_routes

    add_signal_routes(app, control=control, settings=settings.signals, clock=clock, bus=bus,
                      confirm=confirm)
    app[PUBLIC_PATHS].update(f"/signal/{name}" for name in settings.signals.sources)
