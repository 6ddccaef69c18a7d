"""The control plane is the real thing: RBAC, quota admission and PDB-aware
eviction are decided by kube-apiserver and its controllers, not by us."""

from __future__ import annotations

import pytest

from testbed.controlplane import USER_A, ControlPlane
from testbed.kube import RestClient, apply_objects, client_for
from testbed.objects import gpu_pod, namespace_object, pod_disruption_budget, role, role_binding, rule, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed


def _read_grant(namespace: str, *, group: str, resource: str = "pods") -> list[dict]:
    return [
        role(f"{resource}-reader", namespace, [rule("", [resource], ["get", "list"])]),
        role_binding(f"{group}-reads-{resource}", namespace, role=f"{resource}-reader", group=group),
    ]


async def test_rbac_denies_until_a_role_grants(control_plane: ControlPlane, admin: RestClient) -> None:
    team_b = unique("team-b")
    await apply_objects(admin, [namespace_object(team_b)])
    async with client_for(control_plane, USER_A) as user_a:
        denied = await user_a.list("Pod", team_b)
        assert denied.status == 403
        assert "user-a" in denied.body["message"]

        await apply_objects(admin, _read_grant(team_b, group="team-a"))

        async def allowed() -> bool:
            return (await user_a.list("Pod", team_b)).status == 200

        await poll(allowed, timeout_s=10, what="the RoleBinding to take effect")
        # Listing was granted; creating was not.
        assert (await user_a.create(gpu_pod("sneaky", team_b, 1))).status == 403


async def test_operator_may_impersonate_but_gains_only_the_impersonated_rights(control_plane: ControlPlane, admin: RestClient) -> None:
    from testbed.controlplane import OPERATOR

    namespace = unique("imp")
    await apply_objects(admin, [namespace_object(namespace)])
    # Secrets: other tests grant the operator read rights on what playbooks plan from, never on these.
    async with client_for(control_plane, OPERATOR) as operator:
        as_user_a = {"Impersonate-User": "user-a", "Impersonate-Group": "team-a"}
        response = await operator.list("Secret", namespace, headers=as_user_a)
        assert response.status == 403
        assert 'User "user-a"' in response.body["message"]
        assert (await operator.list("Secret", namespace)).status == 403  # nor on its own

        await apply_objects(admin, _read_grant(namespace, group="team-a", resource="secrets"))

        async def impersonated_list_allowed() -> bool:
            return (await operator.list("Secret", namespace, headers=as_user_a)).status == 200

        await poll(impersonated_list_allowed, timeout_s=10, what="team-a's grant to apply to the impersonated user")
        assert (await operator.list("Secret", namespace)).status == 403  # the grant is user-a's, not the operator's

    async with client_for(control_plane, USER_A) as user_a:
        response = await user_a.list("Pod", namespace, headers={"Impersonate-User": "testbed-admin"})
        assert response.status == 403  # an ordinary user may not impersonate
        assert "impersonate" in response.body["message"]


async def test_quota_admission_rejects_pods_over_the_gpu_quota(admin: RestClient) -> None:
    namespace = unique("quota")
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "gpus", "namespace": namespace},
                "spec": {"hard": {"requests.nvidia.com/gpu": "4"}},
            },
        ],
    )

    async def quota_counted() -> bool:
        quota = await admin.get("ResourceQuota", "gpus", namespace)
        return "hard" in quota.body.get("status", {})

    await poll(quota_counted, what="the resourcequota controller to fill status")
    too_big = await admin.create(gpu_pod("too-big", namespace, 8))
    assert too_big.status == 403
    assert "exceeded quota" in too_big.body["message"]
    assert "requests.nvidia.com/gpu" in too_big.body["message"]
    fits = await admin.create(gpu_pod("fits", namespace, 4))
    assert fits.status == 201

    async def used_is_four() -> bool:
        quota = await admin.get("ResourceQuota", "gpus", namespace)
        return quota.body["status"].get("used", {}).get("requests.nvidia.com/gpu") == "4"

    await poll(used_is_four, what="quota usage to count the admitted pod")
    one_more = await admin.create(gpu_pod("one-more", namespace, 1))
    assert one_more.status == 403


async def test_eviction_respects_pod_disruption_budgets(admin: RestClient, gpu_node: str) -> None:
    namespace = unique("pdb")
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            pod_disruption_budget("serving", namespace, {"app": "serving"}, min_available=1),
            gpu_pod("serving-0", namespace, 1, node=gpu_node, labels={"app": "serving"}),
            gpu_pod("scratch", namespace, 1, node=gpu_node, labels={"app": "scratch"}),
        ],
    )

    async def pods_running() -> bool:
        pods = (await admin.list("Pod", namespace)).body["items"]
        return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)

    async def pdb_observed() -> bool:
        pdb = (await admin.get("PodDisruptionBudget", "serving", namespace)).body
        return pdb.get("status", {}).get("currentHealthy") == 1 and pdb["status"].get("observedGeneration") == 1

    await poll(pods_running, what="kwok to run the pods")
    await poll(pdb_observed, what="the disruption controller to observe the PDB")

    blocked = await admin.evict("serving-0", namespace)
    assert blocked.status == 429
    assert "disruption budget" in blocked.body["message"]

    evicted = await admin.evict("scratch", namespace)
    assert evicted.status == 201

    async def scratch_gone() -> bool:
        return (await admin.get("Pod", "scratch", namespace)).status == 404

    await poll(scratch_gone, what="kwok to complete the eviction")
    assert (await admin.get("Pod", "serving-0", namespace)).status == 200
