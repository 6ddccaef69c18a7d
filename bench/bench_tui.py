"""Benchmark `gpuctl top`: first-frame time and per-update render time at ~8,000 GPUs.

    .venv/bin/python bench/bench_tui.py [--scale 80] [--updates 12] [--size 200x60] [--views heatmap,...]

The fleet is the seeded demo (seed 7) run through the real ClusterStore on a
fixed clock: scale 80 is 880 nodes, 8,000 GPUs (MIG instances included) and
~3,700 GPU pods, and every tick moves every GPU's telemetry, so every update
names all 8,000 GPU keys as changed. The demo leaves some readings as they
were (a free GPU stays at 0 %), so the row `heatmap-all` (every reading changed)
replays the same ticks with each GPU's utilisation, memory, temperature and
power moved one colour step further every update: every reading differs
from the update before and every cell not drawn as a state (idle, stale,
XID) changes colour — the heatmap's worst case. The app runs headless (the
compositor renders every visible line; only the final write to a terminal is
skipped) and a frame counts as done when Textual has refreshed the screen
after the update (`call_after_refresh`, asked for as the update is applied).
The bench waits for that without polling: a loop spinning on
`asyncio.sleep(0)` beside the indexing thread took the GIL from it (on
2026-11-30 that harness measured ~25 ms more per update at 8,000 GPUs and
twice the 100-GPU baseline: 35 ms instead of 17).

Printed: the command, the fleet, then per view
  first frame   feed delivers the first snapshot -> that frame rendered
  update        next snapshot delivered -> its frame rendered (median, p95, max)
  x baseline    the update median divided by the same view's update median on
                the scale-1 demo (100 GPUs), measured in the same run: how the
                cost grows with the fleet, free of this machine's noise level
  update CPU    the process's CPU time (every thread: indexing runs in a worker)
                per update, median: on a loaded machine it moves far less than
                wall time, which includes waiting for a core
  baseline CPU  the same for the baseline fleet
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shlex
import statistics
import sys
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuctl.model import Snapshot, Update
from gpuctl.query.fleet import FleetIndex
from gpuctl.service import tune_gc
from gpuctl.state.changes import diff
from gpuctl.tui import app as app_module
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from gpuctl.tui.palette import RAMP
from tests.tui.demo_fleet import demo_updates


class BenchApp(GpuctlApp):
    """The app, setting `framed` once the screen has been refreshed after an update."""

    CSS_PATH = str(Path(app_module.__file__).with_name(GpuctlApp.CSS_PATH))  # a relative path would be bench/'s

    def __init__(self, feed: QueueFeed) -> None:
        super().__init__(feed)
        self.framed = asyncio.Event()

    def apply_update(
        self,
        update: Update,
        index: FleetIndex | None = None,
        *,
        sample: array[int] | None = None,
        received: float | None = None,
    ) -> None:
        super().apply_update(update, index, sample=sample, received=received)
        self.call_after_refresh(self.framed.set)


async def frame_after(app: BenchApp, feed: QueueFeed, update: Update) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) from handing `update` to the feed until the frame showing it was rendered."""
    app.framed.clear()
    start = time.perf_counter()
    cpu = time.process_time()
    feed.push(update)
    await app.framed.wait()
    return time.perf_counter() - start, time.process_time() - cpu


def _step(value: float, low: float, high: float, shift: int) -> float:
    """`value` moved `shift` of the heatmap's colour steps on (wrapping), to the middle of that step."""
    steps = len(RAMP)
    width = (high - low) / steps
    at = min(steps - 1, max(0, int((value - low) / width)))
    return low + ((at + shift) % steps + 0.5) * width


def every_reading_changed(updates: list[Update]) -> list[Update]:
    """The same ticks, every GPU reading moved one colour step per update (idle GPUs' utilisation stays under 5 %)."""
    out: list[Update] = []
    previous: Snapshot | None = None
    for shift, u in enumerate(updates):
        gpus = []
        for g in u.snapshot.gpus:
            change: dict[str, float] = {}
            if g.util_pct is not None:
                change["util_pct"] = float(shift % 5) if g.idle else _step(g.util_pct, 0, 100, shift)
            if g.mem_used_mib is not None and g.mem_total_mib:
                change["mem_used_mib"] = g.mem_total_mib * _step(100 * g.mem_used_mib / g.mem_total_mib, 0, 100, shift) / 100
            if g.temp_c is not None:
                change["temp_c"] = _step(g.temp_c, 30, 90, shift)
            if g.power_w is not None:
                change["power_w"] = _step(g.power_w, 0, 700, shift)
            gpus.append(g.model_copy(update=change))
        snap = u.snapshot.model_copy(update={"gpus": tuple(gpus)})
        out.append(Update(snapshot=snap, changes=diff(previous, snap, everything=previous is None)))
        previous = snap
    return out


