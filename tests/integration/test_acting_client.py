"""ActingClient against the real API server: impersonation with every group,
preconditions, dry run, the scale subresource, reclaim notices, Audit-IDs."""

from __future__ import annotations

import pytest

from gpuctl.errors import Conflict, Forbidden
from gpuctl.identity import Identity
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import ApiCall, KubeApi, ObjectRef
from gpuctl.sources.kube.connect import KubeConnection
from testbed.kube import RestClient, apply_objects
from testbed.objects import gpu_pod, namespace_object, role, role_binding, rule, unique
from testbed.waiting import poll

pytestmark = pytest.mark.testbed


def _config_map(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": {"size": "1"}}


async def _granted(client: ActingClient, verb: str, resource: str, namespace: str, **kwargs: str) -> None:
    """Wait for a fresh RoleBinding to reach the API server's RBAC cache."""

    async def allowed() -> bool:
        return (await client.can_i(verb, resource, namespace=namespace, **kwargs)).allowed

    await poll(allowed, timeout_s=10, what=f"{client.identity} to be allowed to {verb} {resource}")


async def test_every_group_reaches_the_api_server(admin: RestClient, operator_connection: KubeConnection) -> None:
    """The generated client would collapse Impersonate-Group headers into one; RBAC bound to the
    second group proves both arrive."""
    namespace, second_group = unique("groups"), unique("gpu-admins")
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            _config_map("settings", namespace),
            role("reader", namespace, [rule("", ["configmaps"], ["get"])]),
            role_binding("second-group-reads", namespace, role="reader", group=second_group),
        ],
    )
    api = KubeApi(operator_connection)
    both = ActingClient(api, Identity(user="user-a", groups=("team-a", second_group)))
    first_only = ActingClient(api, Identity(user="user-a", groups=("team-a",)))
    settings = ObjectRef(plural="configmaps", namespace=namespace, name="settings")

    # Who the API server thinks is asking: both groups, as impersonated.
    review = await api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        acting_as=both.identity,
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    seen = review.body["status"]["userInfo"]
    assert seen["username"] == "user-a"
    assert {"team-a", second_group} <= set(seen["groups"])

    await _granted(both, "get", "configmaps", namespace)
    got = await both.get(settings)
    assert got.object["data"] == {"size": "1"}
    assert got.call.acting_as == both.identity

    with pytest.raises(Forbidden) as denied:
        await first_only.get(settings)
    assert 'User "user-a"' in str(denied.value)
    assert not (await first_only.can_i("get", "configmaps", namespace=namespace, name="settings")).allowed


async def test_patch_applies_only_to_the_version_that_was_read(admin: RestClient, operator_connection: KubeConnection) -> None:
    namespace = unique("patch")
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            _config_map("settings", namespace),
            role("editor", namespace, [rule("", ["configmaps"], ["get", "patch"])]),
            role_binding("team-a-edits", namespace, role="editor", group="team-a"),
        ],
    )
    calls: list[ApiCall] = []
    user_a = ActingClient(KubeApi(operator_connection, on_call=calls.append), Identity(user="user-a", groups=("team-a",)))
    settings = ObjectRef(plural="configmaps", namespace=namespace, name="settings")
    await _granted(user_a, "patch", "configmaps", namespace)

    read = await user_a.get(settings)
    # Dry run: the answer shows the change, nothing is stored.
    trial = await user_a.patch(settings, {"data": {"size": "2"}}, resource_version=read.resource_version, dry_run=True)
    assert trial.object["data"]["size"] == "2"
    assert trial.call.dry_run and trial.call.path.endswith("?dryRun=All")
    unchanged = await user_a.get(settings)
    assert unchanged.object["data"]["size"] == "1"
    assert unchanged.resource_version == read.resource_version

    merged = await user_a.patch(settings, {"data": {"size": "2"}}, resource_version=read.resource_version)
    assert merged.object["data"]["size"] == "2"

    stale = read.resource_version
    with pytest.raises(Conflict):
        await user_a.patch(settings, {"data": {"size": "3"}}, resource_version=stale)
    with pytest.raises(Conflict):
        await user_a.patch(settings, [{"op": "replace", "path": "/data/size", "value": "3"}], resource_version=stale)
    assert (await user_a.get(settings)).object["data"]["size"] == "2"

    json_patched = await user_a.patch(
        settings, [{"op": "replace", "path": "/data/size", "value": "4"}], resource_version=merged.resource_version
    )
    assert json_patched.object["data"]["size"] == "4"

    # Every call, refusals included, reached the sink with the API server's Audit-ID.
    assert [c.status for c in calls if c.method == "PATCH"] == [200, 200, 409, 409, 200]
    assert all(c.audit_id for c in calls)
    assert len({c.audit_id for c in calls}) == len(calls)
    assert {c.reason for c in calls if c.status == 409} == {"Conflict"}


