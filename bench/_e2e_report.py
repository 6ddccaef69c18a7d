"""The tables bench_e2e.py prints: time to the full picture (per checkout, against the floor and the peer),
then one long `gpuctl top` run per checkout side by side (memory, Prometheus queries, publishes, frames, stalls).

Markdown, to paste into BENCHMARKS.md. A checkout is "this" (the one bench_e2e.py runs from) or a
`--compare` one, named by its commit.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _common import mib, ms, table
from _procs import Finished, LoggedQuery, TraceFile


@dataclass
class SnapshotRun:
    done: Finished
    complete: bool
    phases: list[float]  # spawn -> open_cluster -> ready -> JSON written -> exit
    queries: list[LoggedQuery]
    # open_cluster -> every kind listed, -> the first metrics refresh in (None from a gpuctl that does not trace them)
    inputs: tuple[float, float] | None = None


@dataclass
class TopRun:
    full_picture_s: float  # spawn -> the first frame with everything
    opened_s: float  # spawn -> open_cluster (interpreter, imports, Textual up)
    trace: TraceFile
    spawned: float  # monotonic
    spawned_wall: float
    full_at: float  # monotonic
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since spawn, bytes)
    hwm: int = 0
    churn_from: float | None = None  # seconds since spawn
    ended_wall: float = 0.0
    api_requests: dict[str, int] = field(default_factory=dict)
    queries: list[LoggedQuery] = field(default_factory=list)


@dataclass
class Repetition:
    floor: Finished
    kubectl: Finished | None = None
    snapshot: dict[str, SnapshotRun] = field(default_factory=dict)  # by checkout label
    top: dict[str, TopRun] = field(default_factory=dict)


def med(values: Sequence[float]) -> str:
    return f"{ms(statistics.median(values))} ({ms(min(values))}–{ms(max(values))})"


def ratio(values: Sequence[float], floors: Sequence[float]) -> str:
    return f"{statistics.median(a / b for a, b in zip(values, floors)):.2f}×"


def report_start(reps: list[Repetition], labels: list[str], kubectl_note: str) -> None:
    floors = [r.floor.seconds for r in reps]
    rows = [["floor: LIST nodes, pods, quotas + the refresh's instant queries, concurrent (own process)",
             med(floors), "1.00×", mib(max(r.floor.peak_rss for r in reps)), ""]]
    if reps[0].kubectl is not None:
        k = [r.kubectl.seconds for r in reps if r.kubectl is not None]
        rows.append(["peer: `kubectl get pods -A`", med(k), ratio(k, floors),
                     mib(max(r.kubectl.peak_rss for r in reps if r.kubectl is not None)), "pods only, no metrics"])
    for label in labels:
        s = [r.snapshot[label].done.seconds for r in reps]
        complete = all(r.snapshot[label].complete for r in reps)
        rows.append([f"{label}: `gpuctl snapshot --json`, spawn → exit", med(s), ratio(s, floors),
                     mib(max(r.snapshot[label].done.peak_rss for r in reps)),
                     "JSON complete" if complete else "JSON INCOMPLETE"])
        t = [r.top[label].full_picture_s for r in reps]
        rows.append([f"{label}: `gpuctl top`, spawn → first frame with everything", med(t), ratio(t, floors), "(below)", ""])
    print(f"### time to the full picture — {len(reps)} repetitions, median (min–max), ÷ the same repetition's floor\n")
    print(table(["measurement", "time", "÷ floor", "peak RSS", "note"], rows))
    if kubectl_note:
        print(f"\n{kubectl_note}")
    print("\nwhere the time goes (medians):\n")
    rows = []
    for label in labels:
        phases = list(zip(*(r.snapshot[label].phases for r in reps)))
        tops = [r.top[label] for r in reps]
        inputs = [r.snapshot[label].inputs for r in reps]
        known = [i for i in inputs if i is not None]
        rows.append([label, *(ms(statistics.median(p)) for p in phases),
                     " / ".join(ms(statistics.median(x)) for x in zip(*known)) if known else "—",
                     ms(statistics.median(t.opened_s for t in tops)),
                     ms(statistics.median(t.full_picture_s - t.opened_s for t in tops))])
    print(table(["checkout", "snapshot: spawn → open_cluster (interpreter, imports)", "→ ready (lists, first metrics, join)",
                 "→ JSON written", "→ exit", "snapshot: open_cluster → listed / metrics in",
                 "top: spawn → open_cluster (imports, Textual up)", "→ full picture"], rows))
    print()


def queries_summary(queries: list[LoggedQuery]) -> str:
    if not queries:
        return "0"
    hist = [q for q in queries if q.history]
    longest = max(queries, key=lambda q: q.exec_s)
    return (f"{len(queries)} ({len(hist)} history); longest {ms(longest.exec_s)}"
            f"{' (history)' if longest.history else ''}; total {ms(sum(q.exec_s for q in queries))}")


def stall(stalls: list[dict[str, Any]], by: str) -> str:
    """The longest stall by wall time (`ms`) or by the loop thread's CPU time in it (`cpu_ms`)."""
    if not stalls:
        return "none over 20 ms"
    worst = max(stalls, key=lambda s: s[by])
    return f"{ms(worst['ms'] / 1000)} ({ms(worst['cpu_ms'] / 1000)} CPU)"


