"""Timing events for benchmarks: what a running gpuctl did, and when, as JSON lines.

Off unless the `trace_file` setting (GPUCTL_TRACE_FILE) names a file; then the
service, the TUI and the one-shot commands append one line per event:

    {"t": 12345.678, "pid": 4242, "event": "publish", "ms": 3.1, ...}

`t` is `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every process on
the machine), so a benchmark can put "process started" and "first complete
frame" on one time line. Events are written as they happen, unbuffered past
the line, so a benchmark can follow the file while gpuctl runs.

`watch_loop` is the event-loop lag probe: it sleeps a short interval again and
again and reports every wake-up that came later than `report_over_s` (the
loop was busy with something else that long) as a `stall` event, with the
CPU time the loop's thread used meanwhile (`cpu_ms`): on a shared machine a
stall much longer than its CPU time is the process waiting for a core (or
another thread holding the GIL), not the loop doing work.

Nothing here is for production monitoring: it is how bench/bench_e2e.py sees
inside the real processes it starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any


class Trace:
    """Appends events to a file; `NO_TRACE` (disabled) drops them. Check `enabled` before costly fields."""

    def __init__(self, file: IO[str] | None) -> None:
        self._file = file
        self._pid = os.getpid()

    @classmethod
    def open(cls, path: Path | None) -> Trace:
        """A trace appending to `path`, or the disabled one for None."""
        if path is None:
            return NO_TRACE
        return cls(path.open("a", buffering=1, encoding="utf-8"))

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def event(self, name: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = {"t": time.monotonic(), "pid": self._pid, "event": name, **fields}
        self._file.write(json.dumps(line, default=str) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


NO_TRACE = Trace(None)


async def watch_loop(
    trace: Trace,
    *,
    interval_s: float = 0.01,
    report_over_s: float = 0.02,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> None:
    """Until cancelled: a `stall` event for every wake-up late by over `report_over_s`.

    `ms`: how late; `cpu_ms`: the loop thread's CPU time in that sleep; the event's `t` is when it ended."""
    while True:
        before, cpu_before = clock(), cpu_clock()
        await sleep(interval_s)
        late = clock() - before - interval_s
        if late > report_over_s:
            trace.event("stall", ms=round(late * 1000, 1), cpu_ms=round((cpu_clock() - cpu_before) * 1000, 1))
