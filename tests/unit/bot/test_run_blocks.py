"""Plans and runs as Block Kit: what an approver sees, escaped, within Slack's limits."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuctl.bot.blocks import MAX_BLOCKS, SECTION_LIMIT
from gpuctl.bot.engine_seam import APPROVE_ACTION, DENY_ACTION
from gpuctl.bot.run_blocks import MAX_STEPS, awaiting_blocks, plan_blocks
from gpuctl.identity import Identity, Requester
from gpuctl.playbooks.engine import Submitted
from gpuctl.playbooks.plan import Change, Plan, Skipped, Step, TargetRef
from testbed.slack import blocks_text

WHO = Requester(identity=Identity(user="user-a", groups=("team-a",)), via="slack", detail="slack:T/U")


def quota_step(i: int, namespace: str = "eng-a") -> Step:
    target = TargetRef(kind="ResourceQuota", name=f"gpus-{i}", namespace=namespace)
    return Step(action="set_resourcequota", target=target, gpus=4,
                changes=(Change(field="spec.hard[requests.nvidia.com/gpu]", before="4", after="8"),))  # fmt: skip


def plan(*steps: Step, **more: object) -> Plan:
    return Plan(playbook="adjust-quota", parameters={"namespace": "eng-a", "quota": 8}, requester=WHO,
                created_at=datetime(2026, 11, 30, tzinfo=UTC), steps=steps, dry_run="server", **more)  # type: ignore[arg-type]  # fmt: skip


def test_a_plan_shows_targets_changes_gpus_warnings_and_its_fingerprint() -> None:
    p = plan(
        quota_step(0),
        warnings=("2 pods pending on this quota",),
        skipped=(Skipped(target=quota_step(1).target, reason="no GPU key"),),
    )
    text = blocks_text({"blocks": plan_blocks(p, run_id="adjust-quota-1234")})
    assert (
        "ResourceQuota/eng-a/gpus-0  set_resourcequota (4 GPUs)" in text and "spec.hard[requests.nvidia.com/gpu]: 4 → 8" in text
    )
    assert "*GPUs affected*\n4" in text and "user-a (team-a) via slack" in text and "namespace=eng-a, quota=8" in text
    assert ":warning: 2 pods pending on this quota" in text and "ResourceQuota/eng-a/gpus-1: no GPU key" in text
    assert f"fingerprint `{p.fingerprint}` · run `adjust-quota-1234`" in text


def test_names_from_the_cluster_are_escaped_and_long_plans_are_cut() -> None:
    p = plan(*(quota_step(i, "eng-a") for i in range(MAX_STEPS + 5)), warnings=("<!channel> look",))
    blocks = plan_blocks(p, run_id=None)
    text = blocks_text({"blocks": blocks})
    assert "<!channel>" not in text and "&lt;!channel&gt; look" in text
    assert f"showing {MAX_STEPS} of {MAX_STEPS + 5} steps" in text
    assert len(blocks) <= MAX_BLOCKS and all(len(b.get("text", {}).get("text", "")) <= SECTION_LIMIT for b in blocks)


def test_a_run_awaiting_approval_carries_both_buttons_and_who_may_approve() -> None:
    p = plan(quota_step(0))
    submitted = Submitted(run_id="adjust-quota-1234", plan=p, phase="AwaitingApproval", shared=True, needs_approval=True,
                          approvers=("role team-b-approver (group team-b)",))  # fmt: skip
    blocks = awaiting_blocks(submitted)
    assert [e["action_id"] for e in blocks[-1]["elements"]] == [APPROVE_ACTION, DENY_ACTION]
    assert {e["value"] for e in blocks[-1]["elements"]} == {"adjust-quota-1234"}
    assert "by someone other than user-a: role team-b-approver (group team-b)" in blocks_text({"blocks": blocks})
