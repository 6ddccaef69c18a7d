"""Benchmark the core (ClusterStore, join, hub) at the product's target size, in process.

    .venv/bin/python bench/bench_core.py [--scale 125] [--pods 10000] [--repeat 7] [--gc default,tuned,frozen]

The fleet is the seeded simulated fleet (seed 7) at `--scale` (125: 1,375
nodes, 8,500 physical GPUs, 12,500 GPU devices with MIG instances), topped up
with 1-device Job pods to `--pods` GPU pods (every device then held and
reported by the metrics). Records are built the production way: API-shaped
JSON pages (about 4.3 KB per pod) parsed and trimmed by the watchers' trim
functions.

Measured, per GC setting (Python's default thresholds; `tune_gc()` as the CLI
sets it; `tune_gc()` plus `gc.freeze()` after the first list):
  a  store.replace of every record; the whole list path (json.loads + trim + replace)
  b  snapshot() from scratch (a fresh store: no model to reuse)
  c  snapshot() after one pod event / after one metrics batch (reuse of unchanged
     models), the full diff, the store's changes (what the hub publishes, from the
     join's log), and apply_metrics itself
  d  hub coalescing: 1,000 pod events through a running SnapshotHub
  e  memory (in a fresh child process): tracemalloc bytes per record, RSS growth
  f  baselines, measured in the same repetition as each number they divide:
     - json.loads of the same 10,000-pod list with GC off: the least any Python
       client pays to see the pods once (a CPU-speed yardstick, immune to GC settings);
     - Snapshot.model_validate of the same snapshot (the naive pydantic way).

Output: Markdown tables (paste into BENCHMARKS.md) and the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON_DEFAULT_GC,
    SERIES_HEADERS,
    GcMeter,
    Series,
    api_node,
    api_pod,
    command_line,
    filled_fleet,
    fleet_summary,
    list_pages,
    machine,
    mib,
    ms,
    rss_bytes,
    series_rows,
    table,
    timed,
)

from gpuctl.model import Gpu, Snapshot
from gpuctl.service import tune_gc
from gpuctl.sim.catalog import POOL_LABEL
from gpuctl.sim.telemetry import FleetTelemetry
from gpuctl.sources.demo import namespace_record, quota_record
from gpuctl.sources.kube.trim import trim_node, trim_pod
from gpuctl.state.changes import diff
from gpuctl.state.frozen import maker
from gpuctl.state.hub import SnapshotHub
from gpuctl.state.records import Kind, MetricsBatch, NodeRecord, PodRecord, Record
from gpuctl.state.store import ClusterStore

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KEEP_LABELS = frozenset({POOL_LABEL})
TICK_S = 2.0


class Clock:
    """The store's clock, moved by hand: the snapshot cache never expires behind our back."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Data:
    """Everything a run needs, built once. Bulky inputs are bytes, which the GC never scans."""

    summary: str
    pod_pages: list[bytes]
    node_pages: list[bytes]
    nodes: list[NodeRecord]
    pods: list[PodRecord]
    others: dict[Kind, list[Record]]
    samples: list[tuple]  # three distinct metrics readings, cycled
    idle_since: dict[str, datetime]

    @property
    def pod_count(self) -> int:
        return len(self.pods)

    @classmethod
    def build(cls, scale: int, pods: int, seed: int) -> Data:
        fleet = filled_fleet(scale, pods, seed=seed)
        pod_pages = list_pages("Pod", [api_pod(p, START, 1000 + i) for i, p in enumerate(fleet.pods)])
        node_pages = list_pages("Node", [api_node(n, START, 10 + i) for i, n in enumerate(fleet.nodes)])
        telemetry = FleetTelemetry(fleet, seed)
        data = cls(
            summary=fleet_summary(fleet),
            pod_pages=pod_pages,
            node_pages=node_pages,
            nodes=_trimmed(node_pages, lambda o: trim_node(o, KEEP_LABELS)),
            pods=_trimmed(pod_pages, trim_pod),
            others={
                Kind.NAMESPACE: [namespace_record(ns) for ns in fleet.namespaces],
                Kind.QUOTA: [q for ns in fleet.namespaces if (q := quota_record(ns, fleet))],
            },
            samples=[tuple(telemetry.samples_at(t)) for t in (0.0, 2.0, 4.0)],
            idle_since={
                key: START + timedelta(seconds=pod.idle_since_t)
                for pod in fleet.pods
                if pod.behaviour == "idle" and pod.idle_since_t is not None
                for key in pod.gpu_keys
            },
        )
        return data

    def batch(self, i: int) -> MetricsBatch:
        return MetricsBatch(at=START + timedelta(seconds=TICK_S * i), samples=self.samples[i % len(self.samples)])

    def load(self, store: ClusterStore) -> None:
        """What KubernetesSource's first lists and PrometheusSource's start-up backfill do."""
        for kind, records in self.others.items():
            store.replace(kind, records)
        store.replace(Kind.NODE, self.nodes)
        store.replace(Kind.POD, self.pods)
        store.backfill_idle(self.idle_since)


