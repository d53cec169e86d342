"""The composition root: builds everything from settings, starts it in order, stops it in order."""

from __future__ import annotations

import asyncio
import os
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import BotCommand
from aiogram.utils.i18n import I18n
from loguru import logger

from bot.commands import COMMANDS
from bot.console import CONSOLE_TOKEN, CONSOLE_USER_ID, ConsoleSession, run_console
from bot.dispatcher import build_dispatcher
from bot.i18n import build_i18n
from bot.notifier import Notifier
from bot.roles import RoleBook
from engine.bus import EventBus
from engine.clock import Clock, SystemClock
from engine.control import ControlService
from engine.domain import events as ev
from engine.errors import OperatorError, VenueError
from engine.metrics import Metrics
from engine.ports import Venue
from engine.protection.guard import AccountGuard
from engine.protection.policy import CrossedPolicy, FixedDistancePricer, ProtectionPolicy
from engine.sim.demo import seed_demo
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue, run_price_feed
from storage.db import Database
from storage.journal import Journal
from storage.repositories import PositionRepo, StateRepo
from storage.secrets import KeyStore
from vigil.logs import REDACTOR
from vigil.settings import AccountSettings, Settings

START_RETRY_MAX = 60.0


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

    @classmethod
    async def build(cls, settings: Settings, clock: Clock | None = None) -> Engine:
        clock = clock or SystemClock()
        db = await Database.open(settings.db_path)
        journal = Journal(db)
        bus = EventBus(journal.append)
        state, positions, metrics = StateRepo(db), PositionRepo(db), Metrics()
        policy = protection_policy(settings)
        guards: dict[str, AccountGuard] = {}
        sims: dict[str, SimExchange] = {}
        for index, account in enumerate(settings.accounts):
            venue = await _build_venue(account, settings, clock, db, sims, index)
            guards[account.name] = AccountGuard(
                account.name, venue, bus=bus, store=positions, state=state, policy=policy,
                metrics=metrics, clock=clock, interval_seconds=settings.guard.interval_seconds)
        control = ControlService(
            guards, venues_testnet={a.name: a.testnet for a in settings.accounts}, state=state,
            bus=bus, clock=clock, mode="paper" if settings.paper_mode else "live")
        await control.load()
        return cls(settings, clock, db, journal, bus, state, metrics, guards, control, sims)

    async def start(self) -> None:
        for guard in self.guards.values():
            await guard.load()
            self.tasks.append(asyncio.create_task(self._run_account(guard),
                                                  name=f"guard {guard.account}"))
        for name, exchange in self.sims.items():
            interval = self.settings.sim.price_interval_seconds
            self.tasks.append(asyncio.create_task(
                run_price_feed(exchange, self.clock, interval), name=f"prices {name}"))
        await self.bus.publish(ev.EngineStarted(account="engine", mode=self.control.mode))

    async def _run_account(self, guard: AccountGuard) -> None:
        """Start-up self-check, retried with backoff; a failing account never stops the rest."""
        delay = 1.0
        while True:
            try:
                await guard.venue.start()
                break
            except VenueError as exc:
                guard.last_error = f"start-up check failed: {exc}"
                await self.bus.publish(ev.VenueFailure(
                    account=guard.account, operation="start-up check",
                    error=type(exc).__name__, message=str(exc)))
                if isinstance(exc, OperatorError):
                    await guard.halt(f"start-up check failed: {exc}")
                await self.clock.sleep(delay)
                delay = min(delay * 2, START_RETRY_MAX)
        await guard.run()

    async def stop(self) -> None:
        for guard in self.guards.values():
            await guard.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.bus.publish(ev.EngineStopped(account="engine"))
        for guard in self.guards.values():
            with suppress(Exception):
                await guard.venue.close()
        await self.db.close()


