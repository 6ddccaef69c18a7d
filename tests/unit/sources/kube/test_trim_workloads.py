"""Trimming for owner chains and disruption budgets: pods keep labels, uid, resourceVersion and
readiness; ReplicaSets and Jobs survive only when they lead somewhere; budgets keep their selector."""

from __future__ import annotations

from typing import Any

from gpuctl.sources.kube.trim import trim_job, trim_node, trim_pdb, trim_pod, trim_quota, trim_replicaset
from gpuctl.state.records import JobRecord, ReplicaSetRecord

GPU_TEMPLATE = {"spec": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}


def meta(**extra: Any) -> dict[str, Any]:
    return {"namespace": "ml", "name": "x", "uid": "uid-1", "resourceVersion": "42", **extra}


def test_pod_keeps_identity_labels_and_readiness() -> None:
    obj = {
        "metadata": meta(labels={"app": "vllm", "tier": "gpu"}),
        "spec": {"containers": GPU_TEMPLATE["spec"]["containers"]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    rec = trim_pod(obj)
    assert rec is not None
    assert (rec.uid, rec.resource_version, rec.ready) == ("uid-1", "42", True)
    assert dict(rec.labels) == {"app": "vllm", "tier": "gpu"}
    other = trim_pod({**obj, "metadata": meta(name="y", labels={"app": "vllm", "tier": "gpu"})})
    assert other is not None
    # Label keys and values are kept once for all pods (10,000 pods repeat the same few).
    assert all(a is b for a, b in zip(rec.labels, other.labels, strict=True))
    assert all(rec.labels[k] is other.labels[k] for k in rec.labels)
    unready = trim_pod({**obj, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}})
    assert unready is not None and not unready.ready
    unlabelled = trim_pod({**obj, "metadata": meta()})
    assert unlabelled is not None and dict(unlabelled.labels) == {}


def test_nodes_and_quotas_keep_uid_and_resource_version() -> None:
    obj = {"metadata": {"name": "n", "uid": "n-1", "resourceVersion": "7"}, "status": {"capacity": {"nvidia.com/gpu": "8"}}}
    node = trim_node(obj, ())
    assert node is not None and (node.uid, node.resource_version) == ("n-1", "7")
    quota = trim_quota({"metadata": meta(), "spec": {"hard": {"requests.nvidia.com/gpu": "4"}}})
    assert quota is not None and (quota.uid, quota.resource_version) == ("uid-1", "42")


def test_replicasets_and_jobs_survive_only_with_a_controller_and_gpu_pods() -> None:
    owned = {"ownerReferences": [{"kind": "Deployment", "name": "server", "uid": "d-1", "controller": True}]}
    rec = trim_replicaset({"metadata": meta(**owned), "spec": {"template": GPU_TEMPLATE}})
    assert isinstance(rec, ReplicaSetRecord)
    assert (rec.key, rec.uid, rec.owner_kind, rec.owner_name, rec.owner_uid) == ("ml/x", "uid-1", "Deployment", "server", "d-1")
    cron = {"ownerReferences": [{"kind": "CronJob", "name": "nightly", "uid": "c-1"}]}  # not marked controller: still the one
    job = trim_job({"metadata": meta(**cron), "spec": {"template": GPU_TEMPLATE}})
    assert isinstance(job, JobRecord) and (job.owner_kind, job.owner_name) == ("CronJob", "nightly")
    assert trim_job({"metadata": meta(), "spec": {"template": GPU_TEMPLATE}}) is None  # the top itself
    cpu = {"spec": {"containers": [{"name": "main", "resources": {"limits": {"cpu": "1"}}}]}}
    assert trim_replicaset({"metadata": meta(**owned), "spec": {"template": cpu}}) is None  # makes no GPU pods


def test_pdb_keeps_selector_numbers_and_whether_its_spec_was_seen() -> None:
    obj = {
        "metadata": meta(generation=2),
        "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "vllm"}, "matchExpressions": [
            {"key": "tier", "operator": "NotIn", "values": ["cpu"]}]}},
        "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "observedGeneration": 2},
    }
    rec = trim_pdb(obj)
    assert str(rec.selector) == "app=vllm,tier notin (cpu)" and rec.min_available == "50%" and rec.max_unavailable is None
    assert (rec.disruptions_allowed, rec.current_healthy, rec.desired_healthy, rec.expected_pods) == (1, 3, 2, 3)
    assert rec.observed and rec.uid == "uid-1"
    assert not trim_pdb({**obj, "metadata": meta(generation=3)}).observed  # the controller has not caught up
    unselected = trim_pdb({**obj, "spec": {"maxUnavailable": 0}})
    assert unselected.selector is None and unselected.max_unavailable == "0"
    bad = {**obj, "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Matches", "values": ["x"]}]}}}
    assert trim_pdb(bad).selector is None  # invalid: the Eviction API lets it match no pod
    assert trim_pdb({"metadata": meta(), "spec": {"selector": {}}}).selector is not None  # empty, not missing