def _trimmed(pages: list[bytes], trim) -> list:
    out = []
    for page in pages:
        for obj in json.loads(page)["items"]:
            if (record := trim(obj)) is not None:
                out.append(record)
    return out


def json_baseline(data: Data) -> float:
    """json.loads of the whole pod list, GC off: the yardstick every ratio divides by."""
    gc.disable()
    try:
        return timed(lambda: [json.loads(p) for p in data.pod_pages])
    finally:
        gc.enable()


# -- GC settings --------------------------------------------------------------------------

GC_MODES = {
    "default": "Python defaults (700, 10, 10)",
    "tuned": "tune_gc() (100000, 10, 10), what the CLI runs with",
    "frozen": "tune_gc() + gc.freeze() after the first list",
}


@contextlib.contextmanager
def gc_mode(mode: str) -> Iterator[None]:
    before = gc.get_threshold()
    gc.collect()
    if mode == "default":
        gc.set_threshold(*PYTHON_DEFAULT_GC)
    else:
        tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.collect()


# -- a, b, c, f: timings ------------------------------------------------------------------

Measure = Callable[[str, Callable[[], object], float], Series]


def from_scratch(data: Data, clock: Clock, measure: Measure, base: float) -> None:
    """b and f: a snapshot with nothing to reuse, and the naive ways to make the same models.

    A function of its own so that everything it builds is gone when it returns."""
    fresh = ClusterStore(clock=clock, refresh_s=TICK_S)
    data.load(fresh)
    fresh.apply_metrics(MetricsBatch(at=clock.now, samples=data.samples[0]))
    full: list[Snapshot] = []
    measure("b  snapshot() from scratch", lambda: full.append(fresh.snapshot()), base)
    validated = json.loads(json.dumps(full[0].model_dump(mode="json")))
    fields = [dict(g.__dict__) for g in full[0].gpus]
    fresh = full = None  # type: ignore[assignment]  # only the plain data stays for the next steps
    measure("f  naive: Snapshot.model_validate", lambda: Snapshot.model_validate(validated), base)
    validated = None
    # What one model costs to make, the join's way and the validated way (same fields).
    n = f"{len(fields):,}"
    measure(f"f  {n} Gpu rows: Gpu.model_construct(**fields)", lambda: [Gpu.model_construct(**f) for f in fields], base)
    measure(f"f  {n} Gpu rows: Gpu(**fields), validated", lambda: [Gpu(**f) for f in fields], base)
    make = maker(Gpu)
    measure(f"f  {n} Gpu rows: frozen.maker(Gpu)(fields), the join's way", lambda: [make(dict(f)) for f in fields], base)


