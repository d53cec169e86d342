"""FakeBotAPI speaks the Bot API well enough for a real aiogram Bot over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from tests.fakes import FakeBotAPI


def make_bot(api: FakeBotAPI, token: str | None = None) -> Bot:
    """A real aiogram Bot pointed at the fake server."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api.base_url))
    return Bot(token or api.token, session=session)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = make_bot(api)
    try:
        yield bot
    finally:
        await bot.session.close()


def keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=x, callback_data=x) for x in labels]]
    )


async def test_get_me_and_send_message_round_trip(api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (api.bot_id, "vigil_test_bot", True)
    assert bot.id == api.bot_id

    msg = await bot.send_message(42, "hello", disable_notification=True)

    assert msg.text == "hello"
    assert msg.chat.id == 42
    assert msg.from_user is not None and msg.from_user.id == api.bot_id
    [call] = api.sent("sendMessage")
    assert call.params["chat_id"] == 42
    assert call.params["text"] == "hello"
    assert call.params["disable_notification"] is True
    assert call.token == api.token
    assert not call.failed
    assert api.texts() == ["hello"]
    assert api.texts(chat_id=7) == []
    assert api.messages[msg.message_id]["text"] == "hello"
    assert [c.method for c in api.calls] == ["getMe", "sendMessage"]


async def test_numeric_looking_text_stays_a_string(api: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(1, "42")
    assert api.texts() == ["42"]


async def test_reply_markup_is_decoded_and_edits_update_the_message(
    api: FakeBotAPI, bot: Bot
) -> None:
    msg = await bot.send_message(5, "approve?", reply_markup=keyboard("yes", "no"))

    markup = api.sent("sendMessage")[0].params["reply_markup"]
    assert markup == {
        "inline_keyboard": [
            [{"text": "yes", "callback_data": "yes"}, {"text": "no", "callback_data": "no"}]
        ]
    }
    assert msg.reply_markup is not None
    assert msg.reply_markup.model_dump(exclude_none=True) == markup

    edited = await bot.edit_message_text(
        text="approved", chat_id=5, message_id=msg.message_id, reply_markup=keyboard("undo")
    )
    assert isinstance(edited, Message) and edited.text == "approved"
    assert api.messages[msg.message_id]["text"] == "approved"

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            text="approved", chat_id=5, message_id=msg.message_id, reply_markup=keyboard("undo")
        )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=5, message_id=msg.message_id, reply_markup=keyboard("undo")
        )
    await bot.edit_message_reply_markup(chat_id=5, message_id=msg.message_id)
    assert "reply_markup" not in api.messages[msg.message_id]
    assert await bot.delete_message(5, msg.message_id) is True
    assert api.sent("editMessageText")[-1].failed
    assert api.texts() == ["approve?"]


