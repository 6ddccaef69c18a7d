"""The SQLite backend: appends, reads, and every kind of tampering done to the file with sqlite3."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gpuctl.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    EventKind,
    ProblemKind,
    VerifyResult,
    open_audit,
    verify,
)
from gpuctl.audit.sqlite import SqliteBackend
from gpuctl.errors import AuditError, AuditTampered, ConfigError

from .factories import T0, USER_A, run_events, tamper, ticking

WRITER = Path(__file__).with_name("writer.py")


async def write_run(path: Path, run_id: str = "reclaim-7f3a") -> list[AuditRecord]:
    async with open_audit(str(path), clock=ticking()) as log:
        return [await log.append(event) for event in run_events(run_id)]


async def verified(path: Path, **kwargs: object) -> VerifyResult:
    async with open_audit(str(path), create=False) as log:
        return await verify(log, **kwargs)  # type: ignore[arg-type]


async def test_append_seals_a_chain_and_reads_back(tmp_path: Path) -> None:
    db = tmp_path / "state" / "audit.sqlite"
    written = await write_run(db)
    assert [r.seq for r in written] == list(range(1, 8))
    assert written[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(written))
    assert written[0].time == T0 and written[6].time == T0 + timedelta(seconds=6)
    async with open_audit(str(db), create=False) as log:
        assert await log.records() == written
        assert await log.head() == written[-1]
        assert await log.records(run_id="reclaim-7f3a", after_seq=5) == written[5:]
        assert await log.records(since=T0 + timedelta(seconds=5)) == written[5:]
        assert await log.records(limit=2, newest_first=True) == written[:-3:-1]
        assert await log.records(run_id="other") == []
    assert (await verified(db)).ok


async def test_append_if_open_skips_ended_and_unknown_runs(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    await write_run(db)  # ends with completed
    async with open_audit(str(db)) as log:
        late = AuditEvent(run_id="reclaim-7f3a", kind=EventKind.INTERRUPTED)
        assert await log.append_if_open(late) is None
        assert await log.append_if_open(AuditEvent(run_id="never-seen", kind=EventKind.INTERRUPTED)) is None
        await log.append(AuditEvent(run_id="r2", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
        closed = await log.append_if_open(AuditEvent(run_id="r2", kind=EventKind.INTERRUPTED))
        assert closed is not None and closed.seq == 9
        assert (await verify(log)).ok


async def test_the_database_refuses_updates_and_deletes(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    await write_run(db)
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_records SET payload = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit_records WHERE seq = 7")
    conn.close()
    assert (await verified(db)).records_checked == 7


# Each is done to the file with sqlite3, past the triggers: every one must be caught.
TAMPERING = {
    "payload edited": (
        ['UPDATE audit_records SET payload = \'{"playbook":"adjust-quota"}\' WHERE seq = 1'],
        1,
        ProblemKind.EDITED,
    ),
    "time edited": (["UPDATE audit_records SET time = '2026-11-29T08:00:00.000000Z' WHERE seq = 3"], 3, ProblemKind.EDITED),
    "actor edited": (
        ["UPDATE audit_records SET actor = replace(actor, 'user-b', 'user-a') WHERE seq = 3"],
        3,
        ProblemKind.EDITED,
    ),
    "actor removed": (["UPDATE audit_records SET actor = NULL WHERE seq = 4"], 4, ProblemKind.EDITED),
    "kind edited": (["UPDATE audit_records SET kind = 'rejected' WHERE seq = 3"], 3, ProblemKind.EDITED),
    "kind made up": (["UPDATE audit_records SET kind = 'teleported' WHERE seq = 3"], 3, ProblemKind.UNREADABLE),
    "payload not JSON": (["UPDATE audit_records SET payload = '{\"a\":' WHERE seq = 2"], 2, ProblemKind.UNREADABLE),
    "run moved": (["UPDATE audit_records SET run_id = 'other-run' WHERE seq = 5"], 5, ProblemKind.EDITED),
    "record deleted": (["DELETE FROM audit_records WHERE seq = 4"], 4, ProblemKind.MISSING),
    "first record deleted": (["DELETE FROM audit_records WHERE seq = 1"], 1, ProblemKind.MISSING),
    "two records swapped": (
        [
            "UPDATE audit_records SET seq = -1 WHERE seq = 3",
            "UPDATE audit_records SET seq = 3 WHERE seq = 4",
            "UPDATE audit_records SET seq = 4 WHERE seq = -1",
        ],
        3,
        ProblemKind.EDITED,
    ),
    "hash replaced": (["UPDATE audit_records SET hash = prev_hash WHERE seq = 6"], 6, ProblemKind.EDITED),
    "version changed": (["UPDATE audit_records SET version = 2 WHERE seq = 2"], 2, ProblemKind.UNSUPPORTED_VERSION),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
async def test_tampering_with_the_file_is_caught(tmp_path: Path, case: str) -> None:
    statements, seq, kind = TAMPERING[case]
    db = tmp_path / "audit.sqlite"
    await write_run(db)
    tamper(db, *statements)
    result = await verified(db)
    assert not result.ok and result.problem is not None
    assert (result.problem.kind, result.problem.seq) == (kind, seq)
    assert result.records_checked == seq - 1


async def test_forged_record_with_recomputed_hash_but_wrong_prev(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    written = await write_run(db)
    forged = AuditRecord.seal(
        AuditEvent(run_id="reclaim-7f3a", kind=EventKind.UNDONE, actor=USER_A), seq=8, time=T0, prev_hash=written[2].hash
    )
    tamper(db, rows=[forged])
    problem = (await verified(db)).problem
    assert problem is not None and (problem.kind, problem.seq) == (ProblemKind.BROKEN_LINK, 8)
    assert (problem.expected, problem.found) == (written[-1].hash, written[2].hash)


async def test_forged_record_inserted_in_the_middle(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    written = await write_run(db)
    forged = AuditRecord.seal(
        AuditEvent(run_id="reclaim-7f3a", kind=EventKind.APPROVED, actor=USER_A), seq=4, time=T0, prev_hash=written[2].hash
    )
    tamper(
        db,
        "UPDATE audit_records SET seq = -seq WHERE seq >= 4",
        "UPDATE audit_records SET seq = 1 - seq WHERE seq < 0",
        rows=[forged],
    )
    problem = (await verified(db)).problem
    assert problem is not None and (problem.kind, problem.seq) == (ProblemKind.EDITED, 5)


async def test_forged_genesis(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    written = await write_run(db)
    forged = AuditRecord.seal(
        AuditEvent(run_id="reclaim-7f3a", kind=EventKind.REQUESTED, actor=USER_A), seq=1, time=T0, prev_hash="11" * 32
    )
    tamper(db, "DELETE FROM audit_records WHERE seq = 1", rows=[forged])
    problem = (await verified(db)).problem
    assert problem is not None and (problem.kind, problem.seq) == (ProblemKind.BAD_GENESIS, 1)
    assert written[0].hash != forged.hash


async def test_tail_cut_is_caught_only_by_a_kept_head(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    written = await write_run(db)
    kept = written[-1].anchor
    tamper(db, "DELETE FROM audit_records WHERE seq >= 6")
    assert (await verified(db)).ok  # a chain alone cannot know
    result = await verified(db, expect_head=kept)
    assert result.problem is not None and result.problem.kind is ProblemKind.ANCHOR_MISSING


async def test_unreadable_row_is_an_error_when_listing(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    await write_run(db)
    tamper(db, "UPDATE audit_records SET kind = 'teleported' WHERE seq = 3")
    async with open_audit(str(db), create=False) as log:
        with pytest.raises(AuditTampered, match="record 3 of the audit log is unreadable"):
            await log.records()
        assert len(await log.records(limit=2)) == 2  # the rows before it still read


async def test_two_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    """Two real gpuctl processes append to one file at the same time: BEGIN IMMEDIATE, then the head."""
    db = tmp_path / "audit.sqlite"
    count = 150
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WRITER), str(db), "burst", run, str(count),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for run in ("run-a", "run-b")
    ]  # fmt: skip
    for proc in procs:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
    for proc in procs:  # both wait on stdin: release them together
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0 and out.strip() == b"done"
    result = await verified(db)
    assert result.ok and result.records_checked == 2 * count
    async with open_audit(str(db), create=False) as log:
        for run in ("run-a", "run-b"):
            assert [r.payload["i"] for r in await log.records(run_id=run)] == list(range(count))


async def test_first_open_waits_for_another_process_creating_the_file(tmp_path: Path) -> None:
    """The CI race: SQLite refuses the WAL switch at once while another connection writes; opening waits."""
    db = tmp_path / "audit.sqlite"
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process mid-way through its own first open
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, other.commit)
    async with SqliteBackend(db, busy_timeout_s=10) as log:
        record = await log.append(run_events("reclaim-7f3a")[0])
    other.close()
    assert record.seq == 1 and (await verified(db)).ok


async def test_first_open_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(AuditError, match=r"cannot prepare the audit log .*database is locked"):
            async with SqliteBackend(db, busy_timeout_s=0.2):
                pass
    finally:
        other.close()


async def test_opening_refuses_what_is_not_a_gpuctl_log(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(AuditError, match="no audit log at"):
        async with open_audit(str(missing), create=False):
            pass
    assert not missing.exists()

    text = tmp_path / "notes.txt"
    text.write_text("not a database, just words " * 100)
    with pytest.raises(AuditError, match="is not a gpuctl audit log"):
        async with open_audit(str(text)):
            pass

    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE things (x)").connection.close()
    with pytest.raises(AuditError, match="SQLite database but not a gpuctl audit log"):
        async with open_audit(str(other)):
            pass

    newer = tmp_path / "newer.sqlite"
    await write_run(newer)
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    with pytest.raises(AuditError, match="written by a newer gpuctl"):
        async with open_audit(str(newer)):
            pass


async def test_use_outside_async_with_is_an_error(tmp_path: Path) -> None:
    log = SqliteBackend(tmp_path / "audit.sqlite")
    with pytest.raises(AuditError, match="not open"):
        await log.head()


def test_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuctl.audit import default_audit_path, sqlite_path

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_audit_path() == tmp_path / "state" / "gpuctl" / "audit.sqlite"
    assert sqlite_path(None) == default_audit_path()
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_audit_path() == tmp_path / ".local" / "state" / "gpuctl" / "audit.sqlite"
    assert sqlite_path("~/a.sqlite") == tmp_path / "a.sqlite"
    assert sqlite_path("sqlite:///var/lib/gpuctl/audit.sqlite") == Path("/var/lib/gpuctl/audit.sqlite")
    refused = [
        ("mysql://x", "unknown audit backend 'mysql'"),
        ("sqlite://", "names no file"),
        ("  ", "empty"),
    ]
    for bad, needle in refused:
        with pytest.raises(ValueError, match=needle):
            sqlite_path(bad)
        with pytest.raises(ConfigError, match=needle):
            open_audit(bad)
    with pytest.raises(ValueError, match="is a PostgreSQL URL, not a SQLite file"):
        sqlite_path("postgresql://db/audit")
