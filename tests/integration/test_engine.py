"""The playbook engine against the real API server: policy and RBAC denials, approvals, stale plans,
locks, idempotency, the kill switch, undo, the audit log, and runs without the PlaybookRun CRD.

The engine runs as gpuctl-operator (impersonating the requesters), as the bot and the executor do;
the playbook logic is tests/integration/engine_support.QuotaLogic (adjust-quota for ResourceQuotas).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gpuctl.audit.records import EventKind
from gpuctl.clock import utcnow
from gpuctl.errors import Forbidden, LockHeld, NotFound, NotInstalled, PlanStale, PlaybooksDisabled, PolicyDenied, RunRefused
from gpuctl.playbooks.killswitch import CONFIGMAP
from gpuctl.playbooks.plan import Plan
from gpuctl.playbooks.runs import run_name
from testbed.controlplane import ControlPlane
from testbed.kube import RestClient, apply_objects, install_crds
from testbed.waiting import poll
from tests.integration.engine_support import (
    APPROVED,
    NOW,
    QUOTA_KEY,
    USER_A,
    USER_B,
    audit_intact,
    cli,
    cli_flags,
    engine_at,
    hard,
    key,
    kinds,
    records,
    team_namespace,
)

pytestmark = pytest.mark.testbed


# --- authorization ---------------------------------------------------------------------------------


async def test_policy_denial_names_the_role_changes_nothing_and_is_audited(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
        k = key()
        with pytest.raises(PolicyDenied) as denied:
            await engine.plan(USER_B, APPROVED, {"namespace": team_a, "quota": "8"}, key=k)
    reason = f"user-b may not run adjust-quota on {team_a}: role team-b-operator covers eng-b-* only"
    assert str(denied.value) == reason
    assert await hard(admin, team_a) == "4"
    found = await records(tmp_path, run_name(APPROVED, k))
    assert kinds(found) == ["requested", "denied"]
    assert found[-1].payload == {"by": "policy", "reason": reason}
    assert found[-1].actor == USER_B

    # The CLI says the same and exits 4 (denied), for someone acting as user-b.
    code, _, err = await asyncio.to_thread(
        cli, "playbook", "plan", APPROVED, "-p", f"namespace={team_a}", "-p", "quota=8", "--as", "user-b", "--as-group",
        "team-b", *cli_flags(control_plane, tmp_path, engine_home),
    )  # fmt: skip
    assert code == 4 and reason in err
    await audit_intact(tmp_path)


async def test_rbac_denial_through_impersonation_changes_nothing(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        # Policy lets user-a act in eng-a-*, but the cluster grants nothing here: the dry run as user-a is refused.
        bare = await team_namespace(admin, engine, "a", grant=False)
        k = key()
        with pytest.raises(Forbidden) as refused:
            await engine.plan(USER_A, APPROVED, {"namespace": bare, "quota": "8"}, key=k)
        assert "user-a" in str(refused.value)
        assert kinds(await records(tmp_path, run_name(APPROVED, k))) == ["requested", "denied"]

        # Allowed when planned, revoked before submitting: the access review as user-a says no.
        team_a = await team_namespace(admin, engine, "a")
        k = key()
        plan = await engine.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "8"}, key=k)
        assert plan.dry_run == "server" and [s.target.name for s in plan.steps] == ["gpus-0"]
        await admin.delete("RoleBinding", "team-edits-quotas", team_a)

        async def revoked() -> bool:
            return not (await engine.acting_client(USER_A.identity).can_i("patch", "resourcequotas", namespace=team_a)).allowed

        await poll(revoked, timeout_s=10, what="the RoleBinding's removal to reach RBAC")
        with pytest.raises(Forbidden) as refused:
            await engine.submit(plan, key=k)
        assert str(refused.value).startswith(f"user-a (team-a) may not patch resourcequotas in namespace {team_a}")
        with pytest.raises(NotFound):
            await engine.store.get(run_name(APPROVED, k))
    found = await records(tmp_path, run_name(APPROVED, k))
    assert kinds(found) == ["requested", "planned", "denied"]
    assert found[-1].payload["by"] == "cluster"
    assert await hard(admin, team_a) == "4" and await hard(admin, bare) == "4"
    await audit_intact(tmp_path)


# --- approvals, execution, undo --------------------------------------------------------------------


async def test_approved_by_someone_else_executed_as_the_requester_and_undone(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
        plan = await engine.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "8"}, key=(k := key()))
        submitted = await engine.submit(plan, key=k)
        assert submitted.phase == "AwaitingApproval" and submitted.needs_approval
        assert submitted.approvers == ("role team-b-approver (group team-b)",)
        run = submitted.run_id

        with pytest.raises(PolicyDenied) as own:
            await engine.approve(USER_A, run)
        assert "user-a may not approve their own run of adjust-quota" in str(own.value)
        with pytest.raises(RunRefused):  # not approved: nothing executes
            await engine.execute(run, by=USER_A)
        assert (await engine.store.get(run)).status.phase == "AwaitingApproval"

        approved = await engine.approve(USER_B, run, comment="ok for the sprint")
        again = await engine.approve(USER_B, run)  # a double approve approves once
        assert approved.status.phase == again.status.phase == "Approved"
        assert [(a.user, a.plan_fingerprint) for a in again.status.approvals] == [("user-b", plan.fingerprint)]

        outcome = await engine.execute(run, by=USER_A)
        assert outcome.ok, outcome.message
        assert await hard(admin, team_a) == "8"
        done = await engine.store.get(run)
        assert done.status.phase == "Succeeded" and [s.state for s in done.status.steps] == ["Succeeded"]

        undo = await engine.undo(USER_A, run)
        assert undo.undo_of == run and undo.needs_approval and undo.plan.steps[0].changes[0].after == "4"
        await engine.approve(USER_B, undo.run_id)
        assert (await engine.execute(undo.run_id, by=USER_A)).ok
        assert await hard(admin, team_a) == "4"
        assert (await engine.store.get(run)).status.phase == "Undone"

    found = await records(tmp_path, run)
    assert kinds(found) == [
        "requested", "planned", "authorized", "step", "approved", "execution_started", "step", "api_call",
        "verified", "completed", "undo_started", "undone",
    ]  # fmt: skip
    assert found[3].payload["message"] == "approve refused" and found[3].actor == USER_A
    call = found[7].payload
    assert call["method"] == "PATCH" and call["acting_as"] == {"user": "user-a", "groups": ["team-a"]}
    assert call["audit_id"] and call["step"] == 0 and not call["dry_run"]
    assert found[4].actor == USER_B and found[4].payload["fingerprint"] == plan.fingerprint
    assert kinds(await records(tmp_path, undo.run_id))[-1] == "completed"
    await audit_intact(tmp_path)


async def test_denied_withdrawn_and_expired_runs_never_execute(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")

        async def submitted() -> str:
            plan = await engine.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "8"}, key=(k := key()))
            return (await engine.submit(plan, key=k)).run_id

        denied, withdrawn, lapsing = await submitted(), await submitted(), await submitted()
        assert (await engine.deny(USER_B, denied, reason="not this sprint")).status.phase == "Denied"
        assert (await engine.deny(USER_A, withdrawn, reason="typo")).status.phase == "Cancelled"
        with pytest.raises(RunRefused):
            await engine.approve(USER_B, denied)
    # Nine hours later (approvals lapse after 8): approving expires it instead.
    async with engine_at(control_plane, tmp_path, engine_home, clock=lambda: utcnow() + timedelta(hours=9)) as later:
        with pytest.raises(RunRefused, match=r"expired at .* approvals lapse after 8 h"):
            await later.approve(USER_B, lapsing)
        assert (await later.store.get(lapsing)).status.phase == "Expired"
        for run in (denied, withdrawn, lapsing):
            with pytest.raises(RunRefused):
                await later.execute(run, by=USER_A)
    assert await hard(admin, team_a) == "4"
    assert kinds(await records(tmp_path, denied))[-1] == "rejected"
    assert (await records(tmp_path, withdrawn))[-1].payload == {"reason": "typo", "withdrawn": True}
    assert kinds(await records(tmp_path, lapsing))[-1] == "expired"
    await audit_intact(tmp_path)


async def test_a_stale_plan_is_refused_and_changes_nothing(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
        plan = await engine.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "8"}, key=(k := key()))
        run = (await engine.submit(plan, key=k)).run_id
        await engine.approve(USER_B, run)
        await admin.patch("ResourceQuota", "gpus-0", {"spec": {"hard": {QUOTA_KEY: "6"}}}, team_a)
        with pytest.raises(PlanStale) as stale:
            await engine.execute(run, by=USER_A)
        assert "is 6 now; the plan was made when it was 4" in str(stale.value)
        assert (await engine.store.get(run)).status.phase == "Failed"
        with pytest.raises(RunRefused):  # a stale run is finished: never executed later
            await engine.execute(run, by=USER_A)
    assert await hard(admin, team_a) == "6"
    found = await records(tmp_path, run)
    assert kinds(found)[-2:] == ["execution_started", "failed"] and found[-1].payload["stale"]
    await audit_intact(tmp_path)


async def test_a_duplicate_idempotency_key_runs_once(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
        k = "alert:GpuIdle/7f3a@2026-11-30T10:00:00Z"
        plan = await engine.plan(USER_A, NOW, {"namespace": team_a, "quota": "5"}, key=k)
        first, second = await asyncio.gather(engine.submit(plan, key=k), engine.submit(plan, key=k))
        assert first.run_id == second.run_id and sorted([first.duplicate, second.duplicate]) == [False, True]
        assert (await engine.execute(first.run_id, by=USER_A)).ok
        again = await engine.submit(await engine.plan(USER_A, NOW, {"namespace": team_a, "quota": "5"}, key=k), key=k)
        assert again.duplicate and again.phase == "Succeeded"
        with pytest.raises(RunRefused):
            await engine.execute(again.run_id, by=USER_A)
    assert kinds(await records(tmp_path, first.run_id)).count("execution_started") == 1
    await audit_intact(tmp_path)


async def test_two_runs_on_one_target_the_second_is_refused_naming_the_holder(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold_first(index: int) -> None:
        if not entered.is_set():
            entered.set()
            await release.wait()

    async with engine_at(control_plane, tmp_path, engine_home, gate=hold_first) as engine:
        team_a = await team_namespace(admin, engine, "a")
        plans = [await engine.plan(USER_A, NOW, {"namespace": team_a, "quota": q}, key=f"k{q}-{team_a}") for q in ("6", "7")]
        first, second = [(await engine.submit(p, key=f"k{q}-{team_a}")).run_id for p, q in zip(plans, ("6", "7"))]
        running = asyncio.create_task(engine.execute(first, by=USER_A))
        await asyncio.wait_for(entered.wait(), 30)
        with pytest.raises(LockHeld) as held:
            await engine.execute(second, by=USER_A)
        assert f"test/{first}" in str(held.value) and held.value.holder == f"test/{first}"
        assert (await engine.store.get(second)).status.phase == "Pending"  # refused before it was claimed
        release.set()
        assert (await running).ok
        # Its turn now, but the quota it was planned against has changed: refused as stale.
        with pytest.raises(PlanStale):
            await engine.execute(second, by=USER_A)
    assert await hard(admin, team_a) == "6"
    await audit_intact(tmp_path)


async def test_the_kill_switch_stops_runs_before_they_write(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    switch = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP, "namespace": engine_home},
              "data": {"reason": "INC-42 eviction storm"}}  # fmt: skip

    async def engage_before_second(index: int) -> None:
        if index == 1:
            await apply_objects(admin, [switch])

    async with engine_at(control_plane, tmp_path, engine_home, gate=engage_before_second) as engine:
        team_a = await team_namespace(admin, engine, "a", quotas=2)
        plan = await engine.plan(USER_A, NOW, {"namespace": team_a, "quota": "3"}, key=(k := key()))
        run = (await engine.submit(plan, key=k)).run_id
        await apply_objects(admin, [switch])
        with pytest.raises(PlaybooksDisabled) as off:
            await engine.execute(run, by=USER_A)
        assert "INC-42 eviction storm" in str(off.value)
        assert (await engine.store.get(run)).status.phase == "Pending"  # not consumed: runs once released

        # Through the CLI (as user-a, by the admin acting for them): refused, exit 6.
        code, _, err = await asyncio.to_thread(
            cli, "playbook", "execute", run, "--as", "user-a", "--as-group", "team-a",
            *cli_flags(control_plane, tmp_path, engine_home),
        )  # fmt: skip
        assert code == 6 and "kill switch is engaged" in err

        await admin.delete("ConfigMap", CONFIGMAP, engine_home)
        outcome = await engine.execute(run, by=USER_A)  # engaged again between its two writes
        await admin.delete("ConfigMap", CONFIGMAP, engine_home)
    assert outcome.phase == "Cancelled" and "kill switch" in outcome.message
    assert [await hard(admin, team_a, f"gpus-{i}") for i in (0, 1)] == ["3", "4"]
    found = await records(tmp_path, run)
    assert found[-1].kind is EventKind.FAILED and found[-1].payload["phase"] == "Cancelled"
    await audit_intact(tmp_path)


async def test_no_write_after_the_deadline(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    later = [timedelta(0)]

    async def past_the_deadline_before_second(index: int) -> None:
        if index == 1:
            later[0] = timedelta(minutes=11)  # adjust-quota's deadline is 10m

    def clock() -> datetime:
        return utcnow() + later[0]

    async with engine_at(control_plane, tmp_path, engine_home, gate=past_the_deadline_before_second, clock=clock) as engine:
        team_a = await team_namespace(admin, engine, "a", quotas=2)
        plan = await engine.plan(USER_A, NOW, {"namespace": team_a, "quota": "3"}, key=(k := key()))
        outcome = await engine.execute((await engine.submit(plan, key=k)).run_id, by=USER_A)
    assert outcome.phase == "Failed" and "deadline" in outcome.message
    assert [await hard(admin, team_a, f"gpus-{i}") for i in (0, 1)] == ["3", "4"]
    await audit_intact(tmp_path)


# --- the CLI ----------------------------------------------------------------------------------------


async def test_cli_plan_run_approve_runs(admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
    common = cli_flags(control_plane, tmp_path, engine_home)
    as_a = ["--as", "user-a", "--as-group", "team-a"]
    params = ["-p", f"namespace={team_a}", "-p", "quota=8"]

    code, out, _ = await asyncio.to_thread(cli, "playbook", "plan", APPROVED, *params, *as_a, *common)
    assert code == 0
    assert f"ResourceQuota/{team_a}/gpus-0  set_resourcequota  spec.hard[{QUOTA_KEY}]: 4 → 8" in out
    assert "fingerprint: sha256:" in out and "dry run: server" in out

    code, out, _ = await asyncio.to_thread(cli, "playbook", "run", APPROVED, *params, "--yes", "--key", "cli-k1", *as_a, *common)
    assert code == 0 and "awaiting approval" in out and "role team-b-approver (group team-b)" in out
    run = run_name(APPROVED, "cli-k1")
    code, _, err = await asyncio.to_thread(cli, "playbook", "approve", run, *as_a, *common)
    assert code == 4 and "their own run" in err
    code, out, _ = await asyncio.to_thread(cli, "playbook", "approve", run, "--as", "user-b", "--as-group", "team-b", *common)
    assert code == 0 and out == f"run {run}: Approved\n"
    code, out, _ = await asyncio.to_thread(cli, "playbook", "execute", run, *as_a, *common)
    assert code == 0 and f"run {run}: Succeeded" in out
    assert await hard(admin, team_a) == "8"
    code, out, _ = await asyncio.to_thread(cli, "playbook", "runs", *as_a, *common)
    assert code == 0 and any(line.split()[:4] == [run, APPROVED, "Succeeded", "user-a"] for line in out.splitlines())

    # Without approval, `run` executes at once; --json prints the models.
    code, out, err = await asyncio.to_thread(cli, "playbook", "plan", NOW, *params, "--json", *as_a, *common)
    assert code == 0 and Plan.model_validate_json(out).steps[0].changes[0].before == "8"
    code, out, err = await asyncio.to_thread(cli, "playbook", "run", NOW, "-p", f"namespace={team_a}", "-p", "quota=5",
                                             "--yes", "--json", *as_a, *common)  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["outcome"]["phase"] == "Succeeded" and result["submitted"]["phase"] == "Pending"
    assert await hard(admin, team_a) == "5"

    # Acting for someone the policy does not cover is refused before anything is read.
    code, _, err = await asyncio.to_thread(cli, "playbook", "runs", "--as", "alice", *common)
    assert code == 4 and "testbed-admin may not act as alice" in err
    await audit_intact(tmp_path)


async def test_cli_runs_gpuctls_own_adjust_quota_end_to_end(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path
) -> None:
    async with engine_at(control_plane, tmp_path, engine_home) as engine:
        team_a = await team_namespace(admin, engine, "a")
    common = cli_flags(control_plane, tmp_path, engine_home)
    as_a, as_b = ["--as", "user-a", "--as-group", "team-a"], ["--as", "user-b", "--as-group", "team-b"]

    async def gpuctl(*args: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(cli, *args, *common, real=True)

    code, out, err = await gpuctl("playbook", "run", APPROVED, "-p", f"namespace={team_a}", "-p", "quota=12", "--yes",
                                  "--key", f"real-{team_a}", *as_a)  # fmt: skip
    assert code == 0, err
    assert f"ResourceQuota/{team_a}/gpus-0" in out and "awaiting approval" in out
    run = run_name(APPROVED, f"real-{team_a}")
    assert (await gpuctl("playbook", "approve", run, *as_b))[0] == 0
    code, out, err = await gpuctl("playbook", "execute", run, *as_a)
    assert code == 0, err
    assert f"run {run}: Succeeded" in out and "check " in out
    assert await hard(admin, team_a) == "12"

    code, out, err = await gpuctl("playbook", "undo", run, "--yes", *as_a)
    assert code == 0, err
    undo = run_name(APPROVED, f"undo:{run}")
    assert f"submitted run {undo}" in out
    assert (await gpuctl("playbook", "approve", undo, *as_b))[0] == 0
    assert (await gpuctl("playbook", "execute", undo, *as_a))[0] == 0
    assert await hard(admin, team_a) == "4"
    code, out, _ = await gpuctl("playbook", "runs", "--json", *as_a)
    phases = {r["name"]: r["status"]["phase"] for r in json.loads(out)}
    assert phases[run] == "Undone" and phases[undo] == "Succeeded"
    await audit_intact(tmp_path)


# --- without the CRD (last: it removes the CRD and puts it back) ---------------------------------


async def test_without_the_crd_approval_free_playbooks_run_locally(
    admin: RestClient, control_plane: ControlPlane, engine_home: str, tmp_path: Path, playbookrun_crd: Path
) -> None:
    await admin.delete("CustomResourceDefinition", "playbookruns.gpuctl.io")
    try:
        async with engine_at(control_plane, tmp_path, engine_home) as probe:
            await poll(lambda: probe.api.request("GET", "/apis/gpuctl.io/v1alpha1"), lambda r: r.call.status == 404,
                       what="the API server to stop serving PlaybookRuns")  # fmt: skip
            team_a = await team_namespace(admin, probe, "a")
        async with engine_at(control_plane, tmp_path, engine_home) as engine:
            plan = await engine.plan(USER_A, NOW, {"namespace": team_a, "quota": "2"}, key=(k := key()))
            submitted = await engine.submit(plan, key=k)
            assert not submitted.shared and submitted.phase == "Pending"
            assert (await engine.execute_submitted(submitted, by=USER_A)).ok
            assert await hard(admin, team_a) == "2"
            with pytest.raises(RunRefused):  # the audit log knows the key: never twice
                await engine.submit(plan, key=k)

            undo = await engine.undo(USER_A, submitted.run_id)
            assert (await engine.execute_submitted(undo, by=USER_A)).ok
            assert await hard(admin, team_a) == "4"

            needs = await engine.plan(USER_A, APPROVED, {"namespace": team_a, "quota": "8"}, key=(k2 := key()))
            with pytest.raises(NotInstalled) as missing:
                await engine.submit(needs, key=k2)
            assert "kubectl apply --server-side -k deploy/crds && kubectl apply --server-side -k deploy/rbac" in str(missing.value)
        found = await records(tmp_path, submitted.run_id)
        assert kinds(found)[-2:] == ["undo_started", "undone"]
        await audit_intact(tmp_path)
    finally:
        await poll(lambda: admin.get("CustomResourceDefinition", "playbookruns.gpuctl.io"), lambda r: r.status == 404,
                   what="the CRD to be deleted")  # fmt: skip
        await install_crds(admin, playbookrun_crd)
