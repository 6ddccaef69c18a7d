"""What the engine checks before asking anyone: the plan fits its playbook, guardrails, which writes
the cluster is asked about, the scopes parameters name, who may approve; and sealing a Draft."""

from __future__ import annotations

import pytest

from gpuctl.errors import PolicyDenied, RunRefused
from gpuctl.playbooks.authorize import approvers, check_plan, guardrail_breaches, may_plan, param_scopes, writes
from gpuctl.playbooks.engine import seal
from gpuctl.playbooks.loader import Catalog
from gpuctl.playbooks.logic import Draft
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.plan import Step, TargetRef
from gpuctl.playbooks.policy import Policy, Role, Scope
from tests.unit.playbooks.plans import REQUESTER, T0, evict_step, quota_plan, quota_step


def test_a_plan_may_use_only_the_actions_its_playbook_declares(catalog: Catalog) -> None:
    quota = catalog.get("adjust-quota")
    check_plan(quota_plan(), quota)
    cordon = Step(action="cordon_node", target=TargetRef(kind="Node", name="gpu-1"))
    with pytest.raises(RunRefused, match="'cordon_node', an action adjust-quota does not declare"):
        check_plan(quota_plan(quota_step(), cordon), quota)


def test_every_namespace_a_step_touches_is_a_scope(catalog: Catalog) -> None:
    quota = catalog.get("adjust-quota")
    sneaky = quota_plan(quota_step(), quota_step(namespace="team-b"), scopes=(Scope(kind="namespace", name="team-a"),))
    with pytest.raises(RunRefused, match="acts in namespace\\(s\\) team-b without naming them as scopes"):
        check_plan(sneaky, quota)
    with pytest.raises(RunRefused, match="names no policy scope"):
        check_plan(quota_plan(scopes=()), quota)
    # relabel-mig is scoped by pool: the namespaces of the pods it evicts are not policy scopes.
    relabel = catalog.get("relabel-mig")
    drain = quota_plan(evict_step("train-0"), scopes=(Scope(kind="pool", name="a100"),), playbook="relabel-mig")
    check_plan(drain, relabel)


def test_guardrails_count_gpus_evicted_pods_and_nodes(catalog: Catalog) -> None:
    reclaim = catalog.get("reclaim-idle-gpus")  # max_pods 50, max_gpus 128
    many = [evict_step(f"p-{i}", gpus=3) for i in range(51)]
    assert guardrail_breaches(many, reclaim) == [
        "the plan affects 153 GPUs; guardrail max_gpus is 128",
        "the plan evicts 51 pods; guardrail max_pods is 50",
    ]
    assert guardrail_breaches(many[:40], reclaim) == []
    relabel = catalog.get("relabel-mig")  # max_nodes 1
    nodes = [Step(action="cordon_node", target=TargetRef(kind="Node", name=n)) for n in ("a", "a", "b")]
    assert guardrail_breaches(nodes, relabel) == ["the plan changes 2 nodes; guardrail max_nodes is 1"]


def test_writes_are_reviewed_per_namespace_and_cluster_wide_for_cluster_objects() -> None:
    plan = quota_plan(quota_step(), quota_step(name="gpus-2"), quota_step(namespace="team-a-dev"))
    assert [(str(p), ns) for p, ns in writes(plan)] == [("patch resourcequotas", "team-a"), ("patch resourcequotas", "team-a-dev")]
    drain = quota_plan(
        Step(action="cordon_node", target=TargetRef(kind="Node", name="gpu-1")), evict_step("train-0"), playbook="relabel-mig"
    )
    assert [(str(p), ns) for p, ns in writes(drain)] == [("patch nodes", None), ("create pods/eviction", "team-a")]


def test_the_scopes_parameters_name_are_checked_before_planning(catalog: Catalog) -> None:
    reclaim = catalog.get("reclaim-idle-gpus")
    args = validate_params(reclaim, {"namespace": "team-b", "pool": "a100"})
    assert param_scopes(reclaim, args) == [Scope(kind="namespace", name="team-b")]  # reclaim is scoped by namespace only
    policy = Policy(roles={"a": Role(groups=("team-a",), run=("reclaim-idle-gpus",), namespaces=("team-a",))})
    may_plan(policy, REQUESTER.identity, reclaim, validate_params(reclaim, {"namespace": "team-a"}))
    with pytest.raises(PolicyDenied, match="user-a may not run reclaim-idle-gpus on team-b: role a covers team-a only"):
        may_plan(policy, REQUESTER.identity, reclaim, args)


def test_approvers_are_the_roles_that_approve_the_playbook_in_every_scope() -> None:
    policy = Policy(
        roles={
            "leads": Role(users=("lead-a",), groups=("leads",), approve=("adjust-*",), namespaces=("team-*",)),
            "a-only": Role(users=("lead-x",), approve=("adjust-quota",), namespaces=("team-a",)),
            "nobody": Role(approve=("*",), namespaces=("*",)),
            "runners": Role(groups=("team-a",), run=("adjust-quota",), namespaces=("*",)),
        }
    )
    scopes = [Scope(kind="namespace", name="team-a"), Scope(kind="namespace", name="team-b")]
    assert approvers(policy, "adjust-quota", scopes) == ["role leads (user lead-a, group leads)", "role nobody (nobody holds it)"]
    assert approvers(policy, "adjust-quota", scopes[:1])[1] == "role a-only (user lead-x)"


def test_seal_blocks_a_draft_beyond_its_guardrails_and_dedupes(catalog: Catalog) -> None:
    reclaim = catalog.get("reclaim-idle-gpus")
    scope = Scope(kind="namespace", name="team-a")
    draft = Draft(steps=[evict_step(f"p-{i}", gpus=4) for i in range(40)], scopes=[scope, scope], blocked=["metrics stale"])
    plan = seal(draft, reclaim, validate_params(reclaim, {}), REQUESTER, T0, 7)
    assert plan.blocked == ("metrics stale", "the plan affects 160 GPUs; guardrail max_gpus is 128")
    assert plan.scopes == (scope,) and not plan.runnable and plan.snapshot_generation == 7
    ok = seal(Draft(steps=[evict_step("p-0")], scopes=[scope]), reclaim, {}, REQUESTER, T0, None)
    assert ok.runnable and ok.requester == REQUESTER and ok.created_at == T0
    with pytest.raises(RunRefused):  # a logic that invents an action is refused at once
        seal(Draft(steps=[quota_step()], scopes=[scope]), reclaim, {}, REQUESTER, T0, None)
