"""What gpuctl costs a shared Prometheus, and what a refresh costs gpuctl: per query and per refresh.

    .venv/bin/python bench/bench_prom_cost.py [--scale 125] [--scrape 15] [--fill 300] [--compare DIR]

Starts the DCGM-exporter simulator for the benchmark fleet (bench/_common.py
filled_fleet at `--scale`) and a real Prometheus scraping it every `--scrape`
seconds (testbed.bed.Telemetry), waits until Prometheus has every device, then
`--fill` seconds more so the history queries have data to read. Then, for this
checkout (and each `--compare` checkout, a worktree at another commit), in a
child process of its own so RSS is that checkout's alone:

  refresh   PrometheusSource.fetch() `--refreshes` times: wall time, the
            event loop's longest stall meanwhile (gpuctl.trace.watch_loop's
            probe), the process's RSS before and its peak after
  history   PrometheusSource.history_answers() once (what a start sends),
            wall time
  queries   every query the source sent, from Prometheus's own stats
            (`stats=all`: evaluation time inside Prometheus) and the answer's
            size in bytes

The idle window is `--window` seconds (the history's look-back is sized from
it as gpuctl sizes it); with `--fill` shorter than the window the history reads
only what Prometheus holds, as it does on a test bed that just started.

Loopback only; everything it starts is stopped when it ends or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, command_line, filled_fleet, machine, rss_bytes

SCRIPT = str(Path(__file__).resolve())


def child(args: argparse.Namespace) -> None:
    """Runs in the checkout under test (PYTHONPATH): prints one JSON line of results."""
    sys.path.insert(0, os.environ["PYTHONPATH"])  # before _common's REPO: that checkout's gpuctl
    import requests

    from gpuctl.sources.prometheus import PrometheusSource
    from gpuctl.trace import Trace, watch_loop

    sent: list[str] = []

    class Stall(Trace):
        def __init__(self) -> None:
            super().__init__(None)
            self.longest_ms = 0.0

        @property
        def enabled(self) -> bool:
            return True

        def event(self, name: str, **fields: Any) -> None:
            self.longest_ms = max(self.longest_ms, float(fields.get("ms", 0.0)))

    async def main() -> dict[str, Any]:
        source = PrometheusSource(args.prometheus, refresh_s=15.0, timeout_s=args.timeout, idle_window_s=args.window)
        original = source._get if hasattr(source, "_get") else source._client.custom_query

        def logged(*args: Any, **kwargs: Any) -> Any:  # either checkout's request function: log the query
            query = args[1]["query"] if hasattr(source, "_get") else args[0]
            sent.append(query)
            return original(*args, **kwargs)

        if hasattr(source, "_get"):
            source._get = logged  # type: ignore[method-assign]
        else:
            source._client.custom_query = logged
        stalls = Stall()
        probe = asyncio.create_task(watch_loop(stalls, interval_s=0.005, report_over_s=0.0))
        rss_before = rss_bytes()
        refresh_s: list[float] = []
        gpus = 0
        for _ in range(args.refreshes):
            t = time.perf_counter()
            batch = await source.fetch()
            refresh_s.append(time.perf_counter() - t)
            gpus = len(batch.samples)
            del batch
        refresh_stall = stalls.longest_ms
        t = time.perf_counter()
        error = None
        try:
            await source.history_answers()
        except Exception as e:  # the benchmark reports a failed history, it does not stop on it
            error = f"{type(e).__name__}: {e}"[:200]
        history_s = time.perf_counter() - t
        probe.cancel()
        source.close()
        return {
            "gpus": gpus,
            "refresh_s": refresh_s,
            "refresh_stall_ms": refresh_stall,
            "rss_before_mib": rss_before / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "history_s": history_s,
            "history_error": error,
        }

    out = asyncio.run(main())
    # Each distinct query once more, alone, for Prometheus's own timing and the answer's size.
    stats = []
    for query in dict.fromkeys(sent):
        resp = requests.get(f"{args.prometheus}/api/v1/query", params={"query": query, "stats": "all",
                                                                        "timeout": f"{args.timeout:g}"}, timeout=args.timeout + 5)
        body = resp.json()
        timings = body.get("data", {}).get("stats", {}).get("timings", {})
        stats.append({"query": query, "bytes": len(resp.content), "status": body.get("status"),
                      "series": len(body.get("data", {}).get("result", []) or []),
                      "eval_s": timings.get("evalTotalTime"), "error": body.get("error")})
    out["queries"] = stats
    out["sent"] = len(sent)
    print(json.dumps(out))


async def bench(args: argparse.Namespace) -> None:
    from testbed.bed import Telemetry

    print(f"command: {command_line()}")
    print(f"machine: {machine()}")
    fleet = filled_fleet(args.scale, args.pods if args.pods is not None else 80 * args.scale)
    workdir = Path(tempfile.mkdtemp(prefix="gpuctl-bench-prom-"))
    telemetry = await Telemetry.start(workdir / "monitoring", fleet, scrape_interval_s=args.scrape,
                                      evaluation_interval_s=args.scrape)
    try:
        t = time.perf_counter()
        await telemetry.monitoring.wait_for_series("DCGM_FI_DEV_FB_USED", count=len(fleet.gpus), timeout_s=600)
        print(f"fleet:   {len(fleet.nodes)} nodes, {len(fleet.gpus)} devices, {len(fleet.pods)} pods; every device in "
              f"Prometheus after {time.perf_counter() - t:.0f} s; filling {args.fill:g} s more", flush=True)
        await asyncio.sleep(args.fill)  # a benchmark's wait for data, not a test's
        checkouts = [REPO, *args.compare]
        for checkout in checkouts:
            env = {**os.environ, "PYTHONPATH": str(checkout)}
            argv = [sys.executable, SCRIPT, "--child", "--prometheus",
                    telemetry.monitoring.prometheus_url, "--window", str(args.window), "--refreshes",
                    str(args.refreshes), "--timeout", str(args.timeout)]
            done = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"\n{checkout}: child failed\n{done.stderr[-3000:]}")
                continue
            report(checkout, json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"\nload at the end: {machine()}")
    finally:
        await telemetry.stop()


def report(checkout: Path, r: dict[str, Any]) -> None:
    refresh = ", ".join(f"{s * 1000:.0f}" for s in r["refresh_s"])
    print(f"\n== {checkout} ({r['gpus']} GPUs in a batch)")
    print(f"refresh wall ms: {refresh}; longest loop stall during refreshes {r['refresh_stall_ms']:.0f} ms")
    print(f"RSS before the first refresh {r['rss_before_mib']:.0f} MiB, peak {r['peak_rss_mib']:.0f} MiB")
    print(f"history pair wall {r['history_s'] * 1000:.0f} ms" + (f" FAILED: {r['history_error']}" if r["history_error"] else ""))
    print(f"queries sent: {r['sent']} ({len(r['queries'])} distinct)")
    print("| eval in Prometheus | answer | series | query |")
    print("|---|---|---|---|")
    for q in r["queries"]:
        ev = "—" if q["eval_s"] is None else f"{q['eval_s'] * 1000:.0f} ms"
        if q["status"] != "success":
            ev = f"{q['status']}: {q['error']}"[:80]
        print(f"| {ev} | {q['bytes'] / 2**20:.2f} MiB | {q['series']} | `{q['query'][:90]}…` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="simulated fleet multiplier (125: 12,500 devices)")
    parser.add_argument("--pods", type=int, help="top the fleet up to this many GPU pods (default 80 per scale unit)")
    parser.add_argument("--scrape", type=float, default=15.0, help="Prometheus scrape interval, seconds")
    parser.add_argument("--fill", type=float, default=120.0, help="seconds of data before measuring")
    parser.add_argument("--window", type=float, default=1800.0, help="gpuctl's idle window, seconds (its default)")
    parser.add_argument("--refreshes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="gpuctl's query timeout here, seconds")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                        help="also measure the checkout in DIR (a worktree at another commit)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prometheus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
