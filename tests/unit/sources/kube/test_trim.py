"""Trimming raw API JSON to records: only GPU things survive, a pod keeps its own controller (not a guess)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gpuctl.sources.kube.trim import object_key, parse_quantity, trim_namespace, trim_node, trim_pod, trim_quota

POOL_LABELS = frozenset({"karpenter.sh/nodepool"})


def gpu_node(**status: object) -> dict[str, object]:
    return {
        "metadata": {
            "name": "gpu-1",
            "creationTimestamp": "2026-01-01T12:00:00Z",
            "labels": {
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "karpenter.sh/nodepool": "h100",
                "kubernetes.io/hostname": "gpu-1",
                "topology.kubernetes.io/zone": "a",
            },
        },
        "spec": {"unschedulable": True, "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8", "nvidia.com/mig-1g.10gb": "0"},
            "allocatable": {"cpu": "95", "nvidia.com/gpu": "7"},
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            **status,
        },
    }


def test_node_keeps_gpu_resources_and_gpu_and_pool_labels() -> None:
    rec = trim_node(gpu_node(), POOL_LABELS)
    assert rec is not None
    assert rec.capacity == {"nvidia.com/gpu": 8} and rec.allocatable == {"nvidia.com/gpu": 7}
    assert dict(rec.labels) == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "karpenter.sh/nodepool": "h100"}
    assert rec.ready and rec.unschedulable and rec.taints[0].key == "nvidia.com/gpu"
    assert rec.created == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_cpu_node_is_dropped_but_gpu_labelled_node_without_capacity_is_kept() -> None:
    cpu = {"metadata": {"name": "cpu-1", "labels": {"kubernetes.io/os": "linux"}}, "status": {"capacity": {"cpu": "8"}}}
    assert trim_node(cpu, POOL_LABELS) is None
    broken_plugin = {"metadata": {"name": "gpu-2", "labels": {"nvidia.com/gpu.present": "true"}}, "status": {}}
    rec = trim_node(broken_plugin, POOL_LABELS)
    assert rec is not None and rec.capacity == {} and not rec.ready


def pod(containers: list[dict[str, object]], **meta: object) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ml", "name": "p", "creationTimestamp": "2026-01-01T12:00:00Z", **meta},
        "spec": {"nodeName": "gpu-1", "containers": containers, "priorityClassName": "high"},
        "status": {"phase": "Running"},
    }


def test_pod_requests_limits_and_init_containers() -> None:
    containers = [
        {"resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}},
        {"resources": {"limits": {"nvidia.com/gpu": "1", "memory": "1Gi"}}},  # limits only: requests default to them
        {"resources": {}},
    ]
    obj = pod(containers)
    obj["spec"]["initContainers"] = [  # type: ignore[index]
        {"resources": {"limits": {"nvidia.com/gpu": "4"}}},  # runs alone first: the peak counts, not the sum
        {"restartPolicy": "Always", "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}},  # sidecar: adds
    ]
    rec = trim_pod(obj)
    assert rec is not None and dict(rec.gpu_requests) == {"nvidia.com/gpu": 4, "nvidia.com/mig-1g.10gb": 1}
    assert rec.node == "gpu-1" and rec.phase == "Running" and rec.priority_class == "high" and not rec.deleting


def test_pods_asking_for_the_same_whole_gpus_share_their_requests() -> None:
    one, other, many = (trim_pod(pod([{"resources": {"limits": {"nvidia.com/gpu": n}}}])) for n in ("2", "2", "12"))
    assert one is not None and other is not None and many is not None
    assert one.gpu_requests == {"nvidia.com/gpu": 2} and one.gpu_requests is other.gpu_requests
    assert many.gpu_requests == {"nvidia.com/gpu": 12}


def test_pod_without_gpus_is_dropped() -> None:
    assert trim_pod(pod([{"resources": {"requests": {"cpu": "1"}}}])) is None
    assert trim_pod(pod([{"resources": {"limits": {"nvidia.com/gpu": "0"}}}])) is None


def test_owner_is_the_pods_own_controller_never_guessed_from_its_name() -> None:
    ref = {"kind": "ReplicaSet", "name": "server-7d9f8c6b5", "uid": "rs-1", "controller": True}
    rec = trim_pod(
        pod([{"resources": {"limits": {"nvidia.com/gpu": "1"}}}], ownerReferences=[ref], labels={"pod-template-hash": "7d9f8c6b5"})
    )
    # The Deployment above it comes from the ReplicaSet's own record, in the join.
    assert rec is not None and (rec.owner_kind, rec.owner_name, rec.owner_uid) == ("ReplicaSet", "server-7d9f8c6b5", "rs-1")
    job = {"kind": "Job", "name": "train-1", "controller": True}
    rec = trim_pod(pod([{"resources": {"limits": {"nvidia.com/gpu": "1"}}}], ownerReferences=[job], deletionTimestamp="x"))
    assert rec is not None and (rec.owner_kind, rec.owner_name) == ("Job", "train-1") and rec.deleting


def test_quota_keeps_requests_gpu_keys_and_falls_back_to_spec() -> None:
    obj = {
        "metadata": {"namespace": "ml", "name": "q"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "8", "pods": "10"}},
        "status": {
            "hard": {
                "requests.nvidia.com/gpu": "8",
                "requests.nvidia.com/mig-1g.10gb": "1e1",
                "limits.nvidia.com/gpu": "8",
                "pods": "10",
            },
            "used": {"requests.nvidia.com/gpu": "3"},
        },
    }
    rec = trim_quota(obj)
    assert rec is not None and rec.used == {"requests.nvidia.com/gpu": 3}
    assert rec.hard == {"requests.nvidia.com/gpu": 8, "requests.nvidia.com/mig-1g.10gb": 10}
    fresh = {"metadata": {"namespace": "ml", "name": "q"}, "spec": {"hard": {"requests.nvidia.com/gpu": "2"}}}
    rec = trim_quota(fresh)
    assert rec is not None and rec.hard == {"requests.nvidia.com/gpu": 2} and rec.used == {}
    assert trim_quota({"metadata": {"namespace": "ml", "name": "cpu"}, "spec": {"hard": {"cpu": "4"}}}) is None


def test_quota_keys_kubernetes_does_not_enforce_are_no_gpu_quota() -> None:
    for key in ("limits.nvidia.com/gpu", "nvidia.com/gpu"):
        assert trim_quota({"metadata": {"namespace": "ml", "name": "q"}, "spec": {"hard": {key: "4"}}}) is None


@pytest.mark.parametrize(
    "spec",
    [
        {"scopes": ["NotTerminating"]},
        {"scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}},
    ],
)
def test_scoped_quota_is_not_the_namespace_limit(spec: dict[str, object]) -> None:
    obj = {"metadata": {"namespace": "ml", "name": "q"}, "spec": {"hard": {"requests.nvidia.com/gpu": "2"}, **spec}}
    assert trim_quota(obj) is None


def test_malformed_quota_value_is_logged_and_the_rest_kept(caplog: pytest.LogCaptureFixture) -> None:
    obj = {
        "metadata": {"namespace": "ml", "name": "q"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "eight", "requests.nvidia.com/mig-1g.10gb": "2"}},
    }
    rec = trim_quota(obj)
    assert rec is not None and rec.hard == {"requests.nvidia.com/mig-1g.10gb": 2}
    assert "ml/q" in caplog.text and "requests.nvidia.com/gpu='eight'" in caplog.text


def test_namespace_and_keys() -> None:
    assert trim_namespace({"metadata": {"name": "ml", "labels": {"team": "a"}}}).labels == {"team": "a"}
    assert object_key({"metadata": {"name": "ml"}}) == "ml"
    assert object_key({"metadata": {"name": "p", "namespace": "ml"}}) == "ml/p"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8", 8), ("500m", 0.5), ("2k", 2000), ("1Gi", 2**30), (3, 3), ("1.5", 1.5), ("1e3", 1000), ("2E3", 2000),
        ("1k", 1000), ("+2", 2), ("-2", -2), ("1E", 1e18), (".5", 0.5), ("5.", 5), ("1e-3", 0.001), ("1.5e+2", 150),
        ("1500m", 1.5), ("0", 0), ("12Mi", 12 * 2**20), ("1Ei", 2**60),
    ],
)  # fmt: skip
def test_quantities(text: object, value: float) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["eight", "", ".", "1e", "1e1.5", "1 k", " 1", "1ki", "1KI", "e3", "1.2.3", "++1", "1e99999999", True]
)
def test_bad_quantity(text: object) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)
