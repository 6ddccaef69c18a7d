"""What a gpuctl process holds in memory, by the lines that allocated it (tracemalloc), at given moments.

    GPUCTL_PROBE_AT=0,150,156,162 GPUCTL_PROBE_DIR=/tmp/probe \\
        .venv/bin/python bench/memory_probe.py top --kubeconfig K --prometheus URL

Runs `gpuctl` (the arguments after the script) in this process with a probe
thread. At the first moment (seconds after start; 0 = before gpuctl is
imported, so imports are traced too) the probe starts tracemalloc (one frame:
cheap enough to leave a `top` usable, though RSS under it roughly doubles), and
at each later moment it writes `tN.tmsnap` (tracemalloc.Snapshot.dump) and a
line to `probe.log` (RSS, traced MiB, gc counts). Snapshots a few seconds apart
tell a metrics refresh's transient peak from what stays; `--report A B` prints
the top allocation sites of snapshot A and what grew from A to B:

    .venv/bin/python bench/memory_probe.py --report /tmp/probe/t156.tmsnap /tmp/probe/t168.tmsnap

Run `top` in a terminal (or bench/_procs.PtyProcess); RSS without the probe is
what bench_e2e.py measures. Session 12 found the decoded Prometheus answers
(~17 MiB of small objects per answer) this way.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


def _rss_mib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:"))


def probe(moments: list[float], out: Path, started: float) -> None:
    def log(message: str) -> None:
        with (out / "probe.log").open("a") as f:
            f.write(f"{time.monotonic() - started:8.1f} s  rss {_rss_mib()} MiB  {message}\n")

    for i, moment in enumerate(moments):
        time.sleep(max(0.0, started + moment - time.monotonic()))
        if i == 0:
            if not tracemalloc.is_tracing():
                tracemalloc.start(1)
            log("tracemalloc started")
            continue
        traced, peak = tracemalloc.get_traced_memory()
        tracemalloc.take_snapshot().dump(str(out / f"t{moment:g}.tmsnap"))
        log(f"t{moment:g}.tmsnap: traced {traced >> 20} MiB (peak {peak >> 20}), gc counts {gc.get_count()}")


def report(first: Path, second: Path | None, top: int = 25) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    a = tracemalloc.Snapshot.load(str(first)).filter_traces(ignore)
    stats = a.statistics("lineno")
    print(f"{first.name}: {sum(s.size for s in stats) / 2**20:.1f} MiB traced; the top {top} lines:")
    for s in stats[:top]:
        print(f"  {s.size / 2**20:8.2f} MiB {s.count:8d} blocks  {s.traceback[0]}")
    if second is not None:
        b = tracemalloc.Snapshot.load(str(second)).filter_traces(ignore)
        print(f"{first.name} -> {second.name}, grown most:")
        for d in b.compare_to(a, "lineno")[:top]:
            print(f"  {d.size_diff / 2**20:+8.2f} MiB {d.count_diff:+8d} blocks  {d.traceback[0]}")


def main() -> None:
    if sys.argv[1:2] == ["--report"]:
        report(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
        return
    started = time.monotonic()
    moments = [float(m) for m in os.environ.get("GPUCTL_PROBE_AT", "0,60").split(",")]
    out = Path(os.environ.get("GPUCTL_PROBE_DIR", ".")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if moments[0] == 0:
        tracemalloc.start(1)
    threading.Thread(target=probe, args=(moments, out, started), daemon=True, name="memory-probe").start()
    sys.argv = ["gpuctl", *sys.argv[1:]]
    runpy.run_module("gpuctl.cli", run_name="__main__")


if __name__ == "__main__":
    main()
