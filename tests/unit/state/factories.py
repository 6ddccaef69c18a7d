"""Small builders for raw records and samples, so tests read as fleets, not dict soup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpuctl.model import PodRef
from gpuctl.state.records import GpuSample, MetricsBatch, NodeRecord, PodRecord, QuotaRecord

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def node(
    name: str, gpus: int = 8, *, labels: dict[str, str] | None = None, ready: bool = True, mig: dict[str, int] | None = None
) -> NodeRecord:
    resources = {"nvidia.com/gpu": gpus, **{f"nvidia.com/mig-{k}": v for k, v in (mig or {}).items()}}
    return NodeRecord(
        name=name,
        labels={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", **(labels or {})},
        capacity=resources,
        allocatable=resources,
        ready=ready,
        created=T0 - timedelta(days=1),
    )


def pod(
    ns: str,
    name: str,
    node_name: str | None = "n1",
    gpus: int = 1,
    *,
    phase: str = "Running",
    created: datetime = T0,
    mig: dict[str, int] | None = None,
) -> PodRecord:
    requests = {"nvidia.com/gpu": gpus} if gpus else {}
    requests.update({f"nvidia.com/mig-{k}": v for k, v in (mig or {}).items()})
    return PodRecord(
        namespace=ns,
        name=name,
        node=node_name,
        phase=phase,
        gpu_requests=requests,
        created=created,
        owner_kind="Job",
        owner_name=name,
    )


def quota(ns: str, hard: float, used: float, key: str = "requests.nvidia.com/gpu", name: str = "gpu") -> QuotaRecord:
    return QuotaRecord(namespace=ns, name=name, hard={key: hard}, used={key: used})


def sample(host: str, index: int, util: float | None, holder: str | None = None, **kw: object) -> GpuSample:
    ref = None
    if holder is not None:
        ns, name = holder.split("/")
        ref = PodRef(namespace=ns, name=name)
    return GpuSample(hostname=host, index=index, pod=ref, util_pct=util, **kw)  # type: ignore[arg-type]


def batch(seconds: float, *samples: GpuSample, rejected: int = 0) -> MetricsBatch:
    return MetricsBatch(at=at(seconds), samples=tuple(samples), rejected=rejected)
