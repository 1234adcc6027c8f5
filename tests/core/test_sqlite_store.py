"""The SQLite store's WAL checkpoints run on their own thread and connection, never inside the
writer's commits (billing_core/store/engine.py)."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest
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


def _blocking_fsync(monkeypatch):
    """os.fsync as the store's fsync thread sees it, held until the test releases it."""
    import threading

    from billing_core.store import engine

    released = threading.Event()
    entered = threading.Event()
    real = engine.os.fsync

    def held_fsync(fd):
        entered.set()
        released.wait(10)
        return real(fd)

    monkeypatch.setattr(engine.os, "fsync", held_fsync)
    return entered, released


async def test_a_commit_is_acknowledged_only_after_its_wal_is_fsynced(tmp_path, monkeypatch):
    """The writer commits without syncing (synchronous=NORMAL) and goes on; the caller hears of the
    commit once the fsync thread has synced the WAL that holds it (engine._CommitSyncer)."""
    store = SqliteStore(parse_db_url(f"sqlite:///{tmp_path / 'sync.db'}"))
    try:
        assert await store.run(lambda conn: conn.execute(text("PRAGMA synchronous")).scalar()) == 1  # NORMAL
        await store.run(lambda conn: conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)")))
        syncs = store._syncer.syncs
        assert syncs >= 1
        entered, released = _blocking_fsync(monkeypatch)
        insert = asyncio.ensure_future(store.run(lambda conn: conn.execute(text("INSERT INTO t (id) VALUES (1)"))))
        await asyncio.to_thread(entered.wait, 10)
        await asyncio.sleep(0.2)  # the writer committed long ago: only the fsync holds the answer back
        assert not insert.done()
        # the writer is free meanwhile: a second transaction commits (and waits for its own fsync)
        second = asyncio.ensure_future(store.run(lambda conn: conn.execute(text("INSERT INTO t (id) VALUES (2)"))))
        reader = sqlite3.connect(tmp_path / "sync.db")
        try:
            for _ in range(100):
                if reader.execute("SELECT count(*) FROM t").fetchone()[0] == 2:
                    break
                await asyncio.sleep(0.02)
            assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 2
        finally:
            reader.close()
        assert not insert.done() and not second.done()
        released.set()
        await asyncio.wait_for(asyncio.gather(insert, second), 10)
        assert store._syncer.syncs > syncs
    finally:
        await store.close()
    assert not store._syncer._thread.is_alive()


async def test_a_failed_fsync_stops_the_store_and_callers_fail_closed(tmp_path, monkeypatch):
    from billing_core.store import engine
    from billing_core.store.errors import StorageError

    store = SqliteStore(parse_db_url(f"sqlite:///{tmp_path / 'eio.db'}"))
    try:
        await store.run(lambda conn: conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)")))

        def eio(fd):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(engine.os, "fsync", eio)
        with pytest.raises(StorageError, match="fsync failed"):  # never acknowledged
            await store.run(lambda conn: conn.execute(text("INSERT INTO t (id) VALUES (1)")))
        monkeypatch.undo()  # even a disk that seems to work again: the WAL's durability is unknown
        for _ in range(2):
            with pytest.raises(StorageError, match="fsync failed"):
                await store.run(lambda conn: conn.execute(text("INSERT INTO t (id) VALUES (2)")))
    finally:
        await store.close()
    # nothing after the failure was committed
    check = sqlite3.connect(tmp_path / "eio.db")
    try:
        assert [r[0] for r in check.execute("SELECT id FROM t")] in ([], [1])
    finally:
        check.close()
