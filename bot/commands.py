"""The command list: name, minimum role and help text. /help and the Telegram menu read it."""

from __future__ import annotations

from dataclasses import dataclass

from aiogram.utils.i18n import lazy_gettext as __

from bot.roles import Role


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    role: Role
    usage: str
    help: object  # a lazy translated string


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", Role.VIEWER, "/start", __("who you are here")),
    CommandSpec("help", Role.VIEWER, "/help", __("the commands you may run")),
    CommandSpec("status", Role.VIEWER, "/status", __("engine, accounts, venues, protection")),
    CommandSpec("positions", Role.VIEWER, "/positions [SYMBOL|unprotected]",
                __("open positions and their stops")),
    CommandSpec("pnl", Role.VIEWER, "/pnl [days]",
                __("realized PnL, fees, funding and unrealized, with a chart")),
    CommandSpec("fix_sl", Role.TRADER, "/fix_sl [symbol]",
                __("check every position now and place missing stops")),
    CommandSpec("close", Role.TRADER, "/close SYMBOL",
                __("close one position (asks for confirmation)")),
    CommandSpec("close_all", Role.TRADER, "/close_all",
                __("close every position (asks for confirmation)")),
    CommandSpec("cancel_all", Role.TRADER, "/cancel_all",
                __("cancel every order except protective stops (asks for confirmation)")),
    CommandSpec("report", Role.TRADER, "/report",
                __("ops report: badges, venues, positions, PnL today (CSV files)")),
    CommandSpec("long", Role.TRADER,
                "/long SYMBOL SIZE [@PRICE] [sl PRICE|PCT%] [tp PRICE|PCT%]",
                __("open a long with its stop; SIZE 0.01, $500, r10 or r1%; @PRICE for a "
                   "limit (asks first)")),
    CommandSpec("short", Role.TRADER,
                "/short SYMBOL SIZE [@PRICE] [sl PRICE|PCT%] [tp PRICE|PCT%]",
                __("open a short with its stop (asks for confirmation)")),
    CommandSpec("trail", Role.TRADER, "/trail SYMBOL [activation%] [callback%] | off",
                __("trail the stop behind the best price")),
    CommandSpec("breakeven", Role.TRADER, "/breakeven SYMBOL [at X%]",
                __("move the stop to entry plus fees once the price moved X %")),
    CommandSpec("sl", Role.TRADER, "/sl SYMBOL PRICE|PCT%",
                __("move the stop (further from the price asks for confirmation)")),
    CommandSpec("tp", Role.TRADER, "/tp SYMBOL PRICE|PCT% | off",
                __("a reduce-only take-profit for the whole position")),
    CommandSpec("lang", Role.VIEWER, "/lang en|ru", __("your language")),
    CommandSpec("hold", Role.ADMIN, "/hold [reason]",
                __("block new entries (stops stay and protection goes on)")),
    CommandSpec("resume", Role.ADMIN, "/resume", __("lift HOLD")),
)

BY_NAME = {c.name: c for c in COMMANDS}


def role_flag(name: str) -> dict[str, Role]:
    """Handler flags for a command: `@router.message(Command(name), flags=role_flag(name))`."""
    return {"role": BY_NAME[name].role}
