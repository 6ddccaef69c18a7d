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

`--history-paths`: instead, the idle history both ways on the same Prometheus,
`--variant-repeat` times alternating which goes first: gpuctl's recording rules
(deploy/prometheus/gpuctl-rules.yaml's gpuctl-history group, which the test
bed's Prometheus loads; waits for their first evaluation) and the subqueries,
each query with Prometheus's evaluation time, process CPU and allocation
(`go_memstats_alloc_bytes_total`); the rules' own expressions as queries; the
rule group's evaluation time from the rules API; and how the streaks differ.

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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, command_line, filled_fleet, machine, rss_bytes, table
from _procs import proc_cpu_s

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
              f"Prometheus after {time.perf_counter() - t:.0f} s; measuring after {', '.join(f'{f:g}' for f in args.fill)} s more", flush=True)
        filled = 0.0
        for fill in args.fill:  # a benchmark's wait for data, not a test's
            await asyncio.sleep(fill - filled)
            filled = fill
            print(f"\n## after {fill:g} s of data\n", flush=True)
            await measure(args, telemetry)
        print(f"\nload at the end: {machine()}")
    finally:
        await telemetry.stop()


async def measure(args: argparse.Namespace, telemetry: Any) -> None:
    """Every checkout in a child process of its own, then (--variants) the other ways to ask."""
    checkouts = [] if args.variants_only or args.history_paths else [REPO, *args.compare]
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
    if args.variants or args.history_paths:
        prometheus = telemetry.monitoring.prometheus._process
        assert prometheus is not None
        run = history_paths if args.history_paths else variants
        await run(args, telemetry.monitoring.prometheus_url, prometheus.pid)


# -- --variants: other ways to ask the same questions, measured on the same Prometheus ---------------------------


def _history_variants(threshold: float, window_s: float, refresh_s: float, grace_s: float) -> dict[str, tuple[str, ...]]:
    """Name -> the queries of one way to read idle history (answers in last_busy/present_since's shape:
    one series per GPU, holder and utilisation name, valued at a timestamp). Each is judged by the
    streaks gpuctl.sources.history.idle_since makes of it, against the shipped pair's."""
    from gpuctl.sources import queries as q
    from gpuctl.sources.history import HistoryPlan

    plan = HistoryPlan.for_window(window_s, refresh_s, grace_s)
    span, lookback = q.duration(plan.lookback_s), round(plan.lookback_s)

    def breaks(step_s: float) -> str:
        """One subquery: the latest step at which a streak broke (a busy sample, or samples resuming after a
        gap), else the look-back's start for a series with any sample in it (present_since's run starts and
        last_busy's busy steps in one pass, no instant read at the look-back's start)."""
        step, window = q.duration(step_s), q.duration(max(step_s, grace_s - step_s))

        def term(m: Any, sel: str) -> str:
            busy = f"max_over_time({m.name}{sel}[{step}]) >= {threshold / m.factor:g}"
            present = f"last_over_time({m.name}{sel}[{window}]"
            broke = f"timestamp({busy}) or timestamp({present}) unless {present} offset {step}))"
            seen = f"timestamp(last_over_time({m.name}{sel}[{span}])) - {lookback}"
            return f"{broke} or max_over_time(({broke})[{span}:{step}]) or {seen}"

        return q._kept(q._union(q._util_names(), term, q.NO_SELECTOR, q._where_chosen), q.NAME_LABEL, *q.SERIES_LABELS)

    shipped = (q.last_busy(threshold, plan.lookback_s, plan.step_s), q.present_since(threshold, plan.lookback_s, plan.presence_step_s, plan.gap_s))
    return {
        f"shipped: last_busy at {plan.step_s:g} s + present_since at {plan.presence_step_s:g} s": shipped,
        f"last_busy at {2 * plan.step_s:g} s + present_since at {plan.presence_step_s:g} s": (
            q.last_busy(threshold, plan.lookback_s + 4 * plan.step_s, 2 * plan.step_s), shipped[1]),
        f"one query: breaks at {plan.step_s:g} s": (breaks(plan.step_s),),
    }


