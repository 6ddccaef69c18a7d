"""gpuctl.trace: timing events as JSON lines, the event-loop lag probe, and where gpuctl emits them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuctl.trace import NO_TRACE, Trace, watch_loop


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_no_file_no_trace() -> None:
    trace = Trace.open(None)
    assert trace is NO_TRACE and not trace.enabled
    trace.event("anything", n=1)  # dropped, no error
    trace.close()


def test_events_are_json_lines_on_the_monotonic_clock(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = Trace.open(path)
    assert trace.enabled
    trace.event("first", n=1)
    trace.event("second", at=Path("/x"))  # anything else as its str()
    assert [e["event"] for e in events(path)] == ["first", "second"]  # readable while open
    trace.close()
    first, second = events(path)
    assert first["n"] == 1 and second["at"] == "/x" and first["pid"] == os.getpid()
    assert isinstance(first["t"], float) and first["t"] <= second["t"]  # type: ignore[operator]
    trace.event("after close")  # dropped
    assert len(events(path)) == 2


class FakeLoop:
    """The probe's clocks and sleep: each sleep takes the interval plus the next lateness, using `cpu` of it."""

    def __init__(self, late: list[float], cpu: list[float]) -> None:
        self.now = 100.0
        self.cpu_now = 5.0
        self._late, self._cpu = late, cpu

    async def sleep(self, seconds: float) -> None:
        if not self._late:
            raise asyncio.CancelledError
        self.now += seconds + self._late.pop(0)
        self.cpu_now += self._cpu.pop(0)


async def test_the_probe_reports_late_wake_ups_with_the_loops_cpu_time(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    trace = Trace.open(path)
    fake = FakeLoop(late=[0.001, 0.150, 0.019, 0.300], cpu=[0.0, 0.140, 0.0, 0.010])
    with pytest.raises(asyncio.CancelledError):
        await watch_loop(trace, interval_s=0.01, report_over_s=0.02, sleep=fake.sleep, clock=lambda: fake.now,
                         cpu_clock=lambda: fake.cpu_now)
    trace.close()
    stalls = [(e["ms"], e["cpu_ms"]) for e in events(path)]
    assert stalls == [(150.0, 140.0), (300.0, 10.0)]  # busy for 150 ms; waiting for a core for 300


def test_gpuctl_snapshot_traces_its_own_steps_and_joins_only_its_answer(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBE"))}
    env |= {"XDG_CONFIG_HOME": str(tmp_path), "GPUCTL_TRACE_FILE": str(path)}
    done = subprocess.run([sys.executable, "-m", "gpuctl.cli", "snapshot", "--demo", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    names = [e["event"] for e in events(path) if e["event"] != "stall"]
    assert names == ["open_cluster", "listed", "metrics_attempted", "snapshot_ready", "cluster_closed", "snapshot_written"]
    ready = next(e for e in events(path) if e["event"] == "snapshot_ready")
    assert ready["gpus"] == len(json.loads(done.stdout)["gpus"]) > 0
