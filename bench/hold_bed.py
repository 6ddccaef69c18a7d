"""Hold the benchmark test bed open, for measuring runs of seconds instead of setting a bed up for each.

    .venv/bin/python bench/hold_bed.py --scale 125 --out /tmp/bed.json

Starts bench_e2e's bed (bench/_bed.py: the control plane, the fleet topped up to
80 GPU pods per scale unit, the DCGM-exporter simulator and a real Prometheus
scraping it) and writes what a run against it needs to `--out` (JSON): the
admin kubeconfig, the Prometheus URL, its query log, the fleet's expected
counts, and the floor's arguments (`bench/_floor.py ARGS`). Then it waits:

* while `OUT.run` exists (remove it, or interrupt, to stop the bed);
* writing a number of seconds into `OUT.churn` starts bench_e2e's pod churn
  (50 GPU pods created, then deleted, over and over) for that long.

Against it, for example:

    .venv/bin/python -m gpuctl.cli snapshot --json --kubeconfig K --prometheus URL
    .venv/bin/python bench/_floor.py "$(jq -c .floor_args /tmp/bed.json)"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from _bed import fleet_bed
from bench_e2e import Expected, churn

from testbed.controlplane import ADMIN


async def hold(scale: int, out: Path, scrape_s: float, timeout_s: float) -> None:
    running, churn_request = out.with_name(out.name + ".run"), out.with_name(out.name + ".churn")
    running.touch()
    workdir = Path(tempfile.mkdtemp(prefix="gpuctl-held-bed-"))
    query_log = workdir / "prometheus-queries.log"
    async with fleet_bed(workdir, scale=scale, scrape_s=scrape_s, timeout_s=timeout_s, query_log=query_log) as up:
        description = json.dumps({
            "kubeconfig": str(up.plane.kubeconfig(ADMIN)), "prometheus": up.prometheus, "workdir": str(workdir),
            "query_log": str(query_log), "expected": asdict(Expected.of(up.fleet)), "floor_args": up.floor_args(),
        }, indent=1)  # fmt: skip
        await asyncio.to_thread(out.write_text, description)
        print(f"bed up: {up.setup_line(scrape_s)}; {out} written; remove {running} to stop", flush=True)
        churning: set[asyncio.Task[None]] = set()
        while running.exists():
            seconds = _churn_asked(churn_request)
            if seconds is not None:
                print(f"{time.strftime('%H:%M:%S')} churning pods for {seconds:g} s", flush=True)
                task = asyncio.create_task(churn(up.admin, seconds))
                churning.add(task)
                task.add_done_callback(churning.discard)
            await asyncio.sleep(1)
        for task in churning:
            task.cancel()


def _churn_asked(request: Path) -> float | None:
    """The seconds of churn written into `request` (then removed), if any."""
    if not request.exists():
        return None
    seconds = float(request.read_text() or "60")
    request.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=125, help="simulated fleet multiplier (125: 12,500 devices)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the bed's description (JSON)")
    parser.add_argument("--scrape", type=float, default=15.0, help="Prometheus scrape and rule interval, seconds")
    parser.add_argument("--timeout", type=float, default=300.0, help="per wait while the bed starts, seconds")
    args = parser.parse_args()
    try:
        asyncio.run(hold(args.scale, args.out.resolve(), args.scrape, args.timeout))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
