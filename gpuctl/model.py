"""The joined, immutable picture of a GPU cluster that every consumer reads.

`Snapshot` is the one public shape of gpuctl's state: the TUI renders it, the
bot answers from it, playbooks plan against it, and `gpuctl snapshot --json`
prints it (the JSON schema is `Snapshot.model_json_schema()`; keep field names
stable). Sources never build a Snapshot themselves: they feed raw records to
the store (`gpuctl.state`), which joins them.

Units are fixed so nobody has to guess: percent 0-100, MiB, degrees Celsius,
watts, seconds, timezone-aware UTC datetimes.
"""

from __future__ import annotations

import sys
from datetime import datetime
from operator import attrgetter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


def gpu_key(node: str, index: int, mig_instance: int | None) -> str:
    """A GPU's key, `node/index` or `node/index/migN`, interned: the indexes, rows and history that
    keep it share one copy rather than one each (12,500 GPUs)."""
    base = f"{node}/{index}"
    return sys.intern(base if mig_instance is None else f"{base}/mig{mig_instance}")


# A Gpu's (node, index, MIG instance), what its key is made of: read in C, at a fraction of the key's cost.
gpu_place = attrgetter("node", "index", "mig_instance")


def namespaced_key(namespace: str, name: str) -> str:
    """`namespace/name`, interned (see gpu_key)."""
    return sys.intern(f"{namespace}/{name}")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PodRef(Frozen):
    """The pod (and container) that holds a GPU, as DCGM or the device plugin reports it."""

    namespace: str
    name: str
    container: str | None = None

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)


class Gpu(Frozen):
    """One physical GPU, or one MIG instance of it when the GPU is partitioned."""

    node: str
    pool: str
    index: int = Field(description="GPU index on the node (dcgm-exporter's `gpu` label)")
    uuid: str | None = None
    model: str | None = Field(None, description="e.g. 'NVIDIA A100-SXM4-80GB'")
    mig_profile: str | None = Field(None, description="e.g. '1g.10gb'; None for a whole GPU")
    mig_instance: int | None = Field(None, description="GPU instance id (GPU_I_ID)")
    util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    xid: int | None = Field(None, description="last XID error seen (DCGM reports the last value, not a count)")
    pod: PodRef | None = None
    busy: bool = Field(
        False, description="held by a pod and at or above the idle threshold in the latest sample; never when stale"
    )
    idle: bool = Field(
        False, description="held by a pod and under the idle threshold for the whole idle window; never when stale"
    )
    idle_for_s: float | None = Field(
        None,
        description="measured seconds of the current under-threshold streak (first to latest reading, no gap over the"
        " grace period); None when busy, stale or unknown",
    )
    stale: bool = Field(
        False,
        description="its readings are not recent: no sample, or no power or temperature reading that moved, within "
        "the stale window "
        "(a target no longer scraped, a hung DCGM), or no metrics refresh succeeded for a while; "
        "its values are the last ones seen, and it is neither busy nor idle",
    )

    @property
    def key(self) -> str:
        return gpu_key(self.node, self.index, self.mig_instance)

    @property
    def mem_used_pct(self) -> float | None:
        if self.mem_used_mib is None or not self.mem_total_mib:
            return None
        return 100.0 * self.mem_used_mib / self.mem_total_mib


class Taint(Frozen):
    key: str
    value: str | None = None
    effect: str


