"""A fake Telegram Bot API server for end-to-end tests.

Real aiogram ``Bot`` objects talk to it over real HTTP on 127.0.0.1::

    async with FakeBotAPI() as api:
        bot = Bot(api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))

The test queues updates (``push_message``/``push_callback``), inspects what the bot sent
(``calls``/``sent``/``texts``/``wait_for``) and injects failures (``fail_next``/``block_chat``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

__all__ = ["FakeBotAPI", "SentCall"]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
LONG_POLL_CAP = 0.5

# Fields that are always strings on the wire, even when they look like JSON ("42", "true").
STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "data",
        "parse_mode",
        "callback_query_id",
        "inline_message_id",
        "business_connection_id",
        "message_effect_id",
        "action",
        "url",
        "language_code",
        "emoji",
        "title",
        "description",
        "short_description",
        "name",
        "question",
        "secret_token",
        "drop_pending_updates_reason",
    }
)

BOT_COMMAND_PREFIX = "/"
REGISTERED = object()  # deliver(): send the secret_token given to setWebhook


class ApiError(Exception):
    """Raised by a method handler to answer ``{"ok": false, ...}``."""

    def __init__(self, error_code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        """The JSON body Telegram would answer with."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass
class SentCall:
    """One Bot API request received by the fake."""

    method: str
    params: dict[str, Any]
    token: str
    at: float
    failed: bool = False
    response: dict[str, Any] | None = None
    filenames: dict[str, str] = field(default_factory=dict)

    @property
    def chat_id(self) -> Any:
        """The ``chat_id`` parameter, if any."""
        return self.params.get("chat_id")

    @property
    def text(self) -> str | None:
        """The ``text`` (or ``caption``) parameter, if any."""
        value = self.params.get("text", self.params.get("caption"))
        return None if value is None else str(value)

    def __repr__(self) -> str:
        shown = {
            k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in self.params.items()
        }
        flag = " FAILED" if self.failed else ""
        return f"SentCall({self.method}{flag} {shown!r})"


Handler = Callable[[SentCall], Awaitable[Any]]


def _decode_value(name: str, value: str) -> Any:
    """Decode a form field the way aiogram encoded it (JSON for non-strings)."""
    if name in STRING_FIELDS or not value:
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if isinstance(decoded, bool | dict | list | int):
        return decoded
    if isinstance(decoded, float) and math.isfinite(decoded):
        return decoded
    return value


