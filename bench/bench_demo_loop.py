"""How long the demo source blocks the event loop at a scale: heartbeat lag and asyncio's slow callbacks.

    .venv/bin/python bench/bench_demo_loop.py [--scale 220] [--seconds 30]

Runs `DemoSource` at `--scale` (220: 22,000 GPUs, ~10,000 GPU pods) feeding a ClusterStore on an
event loop in asyncio debug mode (slow_callback_duration 100 ms). Once the first metrics batch is in
(the first list, done once, is not counted), for `--seconds` a heartbeat task sleeps 10 ms at a time
and records how late it wakes, while asyncio names every callback that ran longer than 100 ms. No
snapshot is asked for, so the store's join is not part of it: only the source's own ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, machine, ms, table

from gpuctl.sources.demo import DemoSource
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll

HEARTBEAT_S = 0.01
SLOW_S = 0.1


class SlowCallbacks(logging.Handler):
    """Collects the durations asyncio's debug mode logs ("Executing <...> took 1.234 seconds")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.taken: list[float] = []
        self.counting = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.counting and " took " in message and message.endswith(" seconds"):
            self.taken.append(float(message.rsplit(" took ", 1)[1].split()[0]))


async def measure(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().slow_callback_duration = SLOW_S
    slow = SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    store = ClusterStore()
    task = asyncio.create_task(DemoSource(scale=args.scale).run(store))
    try:
        await poll(lambda: store.metrics_attempted, bool, timeout_s=300, what="the demo's first metrics")
        slow.counting = True
        lags: list[float] = []
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            await asyncio.sleep(HEARTBEAT_S)
            lags.append(time.perf_counter() - start - HEARTBEAT_S)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lags.sort()
    print(f"# {command_line()}\n# {machine()}")
    rows = [
        ["heartbeat lag (10 ms sleeps)", str(len(lags)), ms(lags[len(lags) // 2]), ms(lags[int(0.99 * (len(lags) - 1))]), ms(lags[-1])],
        [f"callbacks over {ms(SLOW_S)}", str(len(slow.taken)), f"total {ms(sum(slow.taken))}", "", ms(max(slow.taken, default=0.0))],
    ]
    print(table(["", "n", "p50", "p99", "max"], rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=220)
    parser.add_argument("--seconds", type=float, default=30.0)
    arguments = parser.parse_args()
    asyncio.run(measure(arguments), debug=True)
