"""Translations: gettext catalogs under locales/<lang>/LC_MESSAGES/messages.po, compiled with
Babel when the bot starts (no build step to forget), served through aiogram's I18n."""

from __future__ import annotations

from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from bot.catalogs import DOMAIN, LOCALES_DIR, SUPPORTED, compile_catalogs
from engine.ports import StateStore

__all__ = ["DOMAIN", "LOCALES_DIR", "SUPPORTED", "UserLocaleMiddleware", "build_i18n",
           "compile_catalogs", "telegram_locale", "user_locale"]

def build_i18n(default_locale: str = "en") -> I18n:
    return I18n(path=compile_catalogs(), default_locale=default_locale, domain=DOMAIN)


class UserLocaleMiddleware(I18nMiddleware):
    """The language a user chose with /lang, else their Telegram language, else the default."""

    def __init__(self, i18n: I18n, state: StateStore) -> None:
        super().__init__(i18n)
        self.state = state
        self._seen: dict[int, str] = {}  # Telegram language last stored per user

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        seen = telegram_locale(user.language_code)
        if seen is not None and self._seen.get(user.id) != seen:
            # Remembered so alerts (which answer no message) reach this user in their language.
            await self.state.put("tg_lang", str(user.id), seen)
            self._seen[user.id] = seen
        return await user_locale(self.state, user.id, user.language_code,
                                 self.i18n.default_locale)


def telegram_locale(language_code: str | None) -> str | None:
    code = (language_code or "").split("-")[0].lower()
    return code if code in SUPPORTED else None


async def user_locale(state: StateStore, user_id: int, telegram_language: str | None,
                      default: str) -> str:
    """/lang choice, else the Telegram language (given, or last seen), else the default."""
    chosen = await state.get("lang", str(user_id))
    if chosen in SUPPORTED:
        return str(chosen)
    seen = telegram_locale(telegram_language) or await state.get("tg_lang", str(user_id))
    return seen if seen in SUPPORTED else default
