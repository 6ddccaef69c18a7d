"""Each check's logic on hand-made snapshots: what it reports, and that a cluster following the practice
gets nothing from it."""

from __future__ import annotations

from gpuctl.doctor.options import DoctorOptions
from gpuctl.doctor.rules import Rule
from gpuctl.model import Gpu, NamespaceUsage, PodRef, Taint

from .kit import (
    ago,
    findings,
    found,
    inventory,
    managed_state_at,
    node,
    pod,
    raw,
    raw_pod,
    snapshot,
)


def test_a_cluster_that_follows_every_practice_has_no_findings() -> None:
    gpus = [Gpu(node="n1", pool="a100", index=0, pod=PodRef(namespace="ml", name="p1"), util_pct=80, busy=True)]
    assert found(inventory(snapshot([node()], [pod()], gpus))) == {}


# -- scheduling ---------------------------------------------------------------------------------------


def test_gpu_nodes_need_the_gpu_taint_with_no_schedule() -> None:
    wrong_effect = Taint(key="nvidia.com/gpu", value="present", effect="PreferNoSchedule")
    other = Taint(key="dedicated", value="gpu", effect="NoSchedule")
    nodes = [node("ok"), node("bare", taints=()), node("soft", taints=(wrong_effect,)), node("other", taints=(other,))]
    nodes.append(node("cpu", gpu_capacity=0, taints=()))  # not a GPU node: nothing to say
    nodes.append(node("mig", gpu_capacity=0, mig_allocatable={"nvidia.com/mig-1g.10gb": 7}, taints=()))
    got = found(inventory(snapshot(nodes)))
    assert got == {"nodes.gpu-taint": [["Node/bare"], ["Node/mig"], ["Node/other"], ["Node/soft"]]}


def test_gpu_pods_need_a_toleration_for_the_gpu_taint() -> None:
    pods = [pod(name) for name in ("exists", "equal", "wildcard", "none", "wrong-effect", "done")]
    tolerations = {
        "exists": [{"key": "nvidia.com/gpu", "operator": "Exists"}],  # any effect
        "equal": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
        "wildcard": [{"operator": "Exists"}],
        "none": [],
        "wrong-effect": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}],
        "done": [],
    }
    pods[-1] = pod("done", phase="Succeeded")  # a finished pod is never scheduled again
    snap = snapshot([node()], pods)
    raw_pods = {p.key: raw_pod(p, tolerations[p.name]) for p in pods}
    assert found(inventory(snap, pods=raw_pods)) == {"pods.gpu-toleration": [["Pod/ml/none"], ["Pod/ml/wrong-effect"]]}


def test_without_the_pod_list_the_toleration_check_says_nothing() -> None:
    snap = snapshot([node()], [pod()])
    assert found(inventory(snap, pods=None)) == {}


# -- namespaces ---------------------------------------------------------------------------------------


def test_gpu_namespaces_need_a_quota_on_each_gpu_resource_they_use() -> None:
    pods = [pod("a", "quota"), pod("b", "none"), pod("c", "mig", gpus=0, mig={"nvidia.com/mig-1g.10gb": 1})]
    namespaces = [
        NamespaceUsage(name="quota", gpu_quota_hard=4),
        NamespaceUsage(name="mig", gpu_quota_hard=4),  # a quota on whole GPUs does not cover MIG instances
    ]
    got = findings(inventory(snapshot([node()], pods, namespaces=namespaces)), "namespaces.gpu-quota")
    assert [(f.objects[0].name, f.detail) for f in got] == [
        ("mig", "no unscoped quota on requests.nvidia.com/mig-1g.10gb"),
        ("none", "no unscoped quota on requests.nvidia.com/gpu"),
    ]


def test_gpu_namespaces_need_a_limit_range() -> None:
    pods = [pod("a", "limited"), pod("b", "open")]
    inv = inventory(snapshot([node()], pods), limit_ranges=[raw("defaults", "limited")])
    assert found(inv) == {"namespaces.limit-range": [["Namespace/open"]]}


# -- jobs ---------------------------------------------------------------------------------------------