def _cost_floors(window_s: float, threshold: float) -> dict[str, str]:
    """Plain reads with no subquery (what reading the look-back's raw samples costs at least), a subquery's
    parts one by one, instant queries trimmed and raw, the freshness query and a cheaper form of it."""
    from gpuctl.sources import queries as q
    from gpuctl.sources.dcgm_fields import Quantity

    span = q.duration(window_s + 240)
    util = 'DCGM_FI_DEV_GPU_UTIL{GPU_I_ID=""}'
    step = f"[{span}:60s]"
    return {
        f"floor: max_over_time(GPU_UTIL[{span}]), raw": f"max_over_time({util}[{span}])",
        f"floor: max by LABELS_READ (max_over_time(GPU_UTIL[{span}]))": q._kept(f"max_over_time({util}[{span}])", *q.SERIES_LABELS),
        "parts: max_over_time(max_over_time(GPU_UTIL[60s])[…:60s])": f"max_over_time(max_over_time({util}[60s]){step})",
        "parts: … of (max_over_time(GPU_UTIL[60s]) >= t)": f"max_over_time((max_over_time({util}[60s]) >= {threshold:g}){step})",
        "parts: … of timestamp(max_over_time(GPU_UTIL[60s]) >= t)":
            f"max_over_time(timestamp(max_over_time({util}[60s]) >= {threshold:g}){step})",
        "instant: utilisation, trimmed (shipped)": q.instant(Quantity.UTIL),
        "instant: utilisation, raw selector": q.series(Quantity.UTIL),
        "instant: used memory, trimmed (shipped)": q.instant(Quantity.FB_USED),
        "instant: used memory, raw selector": q.series(Quantity.FB_USED),
        "instant: temperature, trimmed (shipped)": q.instant(Quantity.TEMP),
        "instant: temperature, raw selector": q.series(Quantity.TEMP),
        "freshness (shipped)": q.freshness(120),
        "freshness: count by key (changes > 0 or …), no label_replace": _freshness_filtered(120),
    }


def _freshness_filtered(window_s: float) -> str:
    """The GPUs whose power or temperature moved: each name's `changes` filtered (> 0) before the `or`, so a
    series that moved is kept whichever name comes first, and no label_replace (nothing needs the name)."""
    from gpuctl.sources import queries as q
    from gpuctl.sources.dcgm_fields import METRICS

    names = [m.name for quantity in q.LIVENESS for m in METRICS if m.quantity is quantity]
    moved = " or ".join(f"changes({n}[{q.duration(window_s)}]) > 0" for n in names)
    return f"count by ({', '.join(q.IDENTITY_LABELS)}) ({moved})"


def _allocated(url: str) -> float:
    """Prometheus's go_memstats_alloc_bytes_total (bytes allocated since it started), from its /metrics."""
    import requests

    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith("go_memstats_alloc_bytes_total "):
            return float(line.split()[1])
    raise RuntimeError("no go_memstats_alloc_bytes_total")


def _timed_query(url: str, promql: str, pid: int, timeout_s: float, at: float | None) -> dict[str, Any]:
    """One instant query (at `at`, or Prometheus's now) with its evaluation time, wall time, Prometheus's
    process CPU and allocation meanwhile (the /metrics read before it is counted in neither)."""
    import requests

    alloc = _allocated(url)
    cpu, t = proc_cpu_s(pid), time.perf_counter()
    data = {"query": promql, "stats": "all", "timeout": f"{timeout_s:g}"} | ({} if at is None else {"time": f"{at:.3f}"})
    resp = requests.post(f"{url}/api/v1/query", data=data, timeout=timeout_s + 5)
    wall, cpu = time.perf_counter() - t, proc_cpu_s(pid) - cpu
    alloc = _allocated(url) - alloc
    body = resp.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{body.get('error')}: {promql[:200]}")
    return {"eval_s": body["data"]["stats"]["timings"]["evalTotalTime"], "wall_s": wall, "cpu_s": cpu,
            "alloc_b": alloc, "bytes": len(resp.content), "result": body["data"]["result"]}


