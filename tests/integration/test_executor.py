"""`gpuctl executor` against the real API server: of two executors only the leader executes an approved
run (gpuctl's own adjust-quota), once; when the leader goes, the other takes over. And a process
SIGKILLed mid-run: the next start records it as interrupted (audit log) and Interrupted (its phase),
and it is never executed again."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gpuctl.audit.records import EventKind
from gpuctl.clock import Clock, utcnow
from gpuctl.errors import RunRefused
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.executor import Executor
from gpuctl.playbooks.leader import Election
from testbed.controlplane import OPERATOR, REPO_ROOT, ControlPlane
from testbed.kube import RestClient
from testbed.waiting import poll
from tests.integration.engine_support import (
    APPROVED,
    USER_A,
    USER_B,
    audit_intact,
    cli_flags,
    engine_at,
    hard,
    key,
    kinds,
    records,
    team_namespace,
)

pytestmark = pytest.mark.testbed


@dataclass
class Replica:
    executor: Executor
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def replica(
    plane: ControlPlane, directory: Path, namespace: str, name: str, clock: Clock = utcnow
) -> AsyncIterator[Replica]:
    """An executor replica in this process (its own connection and engine), stopped on exit."""
    async with engine_at(plane, directory, namespace, host=name, real=True, clock=clock) as engine:
        executor = Executor(engine, name=name, election=Election(lease_s=3, renew_deadline_s=2, retry_s=0.5))
        running = Replica(executor, asyncio.create_task(executor.run(), name=name))
        try:
            yield running
        finally:
            await running.stop()


async def approved_run(engine: Engine, namespace: str, quota: str, **more: str) -> str:
    plan = await engine.plan(USER_A, APPROVED, {"namespace": namespace, "quota": quota, **more}, key=(k := key()))
    run = (await engine.submit(plan, key=k)).run_id
    await engine.approve(USER_B, run)
    return run


async def test_only_the_leader_executes_and_another_takes_over(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home, real=True) as front:  # the bot, say: submits and approves
        team_a = await team_namespace(admin, front, "a")
        async with (
            replica(control_plane, tmp_path, engine_home, "executor-0") as first,
            replica(control_plane, tmp_path, engine_home, "executor-1") as second,
        ):
            await poll(lambda: first.executor.leading.is_set() or second.executor.leading.is_set(), what="a leader")
            leading, waiting = (first, second) if first.executor.leading.is_set() else (second, first)
            leader, follower = leading.executor, waiting.executor
            assert not follower.leading.is_set()

            run = await approved_run(front, team_a, "8")
            done = await poll(lambda: front.store.get(run), lambda r: r.status.phase == "Succeeded", what=f"{run} to succeed")
            await poll(lambda: leader.executed, what="the outcome (the status is written before execute returns)")
            assert done.status.result and done.status.result["executedBy"] == f"{leader.name}/{run}"
            assert [o.run_id for o in leader.executed] == [run] and follower.executed == []
            assert await hard(admin, team_a) == "8"
            found = await records(tmp_path, run)
            assert kinds(found).count("execution_started") == 1
            started = next(r for r in found if r.kind is EventKind.EXECUTION_STARTED)
            assert started.actor is not None and started.actor.via == "executor" and started.actor.identity == USER_A.identity

            # The leader goes away (its Lease released): the other replica leads and executes the next run.
            await leading.stop()
            await poll(follower.leading.is_set, what=f"{follower.name} to take over")
            second_run = await approved_run(front, team_a, "2")
            await poll(lambda: front.store.get(second_run), lambda r: r.status.phase == "Succeeded", what="the second run")
            await poll(lambda: follower.executed, what="the second run's outcome")
            assert [o.run_id for o in follower.executed] == [second_run]
            assert [o.run_id for o in leader.executed] == [run]
    assert await hard(admin, team_a) == "2"
    await audit_intact(tmp_path)


async def test_a_process_killed_mid_run_is_interrupted_not_executed_again(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a", quotas=2)
        run = await approved_run(engine, team_a, "8")

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.engine_child",
        str(control_plane.kubeconfig(OPERATOR)), str(tmp_path), engine_home, run, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        await poll(lambda: records(tmp_path, run), lambda found: "api_call" in kinds(found), timeout_s=60,
                   what="the child's first write")  # fmt: skip
    finally:
        child.send_signal(signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL

    async with engine_at(control_plane, tmp_path, engine_home) as engine:  # the next start on this machine recovers
        after = await engine.store.get(run)
        assert after.status.phase == "Interrupted"
        found = await records(tmp_path, run)
        assert found[-1].kind is EventKind.INTERRUPTED and found[-1].payload["last_kind"] in ("api_call", "step")
        with pytest.raises(RunRefused):
            await engine.execute(run, by=USER_A)
    assert [await hard(admin, team_a, f"gpus-{i}") for i in (0, 1)] == ["8", "4"]  # half done, and said so
    await audit_intact(tmp_path)


async def test_a_quota_granted_for_a_while_is_reverted_by_the_executor(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    later = [timedelta(0)]  # how far the executor's clock runs ahead

    def clock() -> datetime:
        return utcnow() + later[0]

    async with (
        engine_at(control_plane, tmp_path, engine_home, real=True) as front,
        replica(control_plane, tmp_path, engine_home, "executor-0", clock=clock) as executor,
    ):
        team_a = await team_namespace(admin, front, "a")
        run = await approved_run(front, team_a, "8", revert_after="10m")
        await poll(lambda: front.store.get(run), lambda r: r.status.phase == "Succeeded", what=f"{run} to succeed")
        assert await hard(admin, team_a) == "8"

        later[0] = timedelta(minutes=11)
        await poll(lambda: front.store.get(run), lambda r: r.status.phase == "Undone", what=f"{run} to be reverted")
        undo = front.store.runs  # the revert is a run of its own, approved by the grant's approval
        reverts = [r for r in (await undo.list()).runs if r.labels.get("gpuctl.io/undo-of") == run]
        assert len(reverts) == 1 and reverts[0].status.phase == "Succeeded"
        (approval,) = reverts[0].status.approvals
        assert approval.user == "user-b" and f"revert planned in run {run}" in (approval.comment or "")
        assert [o.run_id for o in executor.executor.executed] == [run, reverts[0].name]
    assert await hard(admin, team_a) == "4"
    assert kinds(await records(tmp_path, run))[-2:] == ["undo_started", "undone"]
    await audit_intact(tmp_path)


async def test_gpuctl_executor_the_command(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    """`gpuctl executor` as a process, with gpuctl's own playbooks, carries out an approved run; SIGTERM
    ends it cleanly."""
    async with engine_at(control_plane, tmp_path, engine_home, real=True) as front:
        team_a = await team_namespace(admin, front, "a")
        flags = cli_flags(control_plane, tmp_path, engine_home, identity=OPERATOR)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gpuctl", "executor", "--name", "executor-cmd", *flags, cwd=REPO_ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            run = await approved_run(front, team_a, "6")
            done = await poll(lambda: front.store.get(run), lambda r: r.status.phase in ("Succeeded", "Failed"), timeout_s=60,
                              what=f"the executor to carry out {run}")  # fmt: skip
        finally:
            process.terminate()  # SIGTERM: it gives up leadership and exits once nothing is in progress
            _, stderr = await process.communicate()
    assert done.status.phase == "Succeeded", stderr.decode()
    assert process.returncode == 0, stderr.decode()
    assert done.status.result and done.status.result["executedBy"] == f"executor-cmd/{run}"
    assert await hard(admin, team_a) == "6"
    await audit_intact(tmp_path)
