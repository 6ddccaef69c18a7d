"""The cluster's RBAC has the last word: access reviews made as the requester,
and a refused write that changes nothing."""

from __future__ import annotations

import pytest

from gpuctl.errors import Forbidden
from gpuctl.identity import Identity
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import KubeApi, ObjectRef
from gpuctl.sources.kube.connect import KubeConnection
from testbed.kube import RestClient, apply_objects
from testbed.objects import namespace_object, role, role_binding, rule, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

USER_A = Identity(user="user-a", groups=("team-a",))
USER_B = Identity(user="user-b", groups=("team-b",))


def _gpu_quota(namespace: str, gpus: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpus", "namespace": namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": str(gpus)}},
    }


async def test_denied_user_changes_nothing_granted_user_may(admin: RestClient, operator_connection: KubeConnection) -> None:
    team_a = unique("team-a")
    await apply_objects(admin, [namespace_object(team_a), _gpu_quota(team_a, 4)])
    api = KubeApi(operator_connection)
    quota = ObjectRef(plural="resourcequotas", namespace=team_a, name="gpus")
    user_b, user_a = ActingClient(api, USER_B), ActingClient(api, USER_A)
    # Once the quota controller has filled status, only a write changes the quota's resourceVersion.
    counted = await poll(
        lambda: admin.get("ResourceQuota", "gpus", team_a),
        lambda r: "used" in r.body.get("status", {}),
        what="the resourcequota controller to count the quota",
    )
    before = counted.body["metadata"]["resourceVersion"]

    review = await user_b.can_i("patch", "resourcequotas", namespace=team_a, name="gpus")
    assert not review.allowed and not review.denied  # RBAC has no opinion: not allowed
    assert review.call.acting_as == USER_B and review.call.audit_id
    assert review.explain().startswith(f"user-b (team-b) may not patch resourcequotas gpus in namespace {team_a}")

    with pytest.raises(Forbidden) as refused:
        await user_b.patch(quota, {"spec": {"hard": {"requests.nvidia.com/gpu": "64"}}})
    assert 'User "user-b"' in str(refused.value)
    assert refused.value.reason == "Forbidden"
    with pytest.raises(Forbidden):  # a dry run is authorized exactly like the real thing
        await user_b.patch(quota, {"spec": {"hard": {"requests.nvidia.com/gpu": "64"}}}, dry_run=True)
    after = (await admin.get("ResourceQuota", "gpus", team_a)).body
    assert after["metadata"]["resourceVersion"] == before
    assert after["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"

    await apply_objects(
        admin,
        [
            role("quota-editor", team_a, [rule("", ["resourcequotas"], ["get", "patch"])]),
            role_binding("team-a-quota", team_a, role="quota-editor", group="team-a"),
        ],
    )

    async def allowed() -> bool:
        return (await user_a.can_i("patch", "resourcequotas", namespace=team_a, name="gpus")).allowed

    await poll(allowed, timeout_s=10, what="the RoleBinding to reach RBAC")
    granted = await user_a.can_i("patch", "resourcequotas", namespace=team_a, name="gpus")
    assert "team-a-quota" in granted.reason  # RBAC names the binding that allowed it
    patched = await user_a.patch(quota, {"spec": {"hard": {"requests.nvidia.com/gpu": "6"}}}, resource_version=before)
    assert patched.object["spec"]["hard"]["requests.nvidia.com/gpu"] == "6"
    assert not (await user_b.can_i("patch", "resourcequotas", namespace=team_a, name="gpus")).allowed


async def test_the_service_identity_only_impersonates(admin: RestClient, operator_connection: KubeConnection) -> None:
    """Why can_i is a SelfSubjectAccessReview made as the requester: the operator may not create
    SubjectAccessReviews (nor change anything itself), but every identity may review itself."""
    namespace = unique("operator")
    await apply_objects(admin, [namespace_object(namespace), _gpu_quota(namespace, 4)])
    api = KubeApi(operator_connection)
    sar = await api.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": "user-a", "groups": ["team-a"], "resourceAttributes": {"verb": "get", "resource": "pods"}},
        },
    )
    assert sar.call.status == 403

    itself = ActingClient(api, None)
    assert not (await itself.can_i("patch", "resourcequotas", namespace=namespace)).allowed
    with pytest.raises(Forbidden) as refused:
        await itself.patch(ObjectRef(plural="resourcequotas", namespace=namespace, name="gpus"), {"spec": {}})
    assert "gpuctl-operator" in str(refused.value)
    assert (await itself.can_i("impersonate", "users")).allowed
