"""Benchmark KubernetesSource against the real test bed: first list, memory, event latency.

    .venv/bin/python bench/bench_watch.py [--scale 125] [--pods 10000] [--repeat 3] [--burst 300] [--budget 290]

Starts its own control plane on loopback (etcd, kube-apiserver, controllers,
scheduler, kwok; testbed.controlplane), loads the simulated fleet topped up to
`--pods` GPU pods (bench/_common.filled_fleet) and waits for kwok to run them.
Then, `--repeat` times, interleaved so that both halves of each ratio see the
same machine load:

  baseline  a raw paginated LIST (500 per page, aiohttp via testbed.kube.RestClient)
            of the same four kinds, in parallel, JSON parsed
  gpuctl    KubernetesSource in `open_cluster` (store + hub as `gpuctl top` runs
            them, tune_gc() applied): start -> every kind listed in the store, and
            -> the first Update delivered with every pod in it
  burst     `--burst` pods created at once (32 requests in flight), then deleted
            (grace 0): per pod, create/delete acknowledged -> seen by a raw watch
            (baseline, source stopped) / in the store / in a delivered Update

and once, in a fresh child process: RSS after imports, after the first list and
after the first snapshot.

Loopback only; it stops by itself: the control plane is torn down when the run
ends, fails or passes `--budget` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from _common import command_line, filled_fleet, fleet_summary, machine, mib, ms, rss_bytes, table

from gpuctl.config import Settings
from gpuctl.service import open_cluster, tune_gc
from gpuctl.sources.kubernetes import KubernetesSource
from gpuctl.state.records import Kind, PodRecord
from gpuctl.state.store import ClusterStore

if TYPE_CHECKING:
    from testbed.controlplane import ControlPlane
    from testbed.kube import RestClient

# The test bed's modules (certificates, process control) are imported where they are
# used, so the RSS child process loads only what a gpuctl process loads.

BURST_NS = "bench-burst"
ALL_KINDS = frozenset(Kind)
LIST_KINDS = ("Node", "Pod", "ResourceQuota", "Namespace")


# -- baseline: raw paginated list -----------------------------------------------------------

async def raw_list(client: RestClient) -> int:
    async def one(kind: str) -> int:
        count, token = 0, None
        while True:
            params = {"limit": "500", **({"continue": token} if token else {})}
            response = await client.list(kind, **params)
            if response.status != 200:
                raise RuntimeError(f"list {kind}: {response.status} {response.body.get('message')}")
            count += len(response.body.get("items") or ())
            token = (response.body.get("metadata") or {}).get("continue")
            if not token:
                return count

    return sum(await asyncio.gather(*(one(kind) for kind in LIST_KINDS)))


# -- gpuctl: the source in open_cluster ---------------------------------------------------

@dataclass
class Probe:
    """Timestamps of burst pods reaching the store (wrapping its mutators) and delivered Updates."""

    store_added: dict[str, float] = field(default_factory=dict)
    store_gone: dict[str, float] = field(default_factory=dict)
    snap_added: dict[str, float] = field(default_factory=dict)
    snap_gone: dict[str, float] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    updates: int = 0

    def attach(self, store: ClusterStore) -> None:
        upsert, delete = store.upsert, store.delete

        def probed_upsert(record: Any) -> None:
            upsert(record)
            if isinstance(record, PodRecord) and record.namespace == BURST_NS:
                self.store_added.setdefault(record.key, time.perf_counter())
                if record.phase == "Running":
                    self.running.add(record.key)

        def probed_delete(kind: Kind, key: str) -> None:
            delete(kind, key)
            if kind is Kind.POD and key.startswith(BURST_NS + "/"):
                self.store_gone.setdefault(key, time.perf_counter())

        store.upsert = probed_upsert  # type: ignore[method-assign]
        store.delete = probed_delete  # type: ignore[method-assign]

    def saw_update(self, pods: set[str]) -> None:
        now = time.perf_counter()
        self.updates += 1
        for key in pods:
            self.snap_added.setdefault(key, now)
        for key in self.snap_added.keys() - pods:
            self.snap_gone.setdefault(key, now)


@dataclass
class GpuctlList:
    listed_s: float
    first_full_update_s: float


async def until(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.005) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(step)


# -- bursts ---------------------------------------------------------------------------------

def burst_pods(rep: int, n: int, nodes: list[tuple[str, list[dict[str, str]]]]) -> list[dict[str, Any]]:
    pods = []
    for i in range(n):
        node, tolerations = nodes[i % len(nodes)]
        pods.append({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"burst-{rep}-{i:04d}", "namespace": BURST_NS, "labels": {"app": "bench-burst"}},
            "spec": {
                "nodeName": node,
                "tolerations": tolerations,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "worker", "image": "registry.invalid/bench:1",
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            },
        })
    return pods


async def acked(calls: list[Callable[[], Any]]) -> tuple[float, dict[int, float]]:
    """Run the requests together (RestClient keeps 32 in flight); when each was acknowledged."""
    acks: dict[int, float] = {}

    async def one(i: int, call: Callable[[], Any]) -> None:
        response = await call()
        if response.status not in (200, 201, 202):
            raise RuntimeError(f"burst request failed: {response.status} {response.body.get('message')}")
        acks[i] = time.perf_counter()

    start = time.perf_counter()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(calls)))
    return start, acks


@dataclass
class BurstResult:
    """Per phase (create, delete): latencies from acknowledgement, and the span from the first request."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # "create/raw" -> seconds per pod
    spans: dict[str, float] = field(default_factory=dict)  # "create/raw" -> first request -> last pod seen
    updates: dict[str, int] = field(default_factory=dict)  # "create" -> Updates delivered until the last pod showed


