"""The incremental join and the change log answer exactly what a full join and a full diff answer.

Random sequences of record events (ReplicaSets, Jobs and disruption budgets
included, with owner chains that loop or lead to records of another uid),
relists, kinds turning unreadable, metrics batches (late, failed, malformed
ones included), idle backfills and clock ticks are fed to one store;
at random points its snapshot is checked against the original full join
(`reference_join`) and its hub's Changes against a full `diff`. At the end a
fresh store fed the same final state must give the same rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gpuctl.model import GpuPod, NamespaceUsage, PodRef, Snapshot, Taint
from gpuctl.state.changes import diff
from gpuctl.state.hub import SnapshotHub
from gpuctl.state.idle import IdleClock
from gpuctl.state.pools import pool_labels
from gpuctl.state.records import (
    GpuSample,
    JobRecord,
    Kind,
    MetricsBatch,
    NamespaceRecord,
    NodeRecord,
    PdbRecord,
    PodRecord,
    QuotaRecord,
    ReplicaSetRecord,
)
from gpuctl.state.selectors import LabelSelector, Requirement
from gpuctl.state.store import ClusterStore

from . import reference_join as reference
from .factories import T0, at, batch, node, pod, sample

WINDOW_S, GRACE_S = 600.0, 900.0
STALE_AFTER = timedelta(seconds=3 * 60)  # the stores below: refresh_s=60, stale after 3 refreshes
NODES = ("n0", "n1", "n2", "m0")
HOSTS = (*NODES, "ghost")  # "ghost": metrics for a host with no Node
NAMESPACES = ("ml", "cv", "batch")
PODS = tuple(f"{ns}/p{i}" for ns in NAMESPACES for i in range(3))
HOLDERS = (*PODS, "gone/p0")  # "gone/p0": metrics name a pod the store never had
QUOTA_KEYS = (
    reference.GPU_QUOTA,
    "requests.nvidia.com/mig-1g.10gb",
    "requests.nvidia.com/mig-2g.20gb",
    "requests.nvidia.com/gpu.shared",
    "limits.nvidia.com/gpu",  # not enforced by Kubernetes: never the namespace's limit
    "requests.cpu",
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


# -- records and samples ------------------------------------------------------------------


@st.composite
def node_records(draw: st.DrawFn) -> NodeRecord:
    labels = {"nvidia.com/gpu.product": draw(st.sampled_from(["NVIDIA-A100", "NVIDIA-H100"]))}
    pool = draw(st.sampled_from([None, "train", "infer"]))
    if pool:
        labels["karpenter.sh/nodepool"] = pool
    count = draw(st.sampled_from([None, "2", "x"]))
    if count:
        labels["nvidia.com/gpu.count"] = count
    if draw(st.booleans()):
        labels["nvidia.com/mig.capable"] = "true"
    replicas = draw(st.sampled_from([None, "1", "4", "x"]))
    if replicas:
        labels["nvidia.com/gpu.replicas"] = replicas
    resources = {"nvidia.com/gpu": draw(st.integers(0, 3))}
    if draw(st.booleans()):  # time-slicing with renameByDefault
        resources["nvidia.com/gpu.shared"] = draw(st.sampled_from([4, 8]))
    resources.update(draw(st.sampled_from([{}, {"nvidia.com/mig-1g.10gb": 2}, {"nvidia.com/mig-2g.20gb": 1}])))
    return NodeRecord(
        name=draw(st.sampled_from(NODES)),
        labels=labels,
        capacity=resources,
        allocatable=dict(resources),
        taints=draw(st.sampled_from([(), (Taint(key="gpu", effect="NoSchedule"),)])),
        unschedulable=draw(st.booleans()),
        ready=draw(st.booleans()),
        created=T0 - timedelta(days=1),
    )


@st.composite
def pod_records(draw: st.DrawFn) -> PodRecord:
    namespace, name = draw(st.sampled_from(PODS)).split("/")
    requests: dict[str, int] = {}
    for resource, most in (
        ("nvidia.com/gpu", 2),
        ("nvidia.com/gpu.shared", 3),
        ("nvidia.com/mig-1g.10gb", 2),
        ("nvidia.com/mig-2g.20gb", 1),
    ):
        if count := draw(st.integers(0, most)):
            requests[resource] = count
    created = draw(st.one_of(st.none(), st.integers(-7200, 900)))  # some "after now": clock skew
    owner_kind, owner_name = draw(st.sampled_from(OWNERS))
    return PodRecord(
        namespace=namespace,
        name=name,
        node=draw(st.sampled_from([*NODES, "ghost", None])),
        phase=draw(st.sampled_from(["Running", "Running", "Pending", "Succeeded", "Failed"])),
        gpu_requests=requests,
        owner_kind=owner_kind,
        owner_name=owner_name,
        created=None if created is None else T0 + timedelta(seconds=created, microseconds=draw(st.integers(0, 999_999))),
        deleting=draw(st.booleans()),
        uid=draw(st.sampled_from([None, "pod-uid"])),
        resource_version=draw(st.sampled_from([None, "1", "2"])),
        labels=draw(st.dictionaries(st.sampled_from(["app", "tier", "team"]), st.sampled_from(["a", "b"]), max_size=3)),
        owner_uid=draw(UIDS),
        ready=draw(st.booleans()),
    )


OWNERS = [(None, None), ("Job", "j0"), ("Job", "j1"), ("ReplicaSet", "rs0"), ("ReplicaSet", "rs1"), ("StatefulSet", "s")]
UIDS = st.sampled_from([None, "u1", "u2"])


@st.composite
def controller_records(draw: st.DrawFn, record: type[ReplicaSetRecord] | type[JobRecord], names: list[str]) -> Any:
    # Owners include Jobs and ReplicaSets, so chains grow past two links and may loop.
    owner_kind, owner_name = draw(st.sampled_from([("Deployment", "d0"), ("CronJob", "c0"), *OWNERS[1:5]]))
    return record(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=draw(st.sampled_from(names)),
        uid=draw(UIDS),
        owner_kind=owner_kind,
        owner_name=owner_name,
        owner_uid=draw(UIDS),
    )


SELECTORS = [
    None,
    LabelSelector(),  # empty: every pod of the namespace
    LabelSelector((Requirement("app", "=", frozenset({"a"})),)),
    LabelSelector((Requirement("app", "In", frozenset({"a", "b"})), Requirement("tier", "NotIn", frozenset({"b"})))),
    LabelSelector((Requirement("team", "Exists"),)),
    LabelSelector((Requirement("team", "DoesNotExist"),)),
]


@st.composite
def pdb_records(draw: st.DrawFn) -> PdbRecord:
    return PdbRecord(
        namespace=draw(st.sampled_from(NAMESPACES)),
        name=draw(st.sampled_from(["b0", "b1"])),
        selector=draw(st.sampled_from(SELECTORS)),
        min_available=draw(st.sampled_from([None, "1", "50%"])),
        disruptions_allowed=draw(st.integers(-1, 2)),
        current_healthy=draw(st.integers(0, 2)),
        desired_healthy=draw(st.integers(0, 2)),
        expected_pods=draw(st.integers(0, 3)),
        observed=draw(st.booleans()),
        uid=draw(UIDS),
        resource_version=draw(st.sampled_from([None, "7"])),
    )


@st.composite
def quota_records(draw: st.DrawFn) -> QuotaRecord:
    keys = draw(st.lists(st.sampled_from(QUOTA_KEYS), min_size=1, max_size=2, unique=True))
    with_used = draw(st.booleans())
    return QuotaRecord(
        namespace=draw(st.sampled_from([*NAMESPACES, "quota-only"])),
        name=draw(st.sampled_from(["gpu", "tight"])),
        hard={key: float(draw(st.integers(1, 8))) for key in keys},
        used={key: float(draw(st.integers(0, 8))) for key in keys} if with_used else {},
    )


namespace_records = st.builds(NamespaceRecord, name=st.sampled_from([*NAMESPACES, "empty"]))
RECORDS = {
    Kind.NODE: node_records(),
    Kind.POD: pod_records(),
    Kind.QUOTA: quota_records(),
    Kind.NAMESPACE: namespace_records,
    Kind.REPLICASET: controller_records(ReplicaSetRecord, ["rs0", "rs1"]),
    Kind.JOB: controller_records(JobRecord, ["j0", "j1"]),
    Kind.PDB: pdb_records(),
}


@st.composite
def samples(draw: st.DrawFn) -> GpuSample:
    mig = draw(st.sampled_from([None, None, 1, 2]))
    holder = draw(st.sampled_from([None, *HOLDERS]))
    used = draw(st.sampled_from([None, 1000.0, 2000.0]))
    return GpuSample(
        hostname=draw(st.sampled_from(HOSTS)),
        index=draw(st.integers(0, 3)),
        uuid=draw(st.sampled_from([None, "GPU-1"])),
        model=draw(st.sampled_from([None, "NVIDIA A100", "NVIDIA H100"])),
        mig_profile=None if mig is None else "1g.10gb",
        mig_instance=mig,
        pod=None if holder is None else PodRef(namespace=holder.split("/")[0], name=holder.split("/")[1]),
        util_pct=draw(st.sampled_from([None, 0.0, 1.0, 4.9, 5.0, 40.0, 100.0])),
        mem_used_mib=used,
        mem_free_mib=draw(st.sampled_from([None, 3000.0])),
        temp_c=draw(st.sampled_from([None, 40.0, 41.0])),
        power_w=draw(st.sampled_from([None, 300.0])),
        xid=draw(st.sampled_from([None, 79])),
        stale=draw(st.sampled_from([False, False, True])),
    )


def _key(kind: Kind, record: Any) -> str:
    return record.key  # type: ignore[no-any-return]


kinds = st.sampled_from(list(Kind))
OPS = st.one_of(
    kinds.flatmap(lambda k: RECORDS[k].map(lambda r: ("upsert", r))),
    kinds.flatmap(lambda k: RECORDS[k].map(lambda r: ("delete", k, r.key))),
    kinds.flatmap(lambda k: st.lists(RECORDS[k], max_size=8).map(lambda rs: ("replace", k, rs))),
    st.tuples(st.just("metrics"), st.sampled_from([-30, 0, 60, 300, 700]), st.lists(samples(), max_size=10)),
    st.tuples(st.just("backfill"), st.dictionaries(st.sampled_from([f"{h}/{i}" for h in HOSTS for i in range(4)]),
                                                   st.integers(-3600, 0), max_size=4)),
    st.just(("failed",)),
    st.tuples(st.just("unreadable"), st.frozensets(st.sampled_from([Kind.QUOTA, Kind.REPLICASET, Kind.JOB, Kind.PDB]))),
    st.tuples(st.just("tick"), st.sampled_from([1, 30, 700])),
    st.just(("snapshot",)),
    st.just(("snapshot_in_thread",)),
    st.just(("publish",)),
)


# -- checks -------------------------------------------------------------------------------


def _rows(snap: Snapshot | reference.Joined) -> dict[str, Sequence[BaseModel]]:
    return {
        "nodes": snap.nodes,
        "gpus": snap.gpus,
        "pools": snap.pools,
        "pods": snap.pods,
        "namespaces": snap.namespaces,
        "pdbs": snap.pdbs,
    }


def _without_hours(rows: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.__dict__.items() if k != "gpu_hours"} for row in rows]


def assert_matches_reference(snap: Snapshot, expected: reference.Joined) -> None:
    for part, rows in _rows(snap).items():
        want = _rows(expected)[part]
        assert len(rows) == len(want), part
        if part == "namespaces":
            # GPU-hours: now summed exactly in microseconds; the old join summed floats in store order.
            assert _without_hours(rows) == _without_hours(want)
            for got, old in zip(rows, want, strict=True):
                assert isinstance(got, NamespaceUsage) and isinstance(old, NamespaceUsage)
                assert got.gpu_hours == pytest.approx(old.gpu_hours, rel=1e-12, abs=1e-12)
        else:
            assert rows == want, part
        for got, old in zip(rows, want, strict=True):
            assert type(got) is type(old)
            assert list(got.__dict__) == list(type(got).model_fields)  # declaration order, as validation makes it
            assert got.model_fields_set == old.model_fields_set, part
    Snapshot.model_validate_json(snap.model_dump_json())


class Run:
    """One store under test, the history it was fed, and a mirror idle clock for the reference join."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.store = ClusterStore(clock=self.clock, idle_window_s=WINDOW_S, idle_grace_s=GRACE_S, refresh_s=60)
        self.hub = SnapshotHub(self.store)
        self.mirror = IdleClock(window_s=WINDOW_S, grace_s=GRACE_S)
        self.batch: MetricsBatch | None = None
        self.metrics_history: list[tuple[str, Any]] = []
        self.batch_at = T0
        self.published: Snapshot | None = None
        self.unreadable: frozenset[Kind] = frozenset()

    def apply(self, op: tuple[Any, ...]) -> None:
        store = self.store
        match op:
            case ("upsert", record):
                store.upsert(record)
            case ("delete", kind, key):
                store.delete(kind, key)
            case ("replace", kind, records):
                store.replace(kind, records)
            case ("metrics", step, samples_):
                self.batch_at += timedelta(seconds=step)
                new = MetricsBatch(at=self.batch_at, samples=tuple(samples_))
                store.apply_metrics(new)
                if self.mirror.observe(new.at, [s for s in new.samples if not s.stale]):  # as the store does
                    self.batch = new
                self.metrics_history.append(("metrics", new))
            case ("backfill", offsets):
                since = {key: self.batch_at + timedelta(seconds=s) for key, s in offsets.items()}
                store.backfill_idle(since)
                self.mirror.backfill(since)
                self.metrics_history.append(("backfill", since))
            case ("failed",):
                store.metrics_failed("connection refused", self.clock.now)
            case ("unreadable", kinds):
                store.set_unreadable(kinds)
                self.unreadable = kinds
            case ("tick", seconds):
                self.clock.now += timedelta(seconds=seconds)
            case ("snapshot",):
                self.check()
            case ("snapshot_in_thread",):  # the hub's way: the join in a worker thread
                snap = asyncio.run(self.store.snapshot_in_thread())
                assert_matches_reference(snap, self.reference(snap.taken_at))
            case ("publish",):
                self.check_publish()

    def reference(self, now: datetime) -> reference.Joined:
        return reference.join(
            reference.JoinInputs(
                nodes=self.store.records(Kind.NODE),  # type: ignore[arg-type]
                pods=self.store.records(Kind.POD),  # type: ignore[arg-type]
                quotas=self.store.records(Kind.QUOTA),  # type: ignore[arg-type]
                namespaces=self.store.records(Kind.NAMESPACE),  # type: ignore[arg-type]
                batch=self.batch,
                idle=self.mirror,
                pool_order=pool_labels(None),
                now=now,
                replicasets=self.store.records(Kind.REPLICASET),  # type: ignore[arg-type]
                jobs=self.store.records(Kind.JOB),  # type: ignore[arg-type]
                pdbs=self.store.records(Kind.PDB),  # type: ignore[arg-type]
                known=self.store.known,
                readings_stale=self.batch is not None and now - self.batch.at > STALE_AFTER,
            )
        )

    def check(self) -> Snapshot:
        snap = self.store.snapshot()  # cached up to refresh_s: its time, not the clock's
        assert_matches_reference(snap, self.reference(snap.taken_at))
        # The counts kept on the side, against the rows they count.
        assert snap.metrics.gpus_stale == sum(g.stale for g in snap.gpus)
        hosts = {s.hostname for s in self.batch.samples} if self.batch is not None else set()
        listed = Kind.NODE in self.store.listed
        assert snap.metrics.unmatched_hosts == (len(hosts - self.store.records(Kind.NODE).keys()) if listed else 0)
        return snap

    def check_publish(self) -> None:
        update = self.hub.publish()
        if update is None:
            assert self.store.snapshot() is self.published
            return
        expected = diff(self.published, update.snapshot, everything=update.changes.everything)
        assert update.changes == expected
        self.published = update.snapshot

    def fresh_copy(self) -> ClusterStore:
        """A new store fed the same final state: the metrics history, then each kind as it was: listed or not."""
        store = ClusterStore(clock=self.clock, idle_window_s=WINDOW_S, idle_grace_s=GRACE_S, refresh_s=60)
        for what, value in self.metrics_history:
            if what == "metrics":
                store.apply_metrics(value)
            else:
                store.backfill_idle(value)
        for kind in Kind:
            records = list(self.store.records(kind).values())  # the same order: same tie-breaks
            if kind in self.store.listed:
                store.replace(kind, records)
            else:  # upserted, never listed: not known to be complete (budget verdicts read so)
                for record in records:
                    store.upsert(record)
        store.set_unreadable(self.unreadable)
        return store


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(OPS, max_size=40))
def test_random_events_match_a_full_join_and_a_full_diff(ops: list[tuple[Any, ...]]) -> None:
    run = Run()
    for op in ops:
        run.apply(op)
    run.clock.now += timedelta(seconds=61)  # past refresh_s: both stores join at the same time
    final = run.check()
    run.check_publish()
    fresh = run.fresh_copy().snapshot()
    assert _rows(fresh) == _rows(final)  # exactly, GPU-hours included


