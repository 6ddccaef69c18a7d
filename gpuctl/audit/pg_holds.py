"""Which runs a live process is recording, in PostgreSQL: a session advisory lock per run.

The same idea as held.py's lock files, across hosts: PostgreSQL drops a
session's advisory locks when its connection ends, however the holder died
(killed, OOM, its host gone: the server's TCP keepalives, set per session in
pg_connect, notice that within about a minute). So a run whose lock someone
else can take belongs to a holder that is gone.

Each hold has its own connection, which keeps `pg_try_advisory_lock(key)`
while the block runs, and a row in gpuctl_audit_holds (run id, key, a token
naming this hold, who holds it). Letting go deletes the row and the lock; a
death, or a block that ends in an exception, leaves the row with no lock, and
`orphans()` hands the run to whoever recovers it. A held run's connection that
breaks while the process lives loses its lock too: another process may then
mark the run interrupted while it still runs (the cluster's Leases still
keep its writes exclusive).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from gpuctl.audit.backend import Orphan
from gpuctl.audit.held import describe_holder, holder_info
from gpuctl.audit.pg_connect import PgTarget
from gpuctl.errors import AuditError

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


def lock_key(run_id: str) -> int:
    """The run's advisory lock: 64 bits of SHA-256 (the one-key form, apart from APPEND_LOCK's two keys)."""
    return int.from_bytes(hashlib.sha256(b"gpuctl-audit-hold:" + run_id.encode()).digest()[:8], "big", signed=True)


class PgRunLocks:
    def __init__(self, target: PgTarget) -> None:
        self._target = target

    @asynccontextmanager
    async def hold(self, run_id: str) -> AsyncIterator[None]:
        conn = await self._target.connect()
        token = uuid.uuid4().hex
        try:
            await self._acquire(conn, run_id, token)
        except BaseException:
            await asyncio.shield(conn.close())
            raise
        try:
            yield
        except BaseException:
            # An error or a cancel mid-run: the lock goes with the connection, the row stays for orphans().
            await asyncio.shield(conn.close())
            raise
        try:
            await self._release(conn, run_id, token)
        finally:
            await conn.close()

    @asynccontextmanager
    async def orphans(self) -> AsyncIterator[Sequence[Orphan]]:
        conn = await self._target.connect()
        found: list[tuple[str, str, dict[str, Any]]] = []
        try:
            try:
                cur = await conn.execute("SELECT run_id, lock_key, token, holder FROM gpuctl_audit_holds ORDER BY run_id")
                for run_id, key, token, holder in await cur.fetchall():
                    if not await _try_lock(conn, key):
                        continue  # its holder is alive
                    if await _token(conn, run_id) != token:
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))  # let go or re-taken meanwhile
                        continue
                    found.append((run_id, token, _holder(holder)))
            except psycopg.Error as e:
                raise self._target.failure(e) from e
            yield [Orphan(run_id=run_id, holder=holder) for run_id, _, holder in found]
        finally:
            try:
                # Unreachable now: the rows stay and the next orphans() offers them again (appends skip ended runs).
                with contextlib.suppress(psycopg.Error):
                    for run_id, token, _ in found:
                        await conn.execute("DELETE FROM gpuctl_audit_holds WHERE run_id = %s AND token = %s", (run_id, token))
            finally:
                await asyncio.shield(conn.close())  # and with it our locks on the orphans

    async def _acquire(self, conn: Connection, run_id: str, token: str) -> None:
        key = lock_key(run_id)
        try:
            if not await _try_lock(conn, key):
                cur = await conn.execute("SELECT holder FROM gpuctl_audit_holds WHERE run_id = %s", (run_id,))
                row = await cur.fetchone()
                raise AuditError(
                    f"run {run_id} is already being recorded ({describe_holder(_holder(row[0] if row else None))})",
                    hint="wait for it to finish; a run is recorded by one process at a time",
                )
            await conn.execute(
                "INSERT INTO gpuctl_audit_holds (run_id, lock_key, token, holder) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET lock_key = EXCLUDED.lock_key, token = EXCLUDED.token, "
                "holder = EXCLUDED.holder",
                (run_id, key, token, json.dumps(holder_info(run_id))),
            )
        except psycopg.Error as e:
            raise self._target.failure(e) from e

    async def _release(self, conn: Connection, run_id: str, token: str) -> None:
        try:
            await conn.execute("DELETE FROM gpuctl_audit_holds WHERE run_id = %s AND token = %s", (run_id, token))
            await conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(run_id),))
        except psycopg.Error as e:
            raise self._target.failure(e) from e


async def _try_lock(conn: Connection, key: int) -> bool:
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def _token(conn: Connection, run_id: str) -> str | None:
    cur = await conn.execute("SELECT token FROM gpuctl_audit_holds WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


def _holder(text: Any) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
