"""Deterministic test fleets built from pure model objects (no store, no sources)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gpuctl.model import (
    Alert,
    Changes,
    Gpu,
    GpuPod,
    MetricsHealth,
    NamespaceUsage,
    Node,
    PodRef,
    Pool,
    Snapshot,
    Taint,
    Update,
    WatchHealth,
)

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
NAMESPACES = ("ml-research", "inference", "vision", "nlp-train")
POOLS: tuple[tuple[str, str, int, bool], ...] = (
    # name, model, gpus per node, MIG partitioned
    ("h100-train", "NVIDIA H100 80GB HBM3", 8, False),
    ("a100-mig", "NVIDIA A100-SXM4-80GB", 4, True),
    ("l4-infer", "NVIDIA L4", 4, False),
)


def build_snapshot(
    nodes_per_pool: int = 3,
    *,
    seed: int = 7,
    taken_at: datetime = T0,
    pools: Sequence[tuple[str, str, int, bool]] = POOLS,
    generation: int = 1,
    metrics_stale: bool = False,
    watch_connected: bool = True,
) -> Snapshot:
    rnd = random.Random(seed)
    nodes: list[Node] = []
    gpus: list[Gpu] = []
    pods: list[GpuPod] = []
    pool_rows: list[Pool] = []
    pod_gpus: dict[str, list[str]] = {}
    for pool_name, model, per_node, mig in pools:
        p_gpus = p_alloc = p_idle = 0
        for n in range(nodes_per_pool):
            name = f"{pool_name}-node-{n:03d}"
            node_gpus: list[Gpu] = []
            for i in range(per_node):
                instances = [(f"{'3g.40gb' if j == 0 else '1g.10gb'}", j + 1) for j in range(3)] if mig and i < 2 else [(None, None)]
                for profile, inst in instances:
                    held = rnd.random() < 0.7
                    idle = held and rnd.random() < 0.2
                    util = rnd.uniform(0, 3) if idle else (rnd.uniform(20, 100) if held else 0.0)
                    total = 80 * 1024 if profile is None else (40 * 1024 if profile.startswith("3g") else 10 * 1024)
                    pod_ref = None
                    if held:
                        ns = NAMESPACES[rnd.randrange(len(NAMESPACES))]
                        pod_name = f"job-{pool_name[:4]}-{n}-{i}-{inst or 0}"
                        pod_ref = PodRef(namespace=ns, name=pod_name, container="main")
                    g = Gpu(
                        node=name,
                        pool=pool_name,
                        index=i,
                        uuid=f"GPU-{rnd.getrandbits(64):016x}",
                        model=model,
                        mig_profile=profile,
                        mig_instance=inst,
                        util_pct=round(util, 1),
                        mem_used_mib=round(total * (rnd.uniform(0.05, 0.95) if held else 0.0)),
                        mem_total_mib=total,
                        temp_c=round(rnd.uniform(32, 84)),
                        power_w=round(rnd.uniform(60, 650)),
                        xid=79 if (n == 1 and i == 1 and pool_name == pools[0][0]) else None,
                        pod=pod_ref,
                        idle=idle,
                        busy=held and not idle and util >= 5.0,
                        idle_for_s=rnd.uniform(600, 20000) if idle else None,
                    )
                    node_gpus.append(g)
                    if pod_ref:
                        pod_gpus.setdefault(pod_ref.key, []).append(g.key)
            gpus.extend(node_gpus)
            alloc = sum(1 for g in node_gpus if g.pod)
            p_gpus += len(node_gpus)
            p_alloc += alloc
            p_idle += sum(1 for g in node_gpus if g.idle)
            nodes.append(
                Node(
                    name=name,
                    pool=pool_name,
                    gpu_model=model,
                    gpu_capacity=per_node,
                    gpu_allocatable=per_node - (2 if mig else 0),
                    gpu_requested=alloc,
                    mig_allocatable={"nvidia.com/mig-1g.10gb": 4, "nvidia.com/mig-3g.40gb": 2} if mig else {},
                    mig_capable=mig,
                    mig_config="all-balanced" if mig else None,
                    mig_config_state="success" if mig else None,
                    taints=(Taint(key="nvidia.com/gpu", effect="NoSchedule"),),
                    cordoned=n == 2,
                    ready=not (n == 2 and pool_name == pools[-1][0]),
                    created=taken_at - timedelta(days=30 + n),
                )
            )
        pool_rows.append(
            Pool(name=pool_name, nodes=nodes_per_pool, nodes_ready=nodes_per_pool, gpus_total=p_gpus,
                 gpus_allocated=p_alloc, gpus_idle=p_idle, gpu_models=(model,))
        )
    by_key = {g.key: g for g in gpus}
    for pkey, keys in sorted(pod_gpus.items()):
        ns, name = pkey.split("/", 1)
        held = [by_key[k] for k in keys]
        utils = [g.util_pct for g in held if g.util_pct is not None]
        idle = all(g.idle for g in held)
        mig_count = sum(1 for g in held if g.mig_profile)
        pods.append(
            GpuPod(
                namespace=ns,
                name=name,
                node=held[0].node,
                phase="Running",
                gpus=len(held) - mig_count,
                mig={f"nvidia.com/mig-{held[0].mig_profile}": mig_count} if mig_count else {},
                owner_kind="Job",
                owner_name=name.rsplit("-", 1)[0],
                priority_class="batch-low" if idle else "training-high",
                created=taken_at - timedelta(seconds=rnd.uniform(300, 400000)),
                gpu_keys=tuple(keys),
                util_pct=sum(utils) / len(utils) if utils else None,
                idle=idle,
                idle_for_s=min(g.idle_for_s or 0 for g in held) if idle else None,
            )
        )
    pods.append(GpuPod(namespace="vision", name="pending-big-job", phase="Pending", gpus=8, owner_kind="Job",
                       owner_name="pending-big", priority_class="batch-low", created=taken_at - timedelta(minutes=42)))
    namespaces: list[NamespaceUsage] = []
    for i, ns in enumerate(NAMESPACES):
        mine = [p for p in pods if p.namespace == ns]
        held = [by_key[k] for p in mine for k in p.gpu_keys]
        requested = sum(p.gpus_total for p in mine)
        namespaces.append(
            NamespaceUsage(
                name=ns,
                gpu_quota_hard=None if i == 3 else float(requested + 4 - 6 * (i == 2)),
                gpu_quota_used=float(requested),
                gpus_requested=requested,
                gpus_busy=sum(1 for g in held if not g.idle),
                gpus_idle=sum(1 for g in held if g.idle),
                gpu_hours=round(sum(((taken_at - p.created).total_seconds() / 3600) * p.gpus_total for p in mine if p.created), 1),
            )
        )
    alerts = (
        Alert(name="GpuXidError", severity="critical", summary="XID 79: GPU fell off the bus",
              node=nodes[1].name, gpu=f"{nodes[1].name}/1", since=taken_at - timedelta(minutes=12)),
        Alert(name="GpuIdleAllocated", severity="warning", state="pending", summary="GPUs allocated but idle for 30m",
              namespace="vision", since=taken_at - timedelta(minutes=31)),
    )
    return Snapshot(
        generation=generation,
        taken_at=taken_at,
        idle_threshold_pct=5.0,
        idle_window_s=600.0,
        nodes=tuple(nodes),
        gpus=tuple(gpus),
        pools=tuple(pool_rows),
        pods=tuple(pods),
        namespaces=tuple(namespaces),
        alerts=alerts,
        metrics=MetricsHealth(
            source="demo",
            last_success=taken_at - timedelta(seconds=200 if metrics_stale else 3),
            age_s=200.0 if metrics_stale else 3.0,
            stale=metrics_stale,
            error="prometheus: connection refused" if metrics_stale else None,
        ),
        watch=WatchHealth(source="demo", connected=watch_connected, context="demo",
                          last_event=taken_at, relists=0 if watch_connected else 2,
                          error=None if watch_connected else "watch stream closed; reconnecting"),
    )


def first_update(snapshot: Snapshot) -> Update:
    return Update(snapshot=snapshot, changes=Changes(everything=True))


def bump(
    snapshot: Snapshot, *, seconds: float = 5.0, util_delta: float = 10.0, every: int = 3, only: str | None = None
) -> Update:
    """The next snapshot: every `every`-th busy GPU's (or just `only`'s) utilisation moves; time advances."""
    new_gpus = []
    changed: set[str] = set()
    for i, g in enumerate(snapshot.gpus):
        pick = g.key == only if only is not None else i % every == 0
        if pick and g.util_pct is not None and not g.idle:
            util = min(100.0, (g.util_pct + util_delta) % 100)
            g = g.model_copy(update={"util_pct": util, "busy": g.pod is not None and util >= 5.0})
            changed.add(g.key)
        new_gpus.append(g)
    by_key = {g.key: g for g in new_gpus}
    pods = []
    changed_pods: set[str] = set()
    for p in snapshot.pods:
        if any(k in changed for k in p.gpu_keys):
            utils = [u for k in p.gpu_keys if (u := by_key[k].util_pct) is not None]
            p = p.model_copy(update={"util_pct": sum(utils) / len(utils) if utils else None})
            changed_pods.add(p.key)
        pods.append(p)
    at = snapshot.taken_at + timedelta(seconds=seconds)
    metrics = snapshot.metrics.model_copy(update={"last_success": at})
    snap = snapshot.model_copy(update={
        "gpus": tuple(new_gpus), "pods": tuple(pods), "taken_at": at, "generation": snapshot.generation + 1, "metrics": metrics,
    })
    return Update(snapshot=snap, changes=Changes(gpus=frozenset(changed), pods=frozenset(changed_pods)))
