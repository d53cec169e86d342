"""`vigil backup PATH`: a consistent copy of the database while the engine runs; bad targets
are refused and write nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.db import Database
from storage.journal import Journal
from vigil.cli import EXIT_CONFIG, EXIT_FAIL, EXIT_OK, main
from vigil.runtime import Engine
from vigil.settings import load_settings


def config(tmp_path: Path) -> Path:
    path = tmp_path / "vigil.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    return path


async def test_backup_while_the_engine_runs_is_a_valid_journal(tmp_path: Path) -> None:
    engine = await Engine.build(load_settings(config(tmp_path)))
    await engine.start()
    try:
        await asyncio.sleep(0.3)  # the demo position gets its stop: journal rows exist
        await engine.journal.flush()
        target = tmp_path / "copy.sqlite3"
        code = await asyncio.to_thread(main, ["--config", str(config(tmp_path)), "backup",
                                              str(target)])
        assert code == EXIT_OK
    finally:
        await engine.stop()
        await engine.close()
    db = await Database.open(target)
    try:
        result = await Journal(db).verify()
        kinds = {r.kind for r in await Journal(db).rows(limit=10_000)}
    finally:
        await db.close()
    assert result.ok and result.rows > 0
    assert "engine_started" in kinds


def test_backup_refuses_an_existing_file_and_a_missing_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    target = tmp_path / "copy.sqlite3"
    assert main(["--config", str(cfg), "backup", str(target)]) == EXIT_FAIL
    assert "no database at" in capsys.readouterr().err and not target.exists()
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "vigil.sqlite3").write_bytes(b"")
    target.write_text("keep me")
    assert main(["--config", str(cfg), "backup", str(target)]) == EXIT_CONFIG
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    assert main(["--config", str(cfg), "backup", str(tmp_path / "nope" / "x.db")]) == EXIT_CONFIG
    assert "no directory" in capsys.readouterr().err