async def _deployment_settled(admin: RestClient, name: str, namespace: str) -> None:
    """Until its controller is done with it: a resourceVersion read before that would go stale at once."""

    async def read() -> dict:
        return (await admin.get("Deployment", name, namespace)).body

    def settled(deployment: dict) -> bool:
        status = deployment.get("status", {})
        progressing = [c for c in status.get("conditions", []) if c["type"] == "Progressing"]
        return status.get("observedGeneration") == deployment["metadata"]["generation"] and any(
            c["reason"] == "NewReplicaSetAvailable" for c in progressing
        )

    await poll(read, settled, what=f"the deployment controller to settle {name}")


async def test_scale_through_the_scale_subresource(admin: RestClient, operator_connection: KubeConnection) -> None:
    namespace = unique("scale")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "trainer", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "trainer"}},
            "template": {"metadata": {"labels": {"app": "trainer"}}, "spec": gpu_pod("x", namespace, 1)["spec"]},
        },
    }
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            deployment,
            role("scaler", namespace, [rule("apps", ["deployments/scale"], ["get", "patch"])]),
            role_binding("team-a-scales", namespace, role="scaler", group="team-a"),
        ],
    )
    user_a = ActingClient(KubeApi(operator_connection), Identity(user="user-a", groups=("team-a",)))
    trainer = ObjectRef(group="apps", version="v1", plural="deployments", namespace=namespace, name="trainer")
    await _granted(user_a, "patch", "deployments", namespace, group="apps", subresource="scale")
    await _deployment_settled(admin, "trainer", namespace)

    before = await user_a.get_scale(trainer)
    assert before.replicas == 0

    trial = await user_a.scale(trainer, 3, resource_version=before.resource_version, dry_run=True)
    assert trial.replicas == 3
    assert (await user_a.get_scale(trainer)).replicas == 0

    after = await user_a.scale(trainer, 2, resource_version=before.resource_version)
    assert after.replicas == 2
    assert (await admin.get("Deployment", "trainer", namespace)).body["spec"]["replicas"] == 2

    with pytest.raises(Conflict):
        await user_a.scale(trainer, 5, resource_version=before.resource_version)
    with pytest.raises(Forbidden):  # the grant is for the scale subresource, not the Deployment itself
        await user_a.patch(trainer, {"spec": {"replicas": 5}})


async def test_staged_reclaim_notice_annotation_and_event(admin: RestClient, operator_connection: KubeConnection) -> None:
    namespace = unique("notice")
    idle_job = gpu_pod("idle-job", namespace, 1)
    idle_job["spec"]["schedulerName"] = "nobody"  # left alone: no scheduler bumps its resourceVersion under the test
    await apply_objects(
        admin,
        [
            namespace_object(namespace),
            idle_job,
            role(
                "noticer",
                namespace,
                [rule("", ["pods"], ["get", "patch"]), rule("events.k8s.io", ["events"], ["create"])],
            ),
            role_binding("team-a-notices", namespace, role="noticer", group="team-a"),
        ],
    )
    user_a = ActingClient(KubeApi(operator_connection), Identity(user="user-a", groups=("team-a",)))
    pod_ref = ObjectRef(plural="pods", namespace=namespace, name="idle-job")
    await _granted(user_a, "create", "events", namespace, group="events.k8s.io")
    pod = await user_a.get(pod_ref)

    notice = {"gpuctl.io/reclaim-after": "2026-12-01T12:00:00Z"}
    await user_a.annotate(pod_ref, notice, dry_run=True)
    stored = (await admin.get("Pod", "idle-job", namespace)).body["metadata"]
    assert "gpuctl.io/reclaim-after" not in (stored.get("annotations") or {})
    annotated = await user_a.annotate(pod_ref, notice, resource_version=pod.resource_version)
    assert annotated.object["metadata"]["annotations"]["gpuctl.io/reclaim-after"] == "2026-12-01T12:00:00Z"

    await user_a.create_event(pod.object, reason="ReclaimScheduled", note="dry", action="Notify", dry_run=True)
    event = await user_a.create_event(
        pod.object, reason="ReclaimScheduled", note="GPUs idle for 2h; reclaimed at 12:00 unless busy", action="Notify"
    )
    listed = (await admin.request("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")).body["items"]
    events = [e for e in listed if e.get("reportingController") == "gpuctl.io/playbooks"]
    assert [e["metadata"]["name"] for e in events] == [event.object["metadata"]["name"]]  # the dry run left nothing
    assert events[0]["regarding"]["uid"] == pod.uid
    assert events[0]["reason"] == "ReclaimScheduled"

    cleared = await user_a.annotate(pod_ref, {"gpuctl.io/reclaim-after": None})
    assert "gpuctl.io/reclaim-after" not in (cleared.object["metadata"].get("annotations") or {})
