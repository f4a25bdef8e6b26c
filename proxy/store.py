"""Where assistant turns are kept for session repair: memory, SQLite or Redis.

A turn is stored twice: in its session's list (the last
``MAX_MESSAGES_PER_SESSION`` turns) and under each of its tool-call ids, so
a tool loop can be repaired with no session id at all. Every key is scoped
by a hash of the caller's API key, so one key never sees another's turns.
Everything expires after ``SESSION_TTL_SECONDS``.

The same stores keep records (one JSON value under a key, with its own TTL),
which the Responses API uses for ``previous_response_id``; :class:`MemoryRecords`
keeps them in one process, bounded in bytes, when no store is configured.

Stores raise whatever their backend raises; the caller (``sessions.py``)
turns any failure into "no repair", so a store outage never fails a request.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import msgspec

from .config import Settings

__all__ = [
    "MemoryRecords",
    "MemoryStore",
    "Records",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "open_store",
]

StoredTurn = dict[str, Any]
_enc = msgspec.json.Encoder().encode
_dec = msgspec.json.decode


class Store(Protocol):
    async def put(self, scope: str, session: str | None, turn: StoredTurn) -> None: ...
    async def by_call(self, scope: str, call_id: str) -> StoredTurn | None: ...
    async def session(self, scope: str, session: str) -> list[StoredTurn]: ...
    async def close(self) -> None: ...


class Records(Protocol):
    async def put_record(self, scope: str, key: str, record: Any, ttl: int) -> None: ...
    async def get_record(self, scope: str, key: str) -> Any: ...
    async def delete_record(self, scope: str, key: str) -> bool: ...


class MemoryRecords:
    """Records in this process: dropped after their TTL, oldest first past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._size = 0
        self._items: collections.OrderedDict[tuple[str, str], tuple[float, bytes]] = (
            collections.OrderedDict()
        )

    async def put_record(self, scope: str, key: str, record: Any, ttl: int) -> None:
        data = _enc(record)
        await self.delete_record(scope, key)
        if len(data) > self._max:
            return  # larger than the whole store: not kept, so its id is a 404 later
        self._items[(scope, key)] = (time.monotonic() + ttl, data)
        self._size += len(data)
        while self._size > self._max:
            _, (_, old) = self._items.popitem(last=False)
            self._size -= len(old)

    async def get_record(self, scope: str, key: str) -> Any:
        entry = self._items.get((scope, key))
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            await self.delete_record(scope, key)
            return None
        return _dec(entry[1])

    async def delete_record(self, scope: str, key: str) -> bool:
        entry = self._items.pop((scope, key), None)
        if entry is not None:
            self._size -= len(entry[1])
        return entry is not None


def _call_ids(turn: StoredTurn) -> list[str]:
    return [c["id"] for c in turn.get("tool_calls") or () if c.get("id")]


class MemoryStore:
    """One process's memory, bounded in entries; for a single replica or tests."""

    def __init__(self, ttl: float, per_session: int, max_entries: int = 100_000) -> None:
        self._ttl, self._per_session, self._max = ttl, per_session, max_entries
        self._calls: collections.OrderedDict[tuple[str, str], tuple[float, StoredTurn]] = (
            collections.OrderedDict()
        )
        self._sessions: collections.OrderedDict[tuple[str, str], collections.deque[Any]] = (
            collections.OrderedDict()
        )

    async def put(self, scope: str, session: str | None, turn: StoredTurn) -> None:
        expires = time.monotonic() + self._ttl
        for call_id in _call_ids(turn):
            self._calls[(scope, call_id)] = (expires, turn)
            self._calls.move_to_end((scope, call_id))
        if session is not None:
            key = (scope, session)
            turns = self._sessions.pop(key, None) or collections.deque(maxlen=self._per_session)
            turns.append((expires, turn))
            self._sessions[key] = turns
        for table in (self._calls, self._sessions):
            while len(table) > self._max:
                table.popitem(last=False)

    async def by_call(self, scope: str, call_id: str) -> StoredTurn | None:
        entry = self._calls.get((scope, call_id))
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def session(self, scope: str, session: str) -> list[StoredTurn]:
        now = time.monotonic()
        return [t for exp, t in self._sessions.get((scope, session), ()) if exp >= now]

    async def close(self) -> None:
        self._calls.clear()
        self._sessions.clear()


