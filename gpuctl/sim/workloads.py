"""The workloads of one "cycle" of each pool: who runs what, where, doing what.

A pool's nodes are laid out in cycles of `PoolSpec.nodes` nodes (the
scale=1 pool); each cycle carries a copy of these workloads, so a bigger
fleet looks like the small one repeated. Each story the demo should tell
has a workload: a training job spanning nodes, a hot GPU, a full memory,
notebooks idle for hours, inference behind a PDB, pods pending because
their GPUs are fragmented across nodes, a namespace near its quota.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Behaviour = Literal["busy", "idle", "hot", "memory-full", "bursty"]
BEHAVIOURS: tuple[Behaviour, ...] = ("busy", "idle", "hot", "memory-full", "bursty")

GPU = "nvidia.com/gpu"
MIG_1G = "nvidia.com/mig-1g.10gb"
MIG_2G = "nvidia.com/mig-2g.20gb"
MIG_3G = "nvidia.com/mig-3g.40gb"

MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    name: str
    kind: Literal["Job", "CronJob", "Deployment", "StatefulSet"] | None  # None: a bare pod
    pool: str
    requests: Mapping[str, int]  # per pod
    placements: tuple[int | None, ...]  # node offset within the cycle per pod; None = pending
    behaviours: tuple[Behaviour, ...]  # per pod, or one for all
    container: str
    priority_class: str | None
    age_s: float
    idle_s: float | None = None  # for idle pods: how long before the start they went idle
    indexed: bool = False  # Indexed Job: pod names carry the completion index
    pdb: bool = False  # protected by a PodDisruptionBudget (minAvailable = replicas - 1)

    def behaviour(self, i: int) -> Behaviour:
        return self.behaviours[i] if len(self.behaviours) > 1 else self.behaviours[0]


@dataclass(frozen=True, slots=True)
class NamespaceSpec:
    name: str
    team: str
    # quota hard = ceil(used / fill): the quota follows the fleet's size, and
    # a fill near 1 makes a namespace that is nearly out of quota.
    fill: float | None  # None: no ResourceQuota
    mig_quota: bool = False  # also a quota on each MIG resource it uses


NAMESPACES: tuple[NamespaceSpec, ...] = (
    NamespaceSpec("ml-research", "research", 0.75),
    NamespaceSpec("team-a", "vision", 0.9),
    NamespaceSpec("team-b", "data-eng", 0.625),
    NamespaceSpec("inference-prod", "serving", 0.75, mig_quota=True),
    NamespaceSpec("sandbox", "platform", None),
)

_TRAIN, _INFER, _BATCH = "training-standard", "inference-critical", "batch-low"

CYCLES: Mapping[str, tuple[Workload, ...]] = {
    # 4 nodes x 8 A100: 28 of 32 GPUs held, 2 free on each of the last two
    # nodes, so the 8-GPU pods of llm-pretrain-70b cannot fit anywhere.
    "a100-train": (
        Workload("ml-research", "llm-pretrain-7b", "Job", "a100-train", {GPU: 8}, (0, 1), ("busy",),
                 "trainer", _TRAIN, 7 * HOUR, indexed=True),
        Workload("ml-research", "sweep-lr-3e4", "Job", "a100-train", {GPU: 4}, (2,), ("hot",),
                 "trainer", _TRAIN, 90 * MIN),
        Workload("team-a", "resnet-finetune", "Job", "a100-train", {GPU: 2}, (2,), ("bursty",),
                 "trainer", _TRAIN, 50 * MIN),
        Workload("team-a", "vit-large-pretrain", "Job", "a100-train", {GPU: 4}, (3,), ("memory-full",),
                 "trainer", _TRAIN, 3 * HOUR),
        Workload("sandbox", "jupyter-alice", None, "a100-train", {GPU: 2}, (3,), ("idle",),
                 "notebook", None, 6 * HOUR, idle_s=3 * HOUR),
        Workload("ml-research", "llm-pretrain-70b", "Job", "a100-train", {GPU: 8}, (None, None), ("busy",),
                 "trainer", _TRAIN, 20 * MIN, indexed=True),
    ),
    # node 0 all-balanced (16x1g.10gb, 8x2g.20gb, 8x3g.40gb), node 1 all-3g.40gb (16x3g.40gb).
    "h100-mig": (
        Workload("inference-prod", "embeddings", "Deployment", "h100-mig", {MIG_1G: 1}, (0,) * 6,
                 ("bursty", "busy", "bursty", "busy", "busy", "bursty"), "server", _INFER, 3 * DAY),
        Workload("team-a", "seg-ablation", "Job", "h100-mig", {MIG_1G: 1}, (0,) * 4, ("busy",),
                 "trainer", _TRAIN, 40 * MIN),
        Workload("ml-research", "eval-harness", "Job", "h100-mig", {MIG_2G: 1}, (0, 0, 0), ("bursty",),
                 "eval", _TRAIN, 25 * MIN, indexed=True),
        Workload("sandbox", "jupyter-bob", None, "h100-mig", {MIG_3G: 1}, (0,), ("idle",),
                 "notebook", None, 2 * HOUR, idle_s=50 * MIN),
        Workload("inference-prod", "llm-chat", "Deployment", "h100-mig", {MIG_3G: 1}, (1, 1, 1, 1),
                 ("busy", "busy", "memory-full", "busy"), "vllm", _INFER, 5 * DAY, pdb=True),
        Workload("ml-research", "rl-rollout", "Job", "h100-mig", {MIG_3G: 1}, (1, 1, 1, 1), ("busy",),
                 "actor", _TRAIN, 1 * HOUR, indexed=True),
    ),
    # 3 nodes x 4 L4: one GPU free on each of the last two nodes, so triton-2
    # (2 GPUs) stays pending. clip-embed crosses the 30-minute idle mark 5
    # minutes into the demo.
    "l4-infer": (
        Workload("inference-prod", "whisper-asr", "Deployment", "l4-infer", {GPU: 1}, (0, 0, 1),
                 ("bursty", "busy", "busy"), "server", _INFER, 2 * DAY),
        Workload("inference-prod", "triton", "StatefulSet", "l4-infer", {GPU: 2}, (0, 1, None),
                 ("busy", "memory-full", "busy"), "tritonserver", _INFER, 9 * DAY),
        Workload("team-a", "reranker", "Deployment", "l4-infer", {GPU: 1}, (2, 2), ("idle",),
                 "server", None, 1 * DAY, idle_s=40 * MIN),
        Workload("team-a", "clip-embed", "Deployment", "l4-infer", {GPU: 1}, (2,), ("idle",),
                 "server", None, 6 * HOUR, idle_s=25 * MIN),
    ),
    # 2 nodes x 4 T4: the 4-GPU batch-infer pod finds at most 2 free on a node.
    "t4-batch": (
        Workload("team-b", "etl-embed", "Job", "t4-batch", {GPU: 1}, (0, 0, 0), ("busy",),
                 "worker", _BATCH, 35 * MIN),
        Workload("team-b", "nightly-report", "CronJob", "t4-batch", {GPU: 1}, (0,), ("idle",),
                 "report", _BATCH, 150 * MIN, idle_s=2 * HOUR),
        Workload("team-b", "video-transcode", "Job", "t4-batch", {GPU: 1}, (1, 1), ("bursty",),
                 "ffmpeg", _BATCH, 15 * MIN),
        Workload("team-b", "batch-infer", "Job", "t4-batch", {GPU: 4}, (None,), ("busy",),
                 "worker", _BATCH, 10 * MIN),
    ),
}

# Which (pool, node offset) gets the GPU that reports an XID error, and which XID.
XID_FAULT: tuple[str, int, int] = ("a100-train", 3, 48)  # 48: double-bit ECC error