def run_timings(data: Data, mode: str, repeat: int) -> tuple[list[Series], dict[str, float]]:
    meter = GcMeter()
    series: dict[str, Series] = {}

    def measure(name: str, fn: Callable[[], object], base: float) -> Series:
        """Time `fn` once for this repetition; rows keep the order of their first measurement."""
        row = series.setdefault(name, Series(name))
        row.add(timed(fn, meter), base, meter)
        return row

    clock = Clock()
    warm = ClusterStore(clock=clock, refresh_s=TICK_S)
    data.load(warm)
    warm.apply_metrics(data.batch(0))
    previous = warm.snapshot()
    tick = 0
    info = {"tracked objects": float(len(gc.get_objects()))}
    if mode == "frozen":
        gc.freeze()
    pods = warm.records(Kind.POD)
    pod_keys = sorted(pods)
    with meter.installed():
        for r in range(repeat):
            base = json_baseline(data)
            series.setdefault("base", Series(f"baseline: json.loads {data.pod_count:,}-pod list (GC off)")).add(base, base)

            def list_pods() -> None:
                store = ClusterStore(clock=clock)
                store.replace(Kind.POD, _trimmed(data.pod_pages, trim_pod))

            measure("a  list path: json.loads + trim + replace (pods)", list_pods, base)
            measure("a  store.replace, all kinds", lambda: data.load(ClusterStore(clock=clock)), base)

            from_scratch(data, clock, measure, base)
            measure("c  snapshot() cache hit", warm.snapshot, base)

            # One pod event: a job's pod finishes (phase flips; node and namespace totals move too).
            key = pod_keys[(r * 977) % len(pod_keys)]
            old = pods[key]
            warm.upsert(dataclasses.replace(old, phase="Succeeded" if old.phase != "Succeeded" else "Running"))
            got: list[Snapshot] = []
            row = measure("c  snapshot() after 1 pod event", lambda: got.append(warm.snapshot()), base)
            measure("c  diff after 1 pod event", lambda: diff(previous, got[0]), base)
            changed = diff(previous, got[0])
            assert changed.pods == {key}, changed.pods
            # What the hub publishes now: the join's log, answered once (it then forgets `previous`).
            logged: list[object] = []
            measure("c  store.changes after 1 pod event", lambda: logged.append(warm.changes(previous, got[0])), base)
            assert logged[0] == changed, (logged[0], changed)
            row.note = rebuilt(previous, got[0])
            previous = got[0]

            # One metrics batch: every device's readings move (the worst case, and the usual one).
            tick += 1
            clock.now = START + timedelta(seconds=TICK_S * tick)
            batch = data.batch(tick)
            measure("c  apply_metrics (1 batch)", lambda: warm.apply_metrics(batch), base)
            got.clear()
            row = measure("c  snapshot() after 1 metrics batch", lambda: got.append(warm.snapshot()), base)
            measure("c  diff after 1 metrics batch", lambda: diff(previous, got[0]), base)
            changed = diff(previous, got[0])
            logged.clear()
            measure("c  store.changes after 1 metrics batch", lambda: logged.append(warm.changes(previous, got[0])), base)
            assert logged[0] == changed
            row.note = rebuilt(previous, got[0])
            previous = got[0]
    info["gpus"] = float(len(previous.gpus))
    info["pods"] = float(len(previous.pods))
    ordered = [series.pop("base"), *series.values()]
    return ordered, info


def rebuilt(old: Snapshot, new: Snapshot) -> str:
    """How many rows the join built anew rather than reusing (identity) from the previous snapshot."""
    def count(before: tuple, after: tuple) -> str:
        kept = {id(x) for x in before}
        return f"{sum(id(x) not in kept for x in after):,}/{len(after):,}"

    return f"rebuilt GPUs {count(old.gpus, new.gpus)}, pods {count(old.pods, new.pods)}, nodes {count(old.nodes, new.nodes)}"


# -- d: hub coalescing --------------------------------------------------------------------

@dataclass
class HubRun:
    pattern: str
    wall_s: float  # first event -> a delivered update shows the last one
    tail_s: float  # last event -> a delivered update shows it
    published: int
    delivered: int
    merged: int
    publish_total_s: float
    publish_max_s: float
    covered: bool  # the union of delivered Changes names every changed pod


