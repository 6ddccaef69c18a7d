"""How long `gpuctl top` blocks its event loop during metrics refreshes, in process, at a demo scale.

    .venv/bin/python bench/bench_top_loop.py [--scale 125] [--seconds 30] [--size 200x60]

The real app (headless, the heatmap on screen) on the real service feed:
`open_cluster` with the demo source at `--scale` (125: 1,375 nodes, 12,500 GPU
devices; past the CLI's --demo-scale limit of 100), refreshing every 2 s, the
join in its worker thread and the FleetIndex in the app's, as `gpuctl top
--demo` runs them. Once the whole fleet is on screen with metrics, for
`--seconds` it records:

  stalls     the trace's loop-lag probe (gpuctl.trace.watch_loop): every wake-up
             of a 10 ms sleep later than 20 ms, with the loop thread's CPU time
             meanwhile. A stall far longer than its CPU time waited for a core
             (this machine is shared), not for gpuctl's work.
  callbacks  every loop callback that ran over 50 ms (wall), named by its task:
             `source-demo` is the simulator, which lives in this process only in
             demo mode (a real cluster's sources are sockets and a parsing thread);
             `Worker._run` the app's feed worker (apply_update); `screen_update`
             Textual rendering the frame.
  frames     per update drawn after a metrics refresh (the app's trace): feed ->
             frame, of which indexing (thread) and apply_update (loop).

Load (os.getloadavg) is printed before and after: numbers at a load over 4 are
indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from asyncio import events
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import command_line, machine, table

from gpuctl.config import Settings
from gpuctl.model import Update
from gpuctl.service import open_cluster, tune_gc
from gpuctl.sources.demo import DemoSource
from gpuctl.trace import Trace
from gpuctl.tui.app import GpuctlApp
from testbed.waiting import poll

SLOW_S = 0.05
STALL_S = 0.1


class SlowCallbacks:
    """Times every callback the loop runs (asyncio's Handle._run) and keeps those over SLOW_S, by task."""

    def __init__(self) -> None:
        self.counting = False
        self.taken: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        self._run = events.Handle._run

    def install(self) -> None:
        run, meter = self._run, self

        def timed(handle: events.Handle) -> None:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                run(handle)
            finally:
                took = time.perf_counter() - start
                if meter.counting and took > SLOW_S:
                    meter.taken[_name(handle)].append((took, time.thread_time() - cpu))

        events.Handle._run = timed  # type: ignore[method-assign]

    def uninstall(self) -> None:
        events.Handle._run = self._run  # type: ignore[method-assign]


def _name(handle: events.Handle) -> str:
    task = getattr(handle._callback, "__self__", None)  # a task's step is a bound method of the task
    if isinstance(task, asyncio.Task):
        return f"{task.get_name()} ({task.get_coro().__qualname__})"  # type: ignore[union-attr]
    return repr(handle._callback)[:70]


class DemoFeed:
    """The hub subscription of a cluster with the demo source at `scale` (what ClusterFeed does for --demo)."""

    def __init__(self, settings: Settings, scale: int) -> None:
        self.settings = settings
        self.scale = scale

    async def __aiter__(self) -> AsyncIterator[Update]:
        source = DemoSource(seed=7, scale=self.scale, tick_s=self.settings.refresh_s)
        async with open_cluster(self.settings, sources=[source], history_first=False) as cluster:
            async with cluster.subscribe() as updates:
                async for update in updates:
                    yield update


async def run(args: argparse.Namespace) -> None:
    tune_gc()
    print(f"command: {command_line()}\nmachine: {machine()}\nload before: {os.getloadavg()[0]:.2f}")
    trace_path = Path(tempfile.mkdtemp(prefix="gpuctl-bench-loop-")) / "trace.jsonl"
    settings = Settings(demo=True, refresh_s=2.0, trace_file=trace_path)
    app = GpuctlApp(DemoFeed(settings, args.scale), trace=Trace.open(trace_path))
    slow = SlowCallbacks()
    slow.install()
    try:
        async with app.run_test(size=args.size):

            def shown() -> bool:
                snap = app.index.snapshot if app.index else None
                return snap is not None and snap.metrics.last_success is not None and len(snap.gpus) >= 100 * args.scale

            await poll(shown, timeout_s=600, interval_s=0.2, what="the whole fleet with metrics on screen")
            await asyncio.sleep(2 * settings.refresh_s)  # past the first refreshes' one-off work
            start = time.monotonic()
            slow.counting = True
            await asyncio.sleep(args.seconds)
            slow.counting = False
            end = time.monotonic()
            devices = len(app.index.snapshot.gpus) if app.index else 0
    finally:
        slow.uninstall()
    events_ = [json.loads(line) for line in trace_path.read_text().splitlines()]
    measured = [e for e in events_ if start <= e["t"] <= end]
    stalls = sorted((e for e in measured if e["event"] == "stall"), key=lambda e: -e["ms"])
    frames = [e for e in measured if e["event"] == "frame" and e.get("gpus_changed", 0) * 2 > e.get("gpus", 0)]
    publishes = [e for e in measured if e["event"] == "publish"]
    print(f"fleet: {devices:,} GPU devices; {args.seconds:.0f} s measured; {len(publishes)} publishes, "
          f"{len(frames)} frames after a metrics refresh; load after: {os.getloadavg()[0]:.2f}")  # fmt: skip
    over = [e for e in stalls if e["ms"] > STALL_S * 1000]
    print(f"stalls over {STALL_S * 1000:.0f} ms: {len(over)} (wall), {sum(e['cpu_ms'] > STALL_S * 1000 for e in stalls)} "
          f"with over {STALL_S * 1000:.0f} ms of loop CPU; longest (wall ms / loop CPU ms): "
          + ", ".join(f"{e['ms']:.0f}/{e['cpu_ms']:.0f}" for e in stalls[:6]))  # fmt: skip
    if frames:
        rows = [
            [what, f"{statistics.median(f[key] for f in frames):.1f} ms", f"{max(f[key] for f in frames):.1f} ms"]
            for what, key in (("feed -> frame", "ms"), ("indexing (thread)", "index_ms"), ("apply_update (loop)", "apply_ms"))
        ]
        print(table(["frames after a metrics refresh", "median", "max"], rows))
    rows = [
        [name, str(len(taken)), f"{max(t for t, _ in taken) * 1000:.1f} ms", f"{max(c for _, c in taken) * 1000:.1f} ms"]
        for name, taken in sorted(slow.taken.items(), key=lambda kv: -max(t for t, _ in kv[1]))
    ]
    print(table([f"loop callbacks over {SLOW_S * 1000:.0f} ms", "n", "max wall", "max CPU"], rows or [["none", "0", "", ""]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=125, help="demo fleet multiplier (125 -> 12,500 GPU devices)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to measure once the fleet shows")
    parser.add_argument("--size", default="200x60", help="terminal size WxH")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.split("x"))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
