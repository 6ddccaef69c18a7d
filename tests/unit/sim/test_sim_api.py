"""The demo's simulated API, through the engine's own client (KubeApi, ActingClient, PlaybookRuns, Leases):
the answers a real API server gives, and the world following every write."""

from __future__ import annotations

import pytest

from gpuctl.errors import AlreadyExists, ApiRejected, Conflict, Forbidden, NotFound, NotInstalled
from gpuctl.identity import Identity
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.discovery import CLUSTER_API, KARPENTER, served_version
from gpuctl.playbooks.kubeapi import KubeApi, ObjectRef, check
from gpuctl.playbooks.locks import LeaseLocks, LockTarget
from gpuctl.playbooks.policy import load_policy
from gpuctl.sim import build_fleet
from gpuctl.sim.api.access import DEMO_LEAD, DEMO_USER
from gpuctl.sim.api.connect import DEMO_POLICY
from gpuctl.sim.api.server import SimApiServer
from gpuctl.sim.api.transport import SimTransport
from gpuctl.sim.revisions import Revisions
from gpuctl.sim.world import SimWorld
from gpuctl.sources.kube.reflector import Gone

STRANGER = Identity(user="mallory", groups=("team-x",))


@pytest.fixture
def world() -> SimWorld:
    return SimWorld(build_fleet(7), 7, mig_reconfigure_s=1.0, node_launch_s=1.0)


@pytest.fixture
def api(world: SimWorld) -> KubeApi:
    return KubeApi(SimTransport(SimApiServer(world, own=DEMO_USER, policy=load_policy(DEMO_POLICY))))


def pod_named(world: SimWorld, prefix: str) -> str:
    return next(p.key for p in world.fleet.pods if p.name.startswith(prefix) and p.node)


async def test_whoami_and_impersonation(api: KubeApi) -> None:
    assert await ActingClient(api, None).whoami() == DEMO_USER
    assert await ActingClient(api, DEMO_LEAD).whoami() == DEMO_LEAD


async def test_eviction_honours_the_budget_like_the_eviction_api(api: KubeApi, world: SimWorld) -> None:
    user = ActingClient(api, DEMO_USER)
    chat = sorted((p for p in world.fleet.pods if p.name.startswith("llm-chat") and p.node), key=lambda p: p.key)
    (budget,) = world.budgets_of(chat[0])
    assert budget.allowed == 1
    first = await user.evict(chat[0].namespace, chat[0].name, uid=chat[0].uid, dry_run=True)
    assert first.outcome == "evicted" and world.pod(chat[0].key) is not None  # a dry run changes nothing
    assert (await user.evict(chat[0].namespace, chat[0].name, uid=chat[0].uid)).outcome == "evicted"
    assert world.pod(chat[0].key) is None
    refused = await user.evict(chat[1].namespace, chat[1].name, uid=chat[1].uid)
    assert refused.outcome == "pdb_refused" and refused.call.status == 429
    assert (
        refused.disruption_budget
        == f"The disruption budget {budget.pdb.name} needs {budget.desired} healthy pods and has {budget.desired} currently"
    )
    assert world.pod(chat[1].key) is not None
    # The Deployment's replacement is pending, so the budget stays spent until it runs.
    assert any(p.name.startswith("llm-chat") and p.node is None for p in world.fleet.pods)


async def test_eviction_preconditions_and_gone(api: KubeApi, world: SimWorld) -> None:
    user = ActingClient(api, DEMO_USER)
    namespace, name = pod_named(world, "jupyter-alice").split("/")
    stale = await user.evict(namespace, name, uid="00000000-0000-0000-0000-000000000000")
    assert stale.outcome == "precondition_failed" and "Precondition failed: UID in precondition" in stale.message
    assert (await user.evict(namespace, name)).outcome == "evicted"
    assert (await user.evict(namespace, name)).outcome == "gone"


async def test_a_stale_resource_version_is_a_conflict_and_changes_nothing(api: KubeApi, world: SimWorld) -> None:
    user = ActingClient(api, DEMO_USER)
    ref = ObjectRef(plural="resourcequotas", namespace="team-a", name="gpu-quota")
    read = await user.get(ref)
    changed = await user.patch(ref, {"spec": {"hard": {"requests.nvidia.com/gpu": "12"}}}, resource_version=read.resource_version)
    assert int(changed.resource_version) > int(read.resource_version)
    with pytest.raises(Conflict) as stale:
        await user.patch(ref, {"spec": {"hard": {"requests.nvidia.com/gpu": "20"}}}, resource_version=read.resource_version)
    assert (
        'cannot patch resourcequotas team-a/gpu-quota: it changed since it was read (Operation cannot be fulfilled on resourcequotas "gpu-quota": the object has been modified'
        in str(stale.value)
    )
    assert world.namespace("team-a").gpu_quota_hard == 12  # type: ignore[union-attr]


