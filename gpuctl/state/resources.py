"""Reading nvidia.com/* resource maps: whole GPUs, time-slices and MIG instances, terminated phases.

Time-slicing (NVIDIA's device plugin, `sharing.timeSlicing`) advertises each
physical GPU `replicas` times, either as `nvidia.com/gpu` itself or, with
`renameByDefault`, as `nvidia.com/gpu.shared`; GPU feature discovery writes the
replicas to the `nvidia.com/gpu.replicas` label and the physical count to
`nvidia.com/gpu.count`. A request for such a resource is a slice of a GPU
shared with other pods, never a GPU of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

GPU = "nvidia.com/gpu"
SHARED_GPU = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"
TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})


def whole_gpus(resources: Mapping[str, int]) -> int:
    """`nvidia.com/gpu`: whole GPUs, unless the node time-slices them (see `NodeGpus.gpu_is_shared`)."""
    return resources.get(GPU, 0)


def shared_slices(resources: Mapping[str, int]) -> int:
    """`nvidia.com/gpu.shared`: always time-slices."""
    return resources.get(SHARED_GPU, 0)


def mig_instances(resources: Mapping[str, int]) -> dict[str, int]:
    return {name: count for name, count in resources.items() if name.startswith(MIG_PREFIX) and count}


def is_terminated(phase: str) -> bool:
    return phase in TERMINATED_PHASES


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number > 0 else None


@dataclass(frozen=True, slots=True)
class NodeGpus:
    """A node's GPU resources in physical GPUs and time-slices."""

    capacity: int  # physical GPUs advertised whole or as slices (MIG-partitioned GPUs not included)
    allocatable: int
    replicas: int  # slices per physical GPU; 1 = not shared
    slices_allocatable: int
    gpu_is_shared: bool  # `nvidia.com/gpu` itself is time-sliced: requests for it are slices

    @classmethod
    def of(cls, labels: Mapping[str, str], capacity: Mapping[str, int], allocatable: Mapping[str, int]) -> NodeGpus:
        replicas = _positive_int(labels.get(REPLICAS_LABEL)) or 1
        # renameByDefault=false: the replicas are advertised as nvidia.com/gpu itself.
        gpu_is_shared = replicas > 1 and not shared_slices(capacity)
        if gpu_is_shared:
            whole_cap = whole_alloc = 0
            slices_cap, slices_alloc = whole_gpus(capacity), whole_gpus(allocatable)
        else:
            whole_cap, whole_alloc = whole_gpus(capacity), whole_gpus(allocatable)
            slices_cap, slices_alloc = shared_slices(capacity), shared_slices(allocatable)
        shared_cap = shared_alloc = 0
        if slices_cap:
            # The replicas divide the slices back into GPUs; GFD's physical count bounds that when the
            # replicas label is missing (and may count more GPUs than are shared, e.g. MIG ones).
            shared_cap = math.ceil(slices_cap / replicas)
            counted = _positive_int(labels.get(GPU_COUNT_LABEL))
            if counted is not None:
                shared_cap = min(shared_cap, counted)
            # Unhealthy GPUs take all their replicas out of allocatable.
            shared_alloc = min(shared_cap, slices_alloc // replicas)
        return cls(
            capacity=whole_cap + shared_cap,
            allocatable=whole_alloc + shared_alloc,
            replicas=replicas,
            slices_allocatable=slices_alloc,
            gpu_is_shared=gpu_is_shared,
        )