async def test_message_too_long_is_a_bad_request(api: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(1, "x" * 4096)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(1, "x" * 4097)
    assert [c.failed for c in api.sent("sendMessage")] == [False, True]
    assert len(api.texts()) == 1


async def test_fail_next_with_retry_after(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next(
        "sendMessage",
        error_code=429,
        description="Too Many Requests: retry after 7",
        retry_after=7,
        times=2,
    )
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as info:
            await bot.send_message(1, "alert")
        assert info.value.retry_after == 7
    await bot.send_message(1, "alert")

    assert [c.failed for c in api.sent("sendMessage")] == [True, True, False]
    assert api.sent("sendMessage")[0].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    assert api.texts() == ["alert"]


async def test_block_chat_is_forbidden(api: FakeBotAPI, bot: Bot) -> None:
    api.block_chat(99)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(99, "hi")
    await bot.send_message(100, "hi")
    assert api.texts(chat_id=100) == ["hi"]
    assert api.texts(chat_id=99) == []
    assert len(api.sent(chat_id=99)) == 1


async def test_wrong_token_and_unknown_method(api: FakeBotAPI) -> None:
    stranger = make_bot(api, token="42:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()

    async with aiohttp.ClientSession() as http:
        url = f"{api.base_url}/bot{api.token}/noSuchMethod"
        async with http.post(url, data={"x": "1"}) as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
    assert api.sent("noSuchMethod")[0].params == {"x": 1}


async def test_send_photo_and_document_record_bytes(api: FakeBotAPI, bot: Bot) -> None:
    png = b"\x89PNG\r\n\x1a\nfake-chart"
    msg = await bot.send_photo(3, BufferedInputFile(png, filename="chart.png"), caption="PnL")

    assert msg.photo and msg.photo[0].file_id
    assert msg.caption == "PnL"
    [call] = api.sent("sendPhoto")
    assert call.params["photo"] == png
    assert call.params["caption"] == "PnL"
    assert call.filenames["photo"] == "chart.png"

    doc = await bot.send_document(3, BufferedInputFile(b"a,b\n1,2\n", filename="trades.csv"))
    assert doc.document is not None and doc.document.file_name == "trades.csv"
    assert api.sent("sendDocument")[0].params["document"] == b"a,b\n1,2\n"


async def test_wait_for_times_out_with_listing(api: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(1, "first")
    with pytest.raises(AssertionError, match=r"(?s)waiting for 2 x sendMessage.*first"):
        await api.wait_for("sendMessage", timeout=0.05, count=2)


async def test_get_updates_long_poll_is_bounded_and_acknowledged(api: FakeBotAPI, bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=10) == []
    assert loop.time() - started < 1.0

    first = api.push_message(7, "hello")
    second = api.push_message(7, "/start@vigil_test_bot now", chat_id=-100, chat_type="group")
    updates = await bot.get_updates(offset=0, timeout=10)
    assert [u.update_id for u in updates] == [first, second]
    command = updates[1].message
    assert command is not None and command.chat.type == "group"
    assert command.entities is not None
    assert command.entities[0].type == "bot_command"
    assert command.entities[0].length == len("/start@vigil_test_bot")

    assert [u.update_id for u in await bot.get_updates(offset=second, timeout=0)] == [second]
    assert await bot.get_updates(offset=second + 1, timeout=0) == []
    assert api.sent() == []
    assert len(api.sent("getUpdates")) == 4


def build_router() -> Router:
    """A fresh router per test: a Router can only be attached to one parent."""
    router = Router()

    @router.message(Command("ping"))
    async def ping(message: Message) -> None:
        await message.answer("pong")

    @router.message(Command("menu"))
    async def menu(message: Message) -> None:
        await message.answer("choose", reply_markup=keyboard("approve"))

    @router.callback_query(F.data == "approve")
    async def approve(callback: CallbackQuery) -> None:
        await callback.answer("done")
        assert isinstance(callback.message, Message)
        await callback.message.edit_text(f"approved by {callback.from_user.id}")

    return router


async def test_dispatcher_polling_command_and_callback(api: FakeBotAPI) -> None:
    bot = make_bot(api)
    dp = Dispatcher()
    dp.include_router(build_router())
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False))
    try:
        api.push_message(7, "/ping")
        [pong] = await api.wait_for("sendMessage", lambda c: c.params.get("text") == "pong")
        assert pong.params["chat_id"] == 7

        api.push_message(7, "/menu")
        [menu] = await api.wait_for("sendMessage", lambda c: c.params.get("text") == "choose")
        assert menu.response is not None
        message_id = menu.response["result"]["message_id"]

        query_id = api.push_callback(7, "approve", message_id=message_id)
        [answer] = await api.wait_for("answerCallbackQuery")
        assert answer.params == {"callback_query_id": query_id, "text": "done"}
        [edit] = await api.wait_for("editMessageText")
        assert edit.params["text"] == "approved by 7"
        assert edit.params["message_id"] == message_id
        assert api.messages[message_id]["text"] == "approved by 7"
        assert api.texts() == ["pong", "choose"]

        polls = api.sent("getUpdates")
        assert sorted(polls[0].params["allowed_updates"]) == ["callback_query", "message"]
        assert polls[0].params["timeout"] == 10
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, timeout=3)
    assert bot.session._session is None or bot.session._session.closed
