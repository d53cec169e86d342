"""Console chat: with no bot token, the same Dispatcher and routers serve stdin/stdout.

A `BaseSession` that prints what the bot would send stands in for the Telegram HTTP session, and
typed lines become Updates fed to the Dispatcher, so there is no second implementation.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageText,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)
from aiogram.types import (
    CallbackQuery,
    Chat,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    MessageEntity,
    Update,
    User,
)
from loguru import logger

CONSOLE_USER_ID = 1
CONSOLE_TOKEN = "1:console"


class ConsoleSession(BaseSession):
    """`pictures`: where photos (the PnL charts) are saved as PNG files; their path is printed."""

    def __init__(self, out: TextIO | None = None, *, pictures: Path | None = None) -> None:
        super().__init__()
        self.out = out or sys.stdout
        self.pictures = pictures
        self._ids = itertools.count(1)

    async def make_request(self, bot: Bot, method: TelegramMethod[Any],
                           timeout: int | None = None) -> Any:
        if isinstance(method, SendPhoto) and self.pictures is not None:
            path = await self._save(bot, method.photo)
            lines = [method.caption, f"🖼 {path}"] if method.caption else [f"🖼 {path}"]
            print(*lines, "", sep="\n", file=self.out, flush=True)
            return self._message(method.chat_id, caption=method.caption)
        if isinstance(method, SendMessage | EditMessageText):
            print(method.text, file=self.out, flush=True)
            markup = method.reply_markup
            if isinstance(markup, InlineKeyboardMarkup):  # buttons become commands to type
                for row in markup.inline_keyboard:
                    print("   ".join(f"[{b.text}: /tap {b.callback_data}]" for b in row),
                          file=self.out, flush=True)
            print(file=self.out, flush=True)
            return self._message(method.chat_id, text=method.text)
        if isinstance(method, AnswerCallbackQuery) and method.text:
            print(f"» {method.text}\n", file=self.out, flush=True)
        if method.__returning__ is bool:
            return True
        if isinstance(method, TelegramMethod) and method.__api_method__ == "getMe":
            return User(id=1, is_bot=True, first_name="Vigil", username="vigil_console")
        raise NotImplementedError(f"console chat cannot do {method.__api_method__}")

    def _message(self, chat_id: int | str | None, **content: Any) -> Message:
        chat = int(chat_id) if chat_id is not None else CONSOLE_USER_ID
        return Message(message_id=next(self._ids), date=datetime.now(UTC),
                       chat=Chat(id=chat, type="private"), **content)

    async def _save(self, bot: Bot, photo: InputFile | str) -> Path | str:
        """Write an uploaded picture under `pictures` (a file id or URL is shown as it is)."""
        if isinstance(photo, str):
            return photo
        assert self.pictures is not None
        data = b"".join([chunk async for chunk in photo.read(bot)])
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        stem = Path(photo.filename or "picture.png").stem
        path = self.pictures / f"{stem}-{stamp}-{next(self._ids)}.png"
        await asyncio.to_thread(_write, path, data)
        return path.resolve()

    async def stream_content(self, url: str, headers: dict[str, Any] | None = None,
                             timeout: int = 30, chunk_size: int = 65536,
                             raise_for_status: bool = True):  # type: ignore[override]
        raise NotImplementedError("console chat has no files")
        yield b""  # pragma: no cover

    async def close(self) -> None:
        return None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def console_update(update_id: int, text: str, user_id: int = CONSOLE_USER_ID) -> Update:
    user = User(id=user_id, is_bot=False, first_name="Console", language_code="en")
    if text.startswith("/tap "):  # a button press typed at the console
        return Update(update_id=update_id, callback_query=CallbackQuery(
            id=str(update_id), from_user=user, chat_instance="console",
            data=text.removeprefix("/tap ").strip()))
    entities = None
    if text.startswith("/"):
        command = text.split()[0]
        entities = [MessageEntity(type="bot_command", offset=0, length=len(command))]
    message = Message(message_id=update_id, date=datetime.now(UTC),
                      chat=Chat(id=user_id, type="private"), from_user=user, text=text,
                      entities=entities)
    return Update(update_id=update_id, message=message)


async def run_console(dp: Dispatcher, bot: Bot, stdin: TextIO | None = None,
                      **workflow: Any) -> None:
    """Feed typed lines to the dispatcher until stdin ends (then just keep the engine running:
    the caller decides when to stop)."""
    stdin = stdin or sys.stdin
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:  # a daemon thread: blocking reads never hold up shutdown
        for line in stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=reader, name="console-stdin", daemon=True).start()
    ids = itertools.count(1)
    while (line := await lines.get()) is not None:
        text = line.strip()
        if not text:
            continue
        if not text.startswith("/"):
            text = "/" + text  # `status` works as well as `/status` at a console
        try:
            await dp.feed_update(bot, console_update(next(ids), text), **workflow)
        except Exception:  # logged; the console keeps answering
            logger.exception("console command {!r} failed", text)
