"""Raw records that sources hand to the store: only the fields gpuctl needs.

Watchers trim API objects to these as they arrive (memory matters at 10,000
pods); the metrics sources turn each DCGM/NVML series into a `GpuSample`.
They are plain slotted dataclasses, not pydantic models: they are internal,
already validated by the source that made them, and there are many of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from gpuctl.model import PodRef, Taint, gpu_key, namespaced_key
from gpuctl.state.selectors import LabelSelector

NO_LABELS: Mapping[str, str] = {}  # shared by every record without labels; never written to


class Kind(str, Enum):
    NODE = "node"
    POD = "pod"
    QUOTA = "resourcequota"
    NAMESPACE = "namespace"
    REPLICASET = "replicaset"
    JOB = "job"
    PDB = "poddisruptionbudget"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    labels: Mapping[str, str]  # GPU, MIG and pool labels only
    capacity: Mapping[str, int]  # nvidia.com/* resources only
    allocatable: Mapping[str, int]
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = False
    created: datetime | None = None
    uid: str | None = None
    resource_version: str | None = None

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class PodRecord:
    namespace: str
    name: str
    node: str | None
    phase: str
    gpu_requests: Mapping[str, int]  # nvidia.com/* resources, requests else limits
    owner_kind: str | None = None  # the pod's own controller (ownerReference), e.g. ReplicaSet; the join finds the top
    owner_name: str | None = None
    priority_class: str | None = None
    created: datetime | None = None
    deleting: bool = False
    uid: str | None = None
    resource_version: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: NO_LABELS)  # all: budget selectors may use any
    owner_uid: str | None = None
    ready: bool = False  # the Ready condition is True (the Eviction API treats unready pods differently)

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    namespace: str
    name: str
    hard: Mapping[str, float]  # GPU-related quota keys only, e.g. requests.nvidia.com/gpu
    used: Mapping[str, float]
    uid: str | None = None
    resource_version: str | None = None

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ControllerRecord:
    """A ReplicaSet or Job that has a controller of its own: the link from a pod to its top controller.

    Only what the owner chain needs; kept only for objects whose pod template asks for
    nvidia.com/* resources and that have a controller (a ReplicaSet without a Deployment
    is itself the top, which the pod's own ownerReference already says).
    """

    namespace: str
    name: str
    uid: str | None
    owner_kind: str  # its controller, e.g. Deployment, CronJob
    owner_name: str
    owner_uid: str | None = None

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ReplicaSetRecord(ControllerRecord):
    pass


@dataclass(frozen=True, slots=True)
class JobRecord(ControllerRecord):
    pass


@dataclass(frozen=True, slots=True)
class PdbRecord:
    """A PodDisruptionBudget: its selector and what the disruption controller last computed."""

    namespace: str
    name: str
    selector: LabelSelector | None  # None: no selector, or one the API server could not use either
    min_available: str | None = None  # an int or a percentage, as written
    max_unavailable: str | None = None
    disruptions_allowed: int = 0
    current_healthy: int = 0
    desired_healthy: int = 0
    expected_pods: int = 0
    observed: bool = False  # status.observedGeneration >= metadata.generation
    uid: str | None = None
    resource_version: str | None = None

    @property
    def key(self) -> str:
        return namespaced_key(self.namespace, self.name)


Record = NodeRecord | PodRecord | QuotaRecord | NamespaceRecord | ReplicaSetRecord | JobRecord | PdbRecord


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU (or MIG instance) as a metrics source saw it at one instant."""

    hostname: str  # the Kubernetes node name
    index: int
    uuid: str | None = None
    model: str | None = None
    mig_profile: str | None = None
    mig_instance: int | None = None
    pod: PodRef | None = None
    util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_free_mib: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    xid: int | None = None
    util_metric: str | None = None  # the metric util_pct came from (Prometheus), for its history
    # The source found these readings stale: no sample in its stale window, or none that moved.
    stale: bool = False

    @property
    def key(self) -> str:
        return gpu_key(self.hostname, self.index, self.mig_instance)


@dataclass(frozen=True, slots=True)
class MetricsBatch:
    """Everything one metrics refresh returned: a full replacement, not a delta."""

    at: datetime  # when the readings were taken, by the source's clock (Prometheus: its evaluation time); the idle clock runs on it
    samples: tuple[GpuSample, ...]
    rejected: int = 0  # series dropped for missing/malformed labels
    # Why the source could not check these readings' freshness (every sample is then marked stale); None when it did.
    unconfirmed: str | None = None
