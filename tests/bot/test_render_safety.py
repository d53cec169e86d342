"""User-supplied names and echoed input, made safe to show (issue 17)."""

from __future__ import annotations

from aiogram.enums import ParseMode

from bot.render import clean, echo, safe_name


def test_controls_bidi_and_zero_width_characters_are_removed_and_whitespace_folded() -> None:
    assert clean("\u202eadmin\u200b \u2066x\u2069\n\n\ty\u00ad", 50) == "admin x y"
    assert clean("\u200b\u200c\u200d\ufeff", 50) == ""


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert clean("a" * 10, 10) == "a" * 10
    assert clean("a" * 11, 10) == "a" * 9 + "…"
    assert echo("Q" * 4000) == "Q" * 39 + "…"


def test_names_are_quoted_and_escaped_for_the_parse_mode() -> None:
    assert safe_name("Bob") == "“Bob”"
    assert safe_name("\u200b") == "“?”"
    assert safe_name("<b>Vigil</b> & co", ParseMode.HTML) == "“&lt;b&gt;Vigil&lt;/b&gt; &amp; co”"
    assert safe_name("*Vigil*_", ParseMode.MARKDOWN_V2) == "“\\*Vigil\\*\\_”"
