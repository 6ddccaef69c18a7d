"""A cpu cgroup of its own for one process and its children, as a Kubernetes pod with a CPU limit gets one
(cgroup v1, requests = limits): cpu.shares CPUS x 1024, CFS quota CPUS x the period.

Why: this box has kernel autogroup on, which shares CPU between sessions before nice applies inside one;
tasks in a non-root cpu cgroup are not autogrouped, so inside the group nice orders its threads, as in a pod.
The process joins the group before it runs anything (a shell writes its own pid, then execs it), and its
children inherit the group.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from testbed.waiting import poll

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000  # the kubelet's CFS period
JOIN = 'echo $$ > "$0" && exec "$@"'  # sh -c JOIN PROCS ARGV...: this shell joins, then becomes ARGV


def check_writable() -> None:
    """Raise SystemExit, saying why, unless cgroup v1's cpu controller is mounted at CPU_ROOT and writable."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    if not any(m[1] == str(CPU_ROOT) and m[2] == "cgroup" and "cpu" in m[3].split(",") for m in mounts):
        raise SystemExit(f"--pod-cpu-limit: no cgroup v1 cpu controller mounted at {CPU_ROOT}")
    if not os.access(CPU_ROOT, os.W_OK):
        raise SystemExit(f"--pod-cpu-limit: {CPU_ROOT} is not writable here (root needed)")


@dataclass(frozen=True)
class Throttling:
    """cpu.stat's CFS bandwidth counters (cumulative)."""

    periods: int
    throttled: int  # periods in which the group ran out of quota
    throttled_s: float

    def __sub__(self, before: Throttling) -> Throttling:
        return Throttling(self.periods - before.periods, self.throttled - before.throttled, self.throttled_s - before.throttled_s)

    def __str__(self) -> str:
        return f"throttled {self.throttled} of {self.periods} periods, {self.throttled_s:.2f} s"


@dataclass(frozen=True)
class PodCgroup:
    path: Path
    cpus: float

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` started inside this group (the same pid: the shell execs it)."""
        return ["/bin/sh", "-c", JOIN, str(self.path / "cgroup.procs"), *argv]

    def pids(self) -> list[int]:
        return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]

    def throttling(self) -> Throttling:
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return Throttling(int(stat["nr_periods"]), int(stat["nr_throttled"]), int(stat["throttled_time"]) / 1e9)

    def __str__(self) -> str:
        return f"cpu cgroup {self.path.name}: {self.cpus:g} CPU (quota {round(self.cpus * PERIOD_US)} of {PERIOD_US} us)"


@asynccontextmanager
async def pod_cgroup(name: str, cpus: float) -> AsyncIterator[PodCgroup]:
    """A fresh group for the block; removed after it, once its processes ended (any left after 30 s are
    killed: only what was started in it is there)."""
    if cpus <= 0:
        raise ValueError(f"a pod's CPU limit must be > 0, not {cpus:g}")
    pod = PodCgroup(CPU_ROOT / name, cpus)
    pod.path.mkdir()  # FileExistsError: a group of that name is someone else's, or left over
    try:
        (pod.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (pod.path / "cpu.cfs_quota_us").write_text(str(round(cpus * PERIOD_US)))
        (pod.path / "cpu.shares").write_text(str(round(cpus * 1024)))
        yield pod
    finally:
        try:
            await poll(pod.pids, lambda pids: not pids, timeout_s=30, what=f"the processes in {pod.path} ended")
        except TimeoutError:
            for pid in pod.pids():
                os.kill(pid, signal.SIGKILL)
            await poll(pod.pids, lambda pids: not pids, timeout_s=30, what=f"the processes in {pod.path} killed")
        pod.path.rmdir()
