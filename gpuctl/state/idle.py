"""How long each GPU has been under the idle threshold, per holder, measured.

The clock runs on metric sample times (`MetricsBatch.at`: the Prometheus
evaluation time, NVML's read time, the demo's simulated time), never on the
wall clock of the process reading it, so a slow consumer or a paused process
does not make GPUs look idle.

A streak is a run of utilisation readings under the threshold, all for the
same holder (pod), with no two consecutive readings further apart than the
grace period. It ends at a reading at or over the threshold, when the GPU
changes hands (a new pod gets its own window), and at a gap: a reading that
comes more than `grace_s` after the previous one starts a new streak at
itself, because nobody measured the GPU in between (a Prometheus outage, a
suspended laptop, a stuck refresh). A sample without utilisation, or a GPU
missing from a batch, is no evidence either way: it neither extends nor ends
a streak, and a GPU without readings for longer than the grace period is
forgotten.

`idle_for` is the measured length of the current streak: from its first
reading to its latest one, never extrapolated to "now". A GPU is *idle* when
a pod holds it and its streak is at least the idle window long.

History can move a streak's start earlier (`backfill`), so a gpuctl restart
does not reset a 29-minute streak: only Prometheus's own record can vouch for
time this clock did not measure.
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
    holder: str | None  # pod key of the latest sample; the streak restarts when it changes
    since: datetime | None  # first reading of the current under-threshold streak; None while busy or unmeasured
    last_seen: datetime  # latest utilisation reading (the last evidence)


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
        self._backfill_at: datetime | None = None  # the clock's time when the pending history arrived
        self._at: datetime | None = None
        self._version = 0

    @property
    def version(self) -> int:
        """Moves whenever an answer of `reading`, `idle_for` or `is_idle` may have changed."""
        return self._version

    @property
    def at(self) -> datetime | None:
        """Time of the latest batch observed."""
        return self._at

    def observe(self, at: datetime, samples: Iterable[GpuSample]) -> bool:
        """Feed one metrics batch. Returns False (and changes nothing) for an out-of-order batch."""
        if self._at is not None and at < self._at:
            return False
        self._at = at
        self._version += 1
        seeds = self._pending_seeds(at)
        for sample in samples:
            key = sample.key
            holder = sample.pod.key if sample.pod is not None else None
            entry = self._entries.get(key)
            if sample.util_pct is None:
                if entry is not None and entry.holder != holder:
                    entry.holder, entry.since = holder, None  # changed hands unmeasured: the new holder has no streak yet
                continue
            if sample.util_pct >= self.threshold_pct:
                since = None
            elif entry is None:
                seeded = seeds.get(key)
                since = min(seeded, at) if seeded is not None else at
            elif entry.since is None or entry.holder != holder or (at - entry.last_seen).total_seconds() > self.grace_s:
                since = at  # a new streak: after a busy reading, for a new holder, or after a gap nobody measured
            else:
                since = entry.since
            if entry is None:
                self._entries[key] = _Entry(holder, since, at)
            else:
                entry.holder, entry.since, entry.last_seen = holder, since, at
        # Entries this batch just read hold `at` itself: skip them without date arithmetic.
        expired = [
            k for k, e in self._entries.items() if e.last_seen is not at and (at - e.last_seen).total_seconds() > self.grace_s
        ]
        for key in expired:
            del self._entries[key]
        return True

    def _pending_seeds(self, at: datetime) -> dict[str, datetime]:
        """History for GPUs not seen when it arrived; it seeds only the next batch, and only when
        that batch follows within the grace period (else history does not reach this batch)."""
        seeds, self._backfill = self._backfill, {}
        given_at, self._backfill_at = self._backfill_at, None
        if given_at is not None and (at - given_at).total_seconds() > self.grace_s:
            return {}
        return seeds

    def backfill(self, idle_since: Mapping[str, datetime]) -> None:
        """Seed streak starts from history, so a restart does not reset idle streaks.

        `idle_since[key]` says: Prometheus's record shows this GPU, with its current
        holder, under the threshold without a gap from then until the history was
        evaluated, which must be no earlier than the latest batch observed. That
        covers the whole current streak, so the streak's start may move back to it.
        Only ever moves a start earlier, and never touches a GPU currently seen busy
        (or with a streak not yet measured). GPUs not seen yet are seeded when their
        first under-threshold reading arrives in the next batch.
        """
        self._version += 1
        for key, since in idle_since.items():
            entry = self._entries.get(key)
            if entry is None:
                self._backfill[key] = since
            elif entry.since is not None and since < entry.since:
                entry.since = since
        if self._backfill:
            self._backfill_at = self._at

    def idle_for(self, key: str) -> float | None:
        """Measured seconds of the current under-threshold streak; None when busy or unknown."""
        entry = self._entries.get(key)
        if entry is None or entry.since is None:
            return None
        return max(0.0, (entry.last_seen - entry.since).total_seconds())

    def reading(self, key: str, held: bool) -> tuple[bool, float | None]:
        """(`held and is_idle(key)`, `idle_for(key)`) with one lookup: what the join asks per GPU."""
        entry = self._entries.get(key)
        if entry is None or entry.since is None:
            return False, None
        idle_for = max(0.0, (entry.last_seen - entry.since).total_seconds())
        return held and entry.holder is not None and idle_for >= self.window_s, idle_for

    def is_idle(self, key: str) -> bool:
        """Held by a pod and under the threshold, measured, for at least the window."""
        entry = self._entries.get(key)
        if entry is None or entry.holder is None:
            return False
        idle_for = self.idle_for(key)
        return idle_for is not None and idle_for >= self.window_s

    def __len__(self) -> int:
        return len(self._entries)
