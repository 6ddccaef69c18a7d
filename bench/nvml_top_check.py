"""Run `gpuctl top --local` headless on a GPU machine and keep what it shows.

    python bench/nvml_top_check.py OUT_DIR [--timeout 30]

Starts the real app on the NVML feed (as `gpuctl top --local` does, in
Textual's headless test driver), waits until every GPU NVML reports has a
utilisation or memory reading on screen, then saves a screenshot SVG and the
text of the status bar into OUT_DIR. Exits 2 with gpuctl's message when there
is no driver, 1 when the readings never appear in time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from gpuctl.config import Settings
from gpuctl.tui.app import GpuctlApp
from gpuctl.tui.service_feed import cluster_feed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    settings = Settings(local=True, refresh_s=1.0)
    app = GpuctlApp(cluster_feed(settings), settings=settings, open_feed=cluster_feed)
    started = time.perf_counter()
    async with app.run_test(size=(160, 48)) as pilot:
        deadline = started + args.timeout
        while time.perf_counter() < deadline:
            await pilot.pause(0.5)
            stopped = app.fatal_error or app.feed_error
            if stopped is not None:
                print(f"gpuctl: {stopped}", file=sys.stderr)
                app.save_screenshot(filename="top_local_stopped.svg", path=str(args.out))
                return 2
            snapshot = app.index.snapshot if app.index else None
            if (
                snapshot is not None
                and snapshot.gpus
                and all(g.util_pct is not None or g.mem_used_mib is not None for g in snapshot.gpus)
            ):
                break
        else:
            print("no GPU readings on screen in time", file=sys.stderr)
            app.save_screenshot(filename="top_local_timeout.svg", path=str(args.out))
            return 1
        shown_s = time.perf_counter() - started
        await pilot.pause(2.0)  # a couple more refreshes: the heatmap with history
        app.save_screenshot(filename="top_local.svg", path=str(args.out))
        gpus = app.index.snapshot.gpus if app.index else ()
        lines = [f"first full reading on screen after {shown_s:.2f} s"]
        lines += [
            f"{g.node}/{g.index}/{g.mig_instance}: util {g.util_pct} mem {g.mem_used_mib} MiB temp {g.temp_c} C power {g.power_w} W"
            for g in gpus
        ]
        (args.out / "top_local.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