async def hub_run(data: Data, pattern: str, events: int, offset: int, interval: float) -> HubRun:
    clock = Clock()
    store = ClusterStore(clock=clock, refresh_s=TICK_S)
    data.load(store)
    store.apply_metrics(data.batch(0))
    hub = SnapshotHub(store, min_interval=interval)
    durations: list[float] = []
    publish = hub.publish

    def timed_publish():
        start = time.perf_counter()
        try:
            return publish()
        finally:
            durations.append(time.perf_counter() - start)

    hub.publish = timed_publish  # type: ignore[method-assign]
    pods = store.records(Kind.POD)
    keys = sorted(pods)[offset : offset + events]
    last_key = keys[-1]
    runner = asyncio.create_task(hub.run())
    sub = hub.subscribe()
    await anext(sub)  # the initial state
    # The hub is idle again: the first event gets the leading edge (it waits 2x a slow publish).
    await asyncio.sleep(max(interval, 2 * hub.last_publish_s) * 1.2)
    durations.clear()
    published_before = hub.published
    seen: set[str] = set()
    done = asyncio.Event()
    start = 0.0
    finished_at = 0.0

    async def consume() -> None:
        nonlocal finished_at
        async for update in sub:
            seen.update(update.changes.pods)
            last = next((p for p in update.snapshot.pods if p.key == last_key), None)
            if last is not None and last.phase == "Succeeded":
                finished_at = time.perf_counter()
                done.set()
                return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    start = time.perf_counter()
    last_sent = start
    for key in keys:
        store.upsert(dataclasses.replace(pods[key], phase="Succeeded"))
        last_sent = time.perf_counter()
        if pattern == "burst":
            await asyncio.sleep(0)  # as fast as a watch stream can hand them over
        else:
            await asyncio.sleep(2.0 / events)  # ~500 events/s for 2 s
    await asyncio.wait_for(done.wait(), 30)
    result = HubRun(
        pattern=pattern,
        wall_s=finished_at - start,
        tail_s=finished_at - last_sent,
        published=hub.published - published_before,
        delivered=sub.delivered - 1,
        merged=sub.merged,
        publish_total_s=sum(durations),
        publish_max_s=max(durations),
        covered=set(keys) <= seen,
    )
    hub.close()
    await asyncio.gather(runner, consumer, return_exceptions=True)
    return result


def run_hub(data: Data, repeat: int, events: int) -> list[list[str]]:
    rows = []
    tune_gc()
    for pattern in ("burst", "paced"):
        runs = [
            asyncio.run(hub_run(data, pattern, events, offset=(i * events) % data.pod_count, interval=0.25))
            for i in range(repeat)
        ]
        med = lambda f: statistics.median(f(r) for r in runs)  # noqa: E731
        rows.append([
            f"{events:,} pod events, {'back to back' if pattern == 'burst' else 'paced over 2 s'}",
            f"{med(lambda r: r.published):.0f} ({min(r.published for r in runs)}–{max(r.published for r in runs)})",
            ms(med(lambda r: r.wall_s)) + f" ({ms(min(r.wall_s for r in runs))}–{ms(max(r.wall_s for r in runs))})",
            ms(med(lambda r: r.tail_s)) + f" ({ms(min(r.tail_s for r in runs))}–{ms(max(r.tail_s for r in runs))})",
            ms(med(lambda r: r.publish_total_s)),
            ms(med(lambda r: r.publish_max_s)),
            f"{med(lambda r: r.delivered):.0f} / {med(lambda r: r.merged):.0f}",
            "yes" if all(r.covered for r in runs) else "NO",
        ])
    gc.set_threshold(*PYTHON_DEFAULT_GC)
    return rows


HUB_HEADERS = [
    "pattern (hub min_interval 0.25 s)",
    "Updates published",
    "first event → last one delivered",
    "last event → delivered",
    "publish CPU total",
    "longest publish (loop blocked)",
    "delivered / merged",
    "Changes name all 1,000",
]


# -- e: memory (child process) ------------------------------------------------------------

