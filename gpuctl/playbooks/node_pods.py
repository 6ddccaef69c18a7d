"""Which pods a playbook may disrupt, and a node's GPU pods: one set of rules and words for every playbook.

- `protection`: why a pod must not be evicted, or None. Either the playbook's
  guardrails keep it (protected namespaces and priority classes, a pod opt-out
  label or annotation: `protected.on_match` applies to these), or its
  controller brings it straight back, so evicting it frees nothing (a
  DaemonSet pod tolerates a cordon; a static pod, whose API object is a
  mirror, is run by its kubelet). reclaim-idle-gpus asks it of the snapshot's
  pods; relabel-mig and scale-pool of the pods they read from a node.
- `gpu_pods_on`: a node's GPU pods that have not finished (terminating ones
  included: they still hold their GPUs), fresh from the API server, as
  `NodePod`s pinned to uid and resourceVersion.
- `drain_refusals`: what keeps a set of nodes from being emptied of their GPU
  pods (a node that must be empty cannot skip a protected pod, whatever
  `on_match` says), and `try_eviction`: an eviction's dry run, judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from gpuctl.playbooks.acting import ActingClient, EvictionResult
from gpuctl.playbooks.evictions import judge_trial
from gpuctl.playbooks.kubeapi import ApiCall
from gpuctl.playbooks.plan import TargetRef
from gpuctl.playbooks.spec import OptOut, Protected
from gpuctl.playbooks.stepkit import dry_run
from gpuctl.sources.kube.trim import controller_ref, pod_gpu_requests

# The kubelet marks the API object of a static pod with this annotation (and makes its Node the owner).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Controllers whose pods an eviction cannot remove: they come straight back on the same node.
_COMES_BACK = {"DaemonSet": "a DaemonSet pod comes straight back on its node", "Node": "a static pod: its kubelet runs it"}
# Labels of the protections the guardrails declare (protected.on_match applies to these).
GUARDRAIL_LABELS = frozenset({"protected namespace", "protected priority class", "opted out"})


@dataclass(frozen=True, slots=True)
class Kept:
    """Why a pod must not be evicted: `reason` for a person, `label` short, for counting ('opted out', 'DaemonSet pod')."""

    reason: str
    label: str

    @property
    def by_guardrail(self) -> bool:
        return self.label in GUARDRAIL_LABELS


@lru_cache(maxsize=4096)
def _matches(name: str | None, globs: tuple[str, ...]) -> bool:
    """Memoized: a fleet has few namespaces and priority classes, and 10,000 pods ask about them."""
    return name is not None and any(fnmatchcase(name, g) for g in globs)


def opted_out(
    opt_outs: Iterable[OptOut], labels: Mapping[str, str], annotations: Mapping[str, str], *, of: str = "pod"
) -> OptOut | None:
    """The first opt-out for `of` (a pod, or a node) whose label or annotation carries its value, if any."""
    for rule in opt_outs:
        if rule.object != of:
            continue
        if rule.label is not None and labels.get(rule.label) == rule.value:
            return rule
        if rule.annotation is not None and annotations.get(rule.annotation) == rule.value:
            return rule
    return None


def describe_opt_out(rule: OptOut) -> str:
    where = f"label {rule.label}" if rule.label else f"annotation {rule.annotation}"
    return f"opted out ({where}={rule.value})"


def protection(
    protected: Protected,
    *,
    namespace: str,
    priority_class: str | None,
    controller: str | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> Kept | None:
    """Why the guardrails or the pod's controller keep it from eviction (None: nothing does)."""
    if _matches(namespace, protected.namespaces):
        return Kept(f"namespace {namespace} is protected", "protected namespace")
    if _matches(priority_class, protected.priority_classes):
        return Kept(f"priority class {priority_class} is protected", "protected priority class")
    if (rule := opted_out(protected.opt_out, labels, annotations)) is not None:
        return Kept(describe_opt_out(rule), "opted out")
    if MIRROR_ANNOTATION in annotations:
        controller = "Node"
    if controller in _COMES_BACK:
        return Kept(_COMES_BACK[controller], "static pod" if controller == "Node" else f"{controller} pod")
    return None


@dataclass(frozen=True, slots=True)
class NodePod:
    """A GPU pod bound to a node, as read."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    gpus: Mapping[str, int]
    owner_kind: str | None
    priority_class: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    node_selector: Mapping[str, str]

    @classmethod
    def read(cls, obj: Mapping[str, Any]) -> NodePod:
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            resource_version=meta.get("resourceVersion", ""),
            gpus=pod_gpu_requests(spec, obj),
            owner_kind=controller_ref(meta)[0],
            priority_class=spec.get("priorityClassName"),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            node_selector=dict(spec.get("nodeSelector") or {}),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gpu_count(self) -> int:
        return sum(self.gpus.values())

    @property
    def target(self) -> TargetRef:
        return TargetRef(
            kind="Pod", namespace=self.namespace, name=self.name, uid=self.uid, resource_version=self.resource_version
        )

    def kept(self, protected: Protected) -> Kept | None:
        """`protection` of this pod."""
        return protection(
            protected,
            namespace=self.namespace,
            priority_class=self.priority_class,
            controller=self.owner_kind,
            labels=self.labels,
            annotations=self.annotations,
        )


async def gpu_pods_on(reader: ActingClient, node: str) -> tuple[list[NodePod], ApiCall]:
    """The node's pods that request GPUs (whole, shared or MIG) and have not finished, by key, and the list call."""
    selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
    listed = await reader.list_objects("", "v1", "pods", field_selector=selector)
    pods = [pod for obj in listed.items if (pod := NodePod.read(obj)).gpus]
    return sorted(pods, key=lambda p: p.key), listed.call


def drain_refusals(leaving: Sequence[tuple[str, NodePod]], protected: Protected, max_pods: int | None) -> list[str]:
    """Why the (node, GPU pod) pairs that must leave cannot all be evicted: protected pods, more than `max_pods`."""
    reasons = [
        f"pod {pod.key} on node {node} cannot be evicted: {kept.reason}"
        for node, pod in leaving
        if (kept := pod.kept(protected)) is not None
    ]
    if max_pods is not None and len(leaving) > max_pods:
        nodes = list(dict.fromkeys(node for node, _ in leaving))
        where = f"node {nodes[0]}" if len(nodes) == 1 else f"nodes {', '.join(nodes)}"
        reasons.append(f"draining {where} evicts {len(leaving)} GPU pods, more than the {max_pods} allowed per run")
    return reasons


async def try_eviction(acting: ActingClient, pod: TargetRef, blocked: list[str], warnings: list[str]) -> EvictionResult | None:
    """The eviction of `pod` as a server-side dry run as the requester, judged (`judge_trial`): a budget refusing now
    warns, a pod under several budgets, replaced or gone while planning blocks; None when the API server refused it."""
    key = f"{pod.namespace}/{pod.name}"
    attempt = acting.evict(pod.namespace or "", pod.name, uid=pod.uid, dry_run=True)
    result = await dry_run(blocked, attempt, f"dry run of evict_pods on Pod/{key}")
    if result is not None:
        judge_trial(result, key, blocked, warnings)
    return result
