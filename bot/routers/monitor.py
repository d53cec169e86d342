"""/status: the read-only view for everyone on the list (/positions: routers/positions.py)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot import render
from bot.commands import role_flag
from bot.routers.replies import answer_long
from engine.control import ControlService


def build_router() -> Router:
    router = Router(name="monitor")

    @router.message(Command("status"), flags=role_flag("status"))
    async def status(message: Message, control: ControlService) -> None:
        await answer_long(message, render.status(control.status()))

    return router
