"""Benchmark gpuctl end to end: `gpuctl snapshot --json` and `gpuctl top` as a user runs them, with Prometheus.

    .venv/bin/python bench/bench_e2e.py [--scale 10] [--repeat 3] [--settle 60] [--churn 0]
    .venv/bin/python bench/bench_e2e.py --scale 125        # the target size: 12,500 devices, 10,000 GPU pods

Starts the test bed on loopback at `--scale` (testbed.controlplane: etcd,
kube-apiserver, controllers, kwok; the seeded fleet topped up to `--pods` GPU
pods as in bench_watch.py), the DCGM-exporter simulator for that fleet and a
real Prometheus scraping it every `--scrape` seconds (testbed.bed.Telemetry,
with Prometheus's query log on), and waits until Prometheus has every device.
Then, `--repeat` times, interleaved so each ratio's two sides see the same
load (with `--compare`, the checkouts take turns going first), each as its own
process, timed from spawn:

  floor     bench/_floor.py: the paginated LIST of nodes, pods and quotas plus
            the instant queries gpuctl sends per refresh, concurrently, JSON
            parsed, nothing kept: the least any client pays for the picture
  kubectl   `kubectl get pods -A` (the peer; built from Go modules at the test
            bed's Kubernetes version by testbed/build-kubectl.sh, cached)
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

`--bed BED.json` measures against the bed bench/hold_bed.py holds open
instead (no set-up: minutes of runs, not a bed per run); `--churn` then asks
that bed to churn (BED.json.churn).

`--compare DIR` runs the gpuctl processes of another checkout too (a worktree
at an older commit: `git worktree add --detach DIR <commit>`), interleaved with
this one's against the same test bed, so before and after share a test bed,
a floor and the machine's load: one setup at full scale instead of two.

Loopback only; everything it started is stopped when it ends or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bed import fleet_bed
from _common import REPO, command_line, fleet_summary, machine, ms
from _e2e_report import Repetition, SnapshotRun, TopRun, report_long, report_start
from _procs import Finished, PtyProcess, TraceFile, read_query_log, run_timed

# The `gpuctl` console script (gpuctl.cli.run), from the checkout named by PYTHONPATH
# and working directory of a Checkout, whichever one the virtual environment's editable install points at.
GPUCTL = [sys.executable, "-m", "gpuctl.cli"]
CHURN_NS = "bench-churn"


@dataclass(frozen=True)
class Expected:
    """What the full picture holds, from the fleet the test bed loaded."""

    nodes: int
    pods: int
    devices: int
    quotas: int  # namespaces with a GPU quota

    @classmethod
    def of(cls, fleet: Any) -> Expected:  # gpuctl.sim.fleet.Fleet
        return cls(len(fleet.nodes), len(fleet.pods), len(fleet.gpus), sum(1 for n in fleet.namespaces if n.quota_hard))

    def complete(self, e: dict[str, Any]) -> bool:
        return (e["nodes"], e["pods"], e["readings"], e["quotas"]) == (self.nodes, self.pods, self.devices, self.quotas)


@dataclass(frozen=True)
class Checkout:
    """A gpuctl source tree whose processes are measured: its name in the tables, where its gpuctl runs from."""

    label: str
    path: Path  # the working directory (`python -m` puts it first on sys.path) and PYTHONPATH
    env: dict[str, str]

    @classmethod
    def of(cls, path: Path, base_env: dict[str, str], *, this: bool) -> Checkout:
        path = path.resolve()
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        name = (commit.stdout.strip() or path.name) + ("+changes" if dirty else "")
        checkout = cls(f"{'this' if this else 'compared'} ({name})", path, {**base_env, "PYTHONPATH": str(path)})
        imported = subprocess.run([sys.executable, "-c", "import gpuctl; print(gpuctl.__file__)"], env=checkout.env,
                                  cwd=path, capture_output=True, text=True, check=True).stdout.strip()
        if not Path(imported).is_relative_to(path):
            raise RuntimeError(f"{checkout.label}: gpuctl imports from {imported}, not from {path}")
        return checkout

    @property
    def slug(self) -> str:
        return self.label.split(" ", 1)[0]


@dataclass
class Bed:
    kubeconfig: Path
    prometheus: str
    floor_args: dict[str, Any]
    query_log: Path
    workdir: Path
    expected: Expected
    env: dict[str, str]  # for the floor and the peer
    admin: Any  # testbed.kube.RestClient, for churn; None for a held bed
    churn_request: Path | None = None  # a held bed churns when seconds are written here (bench/hold_bed.py)

    async def churn(self, seconds: float) -> None:
        """Pods come and go for `seconds` (see `churn`): by this process, or by the bed that holds them."""
        if self.admin is not None:
            await churn(self.admin, seconds)
            return
        if self.churn_request is None:
            raise RuntimeError("this bed cannot churn: no admin client and no churn request file")
        await asyncio.to_thread(self.churn_request.write_text, f"{seconds:g}")
        await asyncio.sleep(seconds)


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


async def run_snapshot(bed: Bed, checkout: Checkout, rep: int, args: argparse.Namespace) -> SnapshotRun:
    name = f"snapshot-{checkout.slug}-{rep}"
    out, trace = bed.workdir / f"{name}.json", bed.workdir / f"{name}.trace"
    env = {**checkout.env, "GPUCTL_TRACE_FILE": str(trace)}
    # --timeout: the wait for the first data; its 20 s default is not what is measured here.
    argv = [*gpuctl_argv(bed, "snapshot", args.refresh), "--json", "--timeout", f"{args.timeout:g}s"]
    with out.open("w") as f:
        done = await run_timed(argv, env=env, stdout=f, cwd=checkout.path)
    complete = bed.expected.complete(picture_of(json.loads(out.read_text())))
    steps = {e["event"]: e["t"] for e in map(json.loads, trace.read_text().splitlines())}
    phases = [
        steps["open_cluster"] - done.spawned,
        steps["snapshot_ready"] - steps["open_cluster"],
        steps["snapshot_written"] - steps["snapshot_ready"],
        done.spawned + done.seconds - steps["snapshot_written"],
    ]
    end_wall = done.spawned_wall + done.seconds + 1
    queries = [q for q in read_query_log(bed.query_log) if done.spawned_wall <= q.wall <= end_wall]
    inputs = (steps["listed"] - steps["open_cluster"], steps["metrics_attempted"] - steps["open_cluster"]) if (
        "listed" in steps and "metrics_attempted" in steps) else None
    return SnapshotRun(done, complete, phases, queries, inputs)


async def run_top(bed: Bed, checkout: Checkout, name: str, args: argparse.Namespace, *, stay_s: float = 0.0,
                  churn_s: float = 0.0) -> TopRun:
    trace = TraceFile(bed.workdir / f"{name}-{checkout.slug}.trace")
    env = {**checkout.env, "GPUCTL_TRACE_FILE": str(trace.path), "TERM": "xterm-256color",
           "COLUMNS": str(args.size[0]), "LINES": str(args.size[1])}
    before = await prometheus_requests(bed.prometheus)
    top = PtyProcess(gpuctl_argv(bed, "top", args.refresh), env=env, size=args.size, cwd=checkout.path)
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
        opened = next(trace.of("open_cluster"))["t"] - top.spawned
        run = TopRun(full["t"] - top.spawned, opened, trace, top.spawned, top.spawned_wall, full["t"])
        churn_task = None
        end = time.monotonic() + stay_s
        while time.monotonic() < end + (churn_s if stay_s else 0):
            if churn_s and churn_task is None and time.monotonic() >= end:
                run.churn_from = time.monotonic() - top.spawned
                churn_task = asyncio.create_task(bed.churn(churn_s))
            status = top.status()
            rss.append((time.monotonic() - top.spawned, status["VmRSS"]))
            run.hwm = status["VmHWM"]
            await asyncio.sleep(1.0)
        if churn_task is not None:
            await churn_task
        trace.read()
        run.rss = rss
    finally:
        await top.stop()
    run.ended_wall = time.time()
    after = await prometheus_requests(bed.prometheus)
    run.api_requests = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    run.queries = [q for q in read_query_log(bed.query_log) if run.spawned_wall <= q.wall <= run.ended_wall + 1]
    return run


async def churn(admin: Any, seconds: float) -> None:
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
    from testbed.kubectl import build_kubectl as build

    try:
        return build(), ""
    except RuntimeError as exc:
        return None, f"kubectl build failed: {str(exc).strip().splitlines()[-1:]}"


# -- main -------------------------------------------------------------------------------------

async def bench(args: argparse.Namespace) -> None:
    from testbed.controlplane import ADMIN

    started = time.perf_counter()
    print(f"command: {command_line()}")
    print(f"machine: {machine()}; date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    kubectl, kubectl_note = (None, "peer: kubectl skipped (--no-kubectl)") if args.no_kubectl else await asyncio.to_thread(build_kubectl)
    workdir = Path(tempfile.mkdtemp(prefix="gpuctl-bench-e2e-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "KUBECONFIG", "PYTHONPATH"))}
    (workdir / "xdg").mkdir()
    env["XDG_CONFIG_HOME"] = str(workdir / "xdg")  # no user config file
    checkouts = [Checkout.of(REPO, env, this=True), *(Checkout.of(p, env, this=False) for p in args.compare)]
    if args.bed is not None:  # bench/hold_bed.py's, already up
        held = json.loads(args.bed.read_text())
        bed = Bed(kubeconfig=Path(held["kubeconfig"]), prometheus=held["prometheus"], query_log=Path(held["query_log"]),
                  workdir=workdir, expected=Expected(**held["expected"]), env=env, admin=None, floor_args=held["floor_args"],
                  churn_request=args.bed.with_name(args.bed.name + ".churn"))
        print(f"setup:   the bed held by bench/hold_bed.py ({args.bed}); gpuctl refresh {args.refresh:g} s")
        reps, long = await measure(bed, checkouts, args, kubectl)
    else:
        query_log = workdir / "prometheus-queries.log"
        async with fleet_bed(workdir, scale=args.scale, pods=args.pods, scrape_s=args.scrape, timeout_s=args.timeout,
                             query_log=query_log) as up:  # fmt: skip
            bed = Bed(
                kubeconfig=up.plane.kubeconfig(ADMIN), prometheus=up.prometheus, query_log=query_log, workdir=workdir,
                expected=Expected.of(up.fleet), env=env, admin=up.admin, floor_args=up.floor_args(),
            )
            print(f"fleet:   {fleet_summary(up.fleet)}; {bed.expected.quotas} namespaces with a GPU quota")
            print(f"setup:   {up.setup_line(args.scrape)}; gpuctl refresh {args.refresh:g} s; load {machine().split('load ')[1]}")
            reps, long = await measure(bed, checkouts, args, kubectl)
    report_start(reps, [c.label for c in checkouts], kubectl_note)
    report_long(long, {c.label: reps[-1].snapshot[c.label] for c in checkouts}, devices=bed.expected.devices,
                settle_s=args.settle, churn_s=args.churn, size=args.size)
    print(f"machine at the end: {machine()}; total run time {time.perf_counter() - started:.0f} s")


async def measure(
    bed: Bed, checkouts: list[Checkout], args: argparse.Namespace, kubectl: Path | None
) -> tuple[list[Repetition], dict[str, TopRun]]:
    """The repetitions (floor, peer, each checkout's snapshot and top), then the long top runs."""
    print(f"gpuctl:  {', '.join(c.label + ' = ' + c.env['PYTHONPATH'] for c in checkouts)}\n", flush=True)
    reps: list[Repetition] = []
    for rep in range(args.repeat):
        r = Repetition(floor=(await run_floor(bed))[0])
        if kubectl is not None:
            r.kubectl = await run_kubectl(bed, kubectl)
        # Checkouts take turns going first, so neither always runs first after the floor.
        for checkout in checkouts if rep % 2 == 0 else checkouts[::-1]:
            r.snapshot[checkout.label] = await run_snapshot(bed, checkout, rep, args)
            r.top[checkout.label] = await run_top(bed, checkout, f"top-{rep}", args)
        reps.append(r)
        print(f"  repetition {rep + 1}: floor {ms(r.floor.seconds)}"
              + (f", kubectl {ms(r.kubectl.seconds)}" if r.kubectl else "")
              + "".join(f"; {c.slug}: snapshot {ms(r.snapshot[c.label].done.seconds)}, "
                        f"top {ms(r.top[c.label].full_picture_s)}" for c in checkouts), flush=True)
    long = {c.label: await run_top(bed, c, "top-long", args, stay_s=args.settle, churn_s=args.churn)
            for c in (checkouts if args.long == "all" else checkouts[:1])}
    print(f"  long runs: {args.settle:g} s settled{f', {args.churn:g} s churned' if args.churn else ''}; "
          f"traces and logs in {bed.workdir}\n", flush=True)
    return reps, long


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="simulated fleet multiplier (125: 1,375 nodes, 12,500 devices)")
    parser.add_argument("--pods", type=int, help="top the fleet up to this many GPU pods (default 80 per scale unit)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refresh", type=float, default=15.0, help="gpuctl's metrics refresh, seconds (its default)")
    parser.add_argument("--scrape", type=float, default=15.0, help="Prometheus scrape and rule interval, seconds")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds the long top run stays after the full picture")
    parser.add_argument("--churn", type=float, default=0.0, help="then this many seconds of pod churn (RSS growth)")
    parser.add_argument("--long", choices=("all", "this"), default="all",
                        help="whose long run: every checkout's, or only this one's (an hour of churn, compared at start only)")
    parser.add_argument("--size", default="200x60", help="top's terminal, WxH")
    parser.add_argument("--timeout", type=float, default=120.0, help="per wait, seconds")
    parser.add_argument("--no-kubectl", action="store_true", help="skip the kubectl peer (no Go build)")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                        help="also run the gpuctl of this checkout (e.g. a worktree at the commit before), interleaved")
    parser.add_argument("--bed", type=Path, metavar="BED.json",
                        help="measure against the bed bench/hold_bed.py holds (its --out) instead of starting one")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.split("x"))
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
