"""Leader election (gpuctl.playbooks.leader) against the real API server: one leader of many, fencing by
the renew deadline, losing the Lease to a takeover, stepping down; a run whose executor loses the
leadership stops before its next write; and a run judged abandoned while its executor was paused
stops too, and stays Interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gpuctl.clock import utcnow
from gpuctl.errors import NotLeading
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.playbooks.leader import LEADER, Election, Leadership
from gpuctl.sources.kube.connect import KubeConnection
from testbed.controlplane import OPERATOR, REPO_ROOT, ControlPlane
from testbed.kube import RestClient
from testbed.waiting import poll
from tests.integration.engine_support import APPROVED, USER_A, USER_B, engine_at, hard, key, kinds, records, team_namespace

pytestmark = pytest.mark.testbed

FAST = Election(lease_s=3, renew_deadline_s=2, retry_s=0.5)


class Monotonic:
    """A monotonic clock a test moves on by hand (the real one, plus an offset)."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return asyncio.get_running_loop().time() + self.ahead_s


def _an_hour_later() -> datetime:
    return utcnow() + timedelta(hours=1)


def _leadership(connection: KubeConnection, namespace: str, name: str, **more: object) -> Leadership:
    return Leadership(KubeApi(connection), namespace, name, FAST, **more)  # type: ignore[arg-type]  # clock, monotonic


@contextlib.asynccontextmanager
async def leading(leadership: Leadership) -> AsyncIterator[asyncio.Task[None]]:
    """Campaign until elected, then keep the Lease in the background (the task ends when it is lost)."""
    assert await leadership.campaign(asyncio.Event())
    keeping = asyncio.create_task(leadership.keep())
    try:
        yield keeping
    finally:
        keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeping
        await leadership.step_down()


async def _lease(admin: RestClient, namespace: str) -> dict:
    return (await admin.get("Lease", LEADER.lease_name, namespace)).body


async def test_one_of_two_campaigners_leads_and_the_other_takes_over_when_it_steps_down(
    admin: RestClient, operator_connection: KubeConnection, gpuctl_namespace: str
) -> None:
    first = _leadership(operator_connection, gpuctl_namespace, "replica-0")
    second = _leadership(operator_connection, gpuctl_namespace, "replica-1")
    stop = asyncio.Event()
    tasks = [asyncio.create_task(first.campaign(stop)), asyncio.create_task(second.campaign(stop))]
    (won,), _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    assert won.result() is True
    leader, other = (first, second) if won is tasks[0] else (second, first)
    await poll(lambda: other.leader, lambda seen: seen == leader.identity, what="the follower to see the leader")
    assert leader.valid() and not other.valid() and not other.leading.is_set()
    with pytest.raises(NotLeading):
        other.check()
    lease = await _lease(admin, gpuctl_namespace)
    assert lease["spec"]["holderIdentity"] == leader.identity and lease["spec"]["leaseDurationSeconds"] == FAST.lease_s
    transitions = lease["spec"].get("leaseTransitions", 0)

    await leader.step_down()  # vacated: the follower's next try takes it, long before the lease would expire
    assert not leader.valid() and not (await _lease(admin, gpuctl_namespace))["spec"].get("holderIdentity")
    waiting = tasks[1] if won is tasks[0] else tasks[0]
    assert await waiting is True
    assert other.valid() and other.leader == other.identity
    lease = await _lease(admin, gpuctl_namespace)
    assert lease["spec"]["holderIdentity"] == other.identity and lease["spec"]["leaseTransitions"] == transitions + 1
    await other.step_down()


async def test_a_leader_that_cannot_renew_in_time_is_fenced_before_anyone_can_take_over(
    operator_connection: KubeConnection, gpuctl_namespace: str
) -> None:
    monotonic = Monotonic()
    leadership = _leadership(operator_connection, gpuctl_namespace, "replica-0", monotonic=monotonic)
    async with leading(leadership) as keeping:
        leadership.check()
        monotonic.ahead_s = FAST.renew_deadline_s  # as if every renewal since the last one had failed
        with pytest.raises(NotLeading, match="no longer leads"):
            leadership.check()
        await asyncio.wait_for(keeping, 10)  # keep() gives up at its next tick instead of renewing
        assert not leadership.leading.is_set()


async def test_a_leader_whose_lease_was_taken_over_stops_leading_at_its_next_renewal(
    admin: RestClient, operator_connection: KubeConnection, gpuctl_namespace: str
) -> None:
    old = _leadership(operator_connection, gpuctl_namespace, "replica-0")
    async with leading(old) as keeping:
        # A replica whose clock says the lease expired long ago (a leader that stopped renewing, seen later).
        new = _leadership(operator_connection, gpuctl_namespace, "replica-1", clock=_an_hour_later)
        assert await new.campaign(asyncio.Event())
        await asyncio.wait_for(keeping, 10)
        assert not old.valid() and old.leader == new.identity
        assert (await _lease(admin, gpuctl_namespace))["spec"]["holderIdentity"] == new.identity
    await new.step_down()