_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS calls (
    scope TEXT NOT NULL, call_id TEXT NOT NULL, turn TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (scope, call_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL, session TEXT NOT NULL, turn TEXT NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS session_turns_by_key ON session_turns (scope, session, id);
CREATE INDEX IF NOT EXISTS calls_by_expiry ON calls (expires);
CREATE INDEX IF NOT EXISTS session_turns_by_expiry ON session_turns (expires);
CREATE TABLE IF NOT EXISTS records (
    scope TEXT NOT NULL, key TEXT NOT NULL, record BLOB NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_expiry ON records (expires);
"""


class SQLiteStore:
    """An embedded file that survives restarts. One worker thread owns the connection,
    so the event loop never blocks on disk and SQLite never sees two threads."""

    _PURGE_EVERY = 200

    def __init__(self, path: str, ttl: float, per_session: int) -> None:
        self._path, self._ttl, self._per_session = path, ttl, per_session
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._db: sqlite3.Connection | None = None
        self._writes = 0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self._path, timeout=5, check_same_thread=False)
            try:
                db.executescript(_SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _put(self, scope: str, session: str | None, turn: StoredTurn) -> None:
        db = self._conn()
        now = time.time()
        data = _enc(turn).decode()
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)",
                [(scope, cid, data, now + self._ttl) for cid in _call_ids(turn)],
            )
            if session is not None:
                db.execute(
                    "INSERT INTO session_turns (scope, session, turn, expires) VALUES (?, ?, ?, ?)",
                    (scope, session, data, now + self._ttl),
                )
                db.execute(
                    "DELETE FROM session_turns WHERE scope = ? AND session = ? AND id NOT IN "
                    "(SELECT id FROM session_turns WHERE scope = ? AND session = ? "
                    "ORDER BY id DESC LIMIT ?)",
                    (scope, session, scope, session, self._per_session),
                )
            self._purge_now_and_then(db, now)

    def _purge_now_and_then(self, db: sqlite3.Connection, now: float) -> None:
        self._writes += 1
        if self._writes % self._PURGE_EVERY == 0:
            for table in ("calls", "session_turns", "records"):
                db.execute(f"DELETE FROM {table} WHERE expires < ?", (now,))

    def _by_call(self, scope: str, call_id: str) -> StoredTurn | None:
        row = (
            self._conn()
            .execute(
                "SELECT turn FROM calls WHERE scope = ? AND call_id = ? AND expires >= ?",
                (scope, call_id, time.time()),
            )
            .fetchone()
        )
        return None if row is None else dict(_dec(row[0]))

    def _session(self, scope: str, session: str) -> list[StoredTurn]:
        rows = (
            self._conn()
            .execute(
                "SELECT turn FROM session_turns WHERE scope = ? AND session = ? AND expires >= ? "
                "ORDER BY id",
                (scope, session, time.time()),
            )
            .fetchall()
        )
        return [dict(_dec(r[0])) for r in rows]

    async def put(self, scope: str, session: str | None, turn: StoredTurn) -> None:
        await self._run(self._put, scope, session, turn)

    def _put_record(self, scope: str, key: str, data: bytes, expires: float) -> None:
        db = self._conn()
        with db:
            db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", (scope, key, data, expires)
            )
            self._purge_now_and_then(db, time.time())

    def _get_record(self, scope: str, key: str) -> bytes | None:
        row = (
            self._conn()
            .execute(
                "SELECT record FROM records WHERE scope = ? AND key = ? AND expires >= ?",
                (scope, key, time.time()),
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def _delete_record(self, scope: str, key: str) -> bool:
        db = self._conn()
        with db:
            cursor = db.execute(
                "DELETE FROM records WHERE scope = ? AND key = ? AND expires >= ?",
                (scope, key, time.time()),
            )
        return cursor.rowcount > 0

    async def put_record(self, scope: str, key: str, record: Any, ttl: int) -> None:
        await self._run(self._put_record, scope, key, _enc(record), time.time() + ttl)

    async def get_record(self, scope: str, key: str) -> Any:
        data = await self._run(self._get_record, scope, key)
        return None if data is None else _dec(data)

    async def delete_record(self, scope: str, key: str) -> bool:
        deleted: bool = await self._run(self._delete_record, scope, key)
        return deleted

    async def by_call(self, scope: str, call_id: str) -> StoredTurn | None:
        result: StoredTurn | None = await self._run(self._by_call, scope, call_id)
        return result

    async def session(self, scope: str, session: str) -> list[StoredTurn]:
        result: list[StoredTurn] = await self._run(self._session, scope, session)
        return result

    async def close(self) -> None:
        def close_db() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close_db)
        self._pool.shutdown(wait=True)


class RedisStore:
    """Shared by every replica: keys with TTL; a session's list is pushed, trimmed and
    given its TTL in one MULTI, so concurrent writers from many processes stay consistent."""

    def __init__(self, url: str, ttl: int, per_session: int, prefix: str = "mm2p") -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._ttl, self._per_session, self._prefix = ttl, per_session, prefix

    async def put(self, scope: str, session: str | None, turn: StoredTurn) -> None:
        data = _enc(turn)
        async with self._redis.pipeline(transaction=True) as pipe:
            for call_id in _call_ids(turn):
                pipe.set(f"{self._prefix}:call:{scope}:{call_id}", data, ex=self._ttl)
            if session is not None:
                key = f"{self._prefix}:session:{scope}:{session}"
                pipe.rpush(key, data)
                pipe.ltrim(key, -self._per_session, -1)
                pipe.expire(key, self._ttl)
            await pipe.execute()

    async def by_call(self, scope: str, call_id: str) -> StoredTurn | None:
        data = await self._redis.get(f"{self._prefix}:call:{scope}:{call_id}")
        return None if data is None else dict(_dec(data))

    async def session(self, scope: str, session: str) -> list[StoredTurn]:
        items = await self._redis.lrange(f"{self._prefix}:session:{scope}:{session}", 0, -1)
        return [dict(_dec(i)) for i in items]

    async def put_record(self, scope: str, key: str, record: Any, ttl: int) -> None:
        await self._redis.set(f"{self._prefix}:record:{scope}:{key}", _enc(record), ex=ttl)

    async def get_record(self, scope: str, key: str) -> Any:
        data = await self._redis.get(f"{self._prefix}:record:{scope}:{key}")
        return None if data is None else _dec(data)

    async def delete_record(self, scope: str, key: str) -> bool:
        return bool(await self._redis.delete(f"{self._prefix}:record:{scope}:{key}"))

    async def close(self) -> None:
        await self._redis.aclose()


def open_store(settings: Settings) -> Store:
    ttl, per_session = settings.session_ttl_seconds, settings.max_messages_per_session
    if settings.session_store_backend == "memory":
        return MemoryStore(ttl, per_session)
    if settings.session_store_backend == "redis":
        return RedisStore(settings.redis_url, ttl, per_session)
    return SQLiteStore(settings.session_store_path, ttl, per_session)
