"""adjust-quota against the real API server, its quota admission and quota controller, and
Kueue's real ClusterQueue CRD: plan (server-side dry run as the requester), execute through a
RunContext, verify, undo; refusals below usage, for a stale plan and by the cluster's RBAC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playbook_kit import USER_A, USER_B, Sinks, clients, cluster_grant, live, operator_api, plan_request, seal, seal_undo
from playbook_kit import snapshot_where as _snapshot_where

from gpuctl.identity import Identity
from gpuctl.playbooks.adjust_quota import LOGIC, revert_at
from gpuctl.playbooks.kubeapi import KubeApi
from gpuctl.state.store import ClusterStore
from testbed.crds import InstalledCrds
from testbed.kube import RestClient, apply_objects
from testbed.objects import gpu_pod, namespace_object, role, role_binding, rule, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed
__all__ = ["live", "operator_api"]  # module fixtures from playbook_kit

KEY = "requests.nvidia.com/gpu"
MIG_KEY = "requests.nvidia.com/mig-1g.10gb"


async def _status(admin: RestClient, namespace: str, name: str = "gpu") -> dict[str, Any]:
    return (await admin.get("ResourceQuota", name, namespace)).body


async def team_namespace(admin: RestClient, store: ClusterStore, *, hard: dict[str, str], pending_gpus: int = 0) -> str:
    """A namespace with ResourceQuota `gpu`, team-a allowed to patch it, and pending pods holding `pending_gpus` of it."""
    namespace = unique("quota")
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "gpu", "namespace": namespace},
                "spec": {"hard": hard},
            },
            role("quota-editor", namespace, [rule("", ["resourcequotas"], ["get", "patch"])]),
            role_binding("team-a-quota", namespace, role="quota-editor", group="team-a"),
        ],
    )
    await poll(lambda: _status(admin, namespace), lambda q: "hard" in q.get("status", {}), what="the quota controller to count")
    if pending_gpus:
        pod = gpu_pod("waiting", namespace, pending_gpus)
        pod["spec"]["nodeSelector"] = {"gpuctl.io/test": "nowhere"}  # pending, yet counted by the quota
        await apply_objects(admin, [pod])
        used = f"{pending_gpus}"
        await poll(lambda: _status(admin, namespace), lambda q: q["status"].get("used", {}).get(KEY) == used, what="usage")
    await _snapshot_where(store, lambda s: any(n.name == namespace for n in s.namespaces), "the namespace in the snapshot")
    return namespace


async def _hard(admin: RestClient, namespace: str, key: str = KEY) -> tuple[str, str]:
    quota = await _status(admin, namespace)
    return quota["spec"]["hard"][key], quota["status"]["hard"][key]


async def _may_patch(api: KubeApi, identity: Identity, namespace: str) -> None:
    acting = clients(api, identity).acting
    await poll(
        lambda: acting.can_i("patch", "resourcequotas", namespace=namespace), lambda r: r.allowed, what="the Role to reach RBAC"
    )


async def test_raise_with_revert_after_then_undo(admin: RestClient, operator_api: KubeApi, live: ClusterStore) -> None:
    namespace = await team_namespace(admin, live, hard={KEY: "4"}, pending_gpus=3)
    await _may_patch(operator_api, USER_A, namespace)
    run_clients = clients(operator_api, USER_A)
    request = plan_request("adjust-quota", {"namespace": namespace, "quota": "8", "revert_after": "1h"}, USER_A, live.snapshot())
    draft = await LOGIC.plan(request, run_clients)
    assert not draft.blocked and draft.dry_run == "server"
    assert [(s.kind, s.name) for s in draft.scopes] == [("namespace", namespace)]
    assert [(lock.kind, lock.name) for lock in draft.locks] == [("namespace", namespace)]
    (step,) = draft.steps
    assert step.action == "set_resourcequota" and step.gpus == 4
    assert (step.target.kind, step.target.namespace, step.target.name) == ("ResourceQuota", namespace, "gpu")
    assert step.target.uid and step.target.resource_version
    assert [(c.field, c.before, c.after) for c in step.changes] == [(f"spec.hard[{KEY}]", 4, 8), (f"status.used[{KEY}]", 3, 3)]
    assert step.detail == f"ResourceQuota {namespace}/gpu {KEY}: 4 → 8 (3 in use); back to 4 1h after it is applied"
    assert await _hard(admin, namespace) == ("4", "4")  # the dry run changed nothing

    plan = seal(draft, request)
    assert await LOGIC.stale(plan, run_clients) == []
    sinks = Sinks()
    ctx = sinks.context(run_clients, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok, report
    (outcome,) = report.outcomes
    assert outcome.status == "done" and "revert due at" in outcome.message
    (patch,) = [c for c in outcome.calls if c.method == "PATCH"]
    assert patch.acting_as == USER_A and patch.status == 200 and patch.audit_id and not patch.dry_run
    assert [c for c, _ in sinks.calls] == list(outcome.calls)
    verification = await LOGIC.verify(plan, report, ctx)
    assert verification.ok, verification
    assert await _hard(admin, namespace) == ("8", "8")
    due = revert_at(plan, datetime.now(UTC))
    assert due is not None and timedelta(minutes=59) < due - datetime.now(UTC) <= timedelta(hours=1)

    # The revert (what the engine runs at revert_at): back to 4, though 3 are in use.
    undo = LOGIC.undo(plan, report)
    assert undo is not None and undo.steps[0].changes[0].before == 8 and undo.steps[0].changes[0].after == 4
    reverting = seal_undo(undo, plan)
    assert await LOGIC.stale(reverting, run_clients) == []
    reverted = await LOGIC.execute(reverting, ctx)
    assert reverted.ok, reverted
    assert (await LOGIC.verify(reverting, reverted, ctx)).ok
    assert await _hard(admin, namespace) == ("4", "4")


async def test_below_usage_is_refused_unless_forced(admin: RestClient, operator_api: KubeApi, live: ClusterStore) -> None:
    namespace = await team_namespace(admin, live, hard={KEY: "4"}, pending_gpus=3)
    await _may_patch(operator_api, USER_A, namespace)
    run_clients = clients(operator_api, USER_A)
    refused = await LOGIC.plan(
        plan_request("adjust-quota", {"namespace": namespace, "quota": "2"}, USER_A, live.snapshot()), run_clients
    )
    assert len(refused.blocked) == 1 and "2 is below the 3 in use" in refused.blocked[0] and "force=true" in refused.blocked[0]
    assert not seal(
        refused, plan_request("adjust-quota", {"namespace": namespace, "quota": "2"}, USER_A, live.snapshot())
    ).runnable
    assert await _hard(admin, namespace) == ("4", "4")

    request = plan_request("adjust-quota", {"namespace": namespace, "quota": "2", "force": "true"}, USER_A, live.snapshot())
    forced = await LOGIC.plan(request, run_clients)
    assert not forced.blocked and any("below the 3 in use" in w for w in forced.warnings)
    assert [c.field for c in forced.steps[0].changes] == [f"spec.hard[{KEY}]"]  # no usage guard when forced
    plan = seal(forced, request)
    ctx = Sinks().context(run_clients, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok and (await LOGIC.verify(plan, report, ctx)).ok
    assert await _hard(admin, namespace) == ("2", "2")


async def test_the_clusters_rbac_refuses_the_dry_run(admin: RestClient, operator_api: KubeApi, live: ClusterStore) -> None:
    namespace = await team_namespace(admin, live, hard={KEY: "4"})
    draft = await LOGIC.plan(
        plan_request("adjust-quota", {"namespace": namespace, "quota": "6"}, USER_B, live.snapshot()),
        clients(operator_api, USER_B),
    )
    assert draft.dry_run == "none" and len(draft.blocked) == 1
    assert draft.blocked[0].startswith("the cluster refuses it: user-b (team-b) may not patch resourcequotas")
    assert 'User "user-b" cannot patch resource "resourcequotas"' in draft.blocked[0]
    assert await _hard(admin, namespace) == ("4", "4")


async def test_a_plan_gone_stale_is_refused_and_changes_nothing(
    admin: RestClient, operator_api: KubeApi, live: ClusterStore
) -> None:
    namespace = await team_namespace(admin, live, hard={KEY: "4"})
    await _may_patch(operator_api, USER_A, namespace)
    run_clients = clients(operator_api, USER_A)
    request = plan_request("adjust-quota", {"namespace": namespace, "quota": "6"}, USER_A, live.snapshot())
    plan = seal(await LOGIC.plan(request, run_clients), request)
    assert (await admin.patch("ResourceQuota", "gpu", {"spec": {"hard": {KEY: "5"}}}, namespace)).status == 200
    expected = f"ResourceQuota {namespace}/gpu: spec.hard[{KEY}] is 5 now, the plan saw 4"
    assert await LOGIC.stale(plan, run_clients) == [expected]
    report = await LOGIC.execute(plan, Sinks().context(run_clients, live))
    assert [(o.status, o.message) for o in report.outcomes] == [("refused", expected)]
    assert not [c for c in report.outcomes[0].calls if c.method == "PATCH"]
    assert (await _hard(admin, namespace))[0] == "5"


async def test_a_namespace_without_a_gpu_quota_is_refused(admin: RestClient, operator_api: KubeApi, live: ClusterStore) -> None:
    namespace = unique("noquota")
    await apply_objects(admin, [namespace_object(namespace)])
    draft = await LOGIC.plan(
        plan_request("adjust-quota", {"namespace": namespace, "quota": "4"}, USER_A, live.snapshot()),
        clients(operator_api, USER_A),
    )
    assert draft.steps == [] and len(draft.blocked) == 1
    assert f"kubectl create quota gpu -n {namespace} --hard={KEY}=N" in draft.blocked[0]


async def test_a_mig_quota(admin: RestClient, operator_api: KubeApi, live: ClusterStore) -> None:
    namespace = await team_namespace(admin, live, hard={KEY: "2", MIG_KEY: "7"})
    await _may_patch(operator_api, USER_A, namespace)
    run_clients = clients(operator_api, USER_A)
    params = {"namespace": namespace, "quota": "14", "resource": "nvidia.com/mig-1g.10gb"}
    request = plan_request("adjust-quota", params, USER_A, live.snapshot())
    plan = seal(await LOGIC.plan(request, run_clients), request)
    assert plan.runnable and plan.steps[0].changes[0].field == f"spec.hard[{MIG_KEY}]"
    ctx = Sinks().context(run_clients, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok and (await LOGIC.verify(plan, report, ctx)).ok
    assert await _hard(admin, namespace, MIG_KEY) == ("14", "14")
    assert await _hard(admin, namespace) == ("2", "2")


async def test_a_cluster_queue_nominal_quota(
    admin: RestClient, operator_api: KubeApi, live: ClusterStore, upstream_crds: InstalledCrds
) -> None:
    flavor, name, group = unique("h100"), unique("team-a-cq"), unique("queue-admins")
    quotas = {"cpu": "64", "nvidia.com/gpu": "8"}
    await apply_objects(
        admin,
        [
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": flavor}, "spec": {}},
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ClusterQueue",
                "metadata": {"name": name},
                "spec": {
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": list(quotas),
                            "flavors": [
                                {"name": flavor, "resources": [{"name": r, "nominalQuota": q} for r, q in quotas.items()]}
                            ],
                        }
                    ],
                },
            },
            *cluster_grant(f"test:{group}", group, [rule("kueue.x-k8s.io", ["clusterqueues"], ["patch"])]),
        ],
    )
    admin_of_queues = Identity(user="user-a", groups=("team-a", group))
    run_clients = clients(operator_api, admin_of_queues)
    await poll(
        lambda: run_clients.acting.can_i("patch", "clusterqueues", group="kueue.x-k8s.io"), lambda r: r.allowed, what="RBAC"
    )
    request = plan_request("adjust-quota", {"cluster_queue": name, "quota": "12"}, admin_of_queues, live.snapshot())
    draft = await LOGIC.plan(request, run_clients)
    assert not draft.blocked and draft.dry_run == "server", draft.blocked
    assert [(s.kind, s.name) for s in draft.scopes] == [("cluster_queue", name)]
    (step,) = draft.steps
    assert step.target.api_version == "kueue.x-k8s.io/v1beta2"  # the version the CRD serves and stores
    field = f"spec.resourceGroups.flavors[{flavor}].resources[nvidia.com/gpu].nominalQuota"
    assert (step.changes[0].field, step.changes[0].before, step.changes[0].after) == (field, 8, 12)

    plan = seal(draft, request)
    ctx = Sinks().context(run_clients, live)
    report = await LOGIC.execute(plan, ctx)
    assert report.ok and (await LOGIC.verify(plan, report, ctx)).ok

    async def nominal() -> list[Any]:
        queue = (await admin.get("ClusterQueue", name)).body
        return [r["nominalQuota"] for r in queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"]]

    assert await nominal() == ["64", "12"]
    undo = LOGIC.undo(plan, report)
    assert undo is not None
    reverting = seal_undo(undo, plan)
    reverted = await LOGIC.execute(reverting, ctx)
    assert reverted.ok and (await LOGIC.verify(reverting, reverted, ctx)).ok
    assert await nominal() == ["64", "8"]