async def bench_view(
    updates: list[Update], view: str, size: tuple[int, int], verbose: bool = False
) -> dict[str, float]:
    feed = QueueFeed()
    app = BenchApp(feed)
    t_launch = time.perf_counter()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        startup = time.perf_counter() - t_launch
        if view != "1":
            await pilot.press(view)
            await pilot.pause()
        first, _ = await frame_after(app, feed, updates[0])
        measured = [await frame_after(app, feed, u) for u in updates[1:]]
        if verbose:
            print("  per update (ms):", " ".join(f"{t * 1000:.0f}" for t, _ in measured))
    times = sorted(t for t, _ in measured)
    return {
        "startup": startup,
        "first": first,
        "median": statistics.median(times),
        "p95": times[min(len(times) - 1, int(0.95 * len(times)))],
        "max": times[-1],
        "cpu": statistics.median(c for _, c in measured),
    }


WORST = "heatmap-all"  # the heatmap, every reading changed
# View name -> the key that shows it.
VIEWS: dict[str, str] = {"heatmap": "1", WORST: "1", "nodes": "2", "pods": "3", "quotas": "4"}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=80, help="demo fleet multiplier (80 -> 8,000 GPUs)")
    parser.add_argument("--updates", type=int, default=12, help="updates to time after the first")
    parser.add_argument("--size", default="200x60", help="terminal size WxH")
    parser.add_argument("--baseline-scale", type=int, default=1, help="the small fleet ratios are against")
    parser.add_argument("--verbose", action="store_true", help="print every update's time")
    parser.add_argument(
        "--views", default=",".join(VIEWS), help=f"comma-separated, of {', '.join(VIEWS)} (default: all)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    tune_gc()  # as `gpuctl top` does
    print("command:", shlex.join([".venv/bin/python", "bench/bench_tui.py", *sys.argv[1:]]))
    t = time.perf_counter()
    updates = await demo_updates(seed=7, scale=args.scale, ticks=args.updates + 1)
    build_s = time.perf_counter() - t
    snap = updates[-1].snapshot
    changed = statistics.mean(len(u.changes.gpus) for u in updates[1:])
    print(
        f"fleet: {len(snap.nodes)} nodes, {len(snap.gpus)} GPUs, {len(snap.pods)} GPU pods, "
        f"{changed:.0f} GPUs changed per update (built in {build_s:.1f}s); terminal {width}x{height}; "
        f"python {sys.version.split()[0]}"
    )
    baseline_updates = await demo_updates(seed=7, scale=args.baseline_scale, ticks=args.updates + 1)
    baseline_gpus = len(baseline_updates[-1].snapshot.gpus)
    print(
        f"{'view':<12} {'startup':>8} {'first frame':>12} {'update median':>14} {'p95':>8} {'max':>8}"
        f" {'baseline median':>16} {'x baseline':>10} {'update CPU':>11} {'baseline CPU':>14}"
    )
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    if unknown := set(views) - set(VIEWS):
        parser.error(f"--views: no view {', '.join(sorted(unknown))} (known: {', '.join(VIEWS)})")
    for name in views:
        view_updates, base_updates, key = updates, baseline_updates, VIEWS[name]
        if name == WORST:
            view_updates, base_updates = every_reading_changed(updates), every_reading_changed(baseline_updates)
        gc.collect()
        base = await bench_view(base_updates, key, (width, height))
        gc.collect()
        r = await bench_view(view_updates, key, (width, height), args.verbose)
        ms = {k: v * 1000 for k, v in r.items()}
        print(
            f"{name:<12} {ms['startup']:>6.0f}ms {ms['first']:>10.0f}ms {ms['median']:>12.1f}ms "
            f"{ms['p95']:>6.1f}ms {ms['max']:>6.1f}ms {base['median'] * 1000:>14.1f}ms "
            f"{r['median'] / base['median']:>9.1f}x {ms['cpu']:>9.1f}ms {base['cpu'] * 1000:>12.1f}ms"
        )
    print(f"baseline: the scale-{args.baseline_scale} demo, {baseline_gpus} GPUs, same terminal")


if __name__ == "__main__":
    asyncio.run(main())
