"""Owner chains and disruption budgets against the real controllers and the real Eviction API.

Real objects, real controllers: the deployment controller makes a ReplicaSet,
the replicaset controller its pods; the cronjob controller makes a Job at the
next minute, the job controller its pod; the disruption controller computes
each budget's status. gpuctl must name the top controller read from the
objects, and its verdict on each pod must be what a dry-run eviction answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpuctl.model import GpuPod, Snapshot
from gpuctl.state.store import ClusterStore
from testbed.controlplane import VIEWER, ControlPlane
from testbed.kube import RestClient, apply_objects
from testbed.waiting import poll
from tests.integration.test_kubernetes_source import create, gpu_pod, own_node_and_namespace, watching

pytestmark = pytest.mark.testbed


def template(app: str, pool: str, *, restart: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "nodeSelector": {"gpuctl.io/pool": pool},
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": "registry.invalid/w:1", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
    }


def deployment(name: str, namespace: str, pool: str, replicas: int) -> dict[str, Any]:
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, pool)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def cronjob(name: str, namespace: str, pool: str) -> dict[str, Any]:
    job = {"template": template(name, pool, restart="Never"), "backoffLimit": 0}
    spec = {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": job}}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def pdb(name: str, namespace: str, selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, **spec},
    }


def pods_of(store: ClusterStore, namespace: str) -> dict[str, GpuPod]:
    return {p.name: p for p in store.snapshot().pods if p.namespace == namespace}


def verdicts(snap: Snapshot, namespace: str, prefix: str) -> set[bool | None]:
    return {p.disruption_allowed for p in snap.pods if p.namespace == namespace and p.name.startswith(prefix)}


async def until(store: ClusterStore, check: Any, what: str, *, timeout_s: float = 60) -> Snapshot:
    """Poll the store's snapshot until `check(snapshot)` holds."""
    return await poll(store.snapshot, check, timeout_s=timeout_s, interval_s=0.1, what=what)


async def budget_status(admin: RestClient, name: str, namespace: str, *, allowed: int) -> dict[str, Any]:
    """The budget's status once the disruption controller has seen its latest spec and its pods' readiness."""
    async def get() -> dict[str, Any]:
        return (await admin.get("PodDisruptionBudget", name, namespace)).body

    def computed(body: dict[str, Any]) -> bool:
        status = body.get("status", {})
        return status.get("observedGeneration") == body["metadata"]["generation"] and status.get("disruptionsAllowed") == allowed

    body = await poll(get, computed, what=f"the disruption controller to allow {allowed} disruption(s) for {name}")
    return body["status"]  # type: ignore[no-any-return]


