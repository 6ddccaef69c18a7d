"""The PostgreSQL audit log's tables, created on first use, with a schema version.

Tables (in the connection's search_path; `?options=-csearch_path%3Dgpuctl` picks a schema):

    gpuctl_audit_schema    one row: the schema version this database was made with
    gpuctl_audit_records   the chain: the same columns and values as the SQLite backend's
                           audit_records (JSON and time as canonical text), so rows read back
                           exactly as they were hashed
    gpuctl_audit_holds     which runs a live process is recording (see pg_holds.py)

A trigger refuses UPDATE, DELETE and TRUNCATE on the records: gpuctl never
does them, and neither can anyone who connects as gpuctl's user without first
altering the table. A superuser or the tables' owner can still get past it
(dropping the trigger, session_replication_role = replica); the hash chain is
what shows that (`gpuctl audit verify`). For more, let another role own the
tables and grant gpuctl's user only SELECT, INSERT on gpuctl_audit_records
and SELECT, INSERT, UPDATE, DELETE on gpuctl_audit_holds.
"""

from __future__ import annotations

from typing import Any

import psycopg

from gpuctl.audit.pg_connect import PgTarget
from gpuctl.errors import AuditError

SCHEMA_VERSION = 1
LOCK_CLASS = 0x67707563  # "gpuc": the first key of gpuctl's two-key advisory locks
APPEND_LOCK = (LOCK_CLASS, 1)  # held (per transaction) by whoever appends
SCHEMA_LOCK = (LOCK_CLASS, 2)  # held while the tables are created

DDL = """
CREATE TABLE IF NOT EXISTS gpuctl_audit_schema (
    version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS gpuctl_audit_records (
    seq       bigint PRIMARY KEY CHECK (seq > 0),  -- assigned by gpuctl: head + 1, under APPEND_LOCK
    version   integer NOT NULL,
    time      text NOT NULL,                       -- canonical UTC text, sorts as time
    run_id    text NOT NULL,
    kind      text NOT NULL,
    actor     text,                                -- canonical JSON, NULL for gpuctl itself
    payload   text NOT NULL,                       -- canonical JSON object
    prev_hash text NOT NULL,
    hash      text NOT NULL
);
CREATE INDEX IF NOT EXISTS gpuctl_audit_records_by_run ON gpuctl_audit_records (run_id, seq);
CREATE INDEX IF NOT EXISTS gpuctl_audit_records_by_time ON gpuctl_audit_records (time);
CREATE OR REPLACE FUNCTION gpuctl_audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER gpuctl_audit_records_no_change BEFORE UPDATE OR DELETE ON gpuctl_audit_records
    FOR EACH ROW EXECUTE FUNCTION gpuctl_audit_records_append_only();
CREATE OR REPLACE TRIGGER gpuctl_audit_records_no_truncate BEFORE TRUNCATE ON gpuctl_audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION gpuctl_audit_records_append_only();
CREATE TABLE IF NOT EXISTS gpuctl_audit_holds (
    run_id   text PRIMARY KEY,
    lock_key bigint NOT NULL,  -- the session advisory lock its holder keeps while alive
    token    text NOT NULL,    -- which hold wrote the row (a later hold of the run replaces it)
    holder   text NOT NULL     -- JSON: run_id, pid, host, since
);
"""


async def prepare(conn: psycopg.AsyncConnection[tuple[Any, ...]], target: PgTarget, *, create: bool) -> None:
    """Check (and unless `create` is False, make) the tables. AuditError if this is no gpuctl log."""
    try:
        version = await _version(conn, target)
        if version is None:
            if not create:
                raise AuditError(
                    f"no audit log in {target.location}", hint="nothing has been recorded there yet; check --audit"
                )
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", SCHEMA_LOCK)  # first opens race
                await conn.execute(DDL)
                await conn.execute(
                    "INSERT INTO gpuctl_audit_schema (version) SELECT %s WHERE NOT EXISTS (SELECT FROM gpuctl_audit_schema)",
                    (SCHEMA_VERSION,),
                )
            version = await _version(conn, target)
    except psycopg.errors.InsufficientPrivilege as e:
        raise AuditError(
            f"cannot create the audit log's tables in {target.location}: {target.scrub(str(e).strip())}",
            hint="connect once as a role that may create tables in that schema (the database's owner), "
            "or have it run gpuctl once",
        ) from e
    except psycopg.Error as e:
        raise target.failure(e, "cannot prepare") from e
    if version is not None and version > SCHEMA_VERSION:
        raise AuditError(
            f"the audit log {target.location} was written by a newer gpuctl "
            f"(schema {version}, this one knows {SCHEMA_VERSION})",
            hint="use that gpuctl version or newer",
        )


async def _version(conn: psycopg.AsyncConnection[tuple[Any, ...]], target: PgTarget) -> int | None:
    """The schema version, None if there are no gpuctl tables here; AuditError for a partial set."""
    cur = await conn.execute(
        "SELECT to_regclass('gpuctl_audit_schema') IS NOT NULL, to_regclass('gpuctl_audit_records') IS NOT NULL, "
        "to_regclass('gpuctl_audit_holds') IS NOT NULL"
    )
    found = await cur.fetchone()
    assert found is not None
    if not any(found):
        return None
    if not all(found):
        raise AuditError(
            f"{target.location} has some of gpuctl's audit tables but not all",
            hint="restore the missing ones from a backup; gpuctl will not recreate part of a log",
        )
    cur = await conn.execute("SELECT max(version) FROM gpuctl_audit_schema")
    row = await cur.fetchone()
    if row is None or row[0] is None:
        raise AuditError(f"{target.location}: gpuctl_audit_schema is empty", hint="restore it from a backup")
    return int(row[0])
