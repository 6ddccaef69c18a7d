"""Builders for the small objects tests create on the test bed: namespaces,
GPU pods, Roles and bindings, PodDisruptionBudgets. Plain dicts, ready for
testbed.kube.apply_objects."""

from __future__ import annotations

import uuid
from typing import Any

RBAC = "rbac.authorization.k8s.io"


def unique(prefix: str) -> str:
    """A fresh name, so tests sharing one control plane never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def namespace_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def gpu_pod(
    name: str, namespace: str, gpus: int, *, node: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "main", "image": "registry.invalid/train:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        ],
        "tolerations": [{"operator": "Exists"}],
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": spec,
    }


def role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": name, "namespace": namespace}, "rules": rules}


def rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def role_binding(
    name: str, namespace: str, *, role: str, group: str | None = None, user: str | None = None, cluster_role: bool = False
) -> dict[str, Any]:
    """Bind a Role (or, with cluster_role, a ClusterRole within the namespace) to a group or a user."""
    subject = {"apiGroup": RBAC, "kind": "Group", "name": group} if group else {"apiGroup": RBAC, "kind": "User", "name": user}
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole" if cluster_role else "Role", "name": role},
        "subjects": [subject],
    }


def pod_disruption_budget(name: str, namespace: str, match_labels: dict[str, str], *, min_available: int) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": match_labels}},
    }
