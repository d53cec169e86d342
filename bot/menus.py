"""Telegram command menus per role: each configured user gets, in their chat's scope, the
commands their role may run; everyone else (the default scope) sees only /start and /help.

Every menu is published in the default language and, with `language_code`, in each language
we speak; Telegram picks by the user's app language. What was published is remembered
per scope (a digest in the state store), so a start-up with unchanged settings sends nothing, a
changed role or text republishes only that scope, and a user removed from the settings loses
their menu. A scope Telegram refused (a user who never opened the bot: "chat not found") is
tried again at the next start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from aiogram.utils.i18n import I18n
from loguru import logger

from bot.commands import COMMANDS, CommandSpec
from bot.roles import Role
from engine.ports import StateStore

PUBLIC = ("start", "help")  # what a stranger's menu shows
STATE_SCOPE = "telegram_menus"  # state key: the bot's id; value: {scope key: digest}
DEFAULT = "default"

MenuScope = BotCommandScopeDefault | BotCommandScopeChat


def commands_for(role: Role | None) -> list[CommandSpec]:
    """The commands on a menu: by role for configured users, /start and /help for the rest."""
    if role is None:
        return [c for c in COMMANDS if c.name in PUBLIC]
    return [c for c in COMMANDS if role >= c.role]


@dataclass(frozen=True)
class Menu:
    scope: MenuScope
    lists: dict[str | None, list[BotCommand]]  # language code (None: default) -> commands

    @property
    def digest(self) -> str:
        plain = {str(lang): [(c.command, c.description) for c in cmds]
                 for lang, cmds in self.lists.items()}
        return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class MenuUpdate:
    """What one `publish_menus` did, by scope key ("default", "chat:<id>")."""

    published: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def languages(i18n: I18n) -> list[str | None]:
    """None (the default language's list) and every language we have a catalog for (the
    default's own code too: it overwrites any list an older Vigil left under that code)."""
    return [None, *sorted(i18n.available_locales)]


def plan(roles: Mapping[int, Role], i18n: I18n) -> dict[str, Menu]:
    targets: list[tuple[str, MenuScope, Role | None]] = [(DEFAULT, BotCommandScopeDefault(), None)]
    targets += [(f"chat:{uid}", BotCommandScopeChat(chat_id=uid), role)
                for uid, role in sorted(roles.items())]
    menus = {}
    for key, scope, role in targets:
        lists: dict[str | None, list[BotCommand]] = {}
        for lang in languages(i18n):
            with i18n.context(), i18n.use_locale(lang or i18n.default_locale):
                lists[lang] = [BotCommand(command=c.name, description=str(c.help))
                               for c in commands_for(role)]
        menus[key] = Menu(scope, lists)
    return menus


async def publish_menus(bot: Bot, roles: Mapping[int, Role], i18n: I18n,
                        state: StateStore) -> MenuUpdate:
    """Bring Telegram's menus in line with `roles` (user id -> role), sending only changes."""
    wanted = plan(roles, i18n)
    stored: dict[str, str] = await state.get(STATE_SCOPE, str(bot.id)) or {}
    now = dict(stored)
    update = MenuUpdate()

    async def record() -> None:  # after each scope: an interrupted run redoes only the rest
        await state.put(STATE_SCOPE, str(bot.id), now)

    for key, menu in wanted.items():
        if stored.get(key) == menu.digest:
            continue
        try:
            for lang, commands in menu.lists.items():
                await bot.set_my_commands(commands, scope=menu.scope, language_code=lang)
        except TelegramAPIError as exc:
            logger.warning("command menu for {} not set: {}; tried again at the next start",
                           key, exc)
            now.pop(key, None)
            update.failed.append(key)
            continue
        now[key] = menu.digest
        await record()
        update.published.append(key)
    for key in sorted(stored.keys() - wanted.keys()):  # users no longer in the settings
        scope = BotCommandScopeChat(chat_id=int(key.removeprefix("chat:")))
        try:
            for lang in languages(i18n):
                await bot.delete_my_commands(scope=scope, language_code=lang)
        except TelegramAPIError as exc:
            logger.warning("command menu for {} not removed: {}", key, exc)
            update.failed.append(key)
            continue
        del now[key]
        await record()
        update.removed.append(key)
    return update