# -- reuse: what an event does not touch stays the same object ----------------------------


def _store() -> tuple[Clock, ClusterStore]:
    clock = Clock()
    store = ClusterStore(clock=clock, idle_window_s=WINDOW_S, refresh_s=60)
    store.replace(Kind.NODE, [node("n1", 2, labels={"karpenter.sh/nodepool": "train"}), node("n2", 2)])
    store.replace(Kind.POD, [pod("ml", "a", "n1", 1), pod("ml", "b", "n2", 1), pod("cv", "c", "n2", 1)])
    store.apply_metrics(batch(0, sample("n1", 0, 50.0, "ml/a"), sample("n2", 0, 1.0, "ml/b"), sample("n2", 1, 80.0, "cv/c")))
    return clock, store


def test_a_pod_event_reuses_every_gpu_and_the_other_rows() -> None:
    _, store = _store()
    before = store.snapshot()
    store.upsert(dataclasses.replace(store.records(Kind.POD)["ml/b"], phase="Succeeded"))  # type: ignore[type-var]
    after = store.snapshot()
    assert after.gpus is before.gpus  # the whole tuple: a pod event cannot change a GPU row
    assert after.nodes[0] is before.nodes[0] and after.nodes[1] is not before.nodes[1]  # only n2's count moved
    pods = {p.key: (p, q) for p, q in zip(before.pods, after.pods, strict=True)}
    assert [k for k, (p, q) in pods.items() if p is not q] == ["ml/b"]
    assert store.changes(before, after) == diff(before, after)


