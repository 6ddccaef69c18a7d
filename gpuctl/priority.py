"""CPU priority per thread (Linux): a serving process's bulk work below its latency-critical part.

Linux keeps a nice value (and a scheduling policy) per thread: setpriority(PRIO_PROCESS, tid) names one
thread, and a new thread or process starts with those of the thread that created it. An unprivileged
thread may raise its nice (lower its priority) but never lower it back. So a process that lowers its own
threads and still starts children at its first priority starts them from a thread it kept back: `Kept`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def thread_ids(pid: int | str = "self") -> list[int]:
    """The native ids of a process's threads (this process's by default)."""
    return [int(entry.name) for entry in Path(f"/proc/{pid}/task").iterdir()]


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def lower_threads(nice: int, *, keep: Collection[int] = ()) -> int:
    """Every thread of this process but `keep` to at least `nice` (none is raised); how many were lowered.

    Threads started meanwhile by threads not yet lowered are lowered too (listed again until no new one
    shows); threads started later by lowered ones inherit their priority. PermissionError where the system
    forbids it."""
    done = set(keep)
    lowered = 0
    while todo := [tid for tid in thread_ids() if tid not in done]:
        for tid in todo:
            try:
                if nice_of(tid) < nice:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
                    lowered += 1
            except ProcessLookupError:  # the thread ended meanwhile
                pass
        done.update(todo)
    return lowered


class Kept:
    """One thread, started now with the creating thread's priority, to start processes from after the
    others were lowered (`lower_threads(..., keep={kept.tid})`)."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.tid = self._executor.submit(threading.get_native_id).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the kept thread (keep it short: one thread, shared by every caller)."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False)
