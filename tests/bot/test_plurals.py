"""Counts read naturally in English and Russian: plurals go through ngettext and the catalog."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot import render
from bot.i18n import LOCALES_DIR, build_i18n
from engine.protection.guard import ReconcileReport

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"{(\w+)}")


def plural_msgids() -> set[tuple[str, str]]:
    """What `make locales` extracts from ngettext() calls (Babel's default keyword)."""
    found: set[tuple[str, str]] = set()
    for package in ("bot", "engine", "vigil"):
        for _file, _line, message, _comments, _context in extract_from_dir(
                ROOT / package, method_map=[("**.py", "python")],
                keywords={"ngettext": (1, 2)}):
            if isinstance(message, tuple) and len(message) >= 2 and message[1]:
                found.add((message[0], message[1]))
    return found


def test_every_plural_has_three_russian_forms_with_the_same_placeholders() -> None:
    with (LOCALES_DIR / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="ru")
    assert catalog.num_plurals == 3
    wanted = plural_msgids()
    assert ("{n} position checked", "{n} positions checked") in wanted
    for singular, plural in wanted:
        message = catalog.get(singular)
        assert message is not None and message.pluralizable, singular
        assert message.id == (singular, plural)
        forms = message.string
        assert len(forms) == 3 and all(forms), singular
        for form in forms:
            assert set(PLACEHOLDER.findall(form)) == set(PLACEHOLDER.findall(singular)), form


def report(positions: int) -> ReconcileReport:
    return ReconcileReport(account="main", positions=positions, unprotected_before=(),
                           unprotected_after=(), events=(), venue_calls=1)


@pytest.mark.parametrize(("n", "en", "ru"), [
    (0, "0 positions checked", "проверено 0 позиций"),
    (1, "1 position checked", "проверена 1 позиция"),
    (2, "2 positions checked", "проверены 2 позиции"),
    (5, "5 positions checked", "проверено 5 позиций"),
    (11, "11 positions checked", "проверено 11 позиций"),
    (21, "21 positions checked", "проверена 21 позиция"),
    (22, "22 positions checked", "проверены 22 позиции"),
])
def test_fix_report_counts_positions_in_both_languages(n: int, en: str, ru: str) -> None:
    i18n = build_i18n("en")
    with i18n.context(), i18n.use_locale("en"):
        english = render.fix_report([report(n)])
    with i18n.context(), i18n.use_locale("ru"):
        russian = render.fix_report([report(n)])
    assert english.splitlines()[0] == f"Account main: {en}, 0 without a stop"
    assert russian.splitlines()[0] == f"Счёт main: {ru}, без стопа 0"