def test_a_metrics_batch_leaves_nodes_alone_and_reuses_equal_rows() -> None:
    _, store = _store()
    before = store.snapshot()
    store.apply_metrics(batch(1, sample("n1", 0, 50.0, "ml/a"), sample("n2", 0, 1.0, "ml/b"), sample("n2", 1, 90.0, "cv/c")))
    after = store.snapshot()
    assert after.nodes is before.nodes and after.pools is before.pools
    same = {g.key for g, h in zip(before.gpus, after.gpus, strict=True) if g is h}
    assert same == {"n1/0", "n1/1"}  # equal readings keep their object; n2/0's idle clock moved, n2/1 its util
    assert {p.key for p, q in zip(before.pods, after.pods, strict=True) if p is not q} == {"ml/b", "cv/c"}
    changes = store.changes(before, after)
    assert changes == diff(before, after) and changes.gpus == {"n2/0", "n2/1"} and not changes.nodes


def test_changes_say_whether_the_gpus_are_the_same_ones_in_the_same_order() -> None:
    _, store = _store()
    first = store.snapshot()
    store.apply_metrics(batch(1, sample("n1", 0, 60.0, "ml/a"), sample("n2", 0, 2.0, "ml/b"), sample("n2", 1, 70.0, "cv/c")))
    refreshed = store.snapshot()
    changes = store.changes(first, refreshed)
    assert changes.same_gpus and len(changes.gpus) == 3 and changes == diff(first, refreshed)  # every reading, no GPU
    nodes = list(store.records(Kind.NODE).values())
    store.replace(Kind.NODE, [*nodes, node("n0", 1)])  # a node with a GPU, listed first
    store.snapshot()  # taken by someone else: the hub never sees it
    store.replace(Kind.NODE, nodes)  # and gone again
    back = store.snapshot()
    changes = store.changes(refreshed, back)  # across both joins: the same GPUs as before
    assert changes.same_gpus and changes == diff(refreshed, back)
    store.replace(Kind.NODE, [*nodes, node("n0", 1)])
    grown = store.snapshot()
    changes = store.changes(back, grown)
    assert not changes.same_gpus and changes == diff(back, grown) and grown.gpus[0].key == "n0/0"


