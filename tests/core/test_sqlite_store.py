"""The SQLite store's WAL checkpoints run on their own thread and connection, never inside the
writer's commits (billing_core/store/engine.py)."""
from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy import text

from billing_core.store.engine import SqliteStore, parse_db_url


async def test_the_wal_is_copied_by_the_checkpoint_thread_not_the_writer(tmp_path):
    path = tmp_path / "wal.db"
    store = SqliteStore(parse_db_url(f"sqlite:///{path}"), checkpoint_interval=0.02)
    try:
        await store.run(lambda conn: conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")))
        # the writer never checkpoints on its own (no 20-40 ms commit every 1,000 WAL pages)
        assert await store.run(lambda conn: conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()) == 0
        for i in range(200):
            await store.run(lambda conn, i=i: conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "x" * 500}))
        # A checkpoint already running now may have started before the last insert and copy only
        # 199 rows (seen once under load): only one counted two completions later began after it.
        seen = store.checkpoints

        async def copied_everything():
            while True:
                last = store.last_checkpoint
                if (store.checkpoints >= seen + 2 and last is not None and last[0] == 0 and last[1] > 0
                        and last[1] == last[2]):
                    return last
                await asyncio.sleep(0.01)

        await asyncio.wait_for(copied_everything(), 5)
        assert store.checkpoints > 0
        # what was copied is in the database file itself: a reader that ignores the WAL sees it
        snapshot = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            assert snapshot.execute("SELECT count(*) FROM t").fetchone()[0] == 200
        finally:
            snapshot.close()
        # and the WAL starts over (SQLite reuses the file from its beginning) instead of growing
        wal = path.with_name(path.name + "-wal")
        size_after_200 = wal.stat().st_size
        for i in range(200):
            await store.run(lambda conn, i=i: conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "y" * 500}))
            if i % 20 == 0:
                await asyncio.sleep(0.03)
        assert wal.stat().st_size <= size_after_200  # 200 more rows went through it
    finally:
        await store.close()
    assert not store._checkpointer.is_alive()
