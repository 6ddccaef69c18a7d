"""Pod and GPU states: exactly one each, the same words in every front end."""

from __future__ import annotations

from gpuctl.model import Gpu, GpuPod, PodRef
from gpuctl.query import GpuState, PodState, gpu_state, pod_state


def pod(**kw: object) -> GpuPod:
    return GpuPod(namespace="ml", name="p", phase=str(kw.pop("phase", "Running")), gpus=1, **kw)  # type: ignore[arg-type]


def test_pod_states() -> None:
    assert pod_state(pod(idle=True, util_pct=0.5, idle_for_s=3600), 5) is PodState.IDLE
    assert pod_state(pod(phase="Pending"), 5) is PodState.NOT_RUNNING
    assert pod_state(pod(), 5) is PodState.UNMEASURED
    assert pod_state(pod(util_pct=5.0), 5) is PodState.BUSY  # at the threshold counts as busy
    assert pod_state(pod(util_pct=4.9), 5) is PodState.QUIET


def test_gpu_states() -> None:
    held = PodRef(namespace="ml", name="p")
    assert gpu_state(Gpu(node="n", pool="p", index=0, util_pct=90)) is GpuState.FREE
    assert gpu_state(Gpu(node="n", pool="p", index=0, pod=held, idle=True)) is GpuState.IDLE
    assert gpu_state(Gpu(node="n", pool="p", index=0, pod=held, busy=True, util_pct=90)) is GpuState.BUSY
    assert gpu_state(Gpu(node="n", pool="p", index=0, pod=held, util_pct=1)) is GpuState.QUIET


def test_a_stale_gpu_is_stale_whatever_its_last_reading_says() -> None:
    held = PodRef(namespace="ml", name="p")
    assert gpu_state(Gpu(node="n", pool="p", index=0, pod=held, util_pct=90, stale=True)) is GpuState.STALE
    assert gpu_state(Gpu(node="n", pool="p", index=0, pod=held, util_pct=0, stale=True)) is GpuState.STALE
