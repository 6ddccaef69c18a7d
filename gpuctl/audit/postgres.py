"""The shared audit backend: one PostgreSQL database (14 or newer) for gpuctl processes on any
number of hosts, such as the replicas of `gpuctl serve`.

Every append is one transaction that first takes a transaction-level advisory
lock (`pg_advisory_xact_lock`, APPEND_LOCK) and only then reads the head, seals
the record onto it and inserts it: appends from any number of processes are
serialised, so sequence numbers stay gap-free and each record's prev_hash is
the hash of the record before it. A rolled-back append leaves no gap (the
sequence number is head + 1, not a database sequence) and the primary key on
seq refuses a second record at one place whatever happens. The lock needs no
table rights, so gpuctl's user may be limited to SELECT and INSERT.

Rows are the SQLite backend's (stored.py), so records, exports and verification
are the same; tables, the append-only trigger and the schema version are in
pg_schema.py, the run locks in pg_holds.py, connections and errors in
pg_connect.py. One connection serves this backend, one call at a time. A
connection that broke (the server restarted, a failover) is replaced and the
call tried once more when nothing can have been written: a read, or an append
whose first statement failed. An append that fails later is not retried (it
may have committed); it raises AuditUnavailable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Self, TypeVar

import psycopg

from gpuctl.audit.backend import Orphan
from gpuctl.audit.pg_connect import PgTarget
from gpuctl.audit.pg_holds import PgRunLocks
from gpuctl.audit.pg_schema import APPEND_LOCK, prepare
from gpuctl.audit.records import GENESIS_HASH, AuditEvent, AuditRecord
from gpuctl.audit.stored import COLUMNS, ENDING_KINDS, decode, select_records, stored_row, to_record
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import AuditError

TABLE = "gpuctl_audit_records"
INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
Connection = psycopg.AsyncConnection[tuple[Any, ...]]
T = TypeVar("T")


class _NothingWritten(Exception):
    """The connection failed before the call changed anything: safe to try again on a new one."""


class PostgresBackend:
    """An `AuditBackend` in a PostgreSQL database. Use as `async with PostgresBackend(url) as log:`."""

    def __init__(
        self, url: str, *, create: bool = True, clock: Clock = utcnow, lock_timeout_s: float = 30.0, connect_timeout_s: float = 10.0
    ) -> None:
        self._target = PgTarget(url, connect_timeout_s=connect_timeout_s, lock_timeout_s=lock_timeout_s)  # ValueError: bad URL
        self._create = create
        self._clock = clock
        self._conn: Connection | None = None
        self._opened = False
        self._lock = asyncio.Lock()
        self._runs = PgRunLocks(self._target)

    @property
    def location(self) -> str:
        """The URL without its password."""
        return self._target.location

    async def __aenter__(self) -> Self:
        conn = await self._target.connect()
        try:
            await prepare(conn, self._target, create=self._create)
        except BaseException:
            await conn.close()
            raise
        self._conn, self._opened = conn, True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._opened = False
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    # --- writing ---------------------------------------------------------------------------------

    async def append(self, event: AuditEvent) -> AuditRecord:
        record = await self._append(event, only_if_open=False)
        assert record is not None  # only append_if_open may skip
        return record

    async def append_if_open(self, event: AuditEvent) -> AuditRecord | None:
        return await self._append(event, only_if_open=True)

    async def _append(self, event: AuditEvent, *, only_if_open: bool) -> AuditRecord | None:
        async def append(conn: Connection) -> AuditRecord | None:
            committing = False
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", APPEND_LOCK)  # then the head
                    if only_if_open and not await _run_is_open(conn, event.run_id):
                        return None
                    cur = await conn.execute(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1")
                    head = await cur.fetchone()
                    seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS_HASH)
                    record = AuditRecord.seal(event, seq=seq, time=self._clock(), prev_hash=prev)
                    await conn.execute(INSERT, stored_row(record))
                    committing = True  # from here a lost connection leaves it unknown whether it committed
            except psycopg.OperationalError as e:
                if committing:
                    raise
                raise _NothingWritten from e
            return record

        return await self._call(append)

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
        query = select_records(TABLE, "%s", run_id=run_id, after_seq=after_seq, since=since, limit=limit, newest_first=newest_first)
        return [to_record(row) for row in await self._select(*query)]

    async def head(self) -> AuditRecord | None:
        rows = await self._select(*select_records(TABLE, "%s", limit=1, newest_first=True))
        return to_record(rows[0]) if rows else None

    async def rows(self, *, after_seq: int | None = None, limit: int) -> list[dict[str, Any]]:
        return await self._select(*select_records(TABLE, "%s", after_seq=after_seq, limit=limit))

    async def _select(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        async def select(conn: Connection) -> list[dict[str, Any]]:
            try:
                cur = await conn.execute(sql, params)
                return [decode(row) for row in await cur.fetchall()]
            except psycopg.OperationalError as e:
                raise _NothingWritten from e

        return await self._call(select)

    # --- runs in flight ----------------------------------------------------------------------------

    def hold(self, run_id: str) -> AbstractAsyncContextManager[None]:
        self._check_open()
        return self._runs.hold(run_id)

    def orphans(self) -> AbstractAsyncContextManager[Sequence[Orphan]]:
        self._check_open()
        return self._runs.orphans()

    # --- connection --------------------------------------------------------------------------------

    async def _call(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """`fn` on the backend's connection, alone; once more on a new connection if the old one had
        broken before anything was written. The driver's errors become AuditError."""
        self._check_open()
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._live()
                try:
                    return await fn(conn)
                except _NothingWritten as e:
                    cause = e.__cause__
                    assert isinstance(cause, psycopg.Error)
                    if attempt == 2 or not conn.broken:
                        raise self._target.failure(cause) from cause
                except psycopg.Error as e:
                    raise self._target.failure(e) from e
        raise AssertionError("unreachable")

    async def _live(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            broken, self._conn = self._conn, None
            if broken is not None:
                await broken.close()
            self._conn = await self._target.connect()
        return self._conn

    def _check_open(self) -> None:
        if not self._opened:
            raise AuditError(f"the audit log {self.location} is not open (use `async with`)")


async def _run_is_open(conn: Connection, run_id: str) -> bool:
    cur = await conn.execute(f"SELECT kind FROM {TABLE} WHERE run_id = %s ORDER BY seq DESC LIMIT 1", (run_id,))
    last = await cur.fetchone()
    return last is not None and last[0] not in ENDING_KINDS
