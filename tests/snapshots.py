"""Hand-built Snapshots for playbook tests: pods and the GPUs they hold, each device in a chosen state.

    world = World()
    world.pod("train-1", gpus=4, idle_for=3 * HOUR)               # four idle GPUs, idle 3 h
    world.pod("nb-2", states=("idle", "busy"))                     # one idle, one busy GPU
    world.pod("mig-3", gpus=0, mig={"nvidia.com/mig-1g.10gb": 2})
    snapshot = world.snapshot()

A device state is "idle" (under the threshold for the window, idle for `idle_for`), "quiet"
(under the threshold, not for the whole window yet), "busy" or "stale" (readings not recent);
`measured` limits how many of the pod's devices have a metrics row at all. Pod-level util,
idle and idle_for_s are derived the way the core's join does.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gpuctl.model import (
    Gpu,
    GpuPod,
    MetricsHealth,
    Node,
    Owner,
    PodDisruptionBudget,
    PodRef,
    Snapshot,
    WatchHealth,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0
IDLE_WINDOW_S = 600.0


def make_gpu(node: str, index: int, pool: str, pod: GpuPod | None, state: str, idle_for: float, *, mig: int | None) -> Gpu:
    fields = {
        "node": node,
        "pool": pool,
        "index": index,
        "mig_instance": mig,
        "mig_profile": "1g.10gb" if mig is not None else None,
        "model": "NVIDIA-A100-SXM4-80GB",
        "pod": PodRef(namespace=pod.namespace, name=pod.name) if pod else None,
        "util_pct": {"busy": 87.0, "stale": 0.0}.get(state, 0.0),
        "busy": state == "busy",
        "idle": state == "idle",
        "idle_for_s": idle_for if state == "idle" else (120.0 if state == "quiet" else None),
        "stale": state == "stale",
    }
    return Gpu(**fields)


class World:
    def __init__(self, taken_at: datetime = T0) -> None:
        self.taken_at = taken_at
        self.pods: list[GpuPod] = []
        self.gpus: list[Gpu] = []
        self.pdbs: list[PodDisruptionBudget] = []
        self.pools: dict[str, str] = {}
        self._next: defaultdict[str, int] = defaultdict(int)

    def pod(
        self,
        name: str,
        *,
        namespace: str = "team-a",
        node: str = "node-1",
        pool: str = "pool-a",
        gpus: int = 1,
        mig: dict[str, int] | None = None,
        idle_for: float = 3 * HOUR,
        age: float = 5 * HOUR,
        states: Sequence[str] | None = None,
        measured: int | None = None,
        extra_keys: Sequence[str] = (),
        owners: tuple[Owner, ...] | None = None,
        **fields: object,
    ) -> GpuPod:
        """A Running pod on `node` holding `gpus` whole GPUs and `mig` instances, each in its state."""
        mig = mig or {}
        count = gpus + sum(mig.values())
        states = tuple(states) if states is not None else ("idle",) * count
        measured = count if measured is None else measured
        self.pools[node] = pool
        owners = owners if owners is not None else (Owner(kind="Job", name=f"{name}-job", uid=str(uuid.uuid4())),)
        base = {
            "namespace": namespace,
            "name": name,
            "node": node,
            "phase": "Running",
            "gpus": gpus,
            "mig": mig,
            "owner_kind": owners[-1].kind if owners else None,
            "owner_name": owners[-1].name if owners else None,
            "created": self.taken_at - timedelta(seconds=age),
            "uid": str(uuid.uuid4()),
            "resource_version": "100",
            "owners": owners,
            "ready": True,
        }
        base.update(fields)
        shell = GpuPod(**base)  # type: ignore[arg-type]
        mine: list[Gpu] = []
        for i in range(measured):
            index = self._next[node]
            self._next[node] += 1
            is_mig = i >= gpus
            mine.append(make_gpu(node, index, pool, shell, states[i], idle_for, mig=0 if is_mig else None))
        self.gpus.extend(mine)
        keys = tuple(g.key for g in mine) + tuple(extra_keys)
        idle_fors = [g.idle_for_s for g in mine]
        utils = [g.util_pct for g in mine if g.util_pct is not None]
        pod = shell.model_copy(
            update={
                "gpu_keys": keys,
                "util_pct": sum(utils) / len(utils) if utils else None,
                "idle": bool(mine) and all(g.idle for g in mine),
                "idle_for_s": min(idle_fors) if mine and None not in idle_fors else None,  # type: ignore[type-var]
            }
        )
        self.pods.append(pod)
        return pod

    def budget(self, namespace: str, name: str, *, allowed: int) -> None:
        self.pdbs.append(PodDisruptionBudget(namespace=namespace, name=name, disruptions_allowed=allowed, observed=True))

    def snapshot(self, *, metrics_stale: bool = False, shared_nodes: Sequence[str] = (), taken_at: datetime | None = None) -> Snapshot:
        nodes = tuple(
            Node(name=name, pool=pool, gpu_replicas=4 if name in shared_nodes else 1, ready=True)
            for name, pool in sorted(self.pools.items())
        )
        taken = taken_at or self.taken_at
        return Snapshot(
            taken_at=taken,
            idle_threshold_pct=5.0,
            idle_window_s=IDLE_WINDOW_S,
            nodes=nodes,
            gpus=tuple(self.gpus),
            pods=tuple(self.pods),
            pdbs=tuple(self.pdbs),
            metrics=MetricsHealth(
                source="prometheus",
                last_success=taken,
                age_s=400.0 if metrics_stale else 5.0,
                stale=metrics_stale,
                error="Prometheus unreachable" if metrics_stale else None,
            ),
            watch=WatchHealth(source="kubernetes", connected=True),
        )
