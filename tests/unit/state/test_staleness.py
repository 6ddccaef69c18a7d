"""Per-GPU staleness in the store and the join: a stale GPU is never busy or idle, and never idle evidence.

The Prometheus source decides which samples are stale (tests/integration/test_prometheus.py
checks that against a real Prometheus); here the samples come flagged.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore

from .factories import at, batch, node, pod, sample


class Clock:
    def __init__(self, seconds: float = 0) -> None:
        self.seconds = seconds

    def __call__(self) -> datetime:
        return at(self.seconds)


def make_store(clock: Clock) -> ClusterStore:
    store = ClusterStore(clock=clock, idle_window_s=600, refresh_s=10)
    store.replace(Kind.NODE, [node("n1", 2), node("n2", 1)])
    store.replace(Kind.POD, [pod("ml", "a", "n1", 1), pod("ml", "b", "n1", 1), pod("ml", "c", "n2", 1)])
    return store


def test_a_stale_gpu_is_neither_busy_nor_idle_and_shows_its_last_values() -> None:
    clock = Clock(0)
    store = make_store(clock)
    for t in range(0, 800, 100):  # readings within the idle clock's grace period of each other
        clock.seconds = t
        store.apply_metrics(batch(t, sample("n1", 0, 1.0, "ml/a"), sample("n1", 1, 90.0, "ml/b"), sample("n2", 0, 1.0, "ml/c")))
    gpus = {g.key: g for g in store.snapshot().gpus}
    assert gpus["n1/0"].idle and gpus["n1/1"].busy and gpus["n2/0"].idle

    clock.seconds = 710
    store.apply_metrics(
        batch(
            710,
            sample("n1", 0, 1.0, "ml/a", stale=True),
            sample("n1", 1, 90.0, "ml/b", stale=True),
            sample("n2", 0, 1.0, "ml/c"),
        )
    )
    snap = store.snapshot()
    gpus = {g.key: g for g in snap.gpus}
    for key in ("n1/0", "n1/1"):
        assert gpus[key].stale and not gpus[key].idle and not gpus[key].busy and gpus[key].idle_for_s is None
    assert gpus["n1/1"].util_pct == 90.0  # the last value, flagged
    assert not gpus["n2/0"].stale and gpus["n2/0"].idle
    nodes = {n.name: n for n in snap.nodes}
    assert nodes["n1"].metrics_stale and not nodes["n2"].metrics_stale
    assert snap.metrics.gpus_stale == 2 and not snap.metrics.stale  # the feed itself is fine
    pods = {p.key: p for p in snap.pods}
    assert not pods["ml/a"].idle and pods["ml/c"].idle
    assert snap.pools[0].gpus_idle == 1
    assert {n.name: (n.gpus_busy, n.gpus_idle) for n in snap.namespaces}["ml"] == (0, 1)


def test_stale_samples_are_no_idle_evidence() -> None:
    clock = Clock(0)
    store = make_store(clock)
    # Frozen at 0 % for longer than the idle window: an exporter whose DCGM hangs.
    for t in range(0, 700, 100):
        clock.seconds = t
        store.apply_metrics(batch(t, sample("n1", 0, 0.0, "ml/a", stale=True)))
    clock.seconds = 701
    store.apply_metrics(batch(701, sample("n1", 0, 0.0, "ml/a")))  # moving again
    gpu = next(g for g in store.snapshot().gpus if g.key == "n1/0")
    assert not gpu.stale and not gpu.idle and gpu.idle_for_s == 0  # the streak starts now


def test_a_node_with_one_live_gpu_is_not_stale() -> None:
    clock = Clock(0)
    store = make_store(clock)
    store.apply_metrics(batch(0, sample("n1", 0, 1.0, stale=True), sample("n1", 1, 1.0)))
    assert not next(n for n in store.snapshot().nodes if n.name == "n1").metrics_stale
    clock.seconds = 1
    store.apply_metrics(batch(1, sample("n1", 0, 1.0, stale=True), sample("n1", 1, 1.0, stale=True)))
    assert next(n for n in store.snapshot().nodes if n.name == "n1").metrics_stale
    # A node whose GPUs have no readings at all (placeholders) is unmeasured, not stale.
    assert not next(n for n in store.snapshot().nodes if n.name == "n2").metrics_stale


def test_every_gpu_is_stale_when_the_last_refresh_is_too_old() -> None:
    clock = Clock(0)
    store = make_store(clock)
    for t in range(0, 800, 100):  # readings within the idle clock's grace period of each other
        clock.seconds = t
        store.apply_metrics(batch(t, sample("n1", 0, 1.0, "ml/a"), sample("n1", 1, 90.0, "ml/b")))
    assert store.snapshot().pools[0].gpus_idle == 1
    clock.seconds = 731  # 3 refresh intervals without a batch (Prometheus down)
    snap = store.snapshot()
    assert snap.metrics.stale
    assert all(g.stale and not g.idle and not g.busy for g in snap.gpus if g.util_pct is not None)
    assert snap.metrics.gpus_stale == 2 and snap.pools[0].gpus_idle == 0
    assert next(n for n in snap.nodes if n.name == "n1").metrics_stale
    clock.seconds = 732
    store.apply_metrics(batch(732, sample("n1", 0, 1.0, "ml/a"), sample("n1", 1, 90.0, "ml/b")))
    snap = store.snapshot()
    assert snap.metrics.gpus_stale == 0 and snap.pools[0].gpus_idle == 1


def test_history_failure_and_recovery_are_reported() -> None:
    clock = Clock(0)
    store = make_store(clock)
    store.history_failed("Prometheus query failed: HTTP Status Code 422", retry_at=at(60))
    health = store.snapshot().metrics
    assert health.history_error == "Prometheus query failed: HTTP Status Code 422" and health.history_retry_at == at(60)
    store.backfill_idle({})
    health = store.snapshot().metrics
    assert health.history_error is None and health.history_retry_at is None


def test_hosts_without_a_node_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0)
    store = ClusterStore(clock=clock, refresh_s=10)
    store.apply_metrics(batch(0, sample("n1", 0, 1.0), sample("other-cluster-1", 0, 1.0), sample("other-cluster-2", 0, 1.0)))
    assert store.snapshot().metrics.unmatched_hosts == 0  # nodes not listed yet: nothing to compare with
    with caplog.at_level(logging.WARNING, logger="gpuctl.state.store"):
        store.replace(Kind.NODE, [node("n1", 1)])
        assert store.snapshot().metrics.unmatched_hosts == 2
        store.upsert(node("other-cluster-1", 1))
        assert store.snapshot().metrics.unmatched_hosts == 1
        clock.seconds = 1
        store.apply_metrics(batch(1, sample("n1", 0, 1.0)))
        assert store.snapshot().metrics.unmatched_hosts == 0
        store.apply_metrics(batch(2, sample("n1", 0, 1.0), sample("other-cluster-3", 0, 1.0)))
        assert store.snapshot().metrics.unmatched_hosts == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "other-cluster-1, other-cluster-2" in warnings[0] and "--metrics-selector" in warnings[0]
