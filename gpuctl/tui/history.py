"""Recent utilisation per GPU, kept by the app from the updates it receives.

A bounded ring per GPU: the snapshot only carries the current value, and the
details panel wants the last few minutes as a sparkline. One sample is taken
per metrics refresh (not per update: pod events must not stretch the time
axis), and GPUs that disappear are dropped so memory stays bounded.

Every GPU is sampled at the same moments, so the rings share one clock: one
flat array of doubles (a row of `depth` slots per GPU, NaN for "no reading"),
written at the same column for every GPU. At 12,500 GPUs and the default depth
that is 12 MB, where a deque of float objects per GPU grew to ~60 MB as it
filled (an hour at a 15 s refresh).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from datetime import datetime

from gpuctl.model import Snapshot

DEFAULT_DEPTH = 120
_NAN = math.nan


class UtilHistory:
    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"history depth must be at least 1, not {depth}")
        self.depth = depth
        self._rows: dict[str, int] = {}  # GPU key -> its row
        self._born: list[int] = []  # per row: the sample count when it was first written
        self._free: list[int] = []  # rows of GPUs that went, for the next new ones
        self._values = array("d")
        self._samples = 0  # samples taken; the next goes to column `_samples % depth`
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
        depth, values, rows = self.depth, self._values, self._rows
        column = self._samples % depth
        for key, g in zip(keys, snapshot.gpus):
            row = rows.get(key)
            if row is None:
                row = rows[key] = self._new_row()
            v = g.util_pct
            values[row * depth + column] = _NAN if v is None else v
        self._samples += 1
        if len(keys) != len(rows):
            seen = set(keys)
            for key in [k for k in rows if k not in seen]:
                self._free.append(rows.pop(key))
        return True

    def _new_row(self) -> int:
        if self._free:
            row = self._free.pop()
            self._born[row] = self._samples
            return row
        row = len(self._born)
        self._born.append(self._samples)
        self._values.extend([_NAN] * self.depth)
        return row

    def clear(self) -> None:
        """Forget everything (another cluster: its GPUs are not these)."""
        self._rows.clear()
        self._born.clear()
        self._free.clear()
        self._values = array("d")
        self._samples = 0
        self._last_sample = None

    def series(self, key: str) -> list[float | None]:
        """The GPU's samples, oldest first (at most `depth`); None where it had no reading."""
        row = self._rows.get(key)
        if row is None:
            return []
        depth = self.depth
        count = min(depth, self._samples - self._born[row])
        base = row * depth
        out: list[float | None] = []
        for sample in range(self._samples - count, self._samples):
            v = self._values[base + sample % depth]
            out.append(None if math.isnan(v) else v)
        return out

    def __len__(self) -> int:
        return len(self._rows)
