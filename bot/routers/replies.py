"""Replies longer than Telegram's 4096-character limit are split on line boundaries."""

from __future__ import annotations

from aiogram.types import Message

from bot.split import split_message


async def answer_long(message: Message, text: str) -> None:
    for chunk in split_message(text):
        await message.answer(chunk)
