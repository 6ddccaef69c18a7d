"""Idle streaks from Prometheus's history, so they survive a gpuctl restart.

Two answers, per utilisation series: when it was last busy, and since when it
has been present without a gap. Where Prometheus runs gpuctl's recording rules
(gpuctl.sources.recorded decides) they are one instant read of both
(queries.recorded_history, split by record), which reach back to when
the rules began. Otherwise two subqueries (queries.last_busy,
queries.present_since) look back over the idle window plus a margin, at a step
of a fifteenth of it (the question is "idle for the whole window?", not when to
the second); this module sizes them. Either way it joins the answers with the
current samples. Each utilisation name is read only where merge_readings
would choose it: the profiling ratio on MIG instances, GPU_UTIL on whole GPUs
(on most fleets both are exported for every device, so this halves the work).
A device reporting only the other kind gets no history: its streak starts at
gpuctl's start, as for any device without history. A GPU now under the threshold has been under it since its
last busy step (or evaluation) or since its samples last resumed after a gap
over the idle clock's grace period (the rules': 4 minutes, at most the grace
period), whichever is later: the idle clock's own rule
(gpuctl.state.idle), so history never vouches for time nobody measured. Only
the utilisation metric its current reading came from counts (the one
merge_readings chose by priority: for a MIG instance the profiling ratio, not a
GPU_UTIL of 0), and only the current holder's series (the idle clock restarts
when a GPU changes hands).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpuctl.sources import dcgm_fields as fields
from gpuctl.sources.queries import LAST_BUSY_RECORD, NAME_LABEL, PRESENT_SINCE_RECORD
from gpuctl.state.records import GpuSample

STEPS_PER_WINDOW = 15  # last_busy's resolution: a step of 120 s in a 30-minute window
PRESENCE_STEPS_PER_WINDOW = 12  # present_since's resolution (see HistoryPlan.for_window)
MARGIN_STEPS = 2  # look back this many steps past the window, so a GPU idle for longer reads as idle


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """How far back and how finely to look: enough to tell whether a GPU has been idle for the window."""

    lookback_s: float
    step_s: float  # last_busy's step
    gap_s: float  # the idle clock's grace period: a longer gap between samples ends a streak
    presence_step_s: float  # present_since's step: see for_window

    @classmethod
    def for_window(cls, idle_window_s: float, refresh_s: float, grace_s: float) -> HistoryPlan:
        """Step: the refresh interval, or window/15 when that is coarser, but at most half the
        grace period (so no gap over it goes unseen) and never under 1 s; look-back: the window
        plus two steps.

        A step ends a streak at most one step late (shorter, never longer): two minutes in the default
        30-minute window, while the subqueries' cost falls with the number of steps (120 steps cost
        ~10 s at 8,000 GPUs, BENCHMARKS.md section 8; at 12,500 devices 17 steps of 120 s cost
        Prometheus ~35 % less CPU than 34 of 60 s, bench/bench_prom_cost.py --variants). Presence is read at window/12 or half the
        grace period, whichever is finer, and never finer than the step (2.5 minutes by default):
        its answer only moves for a series that started, or came back after a gap, within the
        look-back, and at that step each sample is read twice, not eight times."""
        step = float(max(1, math.ceil(min(max(refresh_s, idle_window_s / STEPS_PER_WINDOW), grace_s / 2))))
        presence = float(max(step, math.floor(min(grace_s / 2, idle_window_s / PRESENCE_STEPS_PER_WINDOW))))
        return cls(lookback_s=idle_window_s + MARGIN_STEPS * step, step_s=step, gap_s=grace_s, presence_step_s=presence)


def idle_since(
    samples: Sequence[GpuSample],
    threshold_pct: float,
    *,
    last_busy: Iterable[Any],
    present_since: Iterable[Any],
    now: datetime,
) -> dict[str, datetime]:
    """GPU key -> under the threshold since, for GPUs under it now (pure; see the module doc).

    Stale samples get an answer too: the store, not this join, decides that they
    are no idle evidence (it drops their seeds with the samples)."""
    busy_at = _timestamps(last_busy, max)
    present_at = _timestamps(present_since, max)
    out: dict[str, datetime] = {}
    for sample in samples:
        if sample.util_pct is None or sample.util_pct >= threshold_pct or sample.util_metric is None:
            continue
        name = sample.util_metric
        present = _for_holder(present_at.get((sample.key, name), {}), sample)
        if not present:
            continue  # no history of this holder on this metric
        since = max(present + _for_holder(busy_at.get((sample.key, name), {}), sample))
        out[sample.key] = min(datetime.fromtimestamp(since, UTC), now)
    return out


def split_recorded(answer: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """queries.recorded_history's answer as the two answers of the subqueries (last busy, present since); a series
    of neither record (or no series at all) is left out."""
    last_busy: list[Any] = []
    present_since: list[Any] = []
    lists = {LAST_BUSY_RECORD: last_busy, PRESENT_SINCE_RECORD: present_since}
    for series in answer:
        labels = series.get("metric") if isinstance(series, dict) else None
        name = labels.get("__name__") if isinstance(labels, dict) else None
        into = lists.get(name) if isinstance(name, str) else None
        if into is not None:
            into.append(series)
    return last_busy, present_since


def _timestamps(results: Iterable[Any], pick: Callable[[float, float], float]) -> dict[tuple[str, str], dict[Any, float]]:
    """(gpu key, metric name) -> pod (or None) -> timestamp, from series whose labels name a GPU."""
    out: dict[tuple[str, str], dict[Any, float]] = {}
    for series in results:
        try:
            labels = series["metric"]
            name = labels[NAME_LABEL]
            gpu = fields.parse_identity(labels)
            ts = fields.parse_value(series["value"])
        except (ValueError, KeyError, TypeError):
            continue
        pod = fields.parse_pod(labels)
        holder = pod[0] if pod else None
        by_pod = out.setdefault((gpu.key, name), {})
        by_pod[holder] = pick(by_pod[holder], ts) if holder in by_pod else ts
    return out


def _for_holder(by_pod: Mapping[Any, float], sample: GpuSample) -> list[float]:
    # An unheld sample may still carry the scrape target's own pod label in history
    # (see dcgm_fields.merge_readings): then take every series.
    if sample.pod in by_pod:
        return [by_pod[sample.pod]]
    return list(by_pod.values()) if sample.pod is None else []
