"""The demo source: a simulated cluster, so `gpuctl top --demo` works with no cluster at all.

It feeds the store exactly what the Kubernetes watchers and the Prometheus
source would: records after a "list", a metrics batch every tick, pod
changes as jobs finish and arrive. Everything comes from `gpuctl.sim`, so a
seed gives the same cluster and the same story every time; the clock and
the sleep are injectable so tests run it without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from gpuctl.clock import Clock, utcnow
from gpuctl.model import WatchHealth
from gpuctl.sim.catalog import POOL_LABEL
from gpuctl.sim.churn import ChurnEvent, FleetChurn
from gpuctl.sim.fleet import Fleet, SimNamespace, SimNode, SimPdb, SimPod, build_fleet
from gpuctl.sim.telemetry import FleetTelemetry
from gpuctl.state.records import (
    ControllerRecord,
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

CHURN_GAP_S = 45.0  # mean time between workload changes in the scale=1 fleet
Sleep = Callable[[float], Awaitable[None]]



class DemoSource:
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
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.tick_s = tick_s
        self.churn = churn
        self._clock = clock
        self._sleep = sleep

    async def run(self, store: ClusterStore) -> None:
        """Feed `store` until cancelled."""
        start = self._clock()
        fleet = build_fleet(self.seed, scale=self.scale)
        churn = FleetChurn(fleet, self.seed, mean_gap_s=CHURN_GAP_S / self.scale)  # busier as it grows
        telemetry = FleetTelemetry(fleet, self.seed)
        store.set_metrics_source("demo")
        store.set_watch_health(WatchHealth(source="demo", connected=True, context="demo", last_event=start))
        load_fleet(store, fleet, start)
        while True:
            now = self._clock()
            t = (now - start).total_seconds()
            events = churn.advance(t) if self.churn else []
            if events:
                apply_events(store, events, churn.fleet, start)
                telemetry = telemetry.rebind(churn.fleet)
            store.apply_metrics(MetricsBatch(at=now, samples=tuple(telemetry.samples_at(t))))
            await self._sleep(self.tick_s)


def load_fleet(store: ClusterStore, fleet: Fleet, start: datetime) -> None:
    """What a first list of every kind would give, plus the idle history a restart would backfill."""
    store.replace(Kind.NAMESPACE, [namespace_record(ns) for ns in fleet.namespaces])
    store.replace(Kind.NODE, [node_record(n, start) for n in fleet.nodes])
    store.replace(Kind.POD, [pod_record(p, start) for p in fleet.pods])
    store.replace(Kind.QUOTA, [q for ns in fleet.namespaces if (q := quota_record(ns, fleet))])
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


def apply_events(store: ClusterStore, events: list[ChurnEvent], fleet: Fleet, start: datetime) -> None:
    touched: set[str] = set()
    for event in events:
        if event.kind == "finished":
            store.delete(Kind.POD, event.pod.key)
        else:
            store.upsert(pod_record(event.pod, start))
        touched.add(event.pod.namespace)
    for ns in fleet.namespaces:
        if ns.name in touched and (quota := quota_record(ns, fleet)):
            store.upsert(quota)


def node_record(node: SimNode, start: datetime) -> NodeRecord:
    labels = {k: v for k, v in node.labels.items() if k.startswith("nvidia.com/") or k == POOL_LABEL}
    return NodeRecord(
        name=node.name,
        labels=labels,
        capacity=dict(node.resources),
        allocatable=dict(node.resources),
        taints=node.taints,
        ready=node.ready,
        created=start + timedelta(seconds=node.created_t),
    )


def pod_record(pod: SimPod, start: datetime) -> PodRecord:
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
    pods = [p for p in fleet.pods if p.namespace == pdb.namespace and selector.matches(p.labels)]
    healthy = sum(1 for p in pods if p.phase == "Running")
    desired = pdb.min_available if pdb.min_available is not None else len(pods) - (pdb.max_unavailable or 0)
    return PdbRecord(
        namespace=pdb.namespace,
        name=pdb.name,
        selector=selector,
        min_available=None if pdb.min_available is None else str(pdb.min_available),
        max_unavailable=None if pdb.max_unavailable is None else str(pdb.max_unavailable),
        disruptions_allowed=max(0, healthy - desired),
        current_healthy=healthy,
        desired_healthy=desired,
        expected_pods=len(pods),
        observed=True,
    )


def namespace_record(ns: SimNamespace) -> NamespaceRecord:
    return NamespaceRecord(name=ns.name, labels={"kubernetes.io/metadata.name": ns.name, "team": ns.team})


def quota_record(ns: SimNamespace, fleet: Fleet) -> QuotaRecord | None:
    hard = ns.quota_hard
    if not hard:
        return None
    used = fleet.quota_used(ns.name)
    return QuotaRecord(
        namespace=ns.name,
        name="gpu-quota",
        hard={k: float(v) for k, v in hard.items()},
        used={k: float(used.get(k, 0)) for k in hard},
    )