async def test_a_run_whose_executor_loses_the_leadership_stops_before_its_next_write(
    admin: RestClient, control_plane: ControlPlane, operator_connection: KubeConnection, engine_home: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    first_written, go_on = asyncio.Event(), asyncio.Event()

    async def gate(index: int) -> None:
        if index == 1:
            first_written.set()
            await go_on.wait()

    async with engine_at(control_plane, tmp_path, engine_home, gate=gate) as engine:
        namespace = await team_namespace(admin, engine, "a", quotas=2)
        plan = await engine.plan(USER_A, APPROVED, {"namespace": namespace, "quota": "8"}, key=(k := key()))
        run = (await engine.submit(plan, key=k)).run_id
        await engine.approve(USER_B, run)

        leadership = _leadership(operator_connection, engine_home, "executor-0")
        async with leading(leadership) as keeping:
            executing = asyncio.create_task(engine.execute(run, by=USER_A, fence=leadership))
            await asyncio.wait_for(first_written.wait(), 30)
            usurper = _leadership(operator_connection, engine_home, "executor-1", clock=_an_hour_later)
            assert await usurper.campaign(asyncio.Event())
            await asyncio.wait_for(keeping, 10)  # the executor sees it lost the Lease
            go_on.set()
            outcome = await executing
        await usurper.step_down()

        assert outcome.phase == "Failed" and "executor-0 no longer leads" in outcome.message
        ended = await engine.store.get(run)
        assert ended.status.phase == "Failed" and ended.status.steps[1].state != "Succeeded"
        found = await records(tmp_path, run)
        assert [r.payload.get("step") for r in found if r.kind.value == "api_call"] == [0]  # one write, never the second
    assert [await hard(admin, namespace, f"gpus-{i}") for i in (0, 1)] == ["8", "4"]


async def test_a_run_judged_abandoned_while_its_executor_was_paused_stops_and_stays_interrupted(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    """An executor process paused (SIGSTOP) mid-run past its target Lease: another replica judges the run
    abandoned and marks it Interrupted; resumed (SIGCONT), the executor writes nothing more, and its end
    does not overwrite the judgement."""
    async with engine_at(control_plane, tmp_path, engine_home) as front:
        namespace = await team_namespace(admin, front, "a", quotas=2)
        plan = await front.plan(USER_A, APPROVED, {"namespace": namespace, "quota": "8"}, key=(k := key()))
        run = (await front.submit(plan, key=k)).run_id
        await front.approve(USER_B, run)

    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.engine_child",
        str(control_plane.kubeconfig(OPERATOR)), str(tmp_path), engine_home, run, "3",
        cwd=REPO_ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        await poll(lambda: records(tmp_path, run), lambda found: "api_call" in kinds(found), timeout_s=60,
                   what="the child's first write")  # fmt: skip
        child.send_signal(signal.SIGSTOP)

        (elsewhere := tmp_path / "elsewhere").mkdir()
        async with engine_at(control_plane, elsewhere, engine_home, host="judge") as judge:  # another replica
            await poll(lambda: _judged(judge, run), timeout_s=60,
                       what="the paused executor's Lease to expire and the run to be judged abandoned")  # fmt: skip
            assert not await judge.interrupt_abandoned(await judge.store.get(run))  # once

            child.stdin.write(b"go on\n")
            await child.stdin.drain()
            child.send_signal(signal.SIGCONT)
            async with asyncio.timeout(60):
                out, _ = await child.communicate()
            assert child.returncode == 0
            outcome = json.loads(out.decode().strip().splitlines()[-1])
            assert outcome["phase"] == "Failed" and "stopped before a write" in outcome["message"]

            ended = await judge.store.get(run)
            assert ended.status.phase == "Interrupted"  # the child's end did not overwrite the judgement
            assert f"its executor child/{run}" in (ended.status.result or {})["message"]
            assert kinds(await records(elsewhere, run)) == ["interrupted"]
        assert [r.payload.get("step") for r in await records(tmp_path, run) if r.kind.value == "api_call"] == [0]
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert [await hard(admin, namespace, f"gpus-{i}") for i in (0, 1)] == ["8", "4"]


async def _judged(judge: Engine, run: str) -> bool:
    return await judge.interrupt_abandoned(await judge.store.get(run))
