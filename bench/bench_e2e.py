"""Benchmark gpuctl end to end: `gpuctl snapshot --json` and `gpuctl top` as a user runs them, with Prometheus.

    .venv/bin/python bench/bench_e2e.py [--scale 10] [--repeat 3] [--settle 60] [--churn 0]
    .venv/bin/python bench/bench_e2e.py --scale 125        # the target size: 12,500 devices, 10,000 GPU pods

Starts the test bed on loopback at `--scale` (testbed.controlplane: etcd,
kube-apiserver, controllers, kwok; the seeded fleet topped up to `--pods` GPU
pods as in bench_watch.py), the DCGM-exporter simulator for that fleet and a
real Prometheus scraping it every `--scrape` seconds (testbed.bed.Telemetry,
with Prometheus's query log on), and waits until Prometheus has every device.
Then, `--repeat` times, interleaved so each ratio's two sides see the same
load, each as its own process, timed from spawn:

  floor     bench/_floor.py: the paginated LIST of nodes, pods and quotas plus
            the instant queries gpuctl sends per refresh, concurrently, JSON
            parsed, nothing kept: the least any client pays for the picture
  kubectl   `kubectl get pods -A` (the peer; built from Go modules at the test
            bed's Kubernetes version by bench/build-kubectl.sh, cached)
  snapshot  `gpuctl snapshot --json`, spawn -> exit; the JSON is checked to hold
            every node, pod, quota and device reading
  top       `gpuctl top` in a pseudo-terminal (`--size`, TERM=xterm-256color),
            spawn -> the first frame showing every node, pod, quota and device
            reading (from its trace: GPUCTL_TRACE_FILE, gpuctl/trace.py, which
            reports each update's frame once Textual has rendered it), then `q`

and once more a `top` that stays `--settle` seconds (then `--churn` seconds
more while pods come and go) for: its RSS over time, every Prometheus query it
sent (the query log: start-up vs per refresh, the longest), the event loop's
stalls (the trace's loop-lag probe), each publish (join + changes) and each
frame after a metrics refresh (every reading changed).

Loopback only; everything it started is stopped when it ends or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, command_line, filled_fleet, fleet_summary, machine, mib, ms, table
from _procs import Finished, LoggedQuery, PtyProcess, TraceFile, read_query_log, run_timed

from gpuctl.sources import dcgm_fields
from gpuctl.sources.prometheus import REFRESH_QUANTITIES

# The `gpuctl` console script's code path (gpuctl.cli.main), from this checkout (PYTHONPATH below),
# whichever checkout the virtual environment's editable install points at.
GPUCTL = [sys.executable, "-m", "gpuctl.cli"]
CHURN_NS = "bench-churn"


@dataclass(frozen=True)
class Expected:
    """What the full picture holds, from the fleet the test bed loaded."""

    nodes: int
    pods: int
    devices: int
    quotas: int  # namespaces with a GPU quota

    def complete(self, e: dict[str, Any]) -> bool:
        return (e["nodes"], e["pods"], e["readings"], e["quotas"]) == (self.nodes, self.pods, self.devices, self.quotas)


@dataclass
class Bed:
    kubeconfig: Path
    prometheus: str
    floor_args: dict[str, Any]
    query_log: Path
    workdir: Path
    expected: Expected
    env: dict[str, str]
    admin: Any  # testbed.kube.RestClient, for churn


# -- the runs ---------------------------------------------------------------------------------

def gpuctl_argv(bed: Bed, command: str, refresh_s: float) -> list[str]:
    return [*GPUCTL, command, "--kubeconfig", str(bed.kubeconfig), "--prometheus", bed.prometheus,
            "--refresh", f"{refresh_s:g}s"]


async def run_floor(bed: Bed) -> tuple[Finished, dict[str, Any]]:
    out = bed.workdir / "floor.json"
    with out.open("w") as f:
        done = await run_timed([sys.executable, str(REPO / "bench" / "_floor.py"), json.dumps(bed.floor_args)],
                               env=bed.env, stdout=f)
    result = json.loads(out.read_text())
    if (result["Node"], result["Pod"]) != (bed.expected.nodes, bed.expected.pods):
        raise RuntimeError(f"floor listed {result}, expected {bed.expected}")
    return done, result


async def run_kubectl(bed: Bed, kubectl: Path) -> Finished:
    return await run_timed([str(kubectl), "--kubeconfig", str(bed.kubeconfig), "get", "pods", "-A"], env=bed.env)


def picture_of(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The counts a frame event carries, from `gpuctl snapshot --json` output."""
    return {
        "nodes": len(snapshot["nodes"]),
        "pods": len(snapshot["pods"]),
        "readings": sum(1 for g in snapshot["gpus"] if g["util_pct"] is not None),
        "quotas": sum(1 for n in snapshot["namespaces"] if n["gpu_quota_hard"] is not None or n["mig_quota_hard"]),
    }


