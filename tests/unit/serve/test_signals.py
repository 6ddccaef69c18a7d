"""Stop signals: the first winds down, a second stops at once; SIGINT ends as an interrupt, also when ignored at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpuctl.serve.signals import StopSignals
from tests.unit.conftest import stopped_by_a_signal

STARTUP_S = 60.0


async def test_the_first_signal_winds_down_and_sigterm_ends_normally() -> None:
    wound_down = asyncio.Event()
    with StopSignals(wound_down.set) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(wound_down.wait(), 10)
    assert signals.received == [signal.SIGTERM]


async def test_sigint_winds_down_then_raises_keyboard_interrupt() -> None:
    wound_down = asyncio.Event()
    with pytest.raises(KeyboardInterrupt), StopSignals(wound_down.set):
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(wound_down.wait(), 10)
    assert wound_down.is_set()


async def test_a_second_signal_cancels_the_task_and_the_cancel_is_swallowed() -> None:
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt), StopSignals(lambda: calls.append("wind down")) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(30)  # cancelled by the second signal
    assert calls == ["wind down"] and signals.received == [signal.SIGTERM, signal.SIGINT]
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_without_a_wind_down_the_first_signal_cancels() -> None:
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)
    assert signals.received == [signal.SIGTERM]


async def test_a_cancel_from_elsewhere_is_not_swallowed() -> None:
    async def serving() -> None:
        with StopSignals():
            await asyncio.sleep(30)

    task = asyncio.create_task(serving())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@stopped_by_a_signal
def test_gpuctl_serve_stops_on_a_signal(
    tmp_path: Path, stop: signal.Signals, started: Callable[[], None] | None, code: int
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBE"))}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    with subprocess.Popen(
        [sys.executable, "-m", "gpuctl", "serve", "--demo", "--no-bot", "--health-port", "0", "--host", "127.0.0.1",
         "--audit", str(tmp_path / "audit.sqlite")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=started,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        try:
            line = process.stdout.readline()
            assert "serving (executor)" in line, line
        finally:
            process.send_signal(stop)
            _, err = process.communicate(timeout=STARTUP_S)
    assert process.returncode == code, err
    assert "Traceback" not in err
