"""How a plan, a submission and a run list read on the command line."""

from __future__ import annotations

from gpuctl.playbooks.engine import Submitted
from gpuctl.playbooks.plan import Skipped, TargetRef
from gpuctl.render.plan import render_plan, render_submitted
from tests.unit.playbooks.plans import quota_plan, quota_step


def test_a_plan_is_a_table_then_what_an_approver_must_see() -> None:
    plan = quota_plan(quota_step(), quota_step(name="gpus-mig", before="2", after="3")).model_copy(
        update={
            "warnings": ("quotas together exceed the cluster's 64 GPUs",),
            "skipped": (Skipped(target=TargetRef(kind="ResourceQuota", name="cpu", namespace="team-a"), reason="no GPU key"),),
            "dry_run": "server",
        }
    )
    assert render_plan(plan).splitlines() == [
        "plan: adjust-quota for user-a (team-a) (namespace=team-a, quota=8)",
        "",
        "TARGET                         ACTION             BEFORE → AFTER                             GPUS",
        "ResourceQuota/team-a/gpus      set_resourcequota  spec.hard[requests.nvidia.com/gpu]: 4 → 8     4",
        "ResourceQuota/team-a/gpus-mig  set_resourcequota  spec.hard[requests.nvidia.com/gpu]: 2 → 3     1",
        "2 step(s), 5 GPU(s) affected",
        "warning: quotas together exceed the cluster's 64 GPUs",
        "",
        "left out:",
        "  ResourceQuota/team-a/cpu: no GPU key",
        "",
        "scopes: team-a",
        "dry run: server",
        f"fingerprint: {plan.fingerprint}",
    ]


def test_a_blocked_empty_plan_says_so() -> None:
    plan = quota_plan().model_copy(update={"steps": (), "blocked": ("metrics are stale",)})
    text = render_plan(plan)
    assert "nothing to do" in text and "BLOCKED: metrics are stale" in text


def test_a_submission_awaiting_approval_names_who_may_approve() -> None:
    plan = quota_plan()
    waiting = Submitted(run_id="adjust-quota-1", plan=plan, phase="AwaitingApproval", shared=True, needs_approval=True,
                        approvers=("role leads (user lead-a)",))  # fmt: skip
    text = render_submitted(waiting)
    assert "awaiting approval" in text and "may approve: role leads (user lead-a)" in text
    assert "gpuctl playbook approve adjust-quota-1" in text
    local = waiting.model_copy(update={"shared": False, "needs_approval": False, "phase": "Pending"})
    assert "no PlaybookRun CRD" in render_submitted(local)
    duplicate = waiting.model_copy(update={"duplicate": True, "phase": "Succeeded"})
    assert render_submitted(duplicate) == "run adjust-quota-1 exists already for this key (Succeeded); nothing new was done\n"
