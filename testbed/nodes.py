"""Kubernetes Node objects for fake GPU nodes that kwok keeps alive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from testbed.controlplane import KWOK_NODE_ANNOTATION

PROVIDER_ID_PREFIX = "gpuctl-testbed://"
BASE_CAPACITY = {"cpu": "96", "memory": "1536Gi", "pods": "110", "ephemeral-storage": "2Ti"}


def gpu_node_object(
    name: str,
    *,
    labels: Mapping[str, str],
    resources: Mapping[str, int],
    taints: list[dict[str, str]] | None = None,
    annotations: Mapping[str, str] | None = None,
    provider_id: str | None = None,
) -> dict[str, Any]:
    """A Node with NVIDIA labels and GPU (or MIG) capacity, managed by kwok.

    Like a cloud node it has a `spec.providerID` (default `PROVIDER_ID_PREFIX` +
    name): Karpenter does not track a node labelled `karpenter.sh/nodepool`
    without one, and then never considers its cluster state synced."""
    capacity = {**BASE_CAPACITY, **{key: str(value) for key, value in resources.items()}}
    key, value = KWOK_NODE_ANNOTATION
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {**(annotations or {}), key: value},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
        },
        "spec": {"taints": taints or [], "providerID": provider_id or f"{PROVIDER_ID_PREFIX}{name}"},
        "status": {"capacity": capacity, "allocatable": capacity},
    }
