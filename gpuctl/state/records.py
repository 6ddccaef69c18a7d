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

from gpuctl.model import PodRef, Taint


class Kind(str, Enum):
    NODE = "node"
    POD = "pod"
    QUOTA = "resourcequota"
    NAMESPACE = "namespace"


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
    owner_kind: str | None = None
    owner_name: str | None = None
    priority_class: str | None = None
    created: datetime | None = None
    deleting: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class QuotaRecord:
    namespace: str
    name: str
    hard: Mapping[str, float]  # GPU-related quota keys only, e.g. requests.nvidia.com/gpu
    used: Mapping[str, float]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class NamespaceRecord:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name


Record = NodeRecord | PodRecord | QuotaRecord | NamespaceRecord


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

    @property
    def key(self) -> str:
        base = f"{self.hostname}/{self.index}"
        return base if self.mig_instance is None else f"{base}/mig{self.mig_instance}"


@dataclass(frozen=True, slots=True)
class MetricsBatch:
    """Everything one metrics refresh returned: a full replacement, not a delta."""

    at: datetime  # when the readings were taken, by the source's clock (Prometheus: its evaluation time); the idle clock runs on it
    samples: tuple[GpuSample, ...]
    rejected: int = 0  # series dropped for missing/malformed labels