async def history_paths(args: argparse.Namespace, url: str, pid: int) -> None:
    """The idle history read from gpuctl's recording rules and with the subqueries, alternating; the rules'
    own expressions as queries; the rule group's evaluation times; the streaks each way gives."""
    import statistics

    import requests

    from gpuctl.sources import queries as q
    from gpuctl.sources import recorded
    from gpuctl.sources.history import idle_since, split_recorded
    from gpuctl.sources.prometheus import PrometheusSource
    from testbed.waiting import poll

    source = PrometheusSource(url, refresh_s=15.0, timeout_s=args.timeout, idle_window_s=args.window,
                              idle_threshold_pct=args.threshold)
    try:
        # Current (a benchmark's data reaches back less than the look-back: read them all the same).
        rules = await poll(source.history_rules_usable, lambda r: isinstance(r, recorded.Recorded) or "reach back" in r,
                           timeout_s=180, interval_s=5, what="the recording rules current")
        batch = await source.fetch()
    finally:
        source.close()
    plan, t = source.history, args.threshold
    interval = rules.interval_s if isinstance(rules, recorded.Recorded) else q.RULE_INTERVAL_S
    live_s = (recorded.CURRENT_INTERVALS + 1) * interval
    paths = {
        "recording rules": {"both records": q.recorded_history(t, live_s)},
        "subqueries": {"last_busy": q.last_busy(t, plan.lookback_s, plan.step_s),
                       "present_since": q.present_since(t, plan.lookback_s, plan.presence_step_s, plan.gap_s)},
    }
    per: dict[str, dict[str, list[dict[str, Any]]]] = {name: {label: [] for label in reads} for name, reads in paths.items()}
    evals: list[dict[str, Any]] = []

    def group_evaluations() -> None:
        for group in requests.get(f"{url}/api/v1/rules", timeout=30).json()["data"]["groups"]:
            evals.append({"group": group["name"], "s": group["evaluationTime"], "at": group["lastEvaluation"],
                          **{r["name"]: r["evaluationTime"] for r in group["rules"] if r["type"] == "recording"}})

    for i in range(args.variant_repeat):  # each path first in turn; one query at a time in Prometheus
        order = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in order:
            for label, promql in paths[name].items():
                per[name][label].append(await asyncio.to_thread(_timed_query, url, promql, pid, args.timeout, None))
        await asyncio.to_thread(group_evaluations)
    rows = []
    for name, reads in per.items():
        for label, got in reads.items():
            rows.append([f"{name}: {label}", *_spread(got, statistics)])
    detect = f"min({q.PRESENT_SINCE_RECORD}) or vector(-1)"  # what each start asks before choosing (with the rules API)
    got = [await asyncio.to_thread(_timed_query, url, detect, pid, args.timeout, None) for _ in range(args.variant_repeat)]
    rows.append(["recording rules: how far back they reach", *_spread(got, statistics)])
    for rule in q.recording_rules(t):  # what one evaluation of each rule reads (the write is not counted)
        got = [await asyncio.to_thread(_timed_query, url, rule["expr"], pid, args.timeout, None)
               for _ in range(args.variant_repeat)]
        rows.append([f"rule expression: {rule['record']}", *_spread(got, statistics)])
    deadline = time.monotonic() + 300  # a benchmark's wait for the rule group to run a few more times
    while len({e["at"] for e in evals if e["group"] == recorded.GROUP}) < args.variant_repeat and time.monotonic() < deadline:
        await asyncio.sleep(10)
        await asyncio.to_thread(group_evaluations)
    print(f"\n### idle history: recording rules vs subqueries ({args.variant_repeat} runs, alternating; load {machine()})\n")
    print(table(["query", "eval (min / median)", "Prometheus CPU (min / median)", "allocated (median)", "answer", "series"], rows))
    seen: dict[tuple[str, str], dict[str, Any]] = {(e["group"], e["at"]): e for e in evals}
    print("\nrule groups' evaluations (rules API evaluationTime, distinct evaluations seen):\n")
    for group in sorted({g for g, _ in seen}):
        times = sorted(e["s"] for (g, _), e in seen.items() if g == group)
        print(f"- {group}: {len(times)} evaluations, {min(times) * 1e3:.0f} / {statistics.median(times) * 1e3:.0f} / "
              f"{max(times) * 1e3:.0f} ms (min / median / max)")
    answers = {"recording rules": split_recorded(per["recording rules"]["both records"][-1]["result"]),
               "subqueries": (per["subqueries"]["last_busy"][-1]["result"], per["subqueries"]["present_since"][-1]["result"])}
    streaks = {name: idle_since(batch.samples, t, last_busy=last_busy, present_since=present_since, now=batch.at)
               for name, (last_busy, present_since) in answers.items()}
    rec, sub = streaks["recording rules"], streaks["subqueries"]
    diffs = [(rec[k] - sub[k]).total_seconds() for k in rec.keys() & sub.keys()]
    print(f"\nstreaks: {len(rec)} GPUs from the rules, {len(sub)} from the subqueries, {len(rec.keys() - sub.keys())} "
          f"only the rules', {len(sub.keys() - rec.keys())} only the subqueries'; rules' since − subqueries', s: "
          f"{min(diffs, default=0):+.0f} / {statistics.median(diffs) if diffs else 0:+.0f} / {max(diffs, default=0):+.0f}")


def _spread(got: list[dict[str, Any]], statistics: Any) -> list[str]:
    def med(k: str) -> float:
        return float(statistics.median(g[k] for g in got))

    def low(k: str) -> float:
        return float(min(g[k] for g in got))

    return [f"{low('eval_s') * 1e3:.0f} / {med('eval_s') * 1e3:.0f} ms", f"{low('cpu_s') * 1e3:.0f} / {med('cpu_s') * 1e3:.0f} ms",
            f"{med('alloc_b') / 2**20:.1f} MiB", f"{med('bytes') / 2**20:.2f} MiB", str(len(got[-1]["result"]))]