def dist(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} median, {ms(max(values))} max ({len(values)})" if values else "—"


Row = tuple[str, Callable[[TopRun, SnapshotRun], str]]


def long_rows(devices: int, churn_s: float) -> list[Row]:
    """What the long run table shows, per checkout: (name, value of one run)."""

    def after_full(run: TopRun, name: str) -> list[dict[str, Any]]:
        return [e for e in run.trace.of(name) if e["t"] > run.full_at]

    def refresh(run: TopRun, name: str) -> list[dict[str, Any]]:
        return [e for e in after_full(run, name) if e["gpus_changed"] >= 0.5 * devices]

    def settle_end(run: TopRun) -> float:
        return run.spawned + (run.churn_from if run.churn_from is not None else 1e9)

    def steady(run: TopRun) -> list[dict[str, Any]]:
        return [s for s in run.trace.of("stall") if run.full_at + 1 < s["t"] < settle_end(run)]

    def rss_settled(run: TopRun) -> str:
        settle = [r for t, r in run.rss if run.churn_from is None or t < run.churn_from]
        tail = settle[len(settle) * 2 // 3:] or settle
        return mib(statistics.median(tail)) if tail else "—"

    def rss_churn(run: TopRun) -> str:
        churned = [r for t, r in run.rss if run.churn_from is not None and t >= run.churn_from]
        return f"{mib(churned[0])} → {mib(churned[-1])}" if churned else "—"

    def rss_growth(run: TopRun) -> str:
        """Least-squares slope of RSS over the churn after its first minute (warm-up: the first rounds' peaks)."""
        points = [(t, r) for t, r in run.rss if run.churn_from is not None and t >= run.churn_from + 60]
        if len(points) < 3:
            return "— (churn under ~1 min)"
        slope, _ = statistics.linear_regression([t for t, _ in points], [r for _, r in points])
        span_min = (points[-1][0] - points[0][0]) / 60
        return f"{slope * 60 / 2**20:+.2f} MiB/min over {span_min:.1f} min"

    def rss_by_span(run: TopRun) -> str:
        """Median RSS of each tenth of the churn: growth shows as a rising series, a one-off peak does not."""
        churned = [(t - run.churn_from, r) for t, r in run.rss if run.churn_from is not None and t >= run.churn_from]
        if not churned:
            return "—"
        span = max(60.0, churn_s / 10)
        spans: dict[int, list[int]] = {}
        for t, r in churned:
            spans.setdefault(int(t // span), []).append(r)
        return ", ".join(mib(statistics.median(rs)) for _, rs in sorted(spans.items()))

    def start_queries(run: TopRun) -> list[LoggedQuery]:
        return [q for q in run.queries if q.wall <= run.spawned_wall + run.full_picture_s + 2]

    def steady_queries(run: TopRun) -> str:
        full_wall = run.spawned_wall + run.full_picture_s + 2
        end_wall = run.spawned_wall + (settle_end(run) - run.spawned)
        qs = [q for q in run.queries if full_wall < q.wall <= end_wall]
        refreshes = {p["metrics_at"] for p in run.trace.of("publish")
                     if p["metrics_at"] and run.full_at < p["t"] < settle_end(run)}
        return f"{len(qs) / max(1, len(refreshes)):.1f} per refresh ({len(refreshes)}); " + queries_summary(qs)

    rows: list[Row] = [
        ("full picture (this run)", lambda run, _: ms(run.full_picture_s)),
        ("RSS settled (median of the last third of the settle)", lambda run, _: rss_settled(run)),
        ("RSS peak (VmHWM)", lambda run, _: mib(run.hwm)),
    ]
    if churn_s:
        rows.append((f"RSS across {churn_s:g} s of churn (start → end)", lambda run, _: rss_churn(run)))
        rows.append(("RSS growth under churn (slope after its first minute)", lambda run, _: rss_growth(run)))
        rows.append(("RSS median per tenth of the churn", lambda run, _: rss_by_span(run)))
    rows += [
        ("Prometheus queries, start (spawn → full picture + 2 s)", lambda run, _: queries_summary(start_queries(run))),
        ("Prometheus queries, steady", lambda run, _: steady_queries(run)),
        ("Prometheus API requests, whole run (by handler)",
         lambda run, _: ", ".join(f"{k.removeprefix('/api/v1/')} {v}" for k, v in sorted(run.api_requests.items()))),
        ("Prometheus queries per `gpuctl snapshot` (last one)", lambda _, snap: queries_summary(snap.queries)),
        ("publish after a metrics refresh (join + changes)",
         lambda run, _: dist([p["ms"] / 1000 for p in refresh(run, "publish")])),
        ("frame after a metrics refresh (update off the feed → rendered)",
         lambda run, _: dist([f["ms"] / 1000 for f in refresh(run, "frame")])),
        ("  of which indexing (FleetIndex; in a worker thread where it has `index_ms`)",
         lambda run, _: dist([f.get("index_ms", 0.0) / 1000 for f in refresh(run, "frame")])),
        ("  of which apply_update (on the loop, before Textual renders)",
         lambda run, _: dist([f["apply_ms"] / 1000 for f in refresh(run, "frame")])),
        ("longest event-loop stall after the full picture (loop thread's CPU in it)", lambda run, _: stall(steady(run), "ms")),
        ("  the stall with the most loop-thread CPU", lambda run, _: stall(steady(run), "cpu_ms")),
        ("  stalls over 100 ms (of which over 100 ms of CPU)",
         lambda run, _: f"{sum(s['ms'] > 100 for s in steady(run))} ({sum(s['cpu_ms'] > 100 for s in steady(run))})"),
        ("longest event-loop stall during start-up (loop thread's CPU in it)",
         lambda run, _: stall([s for s in run.trace.of("stall") if s["t"] <= run.full_at + 1], "ms")),
    ]
    return rows


def report_long(runs: dict[str, TopRun], snapshots: dict[str, SnapshotRun], *, devices: int, settle_s: float,
                churn_s: float, size: tuple[int, int]) -> None:
    labels = list(runs)
    print(f"### gpuctl top, one long run per checkout: the full picture, then {settle_s:g} s"
          f"{f' and {churn_s:g} s of pod churn' if churn_s else ''}; terminal {size[0]}x{size[1]}\n")
    rows = [[name, *(value(runs[label], snapshots[label]) for label in labels)] for name, value in long_rows(devices, churn_s)]
    print(table(["measurement", *labels], rows))
    print()
    for label in labels:
        kinds: dict[str, list[float]] = {}
        for q in runs[label].queries:
            kinds.setdefault(q.query if len(q.query) < 90 else q.query[:87] + "...", []).append(q.exec_s)
        if not kinds:
            continue
        rows = [[f"`{k}`", str(len(v)), ms(statistics.median(v)), ms(max(v))]
                for k, v in sorted(kinds.items(), key=lambda kv: -max(kv[1]))]
        print(f"#### {label}: every query its long run sent (Prometheus query log, execTotalTime)\n")
        print(table(["query", "count", "median", "max"], rows))
        print()