def test_changes_across_skipped_snapshots_leave_out_what_changed_back() -> None:
    _clock, store = _store()
    first = store.snapshot()
    original = store.records(Kind.POD)["ml/a"]
    store.upsert(dataclasses.replace(original, phase="Pending"))  # type: ignore[type-var]
    store.snapshot()  # taken by someone else: the hub never sees it
    store.upsert(original)  # and back
    store.upsert(pod("ml", "new", "n1", 1))
    last = store.snapshot()
    changes = store.changes(first, last)
    assert changes == diff(first, last)
    assert "ml/a" not in changes.pods and "ml/new" in changes.pods


def test_changes_for_snapshots_the_log_no_longer_has_fall_back_to_a_diff() -> None:
    _clock, store = _store()
    first = store.snapshot()
    second = store.snapshot()
    store.upsert(pod("ml", "new", "n1", 1))
    third = store.snapshot()
    assert store.changes(second, third) == diff(second, third)
    # The log dropped what led up to `third`; `first` is still answered right, by a full diff.
    assert store.changes(first, third) == diff(first, third)
    store.upsert(pod("ml", "newer", "n1", 1))
    store.snapshot()
    assert store.changes(first, third) == diff(first, third)  # `third` is not the newest any more


def test_gpu_hours_are_exact_and_never_negative() -> None:
    clock, store = _store()
    clock.now = T0 + timedelta(seconds=600)
    store.upsert(pod("cv", "future", "n1", 2, created=at(1200)))  # created "after now": clock skew
    spaces = {n.name: n for n in store.snapshot().namespaces}
    assert spaces["cv"].gpu_hours == 600 / 3600  # "c" only: the future pod adds zero, not minus
    assert spaces["ml"].gpu_hours == 2 * 600 / 3600
    clock.now = T0 + timedelta(seconds=1800)
    spaces = {n.name: n for n in store.snapshot().namespaces}
    assert spaces["cv"].gpu_hours == (1800 + 2 * 600) / 3600