async def test_dry_run_checks_and_changes_nothing(api: KubeApi, world: SimWorld) -> None:
    user = ActingClient(api, DEMO_USER)
    node = world.fleet.nodes[0]
    ref = ObjectRef(plural="nodes", name=node.name)
    before = (await user.get(ref)).resource_version
    tried = await user.patch(ref, {"spec": {"unschedulable": True}}, dry_run=True)
    assert tried.object["spec"]["unschedulable"] is True
    assert not world.node(node.name).unschedulable and (await user.get(ref)).resource_version == before  # type: ignore[union-attr]
    with pytest.raises(ApiRejected) as invalid:  # a field the simulation cannot follow
        await user.patch(ref, {"status": {"capacity": {"nvidia.com/gpu": "64"}}}, dry_run=True)
    assert invalid.value.status == 422 and "can change only metadata.labels, spec.unschedulable of a Node" in str(invalid.value)


async def test_strangers_may_read_but_not_write_and_access_reviews_say_so(api: KubeApi, world: SimWorld) -> None:
    stranger = ActingClient(api, STRANGER)
    namespace, name = pod_named(world, "jupyter-alice").split("/")
    assert (await stranger.get(ObjectRef(plural="pods", namespace=namespace, name=name))).uid
    with pytest.raises(Forbidden, match='User "mallory" cannot create resource "pods/eviction"'):
        await stranger.evict(namespace, name)
    assert world.pod(f"{namespace}/{name}") is not None
    assert not (await stranger.can_i("create", "pods", subresource="eviction", namespace=namespace)).allowed
    review = await ActingClient(api, DEMO_LEAD).can_i("patch", "nodes")
    assert review.allowed and "named in the demo's policy" in review.reason


async def test_not_found_and_discovery_as_the_api_server_answers(api: KubeApi) -> None:
    reader = ActingClient(api, None)
    with pytest.raises(NotFound, match='pods "nope" not found'):
        await reader.get(ObjectRef(plural="pods", namespace="team-a", name="nope"))
    assert await served_version(reader, KARPENTER) == "v1"
    with pytest.raises(NotInstalled):  # Cluster API is not in the demo: a plain-text 404 like kube-apiserver's
        await served_version(reader, CLUSTER_API)


async def test_leases_arbitrate_like_the_api_server(api: KubeApi) -> None:
    mine, theirs = LeaseLocks(api, "gpuctl", "me"), LeaseLocks(api, "gpuctl", "them")
    target = LockTarget(kind="node", name="h100-mig-b7vm2")
    held = await mine.acquire(target)
    with pytest.raises(Exception, match="is locked by me"):
        await theirs.acquire(target)
    await mine.release(held)
    await mine.release(held)  # already gone: nothing to do
    assert (await theirs.acquire(target)).target == target


async def test_created_once_by_name_and_generate_name(api: KubeApi) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gpuctl-kill-switch"}, "data": {"reason": "test"}}
    path = "/api/v1/namespaces/gpuctl/configmaps"
    assert (await api.request("POST", path, body=body)).call.status == 201
    again = await api.request("POST", path, body=body)
    assert again.call.status == 409 and again.call.reason == "AlreadyExists"
    generated = await api.request("POST", path, body={"metadata": {"generateName": "x-"}})
    assert generated.body["metadata"]["name"].startswith("x-")
    with pytest.raises(AlreadyExists):
        check(again, what="create")


async def test_a_node_watch_sees_the_mig_manager_at_work(api: KubeApi, world: SimWorld) -> None:
    reader = ActingClient(api, None)
    ref = ObjectRef(plural="nodes", name="h100-mig-vtp6b")
    read = await reader.get(ref)
    await reader.patch(ref, {"spec": {"unschedulable": True}})
    for pod in [p for p in world.fleet.pods if p.node == "h100-mig-vtp6b"]:
        world.evict(pod.key)  # deleted, as `kubectl delete pod` would (not through the Eviction API)
    await reader.patch(ref, {"metadata": {"labels": {"nvidia.com/mig.config": "all-1g.10gb"}}})
    states: list[str] = []
    params = {"fieldSelector": "metadata.name=h100-mig-vtp6b", "resourceVersion": read.resource_version}
    async with api.watch("/api/v1/nodes", params=params, timeout_s=5) as events:
        async for event in events:
            states.append(event["object"]["metadata"]["labels"]["nvidia.com/mig.config.state"])
            if states[-1] == "pending":
                world.advance(world.t + 1.0)  # the demo source's next tick, once the MIG manager is done
            else:
                break
    assert states == ["pending", "success"]
    assert world.node("h100-mig-vtp6b").resources == {"nvidia.com/gpu": 0, "nvidia.com/mig-1g.10gb": 56}  # type: ignore[union-attr]


async def test_a_watch_from_a_version_the_log_lost_is_gone() -> None:
    world = SimWorld(build_fleet(7), 7)
    world.revisions = Revisions(keep=2)
    for _ in range(5):
        world.revisions.bump("nodes", "x")
    api = KubeApi(SimTransport(SimApiServer(world, own=DEMO_USER, policy=None)))
    with pytest.raises(Gone):
        async with api.watch("/api/v1/nodes", params={"resourceVersion": "2"}, timeout_s=1) as events:
            async for _ in events:
                pass