def _same_chat(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


class FakeBotAPI:
    """A controllable fake Telegram Bot API HTTP server bound to 127.0.0.1."""

    def __init__(self, bot_id: int = 1234567, username: str = "vigil_test_bot") -> None:
        self.bot_id = bot_id
        self.username = username
        self.calls: list[SentCall] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.base_url = ""
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._failures: dict[str, deque[ApiError]] = {}
        self._blocked: set[str] = set()
        self._chat_types: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self.webhook: dict[str, Any] | None = None  # setWebhook's url, secret_token, ...
        self._handlers: dict[str, Handler] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_message_text,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._true,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "answercallbackquery": self._true,
            "deletewebhook": self._delete_webhook,
            "setwebhook": self._set_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._true,
            "deletemycommands": self._true,
            "sendchataction": self._true,
            "close": self._true,
            "logout": self._true,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def token(self) -> str:
        """A valid-looking token for ``Bot(...)``; ``bot.id`` parses to ``bot_id``."""
        return f"{self.bot_id}:TEST-TOKEN"

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot's own User object."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Vigil",
            "username": self.username,
        }

    async def start(self) -> None:
        """Bind to a random free port on 127.0.0.1."""
        self._stopping = False
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Release pending long polls and shut the server down."""
        self._stopping = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ inspection

    def sent(self, method: str | None = None, chat_id: int | None = None) -> list[SentCall]:
        """Calls received, filtered; ``getUpdates`` only when asked for by name."""
        result = []
        for call in self.calls:
            if method is None:
                if call.method.lower() == "getupdates":
                    continue
            elif call.method.lower() != method.lower():
                continue
            if chat_id is not None and not _same_chat(call.chat_id, chat_id):
                continue
            result.append(call)
        return result

    def texts(self, chat_id: int | None = None) -> list[str]:
        """Texts of successful ``sendMessage`` calls, in order."""
        return [
            str(call.params.get("text", ""))
            for call in self.sent("sendMessage", chat_id=chat_id)
            if not call.failed
        ]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[SentCall], bool] | None = None,
        *,
        timeout: float = 5.0,
        count: int = 1,
    ) -> list[SentCall]:
        """Wait until ``count`` calls of ``method`` matching ``predicate`` were received.

        Already-received calls count, failed ones included (filter with ``predicate``).
        Returns the matching calls; raises ``AssertionError`` listing all calls on timeout.
        """

        def matching() -> list[SentCall]:
            return [c for c in self.sent(method) if predicate is None or predicate(c)]

        try:
            async with asyncio.timeout(timeout):
                while len(found := matching()) < count:
                    await self._wait_changed()
        except TimeoutError:
            listing = "\n".join(f"  {c!r}" for c in self.sent()) or "  (none)"
            raise AssertionError(
                f"timed out after {timeout}s waiting for {count} x {method}"
                f" (matched {len(matching())}); calls received (excluding getUpdates):\n{listing}"
            ) from None
        return found

    # ------------------------------------------------------------------ control

    def push_message(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        language_code: str = "en",
        chat_type: str = "private",
        first_name: str = "User",
    ) -> int:
        """Queue an Update carrying a user's Message; return its ``update_id``."""
        chat_id = user_id if chat_id is None else chat_id
        self._chat_types[str(chat_id)] = chat_type
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": {
                "id": user_id,
                "is_bot": False,
                "first_name": first_name,
                "language_code": language_code,
            },
            "text": text,
        }
        if text.startswith(BOT_COMMAND_PREFIX):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
            ]
        return self._push({"message": message})

    def push_callback(
        self,
        user_id: int,
        data: str,
        *,
        message_id: int,
        chat_id: int | None = None,
        language_code: str = "en",
    ) -> str:
        """Queue an Update carrying a CallbackQuery; return the callback query id."""
        chat_id = user_id if chat_id is None else chat_id
        message = self.messages.get(message_id)
        if message is None:
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": self._chat(chat_id),
                "from": self.bot_user,
                "text": "",
            }
        query_id = str(next(self._callback_ids))
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": {
                        "id": user_id,
                        "is_bot": False,
                        "first_name": "User",
                        "language_code": language_code,
                    },
                    "chat_instance": f"ci-{chat_id}",
                    "data": data,
                    "message": json.loads(json.dumps(message)),
                }
            }
        )
        return query_id

    def fail_next(
        self,
        method: str,
        *,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with this error."""
        queue = self._failures.setdefault(method.lower(), deque())
        queue.extend(ApiError(error_code, description, retry_after) for _ in range(times))

    async def deliver(self, *, secret: str | object | None = REGISTERED) -> list[int]:
        """Webhook mode: POST each queued update to the URL given to setWebhook, with the
        ``secret_token`` given there (or ``secret``; None sends no header), as Telegram does.
        An update answered 200 is gone; any other answer leaves it queued. Returns the
        HTTP statuses, one per update."""
        if self.webhook is None:
            raise AssertionError("no webhook is set")
        token = self.webhook.get("secret_token") if secret is REGISTERED else secret
        headers = {} if token is None else {"X-Telegram-Bot-Api-Secret-Token": str(token)}
        statuses = []
        async with ClientSession() as session:
            for update in list(self._updates):
                async with session.post(self.webhook["url"], json=update,
                                        headers=headers) as response:
                    statuses.append(response.status)
                    if response.status == 200:
                        self._updates.remove(update)
        return statuses

    def block_chat(self, chat_id: int) -> None:
        """Answer every later ``send*`` to ``chat_id`` with 403 (bot blocked)."""
        self._blocked.add(str(chat_id))

    # ------------------------------------------------------------------ internals

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def _push(self, payload: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **payload})
        self._notify()
        return update_id

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        chat_type = self._chat_types.get(str(chat_id))
        if chat_type is None:
            chat_type = "supergroup" if isinstance(chat_id, int) and chat_id < 0 else "private"
        return {"id": chat_id, "type": chat_type}

    async def _dispatch(self, request: web.Request) -> web.Response:
        received_at = asyncio.get_running_loop().time()
        params, filenames = await self._read_params(request)
        call = SentCall(
            method=request.match_info["method"],
            params=params,
            token=request.match_info["token"],
            at=received_at,
            filenames=filenames,
        )
        try:
            result = await self._answer(call)
        except ApiError as error:
            body = error.payload()
            status = error.error_code
        else:
            body = {"ok": True, "result": result}
            status = 200
        body = json.loads(json.dumps(body))  # snapshot: later edits must not alter history
        # Recorded on completion, so a long-polling getUpdates appears when it returns.
        call.failed = not body["ok"]
        call.response = body
        self.calls.append(call)
        self._notify()
        return web.json_response(body, status=status)

    async def _answer(self, call: SentCall) -> Any:
        if call.token != self.token:
            raise ApiError(401, "Unauthorized")
        key = call.method.lower()
        failures = self._failures.get(key)
        if failures:
            raise failures.popleft()
        handler = self._handlers.get(key)
        if handler is None:
            raise ApiError(404, "Not Found: method not found")
        if key.startswith("send") and str(call.params.get("chat_id")) in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return await handler(call)

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, str]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        filenames: dict[str, str] = {}
        for name, value in request.query.items():
            params[name] = _decode_value(name, value)
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = value.file.read()
                filenames[name] = value.filename
            elif isinstance(value, bytes | bytearray):
                files[name] = bytes(value)
                filenames[name] = name
            else:
                params[name] = _decode_value(name, str(value))
        # Resolve aiogram's "attach://<random key>" references to the uploaded bytes.
        named: dict[str, str] = {}
        for name, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                key = value.removeprefix("attach://")
                if key in files:
                    params[name] = files.pop(key)
                    named[name] = filenames.pop(key)
        params.update(files)
        filenames.update(named)
        return params, filenames

    # ------------------------------------------------------------------ methods

    async def _true(self, call: SentCall) -> bool:
        return True

    async def _set_webhook(self, call: SentCall) -> bool:
        if not str(call.params.get("url", "")).startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided")
        self.webhook = dict(call.params)
        return True

    async def _delete_webhook(self, call: SentCall) -> bool:
        self.webhook = None
        return True

    async def _get_webhook_info(self, call: SentCall) -> dict[str, Any]:
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    async def _get_me(self, call: SentCall) -> dict[str, Any]:
        return self.bot_user

    async def _get_updates(self, call: SentCall) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active;"
                           " use deleteWebhook to delete the webhook first")
        params = call.params
        offset = params.get("offset")
        if isinstance(offset, int) and offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list) and allowed:
            # Telegram drops updates of types the bot did not subscribe to.
            self._updates = [u for u in self._updates if set(u) - {"update_id"} <= set(allowed)]
        limit = params.get("limit")
        limit = limit if isinstance(limit, int) and 0 < limit <= 100 else 100
        timeout = params.get("timeout")
        wait = min(float(timeout), LONG_POLL_CAP) if isinstance(timeout, int | float) else 0.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not self._updates and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await self._wait_changed()
            except TimeoutError:
                break
        return json.loads(json.dumps(self._updates[:limit]))

    def _new_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat not found")
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self.bot_user,
            **content,
        }
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        self.messages[message["message_id"]] = message
        return message

    @staticmethod
    def _check_text(text: Any) -> str:
        if text is None or text == "":
            raise ApiError(400, "Bad Request: message text is empty")
        text = str(text)
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        return text

    async def _send_message(self, call: SentCall) -> dict[str, Any]:
        params = call.params
        text = self._check_text(params.get("text"))
        return self._new_message(params, text=text)

    def _find_message(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get(params.get("message_id"))  # type: ignore[arg-type]
        if message is None or not _same_chat(message["chat"]["id"], params.get("chat_id")):
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    @staticmethod
    def _not_modified() -> ApiError:
        return ApiError(
            400,
            "Bad Request: message is not modified: specified new message content and reply "
            "markup are exactly the same as a message to edit",
        )

    async def _edit_message_text(self, call: SentCall) -> dict[str, Any] | bool:
        params = call.params
        text = self._check_text(params.get("text"))
        if "inline_message_id" in params:
            return True
        message = self._find_message(params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = params.get("reply_markup")
        if message["text"] == text and message.get("reply_markup") == markup:
            raise self._not_modified()
        message["text"] = text
        self._set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    async def _edit_message_reply_markup(self, call: SentCall) -> dict[str, Any] | bool:
        params = call.params
        if "inline_message_id" in params:
            return True
        message = self._find_message(params)
        markup = params.get("reply_markup")
        if message.get("reply_markup") == markup:
            raise self._not_modified()
        self._set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    @staticmethod
    def _set_markup(message: dict[str, Any], markup: Any) -> None:
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup

    def _file_meta(self, params: dict[str, Any], name: str) -> dict[str, Any]:
        value = params.get(name)
        if value is None or value == "":
            raise ApiError(400, f"Bad Request: there is no {name} in the request")
        caption = params.get("caption")
        if caption is not None and len(str(caption)) > MAX_CAPTION_LENGTH:
            raise ApiError(400, "Bad Request: message caption is too long")
        n = next(self._file_ids)
        meta: dict[str, Any] = {"file_id": f"{name}-{n}", "file_unique_id": f"u{name}{n}"}
        if isinstance(value, bytes):
            meta["file_size"] = len(value)
        return meta

    async def _send_photo(self, call: SentCall) -> dict[str, Any]:
        params = call.params
        meta = self._file_meta(params, "photo")
        content: dict[str, Any] = {"photo": [{**meta, "width": 800, "height": 600}]}
        if params.get("caption"):
            content["caption"] = str(params["caption"])
        return self._new_message(params, **content)

    async def _send_document(self, call: SentCall) -> dict[str, Any]:
        params = call.params
        meta = self._file_meta(params, "document")
        document = {"file_name": call.filenames.get("document", "document"), **meta}
        content: dict[str, Any] = {"document": document}
        if params.get("caption"):
            content["caption"] = str(params["caption"])
        return self._new_message(params, **content)


def _utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram uses for entity offsets."""
    return len(text.encode("utf-16-le")) // 2