def _record(result: BurstResult, label: str, start: float, acks: dict[int, float], keys: list[str], seen: dict[str, float]) -> None:
    result.latencies[label] = [seen[k] - acks[i] for i, k in enumerate(keys)]
    result.spans[label] = max(seen[k] for k in keys) - start


async def gpuctl_burst(admin: RestClient, probe: Probe, rep: int, n: int, nodes: list, timeout: float) -> BurstResult:
    pods = burst_pods(rep, n, nodes)
    keys = [f"{BURST_NS}/{p['metadata']['name']}" for p in pods]
    result = BurstResult()
    before = probe.updates
    start, acks = await acked([lambda p=p: admin.create(p) for p in pods])
    await until(lambda: all(k in probe.snap_added for k in keys), timeout, "burst pods in an Update")
    result.updates["create"] = probe.updates - before
    _record(result, "create/store", start, acks, keys, probe.store_added)
    _record(result, "create/update", start, acks, keys, probe.snap_added)
    await until(lambda: all(k in probe.running for k in keys), timeout, "burst pods Running")
    await asyncio.sleep(0.5)
    before = probe.updates
    start, acks = await acked([lambda p=p: admin.delete("Pod", p["metadata"]["name"], BURST_NS, grace_s=0) for p in pods])
    await until(lambda: all(k in probe.snap_gone for k in keys), timeout, "burst pods gone from an Update")
    result.updates["delete"] = probe.updates - before
    _record(result, "delete/store", start, acks, keys, probe.store_gone)
    _record(result, "delete/update", start, acks, keys, probe.snap_gone)
    return result


async def raw_burst(plane: ControlPlane, admin: RestClient, rep: int, n: int, nodes: list, timeout: float) -> BurstResult:
    """The same burst seen by a bare aiohttp watch on the namespace (no gpuctl running)."""
    pods = burst_pods(rep, n, nodes)
    names = [p["metadata"]["name"] for p in pods]
    keys = [f"{BURST_NS}/{name}" for name in names]
    added: dict[str, float] = {}
    gone: dict[str, float] = {}
    running: set[str] = set()
    rv = (await admin.list("Pod", BURST_NS, limit="1")).body["metadata"]["resourceVersion"]
    url = f"{plane.server}/api/v1/namespaces/{BURST_NS}/pods"
    params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": str(int(timeout * 3))}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout * 3)) as session:
        async with session.get(url, params=params, ssl=plane.admin_ssl()) as response:
            response.raise_for_status()

            async def read() -> None:
                while line := await response.content.readline():
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    key = f"{BURST_NS}/{(obj.get('metadata') or {}).get('name')}"
                    now = time.perf_counter()
                    if event["type"] == "DELETED":
                        gone.setdefault(key, now)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        added.setdefault(key, now)
                        if (obj.get("status") or {}).get("phase") == "Running":
                            running.add(key)

            reader = asyncio.create_task(read())
            try:
                result = BurstResult()
                start, acks = await acked([lambda p=p: admin.create(p) for p in pods])
                await until(lambda: all(k in added for k in keys), timeout, "raw watch ADDED")
                _record(result, "create/raw watch", start, acks, keys, added)
                await until(lambda: all(k in running for k in keys), timeout, "raw watch Running")
                await asyncio.sleep(0.5)
                start, acks = await acked([lambda name=name: admin.delete("Pod", name, BURST_NS, grace_s=0) for name in names])
                await until(lambda: all(k in gone for k in keys), timeout, "raw watch DELETED")
                _record(result, "delete/raw watch", start, acks, keys, gone)
                return result
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)


# -- one repetition -------------------------------------------------------------------------