def memory_child(path: Path) -> dict[str, float]:
    """Run in a fresh interpreter: RSS growth of the whole state, then tracemalloc per record.

    The inputs come pickled from the parent (list pages as bytes, metrics samples), so
    nothing was allocated and freed here before the baseline RSS is read: freed arenas
    would otherwise be reused and hide the growth.
    """
    tune_gc()
    data: Data = pickle.loads(path.read_bytes())
    gc.collect()
    out: dict[str, float] = {}
    rss0 = rss_bytes()
    clock = Clock()
    store = ClusterStore(clock=clock, refresh_s=TICK_S)
    for kind, records in data.others.items():
        store.replace(kind, records)
    store.replace(Kind.NODE, _trimmed(data.node_pages, lambda o: trim_node(o, KEEP_LABELS)))
    store.replace(Kind.POD, _trimmed(data.pod_pages, trim_pod))
    store.backfill_idle(data.idle_since)
    gc.collect()
    out["rss_records"] = rss_bytes() - rss0
    out["pods"] = pods = len(store.records(Kind.POD))
    hub = SnapshotHub(store)
    store.apply_metrics(data.batch(0))
    hub.publish()
    gc.collect()
    out["rss_first_snapshot"] = rss_bytes() - rss0
    records = list(store.records(Kind.POD).values())
    for i in range(1, 61):  # two minutes of 2 s metrics ticks, with a pod event each
        clock.now = START + timedelta(seconds=TICK_S * i)
        store.apply_metrics(data.batch(i))
        store.upsert(dataclasses.replace(records[(i * 311) % pods], phase="Succeeded"))  # type: ignore[type-var]
        hub.publish()
        if i in (20, 60):
            out[f"rss_ticks_{i}"] = rss_bytes() - rss0
    del records
    snap = store.snapshot()
    out["gpus"], out["nodes"] = len(snap.gpus), len(snap.nodes)
    hub.close()
    del hub, store, snap
    gc.collect()

    def traced(build) -> tuple[float, object]:
        gc.collect()
        tracemalloc.start()
        kept = build()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return size, kept

    def pods_store() -> ClusterStore:
        s = ClusterStore(clock=clock)
        s.replace(Kind.POD, _trimmed(data.pod_pages, trim_pod))
        return s

    def nodes_store() -> ClusterStore:
        s = ClusterStore(clock=clock)
        s.replace(Kind.NODE, _trimmed(data.node_pages, lambda o: trim_node(o, KEEP_LABELS)))
        return s

    size, _ = traced(pods_store)
    out["pod_record_bytes"] = size / pods
    size, nodes_kept = traced(nodes_store)
    out["node_record_bytes"] = size / out["nodes"]
    del nodes_kept
    size, _ = traced(lambda: [o for p in data.pod_pages for o in json.loads(p)["items"]])
    out["pod_json_bytes"] = size / pods
    out["pod_json_wire"] = sum(len(p) for p in data.pod_pages) / pods
    # The snapshot and the join's memo, on top of a loaded store.
    store = ClusterStore(clock=clock, refresh_s=TICK_S)
    store.replace(Kind.NODE, _trimmed(data.node_pages, lambda o: trim_node(o, KEEP_LABELS)))
    store.replace(Kind.POD, _trimmed(data.pod_pages, trim_pod))
    for kind, records in data.others.items():
        store.replace(kind, records)
    batch = data.batch(0)
    store.apply_metrics(batch)
    size, snap = traced(store.snapshot)
    out["snapshot_bytes"] = size
    # Where a model's bytes go: pydantic gives each instance its own fields-set unless one is passed.
    fields = [dict(g.__dict__) for g in snap.gpus]  # type: ignore[attr-defined]
    shared = set(Gpu.model_fields)
    size, _ = traced(lambda: [Gpu.model_construct(**f) for f in fields])
    out["gpu_model_bytes"] = size / len(fields)
    size, _ = traced(lambda: [Gpu.model_construct(_fields_set=shared, **f) for f in fields])
    out["gpu_model_shared_bytes"] = size / len(fields)
    make = maker(Gpu)
    size, _ = traced(lambda: [make(dict(f)) for f in fields])
    out["gpu_model_maker_bytes"] = size / len(fields)
    # A batch as a metrics source makes it: every sample with strings of its own (unpickling does the same).
    pickled = pickle.dumps(batch)
    size, _ = traced(lambda: pickle.loads(pickled))
    out["batch_bytes"] = size
    return out