async def run_snapshot(bed: Bed, rep: int, refresh_s: float) -> tuple[Finished, dict[str, Any], list[LoggedQuery]]:
    out, trace = bed.workdir / f"snapshot-{rep}.json", bed.workdir / f"snapshot-{rep}.trace"
    env = {**bed.env, "GPUCTL_TRACE_FILE": str(trace)}
    with out.open("w") as f:
        done = await run_timed([*gpuctl_argv(bed, "snapshot", refresh_s), "--json"], env=env, stdout=f)
    picture = picture_of(json.loads(out.read_text()))
    picture["complete"] = bed.expected.complete(picture)
    queries = [q for q in read_query_log(bed.query_log) if done.spawned_wall <= q.wall <= done.spawned_wall + done.seconds + 1]
    return done, picture, queries


@dataclass
class TopRun:
    full_picture_s: float
    trace: TraceFile
    spawned: float
    spawned_wall: float
    full_at: float  # monotonic
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since spawn, bytes)
    hwm: int = 0
    churn_from: float | None = None  # seconds since spawn
    ended_wall: float = 0.0
    api_requests: dict[str, int] = field(default_factory=dict)


async def run_top(bed: Bed, name: str, args: argparse.Namespace, *, stay_s: float = 0.0, churn_s: float = 0.0) -> TopRun:
    trace = TraceFile(bed.workdir / f"{name}.trace")
    env = {**bed.env, "GPUCTL_TRACE_FILE": str(trace.path), "TERM": "xterm-256color",
           "COLUMNS": str(args.size[0]), "LINES": str(args.size[1])}
    before = await prometheus_requests(bed.prometheus)
    top = PtyProcess(gpuctl_argv(bed, "top", args.refresh), env=env, size=args.size)
    rss: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + args.timeout
        full = None
        while full is None:
            await asyncio.sleep(0.05)
            for e in trace.read():
                if e["event"] == "frame" and full is None and bed.expected.complete(e):
                    full = e
            if not top.alive():
                raise RuntimeError(f"gpuctl top exited {top.proc.returncode}: {top.tail[-1500:].decode(errors='replace')}")
            if time.monotonic() > deadline:
                last = list(trace.of("frame"))[-1:]
                raise TimeoutError(f"gpuctl top: no complete frame in {args.timeout:g}s; expected {bed.expected}, last {last}")
        run = TopRun(full["t"] - top.spawned, trace, top.spawned, top.spawned_wall, full["t"])
        churn_task = None
        end = time.monotonic() + stay_s
        while time.monotonic() < end + (churn_s if stay_s else 0):
            if churn_s and churn_task is None and time.monotonic() >= end:
                run.churn_from = time.monotonic() - top.spawned
                churn_task = asyncio.create_task(churn(bed.admin, bed.expected, churn_s))
            status = top.status()
            rss.append((time.monotonic() - top.spawned, status["VmRSS"]))
            run.hwm = status["VmHWM"]
            await asyncio.sleep(1.0)
        if churn_task is not None:
            await churn_task
        trace.read()
        run.rss = rss
        run.hwm = max(run.hwm, top.status()["VmHWM"]) if top.alive() else run.hwm
    finally:
        await top.stop()
    run.ended_wall = time.time()
    after = await prometheus_requests(bed.prometheus)
    run.api_requests = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    return run


