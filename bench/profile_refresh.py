"""Profile one metrics refresh of `gpuctl top`, in process: the hub's publish and the app's frame.

    .venv/bin/python bench/profile_refresh.py [--scale 125] [--pods 10000] [--refreshes 6] [--profile]

The fleet and its records are bench_core.py's (the seeded fleet topped up to
`--pods`, records from API-shaped JSON); the metrics come from the simulator,
so every reading moves in every batch (the worst case, as on a real fleet).
A store and a hub run as in `gpuctl top` (tune_gc applied), and the real
GpuctlApp runs headless at `--size` on the hub's subscription.

Per refresh it times, in CPU time of this process (time.process_time: the
machine is shared, and wall time moves with the load): the publish (store.snapshot + store.changes, what the
hub runs in a worker thread), the FleetIndex (the app builds it in a worker
thread), the app's apply_update (history, status bar, the visible view: on
the event loop) and the frame (apply -> Textual rendered it).
With --profile all (or frame), pyinstrument (the `bench` extra) prints where
the time of the last `--refreshes` refreshes (or of their frames) went.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, machine, ms
from bench_core import START, Clock, Data

from gpuctl.query.fleet import FleetIndex
from gpuctl.service import tune_gc
from gpuctl.state.hub import SnapshotHub
from gpuctl.state.records import MetricsBatch
from gpuctl.state.store import ClusterStore
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.feed import QueueFeed


async def run(args: argparse.Namespace) -> None:
    tune_gc()
    data = Data.build(args.scale, args.pods, seed=7)
    print(f"command: {command_line()}\nmachine: {machine()}\nfleet:   {data.summary}")
    clock = Clock()
    store = ClusterStore(clock=clock, refresh_s=15.0)
    data.load(store)
    hub = SnapshotHub(store, min_interval=0.0)
    feed = QueueFeed()
    app = GpuctlApp(feed)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
    publish_s: list[float] = []
    index_s: list[float] = []
    apply_s: list[float] = []
    frame_s: list[float] = []
    index: FleetIndex | None = None
    async with app.run_test(size=args.size) as pilot:
        for i in range(args.refreshes * 2 + 1):
            measured = i > args.refreshes
            clock.now = START + timedelta(seconds=15 * i)
            store.apply_metrics(MetricsBatch(at=clock.now, samples=data.samples[i % len(data.samples)]))
            if measured and profiler is not None and args.profile == "all":
                profiler.start()
            t0 = time.process_time()
            update = hub.publish()
            t1 = time.process_time()
            if measured and profiler is not None and args.profile == "frame":
                profiler.start()
            assert update is not None
            done = asyncio.Event()
            index = FleetIndex(update.snapshot, index)  # the app builds it in a worker thread, on the one before
            t1b = time.process_time()
            app.apply_update(update, index)
            t2 = time.process_time()
            app.call_after_refresh(done.set)
            await done.wait()
            t3 = time.process_time()
            if measured:
                if profiler is not None:
                    profiler.stop()
                publish_s.append(t1 - t0)
                index_s.append(t1b - t1)
                apply_s.append(t2 - t1b)
                frame_s.append(t3 - t1b)
            await pilot.pause()
    snap = update.snapshot
    print(f"snapshot: {len(snap.gpus):,} GPUs, {len(snap.pods):,} pods; {len(update.changes.gpus):,} GPUs and "
          f"{len(update.changes.pods):,} pods changed per refresh; terminal {args.size[0]}x{args.size[1]}")
    for name, values in (("publish (snapshot + changes)", publish_s), ("FleetIndex (the app: a thread)", index_s),
                         ("apply_update", apply_s), ("frame (apply + render)", frame_s)):
        print(f"  {name:<30} median {ms(statistics.median(values))}, max {ms(max(values))} ({len(values)})")
    if profiler is not None:
        print(profiler.output_text(unicode=True, color=False, show_all=False, timeline=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=125)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--refreshes", type=int, default=6)
    parser.add_argument("--size", default="200x60")
    parser.add_argument("--profile", choices=("all", "frame"), help="pyinstrument the measured refreshes (or their frames)")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.split("x"))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
