"""Benchmark planning reclaim-idle-gpus against the real test bed: selection, re-reads, dry runs.

    .venv/bin/python bench/bench_reclaim.py [--scale 13] [--pods 1000] [--repeat 5] [--budget 240]
    .venv/bin/python bench/bench_reclaim.py --full [--repeat 3]   # --scale 125 --pods 10000 (the target size), budget 540 s

Starts its own control plane on loopback (testbed.controlplane), loads the simulated fleet
topped up to `--pods` GPU pods (bench/_common.filled_fleet) and waits for kwok to run them.
The live picture is built the production way from what the API server lists (real uids):
pods, nodes and PodDisruptionBudgets trimmed into a ClusterStore, with one metrics batch
from the fleet's simulated DCGM readings and the idle pods' idle-since times backfilled
(the clock is set two days after the pods were created, so age is no obstacle and idle
time decides). Then, `--repeat` times, interleaved so both halves of each ratio see the
same machine load:

  baseline   a raw paginated LIST of every pod (500 per page, aiohttp, JSON parsed): the
             least any tool pays to look at the pods once
  selection  select_idle_pods on the snapshot (pure, in process; defaults: idle_for 30m,
             max_pods 50, max_gpus 128, the guardrails' ceilings)
  plan       ReclaimLogic.plan as user-a: selection, then each chosen pod re-read (as the
             read-only gpu-viewer, impersonated) and every write dry-run as user-a
             (immediate: eviction; staged: annotation, Event and eviction)

Output: a Markdown table (paste into BENCHMARKS.md), the plan's size and the command line.
Loopback only; the control plane is torn down when the run ends, fails or passes `--budget`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bed import RECLAIMER
from _common import command_line, filled_fleet, fleet_summary, machine, ms, table

from gpuctl.identity import Identity, Requester
from gpuctl.model import Snapshot
from gpuctl.playbooks.acting import ActingClient
from gpuctl.playbooks.kubeapi import ApiCall, KubeApi
from gpuctl.playbooks.loader import load_catalog
from gpuctl.playbooks.logic import Clients, Draft, PlanRequest
from gpuctl.playbooks.params import validate_params
from gpuctl.playbooks.reclaim import LOGIC, Params
from gpuctl.playbooks.reclaim_select import Limits, select_idle_pods
from gpuctl.service import tune_gc
from gpuctl.sim.catalog import POOL_LABEL
from gpuctl.sim.fleet import Fleet
from gpuctl.sim.telemetry import FleetTelemetry
from gpuctl.sources.kube.connect import connect
from gpuctl.sources.kube.trim import trim_node, trim_pdb, trim_pod
from gpuctl.state.records import Kind, MetricsBatch
from gpuctl.state.store import ClusterStore

if TYPE_CHECKING:
    from testbed.kube import RestClient

USER_A = Identity(user="user-a", groups=("team-a",))
VIEWER = Identity(user="gpu-viewer", groups=("gpuctl:viewers",))
PLAYBOOK = load_catalog().get("reclaim-idle-gpus")
async def listed(client: RestClient, kind: str) -> list[dict[str, Any]]:
    """Every object of a kind, paginated as the reflector does (500 per page), JSON parsed."""
    items: list[dict[str, Any]] = []
    token = None
    while True:
        response = await client.list(kind, limit="500", **({"continue": token} if token else {}))
        if response.status != 200:
            raise RuntimeError(f"list {kind}: {response.status} {response.body.get('message')}")
        items += response.body.get("items") or ()
        token = (response.body.get("metadata") or {}).get("continue")
        if not token:
            return items


async def live_picture(admin: RestClient, fleet: Fleet, seed: int) -> Snapshot:
    """The snapshot gpuctl would hold for this cluster: API objects trimmed, one metrics batch, idle times."""
    pods = await listed(admin, "Pod")
    start = max(datetime.fromisoformat(p["metadata"]["creationTimestamp"]) for p in pods) + timedelta(days=2)
    store = ClusterStore(clock=lambda: start, refresh_s=3600)
    store.replace(Kind.NODE, [r for o in await listed(admin, "Node") if (r := trim_node(o, frozenset({POOL_LABEL})))])
    store.replace(Kind.PDB, [trim_pdb(o) for o in await listed(admin, "PodDisruptionBudget")])
    store.replace(Kind.POD, [r for o in pods if (r := trim_pod(o)) is not None])
    store.set_metrics_source("prometheus")
    store.backfill_idle({
        key: start + timedelta(seconds=pod.idle_since_t)
        for pod in fleet.pods if pod.behaviour == "idle" and pod.idle_since_t is not None for key in pod.gpu_keys
    })  # fmt: skip
    store.apply_metrics(MetricsBatch(at=start, samples=tuple(FleetTelemetry(fleet, seed).samples_at(0.0))))
    return store.snapshot()


@dataclass
class Rep:
    baseline_s: float
    selection_s: float
    plans: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)


def request(snapshot: Snapshot, mode: str, args: argparse.Namespace) -> PlanRequest:
    given = {"mode": mode, "idle_for": args.idle_for, "max_pods": str(args.max_pods), "max_gpus": str(args.max_gpus)}
    return PlanRequest(playbook=PLAYBOOK, args=validate_params(PLAYBOOK, given), requester=Requester(identity=USER_A, via="cli"),
                       snapshot=snapshot, now=snapshot.taken_at)  # fmt: skip


async def repetition(admin: RestClient, clients: Clients, calls: list[ApiCall], snapshot: Snapshot,
                     args: argparse.Namespace) -> tuple[Rep, dict[str, Draft]]:  # fmt: skip
    t = time.perf_counter()
    await listed(admin, "Pod")
    baseline = time.perf_counter() - t

    params = Params.of(request(snapshot, "immediate", args).args)
    limits = Limits.of(PLAYBOOK.guardrails, idle_for_s=params.idle_for_s, max_pods=params.max_pods, max_gpus=params.max_gpus)
    t = time.perf_counter()
    select_idle_pods(snapshot, PLAYBOOK.guardrails, limits)
    rep = Rep(baseline_s=baseline, selection_s=time.perf_counter() - t)
    drafts = {}
    for mode in ("immediate", "staged"):
        before = len(calls)
        t = time.perf_counter()
        drafts[mode] = await LOGIC.plan(request(snapshot, mode, args), clients)
        rep.plans[mode] = time.perf_counter() - t
        rep.calls[mode] = len(calls) - before
    return rep, drafts


def report(reps: list[Rep], drafts: dict[str, Draft], snapshot: Snapshot, args: argparse.Namespace) -> None:
    def row(name: str, values: list[float], note: str = "") -> list[str]:
        ratios = [v / r.baseline_s for v, r in zip(values, reps)]
        return [name, ms(statistics.median(values)), f"{ms(min(values))}–{ms(max(values))}",
                f"{statistics.median(ratios):.3f}×" if statistics.median(ratios) < 0.1 else f"{statistics.median(ratios):.2f}×", note]  # fmt: skip

    immediate, staged = drafts["immediate"], drafts["staged"]
    chosen = sum(1 for s in immediate.steps if s.action == "evict_pods")
    rows = [
        row(f"baseline: raw paginated LIST of {len(snapshot.pods):,} GPU pods (+ others)", [r.baseline_s for r in reps]),
        row(f"selection on the {len(snapshot.pods):,}-pod snapshot (pure)", [r.selection_s for r in reps]),
        row("plan, immediate: selection + re-read + dry-run eviction", [r.plans["immediate"] for r in reps],
            f"{reps[0].calls['immediate']} API calls"),
        row("plan, staged: + dry-run annotation and Event", [r.plans["staged"] for r in reps], f"{reps[0].calls['staged']} API calls"),
    ]  # fmt: skip
    print(f"### planning reclaim-idle-gpus — {len(reps)} repetitions; idle_for {args.idle_for}, max_pods {args.max_pods}, "
          f"max_gpus {args.max_gpus}\n")  # fmt: skip
    print(table(["measurement", "median", "spread (min–max)", "÷ baseline", "note"], rows))
    idle = sum(1 for p in snapshot.pods if p.idle)
    print(f"\nsnapshot: {len(snapshot.pods):,} GPU pods ({idle:,} idle), {len(snapshot.gpus):,} GPU devices, "
          f"{len(snapshot.pdbs):,} PodDisruptionBudgets")  # fmt: skip
    print(f"plan (immediate): {chosen} pods chosen, {sum(s.gpus for s in immediate.steps)} GPUs, {len(immediate.skipped)} "
          f"left out listed, {len(immediate.warnings)} warnings, blocked: {immediate.blocked or 'no'}; "
          f"staged: {len(staged.steps)} steps")  # fmt: skip
    for warning in immediate.warnings[:5]:
        print(f"  warning: {warning}")
    print()


async def bench(args: argparse.Namespace) -> None:
    from testbed.controlplane import OPERATOR, ControlPlane, build_binaries
    from testbed.fleet_loader import load_fleet
    from testbed.kube import apply_objects, client_for

    started = time.perf_counter()
    print(f"command: {command_line()}")
    print(f"machine: {machine()}; date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    tune_gc()  # as the CLI does
    bin_dir = await asyncio.to_thread(build_binaries)
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="gpuctl-bench-reclaim-")) / "controlplane", bin_dir)
    reps: list[Rep] = []
    try:
        t = time.perf_counter()
        await plane.start()
        plane_s = time.perf_counter() - t
        fleet = filled_fleet(args.scale, args.pods, seed=args.seed)
        pending = sum(1 for p in fleet.pods if p.node is None)
        async with client_for(plane) as admin:
            print(f"fleet:   {fleet_summary(fleet)}; control plane up in {plane_s:.1f} s", flush=True)
            t = time.perf_counter()
            await load_fleet(admin, fleet)
            await apply_objects(admin, RECLAIMER)
            load_s = time.perf_counter() - t
            print(f"setup:   fleet loaded in {load_s:.1f} s", flush=True)

            async def not_running() -> int:
                body = (await admin.list("Pod", fieldSelector="status.phase!=Running")).body
                return len(body.get("items") or ())

            t = time.perf_counter()
            while (left := await not_running()) > pending and time.perf_counter() - t < args.timeout:  # noqa: ASYNC110
                await asyncio.sleep(1)
            running_s = time.perf_counter() - t
            t = time.perf_counter()
            snapshot = await live_picture(admin, fleet, args.seed)
            picture_s = time.perf_counter() - t
            print(f"setup:   kwok ran the pods in another {running_s:.1f} s ({left - pending} still not Running), "
                  f"live picture built in {picture_s:.1f} s\n", flush=True)  # fmt: skip
            connection = await connect(kubeconfig=plane.kubeconfig(OPERATOR))
            calls: list[ApiCall] = []
            try:
                api = KubeApi(connection, on_call=calls.append)
                clients = Clients(acting=ActingClient(api, USER_A), reader=ActingClient(api, VIEWER))
                drafts: dict[str, Draft] = {}
                for rep in range(args.repeat):
                    if time.perf_counter() - started > args.budget * 0.8 and reps:
                        print(f"(budget: stopping after {rep} repetitions)")
                        break
                    result, drafts = await repetition(admin, clients, calls, snapshot, args)
                    reps.append(result)
                    print(f"  repetition {rep + 1}: list {ms(result.baseline_s)}, selection {ms(result.selection_s)}, "
                          f"plan {ms(result.plans['immediate'])} / {ms(result.plans['staged'])}", flush=True)  # fmt: skip
            finally:
                await connection.close()
    finally:
        plane.stop()
    print()
    report(reps, drafts, snapshot, args)
    print(f"total run time {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=13, help="simulated fleet multiplier (13 -> 143 nodes; 125 -> 1,375)")
    parser.add_argument("--pods", type=int, default=1000, help="top the fleet up to this many GPU pods")
    parser.add_argument("--full", action="store_true", help="the product's target size: --scale 125 --pods 10000 (budget 540 s)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--idle-for", default="30m", help="the playbook's idle_for parameter")
    parser.add_argument("--max-pods", type=int, default=50)
    parser.add_argument("--max-gpus", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=90.0, help="waiting for kwok to run the pods, seconds")
    parser.add_argument("--budget", type=float, help="hard limit for the whole run, seconds (default 240, 540 with --full)")
    args = parser.parse_args()
    if args.full:
        args.scale, args.pods = 125, 10_000
    if args.budget is None:
        args.budget = 540.0 if args.full else 240.0

    async def bounded() -> None:
        await asyncio.wait_for(bench(args), args.budget)

    try:
        asyncio.run(bounded())
    except TimeoutError:
        raise SystemExit(f"bench_reclaim: stopped after the {args.budget:.0f} s budget") from None


if __name__ == "__main__":
    main()