def test_a_key_twice_in_a_batch_shows_both_rows_as_sent() -> None:
    store = ClusterStore(clock=Clock(), idle_window_s=WINDOW_S, refresh_s=60)
    store.apply_metrics(batch(0, sample("h", 0, 10.0), sample("h", 0, 20.0)))  # a malformed batch
    first = store.snapshot()
    store.apply_metrics(batch(1, sample("h", 0, 20.0), sample("h", 0, 20.0)))
    second = store.snapshot()
    assert [g.util_pct for g in second.gpus] == [20.0, 20.0]
    assert store.changes(first, second) == diff(first, second) and "h/0" in diff(first, second).gpus


def test_a_failed_join_starts_over_next_time() -> None:
    _clock, store = _store()
    before = store.snapshot()
    store.upsert(pod("ml", "odd", "n1", 1, created=datetime(2026, 1, 1)))  # naive: the join cannot subtract it
    with pytest.raises(TypeError):
        store.snapshot()
    store.delete(Kind.POD, "ml/odd")
    after = store.snapshot()
    assert _rows(after) == _rows(before)
    assert store.changes(before, after) == diff(before, after)


def test_rows_are_made_like_validated_models() -> None:
    _, store = _store()
    snap = store.snapshot()
    for row in (*snap.gpus, *snap.nodes, *snap.pods, *snap.pools, *snap.namespaces):
        assert type(row).model_validate(row.model_dump()) == row
        assert list(row.__dict__) == list(type(row).model_fields)
    placeholder = next(g for g in snap.gpus if g.key == "n1/1")
    assert placeholder.model_fields_set == {"node", "pool", "index", "model"}
    copied = snap.pods[0].model_copy(update={"phase": "Failed"})  # a copy may add to its own fields-set only
    assert isinstance(copied, GpuPod) and copied.phase == "Failed" and snap.pods[0].phase == "Running"
    assert snap.pods[1].model_fields_set == set(GpuPod.model_fields)


def test_bulk_rows_share_their_dicts_keys() -> None:
    _, store = _store()
    before = store.snapshot()
    store.apply_metrics(batch(1, sample("n1", 0, 50.0, "ml/a"), sample("n2", 0, 1.0, "ml/b"), sample("n2", 1, 90.0, "cv/c")))
    after = store.snapshot()
    # Shared-key dicts are about half the size of the same dict made afresh (also after a pod row's GPU fields moved).
    for row in (*before.gpus, *after.gpus, *before.pods, *after.pods):
        assert sys.getsizeof(row.__dict__) < sys.getsizeof(dict(row.__dict__)) * 3 // 4, row
