"""Two `gpuctl serve` replicas (real processes, real signals) against the real API server, and the
leader-kill scenario that test_serve_ha (the test bed's service identity) and test_deploy (the
applied deploy/ overlay's ServiceAccount and RBAC) both run.

`replica` starts one `gpuctl serve` with a given kubeconfig: `tests.integration.serve_child` (the engine
tests' playbook logic, holding a run before its second write) or `gpuctl` itself (the shipped logic).

`leader_kill`: each replica runs the bot (Slack: testbed.slack's stand-in) and the executor; the Lease
`gpuctl-leader` in gpuctl's namespace elects one. A Slack approval clicked on the follower's bot
is executed by the leader alone; the follower answers /alertmanager with 503, the leader takes it.
The leader is SIGKILLed in the middle of that run (serve_child holds every run before its second
write): the other replica takes the Lease over, recognises the run as abandoned from the cluster
alone (Running, claimed by the dead replica, its target Lease expired), marks it Interrupted (and
the approver's Slack message says so), never executes it again, and executes the next run.
SIGTERM then makes the last leader vacate the Lease and exit 0.

The audit log is the installation's one PostgreSQL database (the test bed's server), written by
both replicas and the submitting engine: the run has one execution_started (the dead leader's)
and one interrupted (the new leader's), and the chain is intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gpuctl.audit import open_audit
from gpuctl.audit.records import AuditRecord, EventKind
from gpuctl.bot.engine_seam import APPROVE_ACTION
from gpuctl.errors import RunRefused
from gpuctl.playbooks.engine import Engine
from gpuctl.playbooks.leader import LEADER
from gpuctl.playbooks.runs import PlaybookRun
from testbed.controlplane import REPO_ROOT
from testbed.kube import RestClient
from testbed.slack import BOT_TOKEN, FakeSlack, SlackSender, blocks_text
from testbed.waiting import poll
from tests.integration.engine_support import (
    APPROVED,
    USER_A,
    USER_B,
    cli,
    hard,
    key,
    kinds,
    team_namespace,
)
from tests.unit.bot.conftest import SECRET

# Short leases, so takeover and recovery come quickly; not so short that a loaded machine loses a lease.
LEASE_S, RENEW_DEADLINE_S, RETRY_S = 6, 4, 1  # the leader Lease
LOCK_LEASE_S = 4  # the runs' target Leases
SLACK_B = "U0USERB01"  # user-b (team-b): approves team a's adjust-quota runs
CHILD = "tests.integration.serve_child"  # `gpuctl serve` with the engine tests' logic


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    bot_url: str
    health_url: str

    async def health(self) -> dict[str, Any]:
        return (await _get(f"{self.health_url}/healthz"))[1]

    async def alert(self) -> int:
        body = {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "gpuctl", "alerts": []}
        async with aiohttp.ClientSession() as session, session.post(f"{self.bot_url}/alertmanager", json=body) as resp:
            return resp.status


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def replica(
    name: str, kubeconfig: Path, home: Path, namespace: str, slack: FakeSlack, audit: str, *, module: str = CHILD
) -> AsyncIterator[Replica]:
    """`gpuctl serve --name NAME` (`python -m MODULE`) in its own process as `kubeconfig`'s identity, with
    home/policy.yaml, home/playbooks, its own files under home/NAME, writing to `audit`; killed on exit."""
    folder = home / name
    folder.mkdir()
    (config := folder / "config.yaml").write_text("{}\n")
    (identities := folder / "slack-users.yaml").write_text(f"users:\n  {SLACK_B}: {{user: user-b, groups: [team-b]}}\n")
    args = [
        "--config", str(config), "--kubeconfig", str(kubeconfig), "--name", name,
        "--policy", str(home / "policy.yaml"), "--playbooks-dir", str(home / "playbooks"),
        "--audit", audit, "--gpuctl-namespace", namespace,
        "--host", "127.0.0.1", "--port", "0", "--health-port", "0", "--slack-api-url", slack.api_url,
        "--identity-map", str(identities), "--leader-lease", str(LEASE_S),
        "--leader-renew-deadline", str(RENEW_DEADLINE_S), "--leader-retry", str(RETRY_S), "--lock-lease", str(LOCK_LEASE_S), "-v",
    ]  # fmt: skip
    env = {**os.environ, "GPUCTL_SLACK_BOT_TOKEN": BOT_TOKEN, "GPUCTL_SLACK_SIGNING_SECRET": SECRET}
    with (folder / "stderr.log").open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *([] if module == CHILD else ["serve"]), *args,
            cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(90):
            line = (await process.stdout.readline()).decode()
        assert line.startswith(f"gpuctl serve: {name} serving (bot on http://"), (line, (folder / "stderr.log").read_text())
        bot_url = line.split("bot on ", 1)[1].split(",", 1)[0]
        health_url = line.rsplit("health on ", 1)[1].strip()
        yield Replica(name, process, bot_url, health_url)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def log(audit: str, run: str) -> list[AuditRecord]:
    async with open_audit(audit, create=False) as opened:
        return await opened.records(run_id=run)


async def _run(engine: Engine, run: str) -> PlaybookRun:
    return await engine.store.get(run)


async def _submitted(engine: Engine, namespace: str, quota: str) -> str:
    plan = await engine.plan(USER_A, APPROVED, {"namespace": namespace, "quota": quota}, key=(k := key()))
    return str((await engine.submit(plan, key=k)).run_id)


async def leader_kill(admin: RestClient, front: Engine, kubeconfig: Path, home: Path, namespace: str, audit: str) -> None:
    """The scenario above: two replicas as `kubeconfig`'s identity in gpuctl's `namespace`, runs submitted
    through `front` (an engine on home/policy.yaml and home/playbooks, writing to `audit`, the PostgreSQL log)."""
    async with FakeSlack() as slack:
        held_ns = await team_namespace(admin, front, "a", quotas=2)  # two quotas: held before its second write
        async with (
            replica("serve-0", kubeconfig, home, namespace, slack, audit) as first,
            replica("serve-1", kubeconfig, home, namespace, slack, audit) as second,
        ):
            states = await poll(lambda: asyncio.gather(first.health(), second.health()),
                                lambda hs: sorted(h["role"] for h in hs) == ["follower", "leader"] and hs[0]["leader"] == hs[1]["leader"],
                                timeout_s=60, what="one leader, one follower")  # fmt: skip
            leader, follower = (first, second) if states[0]["role"] == "leader" else (second, first)
            assert all(h["ready"] and h["cluster_reachable"] and h["bot"] == "serving" for h in states)
            assert all(h["lease"] == f"{namespace}/gpuctl-leader" for h in states)
            lease = (await admin.get("Lease", LEADER.lease_name, namespace)).body
            assert lease["spec"]["holderIdentity"] == leader.name and lease["spec"]["leaseDurationSeconds"] == LEASE_S
            transitions = lease["spec"].get("leaseTransitions", 0)

            for one, leads in ((leader, 1), (follower, 0)):
                async with aiohttp.ClientSession() as session, session.get(f"{one.health_url}/metrics") as resp:
                    assert f"\ngpuctl_serve_leader {leads}\n" in await resp.text()

            # Alerts are the leader's: the follower sends Alertmanager elsewhere (503), the leader takes them.
            assert await follower.alert() == 503
            assert await leader.alert() == 200

            # user-b approves in Slack, through the follower's bot: the leader executes it, held after its first write.
            run = await _submitted(front, held_ns, "8")
            click = await SlackSender(follower.bot_url, SECRET, slack).click(APPROVE_ACTION, run, user_id=SLACK_B)
            approved = await slack.wait_for_response(click.response_id)
            assert "*Approved*: approved by user-b" in blocks_text(approved)
            await poll(lambda: log(audit, run), lambda found: "api_call" in kinds(found), timeout_s=60,
                       what="the leader's first write")  # fmt: skip
            running = await _run(front, run)
            assert running.status.phase == "Running"
            assert any(c.message == f"executed by {leader.name}/{run}" for c in running.status.conditions)
            found = await log(audit, run)
            approved_by = next(r for r in found if r.kind is EventKind.APPROVED)
            assert approved_by.actor is not None and approved_by.actor.identity == USER_B.identity
            started = [r for r in found if r.kind is EventKind.EXECUTION_STARTED]
            assert [r.payload["by"] for r in started] == [f"{leader.name}/{run}"]  # the leader, and only it
            assert (await leader.health())["executing"] == [run]
            assert not await front.interrupt_abandoned(running)  # its executor holds its target: not abandoned
            assert (await _run(front, run)).status.phase == "Running"

            leader.process.send_signal(signal.SIGKILL)
            assert await leader.process.wait() == -signal.SIGKILL

            # The follower takes the Lease over (one more transition) and leads.
            await poll(follower.health, lambda h: h["role"] == "leader" and h["leader"] == follower.name,
                       timeout_s=60, what=f"{follower.name} to take over")  # fmt: skip
            lease = (await admin.get("Lease", LEADER.lease_name, namespace)).body
            assert lease["spec"]["holderIdentity"] == follower.name
            assert lease["spec"]["leaseTransitions"] == transitions + 1

            # The dead leader's run is judged from the cluster: Interrupted, recorded once, never executed again.
            done = await poll(lambda: _run(front, run), lambda r: r.status.phase == "Interrupted", timeout_s=60,
                              what=f"{run} to be marked Interrupted")  # fmt: skip
            executing = next(c for c in done.status.conditions if c.type == "Executing")
            assert executing.reason == "Interrupted" and f"{leader.name}/{run}" in executing.message
            found = await log(audit, run)
            assert kinds(found).count("execution_started") == 1 and kinds(found).count("interrupted") == 1
            assert kinds(found)[-2] in ("api_call", "step") and found[-1].kind is EventKind.INTERRUPTED
            assert found[-1].payload["holder"] == f"{leader.name}/{run}"
            assert found[-1].actor is not None and found[-1].actor.detail == follower.name
            await poll(lambda: [r for r in slack.responses(click.response_id) if "*Interrupted*" in blocks_text(r)],
                       what="the approver's message to say Interrupted")  # fmt: skip
            assert [await hard(admin, held_ns, f"gpus-{i}") for i in (0, 1)] == ["8", "4"]  # half done, and said so
            with pytest.raises(RunRefused):
                await front.execute(run, by=USER_A)

            # The new leader executes the next run (one quota: nothing holds it).
            next_ns = await team_namespace(admin, front, "a")
            second_run = await _submitted(front, next_ns, "2")
            await front.approve(USER_B, second_run)
            finished = await poll(lambda: _run(front, second_run), lambda r: r.status.phase == "Succeeded", timeout_s=60,
                                  what="the next run under the new leader")  # fmt: skip
            assert finished.status.result is not None
            assert finished.status.result["executedBy"] == f"{follower.name}/{second_run}"
            assert await hard(admin, next_ns) == "2"
            started = [r for r in await log(audit, second_run) if r.kind is EventKind.EXECUTION_STARTED]
            assert [r.payload["by"] for r in started] == [f"{follower.name}/{second_run}"]

            # SIGTERM: the last leader vacates the Lease (no one waits for it to expire) and exits 0.
            follower.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(60):
                assert await follower.process.wait() == 0
            lease = (await admin.get("Lease", LEADER.lease_name, namespace)).body
            assert not lease["spec"].get("holderIdentity")
            assert await _run(front, run) == done  # the interrupted run was never touched again
            assert kinds(await log(audit, run)).count("execution_started") == 1
    code, out, err = await asyncio.to_thread(cli, "audit", "verify", "--audit", audit)
    assert code == 0 and out.startswith("intact:"), err
