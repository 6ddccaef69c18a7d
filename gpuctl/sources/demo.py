"""The demo source: a simulated cluster, so `gpuctl top --demo` works with no cluster at all.

It feeds the store exactly what the Kubernetes watchers and the Prometheus
source would: records after a "list", a metrics batch every tick, pod
changes as jobs finish and arrive. Everything comes from `gpuctl.sim`, so a
seed gives the same cluster and the same story every time; the clock and
the sleep are injectable so tests run it without waiting.

The cluster is a `SimWorld` (gpuctl.sim.world), which the demo's simulated
API (gpuctl.sim.api, what the playbook engine talks to in `--demo`) changes
too: every change to it, whoever made it, reaches the store at once as the
records a watcher would deliver, with the uid and resourceVersion that API
serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from datetime import datetime, timedelta
from typing import TypeVar

from gpuctl.clock import Clock, utcnow
from gpuctl.model import WatchHealth
from gpuctl.sim.catalog import POOL_LABEL
from gpuctl.sim.fleet import Fleet, SimNamespace, SimNode, SimPdb, SimPod, build_fleet, object_uid
from gpuctl.sim.revisions import FIRST, Revisions
from gpuctl.sim.telemetry import FleetTelemetry
from gpuctl.sim.world import NODES, PODS, QUOTA_CREATED_T, QUOTA_NAME, QUOTAS, SimWorld, WorldChange, budget
from gpuctl.state.records import (
    ControllerRecord,
    GpuSample,
    JobRecord,
    Kind,
    MetricsBatch,
    NamespaceRecord,
    NodeRecord,
    PdbRecord,
    PodRecord,
    QuotaRecord,
    ReplicaSetRecord,
)
from gpuctl.state.selectors import EQUALS, LabelSelector, Requirement
from gpuctl.state.store import ClusterStore

FIRST_VERSION = str(FIRST)
CHURN_GAP_S = 45.0  # mean time between workload changes in the scale=1 fleet
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")



class DemoSource:
    """Feeds a store from `world` (gpuctl.sim.world), the simulated cluster the demo's simulated API
    (gpuctl.sim.api) changes too: what a playbook does there shows in the next snapshot."""

    name = "demo"

    def __init__(
        self,
        *,
        seed: int = 7,
        scale: int = 1,
        tick_s: float = 2.0,
        churn: bool = True,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
        world: SimWorld | None = None,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.tick_s = tick_s
        self.churn = churn
        self._clock = clock
        self._sleep = sleep
        # Built now, not at run(): the simulated API serves it before the first tick.
        self.world = world or SimWorld(build_fleet(seed, scale=scale), seed, mean_gap_s=CHURN_GAP_S / scale)  # busier as it grows

    async def run(self, store: ClusterStore) -> None:
        """Feed `store` until cancelled."""
        start = self._clock()
        world = self.world
        world.started_at = start
        telemetry = FleetTelemetry(world.fleet, self.seed)
        store.set_metrics_source("demo")
        store.set_watch_health(WatchHealth(source="demo", connected=True, context="demo", last_event=start))
        load_fleet(store, world.fleet, start, world.revisions)
        unsubscribe = world.subscribe(lambda change: apply_change(store, change, world, start))
        try:
            while True:
                now = self._clock()
                t = (now - start).total_seconds()
                world.advance(t, churn=self.churn)
                # The telemetry of a big fleet is most of a second of Python: done in steps that let the
                # event loop serve in between (the readings are still those of one instant, `t`).
                if telemetry.fleet is not world.fleet:
                    telemetry = await _in_steps(telemetry.rebind_steps(world.fleet))
                samples: list[GpuSample] = []
                await _in_steps(telemetry.sample_steps(t, samples))
                # Stamped when complete, as a scrape is: on a busy loop the steps can take seconds, and a
                # batch stamped at their start could arrive older than the stale window (3 ticks).
                done = self._clock()
                store.apply_metrics(MetricsBatch(at=done, samples=tuple(samples)))
                # A steady cadence, as scrapes have (the work counts against the tick), with a pause at least.
                await self._sleep(max(self.tick_s - (done - now).total_seconds(), self.tick_s / 4))
        finally:
            unsubscribe()


async def _in_steps(steps: Generator[None, None, T]) -> T:
    """Run `steps`, letting the event loop run between two (not self._sleep: no time passes)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await asyncio.sleep(0)


def load_fleet(store: ClusterStore, fleet: Fleet, start: datetime, revisions: Revisions | None = None) -> None:
    """What a first list of every kind would give, plus the idle history a restart would backfill.

    `revisions`: the objects' resourceVersions (None: a fresh world, where every object is at FIRST)."""
    version = (revisions or Revisions()).version
    store.replace(Kind.NAMESPACE, [namespace_record(ns) for ns in fleet.namespaces])
    store.replace(Kind.NODE, [node_record(n, start, version(NODES, n.name)) for n in fleet.nodes])
    store.replace(Kind.POD, [pod_record(p, start, version(PODS, p.key)) for p in fleet.pods])
    store.replace(Kind.QUOTA, [q for ns in fleet.namespaces if (q := quota_record(ns, fleet, version(QUOTAS, f"{ns.name}/{QUOTA_NAME}")))])
    controllers = {rec.key: rec for p in fleet.pods if (rec := controller_record(p)) is not None}
    store.replace(Kind.REPLICASET, [r for r in controllers.values() if isinstance(r, ReplicaSetRecord)])
    store.replace(Kind.JOB, [r for r in controllers.values() if isinstance(r, JobRecord)])
    store.replace(Kind.PDB, [pdb_record(pdb, fleet) for pdb in fleet.pdbs])
    store.backfill_idle({
        key: start + timedelta(seconds=pod.idle_since_t)
        for pod in fleet.pods
        if pod.behaviour == "idle" and pod.idle_since_t is not None
        for key in pod.gpu_keys
    })


