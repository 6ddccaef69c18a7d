"""The demo cluster as it is now: the one truth the demo source and the simulated API both read.

`SimWorld` holds the simulated fleet as it evolves (gpuctl.sim.churn: jobs
finish and arrive) and as people change it through the simulated API
(gpuctl.sim.api): pods evicted, nodes cordoned and relabelled, quotas and
NodePool limits edited. The controllers a real cluster would run to follow
those writes are simulated here too, stepped by `advance(t)` (the demo
source's tick):

- the scheduler: pending pods go where devices were freed or added (not on
  cordoned nodes); a controller's evicted pod comes back as a pending
  replacement (ReplicaSet, StatefulSet, Job), a bare pod does not;
- NVIDIA's MIG manager: a changed `nvidia.com/mig.config` label makes the
  node `pending`, and after `mig_reconfigure_s` `success` with the new MIG
  devices (or `failed`: a config the GPUs cannot hold, or GPU pods still
  on the node);
- Karpenter: while a pool has a pending pod no node can hold and a new node
  stays within the NodePool's `spec.limits` nvidia.com/gpu, one node is
  launched (ready after `node_launch_s`). A lower limit removes no node.

Every change bumps the touched objects' resourceVersions (`revisions`) and
is handed to the listeners (the demo source turns it into records).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from gpuctl.clock import utcnow
from gpuctl.errors import MigConfigInvalid
from gpuctl.migparted import CONFIG_KEY, DEFAULT_CONFIG_MAP, MIG_CONFIG_LABEL, MigPartedConfig, apply_config
from gpuctl.migparted import default_mig_parted_config as mig_parted_config
from gpuctl.sim import catalog, mig
from gpuctl.sim.churn import ChurnEvent, FleetChurn
from gpuctl.sim.fleet import Fleet, SimNamespace, SimNode, SimPdb, SimPod, new_node
from gpuctl.sim.revisions import Revisions

OPERATOR_NAMESPACE = "gpu-operator"
MIG_MANAGER_LABEL = "nvidia.com/gpu.deploy.mig-manager"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# The objects the fleet backs, as the simulated API names their resources.
PODS, NODES, QUOTAS, PDBS, NAMESPACES, NODEPOOLS = (
    "pods", "nodes", "resourcequotas", "poddisruptionbudgets.policy", "namespaces", "nodepools.karpenter.sh",
)  # fmt: skip
QUOTA_NAME = "gpu-quota"
QUOTA_CREATED_T = -30 * 86400.0  # quotas, budgets and namespaces were made a month before the demo starts


@dataclass(frozen=True, slots=True)
class WorldChange:
    """What one step changed: pods (keys), nodes, namespaces (their quota and budgets), pools (their NodePool)."""

    pods: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    pools: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.pods or self.nodes or self.namespaces or self.pools)


@dataclass(slots=True)
class _Pending:
    """Work a simulated controller finishes at `due` (sim seconds)."""

    due: float
    what: str = field(default="")


@dataclass(frozen=True, slots=True)
class Budget:
    """A PodDisruptionBudget's numbers as the disruption controller would give them."""

    pdb: SimPdb
    healthy: int
    desired: int
    expected: int

    @property
    def allowed(self) -> int:
        return max(0, self.healthy - self.desired)


def budget(pdb: SimPdb, pods: Iterable[SimPod]) -> Budget:
    """`pdb` counted over `pods` (a fleet's `selected_by(pdb)`, or any pods): running pods it selects are healthy."""
    matched = [p for p in pods if p.namespace == pdb.namespace and pdb.selects(p)]
    healthy = sum(1 for p in matched if p.phase == "Running")
    desired = pdb.min_available if pdb.min_available is not None else len(matched) - (pdb.max_unavailable or 0)
    return Budget(pdb, healthy, desired, len(matched))


Listener = Callable[[WorldChange], None]