async def repetition(
    plane: ControlPlane, admin: RestClient, rep: int, args: argparse.Namespace, expect_pods: int, nodes: list
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    start = time.perf_counter()
    out["objects"] = await raw_list(admin)
    out["raw_list_s"] = time.perf_counter() - start

    probe = Probe()
    source = KubernetesSource(kubeconfig=plane.kubeconfig())
    settings = Settings(kubeconfig=plane.kubeconfig())
    listed: list[float] = []
    start = time.perf_counter()
    async with open_cluster(settings, sources=[source]) as cluster:
        store = cluster.store
        probe.attach(store)

        def on_change() -> None:
            # Stamped inside the mutation: the hub may build a snapshot before any waiter wakes.
            if not listed and ALL_KINDS <= store.listed:
                listed.append(time.perf_counter())

        store.add_listener(on_change)
        first_full: list[float] = []

        async def consume() -> None:
            async with cluster.subscribe() as updates:
                async for update in updates:
                    snapshot = update.snapshot
                    if not first_full and len(snapshot.pods) >= expect_pods:
                        first_full.append(time.perf_counter())
                    probe.saw_update({p.key for p in snapshot.pods if p.namespace == BURST_NS})

        consumer = asyncio.create_task(consume())
        try:
            await until(lambda: bool(listed), args.timeout, "every kind listed")
            out["listed_s"] = listed[0] - start
            await until(lambda: bool(first_full), args.timeout, "first complete Update")
            out["first_update_s"] = first_full[0] - start
            out["pods_in_store"] = len(store.records(Kind.POD))
            await asyncio.sleep(0.5)
            out["gpuctl"] = await gpuctl_burst(admin, probe, rep, args.burst, nodes, args.timeout)
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    out["raw"] = await raw_burst(plane, admin, rep + 1000, args.burst, nodes, args.timeout)
    return out


# -- RSS (child process) --------------------------------------------------------------------

async def rss_child(kubeconfig: Path) -> dict[str, float]:
    tune_gc()
    out = {"rss_imports": float(rss_bytes())}
    store = ClusterStore()
    source = KubernetesSource(kubeconfig=kubeconfig)
    start = time.perf_counter()
    task = asyncio.create_task(source.run(store))
    try:
        await until(lambda: ALL_KINDS <= store.listed, 120, "child list", step=0.01)
        out["listed_s"] = time.perf_counter() - start
        out["rss_listed"] = float(rss_bytes())
        snapshot = store.snapshot()
        out["pods"] = float(len(snapshot.pods))
        out["rss_snapshot"] = float(rss_bytes())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


def run_rss_child(plane: ControlPlane) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(plane.kubeconfig())],
        capture_output=True, text=True, timeout=180,
    )
    if done.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- reporting ------------------------------------------------------------------------------

def med_spread(values: list[float]) -> tuple[str, str]:
    return ms(statistics.median(values)), f"{ms(min(values))}–{ms(max(values))}"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def report(reps: list[dict[str, Any]], rss: dict[str, float] | None, burst: int) -> None:
    raw = [r["raw_list_s"] for r in reps]
    listed = [r["listed_s"] for r in reps]
    first = [r["first_update_s"] for r in reps]
    rows = [
        ["baseline: raw paginated LIST, 4 kinds (aiohttp + json)", *med_spread(raw), "1.00×"],
        ["gpuctl: start → every kind listed in the store", *med_spread(listed),
         f"{statistics.median(a / b for a, b in zip(listed, raw)):.2f}×"],
        ["gpuctl: start → first Update with every pod", *med_spread(first),
         f"{statistics.median(a / b for a, b in zip(first, raw)):.2f}×"],
    ]
    print(f"### first list — {len(reps)} repetitions, {reps[0]['objects']:,} objects listed "
          f"({reps[0]['pods_in_store']:,} GPU pods in the store)\n")
    print(table(["measurement", "median", "spread (min–max)", "÷ baseline"], rows))
    print()
    rows = []
    for phase in ("create", "delete"):
        base_label = f"{phase}/raw watch"
        base_spans = [r["raw"].spans[base_label] for r in reps]
        for label in (base_label, f"{phase}/store", f"{phase}/update"):
            source = "raw" if label == base_label else "gpuctl"
            lat = [x for r in reps for x in r[source].latencies[label]]
            spans = [r[source].spans[label] for r in reps]
            what = {"raw watch": "baseline: raw aiohttp watch", "store": "gpuctl: record in the store",
                    "update": "gpuctl: in a delivered Update"}[label.split("/")[1]]
            rows.append([
                f"{phase} ×{burst}: {what}",
                ms(statistics.median(lat)), ms(pct(lat, 0.95)), ms(max(lat)),
                f"{ms(statistics.median(spans))} ({ms(min(spans))}–{ms(max(spans))})",
                f"{statistics.median(a / b for a, b in zip(spans, base_spans)):.2f}×",
            ])
    print(f"### event → store → Update latency — bursts of {burst} pods, {len(reps)} repetitions "
          "(latency: request acknowledged → seen; span: first request → last pod seen)\n")
    print(table(["measurement", "latency p50", "p95", "max", "span median (spread)", "span ÷ baseline"], rows))
    counts = {phase: sorted(r["gpuctl"].updates[phase] for r in reps) for phase in ("create", "delete")}
    print(f"\nUpdates delivered while a burst was on (per repetition): create {counts['create']}, "
          f"delete {counts['delete']}")
    print()
    if rss is not None:
        rows = [
            ["after imports (gpuctl.service, sources.kubernetes: pydantic, aiohttp)", mib(rss["rss_imports"]), ""],
            ["after the first list of every kind", mib(rss["rss_listed"]), f"+{mib(rss['rss_listed'] - rss['rss_imports'])}"],
            ["after the first snapshot", mib(rss["rss_snapshot"]), f"+{mib(rss['rss_snapshot'] - rss['rss_imports'])}"],
        ]
        print(f"### RSS of a fresh gpuctl process (KubernetesSource + store, tune_gc), "
              f"{rss['pods']:,.0f} GPU pods, listed in {ms(rss['listed_s'])} cold\n")
        print(table(["when", "RSS", "growth"], rows))
        print()


