"""The real Karpenter controller, with its kwok cloud provider
(sigs.k8s.io/karpenter/kwok, built by testbed/build-karpenter.sh), run against
the test bed's API server: NodePools and their limits, pending pods →
NodeClaims → Nodes annotated `kwok.x-k8s.io/node=fake`, which the test bed's
kwok keeps Ready.

Differences from a cloud install: the instance types are a small GPU catalogue
(`GPU_INSTANCE_TYPES`, the provider's INSTANCE_TYPES_FILE_PATH) in one zone,
on-demand only; the KWOKNodeClass's Ready condition is set here (no controller
sets it); leader election is off; no webhooks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testbed.controlplane import ADMIN, REPO_ROOT, ControlPlane, cached_directory, http_ok
from testbed.kube import RestClient, apply_objects
from testbed.process import Component, free_port

BUILD_SCRIPT = REPO_ROOT / "testbed" / "build-karpenter.sh"
NODE_CLASS = "default"
ZONE = "test-zone-a"


def build_karpenter() -> Path:
    """Build (or find cached) the karpenter-kwok binary; returns its directory."""
    return cached_directory(BUILD_SCRIPT)


def _instance_type(name: str, *, cpu: int, memory_gi: int, gpus: int, price: float) -> dict[str, Any]:
    requirements = [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [ZONE]},
    ]
    return {
        "name": name,
        "offerings": [{"Price": price, "Available": True, "Requirements": requirements}],
        "architecture": "amd64",
        "operatingSystems": ["linux"],
        "resources": {
            "cpu": str(cpu),
            "memory": f"{memory_gi}Gi",
            "ephemeral-storage": "2Ti",
            "pods": "110",
            "nvidia.com/gpu": str(gpus),
        },
    }


# Shapes (not prices) of AWS GPU instances.
GPU_INSTANCE_TYPES = [
    _instance_type("g6.12xlarge", cpu=48, memory_gi=192, gpus=4, price=4.6),
    _instance_type("p4de.24xlarge", cpu=96, memory_gi=1152, gpus=8, price=40.96),
    _instance_type("p5.48xlarge", cpu=192, memory_gi=2048, gpus=8, price=98.32),
]


def kwok_node_class_object(name: str = NODE_CLASS) -> dict[str, Any]:
    return {"apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass", "metadata": {"name": name}, "spec": {}}


def node_pool_object(
    name: str,
    *,
    instance_types: list[str],
    gpu_limit: int,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A NodePool of the kwok node class limited to `gpu_limit` nvidia.com/gpu."""
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "limits": {"nvidia.com/gpu": str(gpu_limit)},
            "disruption": {"consolidateAfter": "Never", "consolidationPolicy": "WhenEmpty"},
            "template": {
                "metadata": {"labels": labels or {}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": NODE_CLASS},
                    "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": instance_types}],
                    "taints": taints or [],
                    "expireAfter": "Never",
                },
            },
        },
    }


class Karpenter:
    """The karpenter-kwok process; needs the upstream CRDs installed first."""

    def __init__(self, plane: ControlPlane, workdir: Path, bin_dir: Path) -> None:
        self.workdir = workdir
        self.health_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        instance_types = workdir / "instance-types.json"
        instance_types.write_text(json.dumps(GPU_INSTANCE_TYPES))
        self.component = Component(
            "karpenter",
            [str(bin_dir / "karpenter-kwok")],
            log_dir=workdir,
            env={
                "KUBECONFIG": str(plane.kubeconfig(ADMIN)),
                "INSTANCE_TYPES_FILE_PATH": str(instance_types),
                "DISABLE_LEADER_ELECTION": "true",
                "METRICS_PORT": str(free_port()),
                "HEALTH_PROBE_PORT": str(self.health_port),
                # Provision within a second or two of a pod turning up pending.
                "BATCH_IDLE_DURATION": "500ms",
                "BATCH_MAX_DURATION": "2s",
                "LOG_LEVEL": "info",
            },
            ready=lambda: http_ok(f"http://127.0.0.1:{self.health_port}/readyz"),
        )

    async def start(self, client: RestClient) -> None:
        await apply_objects(client, [kwok_node_class_object()])
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        response = await client.patch("KWOKNodeClass", NODE_CLASS, {"status": {"conditions": [ready]}}, subresource="status")
        if response.status != 200:
            raise RuntimeError(f"marking KWOKNodeClass {NODE_CLASS} Ready: {response.status} {response.body.get('message')}")
        await self.component.start(timeout_s=120)

    def stop(self) -> None:
        self.component.stop()
