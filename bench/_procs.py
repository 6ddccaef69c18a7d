"""Processes for bench_e2e.py: timed one-shots with their peak RSS, `gpuctl top` in a pseudo-terminal,
and readers for gpuctl's trace file and Prometheus's query log.

Every time here is `time.monotonic()` (CLOCK_MONOTONIC), the clock gpuctl's
trace uses (gpuctl/trace.py), so spawn times and traced events share one line.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any


@dataclass
class Finished:
    seconds: float  # spawn -> exit
    returncode: int
    peak_rss: int  # bytes (the child's ru_maxrss)
    spawned: float  # monotonic
    spawned_wall: float  # time.time(), for Prometheus's query log


async def run_timed(argv: Sequence[str], *, env: Mapping[str, str], stdout: IO[Any] | int = subprocess.DEVNULL,
                    timeout: float = 300.0, cwd: Path | None = None) -> Finished:
    """Run to completion; the wall time from spawn to exit (its small launcher's start included, ~20 ms on
    either side of a comparison) and the peak RSS (the command's own, bench/_peak.py says why)."""
    errors = tempfile.TemporaryFile()
    with tempfile.NamedTemporaryFile("r", suffix=".peak") as peak_file:
        wall, spawned = time.time(), time.monotonic()
        launched = [sys.executable, str(Path(__file__).with_name("_peak.py")), peak_file.name, *argv]
        proc = await asyncio.create_subprocess_exec(*launched, env=dict(env), stdout=stdout, stderr=errors, cwd=cwd)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.terminate()  # the launcher kills the command, then exits
            await proc.wait()
            raise
        ended = time.monotonic()
        peak = int(peak_file.read() or 0)
    if code != 0:
        errors.seek(0)
        raise RuntimeError(f"{argv[0]} exited {code}: {errors.read().decode(errors='replace')[-2000:]}")
    errors.close()
    return Finished(ended - spawned, code, peak, spawned, wall)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a live process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process, seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PtyProcess:
    """A program on a pseudo-terminal of a given size, its output drained (and the tail kept) by a thread."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], size: tuple[int, int], cwd: Path | None = None) -> None:
        columns, rows = size
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.spawned_wall, self.spawned = time.time(), time.monotonic()
        self.proc = subprocess.Popen(list(argv), env=dict(env), stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, cwd=cwd)
        os.close(slave)
        self._master = master
        self.tail = b""
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            self.tail = (self.tail + data)[-8192:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def press(self, keys: bytes) -> None:
        os.write(self._master, keys)

    async def stop(self, *, quit_keys: bytes = b"q", timeout: float = 30.0) -> int:
        """Quit as a user does (`q`), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.alive():
            self.press(quit_keys)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.alive():
                self.proc.send_signal(sig)
            try:
                code = await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
                break
            except TimeoutError:
                continue
        else:
            code = -9
        os.close(self._master)
        self._reader.join(timeout=5)
        return code


@dataclass
class TraceFile:
    """Follows a gpuctl trace file (JSON lines) as it grows."""

    path: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    _offset: int = 0

    def read(self) -> list[dict[str, Any]]:
        """Parse the complete lines written since the last call; returns them (all are kept in `events`)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self.events += new
        return new

    def of(self, name: str) -> Iterator[dict[str, Any]]:
        return (e for e in self.events if e["event"] == name)


@dataclass(frozen=True)
class LoggedQuery:
    """One API query from Prometheus's query log."""

    wall: float  # time.time() when logged
    query: str
    path: str
    exec_s: float  # execTotalTime: queue + prepare + evaluate

    @property
    def history(self) -> bool:
        """A subquery or range selector: it reads back in time, not just the latest samples."""
        return "[" in self.query


def read_query_log(path: Path) -> list[LoggedQuery]:
    """API queries only (rule evaluations, logged with a ruleGroup, are left out)."""
    out: list[LoggedQuery] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        request = entry.get("httpRequest")
        if not request:
            continue
        timings = (entry.get("stats") or {}).get("timings") or {}
        out.append(LoggedQuery(
            wall=datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp(),
            query=entry["params"]["query"],
            path=request.get("path", ""),
            exec_s=float(timings.get("execTotalTime", 0.0)),
        ))
    return out
