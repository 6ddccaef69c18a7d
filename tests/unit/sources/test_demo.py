"""The demo source feeding a real ClusterStore, on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from gpuctl.model import Snapshot
from gpuctl.sim import build_fleet
from gpuctl.sim.churn import FleetChurn
from gpuctl.sources.demo import DemoSource
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeTime:
    """A clock that only moves when the source sleeps."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps = 0

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.sleeps += 1
        await asyncio.sleep(0)  # not a wait: yield to the test, which drives this fake clock


async def run_demo(seconds: float, *, seed: int = 7, churn: bool = True) -> tuple[ClusterStore, FakeTime]:
    time = FakeTime()
    store = ClusterStore(clock=time.clock)
    task = asyncio.create_task(DemoSource(seed=seed, churn=churn, clock=time.clock, sleep=time.sleep).run(store))
    # Not polling for a state: each yield lets the source run one tick of the fake clock, until `seconds` of it passed.
    while time.now - T0 < timedelta(seconds=seconds):
        await asyncio.sleep(0)
        assert not task.done(), task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return store, time


def without_generation(snapshot: Snapshot) -> dict:
    return snapshot.model_dump(exclude={"generation"})


async def test_first_snapshot_looks_like_a_cluster() -> None:
    store, _ = await run_demo(0.1)
    snap = store.snapshot()
    fleet = build_fleet()
    assert snap.watch.source == "demo" and snap.watch.connected and snap.watch.context == "demo"
    assert snap.metrics.source == "demo" and not snap.metrics.stale
    assert len(snap.nodes) == 11 and all(n.ready for n in snap.nodes)
    assert {p.name: p.nodes for p in snap.pools} == {"a100-train": 4, "h100-mig": 2, "l4-infer": 3, "t4-batch": 2}
    assert len(snap.gpus) == len(fleet.gpus)
    assert {p.key for p in snap.pods} == {p.key for p in fleet.pods}
    assert sum(p.phase == "Pending" for p in snap.pods) == 4
    quotas = {ns.name: (ns.gpu_quota_used, ns.gpu_quota_hard) for ns in snap.namespaces}
    assert quotas["team-a"] == (9, 10)
    assert quotas["sandbox"][1] is None
    assert all(used <= hard for used, hard in quotas.values() if hard is not None)
    a100 = next(n for n in snap.nodes if n.pool == "a100-train")
    assert a100.gpu_model == "NVIDIA-A100-SXM4-80GB" and a100.gpu_capacity == 8 and a100.taints
    mig = next(n for n in snap.nodes if n.mig_config == "all-balanced")
    assert mig.mig_allocatable == {"nvidia.com/mig-1g.10gb": 16, "nvidia.com/mig-2g.20gb": 8, "nvidia.com/mig-3g.40gb": 8}


async def test_idle_history_is_backfilled() -> None:
    store, _ = await run_demo(2)
    snap = store.snapshot()
    idle = {p.key for p in snap.pods if p.idle}
    assert "sandbox/jupyter-alice" in idle
    alice = next(p for p in snap.pods if p.key == "sandbox/jupyter-alice")
    assert alice.idle_for_s is not None and alice.idle_for_s > 2.5 * 3600
    # clip-embed went idle 25 minutes before the start: not flagged yet...
    assert not any(p.idle for p in snap.pods if p.name.startswith("clip-embed-"))
    assert all(not p.idle for p in snap.pods if p.util_pct is not None and p.util_pct > 5)


async def test_idle_clock_runs_on_and_churn_reaches_the_store() -> None:
    store, time = await run_demo(10 * 60)
    snap = store.snapshot()
    # ...and is after ten minutes.
    assert any(p.idle for p in snap.pods if p.name.startswith("clip-embed-"))
    assert time.sleeps >= 300  # one metrics batch per 2 s tick
    churn = FleetChurn(build_fleet(), seed=7)
    assert snap.metrics.last_success is not None
    churn.advance((snap.metrics.last_success - T0).total_seconds())  # as of the last tick
    expected = {p.key: (p.node, p.phase) for p in churn.fleet.pods}
    assert {p.key: (p.node, p.phase) for p in snap.pods} == expected
    assert expected != {p.key: (p.node, p.phase) for p in build_fleet().pods}
    for ns in snap.namespaces:
        used = churn.fleet.quota_used(ns.name).get("requests.nvidia.com/gpu", 0)
        if ns.gpu_quota_hard is not None:
            assert ns.gpu_quota_used == used


async def test_same_seed_same_demo() -> None:
    (a, _), (b, _) = await run_demo(120), await run_demo(120)
    assert without_generation(a.snapshot()) == without_generation(b.snapshot())
    c, _ = await run_demo(120, seed=8)
    assert {n.name for n in c.snapshot().nodes} != {n.name for n in a.snapshot().nodes}


async def test_without_churn_the_pods_never_change() -> None:
    store, _ = await run_demo(30 * 60, churn=False)
    assert {p.key for p in store.snapshot().pods} == {p.key for p in build_fleet().pods}


async def test_demo_pods_show_their_top_controller_and_budgets() -> None:
    store, _ = await run_demo(0.1, churn=False)
    fleet = build_fleet(7)
    pods = {p.key: p for p in store.snapshot().pods}
    for sim in fleet.pods:
        pod = pods[sim.key]
        assert (pod.owner_kind, pod.owner_name) == (sim.owner_kind, sim.owner_name), sim.key
        if sim.ref_kind and sim.ref_kind != sim.owner_kind:  # a Deployment's or CronJob's pod: two links
            assert [(o.kind, o.name) for o in pod.owners] == [(sim.ref_kind, sim.ref_name), (sim.owner_kind, sim.owner_name)]
    budgets = store.snapshot().pdbs
    assert budgets and {b.key for b in budgets} == {f"{b.namespace}/{b.name}" for b in fleet.pdbs}
    protected = [p for p in pods.values() if p.pdbs]
    assert protected and all(p.disruption_allowed is not None for p in pods.values())
    # minAvailable = running - 1: each budget allows exactly one disruption.
    assert all(b.disruptions_allowed == 1 for b in budgets) and all(p.disruption_allowed for p in protected)


async def test_readings_are_stamped_when_complete_and_the_work_counts_against_the_tick() -> None:
    seen = [T0]

    def clock() -> datetime:  # every look at the clock finds 1 s of work done since the last
        seen[0] += timedelta(seconds=1)
        return seen[0]

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    store = ClusterStore(clock=lambda: seen[0])
    task = asyncio.create_task(DemoSource(churn=False, tick_s=2.0, clock=clock, sleep=sleep).run(store))
    await poll(lambda: len(slept), lambda n: n >= 3, what="three ticks")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # The clock is read at the start (T0+1 s), then at each tick's start (even seconds) and end (odd ones).
    assert slept[:3] == [1.0, 1.0, 1.0]  # the tick's 1 s of work taken off its 2 s
    last = store.snapshot().metrics.last_success
    assert last is not None and (last - T0).total_seconds() % 2 == 1  # stamped at the end, not the start
