"""The gettext catalogs (locales/<lang>/LC_MESSAGES/messages.po), compiled with Babel when they
are needed (no build step to forget). No aiogram here: the CLI reads them too."""

from __future__ import annotations

import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
SUPPORTED = ("en", "ru")


def compile_catalogs(source: Path = LOCALES_DIR, target: Path | None = None,
                     languages: tuple[str, ...] | None = None) -> Path:
    """Compile every .po under `source` (or those of `languages`) into .mo files under `target`
    (a fresh temp dir)."""
    target = target or Path(tempfile.mkdtemp(prefix="vigil-locales-"))
    for po_path in source.glob(f"*/LC_MESSAGES/{DOMAIN}.po"):
        lang = po_path.parent.parent.name
        if languages is not None and lang not in languages:
            continue
        with po_path.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        out = target / lang / "LC_MESSAGES" / f"{DOMAIN}.mo"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as fh:
            write_mo(fh, catalog)
    return target
