"""Build the Dispatcher: access first, then language, then one router per feature."""

from __future__ import annotations

from aiogram import Dispatcher, Router
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import I18n
from loguru import logger

from bot import alert_buttons
from bot.access import AccessMiddleware, LateAnswerMiddleware, RoleGate, StrangerHook
from bot.approvals import ApprovalService
from bot.i18n import UserLocaleMiddleware
from bot.roles import RoleBook
from bot.routers import (
    core,
    entries,
    exits,
    hold,
    language,
    monitor,
    pnl,
    positions,
    protection,
    report,
    trading,
)
from engine.control import ControlService
from engine.outbox import Outbox
from engine.ports import StateStore


def build_dispatcher(*, control: ControlService, approvals: ApprovalService, roles: RoleBook,
                     i18n: I18n, state: StateStore,
                     on_stranger: StrangerHook | None = None,
                     alert_outbox: Outbox | None = None) -> Dispatcher:
    dp = Dispatcher(name="vigil")
    dp["control"] = control
    dp["approvals"] = approvals
    dp["alert_outbox"] = alert_outbox  # the alerts' buttons are read back from it
    dp.update.outer_middleware(AccessMiddleware(roles, on_stranger))
    dp.callback_query.outer_middleware(LateAnswerMiddleware())
    UserLocaleMiddleware(i18n, state).setup(dp)
    routers: list[Router] = [core.build_router(), monitor.build_router(), positions.build_router(),
                             protection.build_router(), trading.build_router(),
                             entries.build_router(), hold.build_router(),
                             language.build_router(state), pnl.build_router(),
                             alert_buttons.build_router(), report.build_router(),
                             exits.build_router(),
                             core.build_fallback_router()]
    for router in routers:
        router.message.middleware(RoleGate())
        router.callback_query.middleware(RoleGate())
        dp.include_router(router)
    dp.errors.register(_on_error)
    return dp


async def _on_error(event: ErrorEvent) -> bool:
    """The one place a handler's failure ends: logged with the update, never re-raised into
    polling (which would retry nothing and only spam the log)."""
    logger.opt(exception=event.exception).error(
        "update {} failed: {}: {}", event.update.update_id, type(event.exception).__name__,
        event.exception)
    return True
