"""Workload churn for the demo: jobs finish, new jobs arrive, pending pods get scheduled.

Events happen at times drawn from their own seeded generator, independent
of how often anyone looks: advancing to t=600 in one step or in 300 steps
of 2 s gives the same fleet. The stories the demo tells (idle notebooks,
the hot GPU, the full memory, serving deployments) are never churned away;
busy and bursty Job pods finish, and arrivals respect every quota.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Literal

from gpuctl.sim import catalog
from gpuctl.sim.fleet import QUOTA_PREFIX, Fleet, SimNamespace, SimNode, SimPod, quota_used
from gpuctl.sim.placement import Allocator
from gpuctl.sim.workloads import GPU, MIG_2G, Behaviour

_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_TRAINING = ("lora-llama3-8b", "sft-mistral-7b", "dpo-qwen2-7b", "distill-bert-l", "sweep-vit-b16", "ft-whisper-s")
_EVALS = ("eval-mmlu", "eval-gsm8k", "eval-humaneval", "eval-long-ctx")
_BATCH = ("etl-embed", "video-transcode", "ocr-backfill", "thumbs-rerun")


@dataclass(frozen=True, slots=True)
class _Arrival:
    namespace: str
    pool: str
    requests: dict[str, int]
    names: tuple[str, ...]
    container: str
    priority_class: str
    weight: int


_ARRIVALS = (
    _Arrival("ml-research", "a100-train", {GPU: 4}, _TRAINING, "trainer", "training-standard", 2),
    _Arrival("ml-research", "a100-train", {GPU: 2}, _TRAINING, "trainer", "training-standard", 2),
    _Arrival("ml-research", "h100-mig", {MIG_2G: 1}, _EVALS, "eval", "training-standard", 2),
    _Arrival("team-b", "t4-batch", {GPU: 1}, _BATCH, "worker", "batch-low", 3),
    _Arrival("team-b", "t4-batch", {GPU: 2}, _BATCH, "worker", "batch-low", 1),
)
_ARRIVAL_BEHAVIOURS: tuple[Behaviour, ...] = ("busy", "busy", "busy", "bursty", "bursty", "idle")


MIN_RUN_S = 600.0  # a job scheduled by the churn runs at least this long
# Teams leave some quota headroom; it also keeps the demo's "nearly full" namespace the only one.
ARRIVAL_QUOTA_FILL = 0.9


@dataclass(frozen=True, slots=True)
class ChurnEvent:
    at: float  # sim seconds
    kind: Literal["finished", "arrived", "scheduled"]
    pod: SimPod  # as it is after the event (for "finished": as it was)


class FleetChurn:
    """The fleet as it evolves; `advance(t)` applies every event up to t and returns them."""

    def __init__(self, fleet: Fleet, seed: int = 7, *, mean_gap_s: float = 45.0) -> None:
        self.fleet = fleet
        self._rng = random.Random(f"churn-{seed}")
        self._gap = mean_gap_s
        self._pods: dict[str, SimPod] = {p.key: p for p in fleet.pods}
        self._alloc = Allocator(fleet.nodes)
        for pod in fleet.pods:
            if pod.node:
                self._alloc.take_keys(pod.node, pod.gpu_keys)
        self._pool_nodes: dict[str, list[str]] = {}
        for node in fleet.nodes:
            self._pool_nodes.setdefault(node.pool, []).append(node.name)
        self._cordoned = {node.name for node in fleet.nodes if node.unschedulable}  # the scheduler skips them
        self._hard = {ns.name: ns.quota_hard for ns in fleet.namespaces}
        self._used = {ns.name: quota_used(fleet.pods, ns.name) for ns in fleet.namespaces}
        self._dirty: set[str] = set()  # pools with GPUs freed since their pending pods last tried
        self._next = self._draw_gap()
        self._serial = 0
        self._started: dict[str, float] = {}  # pods scheduled by the churn: when

    def advance(self, t: float) -> list[ChurnEvent]:
        events: list[ChurnEvent] = []
        while self._next <= t:
            event = self._step(self._next)
            if event is not None:
                events.append(event)
            self._next += self._draw_gap()
        if events:
            self._publish()
        return events

    # -- what the simulated API does to the fleet (gpuctl.sim.world) ---------------------------
    def remove(self, key: str) -> SimPod | None:
        """A pod deleted (evicted): its devices are free for the oldest pending pod that fits."""
        pod = self._pods.pop(key, None)
        if pod is None:
            return None
        if pod.node:
            self._alloc.release(pod.node, pod.gpu_keys)
            self._dirty.add(pod.pool)
        self._count(pod, -1)
        self._started.pop(key, None)
        self._publish()
        return pod

    def add(self, pod: SimPod) -> None:
        """A new pending pod (a controller's replacement for an evicted one): scheduled as room appears."""
        self._pods[pod.key] = pod
        self._count(pod, +1)
        self._dirty.add(pod.pool)
        self._publish()

    def pod(self, key: str) -> SimPod | None:
        return self._pods.get(key)

    def fits_somewhere(self, pod: SimPod) -> bool:
        """Whether a schedulable node of the pod's pool has the devices it asks for free now."""
        return self._alloc.first_fit(self._schedulable(pod.pool), pod.gpu_requests) is not None

    def replace_pod(self, pod: SimPod) -> None:
        """The same pod with other metadata (annotations)."""
        self._pods[pod.key] = pod
        self._publish()

    def set_node(self, node: SimNode) -> None:
        """A node added (a launched machine) or changed (its labels, or its MIG devices once no pod holds them)."""
        held = [k for p in self._pods.values() if p.node == node.name for k in p.gpu_keys]
        self._alloc.set_node(node, held)
        (self._cordoned.add if node.unschedulable else self._cordoned.discard)(node.name)
        known = any(n.name == node.name for n in self.fleet.nodes)
        if not known:
            self._pool_nodes.setdefault(node.pool, []).append(node.name)
        nodes = tuple(node if n.name == node.name else n for n in self.fleet.nodes)
        self._dirty.add(node.pool)
        self.fleet = replace(self.fleet, nodes=nodes if known else (*nodes, node))

    def set_quota(self, namespace: SimNamespace) -> None:
        """A namespace's quota changed: arrivals respect the new one."""
        self._hard[namespace.name] = namespace.quota_hard
        self.fleet = replace(
            self.fleet, namespaces=tuple(namespace if n.name == namespace.name else n for n in self.fleet.namespaces)
        )

    def schedule_pending(self, at: float) -> list[ChurnEvent]:
        """Place pending pods where devices were freed or added (what the scheduler does at once)."""
        events: list[ChurnEvent] = []
        while self._dirty:
            room = {pool: self._alloc.max_free(self._schedulable(pool)) for pool in self._dirty}
            placed = next(
                (e for p in list(self._pods.values())
                 if p.node is None and p.pool in room and _may_fit(p, room[p.pool]) and (e := self._schedule(p, at))),
                None,
            )  # fmt: skip
            if placed is None:
                self._dirty.clear()
            else:
                events.append(placed)
        if events:
            self._publish()
        return events

    def _schedulable(self, pool: str) -> list[str]:
        return [n for n in self._pool_nodes.get(pool, ()) if n not in self._cordoned]

    def _publish(self) -> None:
        self.fleet = replace(self.fleet, pods=tuple(self._pods.values()))

    def _draw_gap(self) -> float:
        return self._rng.uniform(0.4, 1.6) * self._gap

    def _step(self, at: float) -> ChurnEvent | None:
        if self._dirty:  # freed GPUs go to the oldest pending pod that fits
            room = {pool: self._alloc.max_free(self._schedulable(pool)) for pool in self._dirty}
            for pod in self._pods.values():
                if pod.node is None and pod.pool in room and _may_fit(pod, room[pod.pool]):
                    if event := self._schedule(pod, at):
                        return event
            self._dirty.clear()
        roll = self._rng.random()
        if roll < 0.5:
            return self._finish(at) or self._arrive(at)
        return self._arrive(at) or self._finish(at)

    def _schedule(self, pod: SimPod, at: float) -> ChurnEvent | None:
        node = self._alloc.first_fit(self._schedulable(pod.pool), pod.gpu_requests)
        if node is None:
            return None
        keys = self._alloc.take(node, pod.gpu_requests)
        assert keys is not None
        idle_since = at if pod.behaviour == "idle" else None
        placed = replace(pod, node=node, gpu_keys=keys, idle_since_t=idle_since)
        self._started[pod.key] = at
        self._pods[pod.key] = placed
        return ChurnEvent(at, "scheduled", placed)

    def _finish(self, at: float) -> ChurnEvent | None:
        done = [
            p
            for p in self._pods.values()
            if p.node
            and p.owner_kind in ("Job", "CronJob")
            and p.behaviour in ("busy", "bursty")
            and self._started.get(p.key, -math.inf) <= at - MIN_RUN_S
        ]
        if not done:
            return None
        pod = self._rng.choice(done)
        assert pod.node is not None
        self._alloc.release(pod.node, pod.gpu_keys)
        self._dirty.add(pod.pool)
        self._count(pod, -1)
        del self._pods[pod.key]
        self._started.pop(pod.key, None)
        return ChurnEvent(at, "finished", pod)

    def _arrive(self, at: float) -> ChurnEvent | None:
        a = self._rng.choices(_ARRIVALS, weights=[a.weight for a in _ARRIVALS])[0]
        if a.pool not in self._pool_nodes or not self._quota_allows(a.namespace, a.requests):
            return None
        self._serial += 1
        job = f"{self._rng.choice(a.names)}-{self._serial:04d}"
        name = f"{job}-{''.join(self._rng.choice(_ALPHABET) for _ in range(5))}"
        behaviour = self._rng.choice(_ARRIVAL_BEHAVIOURS)
        pod = SimPod(
            namespace=a.namespace,
            name=name,
            node=None,
            container=a.container,
            gpu_requests=dict(a.requests),
            owner_kind="Job",
            owner_name=job,
            ref_kind="Job",
            ref_name=job,
            priority_class=a.priority_class,
            labels={"job-name": job, "batch.kubernetes.io/job-name": job},
            gpu_keys=(),
            behaviour=behaviour,
            pool=a.pool,
            node_selector={catalog.POOL_LABEL: a.pool},
            tolerations=catalog.POOLS_BY_NAME[a.pool].taints,
            created_t=at,
        )
        self._pods[pod.key] = pod
        self._count(pod, +1)
        placed = self._schedule(pod, at)
        return ChurnEvent(at, "arrived", placed.pod if placed else pod)

    def _quota_allows(self, namespace: str, requests: dict[str, int]) -> bool:
        """Room under ARRIVAL_QUOTA_FILL of every quota the pod counts against."""
        hard = self._hard.get(namespace, {})
        used = self._used.get(namespace, {})
        for resource, count in requests.items():
            limit = hard.get(QUOTA_PREFIX + resource)
            if limit is not None and used.get(QUOTA_PREFIX + resource, 0) + count > ARRIVAL_QUOTA_FILL * limit:
                return False
        return True

    def _count(self, pod: SimPod, sign: int) -> None:
        used = self._used.setdefault(pod.namespace, {})
        for resource, count in pod.gpu_requests.items():
            used[QUOTA_PREFIX + resource] = used.get(QUOTA_PREFIX + resource, 0) + sign * count


def _may_fit(pod: SimPod, room: dict[str, int]) -> bool:
    """False when no single node has enough of some resource: skips a first-fit scan of the pool."""
    return all(room.get(resource, 0) >= count for resource, count in pod.gpu_requests.items())
