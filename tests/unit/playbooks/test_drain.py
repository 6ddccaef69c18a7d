"""Which GPU pods must leave a node for relabel-mig, and when its drain is refused (the shared rules: test_node_pods)."""

from __future__ import annotations

from typing import Any

import pytest

from gpuctl.playbooks.acting import EvictionResult
from gpuctl.playbooks.drain import eviction_steps, must_leave, node_opt_out, refusals
from gpuctl.playbooks.evictions import judge_trial
from gpuctl.playbooks.kubeapi import ApiCall
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.node_pods import NodePod

GUARDRAILS = load_catalog().get("relabel-mig").guardrails


def pod(name: str = "p", namespace: str = "team-a", *, gpus: dict[str, str] | None = None, **extra: Any) -> NodePod:
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "resources": {"limits": gpus if gpus is not None else {"nvidia.com/gpu": "2"}}}],
        **extra.pop("spec", {}),
    }
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "resourceVersion": "3", **extra}
    return NodePod.read({"metadata": meta, "spec": spec})


def test_a_gpu_pod_as_read() -> None:
    read = pod("train", gpus={"nvidia.com/mig-1g.10gb": "2", "cpu": "4"}, spec={"priorityClassName": "batch"})
    assert (read.key, read.uid, read.gpus, read.gpu_count, read.priority_class) == (
        "team-a/train", "uid-train", {"nvidia.com/mig-1g.10gb": 2}, 2, "batch"
    )  # fmt: skip
    assert read.target.key == "Pod/team-a/train" and read.target.uid == "uid-train"
    assert must_leave(read)


def test_pods_that_need_not_leave() -> None:
    assert not must_leave(pod(gpus={"cpu": "1"}))
    # DaemonSet GPU clients that select nvidia.com/gpu.deploy.client: the MIG manager pauses them itself.
    assert not must_leave(pod(spec={"nodeSelector": {"nvidia.com/gpu.deploy.client": "true"}}))


def test_node_opt_out() -> None:
    assert node_opt_out({"gpuctl.io/mig-relabel": "never"}, {}, GUARDRAILS.protected) == "node label gpuctl.io/mig-relabel=never"
    assert node_opt_out({}, {"gpuctl.io/mig-relabel": "never"}, GUARDRAILS.protected) is None  # a label, not an annotation


def test_refusals() -> None:
    a, b = pod("a"), pod("b", annotations={"gpuctl.io/evict": "never"})
    assert refusals("n1", [], drain=False, guardrails=GUARDRAILS) == []
    assert refusals("n1", [a], drain=False, guardrails=GUARDRAILS) == [
        "node n1 runs GPU pods: team-a/a (2 GPU); plan with drain=true to evict them first"
    ]
    assert refusals("n1", [a], drain=True, guardrails=GUARDRAILS) == []
    assert refusals("n1", [a, b], drain=True, guardrails=GUARDRAILS) == [
        "pod team-a/b on node n1 cannot be evicted: opted out (annotation gpuctl.io/evict=never)"
    ]
    many = [pod(f"p{i}") for i in range(33)]
    assert refusals("n1", many, drain=True, guardrails=GUARDRAILS) == [
        "draining node n1 evicts 33 GPU pods, more than the 32 allowed per run"
    ]


def test_eviction_steps_say_what_each_pod_holds() -> None:
    owned = pod("a", ownerReferences=[{"kind": "Job", "name": "j", "controller": True}])
    bare = pod("b", gpus={"nvidia.com/mig-3g.40gb": "1"})
    steps = eviction_steps([owned, bare])
    assert [(s.action, s.target.name, s.detail) for s in steps] == [
        ("evict_pods", "a", "2× gpu, Job"),
        ("evict_pods", "b", "1× mig-3g.40gb, no controller: it will not come back"),
    ]


@pytest.mark.parametrize(
    ("outcome", "blocks", "warns"),
    [("evicted", False, False), ("pdb_refused", False, True), ("multiple_pdbs", True, False),
     ("precondition_failed", True, False), ("gone", True, False)],
)  # fmt: skip
def test_an_eviction_dry_run_blocks_or_warns(outcome: str, blocks: bool, warns: bool) -> None:
    call = ApiCall(method="POST", path="/e", status=200, audit_id="a", acting_as=None, dry_run=True)
    blocked: list[str] = []
    warnings: list[str] = []
    judge_trial(EvictionResult(call=call, outcome=outcome, message="m"), "team-a/p", blocked, warnings)  # type: ignore[arg-type]
    assert (bool(blocked), bool(warnings)) == (blocks, warns)
    assert all(line.startswith("team-a/p") for line in blocked + warnings)