async def _build_venue(account: AccountSettings, settings: Settings, clock: Clock,
                       db: Database, sims: dict[str, SimExchange], index: int) -> Venue:
    if account.venue == "sim":
        exchange = SimExchange(clock, seed=settings.sim.seed + index)
        if settings.sim.demo_positions:
            seed_demo(exchange)
        sims[account.name] = exchange
        return SimVenue(exchange, clock, latency=settings.sim.latency_ms / 1000)
    from engine.venues.factory import make_venue

    keys = KeyStore(db.conn, KeyStore.load_master_key(settings.data_dir, os.environ))
    creds = await keys.get(account.name)
    if creds is None:
        raise OperatorError(f"account {account.name}: no API keys stored; run "
                            f"`vigil keys add {account.name}`")
    secrets = [creds.api_key.get_secret_value(), creds.secret.get_secret_value(),
               creds.password.get_secret_value() if creds.password else None]
    REDACTOR.add(secrets)
    return make_venue(account.name, account.venue, api_key=secrets[0], secret=secrets[1],
                      password=secrets[2], testnet=account.testnet, clock=clock)


class Runtime:
    """Engine + chat (Telegram polling, or the console when no token is configured)."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.stdin = stdin
        self.stdout = stdout
        self.console = settings.telegram.token is None
        self.engine: Engine | None = None
        self.bot: Bot | None = None
        self.dp: Dispatcher | None = None
        self.notifier: Notifier | None = None
        self.i18n: I18n | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        t = self.settings.telegram
        self.engine = engine = await Engine.build(self.settings, self.clock)
        self.i18n = i18n = build_i18n(t.default_language)
        admins = (*t.admins, CONSOLE_USER_ID) if self.console else t.admins
        roles = RoleBook(admins=admins, traders=t.traders, viewers=t.viewers)
        if self.console:
            self.bot = Bot(CONSOLE_TOKEN, session=ConsoleSession(self.stdout))
            chats: tuple[int, ...] = (CONSOLE_USER_ID,)
        else:
            assert t.token is not None
            REDACTOR.add([t.token.get_secret_value()])
            session = AiohttpSession(api=TelegramAPIServer.from_base(t.api_url))
            self.bot = Bot(t.token.get_secret_value(), session=session)
            chats = t.alert_chats
        self.notifier = Notifier(self.bot, chats=chats, roles=roles, i18n=i18n,
                                 state=engine.state, clock=self.clock)
        engine.bus.subscribe(self.notifier.on_event)
        self.dp = build_dispatcher(control=engine.control, roles=roles, i18n=i18n,
                                   state=engine.state, on_stranger=self.notifier.on_stranger)
        self._tasks.append(asyncio.create_task(self.notifier.run(), name="notifier"))
        await engine.start()
        if self.console:
            self._tasks.append(asyncio.create_task(
                run_console(self.dp, self.bot, self.stdin), name="console"))
        else:
            await self._set_menu()
            self._tasks.append(asyncio.create_task(
                self.dp.start_polling(self.bot, handle_signals=False, close_bot_session=False),
                name="polling"))

    async def _set_menu(self) -> None:
        """The Telegram command menu, in each language we speak (all commands: Telegram cannot
        show a per-user menu without per-chat scopes; /help is per role)."""
        assert self.bot is not None and self.i18n is not None
        try:
            for lang in (None, *self.i18n.available_locales):
                with self.i18n.context(), self.i18n.use_locale(lang or self.i18n.default_locale):
                    menu = [BotCommand(command=c.name, description=str(c.help))
                            for c in COMMANDS]
                await self.bot.set_my_commands(menu, language_code=lang)
        except Exception as exc:  # a menu is a nicety; never fail start-up over it
            logger.warning("could not set the bot's command menu: {}", exc)

    async def stop(self) -> None:
        """In order: stop taking commands, stop the engine, deliver what is queued, close."""
        if self.dp is not None and not self.console:
            with suppress(RuntimeError):  # polling never started
                await self.dp.stop_polling()
        for task in self._tasks:
            if task.get_name() != "notifier":
                task.cancel()
        if self.engine is not None:
            await self.engine.stop()
        if self.notifier is not None:
            await self.notifier.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.bot is not None:
            await self.bot.session.close()