class SimWorld:
    def __init__(
        self,
        fleet: Fleet,
        seed: int = 7,
        *,
        mean_gap_s: float = 45.0,
        mig_reconfigure_s: float = 4.0,
        node_launch_s: float = 6.0,
    ) -> None:
        fleet = replace(fleet, nodes=tuple(_operated(n) for n in fleet.nodes))
        self.churn = FleetChurn(fleet, seed, mean_gap_s=mean_gap_s)
        self.revisions = Revisions()
        self.t = 0.0
        self.started_at = utcnow()  # the wall time of sim second 0 (the demo source sets it when it starts)
        self.mig_reconfigure_s = mig_reconfigure_s
        self.node_launch_s = node_launch_s
        self.mig_parted_config = mig_parted_config()  # ConfigMap gpu-operator/default-mig-parted-config
        # NodePool spec.limits nvidia.com/gpu: what each pool holds now (so its pending pods wait for a higher one).
        self.pool_limits: dict[str, int] = {}
        for node in fleet.nodes:
            self.pool_limits[node.pool] = self.pool_limits.get(node.pool, 0) + _physical(node)
        self._reconfiguring: dict[str, _Pending] = {}  # node -> when the MIG manager is done
        self._launching: dict[str, _Pending] = {}  # pool -> when its launched node is ready
        self._rng = random.Random(f"world-{seed}")
        self._listeners: list[Listener] = []

    @property
    def fleet(self) -> Fleet:
        return self.churn.fleet

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every change from now on; returns what stops that."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # -- reading -----------------------------------------------------------------------------
    def pod(self, key: str) -> SimPod | None:
        return self.churn.pod(key)

    def node(self, name: str) -> SimNode | None:
        return self.fleet.node_by_name.get(name)

    def namespace(self, name: str) -> SimNamespace | None:
        return next((ns for ns in self.fleet.namespaces if ns.name == name), None)

    def budgets_of(self, pod: SimPod) -> list[Budget]:
        """The PodDisruptionBudgets whose selector matches `pod`, counted now."""
        fleet = self.fleet
        return [budget(pdb, fleet.selected_by(pdb)) for pdb in fleet.pdbs if pdb.namespace == pod.namespace and pdb.selects(pod)]

    def mig_config(self) -> MigPartedConfig:
        return MigPartedConfig.parse(self.mig_parted_config, source=f"{OPERATOR_NAMESPACE}/{DEFAULT_CONFIG_MAP} ({CONFIG_KEY})")

    # -- the controllers' clock --------------------------------------------------------------
    def advance(self, t: float, *, churn: bool = True) -> None:
        """Run the simulation up to sim second `t`: workload churn, scheduling, MIG manager, Karpenter."""
        self.t = max(self.t, t)
        events: list[ChurnEvent] = self.churn.advance(t) if churn else []
        nodes: set[str] = set()
        for name, pending in list(self._reconfiguring.items()):
            if pending.due <= t:
                del self._reconfiguring[name]
                self._reconfigure(name, pending.what)
                nodes.add(name)
        for pool, pending in list(self._launching.items()):
            if pending.due <= t:
                del self._launching[pool]
                nodes.add(self._launch(pool))
        events += self.churn.schedule_pending(t)
        self._provision()
        pools = {n.pool for name in nodes if (n := self.node(name)) is not None}
        self._changed(WorldChange(pods=frozenset(e.pod.key for e in events), nodes=frozenset(nodes), pools=frozenset(pools)))

    def _reconfigure(self, name: str, config: str) -> None:
        node = self.node(name)
        if node is None:
            return
        model = mig.model_of(node)
        busy = [p.key for p in self.fleet.pods if p.node == name and p.gpu_keys]
        try:
            if model is None:
                raise MigConfigInvalid(f"node {name} has no MIG-capable GPU")
            if busy:  # the real one would tear the GPUs out from under them; the demo refuses instead
                raise MigConfigInvalid(f"GPU pods still run on node {name}: {', '.join(busy)}")
            layout = apply_config(self.mig_config().select(config, source=DEFAULT_CONFIG_MAP), model, mig.layout_of(node))
        except MigConfigInvalid:
            self.churn.set_node(mig.with_state(node, "failed"))
            return
        self.churn.set_node(mig.relaid(node, config, layout))

    def _provision(self) -> None:
        """Karpenter: start one node for a pool with a pending pod no node can take now, within the pool's
        GPU limit (nothing shows until the node is ready)."""
        for pool, limit in self.pool_limits.items():
            spec = catalog.POOLS_BY_NAME.get(pool)
            if pool in self._launching or spec is None or self.pool_gpus(pool) + spec.gpus_per_node > limit:
                continue
            if any(p.pool == pool and p.node is None and not self.churn.fits_somewhere(p) for p in self.fleet.pods):
                self._launching[pool] = _Pending(self.t + self.node_launch_s)

    def _launch(self, pool: str) -> str:
        taken = {n.name for n in self.fleet.nodes}
        node = _operated(new_node(catalog.POOLS_BY_NAME[pool], self._rng, taken, created_t=self.t))
        self.churn.set_node(node)
        return node.name

    def pool_gpus(self, pool: str) -> int:
        return sum(_physical(n) for n in self.fleet.nodes if n.pool == pool)

    # -- writes the simulated API makes -------------------------------------------------------
    def evict(self, key: str) -> SimPod | None:
        """Delete a pod (the Eviction API said yes); a controller's pod comes back as a pending replacement."""
        pod = self.churn.remove(key)
        if pod is None:
            return None
        changed = {key}
        if pod.ref_kind is not None and pod.ref_name is not None:
            name = pod.name if pod.ref_kind == "StatefulSet" else f"{pod.ref_name}-{self._suffix()}"
            replacement = replace(pod, name=name, node=None, gpu_keys=(), created_t=self.t, idle_since_t=None, annotations={})
            self.churn.add(replacement)
            changed.add(replacement.key)
        self._changed(WorldChange(pods=frozenset(changed), namespaces=frozenset({pod.namespace})))
        return pod

    def set_pod_annotations(self, key: str, annotations: Mapping[str, str]) -> None:
        pod = self.pod(key)
        if pod is not None:
            self.churn.replace_pod(replace(pod, annotations=dict(annotations)))
            self._changed(WorldChange(pods=frozenset({key})))

    def set_node(self, name: str, *, labels: Mapping[str, str], unschedulable: bool) -> None:
        """New labels and cordon state; a changed MIG config label starts the MIG manager (state pending)."""
        node = self.node(name)
        if node is None:
            return
        updated = replace(node, labels=dict(labels), unschedulable=unschedulable)
        wanted = labels.get(MIG_CONFIG_LABEL)
        if wanted and wanted != node.labels.get(MIG_CONFIG_LABEL) and node.labels.get(MIG_CONFIG_LABEL) is not None:
            updated = mig.with_state(updated, "pending")
            self._reconfiguring[name] = _Pending(self.t + self.mig_reconfigure_s, wanted)
        self.churn.set_node(updated)
        self._changed(WorldChange(nodes=frozenset({name}), pools=frozenset({node.pool})))

    def set_quota(self, namespace: str, hard: Mapping[str, int]) -> None:
        ns = self.namespace(namespace)
        if ns is None:
            return
        gpu = hard.get("requests.nvidia.com/gpu")
        mig_hard = {k: v for k, v in hard.items() if k != "requests.nvidia.com/gpu"}
        self.churn.set_quota(replace(ns, gpu_quota_hard=gpu, mig_quota_hard=mig_hard))
        self._changed(WorldChange(namespaces=frozenset({namespace})))

    def set_pool_limit(self, pool: str, gpus: int | None) -> None:
        if gpus is None:
            self.pool_limits.pop(pool, None)
        else:
            self.pool_limits[pool] = gpus
        self._provision()
        self._changed(WorldChange(pools=frozenset({pool})))

    # -- bookkeeping ---------------------------------------------------------------------------
    def _suffix(self) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(5))

    def _changed(self, change: WorldChange) -> None:
        if not change:
            return
        namespaces = set(change.namespaces) | {key.split("/", 1)[0] for key in change.pods}
        live = {p.key for p in self.fleet.pods}
        for key in change.pods:
            self.revisions.bump(PODS, key, "MODIFIED" if key in live else "DELETED")
        for name in change.nodes:
            self.revisions.bump(NODES, name)
        for ns in namespaces:
            if (space := self.namespace(ns)) is not None and space.quota_hard:
                self.revisions.bump(QUOTAS, f"{ns}/{QUOTA_NAME}")
            for pdb in self.fleet.pdbs:
                if pdb.namespace == ns:
                    self.revisions.bump(PDBS, f"{ns}/{pdb.name}")
        for pool in change.pools:
            self.revisions.bump(NODEPOOLS, pool)
        full = replace(change, namespaces=frozenset(namespaces))
        for listener in self._listeners:
            listener(full)


def _operated(node: SimNode) -> SimNode:
    """The GPU operator runs its MIG manager on MIG-capable nodes (the label relabel-mig checks for)."""
    if node.labels.get("nvidia.com/mig.capable") != "true":
        return node
    return replace(node, labels={**node.labels, MIG_MANAGER_LABEL: "true"})


def _physical(node: SimNode) -> int:
    return int(node.labels.get("nvidia.com/gpu.count", "0"))
