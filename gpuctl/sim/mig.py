"""A simulated node's GPUs after NVIDIA's MIG manager applies a mig-parted config.

What the demo's MIG manager (gpuctl.sim.world) changes on a node once a
reconfiguration succeeds: its devices (MIG instances per GPU), the resources
the device plugin advertises for them under the node's strategy, and GPU
feature discovery's labels. The layout itself comes from gpuctl.migparted,
the same rules relabel-mig plans with and the test bed's MIG manager applies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from gpuctl.migparted import (
    GPU_PRODUCT_LABEL,
    MIG_CONFIG_LABEL,
    MIG_STATE_LABEL,
    MIG_STRATEGY_LABEL,
    GpuLayout,
    MigGpuModel,
    MigStrategy,
    advertised_resources,
    gpu_model,
)
from gpuctl.sim import catalog
from gpuctl.sim.fleet import MIG_PREFIX, SimGpu, SimNode, mig_resource_labels


def model_of(node: SimNode) -> MigGpuModel | None:
    return gpu_model(node.labels.get(GPU_PRODUCT_LABEL, ""))


def strategy_of(node: SimNode) -> MigStrategy:
    value = node.labels.get(MIG_STRATEGY_LABEL)
    return cast(MigStrategy, value) if value in ("single", "mixed") else "none"


def layout_of(node: SimNode) -> tuple[GpuLayout, ...]:
    """Each physical GPU's MIG instances by profile (None: MIG off)."""
    layout: list[dict[str, int] | None] = [None] * int(node.labels.get("nvidia.com/gpu.count", "0"))
    for gpu in node.gpus:
        if gpu.mig_profile is not None:
            per_gpu = layout[gpu.index] = layout[gpu.index] or {}
            per_gpu[gpu.mig_profile] = per_gpu.get(gpu.mig_profile, 0) + 1
    return tuple(layout)


def with_state(node: SimNode, state: str) -> SimNode:
    return replace(node, labels={**node.labels, MIG_STATE_LABEL: state})


def relaid(node: SimNode, config: str, layout: tuple[GpuLayout, ...]) -> SimNode:
    """`node` once `config` (laid out as `layout`) is applied: devices, resources, labels, state success."""
    strategy = strategy_of(node)
    physical = {gpu.index: gpu for gpu in node.gpus}
    full_mem = catalog.MODELS_BY_NAME[physical[0].model].mem_mib
    gpus: list[SimGpu] = []
    for index, gpu_layout in enumerate(layout):
        base = physical[index]
        if gpu_layout is None or strategy == "none":  # without a MIG strategy the device plugin hands out whole GPUs
            gpus.append(SimGpu(node.name, index, base.uuid, base.pci_bus_id, base.model, full_mem))
            continue
        for profile, instance in _instances(config, gpu_layout):
            mem = catalog.H100_PROFILES[profile].mem_mib
            gpus.append(SimGpu(node.name, index, base.uuid, base.pci_bus_id, base.model, mem, profile, instance))
    resources = advertised_resources(layout, strategy)
    labels = {k: v for k, v in node.labels.items() if not k.startswith(MIG_PREFIX)}
    labels |= mig_resource_labels(resources) if strategy == "mixed" else {}
    labels |= {MIG_CONFIG_LABEL: config, MIG_STATE_LABEL: "success"}
    return replace(node, labels=labels, resources=resources, gpus=tuple(gpus))


def _instances(config: str, gpu_layout: dict[str, int] | GpuLayout) -> list[tuple[str, int]]:
    """(profile, GPU_I_ID) per instance: nvidia-smi's placement for the demo's known layouts, else numbered in order."""
    known = catalog.H100_LAYOUTS.get(config)
    wanted = dict(gpu_layout or {})
    if known is not None and _counts(known) == wanted:
        return list(known)
    return [(profile, 1 + i) for i, profile in enumerate(p for p, n in sorted(wanted.items()) for _ in range(n))]


def _counts(instances: tuple[tuple[str, int], ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for profile, _ in instances:
        counts[profile] = counts.get(profile, 0) + 1
    return counts
