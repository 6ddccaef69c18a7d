"""The protection rules every playbook shares (relabel-mig's drain, scale-pool's scale-down, reclaim), in one set of words."""

from __future__ import annotations

from typing import Any

import pytest

from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.node_pods import NodePod, drain_refusals, opted_out
from gpuctl.playbooks.spec import OptOut, Protected

CATALOG = load_catalog()


def pod(name: str = "p", namespace: str = "team-a", *, spec: dict[str, Any] | None = None, **meta: Any) -> NodePod:
    containers = [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]
    head = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "3", **meta}
    return NodePod.read({"metadata": head, "spec": {"containers": containers, **(spec or {})}})


def owned_by(kind: str) -> list[dict[str, Any]]:
    return [{"kind": kind, "name": "owner", "controller": True}]


@pytest.mark.parametrize("playbook", ["relabel-mig", "scale-pool"])
@pytest.mark.parametrize(
    ("read", "why", "label"),
    [
        (pod(namespace="gpu-operator"), "namespace gpu-operator is protected", "protected namespace"),
        (pod(spec={"priorityClassName": "system-node-critical"}), "priority class system-node-critical is protected",
         "protected priority class"),
        (pod(annotations={"gpuctl.io/evict": "never"}), "opted out (annotation gpuctl.io/evict=never)", "opted out"),
        (pod(annotations={"karpenter.sh/do-not-disrupt": "true"}), "opted out (annotation karpenter.sh/do-not-disrupt=true)",
         "opted out"),
        (pod(ownerReferences=owned_by("DaemonSet")), "a DaemonSet pod comes straight back on its node", "DaemonSet pod"),
        # A static pod's API object is a mirror: owned by its Node, and annotated by the kubelet.
        (pod(ownerReferences=owned_by("Node")), "a static pod: its kubelet runs it", "static pod"),
        (pod(annotations={"kubernetes.io/config.mirror": "abc"}), "a static pod: its kubelet runs it", "static pod"),
        (pod(annotations={"gpuctl.io/evict": "later"}), None, None),
        (pod(ownerReferences=owned_by("Job")), None, None),
    ],
)  # fmt: skip
def test_protection_is_the_same_for_every_draining_playbook(
    read: NodePod, why: str | None, label: str | None, playbook: str
) -> None:
    kept = read.kept(CATALOG.get(playbook).guardrails.protected)
    assert (kept and kept.reason, kept and kept.label) == (why, label)
    assert kept is None or kept.by_guardrail == (label in ("protected namespace", "protected priority class", "opted out"))


def test_protection_globs_and_opt_out_labels() -> None:
    protected = Protected(
        namespaces=("kube-system", "gpu-*"),
        priority_classes=("system-*-critical",),
        opt_out=(OptOut(label="keep", value="yes"), OptOut(object="node", label="keep", value="no")),
    )
    assert pod(namespace="gpu-x").kept(protected) is not None
    assert pod(spec={"priorityClassName": "system-cluster-critical"}).kept(protected) is not None
    kept = pod(labels={"keep": "yes"}).kept(protected)
    assert kept is not None and kept.reason == "opted out (label keep=yes)"
    assert pod(labels={"keep": "no"}).kept(protected) is None  # that value opts a node out, not a pod
    assert opted_out(protected.opt_out, {"keep": "no"}, {}, of="node") == protected.opt_out[1]
    assert opted_out(protected.opt_out, {}, {"keep": "yes"}) is None  # a label, not an annotation


def test_drain_refusals_name_the_pod_its_node_and_the_limit() -> None:
    protected = CATALOG.get("scale-pool").guardrails.protected
    leaving = [("n1", pod("a")), ("n2", pod("b", annotations={"gpuctl.io/evict": "never"})), ("n2", pod("c"))]
    assert drain_refusals(leaving, protected, 32) == [
        "pod team-a/b on node n2 cannot be evicted: opted out (annotation gpuctl.io/evict=never)"
    ]
    assert drain_refusals(leaving[::2], protected, 1) == [
        "draining nodes n1, n2 evicts 2 GPU pods, more than the 1 allowed per run"
    ]
    assert drain_refusals(leaving[:1], protected, 1) == []