class Node(Frozen):
    name: str
    pool: str
    gpu_model: str | None = Field(None, description="nvidia.com/gpu.product")
    gpu_capacity: int = Field(
        0,
        description="physical GPUs advertised whole (nvidia.com/gpu) or as time-slices (counted once, not per replica);"
        " MIG-partitioned GPUs are in mig_allocatable instead",
    )
    gpu_allocatable: int = Field(0, description="allocatable physical GPUs, counted as gpu_capacity is")
    gpu_requested: int = Field(
        0, description="whole GPUs requested by non-terminated pods on the node (time-slices are in gpu_slices_requested)"
    )
    gpu_replicas: int = Field(
        1, description="time-slices per physical GPU (nvidia.com/gpu.replicas); 1 = GPUs not shared"
    )
    gpu_slices_allocatable: int = Field(
        0, description="allocatable time-slices: nvidia.com/gpu.shared, or nvidia.com/gpu when gpu_replicas > 1"
    )
    gpu_slices_requested: int = Field(0, description="time-slices requested by non-terminated pods on the node")
    mig_allocatable: dict[str, int] = Field(default_factory=dict, description="e.g. {'nvidia.com/mig-1g.10gb': 7}")
    mig_requested: dict[str, int] = Field(default_factory=dict)
    mig_capable: bool = False
    mig_config: str | None = Field(None, description="nvidia.com/mig.config")
    mig_config_state: str | None = Field(None, description="nvidia.com/mig.config.state: pending, success, failed, ...")
    taints: tuple[Taint, ...] = ()
    cordoned: bool = False
    ready: bool = False
    created: datetime | None = None
    uid: str | None = Field(None, description="metadata.uid; None from sources without API objects (demo)")
    resource_version: str | None = Field(
        None, description="metadata.resourceVersion as this snapshot saw it: the precondition for a conditional write"
    )
    metrics_stale: bool = Field(False, description="every GPU on it with readings is stale (see Gpu.stale)")

    @property
    def gpus_sliced_in_use(self) -> int:
        """Physical GPUs its requested time-slices take up: each slice is 1/gpu_replicas of a GPU, rounded up."""
        return -(-self.gpu_slices_requested // self.gpu_replicas)


class Pool(Frozen):
    name: str
    nodes: int
    nodes_ready: int
    gpus_total: int = Field(description="allocatable physical GPUs (time-sliced ones counted once) plus MIG instances")
    gpus_allocated: int = Field(
        description="requested whole GPUs and MIG instances, plus time-sliced GPUs by their share of slices requested"
        " (Node.gpus_sliced_in_use)"
    )
    gpus_idle: int = Field(description="allocated GPUs flagged idle")
    gpu_slices_total: int = Field(0, description="allocatable time-slices of shared GPUs")
    gpu_slices_allocated: int = Field(0, description="time-slices requested")
    gpu_models: tuple[str, ...] = ()


class Owner(Frozen):
    """One controller in a pod's chain of owners, from its ownerReferences."""

    kind: str = Field(description="e.g. ReplicaSet, Deployment, Job, CronJob, StatefulSet")
    name: str
    uid: str | None = Field(None, description="the controller's metadata.uid, as the ownerReference names it")


class GpuPod(Frozen):
    """A pod that requests GPUs (whole GPUs or MIG instances)."""

    namespace: str
    name: str
    node: str | None = None
    phase: str
    gpus: int = Field(
        description="nvidia.com/gpu requested (limits when requests are absent); on a node that time-slices"
        " nvidia.com/gpu (Node.gpu_replicas > 1) these are slices"
    )
    gpu_slices: int = Field(0, description="nvidia.com/gpu.shared requested: time-slices of a shared GPU")
    mig: dict[str, int] = Field(default_factory=dict, description="MIG resources requested")
    owner_kind: str | None = Field(
        None, description="top controller gpuctl knows of (the last of `owners`): Deployment, CronJob, Job, StatefulSet, ..."
    )
    owner_name: str | None = None
    priority_class: str | None = None
    created: datetime | None = None
    gpu_keys: tuple[str, ...] = Field((), description="keys of the Gpu entries this pod holds, from metrics")
    util_pct: float | None = Field(None, description="mean utilisation over the GPUs it holds")
    idle: bool = False
    idle_for_s: float | None = None
    uid: str | None = Field(None, description="metadata.uid (an eviction's precondition); None from the demo source")
    resource_version: str | None = Field(None, description="metadata.resourceVersion as this snapshot saw it")
    labels: dict[str, str] = Field(default_factory=dict, description="all the pod's labels")
    ready: bool = Field(False, description="the pod's Ready condition is True")
    owners: tuple[Owner, ...] = Field(
        (),
        description="controllers from the pod's own up, read from ownerReferences: ReplicaSet then Deployment, "
        "Job then CronJob; a chain stops where gpuctl cannot see further (see WatchHealth.unreadable)",
    )
    pdbs: tuple[str, ...] = Field(
        (),
        description="names of the PodDisruptionBudgets (in its namespace) the Eviction API checks for this pod; "
        "with more than one the Eviction API refuses to evict it (500)",
    )
    disruption_allowed: bool | None = Field(
        None,
        description="an eviction would pass the budget check now: no budget, its one budget allows a disruption, "
        "or the pod is not Running (evicted without a check); false with more than one budget; "
        "null when budgets are unknown (not listed yet, or not readable)",
    )

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)

    @property
    def gpus_total(self) -> int:
        """Devices requested: whole GPUs (or slices), time-slices and MIG instances."""
        return self.gpus + self.gpu_slices + sum(self.mig.values())


