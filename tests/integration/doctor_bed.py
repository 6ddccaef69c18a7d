"""The clusters `gpuctl doctor` is tested against (tests/integration/test_doctor.py): one that follows
every practice, and the problems seeded on top of it, one per check, each on objects of its own.

Objects are built from a small simulated fleet (gpuctl.sim dataclasses) so the DCGM-exporter simulator
serves metrics for exactly these nodes and pods: the loader's `node_object`/`pod_object` make the API
objects, the simulator the series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from gpuctl.model import Taint
from gpuctl.sim.catalog import A100_80GB, GPU_TAINT, H100_80GB, L4, POOL_LABEL, GpuModel
from gpuctl.sim.fleet import Fleet, SimGpu, SimNode, SimPod
from gpuctl.sim.workloads import Behaviour
from testbed.fleet_loader import node_object, pod_object
from testbed.gpu_operator import mig_node_object
from testbed.kube import RestClient, apply_objects
from testbed.objects import namespace_object
from testbed.waiting import poll

H100 = "NVIDIA-H100-80GB-HBM3"
TIME_SLICING_NOTE = {"gpuctl.io/time-slicing-note": "shared GPU: no memory isolation between pods"}
GPU_TOLERATION = (GPU_TAINT,)


def sim_node(name: str, model: GpuModel, pool: str, gpus: int, *, tainted: bool = True, **labels: str) -> SimNode:
    """A node whose `gpus` whole GPUs the exporter serves; `pool` is the catalog pool (its driver)."""
    devices = tuple(
        SimGpu(node=name, index=i, uuid=f"GPU-{name}-{i}", pci_bus_id=f"00000000:{16 + i:02X}:00.0", model=model.name,
               mem_total_mib=model.mem_mib)
        for i in range(gpus)
    )  # fmt: skip
    taints: tuple[Taint, ...] = (GPU_TAINT,) if tainted else ()
    node_labels = {POOL_LABEL: pool, "nvidia.com/gpu.product": model.product_label, **labels}
    return SimNode(name=name, pool=pool, labels=node_labels, resources={"nvidia.com/gpu": gpus}, taints=taints,
                   gpus=devices, created_t=-3600)  # fmt: skip


def sim_pod(
    namespace: str, name: str, node: SimNode, gpu: int, *, behaviour: Behaviour = "busy",
    priority: str | None = "inference-critical", tolerate: bool = True, resource: str = "nvidia.com/gpu",
) -> SimPod:  # fmt: skip
    return SimPod(
        namespace=namespace, name=name, node=node.name, container="main", gpu_requests={resource: 1},
        owner_kind=None, owner_name=None, ref_kind=None, ref_name=None, priority_class=priority,
        labels={"app": name}, gpu_keys=(f"{node.name}/{gpu}",), behaviour=behaviour, pool=node.pool,
        node_selector={}, tolerations=GPU_TOLERATION if tolerate else (), created_t=-600,
    )  # fmt: skip


def priority_class(name: str, value: int, *, preempts: bool) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value,
        "preemptionPolicy": "PreemptLowerPriority" if preempts else "Never",
    }  # fmt: skip


def quota(namespace: str, hard: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpus", "namespace": namespace},
            "spec": {"hard": dict(hard)}}  # fmt: skip


def limit_range(namespace: str) -> dict[str, Any]:
    limits = {"type": "Container", "default": {"cpu": "2", "memory": "8Gi"}, "defaultRequest": {"cpu": "1", "memory": "4Gi"}}
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": namespace},
            "spec": {"limits": [limits]}}  # fmt: skip


def governed(namespace: str, **hard: str) -> list[dict[str, Any]]:
    """A namespace as the practices want it: a GPU quota and a LimitRange."""
    hard = {"requests.nvidia.com/gpu": "8", **hard}
    return [namespace_object(namespace), quota(namespace, hard), limit_range(namespace)]


def gpu_job(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    template = sim_pod(namespace, name, CLEAN_A100, 0)
    pod_spec = {k: v for k, v in pod_object(template)["spec"].items() if k != "nodeName"} | {"restartPolicy": "Never"}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": pod_spec}, **spec}}  # fmt: skip


async def wait_quotas_counted(admin: RestClient, namespaces: Iterable[str]) -> None:
    """Quota admission refuses pods until the quota controller has counted the quota once."""
    for namespace in namespaces:

        async def status(ns: str = namespace) -> dict[str, Any]:
            return (await admin.get("ResourceQuota", "gpus", ns)).body.get("status", {})

        await poll(status, lambda s: "hard" in s, what=f"{namespace}/gpus counted")


# -- the clean cluster ---------------------------------------------------------------------------------

CLEAN_A100 = sim_node("clean-a100-0", A100_80GB, "a100-train", 4)
CLEAN_L4_SHARED = replace(
    sim_node("clean-l4-ts", L4, "l4-infer", 2, **{"nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.sharing-strategy": "time-slicing"}),
    resources={"nvidia.com/gpu": 8},
)
CLEAN_H100 = sim_node("clean-h100-0", H100_80GB, "h100-mig", 2)  # objects from mig_node_object (mixed, all-1g.10gb)

CLEAN_PODS = (
    sim_pod("clean-serve", "infer-0", CLEAN_A100, 0),
    sim_pod("clean-serve", "shared-0", CLEAN_L4_SHARED, 0),
    sim_pod("clean-batch", "train-0", CLEAN_H100, 0, priority="batch-low", resource="nvidia.com/mig-1g.10gb"),
)
CLEAN_FLEET = Fleet(nodes=(CLEAN_A100, CLEAN_L4_SHARED, CLEAN_H100), pods=CLEAN_PODS, namespaces=(), pdbs=())


def clean_objects() -> list[dict[str, Any]]:
    h100 = mig_node_object(
        CLEAN_H100.name, product=H100, gpus=2, strategy="mixed", applied="all-1g.10gb",
        labels={POOL_LABEL: "h100"}, taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    )  # fmt: skip
    l4 = node_object(CLEAN_L4_SHARED)
    l4["metadata"]["annotations"] = {**l4["metadata"].get("annotations", {}), **TIME_SLICING_NOTE}
    return [
        priority_class("inference-critical", 1_000_000, preempts=True),
        priority_class("batch-low", 100, preempts=False),
        *governed("clean-serve"),
        *governed("clean-batch", **{"requests.nvidia.com/mig-1g.10gb": "4"}),
        node_object(CLEAN_A100), l4, h100,
    ]  # fmt: skip


def clean_pods() -> list[dict[str, Any]]:
    # A suspended GPU Job that cleans up after itself: no finding.
    return [pod_object(p) for p in CLEAN_PODS] + [gpu_job("clean-batch", "nightly", suspend=True, ttlSecondsAfterFinished=3600)]


# -- the problems, one per check -----------------------------------------------------------------------

SEED_BARE = sim_node("seed-a100-bare", A100_80GB, "a100-train", 2, tainted=False)  # nodes.gpu-taint
SEED_DARK = sim_node("seed-dark", A100_80GB, "a100-train", 2)  # metrics.no-dcgm: no exporter serves it
SEED_ANON = sim_node("seed-anon", A100_80GB, "a100-train", 2)  # metrics.no-pod-attribution: exporter without pod labels
SEED_FROZEN = sim_node("seed-frozen", A100_80GB, "a100-train", 2)  # metrics.stale: its DCGM hangs
SEED_SINGLE = sim_node("seed-h100-single", H100_80GB, "h100-mig", 2, **{POOL_LABEL: "h100", "nvidia.com/mig.strategy": "single"})
SEED_TS = replace(sim_node("seed-l4-ts", L4, "l4-infer", 2, **{"nvidia.com/gpu.replicas": "4"}), resources={"nvidia.com/gpu": 8})
MIG_BAD, MIG_STUCK = "seed-mig-bad", "seed-mig-stuck"  # mig.failed, mig.pending (the MIG manager simulator acts)

SEED_PODS = (
    sim_pod("seed-open", "untolerated-0", SEED_BARE, 0, priority=None, tolerate=False),
    sim_pod("seed-idle", "idle-0", CLEAN_A100, 2, behaviour="idle"),
    sim_pod("seed-batch", "spot-0", CLEAN_A100, 1, priority="batch-spot"),
    sim_pod("seed-batch", "anon-0", SEED_ANON, 0),
)
SEED_NODES = (SEED_BARE, SEED_ANON, SEED_FROZEN, SEED_SINGLE, SEED_TS)  # DARK is not served
# The MIG manager's nodes are made by mig_node_object; the exporter serves their two GPUs all the same.
SERVED_MIG = tuple(sim_node(name, H100_80GB, "h100-mig", 2) for name in (MIG_BAD, MIG_STUCK))
SEEDED_FLEET = Fleet(
    nodes=(*CLEAN_FLEET.nodes, *SEED_NODES, *SERVED_MIG), pods=(*CLEAN_PODS, *SEED_PODS), namespaces=(), pdbs=()
)
MEMORY_RULE = "DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_FREE > 0.92"
API_RULES = {"groups": [{"name": "team-memory", "rules": [{"alert": "TeamGpuMemoryHigh", "expr": MEMORY_RULE}]}]}
RULE_FILE = f"""\
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {{name: team-rules}}
spec:
  groups:
  - name: team-file
    rules:
    - alert: TeamFileMemoryHigh
      expr: {MEMORY_RULE}
