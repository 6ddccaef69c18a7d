"""Runs left in flight by a process that died: marked interrupted at the next start, and only those."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from gpuctl.audit import AuditEvent, EventKind, mark_interrupted, open_audit, verify
from gpuctl.audit.held import RunLocks
from gpuctl.errors import AuditError

from .factories import USER_A, run_events

WRITER = Path(__file__).with_name("writer.py")


async def start_holder(db: Path, run_id: str) -> asyncio.subprocess.Process:
    """Another process that holds `run_id`, has written execution_started, and waits."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WRITER), str(db), "hold", run_id, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"started"
    return proc


async def test_a_killed_process_leaves_its_run_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    proc = await start_holder(db, "relabel-1")
    async with open_audit(str(db)) as log:
        assert await mark_interrupted(log) == []  # its holder is alive: not ours to judge
        with pytest.raises(AuditError, match=rf"run relabel-1 is already being recorded \(pid {proc.pid} "):
            async with log.hold("relabel-1"):
                pass

    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL

    async with open_audit(str(db)) as log:  # the next start
        marked = await mark_interrupted(log)
        assert [(r.run_id, r.kind, r.seq) for r in marked] == [("relabel-1", EventKind.INTERRUPTED, 2)]
        assert marked[0].actor is None
        assert marked[0].payload["last_kind"] == "execution_started" and marked[0].payload["last_seq"] == 1
        assert marked[0].payload["holder"]["pid"] == proc.pid  # type: ignore[index]
        assert await mark_interrupted(log) == []  # once
        assert (await verify(log)).ok
        async with log.hold("relabel-1"):  # free again (an undo may take it)
            pass


async def test_a_run_finished_normally_is_not_marked(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    proc = await start_holder(db, "quota-1")
    assert proc.stdin is not None
    proc.stdin.close()  # let it leave its hold normally
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    async with open_audit(str(db)) as log:
        assert await mark_interrupted(log) == []
        # Not held by anyone now, and not ended: a run at rest, like one awaiting approval.
        assert (await log.records(run_id="quota-1"))[-1].kind is EventKind.EXECUTION_STARTED


async def test_runs_at_rest_ended_or_never_written_are_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    locks = RunLocks(db.with_name(db.name + ".runs"))
    async with open_audit(str(db)) as log:
        await log.append(AuditEvent(run_id="awaiting-approval", kind=EventKind.PLANNED, actor=USER_A))  # nobody holds it
        for event in run_events("ended"):
            await log.append(event)
        # Holders that died (closing the descriptor drops the flock, as death does) after the run ended,
        # and before writing anything.
        for run_id in ("ended", "never-written"):
            os.close(locks.acquire(run_id).fd)
        assert await mark_interrupted(log) == []
        assert list(locks.directory.iterdir()) == []  # the dead holders' files are cleared
        assert (await log.head()) is not None and (await log.head()).kind is EventKind.COMPLETED  # type: ignore[union-attr]


async def test_a_hold_left_by_an_exception_is_recovered(tmp_path: Path) -> None:
    async with open_audit(str(tmp_path / "audit.sqlite")) as log:
        with pytest.raises(RuntimeError, match="engine bug"):
            async with log.hold("mig-3"):
                await log.append(AuditEvent(run_id="mig-3", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
                raise RuntimeError("engine bug")
        with pytest.raises(ZeroDivisionError):
            async with log.hold("mig-4"):  # it recorded its failure before the error escaped: nothing to add
                await log.append(AuditEvent(run_id="mig-4", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
                await log.append(AuditEvent(run_id="mig-4", kind=EventKind.FAILED, actor=USER_A))
                _ = 1 / 0
        marked = await mark_interrupted(log)
        assert [(r.run_id, r.kind) for r in marked] == [("mig-3", EventKind.INTERRUPTED)]


async def test_who_noticed_can_be_recorded(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite"
    locks = RunLocks(db.with_name(db.name + ".runs"))
    async with open_audit(str(db)) as log:
        await log.append(AuditEvent(run_id="scale-1", kind=EventKind.EXECUTION_STARTED, actor=USER_A))
        os.close(locks.acquire("scale-1").fd)
        marked = await mark_interrupted(log, actor=USER_A)
        assert [r.actor for r in marked] == [USER_A]


async def test_hold_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    async with open_audit(str(tmp_path / "audit.sqlite")) as log:
        async with log.hold("r1"), log.hold("r2"):
            with pytest.raises(AuditError, match="already being recorded"):
                async with log.hold("r1"):
                    pass
        async with log.hold("r1"):  # released
            pass
