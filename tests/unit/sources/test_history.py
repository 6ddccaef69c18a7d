"""Joining the idle-history subqueries with the current samples: only the metric and holder the sample uses count,
and a streak never reaches back across a gap."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuctl.model import PodRef
from gpuctl.sources.history import idle_since
from gpuctl.sources.queries import NAME_LABEL
from gpuctl.state.records import GpuSample

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
MIG = {"gpu": "3", "Hostname": "n1", "GPU_I_ID": "9", "GPU_I_PROFILE": "1g.10gb", "namespace": "ml", "pod": "mig-job"}
WHOLE = {"gpu": "0", "Hostname": "n1", "namespace": "ml", "pod": "trainer"}


def series(name: str, ts: float, **labels: str) -> dict[str, object]:
    return {"metric": {NAME_LABEL: name, **labels}, "value": [T, str(ts)]}


def sample(labels: dict[str, str], util_metric: str, **kw: object) -> GpuSample:
    mig = labels.get("GPU_I_ID")
    return GpuSample(
        hostname=labels["Hostname"],
        index=int(labels["gpu"]),
        mig_instance=None if mig is None else int(mig),
        pod=PodRef(namespace=labels["namespace"], name=labels["pod"]),
        util_pct=0.0,
        util_metric=util_metric,
        **kw,  # type: ignore[arg-type]
    )


def test_a_mig_instance_reads_its_profiling_ratio_not_a_gpu_util_of_zero() -> None:
    # GPU_UTIL is a constant 0 for the instance (never busy, seen for the whole look-back);
    # the graphics-engine ratio was busy 100 s ago: idle since then, not since the look-back began.
    present = [series("DCGM_FI_DEV_GPU_UTIL", T - 1800, **MIG), series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", T - 1800, **MIG)]
    busy = [series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", T - 100, **MIG)]
    since = idle_since([sample(MIG, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")], 5, last_busy=busy, present_since=present, now=NOW)
    assert since == {"n1/3/mig9": datetime.fromtimestamp(T - 100, UTC)}


def test_a_whole_gpu_reads_the_metric_its_sample_came_from() -> None:
    present = [series("DCGM_FI_DEV_GPU_UTIL", T - 1800, **WHOLE), series("DCGM_FI_DEV_GPU_UTIL_RATIO", T - 300, **WHOLE)]
    busy = [series("DCGM_FI_DEV_GPU_UTIL", T - 900, **WHOLE)]
    # Mid-upgrade to dcgm-exporter 4.9: the reading now comes from the ratio, seen for 300 s and never busy.
    since = idle_since([sample(WHOLE, "DCGM_FI_DEV_GPU_UTIL_RATIO")], 5, last_busy=busy, present_since=present, now=NOW)
    assert since == {"n1/0": datetime.fromtimestamp(T - 300, UTC)}
    since = idle_since([sample(WHOLE, "DCGM_FI_DEV_GPU_UTIL")], 5, last_busy=busy, present_since=present, now=NOW)
    assert since == {"n1/0": datetime.fromtimestamp(T - 900, UTC)}


def test_another_holders_history_does_not_count() -> None:
    present = [series("DCGM_FI_DEV_GPU_UTIL", T - 1800, **{**WHOLE, "pod": "previous-holder"})]
    assert idle_since([sample(WHOLE, "DCGM_FI_DEV_GPU_UTIL")], 5, last_busy=[], present_since=present, now=NOW) == {}
    present = [series("DCGM_FI_DEV_GPU_UTIL", T - 1800, **WHOLE)]
    assert idle_since([sample(WHOLE, "DCGM_FI_DEV_GPU_UTIL")], 5, last_busy=[], present_since=present, now=NOW) == {
        "n1/0": datetime.fromtimestamp(T - 1800, UTC)
    }


def test_a_streak_starts_no_earlier_than_the_samples_resumed_after_a_gap() -> None:
    # Busy 1,000 s ago, then a gap (the exporter was down) until 400 s ago: idle since 400 s ago.
    busy = [series("DCGM_FI_DEV_GPU_UTIL", T - 1000, **WHOLE)]
    present = [series("DCGM_FI_DEV_GPU_UTIL", T - 400, **WHOLE)]
    since = idle_since([sample(WHOLE, "DCGM_FI_DEV_GPU_UTIL")], 5, last_busy=busy, present_since=present, now=NOW)
    assert since == {"n1/0": datetime.fromtimestamp(T - 400, UTC)}