async def test_owner_chains_and_budgets_match_the_controllers(control_plane: ControlPlane, admin: RestClient) -> None:
    node, namespace = await own_node_and_namespace(admin, "wl")
    pool = "wl"
    # The cronjob controller runs it at the next minute: start it first, check it last.
    await create(admin, cronjob("nightly", namespace, pool))
    async with watching(control_plane) as (_, store):
        # A Deployment: the pods show it, through the ReplicaSet the deployment controller made.
        await create(admin, deployment("server", namespace, pool, replicas=2))
        def owned(s: Snapshot) -> list[str | None]:
            return [p.owner_kind for p in s.pods if p.namespace == namespace and p.name.startswith("server-")]

        snap = await until(store, lambda s: owned(s) == ["Deployment"] * 2, "the Deployment's pods with their top controller")
        rs = (await admin.list("ReplicaSet", namespace)).body["items"]
        deploy = (await admin.get("Deployment", "server", namespace)).body
        assert len(rs) == 1
        for p in (p for p in snap.pods if p.namespace == namespace and p.name.startswith("server-")):
            assert [(o.kind, o.name, o.uid) for o in p.owners] == [
                ("ReplicaSet", rs[0]["metadata"]["name"], rs[0]["metadata"]["uid"]),
                ("Deployment", "server", deploy["metadata"]["uid"]),
            ]
            api_pod = (await admin.get("Pod", p.name, namespace)).body
            assert p.uid == api_pod["metadata"]["uid"] and p.labels == api_pod["metadata"]["labels"]

        # One budget that allows a disruption, then one that does not: gpuctl and the Eviction API agree.
        await create(admin, pdb("server-pdb", namespace, {"matchLabels": {"app": "server"}}, minAvailable=1))
        status = await budget_status(admin, "server-pdb", namespace, allowed=1)
        snap = await until(store, lambda s: verdicts(s, namespace, "server-") == {True}, "the budget that allows one disruption")
        server = sorted(p.name for p in snap.pods if p.namespace == namespace and p.name.startswith("server-"))
        assert all(pods_of(store, namespace)[name].pdbs == ("server-pdb",) for name in server)
        assert (await admin.evict(server[0], namespace, dry_run=True)).status in (200, 201)
        shown = {b.key: b for b in snap.pdbs}[f"{namespace}/server-pdb"]
        assert (shown.disruptions_allowed, shown.current_healthy, shown.desired_healthy, shown.expected_pods) == (
            status["disruptionsAllowed"], status["currentHealthy"], status["desiredHealthy"], status["expectedPods"])
        assert shown.selector == "app=server" and shown.min_available == "1" and shown.observed

        await admin.patch("PodDisruptionBudget", "server-pdb", {"spec": {"minAvailable": 2}}, namespace)
        await budget_status(admin, "server-pdb", namespace, allowed=0)
        await until(store, lambda s: verdicts(s, namespace, "server-") == {False}, "the budget that allows none")
        assert (await admin.evict(server[0], namespace, dry_run=True)).status == 429

        # A pod under two budgets: the Eviction API refuses whatever they allow, and gpuctl says so.
        solo = gpu_pod("solo", namespace, node)
        solo["metadata"]["labels"] = {"app": "solo", "tier": "gpu"}
        await create(admin, solo)
        # Ready first: on a pod event the disruption controller recomputes only one of the pod's budgets.
        await until(store, lambda s: (p := pods_of(store, namespace).get("solo")) is not None and p.ready, "the pod to be Ready")
        # (minAvailable: for a pod without a controller the disruption controller cannot work out maxUnavailable.)
        await create(admin, pdb("solo-app", namespace, {"matchLabels": {"app": "solo"}}, minAvailable=0))
        tier = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}]}
        await create(admin, pdb("solo-tier", namespace, tier, minAvailable=0))
        for name in ("solo-app", "solo-tier"):
            await budget_status(admin, name, namespace, allowed=1)
        await until(store, lambda s: (p := pods_of(store, namespace).get("solo")) is not None and len(p.pdbs) == 2,
                    "the pod under two budgets")
        assert pods_of(store, namespace)["solo"].pdbs == ("solo-app", "solo-tier")
        assert pods_of(store, namespace)["solo"].disruption_allowed is False
        refused = await admin.evict("solo", namespace, dry_run=True)
        assert refused.status == 500 and "more than one PodDisruptionBudget" in refused.body.get("message", "")

        # The CronJob's pod: CronJob at the top, through the Job the cronjob controller made.
        snap = await until(store, lambda s: any(p.namespace == namespace and p.owner_kind == "CronJob" for p in s.pods),
                           "the CronJob's first Job to start its pod", timeout_s=150)
        (cron_pod,) = [p for p in snap.pods if p.namespace == namespace and p.owner_kind == "CronJob"]
        (job,) = (await admin.list("Job", namespace)).body["items"]
        assert [(o.kind, o.name) for o in cron_pod.owners] == [("Job", job["metadata"]["name"]), ("CronJob", "nightly")]
        assert cron_pod.owners[1].uid == (await admin.get("CronJob", "nightly", namespace)).body["metadata"]["uid"]
        await admin.patch("CronJob", "nightly", {"spec": {"suspend": True}}, namespace)


async def test_an_empty_selector_covers_every_pod_of_the_namespace(control_plane: ControlPlane, admin: RestClient) -> None:
    """policy/v1: `selector: {}` selects all pods of the namespace, for the controller and the Eviction API alike."""
    node, namespace = await own_node_and_namespace(admin, "wl-empty")
    await create(admin, gpu_pod("lone", namespace, node))
    await create(admin, pdb("everything", namespace, {}, minAvailable=1))
    status = await budget_status(admin, "everything", namespace, allowed=0)
    assert status["expectedPods"] == 1  # the controller counts the pod
    async with watching(control_plane) as (_, store):
        snap = await until(store, lambda s: any(b.namespace == namespace for b in s.pdbs) and "lone" in pods_of(store, namespace),
                           "the budget and the pod")
        lone = pods_of(store, namespace)["lone"]
        assert lone.pdbs == ("everything",) and lone.disruption_allowed is False
        assert {b.name: b.selector for b in snap.pdbs if b.namespace == namespace} == {"everything": ""}
    # ... and the Eviction API agrees: the budget holds the pod.
    assert (await admin.evict("lone", namespace, dry_run=True)).status == 429


async def test_rbac_that_hides_owners_and_budgets_still_gives_a_picture(control_plane: ControlPlane, admin: RestClient) -> None:
    _, namespace = await own_node_and_namespace(admin, "wl-rbac")
    await apply_objects(admin, [deployment("web", namespace, "wl-rbac", replicas=1)])
    await create(admin, pdb("web-pdb", namespace, {"matchLabels": {"app": "web"}}, minAvailable=1))
    async with watching(control_plane, identity=VIEWER) as (_, store):
        snap = await until(store, lambda s: any(p.namespace == namespace and p.phase == "Running" for p in s.pods),
                           "the viewer to see the Deployment's pod")
        (web,) = [p for p in snap.pods if p.namespace == namespace]
        assert web.owner_kind == "ReplicaSet" and len(web.owners) == 1  # its own controller: all it may see
        assert web.disruption_allowed is None and web.pdbs == ()  # budgets unknown, not absent
        assert snap.watch.connected and snap.watch.error is None
        assert snap.watch.unreadable == ("jobs", "poddisruptionbudgets", "replicasets", "resourcequotas")
