"""Telegram webhook mode: aiogram's own aiohttp handler on the ops app. Telegram sends the
secret given to setWebhook in X-Telegram-Bot-Api-Secret-Token; aiogram compares it in constant
time and answers 401 to anything else before the update is read."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from vigil.http.app import PUBLIC_PATHS, RouteSet


def webhook_path(url: str) -> str:
    return urlsplit(url).path or "/"


def telegram_webhook(dp: Dispatcher, bot: Bot, *, url: str, secret: str) -> RouteSet:
    path = webhook_path(url)

    def add_routes(app: web.Application) -> None:
        SimpleRequestHandler(dp, bot, secret_token=secret).register(app, path=path)
        setup_application(app, dp, bot=bot)
        app[PUBLIC_PATHS].add(path)  # the secret header is its proof, not the bearer token

    return add_routes


async def set_webhook(dp: Dispatcher, bot: Bot, *, url: str, secret: str) -> None:
    await bot.set_webhook(url, secret_token=secret,
                          allowed_updates=dp.resolve_used_update_types())