def _job(name: str, *, ttl: int | None = 3600, state: str | None = None, cronjob: bool = False) -> dict:
    meta = {"ownerReferences": [{"kind": "CronJob", "name": "nightly"}]} if cronjob else {}
    spec: dict = {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    conditions = [{"type": state, "status": "True"}] if state else []
    return raw(name, "ml", **meta) | {"spec": spec, "status": {"conditions": conditions}}


def test_finished_jobs_whose_pods_still_hold_gpus() -> None:
    from gpuctl.model import Owner

    holding = pod("train-x", owners=(Owner(kind="Job", name="train"),))
    running = pod("other-x", owners=(Owner(kind="Job", name="other"),))
    gone = pod("old-x", phase="Succeeded", owners=(Owner(kind="Job", name="old"),))
    jobs = [_job("train", state="Complete"), _job("other"), _job("old", state="Failed")]
    got = found(inventory(snapshot([node()], [holding, running, gone]), jobs=jobs))
    assert got == {"jobs.finished-holding-gpus": [["Job/ml/train", "Pod/ml/train-x"]]}


def test_gpu_jobs_need_a_ttl_unless_a_cronjob_cleans_up() -> None:
    cpu_job = raw("cpu", "ml") | {"spec": {"template": {"spec": {"containers": [{}]}}}}
    jobs = [_job("ttl"), _job("no-ttl", ttl=None), _job("cron", ttl=None, cronjob=True), cpu_job]
    assert found(inventory(snapshot([node()]), jobs=jobs)) == {"jobs.no-ttl": [["Job/ml/no-ttl"]]}


# -- priority -----------------------------------------------------------------------------------------


def _class(name: str, value: int, policy: str | None = None) -> dict:
    return raw(name) | {"value": value, **({"preemptionPolicy": policy} if policy else {})}


def test_no_user_priority_class_at_all() -> None:
    inv = inventory(snapshot([node()], [pod()]), priority_classes=[_class("system-node-critical", 2000001000)])
    assert found(inv) == {"priority.none": [[]]}


def test_gpu_pods_without_a_class_are_listed_per_namespace() -> None:
    pods = [pod("a", priority_class=None), pod("b", priority_class=None), pod("c"), pod("d", "other", priority_class=None)]
    got = found(inventory(snapshot([node()], pods)))
    assert got == {"priority.pod-without-class": [["Pod/ml/a", "Pod/ml/b"], ["Pod/other/d"]]}


def test_low_priority_classes_must_not_preempt() -> None:
    classes = [
        _class("serving", 1_000_000),
        _class("training", 10_000, "Never"),
        _class("batch-spot", 50_000),  # named low: must not preempt whatever its value
        _class("scavenger", 10, "Never"),  # low and right
        _class("unused-batch", 1),  # no GPU pod uses it: not a GPU class
    ]
    pods = [pod("a", priority_class=c) for c in ("serving", "training", "batch-spot", "scavenger")]
    got = found(inventory(snapshot([node()], pods), priority_classes=classes))
    assert got == {"priority.low-preempts": [["PriorityClass/batch-spot"]]}


def test_the_lowest_of_several_gpu_classes_is_low() -> None:
    classes = [_class("serving", 1_000_000), _class("training", 10_000)]
    pods = [pod("a", priority_class="serving"), pod("b", priority_class="training")]
    assert found(inventory(snapshot([node()], pods), priority_classes=classes)) == {
        "priority.low-preempts": [["PriorityClass/training"]]
    }
    one = inventory(snapshot([node()], pods[:1]), priority_classes=classes)  # a single class is not "lowest"
    assert found(one) == {}


# -- usage (metrics) ----------------------------------------------------------------------------------


def _gpu(index: int, holder: str | None = None, **kw: object) -> Gpu:
    held = PodRef(namespace="ml", name=holder) if holder else None
    return Gpu(node=str(kw.pop("node", "n1")), pool="a100", index=index, pod=held, **kw)  # type: ignore[arg-type]


def test_idle_pods_are_reported_and_quiet_stale_or_unmeasured_ones_are_not() -> None:
    pods = [
        pod("idle", idle=True, idle_for_s=7200, util_pct=0.5),
        pod("quiet", util_pct=1.0),  # under the threshold, not for the whole window yet
        pod("unmeasured"),
    ]
    gpus = [_gpu(0, "idle", idle=True, util_pct=0.5), _gpu(1, "quiet", util_pct=1), _gpu(2, "unmeasured", util_pct=50)]
    got = findings(inventory(snapshot([node()], pods, gpus)), "gpus.idle")
    assert [f.objects[0].key for f in got] == ["Pod/ml/idle"]
    assert "for 2h00m" in got[0].detail


def test_gpu_nodes_without_any_dcgm_series() -> None:
    nodes = [node("measured"), node("dark"), node("listed"), node("cpu", gpu_capacity=0, taints=())]
    # The join lists a GPU node's devices even when no series names them: rows without any reading.
    gpus = [_gpu(0, node="measured", util_pct=10), _gpu(0, node="listed"), _gpu(1, node="listed")]
    got = found(inventory(snapshot(nodes, gpus=gpus)))
    assert got == {"metrics.no-dcgm": [["Node/dark"], ["Node/listed"]]}


def test_no_metrics_source_means_no_metrics_findings() -> None:
    snap = snapshot([node("dark")], [pod(idle=True, node="dark")], metrics=False)
    assert found(inventory(snap)) == {}


def test_series_without_pod_labels_on_a_node_running_gpu_pods() -> None:
    nodes = [node("labelled"), node("unlabelled"), node("empty")]
    pods = [pod("a", node="labelled"), pod("b", node="unlabelled")]
    gpus = [
        _gpu(0, "a", node="labelled", util_pct=50),
        _gpu(0, node="unlabelled", util_pct=50),
        _gpu(0, node="empty", util_pct=0),  # no pods there: nothing to attribute
    ]
    got = found(inventory(snapshot(nodes, pods, gpus)))
    assert got == {"metrics.no-pod-attribution": [["Node/unlabelled", "Pod/ml/b"]]}


def test_stale_readings_are_their_own_finding() -> None:
    pods = [pod("a")]
    gpus = [_gpu(0, "a", stale=True, util_pct=0), _gpu(1, util_pct=0)]
    got = findings(inventory(snapshot([node()], pods, gpus)), "metrics.stale")
    assert [(f.objects[0].key, f.detail) for f in got] == [("Node/n1", "1 of 2 device(s): n1/0")]
    assert findings(inventory(snapshot([node()], pods, gpus)), "gpus.idle") == []


# -- partitioning -------------------------------------------------------------------------------------


def test_failed_and_long_pending_mig_reconfigurations() -> None:
    nodes = [
        node("failed", mig_config="all-bogus", mig_config_state="failed"),
        node("stuck", mig_config="all-1g.10gb", mig_config_state="pending"),
        node("moving", mig_config="all-1g.10gb", mig_config_state="pending"),
        node("done", mig_config="all-1g.10gb", mig_config_state="success"),
    ]
    raw_nodes = {n.name: raw(n.name) for n in nodes}
    raw_nodes["stuck"] = raw("stuck", managedFields=managed_state_at(ago(60)))
    raw_nodes["moving"] = raw("moving", managedFields=managed_state_at(ago(2)))
    inv = inventory(snapshot(nodes), nodes=raw_nodes)
    assert found(inv) == {"mig.failed": [["Node/failed"]], "mig.pending": [["Node/stuck"]]}
    assert "pending for 1h00m" in findings(inv, "mig.pending")[0].detail
    assert found(inv, DoctorOptions(mig_pending_after_s=60)) == {
        "mig.failed": [["Node/failed"]],
        "mig.pending": [["Node/moving"], ["Node/stuck"]],
    }


def test_pending_with_no_record_of_when_is_reported() -> None:
    inv = inventory(snapshot([node("n", mig_config_state="pending")]))
    assert "pending for an unknown time" in findings(inv, "mig.pending")[0].detail


def test_mixed_mig_strategies_in_one_pool() -> None:
    nodes = [node("a1"), node("a2"), node("a3"), node("b1", pool="h100"), node("b2", pool="h100")]
    strategy = {"a1": "single", "a2": "mixed", "a3": "none", "b1": "mixed", "b2": "mixed"}
    raw_nodes = {n: raw(n, labels={"nvidia.com/mig.strategy": s}) for n, s in strategy.items()}
    inv = inventory(snapshot(nodes), nodes=raw_nodes)
    assert found(inv) == {"mig.mixed-strategies": [["Node/a1", "Node/a2"]]}


def test_time_sliced_nodes_need_a_note_on_memory_isolation() -> None:
    nodes = [
        node("noted", gpu_replicas=4),
        node("silent", gpu_replicas=4),
        node("shared", gpu_capacity=0, gpu_slices_allocatable=8),
        node("whole"),
    ]
    note = {"gpuctl.io/time-slicing-note": "shared GPU: no memory isolation"}
    raw_nodes = {n.name: raw(n.name) for n in nodes} | {"noted": raw("noted", annotations=note)}
    got = found(inventory(snapshot(nodes), nodes=raw_nodes))
    assert got == {"timeslicing.no-isolation-note": [["Node/shared"], ["Node/silent"]]}


# -- alerting -----------------------------------------------------------------------------------------


def test_memory_rules_dividing_used_by_free() -> None:
    rules = [
        Rule("GpuMemoryHigh", "DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_FREE > 0.92", "team", "rules.yaml"),
        Rule("GpuMemoryOk", "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.92", "g", "x"),
    ]
    got = findings(inventory(snapshot(), rules=rules), "alerts.memory-ratio")
    assert [f.objects[0].key for f in got] == ["PrometheusRule/GpuMemoryHigh"]
    assert got[0].detail.startswith("group team in rules.yaml: ")
