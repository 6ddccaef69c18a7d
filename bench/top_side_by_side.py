"""Several `gpuctl top`s side by side on a held bed: each one's RSS every 10 s and its CPU.

    .venv/bin/python bench/top_side_by_side.py --bed /work/bed/bed.json --seconds 330 \\
        this=. start=/work/wt/start start-no-alerts=/work/wt/start:no-alerts

Each LABEL=DIR runs the gpuctl of checkout DIR (PYTHONPATH=DIR, as bench_e2e.py's --compare) in a
pseudo-terminal against the bed bench/hold_bed.py holds; `:no-alerts` makes its alerts source answer no
alerts (what the alerts cost). Run at once, they share the bed's load, its alerts and the machine's
moment, so a few MiB of difference show where runs one after the other would drown them. Prints, per
run, the median RSS of the last two thirds, the largest sample, the CPU used and the samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import PtyProcess, proc_cpu_s, proc_status

SIZE = (200, 60)
# The alerts source answering none, then gpuctl as its `gpuctl` command runs.
NO_ALERTS = """
import sys
from gpuctl.sources import alerts
async def none(self): return []
alerts.PrometheusAlertsSource.fetch = none
from gpuctl.cli import run
sys.argv[0] = "gpuctl"
run()
"""


async def side_by_side(bed: dict[str, str], runs: dict[str, tuple[Path, bool]], seconds: float) -> None:
    args = ["top", "--kubeconfig", bed["kubeconfig"], "--prometheus", bed["prometheus"], "--refresh", "15s"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBECONFIG", "PYTHONPATH"))}
    env |= {"TERM": "xterm-256color", "COLUMNS": str(SIZE[0]), "LINES": str(SIZE[1])}
    procs = {}
    for label, (path, no_alerts) in runs.items():
        argv = [sys.executable, "-c", NO_ALERTS, *args] if no_alerts else [sys.executable, "-m", "gpuctl.cli", *args]
        procs[label] = PtyProcess(argv, env={**env, "PYTHONPATH": str(path)}, size=SIZE, cwd=path)
    rss: dict[str, list[float]] = {label: [] for label in procs}
    try:
        for _ in range(int(seconds // 10)):
            await asyncio.sleep(10)
            for label, proc in procs.items():
                if not proc.alive():
                    raise RuntimeError(f"{label} exited: {proc.tail[-1500:].decode(errors='replace')}")
                rss[label].append(proc_status(proc.pid)["VmRSS"] / 2**20)
        cpu = {label: proc_cpu_s(proc.pid) for label, proc in procs.items()}
    finally:
        for proc in procs.values():
            await proc.stop()
    for label, samples in rss.items():
        settled = samples[len(samples) // 3 :]
        print(f"{label}: RSS {statistics.median(settled):.1f} MiB (median of the last two thirds), "
              f"largest {max(samples):.1f} MiB; CPU {cpu[label]:.1f} s; samples {[round(s) for s in samples]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bed", type=Path, required=True, help="bench/hold_bed.py's --out")
    parser.add_argument("--seconds", type=float, default=330.0)
    parser.add_argument("runs", nargs="+", metavar="LABEL=DIR[:no-alerts]")
    args = parser.parse_args()
    runs: dict[str, tuple[Path, bool]] = {}
    for spec in args.runs:
        label, _, where = spec.partition("=")
        path, _, mode = where.partition(":")
        if not label or not path or mode not in ("", "no-alerts"):
            parser.error(f"{spec!r}: expected LABEL=DIR or LABEL=DIR:no-alerts")
        runs[label] = (Path(path).resolve(), mode == "no-alerts")
    asyncio.run(side_by_side(json.loads(args.bed.read_text()), runs, args.seconds))


if __name__ == "__main__":
    main()
