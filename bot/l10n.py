"""gettext for text rendered both in the bot and at the shell.

In the bot, aiogram's I18n context picks the language (per user). `vigil check` renders the same
reports but must not import aiogram (about 2 s of start-up building its types): inside
`plain(lang)` the standard library's gettext answers instead, from the same catalogs. aiogram is
imported only when a string is translated outside `plain` (it is loaded already wherever the bot
runs).
"""

from __future__ import annotations

import gettext as stdlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from bot.catalogs import DOMAIN, compile_catalogs

_plain: ContextVar[stdlib.NullTranslations | None] = ContextVar("vigil_plain_l10n",
                                                                default=None)


def _aiogram() -> Any:
    from aiogram.utils.i18n import get_i18n

    return get_i18n()


def gettext(message: str) -> str:
    plain = _plain.get()
    return plain.gettext(message) if plain is not None else _aiogram().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    plain = _plain.get()
    if plain is not None:
        return plain.ngettext(singular, plural, n)
    return _aiogram().gettext(singular, plural, n)


@contextmanager
def plain(lang: str) -> Iterator[None]:
    """Translate with the standard library's gettext (no aiogram) in this block."""
    translations: stdlib.NullTranslations = stdlib.NullTranslations()  # English: the msgids
    if lang != "en":
        with tempfile.TemporaryDirectory(prefix="vigil-locales-") as tmp:
            compiled = compile_catalogs(target=Path(tmp), languages=(lang,))
            translations = stdlib.translation(DOMAIN, compiled, [lang], fallback=True)
    token = _plain.set(translations)
    try:
        yield
    finally:
        _plain.reset(token)
