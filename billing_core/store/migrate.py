"""``callgate db upgrade``: Alembic migrations on SQLite (sync sqlite3) or PostgreSQL (asyncpg)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from .engine import parse_db_url

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(conn, target: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, target)


def _current(conn) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _run(url: str, fn, *args):
    parsed = parse_db_url(url)
    if parsed.dialect == "sqlite":
        Path(parsed.path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.sqlalchemy_url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                return fn(conn, *args)
        finally:
            engine.dispose()
    connect_args = {"server_settings": {"search_path": parsed.schema}} if parsed.schema else {}
    engine = create_async_engine(parsed.sqlalchemy_url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn, *args)
    finally:
        await engine.dispose()


async def upgrade(url: str, target: str = "head") -> tuple[str | None, str | None]:
    """Migrate ``url`` to ``target``; returns (revision before, revision after)."""
    before = await _run(url, _current)
    await _run(url, _upgrade, target)
    after = await _run(url, _current)
    return before, after


async def current(url: str) -> str | None:
    return await _run(url, _current)
