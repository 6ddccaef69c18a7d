"""The control plane is the real thing: RBAC, quota admission and PDB-aware
eviction are decided by kube-apiserver and its controllers, not by us."""

from __future__ import annotations

import uuid

import pytest

from testbed.controlplane import USER_A, ControlPlane
from testbed.kube import RestClient, apply_objects, client_for
from testbed.waiting import poll

pytestmark = pytest.mark.testbed


def _namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _gpu_pod(name: str, namespace: str, gpus: int, *, node: str | None = None, labels: dict | None = None) -> dict:
    spec: dict = {
        "containers": [
            {"name": "main", "image": "registry.invalid/train:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        ],
        "tolerations": [{"operator": "Exists"}],
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec,
    }


def _read_pods_grant(namespace: str, *, group: str) -> list[dict]:
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": namespace},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{group}-reads", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        },
    ]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_rbac_denies_until_a_role_grants(control_plane: ControlPlane, admin: RestClient) -> None:
    team_b = _unique("team-b")
    await apply_objects(admin, [_namespace(team_b)])
    async with client_for(control_plane, USER_A) as user_a:
        denied = await user_a.list("Pod", team_b)
        assert denied.status == 403
        assert "user-a" in denied.body["message"]

        await apply_objects(admin, _read_pods_grant(team_b, group="team-a"))

        async def allowed() -> bool:
            return (await user_a.list("Pod", team_b)).status == 200

        await poll(allowed, timeout_s=10, what="the RoleBinding to take effect")
        # Listing was granted; creating was not.
        assert (await user_a.create(_gpu_pod("sneaky", team_b, 1))).status == 403


async def test_operator_may_impersonate_but_gains_only_the_impersonated_rights(control_plane: ControlPlane, admin: RestClient) -> None:
    from testbed.controlplane import OPERATOR

    namespace = _unique("imp")
    await apply_objects(admin, [_namespace(namespace)])
    async with client_for(control_plane, OPERATOR) as operator:
        as_user_a = {"Impersonate-User": "user-a", "Impersonate-Group": "team-a"}
        response = await operator.list("Pod", namespace, headers=as_user_a)
        assert response.status == 403
        assert 'User "user-a"' in response.body["message"]
        assert (await operator.list("Pod", namespace)).status == 403  # nor on its own

        await apply_objects(admin, _read_pods_grant(namespace, group="team-a"))

        async def impersonated_list_allowed() -> bool:
            return (await operator.list("Pod", namespace, headers=as_user_a)).status == 200

        await poll(impersonated_list_allowed, timeout_s=10, what="team-a's grant to apply to the impersonated user")
        assert (await operator.list("Pod", namespace)).status == 403  # the grant is user-a's, not the operator's

    async with client_for(control_plane, USER_A) as user_a:
        response = await user_a.list("Pod", namespace, headers={"Impersonate-User": "testbed-admin"})
        assert response.status == 403  # an ordinary user may not impersonate
        assert "impersonate" in response.body["message"]


async def test_quota_admission_rejects_pods_over_the_gpu_quota(admin: RestClient) -> None:
    namespace = _unique("quota")
    await apply_objects(
        admin,
        [
            _namespace(namespace),
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
    too_big = await admin.create(_gpu_pod("too-big", namespace, 8))
    assert too_big.status == 403
    assert "exceeded quota" in too_big.body["message"]
    assert "requests.nvidia.com/gpu" in too_big.body["message"]
    fits = await admin.create(_gpu_pod("fits", namespace, 4))
    assert fits.status == 201

    async def used_is_four() -> bool:
        quota = await admin.get("ResourceQuota", "gpus", namespace)
        return quota.body["status"].get("used", {}).get("requests.nvidia.com/gpu") == "4"

    await poll(used_is_four, what="quota usage to count the admitted pod")
    one_more = await admin.create(_gpu_pod("one-more", namespace, 1))
    assert one_more.status == 403


async def test_eviction_respects_pod_disruption_budgets(admin: RestClient, gpu_node: str) -> None:
    namespace = _unique("pdb")
    await apply_objects(
        admin,
        [
            _namespace(namespace),
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "serving", "namespace": namespace},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "serving"}}},
            },
            _gpu_pod("serving-0", namespace, 1, node=gpu_node, labels={"app": "serving"}),
            _gpu_pod("scratch", namespace, 1, node=gpu_node, labels={"app": "scratch"}),
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
