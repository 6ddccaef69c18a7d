"""Idle streaks from Prometheus's history, so they survive a gpuctl restart.

Two subqueries (queries.last_busy, queries.first_seen) look back over the idle
window plus a margin; this module sizes them and joins their answers with the
current samples. For each GPU now under the threshold, only the utilisation
metric its current reading came from counts (the one merge_readings chose by
priority: for a MIG instance the profiling ratio, not a GPU_UTIL of 0), and
only the current holder's series (the idle clock restarts when a GPU changes
hands). A GPU never busy in the look-back counts as idle since it first
appeared in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gpuctl.sources import dcgm_fields as fields
from gpuctl.sources.queries import NAME_LABEL
from gpuctl.state.records import GpuSample

STEPS_PER_WINDOW = 120  # resolution of the subqueries: under 1 % of the idle window
MARGIN_STEPS = 4  # look back this many steps past the window, so a GPU idle for longer reads as idle


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """How far back and how finely to look: enough to tell whether a GPU has been idle for the window."""

    lookback_s: float
    step_s: float

    @classmethod
    def for_window(cls, idle_window_s: float, refresh_s: float) -> HistoryPlan:
        """Step: the refresh interval, or window/120 when that is coarser (never under 1 s);
        look-back: the window plus four steps."""
        step = float(max(1, math.ceil(max(refresh_s, idle_window_s / STEPS_PER_WINDOW))))
        return cls(lookback_s=idle_window_s + MARGIN_STEPS * step, step_s=step)


def idle_since(
    samples: Sequence[GpuSample],
    threshold_pct: float,
    *,
    last_busy: Iterable[Any],
    first_seen: Iterable[Any],
    now: datetime,
) -> dict[str, datetime]:
    """GPU key -> under the threshold since, for GPUs under it now (pure; see the module doc).

    Stale samples get an answer too: the store, not this join, decides that they
    are no idle evidence (it drops their seeds with the samples)."""
    busy_at = _timestamps(last_busy, max)
    seen_at = _timestamps(first_seen, min)
    out: dict[str, datetime] = {}
    for sample in samples:
        if sample.util_pct is None or sample.util_pct >= threshold_pct or sample.util_metric is None:
            continue
        name = sample.util_metric
        last = _for_holder(busy_at.get((sample.key, name), {}), sample)
        first = _for_holder(seen_at.get((sample.key, name), {}), sample)
        since = max(last) if last else (min(first) if first else None)
        if since is not None:
            out[sample.key] = min(datetime.fromtimestamp(since, UTC), now)
    return out


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
