"""The human summary: every section present, numbers from the snapshot, problems spelled out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gpuctl.model import Alert, PodRef, WatchHealth
from gpuctl.render.summary import duration, render_summary, table
from gpuctl.state.records import GpuSample, Kind, MetricsBatch, NodeRecord, PodRecord, QuotaRecord
from gpuctl.state.store import ClusterStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def store_with_an_idle_holder() -> ClusterStore:
    now = T0 + timedelta(hours=3)
    store = ClusterStore(clock=lambda: now, idle_window_s=1800)
    gpus = {"nvidia.com/gpu": 4}
    store.replace(Kind.NODE, [NodeRecord("gpu-1", {"karpenter.sh/nodepool": "a100"}, gpus, gpus, ready=True)])
    store.replace(
        Kind.POD,
        [PodRecord("ml", "notebook", "gpu-1", "Running", {"nvidia.com/gpu": 2}, "StatefulSet", "notebook", created=T0)],
    )
    store.replace(Kind.QUOTA, [QuotaRecord("ml", "gpu", {"requests.nvidia.com/gpu": 8}, {"requests.nvidia.com/gpu": 2})])
    ref = PodRef(namespace="ml", name="notebook")
    samples = (GpuSample("gpu-1", 0, pod=ref, util_pct=0.5), GpuSample("gpu-1", 1, pod=ref, util_pct=1.5))
    store.backfill_idle({"gpu-1/0": T0, "gpu-1/1": T0})
    store.apply_metrics(MetricsBatch(at=now, samples=samples))
    store.set_metrics_source("prometheus")
    store.set_watch_health(WatchHealth(source="kubernetes", connected=True, context="prod"))
    store.set_alerts([Alert(name="GpuXidError", node="gpu-1")])
    return store


def test_summary_sections_and_numbers() -> None:
    text = render_summary(store_with_an_idle_holder().snapshot())
    assert "cluster: context prod, connected" in text
    assert "metrics: prometheus, 0s old" in text and "STALE" not in text
    assert "GPUs: 4 allocatable, 2 allocated (0 busy, 2 idle, 0 quiet or unmeasured), 2 free" in text
    assert "alerts: 1 firing (GpuXidError)" in text
    lines = text.splitlines()
    pool_row = lines[lines.index("POOLS") + 2].split()
    assert pool_row == ["a100", "1", "1", "4", "2", "2", "-"]
    ns_row = lines[lines.index("NAMESPACES") + 2].split()
    assert ns_row == ["ml", "8", "2", "2", "0", "2", "6.0"]  # 2 GPUs x 3 h
    holder = next(line for line in lines if line.startswith("ml/notebook"))
    assert holder.split() == ["ml/notebook", "gpu-1", "2", "3h00m", "1.0%", "StatefulSet/notebook"]


def test_summary_of_an_empty_disconnected_cluster() -> None:
    store = ClusterStore()
    store.set_watch_health(WatchHealth(source="kubernetes", connected=False, error="cannot connect: refused"))
    store.metrics_failed("Prometheus down", T0)
    text = render_summary(store.snapshot())
    assert "DISCONNECTED - cannot connect: refused" in text
    assert "STALE - Prometheus down" in text
    assert "(no GPU nodes)" in text and "(none)" in text


def test_helpers() -> None:
    assert [duration(s) for s in (None, 5, 125, 3 * 3600 + 300, 2 * 86400 + 3600)] == ["-", "5s", "2m", "3h05m", "2d01h"]
    assert table(["a", "n"], [("x", 1), ("long", None)], right=[False, True]) == ["a     n", "x     1", "long  -"]


def test_summary_names_stale_gpus_other_clusters_and_a_failed_history() -> None:
    store = store_with_an_idle_holder()
    now = T0 + timedelta(hours=3)
    ref = PodRef(namespace="ml", name="notebook")
    store.apply_metrics(
        MetricsBatch(
            at=now,
            samples=(
                GpuSample("gpu-1", 0, pod=ref, util_pct=0.5, stale=True),
                GpuSample("gpu-1", 1, pod=ref, util_pct=1.5),
                GpuSample("other-cluster-node", 0, util_pct=3.0),
            ),
        )
    )
    store.history_failed("Prometheus query failed: HTTP Status Code 422", retry_at=now + timedelta(minutes=1))
    text = render_summary(store.snapshot())
    assert "1 GPU(s) STALE (frozen or no recent sample: neither busy nor idle)" in text
    assert "1 host(s) match no node (another cluster? see --metrics-selector)" in text
    assert "idle history failed, retry at 03:01:00Z - Prometheus query failed: HTTP Status Code 422" in text
    assert "(0 busy, 1 idle," in text  # the stale one is not counted idle


def test_summary_names_a_stopped_source_and_objects_left_out() -> None:
    store = store_with_an_idle_holder()
    store.set_watch_health(WatchHealth(source="kubernetes", connected=True, context="prod", objects_skipped=2))
    store.source_failed("kubernetes", "'name' (KeyError)")
    lines = render_summary(store.snapshot()).splitlines()
    assert lines[1] == "STOPPED: kubernetes since 03:00:00Z - 'name' (KeyError)"
    assert lines[2] == (
        "cluster: context prod, DISCONNECTED, 2 object(s) unreadable, left out - the kubernetes source stopped: 'name' (KeyError)"
    )


def test_summary_says_a_refresh_that_lost_most_gpus_is_partial() -> None:
    snap = store_with_an_idle_holder().snapshot()
    since = T0 + timedelta(hours=3)
    metrics = snap.metrics.model_copy(update={"gpus_reported": 0, "gpus_missing": 2, "missing_since": since})
    text = render_summary(snap.model_copy(update={"metrics": metrics}))
    assert "metrics: prometheus, 0s old, PARTIAL: 2 GPU(s) missing since 03:00:00Z (0 reported)" in text


def test_summary_says_readings_whose_freshness_went_unchecked_are_all_stale() -> None:
    snap = store_with_an_idle_holder().snapshot()
    metrics = snap.metrics.model_copy(update={"unconfirmed": "freshness check failed: Prometheus did not answer in time"})
    text = render_summary(snap.model_copy(update={"metrics": metrics}))
    assert (
        "metrics: prometheus, 0s old, UNCONFIRMED: every reading shown stale - freshness check failed:"
        " Prometheus did not answer in time"
    ) in text


def test_summary_says_idle_history_is_pending() -> None:
    snap = store_with_an_idle_holder().snapshot()
    assert "history pending" not in render_summary(snap)
    metrics = snap.metrics.model_copy(update={"history_pending": True})
    text = render_summary(snap.model_copy(update={"metrics": metrics}))
    assert "; idle history pending: idle streaks count from gpuctl's start until it answers" in text


def test_summary_without_a_cluster_lists_the_gpus_themselves() -> None:
    """`gpuctl snapshot --local`: NVML readings, no Kubernetes, so no pools, quotas or holders to show."""
    store = ClusterStore(clock=lambda: T0)
    store.set_metrics_source("nvml")
    whole = GpuSample("vm", 0, model="NVIDIA H200", util_pct=100.0, mem_used_mib=22105.9, mem_free_mib=121665.1,
                      temp_c=65.0, power_w=690.7)  # fmt: skip
    part = GpuSample("vm", 1, model="NVIDIA A100-SXM4-80GB", mig_profile="1g.10gb", mig_instance=9, mem_used_mib=512.0)
    store.apply_metrics(MetricsBatch(at=T0, samples=(whole, part)))
    lines = render_summary(store.snapshot()).splitlines()
    assert "cluster: none (GPUs only: no pods, so no GPU is held or idle)" in lines
    assert "POOLS" not in lines and "NAMESPACES" not in lines
    assert lines[lines.index("GPUS (2)") + 2].split() == [
        "vm/0", "NVIDIA", "H200", "100%", "21.6", "GiB", "of", "140.4", "65", "C", "691", "W"
    ]  # fmt: skip
    assert lines[lines.index("GPUS (2)") + 3].split()[:4] == ["vm/1", "mig", "9", "1g.10gb"]


def test_summary_without_a_cluster_or_gpus_says_so() -> None:
    store = ClusterStore(clock=lambda: T0)
    store.set_metrics_source("nvml")
    store.metrics_failed("NVIDIA driver/NVML not found", T0)
    text = render_summary(store.snapshot())
    assert "GPUS (0)\n(no GPU reported)" in text and "metrics: nvml, STALE - NVIDIA driver/NVML not found" in text
