"""Recent utilisation per GPU, kept by the app from the updates it receives.

A bounded ring per GPU: the snapshot only carries the current value, and the
details panel wants the last few minutes as a sparkline. One sample is taken
per metrics refresh (not per update: pod events must not stretch the time
axis), and GPUs that disappear are dropped so memory stays bounded.

Every GPU is sampled at the same moments, so the rings share one clock: one
flat array, a row of `depth` slots per GPU in the order of the snapshot's
GPUs, and a sample is one strided write into the same column of every row.
A slot is an unsigned 16-bit count of hundredths of a percent (a reading with
at most two decimals comes back exactly; 0xFFFF: "no reading"): at 12,500 GPUs
and the default depth that is 3 MB (doubles took 12 MB; a deque of float
objects per GPU grew to ~60 MB as it filled, an hour at a 15 s refresh).
Rows move only when the GPUs do.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter

from gpuctl.model import Snapshot

DEFAULT_DEPTH = 120
_NONE = 0xFFFF  # no reading
_TOP = 0xFFFE  # the largest reading kept: 655.34 %, far above any utilisation
_UTIL = attrgetter("util_pct")
_HUNDRED = 100.0


def _slot(value: float | None) -> int:
    return _NONE if value is None or value != value else min(max(round(value * 100), 0), _TOP)  # NaN != NaN


class UtilHistory:
    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"history depth must be at least 1, not {depth}")
        self.depth = depth
        self._keys: list[str] = []  # the GPU of each row, in the order of the last sample's snapshot
        self._row_of: dict[str, int] = {}
        self._born: list[int] = []  # per row: the samples taken before its GPU's first
        self._values = array("H")
        self._samples = 0  # samples taken; the next goes to column `_samples % depth`
        self._last_sample: datetime | None = None

    def record(self, snapshot: Snapshot, keys: Sequence[str] | None = None, sample: array[int] | None = None) -> bool:
        """Take one sample per metrics refresh; returns True when a sample was taken.

        `keys`: the key of each of `snapshot.gpus` (FleetIndex.snapshot_keys), if known;
        `sample`: `UtilHistory.sample_of(snapshot)`, if made already (off the event loop)."""
        if not self.wants(snapshot):
            return False
        self._last_sample = snapshot.metrics.last_success or snapshot.taken_at
        if keys is None:
            keys = [g.key for g in snapshot.gpus]
        if keys != self._keys:
            self._realign(keys)
        column = self._samples % self.depth
        self._values[column :: self.depth] = self.sample_of(snapshot) if sample is None else sample
        self._samples += 1
        return True

    def wants(self, snapshot: Snapshot) -> bool:
        """Whether `record` would take a sample of `snapshot` (a metrics refresh since the last sample)."""
        return (snapshot.metrics.last_success or snapshot.taken_at) != self._last_sample

    @staticmethod
    def sample_of(snapshot: Snapshot) -> array[int]:
        """The utilisation of each of `snapshot.gpus`, in its order, as slots (hundredths of a percent; _NONE)."""
        readings = list(map(_UTIL, snapshot.gpus))
        try:
            # Every GPU measured, 0-655.35 % (a metrics refresh, as a rule): converted in C, a third of the
            # cost of a call of _slot per GPU at 12,500 GPUs. float.__round__ (every product is a float), not
            # round(): that looks the method up on each value, a third more.
            sample = array("H", map(float.__round__, map(_HUNDRED.__mul__, readings)))
        except (TypeError, ValueError, OverflowError):  # None (NotImplemented), NaN, inf, under 0 or over 655.35 %
            return array("H", map(_slot, readings))
        return sample if _NONE not in sample else array("H", map(_slot, readings))  # 655.35 %: kept as _TOP

    def _realign(self, keys: Sequence[str]) -> None:
        """Rows in the order of `keys`: the series of GPUs still there move along, new GPUs start empty."""
        depth, old, old_row, old_born = self.depth, self._values, self._row_of, self._born
        values = array("H", [_NONE]) * (len(keys) * depth)
        born: list[int] = []
        row_of: dict[str, int] = {}
        for row, key in enumerate(keys):
            was = old_row.get(key)
            if was is None:
                born.append(self._samples)
            else:
                values[row * depth : (row + 1) * depth] = old[was * depth : (was + 1) * depth]
                born.append(old_born[was])
            row_of.setdefault(key, row)
        self._keys, self._row_of, self._born, self._values = list(keys), row_of, born, values

    def clear(self) -> None:
        """Forget everything (another cluster: its GPUs are not these)."""
        self._keys = []
        self._row_of = {}
        self._born = []
        self._values = array("H")
        self._samples = 0
        self._last_sample = None

    def series(self, key: str) -> list[float | None]:
        """The GPU's samples, oldest first (at most `depth`); None where it had no reading."""
        row = self._row_of.get(key)
        if row is None:
            return []
        depth = self.depth
        count = min(depth, self._samples - self._born[row])
        base = row * depth
        out: list[float | None] = []
        for sample in range(self._samples - count, self._samples):
            v = self._values[base + sample % depth]
            out.append(None if v == _NONE else v / 100)
        return out

    def __len__(self) -> int:
        return len(self._row_of)
