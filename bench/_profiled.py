"""`gpuctl ARGS` with cProfile on its main thread (the event loop's) between SIGUSR1 and SIGUSR2.

    python bench/_profiled.py STATS_FILE bot serve ...

SIGUSR1 starts profiling, SIGUSR2 stops it and writes the stats (pstats format) to
STATS_FILE. Signal handlers run on the main thread, so the profiler sees that thread
only: the loop, not the join or request worker threads, nor the bot's front door (its
HTTP server and acks: a process of its own, gpuctl.bot.front_door). bench_bot.py --profile uses it
to profile the bot under load without its start-up.
"""

from __future__ import annotations

import cProfile
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuctl.cli import run


def main() -> None:
    stats, args = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()

    def start(*_: object) -> None:
        profiler.enable()

    def stop(*_: object) -> None:
        profiler.disable()
        profiler.dump_stats(stats)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["gpuctl", *args]
    run()


if __name__ == "__main__":
    main()
