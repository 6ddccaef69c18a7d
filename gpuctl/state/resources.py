"""Reading nvidia.com/* resource maps: whole GPUs vs MIG instances, terminated phases."""

from __future__ import annotations

from collections.abc import Mapping

GPU = "nvidia.com/gpu"
# Time-slicing with renameByDefault advertises shared replicas under this name.
GPU_RESOURCES: tuple[str, ...] = (GPU, "nvidia.com/gpu.shared")
MIG_PREFIX = "nvidia.com/mig-"
TERMINATED_PHASES = frozenset({"Succeeded", "Failed"})


def whole_gpus(resources: Mapping[str, int]) -> int:
    return sum(resources.get(name, 0) for name in GPU_RESOURCES)


def mig_instances(resources: Mapping[str, int]) -> dict[str, int]:
    return {name: count for name, count in resources.items() if name.startswith(MIG_PREFIX) and count}


def is_terminated(phase: str) -> bool:
    return phase in TERMINATED_PHASES