async def variants(args: argparse.Namespace, url: str, pid: int) -> None:
    """Each way to ask, `--variant-repeat` times in turn (sequentially: one query at a time in Prometheus),
    with Prometheus's evaluation time and its process CPU (utime + stime) per query."""
    import statistics

    from gpuctl.sources.history import idle_since
    from gpuctl.sources.prometheus import PrometheusSource

    source = PrometheusSource(url, refresh_s=15.0, timeout_s=args.timeout, idle_window_s=args.window,
                              idle_threshold_pct=args.threshold)
    try:
        batch = await source.fetch()
    finally:
        source.close()
    # Every variant is evaluated at the batch's instant, so their answers are about the same samples.
    samples, at = batch.samples, batch.at.timestamp()
    rows, streaks = [], {}
    runs = [(n, qs) for n, qs in _history_variants(args.threshold, args.window, 15.0, 300.0).items()]
    runs += [(n, (qq,)) for n, qq in _cost_floors(args.window, args.threshold).items()]
    for name, qs in runs:
        per_query: list[list[dict[str, Any]]] = [[] for _ in qs]
        for _ in range(args.variant_repeat):
            for i, promql in enumerate(qs):
                per_query[i].append(await asyncio.to_thread(_timed_query, url, promql, pid, args.timeout, at))
        for i, got in enumerate(per_query):
            med = lambda k: statistics.median(g[k] for g in got)  # noqa: E731
            low = lambda k: min(g[k] for g in got)  # noqa: E731
            rows.append([name + (f" [{i + 1}/{len(qs)}]" if len(qs) > 1 else ""),
                         f"{low('eval_s') * 1e3:.0f} / {med('eval_s') * 1e3:.0f} ms",
                         f"{low('cpu_s') * 1e3:.0f} / {med('cpu_s') * 1e3:.0f} ms", f"{med('bytes') / 2**20:.2f} MiB",
                         str(len(got[-1]["result"]))])
        if name.startswith(("shipped", "last_busy", "one query")):
            last = [got[-1]["result"] for got in per_query]
            busy, present = (last[0], last[1]) if len(last) == 2 else ([], last[0])
            streaks[name] = idle_since(samples, args.threshold, last_busy=busy, present_since=present, now=batch.at)
    print(f"\n### query variants ({args.variant_repeat} runs each, one at a time; load {machine()})\n")
    print(table(["query", "eval (min / median)", "Prometheus CPU (min / median)", "answer", "series"], rows))
    shipped = next(v for k, v in streaks.items() if k.startswith("shipped"))
    print(f"\nstreaks (threshold {args.threshold:g} %, GPUs under it now with history), against the shipped pair's "
          f"{len(shipped)}:\n")
    out = []
    for name, got in streaks.items():
        common = shipped.keys() & got.keys()
        diffs = [(got[k] - shipped[k]).total_seconds() for k in common]
        out.append([name, str(len(got)), str(len(shipped.keys() - got.keys())), str(len(got.keys() - shipped.keys())),
                    f"{min(diffs, default=0):+.0f} / {statistics.median(diffs) if diffs else 0:+.0f} / {max(diffs, default=0):+.0f}"])
    print(table(["variant", "GPUs", "only shipped", "only variant", "since − shipped's, s (min / median / max)"], out))


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
    parser.add_argument("--fill", type=lambda v: sorted(float(x) for x in v.split(",")), default=[120.0],
                        help="seconds of data before measuring; several (comma-separated): measure after each")
    parser.add_argument("--window", type=float, default=1800.0, help="gpuctl's idle window, seconds (its default)")
    parser.add_argument("--refreshes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="gpuctl's query timeout here, seconds")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                        help="also measure the checkout in DIR (a worktree at another commit)")
    parser.add_argument("--variants", action="store_true",
                        help="also time other ways to ask for history, and instant queries trimmed or raw (this checkout)")
    parser.add_argument("--variants-only", action="store_true", help="--variants without measuring the checkouts")
    parser.add_argument("--variant-repeat", type=int, default=3)
    parser.add_argument("--history-paths", action="store_true",
                        help="the idle history from the recording rules vs the subqueries (instead of the checkouts)")
    parser.add_argument("--threshold", type=float, default=5.0, help="idle threshold, %% (the variants' streaks)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prometheus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.variants = args.variants or args.variants_only
    if args.child:
        child(args)
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # started with `&`, SIGINT would be ignored
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
