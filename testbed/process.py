"""Run one test-bed component as a child process, with its log in a file.

A component is started, waited on until its own readiness probe answers, and
stopped with SIGTERM (then SIGKILL). Restart keeps the same arguments and ports,
which is what the watch-recovery tests need from kube-apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from testbed.waiting import poll

ReadinessProbe = Callable[[], Awaitable[bool]]


def _primary_group(user: str) -> int:
    return pwd.getpwnam(user).pw_gid


class ComponentFailed(RuntimeError):
    """A component exited or never became ready; the message ends with its log tail."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Component:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        ready: ReadinessProbe | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self._ready = ready
        self._env = env
        self._cwd = cwd
        self._user = user  # run as this system user (PostgreSQL refuses to run as root)
        self._stop_signal = stop_signal
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def start(self, *, timeout_s: float = 60.0) -> None:
        log = self.log_path.open("ab")
        try:
            # Popen, not asyncio's subprocess API: the process must outlive any one
            # event loop (pytest may hand fixtures and tests different loops).
            self._process = subprocess.Popen(  # noqa: ASYNC220
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self._env or {})},
                cwd=self._cwd,
                start_new_session=True,
                user=self._user,
                group=None if self._user is None else _primary_group(self._user),
                extra_groups=None if self._user is None else [],
            )
        finally:
            log.close()
        await self.wait_ready(timeout_s=timeout_s)

    async def wait_ready(self, *, timeout_s: float = 60.0) -> None:
        async def ready() -> bool:
            if not self.running:
                raise ComponentFailed(f"{self.name} exited:\n{log_tail(self.log_path)}")
            return self._ready is None or await self._probe()

        try:
            await poll(ready, timeout_s=timeout_s, interval_s=0.2, what=f"{self.name} to be ready")
        except TimeoutError:
            raise ComponentFailed(f"{self.name} not ready after {timeout_s:.0f}s:\n{log_tail(self.log_path)}") from None

    async def _probe(self) -> bool:
        assert self._ready is not None
        try:
            return await asyncio.wait_for(self._ready(), timeout=5)
        except (TimeoutError, OSError):
            return False

    def stop(self, *, grace_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, self._stop_signal)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    async def restart(self, *, timeout_s: float = 60.0) -> None:
        self.stop()
        await self.start(timeout_s=timeout_s)