class NamespaceUsage(Frozen):
    name: str
    gpu_quota_hard: float | None = Field(
        None,
        description="requests.nvidia.com/gpu hard limit, the lowest among the namespace's unscoped ResourceQuotas;"
        " None when none has one (scoped quotas, and limits./bare nvidia.com/gpu keys, which Kubernetes does not"
        " enforce for extended resources, are not counted)",
    )
    gpu_quota_used: float = Field(0, description="requests.nvidia.com/gpu used, as the quota with that limit counts it")
    mig_quota_hard: dict[str, float] = Field(
        default_factory=dict, description="per MIG resource, e.g. {'nvidia.com/mig-1g.10gb': 8}: lowest unscoped hard limit"
    )
    mig_quota_used: dict[str, float] = Field(default_factory=dict, description="per MIG resource with a quota: used")
    gpus_requested: int = Field(
        0, description="devices requested by its running and pending pods: whole GPUs, time-slices and MIG instances"
    )
    gpus_busy: int = Field(0, description="held GPUs at or above the idle threshold now")
    gpus_idle: int = Field(0, description="held GPUs flagged idle")
    gpu_hours: float = Field(0, description="GPU-hours held by its current pods since they were created")


class PodDisruptionBudget(Frozen):
    """A PodDisruptionBudget as the disruption controller last reported it."""

    namespace: str
    name: str
    selector: str | None = Field(
        None,
        description="kubectl-style, e.g. 'app=vllm,tier in (a,b)'; '' for the empty selector (every pod of the "
        "namespace); null for none or an invalid one (no pod)",
    )
    min_available: str | None = Field(None, description="an integer or a percentage, as written")
    max_unavailable: str | None = None
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0
    observed: bool = Field(
        False, description="the controller has seen its latest spec; until then the Eviction API answers 429 for its pods"
    )
    uid: str | None = None
    resource_version: str | None = None

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)


# How the idle history was read: gpuctl's recording rules (two instant reads), or subqueries over the window.
HistoryVia = Literal["recording-rules", "subqueries"]


class MetricsHealth(Frozen):
    """How the metrics feed is doing. `stale` is about the feed as a whole; `Gpu.stale` says which readings are old."""

    source: Literal["prometheus", "nvml", "demo", "none"]
    last_success: datetime | None = None
    age_s: float | None = None
    stale: bool = Field(True, description="no refresh yet, the last one failed, or it is older than the stale window")
    error: str | None = None
    series_rejected: int = Field(0, description="series dropped for missing or malformed labels in the last refresh")
    gpus_reported: int = Field(0, description="GPUs (MIG instances counted) the last refresh had readings for")
    gpus_missing: int = Field(
        0,
        description="GPUs of listed nodes that the last full refresh reported and the latest did not, while refreshes"
        " bring fewer than half as many GPUs as that one (a scrape gap, a Prometheus restart): the picture is partial,"
        " however fresh; 0 otherwise",
    )
    missing_since: datetime | None = Field(None, description="the first refresh that brought too few GPUs; None when none is missing")
    retry_at: datetime | None = Field(None, description="when the next refresh is tried after a failure; None when not failing")
    gpus_stale: int = Field(0, description="GPUs whose readings are stale (Gpu.stale)")
    unconfirmed: str | None = Field(
        None,
        description="why the last refresh could not check which readings are fresh (e.g. Prometheus did not answer"
        " the freshness query in time): its readings came, all marked stale (neither busy nor idle); None when checked",
    )
    unmatched_hosts: int = Field(
        0, description="hosts in the metrics that match no Kubernetes node (another cluster's series? see --metrics-selector)"
    )
    history_error: str | None = Field(
        None, description="why the idle-history query failed; idle streaks start from gpuctl's own start until it loads"
    )
    history_retry_at: datetime | None = Field(
        None, description="when the failed idle-history query is tried again; None once loaded or when not failing"
    )
    history_pending: bool = Field(
        False,
        description="the idle-history query is out and has not answered yet, or goes out again with the next refresh"
        " after a failed one (a live view shows readings first):"
        " until it does, idle streaks count only from gpuctl's start, so idle_for_s is a lower bound and a GPU idle"
        " for longer may not be flagged idle yet",
    )
    history_via: HistoryVia | None = Field(
        None,
        description="how the idle history was read: from gpuctl's recording rules (deploy/prometheus/gpuctl-rules.yaml,"
        " group gpuctl-history) or with subqueries over the idle window (dearer for Prometheus); None until it loads",
    )
    history_fallback: str | None = Field(
        None,
        description="why the idle history was read with subqueries rather than the recording rules (not loaded, not"
        " current, another threshold, not yet running for the history's look-back while Prometheus holds older samples);"
        " None when read from the rules or"
        " not yet loaded",
    )