def apply_change(store: ClusterStore, change: WorldChange, world: SimWorld, start: datetime) -> None:
    """What the watchers would deliver after `change`: the touched pods, nodes, quotas and budgets."""
    fleet, version = world.fleet, world.revisions.version
    pods = fleet.pod_by_key if change.pods else {}
    for key in change.pods:
        pod = pods.get(key)
        if pod is None:
            store.delete(Kind.POD, key)
        else:
            store.upsert(pod_record(pod, start, version(PODS, key)))
    for name in change.nodes:
        node = fleet.node_by_name.get(name)
        if node is None:
            store.delete(Kind.NODE, name)
        else:
            store.upsert(node_record(node, start, version(NODES, name)))
    for ns in fleet.namespaces:
        if ns.name in change.namespaces and (quota := quota_record(ns, fleet, version(QUOTAS, f"{ns.name}/{QUOTA_NAME}"))):
            store.upsert(quota)
    for pdb in fleet.pdbs:
        if pdb.namespace in change.namespaces and (record := pdb_record(pdb, fleet)) != store.records(Kind.PDB).get(record.key):
            store.upsert(record)


def node_record(node: SimNode, start: datetime, version: str = FIRST_VERSION) -> NodeRecord:
    labels = {k: v for k, v in node.labels.items() if k.startswith("nvidia.com/") or k == POOL_LABEL}
    return NodeRecord(
        name=node.name,
        labels=labels,
        capacity=dict(node.resources),
        allocatable=dict(node.resources),
        taints=node.taints,
        unschedulable=node.unschedulable,
        ready=node.ready,
        created=start + timedelta(seconds=node.created_t),
        uid=node.uid,
        resource_version=version,
    )


def pod_record(pod: SimPod, start: datetime, version: str = FIRST_VERSION) -> PodRecord:
    return PodRecord(
        namespace=pod.namespace,
        name=pod.name,
        node=pod.node,
        phase=pod.phase,
        gpu_requests=dict(pod.gpu_requests),
        owner_kind=pod.ref_kind,  # its own controller; the join follows the chain up
        owner_name=pod.ref_name,
        priority_class=pod.priority_class,
        created=start + timedelta(seconds=pod.created_t),
        labels=dict(pod.labels),
        ready=pod.phase == "Running",
        uid=pod.uid,
        resource_version=version,
    )


def controller_record(pod: SimPod) -> ControllerRecord | None:
    """The ReplicaSet of a Deployment's pod, the Job of a CronJob's pod: what links it to the top."""
    if pod.ref_kind == pod.owner_kind or pod.ref_name is None or pod.owner_kind is None or pod.owner_name is None:
        return None
    record = ReplicaSetRecord if pod.ref_kind == "ReplicaSet" else JobRecord
    return record(pod.namespace, pod.ref_name, None, pod.owner_kind, pod.owner_name)


def pdb_record(pdb: SimPdb, fleet: Fleet) -> PdbRecord:
    """A budget with the numbers the disruption controller would give it (running pods count as healthy)."""
    selector = LabelSelector(tuple(Requirement(k, EQUALS, frozenset((v,))) for k, v in sorted(pdb.match_labels.items())))
    counted = budget(pdb, fleet.selected_by(pdb))
    return PdbRecord(
        namespace=pdb.namespace,
        name=pdb.name,
        selector=selector,
        min_available=None if pdb.min_available is None else str(pdb.min_available),
        max_unavailable=None if pdb.max_unavailable is None else str(pdb.max_unavailable),
        disruptions_allowed=counted.allowed,
        current_healthy=counted.healthy,
        desired_healthy=counted.desired,
        expected_pods=counted.expected,
        observed=True,
    )


def namespace_record(ns: SimNamespace) -> NamespaceRecord:
    return NamespaceRecord(name=ns.name, labels={"kubernetes.io/metadata.name": ns.name, "team": ns.team})


def quota_record(ns: SimNamespace, fleet: Fleet, version: str = FIRST_VERSION) -> QuotaRecord | None:
    hard = ns.quota_hard
    if not hard:
        return None
    used = fleet.quota_used(ns.name)
    return QuotaRecord(
        namespace=ns.name,
        name=QUOTA_NAME,
        hard={k: float(v) for k, v in hard.items()},
        used={k: float(used.get(k, 0)) for k in hard},
        uid=object_uid(QUOTAS, f"{ns.name}/{QUOTA_NAME}", QUOTA_CREATED_T),
        resource_version=version,
    )