def run_memory(data: Data) -> dict[str, float]:
    inputs = dataclasses.replace(data, nodes=[], pods=[])  # the child trims its own, from the pages
    with tempfile.NamedTemporaryFile(suffix=".pickle") as f:
        f.write(pickle.dumps(inputs))
        f.flush()
        done = subprocess.run([sys.executable, __file__, "--memory-child", f.name], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"memory child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_rows(m: dict[str, float]) -> list[list[str]]:
    pods, gpus = m["pods"], m["gpus"]
    return [
        ["PodRecord held by the store (record, its dicts and strings, store key)", f"{m['pod_record_bytes']:.0f} B",
         f"{mib(m['pod_record_bytes'] * pods)} for {pods:,.0f}"],
        ["NodeRecord held by the store", f"{m['node_record_bytes']:.0f} B",
         f"{mib(m['node_record_bytes'] * m['nodes'])} for {m['nodes']:,.0f}"],
        ["baseline: the pod's parsed JSON dict (an untrimmed cache)", f"{m['pod_json_bytes']:.0f} B",
         f"{mib(m['pod_json_bytes'] * pods)}; PodRecord is {m['pod_record_bytes'] / m['pod_json_bytes']:.1%} of it"],
        ["pod JSON on the wire", f"{m['pod_json_wire']:.0f} B", f"{mib(m['pod_json_wire'] * pods)}"],
        ["Snapshot models + join memo, per (GPU + pod) row", f"{m['snapshot_bytes'] / (gpus + pods):.0f} B",
         f"{mib(m['snapshot_bytes'])} for {gpus:,.0f} GPUs + {pods:,.0f} pods"],
        ["one Gpu model via model_construct (how the join made it before)", f"{m['gpu_model_bytes']:.0f} B", ""],
        ["one Gpu model with a shared fields-set (model_construct(_fields_set=...))",
         f"{m['gpu_model_shared_bytes']:.0f} B", f"{1 - m['gpu_model_shared_bytes'] / m['gpu_model_bytes']:.0%} less"],
        ["one Gpu model as the join makes it now (frozen.maker: shared fields-set)",
         f"{m['gpu_model_maker_bytes']:.0f} B", f"{1 - m['gpu_model_maker_bytes'] / m['gpu_model_bytes']:.0%} less"],
        ["one MetricsBatch (GpuSamples)", f"{m['batch_bytes'] / gpus:.0f} B per device", mib(m["batch_bytes"])],
        ["RSS growth: records listed (from JSON pages, page by page)", "", mib(m["rss_records"])],
        ["RSS growth: + metrics + first snapshot published", "", mib(m["rss_first_snapshot"])],
        ["RSS growth: + 20 ticks (metrics batch + pod event + publish each)", "", mib(m["rss_ticks_20"])],
        ["RSS growth: + 60 ticks", "", mib(m["rss_ticks_60"])],
    ]


# -- main ---------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=125, help="simulated fleet multiplier (125 -> 8,500 GPUs)")
    parser.add_argument("--pods", type=int, default=10_000, help="top the fleet up to this many GPU pods")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=7, help="repetitions per measurement")
    parser.add_argument("--gc", default="default,tuned,frozen", help=f"GC settings to compare: {', '.join(GC_MODES)}")
    parser.add_argument("--events", type=int, default=1000, help="pod events in the hub coalescing run")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return

    print(f"command: {command_line()}")
    print(f"machine: {machine()}; date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    t0 = time.perf_counter()
    data = Data.build(args.scale, args.pods, args.seed)
    print(f"fleet:   {data.summary}")
    print(f"input:   {sum(map(len, data.pod_pages)) / 2**20:.1f} MiB of pod list JSON in {len(data.pod_pages)} pages; "
          f"built in {time.perf_counter() - t0:.1f} s\n")

    for mode in args.gc.split(","):
        with gc_mode(mode):
            series, info = run_timings(data, mode, args.repeat)
        print(f"### a-c, f: GC {GC_MODES[mode]} — {args.repeat} repetitions, "
              f"{info['gpus']:,.0f} GPUs / {info['pods']:,.0f} pods in the snapshot, "
              f"{info['tracked objects']:,.0f} GC-tracked objects\n")
        print(table(SERIES_HEADERS, series_rows(series)))
        print()

    hub_repeat = max(3, args.repeat // 2)
    print(f"### d: hub coalescing, GC tuned — {hub_repeat} runs each, medians (spread)\n")
    print(table(HUB_HEADERS, run_hub(data, hub_repeat, args.events)))
    print()

    if not args.skip_memory:
        m = run_memory(data)
        print("### e: memory (fresh child process, GC tuned)\n")
        print(table(["what", "per item", "total"], memory_rows(m)))
        print()
    print(f"total run time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
