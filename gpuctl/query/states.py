"""What a pod or a GPU is doing now, in the words every front end uses.

A held GPU is exactly one of busy (at or above the idle threshold in the latest
sample), idle (under it for the whole idle window), stale (its readings are not
recent: neither busy nor idle, whatever they say) or quiet (none of those: under
it for less than the window, or not measured). A pod reads the same way from the
mean utilisation of the GPUs it holds, once it runs.
"""

from __future__ import annotations

from enum import StrEnum

from gpuctl.model import Gpu, GpuPod


class PodState(StrEnum):
    IDLE = "idle"  # every GPU it holds is idle (GpuPod.idle_for_s says how long)
    NOT_RUNNING = "not running"  # Pending, Succeeded, Failed, Unknown: GpuPod.phase says which
    UNMEASURED = "unmeasured"  # running, but no utilisation reading for its GPUs
    BUSY = "busy"  # mean utilisation at or above the idle threshold
    QUIET = "quiet"  # under the threshold, not for the whole window yet


class GpuState(StrEnum):
    FREE = "free"  # no pod holds it
    IDLE = "idle"
    BUSY = "busy"
    STALE = "stale"  # held, but its readings are not recent (Gpu.stale): neither busy nor idle
    QUIET = "quiet"  # held, under the threshold for less than the window, or not measured


def pod_state(pod: GpuPod, threshold_pct: float) -> PodState:
    """`threshold_pct`: the snapshot's `idle_threshold_pct`."""
    if pod.idle:
        return PodState.IDLE
    if pod.phase != "Running":
        return PodState.NOT_RUNNING
    if pod.util_pct is None:
        return PodState.UNMEASURED
    return PodState.BUSY if pod.util_pct >= threshold_pct else PodState.QUIET


def gpu_state(gpu: Gpu) -> GpuState:
    if gpu.pod is None:
        return GpuState.FREE
    if gpu.stale:
        return GpuState.STALE
    if gpu.idle:
        return GpuState.IDLE
    return GpuState.BUSY if gpu.busy else GpuState.QUIET
