"""`gpuctl top` as a user runs it: the real CLI in a pseudo-terminal, and the feed it starts before Textual."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpuctl.errors import ConfigError
from gpuctl.model import Update
from gpuctl.tui.feed import StartedFeed
from testbed.waiting import poll
from tests.tui.factory import build_snapshot, first_update


class Top:
    """`python -m gpuctl.cli top ...` on a 120x40 pseudo-terminal, its output drained by a thread."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.trace = tmp_path / "trace.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBE"))}
        env |= {"XDG_CONFIG_HOME": str(tmp_path), "GPUCTL_TRACE_FILE": str(self.trace), "TERM": "xterm-256color"}
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-m", "gpuctl.cli", "top", *args], env=env, stdin=slave,
                                     stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = b""
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def frames(self) -> list[dict[str, object]]:
        if not self.trace.exists():
            return []
        return [e for line in self.trace.read_text().splitlines() if (e := json.loads(line))["event"] == "frame"]

    async def exit_code(self) -> int:
        code = await asyncio.to_thread(self.proc.wait, 60)
        os.close(self.master)
        self._reader.join(5)
        return code


async def test_gpuctl_top_draws_the_demo_fleet_and_quits_on_q(tmp_path: Path) -> None:
    top = Top(tmp_path, "--demo")
    try:
        frames = await poll(top.frames, lambda fs: any(f["gpus"] and f["readings"] for f in fs), timeout_s=60,
                            what="a frame with the demo's GPUs")
        os.write(top.master, b"q")
        assert await top.exit_code() == 0
    finally:
        if top.proc.poll() is None:
            top.proc.kill()
    assert frames[-1]["view"] == "heatmap"


async def test_gpuctl_top_with_a_kubeconfig_that_cannot_load_exits_2_saying_why(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    top = Top(tmp_path, "--kubeconfig", str(missing))
    try:
        assert await top.exit_code() == 2
    finally:
        if top.proc.poll() is None:
            top.proc.kill()
    assert b"gpuctl: error:" in top.output and b"Traceback" not in top.output


# -- StartedFeed ------------------------------------------------------------------------------


async def test_a_started_feed_runs_before_anyone_iterates_it() -> None:
    steps: list[str] = []
    first, second = first_update(build_snapshot(1)), first_update(build_snapshot(2))

    async def feed() -> AsyncIterator[Update]:
        steps.append("connecting")
        yield first
        yield second

    started = StartedFeed(feed())
    await asyncio.sleep(0)
    assert steps == ["connecting"]  # nobody iterates yet: the task did
    assert [u async for u in started] == [first, second]


async def test_closing_a_started_feed_stops_it_while_it_waits() -> None:
    stopped = asyncio.Event()

    async def feed() -> AsyncIterator[Update]:
        try:
            await asyncio.Event().wait()  # connecting, forever
            yield first_update(build_snapshot(1))
        finally:
            stopped.set()

    started = StartedFeed(feed())
    await asyncio.sleep(0)
    await started.aclose()
    assert stopped.is_set()


async def test_a_feed_that_fails_to_start_fails_where_it_is_read() -> None:
    async def feed() -> AsyncIterator[Update]:
        raise ConfigError("cannot load kubeconfig")
        yield  # an async generator

    started = StartedFeed(feed())
    with pytest.raises(ConfigError, match="kubeconfig"):
        async for _ in started:
            pass


def test_gpuctl_top_starts_its_feed_before_textual_is_imported(tmp_path: Path) -> None:
    """The cluster answers while the UI loads (gpuctl.tui.run): nothing on the way to the feed imports Textual."""
    code = (
        "import sys\n"
        "from gpuctl.tui.feed import StartedFeed\n"
        "def started(self, feed):\n"
        "    print('textual' in sys.modules)\n"
        "    raise SystemExit(0)\n"
        "StartedFeed.__init__ = started\n"
        "from gpuctl.cli import main\n"
        "main(['top', '--demo'])\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "False\n"), result.stderr
