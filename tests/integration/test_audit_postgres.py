"""The PostgreSQL audit backend on the test bed's real PostgreSQL: appends and reads, the same records
as SQLite, the database refusing changes, tampering by a superuser caught by verify, several writer
processes making one chain, run holds across processes, and least privilege."""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from gpuctl.audit import (
    GENESIS_HASH,
    AuditBackend,
    AuditEvent,
    AuditRecord,
    EventKind,
    ProblemKind,
    mark_interrupted,
    open_audit,
    verify,
)
from gpuctl.audit.postgres import PostgresBackend
from gpuctl.errors import AuditError
from testbed.postgres import SUPERUSER, Postgres
from testbed.waiting import poll
from tests.unit.audit.factories import T0, USER_A, run_events, ticking

pytestmark = pytest.mark.testbed

WRITER = Path(__file__).parent.parent / "unit" / "audit" / "writer.py"


async def write_run(url: str, run_id: str = "reclaim-7f3a") -> list[AuditRecord]:
    async with open_audit(url, clock=ticking()) as log:
        return [await log.append(event) for event in run_events(run_id)]


async def superuser_sql(postgres: Postgres, url: str, *statements: str) -> None:
    """Run statements as the superuser with triggers off (session_replication_role = replica): behind gpuctl's back."""
    async with await postgres.superuser(url.rsplit("/", 1)[1]) as conn:
        await conn.execute("SET session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)


async def test_append_seals_a_chain_and_reads_back(postgres_audit_url: str) -> None:
    written = await write_run(postgres_audit_url)
    assert [r.seq for r in written] == list(range(1, 8))
    assert written[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(written))
    async with open_audit(postgres_audit_url, create=False) as log:
        assert isinstance(log, PostgresBackend)
        assert "***" in log.location and "s3cret" not in log.location
        assert await log.records() == written
        assert await log.head() == written[-1]
        assert await log.records(run_id="reclaim-7f3a", after_seq=5) == written[5:]
        assert await log.records(since=T0 + timedelta(seconds=5)) == written[5:]
        assert await log.records(limit=2, newest_first=True) == written[:-3:-1]
        assert await log.records(run_id="other") == []
        assert (await verify(log)).ok

        late = AuditEvent(run_id="reclaim-7f3a", kind=EventKind.INTERRUPTED)
        assert await log.append_if_open(late) is None  # it ended
        assert await log.append_if_open(AuditEvent(run_id="never-seen", kind=EventKind.INTERRUPTED)) is None
        await log.append(AuditEvent(run_id="r2", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
        closed = await log.append_if_open(AuditEvent(run_id="r2", kind=EventKind.INTERRUPTED))
        assert closed is not None and closed.seq == 9


async def test_rows_are_the_same_as_sqlites(postgres_audit_url: str, tmp_path: Path) -> None:
    """The same events at the same times make the same records, hashes and export rows in both backends."""
    in_postgres = await write_run(postgres_audit_url)
    in_sqlite = await write_run(str(tmp_path / "audit.sqlite"))
    assert in_postgres == in_sqlite
    async with open_audit(postgres_audit_url) as pg, open_audit(str(tmp_path / "audit.sqlite")) as lite:
        assert await pg.rows(limit=100) == await lite.rows(limit=100)


async def test_the_database_refuses_changes(postgres_audit_url: str) -> None:
    await write_run(postgres_audit_url)
    async with await psycopg.AsyncConnection.connect(postgres_audit_url, autocommit=True) as conn:
        for statement in (
            "UPDATE gpuctl_audit_records SET payload = '{}' WHERE seq = 2",
            "DELETE FROM gpuctl_audit_records WHERE seq = 7",
            "TRUNCATE gpuctl_audit_records",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                await conn.execute(statement)
        with pytest.raises(psycopg.errors.UniqueViolation):  # one record per place in the chain
            await conn.execute("INSERT INTO gpuctl_audit_records SELECT * FROM gpuctl_audit_records WHERE seq = 3")
    async with open_audit(postgres_audit_url) as log:
        assert (await verify(log)).records_checked == 7


# Done as the superuser with the trigger off: every one must be caught.
TAMPERING = {
    "payload edited": (["UPDATE gpuctl_audit_records SET payload = '{\"playbook\":\"adjust-quota\"}' WHERE seq = 1"], 1,
                       ProblemKind.EDITED),
    "actor edited": (["UPDATE gpuctl_audit_records SET actor = replace(actor, 'user-b', 'user-a') WHERE seq = 3"], 3,
                     ProblemKind.EDITED),
    "kind made up": (["UPDATE gpuctl_audit_records SET kind = 'teleported' WHERE seq = 3"], 3, ProblemKind.UNREADABLE),
    "record deleted": (["DELETE FROM gpuctl_audit_records WHERE seq = 4"], 4, ProblemKind.MISSING),
    "two records swapped": (
        [
            "UPDATE gpuctl_audit_records SET seq = 1000 WHERE seq = 3",
            "UPDATE gpuctl_audit_records SET seq = 3 WHERE seq = 4",
            "UPDATE gpuctl_audit_records SET seq = 4 WHERE seq = 1000",
        ],
        3,
        ProblemKind.EDITED,
    ),
    "hash replaced": (["UPDATE gpuctl_audit_records SET hash = prev_hash WHERE seq = 6"], 6, ProblemKind.EDITED),
    "version changed": (["UPDATE gpuctl_audit_records SET version = 2 WHERE seq = 2"], 2, ProblemKind.UNSUPPORTED_VERSION),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TAMPERING))
async def test_tampering_by_a_superuser_is_caught(postgres: Postgres, postgres_audit_url: str, case: str) -> None:
    statements, seq, kind = TAMPERING[case]
    await write_run(postgres_audit_url)
    await superuser_sql(postgres, postgres_audit_url, *statements)
    async with open_audit(postgres_audit_url, create=False) as log:
        result = await verify(log)
    assert not result.ok and result.problem is not None
    assert (result.problem.kind, result.problem.seq) == (kind, seq)
    assert result.records_checked == seq - 1


async def test_two_processes_appending_at_once_keep_one_chain(postgres_audit_url: str) -> None:
    """Two real gpuctl processes append to one database at the same time: the advisory lock, then the head."""
    count = 200
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WRITER), postgres_audit_url, "burst", run, str(count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for run in ("run-a", "run-b", "run-c")
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
    for proc in procs:  # all wait on stdin: release them together
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0 and out.strip() == b"done"
    async with open_audit(postgres_audit_url, create=False) as log:
        result = await verify(log)
        assert result.ok and result.records_checked == 3 * count
        for run in ("run-a", "run-b", "run-c"):
            assert [r.payload["i"] for r in await log.records(run_id=run)] == list(range(count))


async def start_holder(url: str, run_id: str) -> asyncio.subprocess.Process:
    """Another process that holds `run_id`, has written execution_started, and waits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), url, "hold", run_id, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"started"
    return proc


async def test_a_killed_holder_leaves_its_run_interrupted(postgres_audit_url: str) -> None:
    proc = await start_holder(postgres_audit_url, "relabel-1")
    async with open_audit(postgres_audit_url) as log:
        assert await mark_interrupted(log) == []  # its holder is alive: not ours to judge
        with pytest.raises(AuditError, match=rf"run relabel-1 is already being recorded \(pid {proc.pid} "):
            async with log.hold("relabel-1"):
                pass

    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL

    async with open_audit(postgres_audit_url) as log:  # the next start
        # The server drops the dead client's session (and its lock) once it sees the socket close.
        marked = await _interrupted_once_the_server_notices(log)
        assert [(r.run_id, r.kind, r.seq) for r in marked] == [("relabel-1", EventKind.INTERRUPTED, 2)]
        assert marked[0].payload["last_kind"] == "execution_started"
        assert marked[0].payload["holder"]["pid"] == proc.pid  # type: ignore[index]
        assert await mark_interrupted(log) == []  # once
        assert (await verify(log)).ok
        async with log.hold("relabel-1"):  # free again
            pass


async def _interrupted_once_the_server_notices(log: AuditBackend) -> list[AuditRecord]:
    found: list[AuditRecord] = []

    async def marked() -> bool:
        found.extend(await mark_interrupted(log))
        return bool(found)

    await poll(marked, timeout_s=30, what="the dead holder's session to end")
    return found


async def test_holds_finished_failed_and_exclusive(postgres_audit_url: str) -> None:
    async with open_audit(postgres_audit_url) as log:
        async with log.hold("r1"), log.hold("r2"):
            with pytest.raises(AuditError, match="already being recorded"):
                async with log.hold("r1"):  # exclusive within one process too
                    pass
        with pytest.raises(RuntimeError, match="engine bug"):
            async with log.hold("mig-3"):
                await log.append(AuditEvent(run_id="mig-3", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
                raise RuntimeError("engine bug")
        async with log.hold("quota-1"):  # left normally, not ended: a run at rest
            await log.append(AuditEvent(run_id="quota-1", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
        marked = await mark_interrupted(log, actor=USER_A)
        assert [(r.run_id, r.kind, r.actor) for r in marked] == [("mig-3", EventKind.INTERRUPTED, USER_A)]
        assert await mark_interrupted(log) == []


async def test_least_privilege_gpuctl_user(postgres: Postgres) -> None:
    """Tables owned by another role; gpuctl's user granted only what pg_schema.py says: it works,
    and it can neither change records nor switch the trigger off."""
    database = await postgres.create_database(owner=SUPERUSER)
    async with open_audit(postgres.socket_url(database, user=SUPERUSER)) as owner:
        await owner.append(AuditEvent(run_id="made-by-owner", kind=EventKind.PLANNED, actor=USER_A))
    async with await postgres.superuser(database) as conn:
        await conn.execute(
            "GRANT SELECT, INSERT ON gpuctl_audit_records TO gpuctl; GRANT SELECT ON gpuctl_audit_schema TO gpuctl; "
            "GRANT SELECT, INSERT, UPDATE, DELETE ON gpuctl_audit_holds TO gpuctl"
        )
    url = postgres.url(database)
    async with open_audit(url) as log:
        async with log.hold("r1"):
            await log.append(AuditEvent(run_id="r1", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
        assert (await verify(log)).records_checked == 2
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            await conn.execute("UPDATE gpuctl_audit_records SET payload = '{}'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
            await conn.execute("ALTER TABLE gpuctl_audit_records DISABLE TRIGGER USER")


async def test_a_restarted_server_is_reconnected(postgres: Postgres, postgres_audit_url: str) -> None:
    async with open_audit(postgres_audit_url) as log:
        await log.append(AuditEvent(run_id="r1", kind=EventKind.PLANNED, actor=USER_A))
        await postgres.server.restart()
        assert (await log.head()) is not None  # a read: reconnected and retried
        record = await log.append(AuditEvent(run_id="r1", kind=EventKind.STEP, actor=USER_A))
        assert record.seq == 2
        await postgres.server.restart()
        assert (await log.append(AuditEvent(run_id="r1", kind=EventKind.STEP, actor=USER_A))).seq == 3
        assert (await verify(log)).ok
