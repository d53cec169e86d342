"""Every user-facing string has a Russian translation with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.i18n import LOCALES_DIR, build_i18n

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"{(\w+)}")


def extracted() -> set[str]:
    """What `make locales` extracts: every _() and __() string in our packages."""
    found: set[str] = set()
    for package in ("bot", "engine", "vigil"):
        for _file, _line, message, _comments, _context in extract_from_dir(
                ROOT / package, method_map=[("**.py", "python")],
                keywords={"_": None, "__": None}):
            found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_string_is_translated_to_russian() -> None:
    with (LOCALES_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        ru = {m.id: m.string for m in read_po(fh, locale="ru") if m.id}
    wanted = extracted()
    assert wanted, "extraction found no strings"
    untranslated = sorted(m for m in wanted if not ru.get(m))
    assert untranslated == [], "run `make locales` and translate these"
    for msgid in wanted:
        assert set(PLACEHOLDER.findall(msgid)) == set(PLACEHOLDER.findall(ru[msgid])), msgid


def test_catalog_compiles_and_translates() -> None:
    i18n = build_i18n("en")
    assert "ru" in i18n.available_locales
    assert i18n.gettext("Done.", locale="ru") == "Готово."
    assert i18n.gettext("Done.", locale="en") == "Done."