async def churn(admin: Any, expected: Expected, seconds: float) -> None:
    """Pods come and go for `seconds`: 50 created, then deleted, over and over (GPU pods on real nodes)."""
    from testbed.kube import apply_objects

    body = (await admin.list("Node", limit="50")).body
    nodes = [(n["metadata"]["name"], n["spec"].get("taints") or []) for n in body["items"]]
    await apply_objects(admin, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CHURN_NS}}])
    end, round_ = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        pods = [{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"churn-{round_}-{i:02d}", "namespace": CHURN_NS},
            "spec": {"nodeName": nodes[i % len(nodes)][0],
                     "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "w", "image": "registry.invalid/bench:1",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        } for i in range(50)]
        await asyncio.gather(*(admin.create(p) for p in pods))
        await asyncio.sleep(2)
        await asyncio.gather(*(admin.delete("Pod", p["metadata"]["name"], CHURN_NS) for p in pods))
        await asyncio.sleep(2)
        round_ += 1


async def prometheus_requests(url: str) -> dict[str, int]:
    """Prometheus's own count of HTTP API requests, by handler (prometheus_http_requests_total)."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/' in line:
            handler = line.split('handler="', 1)[1].split('"', 1)[0]
            out[handler] = out.get(handler, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


# -- setting up -------------------------------------------------------------------------------

def build_kubectl() -> tuple[Path | None, str]:
    done = subprocess.run(["bash", str(REPO / "bench" / "build-kubectl.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"kubectl build failed: {done.stderr.strip().splitlines()[-1:]}"
    return Path(done.stdout.strip().splitlines()[-1]), ""


async def wait_running(admin: Any, pending: int, timeout: float) -> float:
    from testbed.waiting import poll

    async def not_running() -> int:
        body = (await admin.list("Pod", fieldSelector="status.phase!=Running")).body
        return len(body.get("items") or ())

    started = time.perf_counter()
    await poll(not_running, lambda n: n <= pending, timeout_s=timeout, interval_s=1.0, what="kwok to run the pods")
    return time.perf_counter() - started


# -- reporting --------------------------------------------------------------------------------

def med(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} ({ms(min(values))}–{ms(max(values))})"


def ratio(values: list[float], floors: list[float]) -> str:
    return f"{statistics.median(a / b for a, b in zip(values, floors)):.2f}×"


def report_start(reps: list[dict[str, Any]], kubectl_note: str) -> None:
    floors = [r["floor"].seconds for r in reps]
    rows = [["floor: LIST nodes, pods, quotas + the refresh's instant queries, concurrent (own process)",
             med(floors), "1.00×", mib(max(r["floor"].peak_rss for r in reps)), ""]]
    if reps[0].get("kubectl"):
        k = [r["kubectl"].seconds for r in reps]
        rows.append(["peer: kubectl get pods -A", med(k), ratio(k, floors), mib(max(r["kubectl"].peak_rss for r in reps)),
                     "pods only, no metrics"])
    s = [r["snapshot"].seconds for r in reps]
    complete = all(r["picture"]["complete"] for r in reps)
    rows.append(["gpuctl snapshot --json: spawn → exit", med(s), ratio(s, floors),
                 mib(max(r["snapshot"].peak_rss for r in reps)), "JSON complete" if complete else "JSON INCOMPLETE"])
    t = [r["top"].full_picture_s for r in reps]
    rows.append(["gpuctl top: spawn → first frame with everything", med(t), ratio(t, floors), "(below)", ""])
    print(f"### time to the full picture — {len(reps)} repetitions, median (min–max), ÷ the same repetition's floor\n")
    print(table(["measurement", "time", "÷ floor", "peak RSS", "note"], rows))
    if kubectl_note:
        print(f"\n{kubectl_note}")
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


def report_long(run: TopRun, reps: list[dict[str, Any]], bed: Bed, args: argparse.Namespace) -> None:
    trace, full = run.trace, run.full_at
    publishes = list(trace.of("publish"))
    frames = list(trace.of("frame"))
    stalls = list(trace.of("stall"))
    devices = bed.expected.devices
    refresh_pubs = [p for p in publishes if p["t"] > full and p["gpus_changed"] >= 0.5 * devices]
    refresh_frames = [f for f in frames if f["t"] > full and f["gpus_changed"] >= 0.5 * devices]
    steady = [s for s in stalls if s["t"] > full + 1]
    startup = [s for s in stalls if s["t"] <= full + 1]
    settle_end = run.spawned + (run.churn_from if run.churn_from is not None else 1e9)
    refresh_times = sorted({p["metrics_at"] for p in publishes if p["metrics_at"] and full < p["t"] < settle_end})
    queries = [q for q in read_query_log(bed.query_log) if run.spawned_wall <= q.wall <= run.ended_wall + 1]
    full_wall = run.spawned_wall + run.full_picture_s
    start_q = [q for q in queries if q.wall <= full_wall + 2]
    steady_q = [q for q in queries if full_wall + 2 < q.wall <= run.spawned_wall + (settle_end - run.spawned)]
    n_ref = max(1, len(refresh_times))
    settle_rss = [r for t, r in run.rss if run.churn_from is None or t < run.churn_from]
    tail = settle_rss[len(settle_rss) * 2 // 3:] or settle_rss

    def dist(values: list[float]) -> str:
        return f"{ms(statistics.median(values))} median, {ms(max(values))} max ({len(values)})" if values else "—"

    rows = [
        ["RSS settled (median of the last third of the settle)", mib(statistics.median(tail)) if tail else "—"],
        ["RSS peak (VmHWM)", mib(run.hwm)],
    ]
    if run.churn_from is not None:
        churned = [r for t, r in run.rss if t >= run.churn_from]
        rows.append([f"RSS after {args.churn:g} s of churn (start → end of churn)",
                     f"{mib(churned[0])} → {mib(churned[-1])}" if churned else "—"])
    rows += [
        ["Prometheus queries, start (spawn → full picture + 2 s)", queries_summary(start_q)],
        [f"Prometheus queries, steady ({len(refresh_times)} refreshes)",
         f"{len(steady_q) / n_ref:.1f} per refresh; " + queries_summary(steady_q)],
        ["Prometheus API requests, whole run (by handler)", ", ".join(f"{k} {v}" for k, v in sorted(run.api_requests.items()))],
        ["Prometheus queries per `gpuctl snapshot`", queries_summary(reps[-1]["queries"])],
        ["publish after a metrics refresh (join + changes, on the loop)", dist([p["ms"] / 1000 for p in refresh_pubs])],
        ["frame after a metrics refresh (apply + render, every reading changed)", dist([f["ms"] / 1000 for f in refresh_frames])],
        ["  of which apply (index, views; before Textual renders)", dist([f["apply_ms"] / 1000 for f in refresh_frames])],
        ["longest event-loop stall after the full picture (loop thread's CPU in it)", stall(steady, "ms")],
        ["  the stall with the most loop-thread CPU after the full picture", stall(steady, "cpu_ms")],
        ["  stalls over 100 ms after the full picture (of which over 100 ms CPU)",
         f"{sum(1 for s in steady if s['ms'] > 100)} ({sum(1 for s in steady if s['cpu_ms'] > 100)})"],
        ["longest event-loop stall during start-up (loop thread's CPU in it)", stall(startup, "ms")],
    ]
    print(f"### gpuctl top, one run: full picture at {ms(run.full_picture_s)}, then {args.settle:g} s"
          f"{f' + {args.churn:g} s of churn' if run.churn_from is not None else ''}; terminal {args.size[0]}x{args.size[1]}\n")
    print(table(["measurement", "value"], rows))
    print()
    if queries:
        kinds: dict[str, list[float]] = {}
        for q in queries:
            kinds.setdefault(q.query if len(q.query) < 90 else q.query[:87] + "...", []).append(q.exec_s)
        rows = [[f"`{k}`", str(len(v)), ms(statistics.median(v)), ms(max(v))] for k, v in sorted(kinds.items(), key=lambda kv: -max(kv[1]))]
        print("#### every query the long run sent (Prometheus query log: execTotalTime)\n")
        print(table(["query", "count", "median", "max"], rows))
        print()


# -- main -------------------------------------------------------------------------------------

async def bench(args: argparse.Namespace) -> None:
    from testbed.bed import Telemetry
    from testbed.controlplane import ADMIN, ControlPlane, build_binaries
    from testbed.fleet_loader import load_fleet
    from testbed.kube import client_for

    started = time.perf_counter()
    print(f"command: {command_line()}")
    print(f"machine: {machine()}; date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    bin_dir = await asyncio.to_thread(build_binaries)
    kubectl, kubectl_note = (None, "peer: kubectl skipped (--no-kubectl)") if args.no_kubectl else await asyncio.to_thread(build_kubectl)
    workdir = Path(tempfile.mkdtemp(prefix="gpuctl-bench-e2e-"))
    plane = ControlPlane(workdir / "controlplane", bin_dir)
    telemetry = None
    try:
        t = time.perf_counter()
        await plane.start()
        plane_s = time.perf_counter() - t
        fleet = filled_fleet(args.scale, args.pods if args.pods is not None else 80 * args.scale)
        pending = sum(1 for p in fleet.pods if p.node is None)
        async with client_for(plane) as admin:
            t = time.perf_counter()
            await load_fleet(admin, fleet)
            load_s = time.perf_counter() - t
            running_s = await wait_running(admin, pending, args.timeout * 3)
            t = time.perf_counter()
            query_log = workdir / "prometheus-queries.log"
            telemetry = await Telemetry.start(workdir / "monitoring", fleet, scrape_interval_s=args.scrape,
                                              evaluation_interval_s=args.scrape, query_log=query_log)
            prom = telemetry.monitoring.prometheus_url
            await telemetry.monitoring.wait_for_series("DCGM_FI_DEV_FB_USED", count=len(fleet.gpus), timeout_s=args.timeout * 3)
            prom_s = time.perf_counter() - t
            expected = Expected(len(fleet.nodes), len(fleet.pods), len(fleet.gpus),
                                sum(1 for n in fleet.namespaces if n.quota_hard))
            pair = plane.client_cert(ADMIN)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBECONFIG"))}
            (workdir / "xdg").mkdir()
            env["XDG_CONFIG_HOME"] = str(workdir / "xdg")  # no user config file
            env["PYTHONPATH"] = str(REPO)
            bed = Bed(
                kubeconfig=plane.kubeconfig(ADMIN), prometheus=prom, query_log=query_log, workdir=workdir,
                expected=expected, env=env, admin=admin,
                floor_args={"server": plane.server, "ca": str(plane.ca.pair.cert), "cert": str(pair.cert),
                            "key": str(pair.key), "prometheus": prom,
                            "queries": [dcgm_fields.instant_query(q) for q in REFRESH_QUANTITIES]},
            )
            print(f"fleet:   {fleet_summary(fleet)}; {expected.quotas} namespaces with a GPU quota")
            print(f"setup:   control plane up in {plane_s:.1f} s, fleet loaded in {load_s:.1f} s, running in "
                  f"{running_s:.1f} s more; Prometheus (scrape and rules every {args.scrape:g} s) had every device "
                  f"{prom_s:.1f} s later; gpuctl refresh {args.refresh:g} s; load {machine().split('load ')[1]}\n", flush=True)
            reps: list[dict[str, Any]] = []
            for rep in range(args.repeat):
                r: dict[str, Any] = {}
                r["floor"], r["floor_result"] = await run_floor(bed)
                if kubectl is not None:
                    r["kubectl"] = await run_kubectl(bed, kubectl)
                r["snapshot"], r["picture"], r["queries"] = await run_snapshot(bed, rep, args.refresh)
                r["top"] = await run_top(bed, f"top-{rep}", args)
                reps.append(r)
                print(f"  repetition {rep + 1}: floor {ms(r['floor'].seconds)}, "
                      + (f"kubectl {ms(r['kubectl'].seconds)}, " if "kubectl" in r else "")
                      + f"snapshot {ms(r['snapshot'].seconds)}, top {ms(r['top'].full_picture_s)}", flush=True)
            long = await run_top(bed, "top-long", args, stay_s=args.settle, churn_s=args.churn)
            print(f"  long run: {args.settle:g} s settled{f', {args.churn:g} s churned' if args.churn else ''}; "
                  f"traces and logs in {workdir}\n", flush=True)
    finally:
        if telemetry is not None:
            await telemetry.stop()
        plane.stop()
    report_start(reps, kubectl_note)
    report_long(long, reps, bed, args)
    print(f"machine at the end: {machine()}; total run time {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="simulated fleet multiplier (125: 1,375 nodes, 12,500 devices)")
    parser.add_argument("--pods", type=int, help="top the fleet up to this many GPU pods (default 80 per scale unit)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refresh", type=float, default=15.0, help="gpuctl's metrics refresh, seconds (its default)")
    parser.add_argument("--scrape", type=float, default=15.0, help="Prometheus scrape and rule interval, seconds")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds the long top run stays after the full picture")
    parser.add_argument("--churn", type=float, default=0.0, help="then this many seconds of pod churn (RSS growth)")
    parser.add_argument("--size", default="200x60", help="top's terminal, WxH")
    parser.add_argument("--timeout", type=float, default=120.0, help="per wait, seconds")
    parser.add_argument("--no-kubectl", action="store_true", help="skip the kubectl peer (no Go build)")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.split("x"))
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