# -- main -----------------------------------------------------------------------------------

async def bench(args: argparse.Namespace) -> None:
    from testbed.controlplane import ControlPlane, build_binaries
    from testbed.fleet_loader import load_fleet
    from testbed.kube import apply_objects, client_for

    started = time.perf_counter()
    print(f"command: {command_line()}")
    print(f"machine: {machine()}; date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    tune_gc()  # as the CLI does
    bin_dir = await asyncio.to_thread(build_binaries)
    workdir = Path(tempfile.mkdtemp(prefix="gpuctl-bench-watch-"))
    plane = ControlPlane(workdir / "controlplane", bin_dir)
    reps: list[dict[str, Any]] = []
    rss = None
    try:
        t = time.perf_counter()
        await plane.start()
        plane_s = time.perf_counter() - t
        fleet = filled_fleet(args.scale, args.pods)
        pending = sum(1 for p in fleet.pods if p.node is None)
        async with client_for(plane) as admin:
            t = time.perf_counter()
            await load_fleet(admin, fleet)
            load_s = time.perf_counter() - t
            await apply_objects(admin, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BURST_NS}}])

            async def not_running() -> int:
                body = (await admin.list("Pod", fieldSelector="status.phase!=Running")).body
                return len(body.get("items") or ())

            t = time.perf_counter()
            while (left := await not_running()) > pending and time.perf_counter() - t < args.timeout:  # noqa: ASYNC110
                await asyncio.sleep(1)
            running_s = time.perf_counter() - t
            print(f"fleet:   {fleet_summary(fleet)}")
            print(f"setup:   control plane up in {plane_s:.1f} s, fleet loaded in {load_s:.1f} s, "
                  f"kwok ran the pods in another {running_s:.1f} s ({left - pending} still not Running)\n", flush=True)
            nodes = [(n.name, [{"operator": "Exists"}]) for n in fleet.nodes]
            for rep in range(args.repeat):
                if time.perf_counter() - started > args.budget * 0.7 and reps:
                    print(f"(budget: stopping after {rep} repetitions)")
                    break
                reps.append(await repetition(plane, admin, rep, args, len(fleet.pods), nodes))
                print(f"  repetition {rep + 1}: raw list {ms(reps[-1]['raw_list_s'])}, "
                      f"gpuctl listed {ms(reps[-1]['listed_s'])}", flush=True)
        rss = await asyncio.to_thread(run_rss_child, plane)
    finally:
        plane.stop()
    print()
    report(reps, rss, args.burst)
    print(f"total run time {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=125, help="simulated fleet multiplier (125 -> 1,375 nodes)")
    parser.add_argument("--pods", type=int, default=10_000, help="top the fleet up to this many GPU pods")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--burst", type=int, default=300, help="pods created (then deleted) per burst")
    parser.add_argument("--timeout", type=float, default=60.0, help="per wait, seconds")
    parser.add_argument("--budget", type=float, default=290.0, help="hard limit for the whole run, seconds")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(asyncio.run(rss_child(args.rss_child))))
        return

    async def bounded() -> None:
        await asyncio.wait_for(bench(args), args.budget)

    try:
        asyncio.run(bounded())
    except TimeoutError:
        raise SystemExit(f"bench_watch: stopped after the {args.budget:.0f} s budget") from None


if __name__ == "__main__":
    main()
