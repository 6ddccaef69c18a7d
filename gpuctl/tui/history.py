"""Recent utilisation per GPU, kept by the app from the updates it receives.

A bounded ring buffer per GPU: the snapshot only carries the current value,
and the details panel wants the last few minutes as a sparkline. One sample
is taken per metrics refresh (not per update: pod events must not stretch the
time axis), and GPUs that disappear are dropped so memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime

from gpuctl.model import Snapshot

DEFAULT_DEPTH = 120


class UtilHistory:
    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.depth = depth
        self._series: dict[str, deque[float | None]] = {}
        self._last_sample: datetime | None = None

    def record(self, snapshot: Snapshot, keys: Sequence[str] | None = None) -> bool:
        """Take one sample per metrics refresh; returns True when a sample was taken.

        `keys`: the key of each of `snapshot.gpus` (FleetIndex.snapshot_keys), if known."""
        stamp = snapshot.metrics.last_success or snapshot.taken_at
        if stamp == self._last_sample:
            return False
        self._last_sample = stamp
        if keys is None:
            keys = [g.key for g in snapshot.gpus]
        all_series = self._series
        for key, g in zip(keys, snapshot.gpus):
            series = all_series.get(key)
            if series is None:
                series = all_series[key] = deque(maxlen=self.depth)
            series.append(g.util_pct)
        if len(keys) != len(all_series):
            seen = set(keys)
            for key in [k for k in self._series if k not in seen]:
                del self._series[key]
        return True

    def clear(self) -> None:
        """Forget everything (another cluster: its GPUs are not these)."""
        self._series.clear()
        self._last_sample = None

    def series(self, key: str) -> list[float | None]:
        return list(self._series.get(key, ()))

    def __len__(self) -> int:
        return len(self._series)
