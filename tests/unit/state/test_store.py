"""ClusterStore + join: the Snapshot a fleet of records and samples turns into."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from typing import Any

import pytest

from gpuctl.model import Alert, Changes, Snapshot, WatchHealth
from gpuctl.state.changes import diff
from gpuctl.state.join import Joined, JoinInputs
from gpuctl.state.records import Kind, NamespaceRecord, NodeRecord, PodRecord, QuotaRecord
from gpuctl.state.store import ClusterStore

from .factories import at, batch, node, pod, quota, sample


class Clock:
    def __init__(self, seconds: float = 0) -> None:
        self.seconds = seconds

    def __call__(self) -> datetime:
        return at(self.seconds)


def make_store(clock: Clock | None = None, **kw: object) -> ClusterStore:
    return ClusterStore(clock=clock or Clock(), idle_window_s=600, refresh_s=10, **kw)  # type: ignore[arg-type]


def fleet(store: ClusterStore) -> None:
    store.replace(Kind.NODE, [node("n1", 2, labels={"karpenter.sh/nodepool": "train"}), node("n2", 2)])
    store.replace(
        Kind.POD,
        [
            pod("ml", "busy", "n1", 1),
            pod("ml", "lazy", "n1", 1),
            pod("ml", "done", "n1", 1, phase="Succeeded"),
            pod("cv", "waiting", None, 2, phase="Pending"),
        ],
    )
    store.replace(Kind.QUOTA, [quota("ml", 4, 2), quota("ml", 3, 2, name="tighter")])
    store.replace(Kind.NAMESPACE, [NamespaceRecord("ml"), NamespaceRecord("cv"), NamespaceRecord("empty")])
    for kind in (Kind.REPLICASET, Kind.JOB, Kind.PDB):
        store.replace(kind, [])


def by_key(snap: Snapshot) -> dict[str, object]:
    return {**{g.key: g for g in snap.gpus}, **{p.key: p for p in snap.pods}}


def test_join_a_small_fleet() -> None:
    clock = Clock(0)
    store = make_store(clock)
    store.set_metrics_source("prometheus")
    fleet(store)
    for t in (0, 300, 600):  # readings no further apart than the grace period (300 s)
        clock.seconds = t
        store.apply_metrics(
            batch(t, sample("n1", 0, 80.0, "ml/busy", mem_used_mib=1000.0, mem_free_mib=3000.0), sample("n1", 1, 1.0, "ml/lazy"))
        )
    snap = store.snapshot()
    gpus = {g.key: g for g in snap.gpus}
    assert set(gpus) == {"n1/0", "n1/1", "n2/0", "n2/1"}  # n2 has no samples but still shows up
    assert gpus["n1/0"].pool == "train" and gpus["n1/0"].mem_total_mib == 4000 and not gpus["n1/0"].idle
    assert gpus["n1/1"].idle and gpus["n1/1"].idle_for_s == 600
    assert gpus["n2/0"].util_pct is None and gpus["n2/0"].pool == "NVIDIA-A100-SXM4-80GB"

    nodes = {n.name: n for n in snap.nodes}
    assert nodes["n1"].gpu_requested == 2  # the Succeeded pod no longer counts
    assert nodes["n2"].gpu_requested == 0

    pods = {p.key: p for p in snap.pods}
    assert pods["ml/lazy"].idle and pods["ml/lazy"].gpu_keys == ("n1/1",) and pods["ml/lazy"].util_pct == 1.0
    assert not pods["ml/busy"].idle and pods["ml/busy"].util_pct == 80.0
    assert pods["cv/waiting"].gpu_keys == () and not pods["cv/waiting"].idle

    ns = {n.name: n for n in snap.namespaces}
    assert set(ns) == {"ml", "cv"}  # "empty" has no GPUs and no GPU quota
    assert ns["ml"].gpu_quota_hard == 3 and ns["ml"].gpu_quota_used == 2  # tightest quota wins
    assert ns["ml"].gpus_requested == 2 and ns["ml"].gpus_busy == 1 and ns["ml"].gpus_idle == 1
    assert ns["ml"].gpu_hours == pytest.approx(2 * 600 / 3600)  # two scheduled 1-GPU pods, created 10 minutes ago
    assert ns["cv"].gpu_quota_hard is None and ns["cv"].gpus_requested == 2 and ns["cv"].gpu_hours == 0

    pools = {p.name: p for p in snap.pools}
    assert pools["train"].gpus_total == 2 and pools["train"].gpus_allocated == 2 and pools["train"].gpus_idle == 1
    assert pools["NVIDIA-A100-SXM4-80GB"].nodes == 1 and pools["NVIDIA-A100-SXM4-80GB"].gpus_allocated == 0

    assert snap.metrics.source == "prometheus" and not snap.metrics.stale and snap.metrics.age_s == 0
    Snapshot.model_validate_json(snap.model_dump_json())  # what `snapshot --json` prints parses back


def test_mig_instances_and_quota_key_variants() -> None:
    store = make_store()
    store.replace(Kind.NODE, [node("m1", 0, labels={"nvidia.com/gpu.count": "1", "nvidia.com/mig.capable": "true"}, mig={"1g.10gb": 7})])
    store.replace(Kind.POD, [pod("ml", "small", "m1", 0, mig={"1g.10gb": 2})])
    store.replace(
        Kind.QUOTA,
        [
            # Kubernetes enforces extended resources only as requests.*: a limits.* key is no limit at all.
            quota("ml", 5, 1, key="limits.nvidia.com/gpu"),
            QuotaRecord(
                "ml",
                "mig",
                {"requests.nvidia.com/mig-1g.10gb": 4, "requests.nvidia.com/mig-2g.20gb": 1},
                {"requests.nvidia.com/mig-1g.10gb": 2},
            ),
            quota("ml", 3, 2, key="requests.nvidia.com/mig-1g.10gb", name="mig-tighter"),
        ],
    )
    store.apply_metrics(batch(0, sample("m1", 0, 50.0, "ml/small", mig_instance=3, mig_profile="1g.10gb")))
    snap = store.snapshot()
    node_ = snap.nodes[0]
    assert node_.mig_allocatable == {"nvidia.com/mig-1g.10gb": 7} and node_.mig_requested == {"nvidia.com/mig-1g.10gb": 2}
    assert node_.mig_capable and snap.pools[0].gpus_total == 7 and snap.pools[0].gpus_allocated == 2
    assert [g.key for g in snap.gpus] == ["m1/0/mig3"]  # index 0 covered by the MIG sample: no placeholder
    assert snap.pods[0].gpus_total == 2 and snap.pods[0].gpu_keys == ("m1/0/mig3",)
    space = snap.namespaces[0]
    assert space.gpu_quota_hard is None and space.gpu_quota_used == 0
    assert space.mig_quota_hard == {"nvidia.com/mig-1g.10gb": 3, "nvidia.com/mig-2g.20gb": 1}  # the lowest limit binds
    assert space.mig_quota_used == {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 0}


def test_time_sliced_gpus_count_once_and_their_requests_as_slices() -> None:
    store = make_store()
    sliced = {"nvidia.com/gpu.replicas": "4", "nvidia.com/gpu.count": "2", "karpenter.sh/nodepool": "shared"}
    renamed = NodeRecord(
        "r1",
        {"nvidia.com/gpu.replicas": "4", "karpenter.sh/nodepool": "shared"},  # no count label: replicas divide
        capacity={"nvidia.com/gpu.shared": 8},
        allocatable={"nvidia.com/gpu.shared": 4},  # one GPU unhealthy: all its replicas go
    )
    store.replace(Kind.NODE, [node("s1", 8, labels=sliced), renamed, node("w1", 2, labels={"karpenter.sh/nodepool": "shared"})])
    slice_pod = PodRecord("ml", "renamed", "r1", "Running", {"nvidia.com/gpu.shared": 3})
    store.replace(Kind.POD, [pod("ml", "a", "s1", 1), pod("ml", "b", "s1", 2), slice_pod, pod("ml", "whole", "w1", 1)])
    snap = store.snapshot()
    nodes = {n.name: n for n in snap.nodes}
    s1, r1, w1 = nodes["s1"], nodes["r1"], nodes["w1"]
    assert (s1.gpu_capacity, s1.gpu_allocatable, s1.gpu_replicas, s1.gpu_slices_allocatable) == (2, 2, 4, 8)
    assert (s1.gpu_requested, s1.gpu_slices_requested, s1.gpus_sliced_in_use) == (0, 3, 1)
    assert (r1.gpu_capacity, r1.gpu_allocatable, r1.gpu_slices_allocatable, r1.gpu_slices_requested) == (2, 1, 4, 3)
    assert (w1.gpu_capacity, w1.gpu_replicas, w1.gpu_requested, w1.gpu_slices_requested) == (2, 1, 1, 0)
    (pool,) = snap.pools
    assert (pool.gpus_total, pool.gpus_allocated) == (2 + 1 + 2, 1 + 1 + 1)
    assert (pool.gpu_slices_total, pool.gpu_slices_allocated) == (8 + 4, 3 + 3)
    # Placeholders: one per physical GPU, not per slice.
    assert sorted(g.key for g in snap.gpus) == ["r1/0", "r1/1", "s1/0", "s1/1", "w1/0", "w1/1"]
    pods = {p.key: p for p in snap.pods}
    assert (pods["ml/renamed"].gpus, pods["ml/renamed"].gpu_slices, pods["ml/renamed"].gpus_total) == (0, 3, 3)
    assert {n.name: n.gpus_requested for n in snap.namespaces} == {"ml": 7}


def test_snapshot_is_cached_until_a_mutation() -> None:
    clock = Clock()
    store = make_store(clock)
    fleet(store)
    first = store.snapshot()
    assert store.snapshot() is first
    store.upsert(pod("ml", "new", "n2", 1))
    second = store.snapshot()
    assert second is not first and second.generation == first.generation + 1
    clock.seconds = 10  # refresh interval passed: rebuilt so ages move
    assert store.snapshot() is not second


def test_replace_is_exact_and_delete_removes() -> None:
    store = make_store()
    fleet(store)
    store.replace(Kind.POD, [pod("ml", "busy", "n1", 1)])
    assert [p.key for p in store.snapshot().pods] == ["ml/busy"]
    store.delete(Kind.NODE, "n2")
    store.delete(Kind.NODE, "never-existed")
    assert [n.name for n in store.snapshot().nodes] == ["n1"]
    assert store.listed == frozenset(Kind)


def test_metrics_staleness() -> None:
    clock = Clock(0)
    store = make_store(clock)
    assert store.snapshot().metrics.stale  # nothing yet
    store.apply_metrics(batch(0, sample("n1", 0, 50.0)))
    assert not store.snapshot().metrics.stale
    clock.seconds = 30  # exactly 3 refresh intervals: not yet
    assert not store.snapshot().metrics.stale
    clock.seconds = 31
    health = store.snapshot().metrics
    assert health.stale and health.age_s == 31
    store.apply_metrics(batch(31, sample("n1", 0, 50.0)))
    store.metrics_failed("prometheus: connection refused", at(32))
    health = store.snapshot().metrics
    assert health.stale and health.error == "prometheus: connection refused"
    assert store.snapshot().gpus[0].util_pct == 50.0  # last values kept, flagged stale
    store.apply_metrics(batch(33, sample("n1", 0, 60.0), rejected=2))
    health = store.snapshot().metrics
    assert not health.stale and health.error is None and health.series_rejected == 2


def test_stale_after_is_configurable() -> None:
    clock = Clock(0)
    store = make_store(clock, stale_after_s=5)
    store.apply_metrics(batch(0, sample("n1", 0, 50.0)))
    clock.seconds = 6
    store.upsert(node("n1"))
    assert store.snapshot().metrics.stale


def test_backfilled_idle_clock_shows_in_snapshot() -> None:
    store = make_store()
    store.replace(Kind.POD, [pod("ml", "lazy", "n1", 1)])
    store.backfill_idle({"n1/0": at(-3600)})
    store.apply_metrics(batch(0, sample("n1", 0, 0.0, "ml/lazy")))
    gpu = store.snapshot().gpus[0]
    assert gpu.idle and gpu.idle_for_s == 3600


def test_health_alerts_and_listeners() -> None:
    clock = Clock(5)
    store = make_store(clock)
    calls: list[int] = []
    remove = store.add_listener(lambda: calls.append(1))
    store.set_watch_health(WatchHealth(source="kubernetes", connected=True, context="kind-gpu"))
    store.set_watch_health(WatchHealth(source="kubernetes", connected=True, context="kind-gpu"))  # no change
    store.set_alerts([Alert(name="GpuXid", node="n1")])
    store.upsert(node("n1"))
    assert len(calls) == 3
    snap = store.snapshot()
    assert snap.watch.connected and snap.watch.last_event == at(5) and snap.alerts[0].name == "GpuXid"
    remove()
    store.upsert(node("n2"))
    assert len(calls) == 3


def test_old_batch_is_ignored() -> None:
    store = make_store()
    store.apply_metrics(batch(10, sample("n1", 0, 50.0)))
    store.apply_metrics(batch(5, sample("n1", 0, 99.0)))
    assert store.snapshot().gpus[0].util_pct == 50.0


def test_held_gpus_are_busy_idle_or_quiet() -> None:
    clock = Clock(0)
    store = make_store(clock)
    fleet(store)
    store.replace(Kind.POD, [pod("ml", "busy", "n1", 1), pod("ml", "quiet", "n1", 1), pod("cv", "unmeasured", "n2", 1)])
    # "quiet" is under the threshold, but for less than the idle window.
    store.apply_metrics(batch(0, sample("n1", 0, 80.0, "ml/busy"), sample("n1", 1, 1.0, "ml/quiet"), sample("n2", 0, None, "cv/unmeasured")))
    gpus = {g.key: g for g in store.snapshot().gpus}
    assert (gpus["n1/0"].busy, gpus["n1/0"].idle) == (True, False)
    assert (gpus["n1/1"].busy, gpus["n1/1"].idle) == (False, False)
    assert (gpus["n2/0"].busy, gpus["n2/0"].idle) == (False, False)
    namespaces = {n.name: n for n in store.snapshot().namespaces}
    assert (namespaces["ml"].gpus_busy, namespaces["ml"].gpus_idle) == (1, 0)
    assert (namespaces["cv"].gpus_busy, namespaces["cv"].gpus_idle) == (0, 0)


def test_metrics_retry_time_is_reported_until_a_refresh_succeeds() -> None:
    clock = Clock(0)
    store = make_store(clock)
    fleet(store)
    store.metrics_failed("connection refused", at(0), retry_at=at(4))
    health = store.snapshot().metrics
    assert health.stale and health.error == "connection refused" and health.retry_at == at(4)
    clock.seconds = 4
    store.apply_metrics(batch(4, sample("n1", 0, 50.0, "ml/busy")))
    health = store.snapshot().metrics
    assert not health.stale and health.error is None and health.retry_at is None


def test_a_stopped_source_freezes_only_what_it_fed() -> None:
    clock = Clock(10)
    store = make_store(clock)
    store.set_watch_health(WatchHealth(source="demo", connected=True, context="demo", relists=2))
    store.set_metrics_source("demo")
    store.apply_metrics(batch(10, sample("n1", 0, 80.0, "ml/a")))
    store.source_failed("prometheus-alerts", "boom (RuntimeError)")  # feeds neither health
    snap = store.snapshot()
    assert snap.watch.connected and not snap.metrics.stale
    assert [(f.source, f.error, f.since) for f in snap.failures] == [("prometheus-alerts", "boom (RuntimeError)", at(10))]

    clock.seconds = 11
    store.source_failed("demo", "'name' (KeyError)")  # the demo feeds both
    snap = store.snapshot()
    assert [f.source for f in snap.failures] == ["prometheus-alerts", "demo"]
    assert not snap.watch.connected and snap.watch.relists == 2 and snap.watch.retry_at is None
    assert snap.watch.error == snap.metrics.error == "the demo source stopped: 'name' (KeyError)"
    assert snap.metrics.stale and snap.metrics.retry_at is None
    assert Snapshot.model_validate_json(snap.model_dump_json()) == snap  # and it is in the JSON


# -- the join in a worker thread ----------------------------------------------------------


async def test_a_join_in_a_thread_is_the_same_join() -> None:
    store, twin = make_store(), make_store()
    for s in (store, twin):
        fleet(s)
        s.apply_metrics(batch(0, sample("n1", 0, 90.0, "ml/busy"), sample("n1", 1, 1.0, "ml/lazy")))
    threaded = await store.snapshot_in_thread()
    assert threaded.model_dump() == {**twin.snapshot().model_dump(), "generation": threaded.generation}
    assert store.snapshot() is threaded  # nothing changed since: cached as snapshot() would be


async def test_what_changes_while_a_thread_joins_waits_for_the_next_join() -> None:
    store = make_store()
    fleet(store)
    first = store.snapshot()
    entered, release = threading.Event(), threading.Event()
    join = store._joiner.join

    def held_join(inputs: JoinInputs) -> Joined:
        entered.set()
        release.wait(10)
        return join(inputs)

    store._joiner.join = held_join  # type: ignore[method-assign]
    store.upsert(pod("ml", "early", "n2", 1))
    running = asyncio.create_task(store.snapshot_in_thread())
    assert await asyncio.to_thread(entered.wait, 10)
    store.upsert(pod("ml", "late", "n2", 1))  # the loop runs on: taken in while the thread joins
    release.set()
    during = await running
    assert "ml/early" in {p.key for p in during.pods} and "ml/late" not in {p.key for p in during.pods}
    assert during.generation == first.generation + 1
    store._joiner.join = join  # type: ignore[method-assign]
    after = store.snapshot()  # not the cached result of the join above: that one missed a pod
    assert after is not during and "ml/late" in {p.key for p in after.pods}
    assert store.changes(during, after).pods == {"ml/late"}


async def test_a_cancelled_caller_leaves_its_join_to_finish_and_let_go_of_the_lock() -> None:
    store = make_store()
    fleet(store)
    store.snapshot()
    busy = threading.Event()
    store._workers.submit(busy.wait, 10)  # the join thread is busy: the next join waits in its queue
    store.upsert(pod("ml", "early", "n2", 1))
    caller = asyncio.create_task(store.snapshot_in_thread())
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    assert caller.cancelled()
    store.upsert(pod("ml", "late", "n2", 1))
    busy.set()
    # The queued join still ran (its rows are what the next one builds on) and let go of the
    # lock: joins in the thread and on the loop both work after it, and see everything.
    threaded = await asyncio.wait_for(store.snapshot_in_thread(), 10)
    assert {"ml/early", "ml/late"} <= {p.key for p in threaded.pods}
    store.upsert(pod("ml", "later", "n2", 1))
    assert "ml/later" in {p.key for p in store.snapshot().pods}


async def test_a_second_caller_waits_for_the_join_in_the_thread_without_blocking_the_loop() -> None:
    store = make_store()
    fleet(store)
    store.snapshot()
    entered, release = threading.Event(), threading.Event()
    join = store._joiner.join

    def held_join(inputs: JoinInputs) -> Joined:
        entered.set()
        release.wait(10)
        return join(inputs)

    store._joiner.join = held_join  # type: ignore[method-assign]
    store.upsert(pod("ml", "early", "n2", 1))
    first = asyncio.create_task(store.snapshot_in_thread())
    assert await asyncio.to_thread(entered.wait, 10)
    store.upsert(pod("ml", "late", "n2", 1))
    second = asyncio.create_task(store.snapshot_in_thread())
    await asyncio.sleep(0)  # the second caller waits for the first join; the loop runs on:
    store.upsert(pod("ml", "later", "n2", 1))
    release.set()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert "ml/late" not in {p.key for p in one.pods}
    assert {"ml/late", "ml/later"} <= {p.key for p in two.pods} and two.generation == one.generation + 1
    assert store.changes(one, two).pods == {"ml/late", "ml/later"}


async def test_changes_in_the_thread_are_the_changes_and_a_join_meanwhile_waits_for_them() -> None:
    store = make_store()
    fleet(store)
    old = await store.snapshot_in_thread()
    store.upsert(pod("ml", "early", "n2", 1))
    store.snapshot()  # another reader's join: the log no longer goes from `old` to `new` in one step
    store.upsert(pod("ml", "second", "n2", 1))
    new = await store.snapshot_in_thread()
    entered, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []
    logged = store._log.changes

    def held(*args: Any, **kw: Any) -> Changes | None:
        threads.append(threading.current_thread())
        entered.set()
        release.wait(10)
        return logged(*args, **kw)

    store._log.changes = held  # type: ignore[method-assign]
    found = asyncio.create_task(store.changes_in_thread(old, new))
    assert await asyncio.to_thread(entered.wait, 10)
    store.upsert(pod("ml", "late", "n2", 1))
    joining = asyncio.create_task(store.snapshot_in_thread())  # the changes hold the join lock: it waits
    await asyncio.sleep(0)
    assert not joining.done()
    release.set()
    assert (await asyncio.wait_for(found, 10)).pods == {"ml/early", "ml/second"}
    assert "ml/late" in {p.key for p in (await asyncio.wait_for(joining, 10)).pods}
    assert threads and threading.main_thread() not in threads


async def test_closing_the_store_while_a_join_waits_for_its_thread_still_lets_go_of_the_lock() -> None:
    store = make_store()
    fleet(store)
    busy = threading.Event()
    store._workers.submit(busy.wait, 10)
    caller = asyncio.create_task(store.snapshot_in_thread())
    await asyncio.sleep(0)  # the join is queued behind the busy thread
    caller.cancel()
    store.close()
    busy.set()
    await asyncio.gather(caller, return_exceptions=True)
    snap = await asyncio.wait_for(asyncio.to_thread(store.snapshot), 10)  # would hang on a lock never let go
    assert {n.name for n in snap.nodes} == {"n1", "n2"}


def test_batches_wait_for_a_join_but_not_without_end() -> None:
    # Nobody takes snapshots: the store feeds the idle clock itself rather than hold every batch.
    store, twin = make_store(), make_store()
    for s in (store, twin):
        fleet(s)
    for i in range(12):
        store.apply_metrics(batch(60 * i, sample("n1", 1, 1.0, "ml/lazy")))
        twin.apply_metrics(batch(60 * i, sample("n1", 1, 1.0, "ml/lazy")))
        twin.snapshot()
    assert len(store._idle_queue) <= 5
    lazy = {g.key: g for g in store.snapshot().gpus}["n1/1"]
    assert lazy.idle and lazy.idle_for_s == 660 == {g.key: g for g in twin.snapshot().gpus}["n1/1"].idle_for_s


def test_the_first_batch_after_placeholders_is_answered_from_the_log() -> None:
    # A MIG node's placeholders (n1/0, n1/1) give way to instances under other keys: the join
    # replaces every row and removes as many; the change log still holds it (no full diff).
    store = make_store()
    store._log.budget = 0  # as at 12,500 GPUs: the log's size is bounded by the rows, not by the budget
    store.replace(Kind.NODE, [node("n1", 0, labels={"nvidia.com/gpu.count": "2"}, mig={"1g.10gb": 4})])
    before = store.snapshot()
    assert {g.key for g in before.gpus} == {"n1/0", "n1/1"}
    store.apply_metrics(batch(0, *(sample("n1", i // 2, 10.0, mig_instance=i % 2, mig_profile="1g.10gb") for i in range(4))))
    after = store.snapshot()
    assert store._rows is not None and store._log.changes(before, after, store._rows) is not None
    assert store.changes(before, after) == diff(before, after)


# -- a refresh with far fewer GPUs: partial, however fresh --------------------------------


def test_a_refresh_with_far_fewer_gpus_is_a_gap_not_a_smaller_fleet() -> None:
    clock = Clock(0)
    store = make_store(clock)
    fleet(store)
    full = [sample("n1", 0, 90.0, "ml/busy"), sample("n1", 1, 1.0, "ml/lazy"), sample("n2", 0, 0.0), sample("n2", 1, 0.0)]
    store.apply_metrics(batch(0, *full))
    health = store.snapshot().metrics
    assert (health.gpus_reported, health.gpus_missing, health.missing_since) == (4, 0, None)
    clock.seconds = 15
    store.apply_metrics(batch(15, full[0]))  # a Prometheus restart: one series of four came back
    health = store.snapshot().metrics
    assert not health.stale and (health.gpus_reported, health.gpus_missing, health.missing_since) == (1, 3, at(15))
    clock.seconds = 30
    store.apply_metrics(batch(30))  # nothing at all: still counted against the last full refresh
    health = store.snapshot().metrics
    assert (health.gpus_reported, health.gpus_missing, health.missing_since) == (0, 4, at(15))
    clock.seconds = 45
    store.apply_metrics(batch(45, *full[:2]))  # half of them: enough again
    health = store.snapshot().metrics
    assert (health.gpus_reported, health.gpus_missing, health.missing_since) == (2, 0, None)


def test_gpus_of_a_node_that_went_are_not_missing() -> None:
    clock = Clock(0)
    store = make_store(clock)
    fleet(store)
    store.apply_metrics(batch(0, sample("n1", 0, 90.0, "ml/busy"), sample("n2", 0, 0.0), sample("n2", 1, 0.0)))
    store.delete(Kind.NODE, "n2")
    clock.seconds = 15
    store.apply_metrics(batch(15, sample("n1", 0, 90.0, "ml/busy")))  # a third: n2's GPUs went with n2
    assert store.snapshot().metrics.gpus_missing == 0
