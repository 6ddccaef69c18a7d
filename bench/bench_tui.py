"""Benchmark `gpuctl top`: first-frame time and per-update render time at ~8,000 GPUs.

    .venv/bin/python bench/bench_tui.py [--scale 80] [--updates 12] [--size 200x60]

The fleet is the seeded demo (seed 7) run through the real ClusterStore on a
fixed clock: scale 80 is 880 nodes, 8,000 GPUs (MIG instances included) and
~3,700 GPU pods, and every tick moves every GPU's telemetry, so each update
is the worst case (all 8,000 GPU keys changed). The app runs headless (the
compositor renders every visible line; only the final write to a terminal is
skipped) and a frame counts as done when Textual has refreshed the screen
after the update (`call_after_refresh`).

Printed: the command, the fleet, then per view
  first frame   feed delivers the first snapshot -> that frame rendered
  update        next snapshot delivered -> its frame rendered (median, p95, max)
  x baseline    the update median divided by the same view's update median on
                the scale-1 demo (100 GPUs), measured in the same run: how the
                cost grows with the fleet, free of this machine's noise level
  update CPU    the process's CPU time (every thread: indexing runs in a worker)
                per update, median: on a loaded machine it moves far less than
                wall time, which includes waiting for a core
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuctl.model import Update
from gpuctl.service import tune_gc
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed
from tests.tui.demo_fleet import demo_updates


async def frame_after(app: GpuctlApp, feed: QueueFeed, update: Update) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) from handing `update` to the feed until the frame showing it was rendered."""
    done = asyncio.Event()
    target = app.updates_applied + 1
    start = time.perf_counter()
    cpu = time.process_time()
    feed.push(update)
    while app.updates_applied < target:  # noqa: ASYNC110  (yield each tick: the timing is the point)
        await asyncio.sleep(0)
    app.call_after_refresh(done.set)
    await done.wait()
    return time.perf_counter() - start, time.process_time() - cpu


async def bench_view(
    updates: list[Update], view: str, size: tuple[int, int], verbose: bool = False
) -> dict[str, float]:
    feed = QueueFeed()
    app = GpuctlApp(feed)
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=80, help="demo fleet multiplier (80 -> 8,000 GPUs)")
    parser.add_argument("--updates", type=int, default=12, help="updates to time after the first")
    parser.add_argument("--size", default="200x60", help="terminal size WxH")
    parser.add_argument("--baseline-scale", type=int, default=1, help="the small fleet ratios are against")
    parser.add_argument("--verbose", action="store_true", help="print every update's time")
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
        f"{'view':<8} {'startup':>8} {'first frame':>12} {'update median':>14} {'p95':>8} {'max':>8}"
        f" {'baseline median':>16} {'x baseline':>10} {'update CPU':>11}"
    )
    for view, name in (("1", "heatmap"), ("2", "nodes"), ("3", "pods"), ("4", "quotas")):
        gc.collect()
        base = await bench_view(baseline_updates, view, (width, height))
        gc.collect()
        r = await bench_view(updates, view, (width, height), args.verbose)
        ms = {k: v * 1000 for k, v in r.items()}
        print(
            f"{name:<8} {ms['startup']:>6.0f}ms {ms['first']:>10.0f}ms {ms['median']:>12.1f}ms "
            f"{ms['p95']:>6.1f}ms {ms['max']:>6.1f}ms {base['median'] * 1000:>14.1f}ms "
            f"{r['median'] / base['median']:>9.1f}x {ms['cpu']:>9.1f}ms"
        )
    print(f"baseline: the scale-{args.baseline_scale} demo, {baseline_gpus} GPUs, same terminal")


if __name__ == "__main__":
    asyncio.run(main())
