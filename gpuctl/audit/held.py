"""Which runs a live process is recording: one lock file per run, flock-ed by its holder.

Why not "every run whose last record does not end it": runs waiting for an
approval rest for hours with no process attached, and another gpuctl process
may be executing a run right now. What marks a run abandoned is its holder's
death, and the kernel reports that exactly: it drops a process's flocks when
the process dies, however it dies (SIGKILL and OOM included). So a lock file
someone else can lock belongs to a holder that is gone.

Files are `<dir>/<sha256(run id)[:32]>.lock` holding the run id, pid and host
as JSON. A holder removes its file when it lets go; a dead holder's file stays
(and so does one whose hold ended in an exception) until `orphans()` hands its
run to someone who records the interruption.
Local files and flock: the holders must be on the machine that has the log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpuctl.errors import AuditError


@dataclass
class HeldLock:
    """A run's lock file, locked by this process until `release()`."""

    run_id: str
    path: Path
    fd: int
    holder: dict[str, Any] = field(default_factory=dict)

    def release(self) -> None:
        """Let go: the run is in a state another process may pick up (ended, or resting)."""
        try:
            if _same_file(self.fd, self.path):  # unlink only our own file, never a successor's
                self.path.unlink()
        finally:
            os.close(self.fd)

    def abandon(self) -> None:
        """Let go but leave the file, as a death would: `orphans()` will offer the run for recovery."""
        os.close(self.fd)


class RunLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def acquire(self, run_id: str) -> HeldLock:
        """Lock `run_id` for this process. Raises AuditError if a live process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{hashlib.sha256(run_id.encode()).hexdigest()[:32]}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise AuditError(
                    f"run {run_id} is already being recorded ({describe_holder(_read(path))})",
                    hint="wait for it to finish; a run is recorded by one process at a time",
                ) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # its holder let go and removed it between our open and lock: take a fresh one
        holder = holder_info(run_id)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        return HeldLock(run_id, path, fd, holder)

    def orphans(self) -> list[HeldLock]:
        """Lock files whose holder died, now locked by this process (release each when done with it)."""
        if not self.directory.is_dir():
            return []
        found: list[HeldLock] = []
        for path in sorted(self.directory.glob("*.lock")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # released while we listed
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its holder is alive
                continue
            holder = _read_fd(fd)
            run_id = holder.get("run_id")
            if not _same_file(fd, path) or not isinstance(run_id, str):
                # Gone meanwhile, or a holder between creating and naming it (or one that died there): not ours.
                os.close(fd)
                continue
            found.append(HeldLock(run_id, path, fd, holder))
        return found


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _read_fd(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _read(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            return _read_fd(fd)
        finally:
            os.close(fd)
    return {}


def holder_info(run_id: str) -> dict[str, Any]:
    """What a holder writes about itself: the run, its pid and host, and since when."""
    return {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}


def describe_holder(holder: dict[str, Any]) -> str:
    """Who holds a run, for messages: "pid 4242 on host-1 since 2026-11-30T12:00:00+00:00"."""
    if "pid" not in holder:
        return "holder unknown"
    return f"pid {holder['pid']} on {holder.get('host', '?')} since {holder.get('since', '?')}"