class WatchHealth(Frozen):
    source: Literal["kubernetes", "demo", "none"]
    connected: bool = False
    context: str | None = None
    last_event: datetime | None = None
    relists: int = 0
    error: str | None = None
    retry_at: datetime | None = Field(None, description="when the next reconnect is tried; None while connected")
    unreadable: tuple[str, ...] = Field(
        (),
        description="resources RBAC does not let gpuctl list, so their part of the picture is missing: "
        "resourcequotas (no quotas), replicasets and jobs (pods show their own controller, not its owner), "
        "poddisruptionbudgets (disruption_allowed is null)",
    )
    objects_skipped: int = Field(
        0, description="objects left out because they could not be read (an odd object or a gpuctl bug; logged once each)"
    )


class SourceFailure(Frozen):
    """A source that stopped on an unexpected error (a bug, not an outage: outages are retried).

    Nothing it feeds moves any more: its part of the picture is frozen as of `since`,
    and its WatchHealth / MetricsHealth say so (disconnected / stale, with this error).
    """

    source: str = Field(description="the source's name: kubernetes, prometheus, prometheus-alerts, nvml, demo")
    error: str = Field(description="what it raised, e.g. \"KeyError: 'name'\"")
    since: datetime = Field(description="when it stopped")


class Alert(Frozen):
    name: str
    severity: str | None = None
    state: Literal["firing", "pending", "resolved"] = "firing"
    summary: str | None = None
    node: str | None = None
    gpu: str | None = None
    namespace: str | None = None
    pod: str | None = None
    since: datetime | None = None


class Snapshot(Frozen):
    schema_version: int = SCHEMA_VERSION
    generation: int = Field(0, description="increases by one per published snapshot")
    taken_at: datetime
    idle_threshold_pct: float
    idle_window_s: float
    nodes: tuple[Node, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    pools: tuple[Pool, ...] = ()
    pods: tuple[GpuPod, ...] = ()
    namespaces: tuple[NamespaceUsage, ...] = ()
    alerts: tuple[Alert, ...] = ()
    pdbs: tuple[PodDisruptionBudget, ...] = Field((), description="every PodDisruptionBudget, by namespace/name")
    metrics: MetricsHealth
    watch: WatchHealth
    failures: tuple[SourceFailure, ...] = Field(
        (), description="sources that stopped on an unexpected error; empty when every source runs"
    )


class Changes(Frozen):
    """What differs from the previous snapshot, by key, so consumers redraw only that."""

    gpus: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    pods: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    everything: bool = Field(False, description="first snapshot, or a re-list replaced the whole state")
    same_gpus: bool = Field(
        False,
        description="the snapshot lists the same GPUs in the same order as the previous one (only what they read or"
        " who holds them differs); False when not known",
    )

    @property
    def empty(self) -> bool:
        return not (self.everything or self.gpus or self.nodes or self.pods or self.namespaces)


class Update(Frozen):
    snapshot: Snapshot
    changes: Changes