"""


def seeded_objects() -> list[dict[str, Any]]:
    mig = [
        mig_node_object(name, product=H100, gpus=2, strategy="mixed", labels={POOL_LABEL: "h100-lab"},
                        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
        for name in (MIG_BAD, MIG_STUCK)
    ]  # fmt: skip
    return [
        priority_class("batch-spot", 50, preempts=True),  # priority.low-preempts
        namespace_object("seed-open"),  # namespaces.gpu-quota, namespaces.limit-range
        *governed("seed-idle"), *governed("seed-batch"), *governed("seed-jobs"),
        *(node_object(n) for n in (*SEED_NODES, SEED_DARK)), *mig,
    ]  # fmt: skip


def seeded_pods() -> list[dict[str, Any]]:
    return [pod_object(p) for p in SEED_PODS] + [gpu_job("seed-jobs", "no-ttl", suspend=True)]  # jobs.no-ttl


def straggler(job: Mapping[str, Any]) -> dict[str, Any]:
    """A pod of a finished Job that is still running with a GPU (jobs.finished-holding-gpus)."""
    pod = pod_object(sim_pod("seed-jobs", "leftover-x", CLEAN_A100, 3))
    meta = job["metadata"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": meta["uid"], "controller": True}
    pod["metadata"]["ownerReferences"] = [owner]
    return pod


async def finished_job(admin: RestClient) -> dict[str, Any]:
    """A Job with nothing to do: the job controller marks it Complete at once."""
    await apply_objects(admin, [gpu_job("seed-jobs", "leftover", completions=0, ttlSecondsAfterFinished=86400)])

    async def read() -> dict[str, Any]:
        return (await admin.get("Job", "leftover", "seed-jobs")).body

    def complete(job: dict[str, Any]) -> bool:
        return any(c["type"] == "Complete" and c["status"] == "True" for c in job.get("status", {}).get("conditions", []))

    return await poll(read, complete, what="Job seed-jobs/leftover Complete")
