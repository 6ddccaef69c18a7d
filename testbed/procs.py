"""Processes seen through Linux's /proc: the children a process started, whether one still runs."""

from __future__ import annotations

import os
from pathlib import Path

FRONT_DOOR = "gpuctl.bot.door_process"  # the bot's front door process (gpuctl.bot.front_door)


def _state(stat: str) -> tuple[str, int]:
    """A /proc/PID/stat line's state and parent pid (after the command name, which may hold anything)."""
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def children(parent: int, running: str) -> list[int]:
    """The live processes (not zombies) that `parent` started whose command line holds `running`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = _state((entry / "stat").read_text())
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended meanwhile
            continue
        if ppid == parent and state not in ("Z", "X") and running.encode() in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its exit status is left for its parent)."""
    try:
        state, _ = _state(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return False
    return state not in ("Z", "X")


def cpu_seconds(pid: int) -> float:
    """The CPU time `pid` has used so far (user + system), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def waited_seconds(pid: int) -> float:
    """How long `pid`'s threads have waited, runnable, for a CPU so far (/proc/PID/task/*/schedstat's run_delay;
    threads that ended are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except OSError:  # ended meanwhile
            continue
    return total / 1e9
