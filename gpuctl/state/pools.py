"""Which pool a node belongs to, from its labels.

Clusters name node groups differently (Karpenter, GKE, EKS, AKS); gpuctl reads
whichever is there so pools line up with what operators call them. A configured
label wins; nodes with none of the known labels are grouped by GPU product, so a
bare cluster still shows "A100 vs H100" pools instead of one big "default".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

DEFAULT_POOL_LABELS: tuple[str, ...] = (
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "agentpool",
    "kubernetes.azure.com/agentpool",
    "gpuctl.io/pool",
)
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
DEFAULT_POOL = "default"


def pool_labels(configured: str | None) -> tuple[str, ...]:
    """The labels to look at, in order: the configured one first, then the known ones."""
    if not configured:
        return DEFAULT_POOL_LABELS
    return (configured, *(label for label in DEFAULT_POOL_LABELS if label != configured))


def pool_for(labels: Mapping[str, str], order: Sequence[str] = DEFAULT_POOL_LABELS) -> str:
    """The node's pool: first non-empty label in `order`, else its GPU product, else 'default'."""
    for label in order:
        value = labels.get(label)
        if value:
            return value
    return labels.get(GPU_PRODUCT_LABEL) or DEFAULT_POOL
