"""`python -m testbed up [--scale N] [--seed S] [--dir D] [--scrape S]`: start the whole test bed
by hand, print how to point kubectl and gpuctl at it, and run until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import tempfile
import time
from pathlib import Path

from testbed.bed import start_full
from testbed.controlplane import ADMIN, IDENTITIES, build_binaries

# A large fleet's exporter page can take longer than a 1 s scrape (at scale 125 it always did):
# from this scale Prometheus scrapes as a real one does.
LARGE_SCALE = 20
LARGE_SCRAPE_S = 15.0


async def up(workdir: Path, *, seed: int, scale: int, scrape_s: float) -> None:
    started = time.monotonic()
    bin_dir = await asyncio.to_thread(build_binaries)
    plane, fleet, telemetry = await start_full(workdir, bin_dir, seed=seed, scale=scale, scrape_interval_s=scrape_s)
    try:
        gpus = len(fleet.gpus)
        print(f"test bed up in {time.monotonic() - started:.1f}s: {len(fleet.nodes)} nodes, {gpus} GPU devices, {len(fleet.pods)} pods")
        print(f"  API server     {plane.server}")
        for identity in IDENTITIES:
            print(f"  kubeconfig     {plane.kubeconfig(identity)}   ({identity.name}, groups {', '.join(identity.groups)})")
        print(f"  Prometheus     {telemetry.monitoring.prometheus_url}")
        print(f"  Alertmanager   {telemetry.monitoring.alertmanager_url}")
        print(f"  DCGM exporter  {telemetry.exporter.url}")
        print(f"  logs           {plane.log_dir}")
        print()
        print(f"  export KUBECONFIG={plane.kubeconfig(ADMIN)}")
        print("  kubectl get nodes -L karpenter.sh/nodepool,nvidia.com/gpu.product")
        print(f"  gpuctl top --prometheus {telemetry.monitoring.prometheus_url}")
        print(f"  gpuctl snapshot --prometheus {telemetry.monitoring.prometheus_url}")
        print("\nCtrl-C stops everything.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await telemetry.stop()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start the test bed and keep it running")
    start.add_argument("--seed", type=int, default=7)
    start.add_argument("--scale", type=int, default=1, help="multiply the simulated fleet's nodes")
    start.add_argument("--dir", type=Path, help="working directory (default: a new temporary one)")
    start.add_argument(
        "--scrape", type=float, help=f"Prometheus's scrape and rule interval, seconds (default: 1, {LARGE_SCRAPE_S:g} from scale {LARGE_SCALE})"
    )
    args = parser.parse_args()
    scrape_s = args.scrape if args.scrape is not None else (LARGE_SCRAPE_S if args.scale >= LARGE_SCALE else 1.0)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="gpuctl-testbed-"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(up(workdir, seed=args.seed, scale=args.scale, scrape_s=scrape_s))


if __name__ == "__main__":
    main()
