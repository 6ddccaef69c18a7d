"""How long each GPU has been under the idle threshold, per holder.

The clock runs on metric sample times (`MetricsBatch.at`), never on the wall
clock, so a slow consumer or a paused process does not make GPUs look idle.
A GPU is *idle* when a pod holds it and every sample for at least the idle
window was under the threshold. The clock restarts when a busy sample arrives
and when the GPU changes hands (a new pod gets its own window).

A GPU that vanishes from the metrics (exporter restart, scrape gap) keeps its
clock for a grace period, so one missed scrape does not reset a 29-minute
idle streak; after that it is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from gpuctl.state.records import GpuSample

DEFAULT_THRESHOLD_PCT = 5.0
DEFAULT_WINDOW_S = 30 * 60.0
DEFAULT_GRACE_S = 5 * 60.0


@dataclass(slots=True)
class _Entry:
    holder: str | None  # pod key; the window restarts when it changes
    since: datetime | None  # under threshold since; None while busy
    last_seen: datetime


class IdleClock:
    def __init__(
        self,
        *,
        threshold_pct: float = DEFAULT_THRESHOLD_PCT,
        window_s: float = DEFAULT_WINDOW_S,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.threshold_pct = threshold_pct
        self.window_s = window_s
        self.grace_s = grace_s
        self._entries: dict[str, _Entry] = {}
        self._backfill: dict[str, datetime] = {}
        self._at: datetime | None = None
        self._version = 0

    @property
    def version(self) -> int:
        """Moves whenever an answer of `reading`, `idle_for` or `is_idle` may have changed."""
        return self._version

    @property
    def at(self) -> datetime | None:
        """Time of the latest batch observed: the clock's 'now'."""
        return self._at

    def observe(self, at: datetime, samples: Iterable[GpuSample]) -> bool:
        """Feed one metrics batch. Returns False (and changes nothing) for an out-of-order batch."""
        if self._at is not None and at < self._at:
            return False
        self._at = at
        self._version += 1
        for sample in samples:
            if sample.util_pct is None:
                continue  # no utilisation reading: neither busy nor idle evidence
            key = sample.key
            holder = sample.pod.key if sample.pod is not None else None
            entry = self._entries.get(key)
            if sample.util_pct >= self.threshold_pct:
                since = None
            elif entry is None or entry.since is None or entry.holder != holder:
                seeded = self._backfill.get(key) if entry is None else None
                since = min(seeded, at) if seeded is not None else at
            else:
                since = entry.since
            if entry is None:
                self._entries[key] = _Entry(holder, since, at)
            else:
                entry.holder, entry.since, entry.last_seen = holder, since, at
        self._backfill.clear()  # history only seeds GPUs the first batch after it knew about
        # Entries this batch just touched hold `at` itself: skip them without date arithmetic.
        expired = [
            k for k, e in self._entries.items() if e.last_seen is not at and (at - e.last_seen).total_seconds() > self.grace_s
        ]
        for key in expired:
            del self._entries[key]
        return True

    def backfill(self, idle_since: Mapping[str, datetime]) -> None:
        """Seed 'under threshold since' from history, so a restart does not reset idle streaks.

        Only ever moves a clock earlier, and never touches a GPU currently seen busy.
        GPUs not seen yet are seeded when their first under-threshold sample arrives.
        """
        self._version += 1
        for key, since in idle_since.items():
            entry = self._entries.get(key)
            if entry is None:
                self._backfill[key] = since
            elif entry.since is not None and since < entry.since:
                entry.since = since

    def idle_for(self, key: str) -> float | None:
        """Seconds under the threshold as of the latest batch; None when busy or unknown."""
        entry = self._entries.get(key)
        if entry is None or entry.since is None or self._at is None:
            return None
        return max(0.0, (self._at - entry.since).total_seconds())

    def reading(self, key: str, held: bool) -> tuple[bool, float | None]:
        """(`held and is_idle(key)`, `idle_for(key)`) with one lookup: what the join asks per GPU."""
        entry = self._entries.get(key)
        if entry is None or entry.since is None or self._at is None:
            return False, None
        idle_for = max(0.0, (self._at - entry.since).total_seconds())
        return held and entry.holder is not None and idle_for >= self.window_s, idle_for

    def is_idle(self, key: str) -> bool:
        """Held by a pod and under the threshold for at least the window."""
        entry = self._entries.get(key)
        if entry is None or entry.holder is None:
            return False
        idle_for = self.idle_for(key)
        return idle_for is not None and idle_for >= self.window_s

    def __len__(self) -> int:
        return len(self._entries)
