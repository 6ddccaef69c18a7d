"""What NVIDIA's GPU operator puts on a MIG-capable node, for the test bed:
GPU feature discovery's labels and the device plugin's resources for a MIG
layout, the operator's `default-mig-parted-config`, and kwok Node objects that
look like a node the operator manages.

Label names and rules follow NVIDIA/k8s-device-plugin internal/lm
(mig-strategy.go: single renames `nvidia.com/gpu.product` to
`<product>-MIG-<profile>` and counts MIG devices, or reports `-MIG-INVALID`
with count 0 for a layout it cannot advertise; mixed adds
`nvidia.com/mig-<profile>.*` labels). Multiprocessor and engine counts are left
out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpuctl.migparted import (
    CONFIG_KEY,
    DEFAULT_CONFIG_MAP,
    GPU_PRODUCT_LABEL,
    MIG_CONFIG_LABEL,
    MIG_MODELS,
    MIG_RESOURCE_PREFIX,
    MIG_STATE_LABEL,
    MIG_STRATEGY_LABEL,
    GpuLayout,
    MigGpuModel,
    MigPartedConfig,
    MigStrategy,
    advertised_resources,
    apply_config,
    default_mig_parted_config,
    mig_instances,
    single_strategy_profile,
)
from testbed.nodes import gpu_node_object

OPERATOR_NAMESPACE = "gpu-operator"
# Where the MIG manager DaemonSet runs (NVIDIA/gpu-operator state-mig-manager).
MIG_MANAGER_DEPLOY_LABEL = "nvidia.com/gpu.deploy.mig-manager"
# Operands the MIG manager pauses while it reconfigures (reconfigure.go).
OPERAND_DEPLOY_LABELS = tuple(
    f"nvidia.com/gpu.deploy.{operand}" for operand in ("device-plugin", "gpu-feature-discovery", "dcgm-exporter", "dcgm", "nvsm")
)
PAUSED = "paused-for-mig-change"
# The simulated hardware: how many physical GPUs the node has.
PHYSICAL_GPUS_ANNOTATION = "testbed.gpuctl.io/gpus"
# Labels GFD rewrites when the layout changes; others with these prefixes are stale.
_MIG_LABEL_PREFIXES = (MIG_RESOURCE_PREFIX, "nvidia.com/gpu.slices.")


def gfd_labels(model: MigGpuModel, layout: Sequence[GpuLayout], strategy: MigStrategy) -> dict[str, str]:
    """GPU feature discovery's GPU and MIG labels for `layout`."""
    labels = {
        MIG_STRATEGY_LABEL: strategy,
        "nvidia.com/mig.capable": "true",
        GPU_PRODUCT_LABEL: model.product,
        "nvidia.com/gpu.count": str(len(layout)),
        "nvidia.com/gpu.memory": str(model.mem_mib),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
    }
    instances = mig_instances(layout)
    if strategy == "single" and any(gpu is not None for gpu in layout):
        name = single_strategy_profile(layout)
        if name is None:
            labels |= {
                GPU_PRODUCT_LABEL: f"{model.product}-MIG-INVALID",
                "nvidia.com/gpu.count": "0",
                "nvidia.com/gpu.replicas": "0",
                "nvidia.com/gpu.sharing-strategy": "",
                "nvidia.com/gpu.memory": "0",
            }
        else:
            profile = model.profiles[name]
            labels |= {
                GPU_PRODUCT_LABEL: f"{model.product}-MIG-{name}",
                "nvidia.com/gpu.count": str(instances[name]),
                "nvidia.com/gpu.memory": str(profile.mem_mib),
                "nvidia.com/gpu.slices.gi": str(profile.slices),
                "nvidia.com/gpu.slices.ci": str(profile.slices),
            }
    elif strategy == "mixed":
        for name, count in sorted(instances.items()):
            profile, prefix = model.profiles[name], f"{MIG_RESOURCE_PREFIX}{name}"
            labels |= {
                f"{prefix}.count": str(count),
                f"{prefix}.memory": str(profile.mem_mib),
                f"{prefix}.product": f"{model.product}-MIG-{name}",
                f"{prefix}.replicas": "1",
                f"{prefix}.sharing-strategy": "none",
                f"{prefix}.slices.gi": str(profile.slices),
                f"{prefix}.slices.ci": str(profile.slices),
            }
    return labels


def label_patch(current: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str | None]:
    """A merge patch from `current` labels to GFD's `wanted` ones (stale MIG labels removed)."""
    stale = {key: None for key in current if key.startswith(_MIG_LABEL_PREFIXES) and key not in wanted}
    return {**stale, **wanted}


def resource_patch(current: Mapping[str, str], wanted: Mapping[str, int]) -> dict[str, str | None]:
    """A merge patch from a node's `current` capacity to the device plugin's GPU resources."""
    gone = {key: None for key in current if key.startswith(MIG_RESOURCE_PREFIX) and key not in wanted}
    return {**gone, **{key: str(value) for key, value in wanted.items()}}


def mig_config_map(text: str, *, name: str = DEFAULT_CONFIG_MAP, namespace: str = OPERATOR_NAMESPACE) -> dict[str, Any]:
    """A ConfigMap holding a mig-parted config.yaml."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {CONFIG_KEY: text},
    }


def mig_node_object(
    name: str,
    *,
    product: str,
    gpus: int = 8,
    strategy: MigStrategy = "single",
    applied: str | None = None,
    labels: Mapping[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A kwok Node with `gpus` MIG-capable GPUs of `product`, managed by the MIG
    manager (simulator), showing the labels and resources of the `applied`
    config of the default config (MIG disabled when None; then no
    `nvidia.com/mig.config` label either)."""
    model = MIG_MODELS[product]
    layout: tuple[GpuLayout, ...] = (None,) * gpus
    mig_labels: dict[str, str] = {}
    if applied is not None:
        config = MigPartedConfig.parse(default_mig_parted_config(), source=DEFAULT_CONFIG_MAP)
        layout = apply_config(config.select(applied, source=DEFAULT_CONFIG_MAP), model, layout)
        mig_labels = {MIG_CONFIG_LABEL: applied, MIG_STATE_LABEL: "success"}
    return gpu_node_object(
        name,
        labels={
            "nvidia.com/gpu.present": "true",
            MIG_MANAGER_DEPLOY_LABEL: "true",
            **{label: "true" for label in OPERAND_DEPLOY_LABELS},
            **gfd_labels(model, layout, strategy),
            **mig_labels,
            **(labels or {}),
        },
        resources=advertised_resources(layout, strategy),
        taints=taints,
        annotations={PHYSICAL_GPUS_ANNOTATION: str(gpus)},
    )
