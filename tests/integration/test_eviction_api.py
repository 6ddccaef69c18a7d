"""Evictions through the real Eviction API, PodDisruptionBudgets decided by the real
API server and disruption controller: each answer is its own outcome, nothing is
ever deleted behind a budget's back."""

from __future__ import annotations

import pytest
import pytest_asyncio

from gpuctl.errors import Forbidden
from gpuctl.identity import Identity
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.sources.kube.connect import KubeConnection
from testbed.kube import RestClient, apply_objects
from testbed.objects import gpu_pod, namespace_object, pod_disruption_budget, role, role_binding, rule, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

USER_A = Identity(user="user-a", groups=("team-a",))


async def _pod(admin: RestClient, name: str, namespace: str) -> dict | None:
    response = await admin.get("Pod", name, namespace)
    return response.body if response.status == 200 else None


async def _budget_settled(admin: RestClient, name: str, namespace: str, *, allowed: int | None = None) -> dict:
    """Until the disruption controller has observed the budget (and, if given, allows that many disruptions)."""

    async def read() -> dict:
        return (await admin.get("PodDisruptionBudget", name, namespace)).body

    def settled(pdb: dict) -> bool:
        status = pdb.get("status", {})
        observed = status.get("observedGeneration") == pdb["metadata"]["generation"]
        return observed and (allowed is None or status.get("disruptionsAllowed") == allowed)

    return await poll(read, settled, what=f"the disruption controller to settle {name} (allowing {allowed})")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def evictable(admin: RestClient, gpu_node: str) -> str:
    """A namespace where user-a (team-a) may read pods and create evictions, with running pods:
    serving-0/1 under a PDB that allows no disruption, `double` under two PDBs, `scratch` under none
    (each test evicts only its own pods)."""
    namespace = unique("evict")
    serving = {"app": "serving"}
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            role("evictor", namespace, [rule("", ["pods"], ["get", "list"]), rule("", ["pods/eviction"], ["create"])]),
            role_binding("team-a-evicts", namespace, role="evictor", group="team-a"),
            pod_disruption_budget("serving", namespace, serving, min_available=2),
            pod_disruption_budget("double-a", namespace, {"app": "double"}, min_available=0),
            pod_disruption_budget("double-b", namespace, {"tier": "double"}, min_available=0),
            gpu_pod("serving-0", namespace, 1, node=gpu_node, labels=serving),
            gpu_pod("serving-1", namespace, 1, node=gpu_node, labels=serving),
            gpu_pod("double", namespace, 1, node=gpu_node, labels={"app": "double", "tier": "double"}),
            gpu_pod("scratch", namespace, 1, node=gpu_node, labels={"app": "scratch"}),
        ],
    )

    async def running() -> list[str]:
        pods = (await admin.list("Pod", namespace)).body["items"]
        return [p["status"].get("phase") for p in pods]

    await poll(running, lambda phases: phases == ["Running"] * 4, what="kwok to run the pods")
    await _budget_settled(admin, "serving", namespace, allowed=0)
    return namespace


async def test_a_budget_that_allows_no_disruption_refuses_until_relaxed(
    admin: RestClient, operator_connection: KubeConnection, evictable: str
) -> None:
    namespace = evictable
    user_a = ActingClient(KubeApi(operator_connection), USER_A)
    pod = await _pod(admin, "serving-0", namespace)
    assert pod is not None

    trial = await user_a.evict(namespace, "serving-0", dry_run=True)  # the dry run runs the PDB check too
    assert trial.outcome == "pdb_refused"
    refused = await user_a.evict(namespace, "serving-0", uid=pod["metadata"]["uid"])
    assert refused.outcome == "pdb_refused"
    assert refused.call.status == 429 and refused.call.audit_id
    assert "disruption budget" in refused.message
    assert refused.disruption_budget is not None and "serving" in refused.disruption_budget
    assert refused.retry_after_s is None  # a settled budget that says no sends no Retry-After: the caller paces retries
    still_there = await _pod(admin, "serving-0", namespace)
    assert still_there is not None and still_there["metadata"]["uid"] == pod["metadata"]["uid"]
    assert still_there["metadata"].get("deletionTimestamp") is None

    await admin.patch("PodDisruptionBudget", "serving", {"spec": {"minAvailable": 1}}, namespace)
    await _budget_settled(admin, "serving", namespace, allowed=1)
    pod = await _pod(admin, "serving-0", namespace)
    assert pod is not None
    evicted = await user_a.evict(
        namespace, "serving-0", uid=pod["metadata"]["uid"], resource_version=pod["metadata"]["resourceVersion"]
    )
    assert evicted.outcome == "evicted"
    assert evicted.call.status in (200, 201)

    await poll(lambda: _pod(admin, "serving-0", namespace), lambda p: p is None, what="kwok to finish the eviction")
    gone = await user_a.evict(namespace, "serving-0")
    assert gone.outcome == "gone"
    assert await _pod(admin, "serving-1", namespace) is not None  # the budget still protects the other one


async def test_a_pod_under_two_budgets_is_never_evicted(
    admin: RestClient, operator_connection: KubeConnection, evictable: str
) -> None:
    namespace = evictable
    user_a = ActingClient(KubeApi(operator_connection), USER_A)
    # (The disruption controller counts the pod under one of them only; the Eviction API refuses either way.)
    for budget in ("double-a", "double-b"):
        await _budget_settled(admin, budget, namespace)

    result = await user_a.evict(namespace, "double")
    assert result.outcome == "multiple_pdbs"
    assert result.call.status == 500
    assert "more than one PodDisruptionBudget" in result.message
    double = await _pod(admin, "double", namespace)
    assert double is not None and double["metadata"].get("deletionTimestamp") is None


async def test_preconditions_pin_the_planned_pod(admin: RestClient, operator_connection: KubeConnection, evictable: str) -> None:
    namespace = evictable
    user_a = ActingClient(KubeApi(operator_connection), USER_A)
    scratch = await _pod(admin, "scratch", namespace)
    assert scratch is not None
    uid = scratch["metadata"]["uid"]

    replaced = await user_a.evict(namespace, "scratch", uid="00000000-0000-0000-0000-000000000000")
    assert replaced.outcome == "precondition_failed"
    assert replaced.call.status == 409
    changed = await user_a.evict(namespace, "scratch", uid=uid, resource_version="1")
    assert changed.outcome == "precondition_failed"

    trial = await user_a.evict(namespace, "scratch", uid=uid, dry_run=True)
    assert trial.outcome == "evicted" and trial.call.dry_run
    after_trial = await _pod(admin, "scratch", namespace)
    assert after_trial is not None and after_trial["metadata"].get("deletionTimestamp") is None

    with pytest.raises(Forbidden):
        await ActingClient(KubeApi(operator_connection), Identity(user="user-b", groups=("team-b",))).evict(namespace, "scratch")

    evicted = await user_a.evict(namespace, "scratch", uid=uid)
    assert evicted.outcome == "evicted"
