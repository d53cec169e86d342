"""`vigil check` and `vigil journal verify` never import aiogram (seconds of start-up building
its types): each runs in a fresh interpreter, which reports what it imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = ("import sys, vigil.cli as c; rc = c.main(sys.argv[1:]); "
         "print('aiogram imported:', 'aiogram' in sys.modules); sys.exit(rc)")


def vigil(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    config = tmp_path / "vigil.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    proc = subprocess.run([sys.executable, "-c", PROBE, "--config", str(config), *args],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=False)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("args", [("check",), ("journal", "verify")])
def test_check_and_verify_do_not_import_aiogram(tmp_path: Path, args: tuple[str, ...]) -> None:
    if args[0] == "journal":
        assert vigil(tmp_path, "check")[0] == 0  # a journal to verify
    code, out = vigil(tmp_path, *args)
    assert code == 0, out
    assert "aiogram imported: False" in out
    assert ("OK: every position is protected" if args == ("check",) else "journal OK") in out


def test_check_speaks_the_default_language_without_aiogram(tmp_path: Path) -> None:
    code, out = vigil(tmp_path, "check", VIGIL_TELEGRAM__DEFAULT_LANGUAGE="ru")
    assert code == 0, out
    assert "Счёт paper: проверены 2 позиции, без стопа 1" in out  # plural forms from ru too
    assert "aiogram imported: False" in out
