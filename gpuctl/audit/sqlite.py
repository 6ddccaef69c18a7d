"""The embedded audit backend: one SQLite file (WAL), safe for several gpuctl processes at once.

Every append is one `BEGIN IMMEDIATE` transaction that takes SQLite's write
lock first and only then reads the head, so two processes appending to one
file still make one chain (each waits up to `busy_timeout_s` for the other).
Triggers refuse UPDATE and DELETE on the records table: gpuctl never does
either, and a slip by hand fails loudly. They are no defence against someone
who can write the file; the hash chain is (`gpuctl audit verify`).

sqlite3 is synchronous: every call runs in a worker thread (asyncio.to_thread)
on one connection guarded by a lock. Run locks (which runs a live process is
recording) are files beside the database: `<file>.runs/`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from gpuctl.audit.backend import Orphan
from gpuctl.audit.held import HeldLock, RunLocks
from gpuctl.audit.records import GENESIS_HASH, AuditEvent, AuditRecord
from gpuctl.audit.stored import COLUMNS, ENDING_KINDS, decode, select_records, stored_row, to_record
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import AuditError

T = TypeVar("T")

SCHEMA_VERSION = 1
INSERT = f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS audit_records (
    seq       INTEGER PRIMARY KEY,  -- assigned by gpuctl: head + 1
    version   INTEGER NOT NULL,
    time      TEXT NOT NULL,        -- canonical UTC text, sorts as time
    run_id    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT,                 -- canonical JSON, NULL for gpuctl itself
    payload   TEXT NOT NULL,        -- canonical JSON object
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_by_run ON audit_records (run_id, seq);
CREATE INDEX IF NOT EXISTS audit_records_by_time ON audit_records (time);
CREATE TRIGGER IF NOT EXISTS audit_records_append_only_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_append_only_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""


class SqliteBackend:
    """An `AuditBackend` in one SQLite file. Use as `async with SqliteBackend(path) as log:`."""

    def __init__(self, path: Path, *, create: bool = True, clock: Clock = utcnow, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self._create = create
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._runs = RunLocks(path.with_name(path.name + ".runs"))

    @property
    def location(self) -> str:
        return str(self.path)

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self._connect)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    # --- writing ---------------------------------------------------------------------------------

    async def append(self, event: AuditEvent) -> AuditRecord:
        record = await self._call(self._append, event, False)
        assert record is not None  # only append_if_open may skip
        return record

    async def append_if_open(self, event: AuditEvent) -> AuditRecord | None:
        return await self._call(self._append, event, True)

    def _append(self, conn: sqlite3.Connection, event: AuditEvent, only_if_open: bool) -> AuditRecord | None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock first, then the head: no one appends in between
        try:
            if only_if_open and not _run_is_open(conn, event.run_id):
                conn.execute("ROLLBACK")
                return None
            head = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
            record = AuditRecord.seal(event, seq=seq, time=self._clock(), prev_hash=prev)
            conn.execute(INSERT, stored_row(record))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return record

    # --- reading ---------------------------------------------------------------------------------

    async def records(
        self,
        *,
        run_id: str | None = None,
        after_seq: int | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRecord]:
        query = select_records(
            "audit_records", "?", run_id=run_id, after_seq=after_seq, since=since, limit=limit, newest_first=newest_first
        )
        return [to_record(row) for row in await self._call(self._select, *query)]

    async def head(self) -> AuditRecord | None:
        rows = await self._call(self._select, *select_records("audit_records", "?", limit=1, newest_first=True))
        return to_record(rows[0]) if rows else None

    async def rows(self, *, after_seq: int | None = None, limit: int) -> list[dict[str, Any]]:
        return await self._call(self._select, *select_records("audit_records", "?", after_seq=after_seq, limit=limit))

    def _select(self, conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        return [decode(row) for row in conn.execute(sql, params)]

    # --- runs in flight ----------------------------------------------------------------------------

    @asynccontextmanager
    async def hold(self, run_id: str) -> AsyncIterator[None]:
        held = await asyncio.to_thread(self._runs.acquire, run_id)
        try:
            yield
        except BaseException:
            held.abandon()  # an error or a cancel mid-run: the next mark_interrupted() decides (instant, no await)
            raise
        await asyncio.to_thread(held.release)

    @asynccontextmanager
    async def orphans(self) -> AsyncIterator[Sequence[Orphan]]:
        found: list[HeldLock] = await asyncio.to_thread(self._runs.orphans)
        try:
            yield [Orphan(run_id=h.run_id, holder=h.holder) for h in found]
        finally:
            for held in found:
                await asyncio.to_thread(held.release)

    # --- connection --------------------------------------------------------------------------------

    def _connect(self) -> None:
        if not self._create and not self.path.exists():
            raise AuditError(f"no audit log at {self.path}", hint="nothing has been recorded there yet; check --audit")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise AuditError(f"cannot open the audit log {self.path}: {e}", hint="check the path and its permissions") from e
        try:
            _prepare(conn, self.path, self._busy_timeout_s)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._conn is None:
                raise AuditError(f"the audit log {self.path} is not open (use `async with`)")
            try:
                return fn(self._conn, *args)
            except sqlite3.Error as e:
                raise AuditError(f"audit log {self.path}: {e}", hint="check the file, its disk and its permissions") from e


def _prepare(conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> None:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        foreign = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name != 'audit_records'")
        other_tables = foreign.fetchone()[0]
    except sqlite3.OperationalError as e:
        raise AuditError(f"cannot read the audit log {path}: {e}", hint="check the file and its permissions") from e
    except sqlite3.DatabaseError as e:
        raise AuditError(f"{path} is not a gpuctl audit log ({e})", hint="point --audit at the right file") from e
    if version > SCHEMA_VERSION:
        raise AuditError(
            f"the audit log {path} was written by a newer gpuctl (schema {version}, this one knows {SCHEMA_VERSION})",
            hint="use that gpuctl version or newer",
        )
    if version == 0 and other_tables:
        raise AuditError(f"{path} is a SQLite database but not a gpuctl audit log", hint="point --audit at another file")
    try:
        _use_wal(conn, busy_timeout_s)
        conn.execute("PRAGMA synchronous = FULL")  # an acknowledged audit record survives a power cut
        conn.executescript(_SCHEMA)  # one transaction, idempotent: concurrent first opens are fine
    except sqlite3.Error as e:
        raise AuditError(f"cannot prepare the audit log {path}: {e}", hint="check the file and its permissions") from e


def _use_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch a new file to WAL, waiting up to `busy_timeout_s` for another process doing the same.

    SQLite answers a switch that would wait on another connection's write lock
    with "database is locked" at once, without its busy handler (waiting could
    deadlock), so two processes creating one log at once need this loop.
    """
    deadline = time.monotonic() + busy_timeout_s
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _run_is_open(conn: sqlite3.Connection, run_id: str) -> bool:
    last = conn.execute("SELECT kind FROM audit_records WHERE run_id = ? ORDER BY seq DESC LIMIT 1", (run_id,)).fetchone()
    return last is not None and last[0] not in ENDING_KINDS

