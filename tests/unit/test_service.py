"""open_cluster: sources start, readiness, failures surface as gpuctl errors, everything stops on exit."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpuctl.config import Settings
from gpuctl.errors import ClusterUnreachable, GpuctlError, SourceStopped
from gpuctl.model import WatchHealth
from gpuctl.playbooks.service import LiveSnapshots
from gpuctl.service import open_cluster
from gpuctl.state.join import Joined, JoinInputs
from gpuctl.state.records import Kind, MetricsBatch
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll
from tests.unit.state.factories import node, pod


def settings(**kw: object) -> Settings:
    return Settings(config_file=None, **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


async def test_demo_cluster_is_ready_and_publishes() -> None:
    async with open_cluster(settings(demo=True)) as cluster:
        snap = await cluster.wait_ready(10)
        assert cluster.ready and snap.nodes and snap.pods and snap.metrics.source == "demo"
        async with cluster.subscribe() as updates:
            first = await anext(updates)
            assert first.changes.everything
        tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith(("source-", "snapshot-hub"))]
        assert tasks
    assert all(t.done() for t in tasks)  # nothing left running after exit: open_cluster awaited them all


async def test_unreachable_cluster_fails_fast(dead_kubeconfig: Path) -> None:
    async with open_cluster(settings(kubeconfig=dead_kubeconfig)) as cluster:
        with pytest.raises(ClusterUnreachable, match=r"127\.0\.0\.1:1"):
            await cluster.wait_ready(30)
        health = cluster.store.snapshot().watch
        assert health.source == "kubernetes" and not health.connected and health.context == "dead"
        assert health.error is not None and "cannot connect" in health.error


async def test_unreachable_cluster_without_fail_fast_waits_then_explains(dead_kubeconfig: Path) -> None:
    async with open_cluster(settings(kubeconfig=dead_kubeconfig)) as cluster:
        # First let a connection attempt fail (how long that takes depends on the machine's load) ...
        await poll(lambda: cluster.store.snapshot().watch.error, what="a failed connection attempt")
        # ... then waiting without fail_fast times out and explains with that failure.
        with pytest.raises(ClusterUnreachable, match="cannot connect"):
            await cluster.wait_ready(0.5, fail_fast=False)


class Broken:
    name = "broken"

    async def run(self, store: ClusterStore) -> None:
        raise RuntimeError("boom")


class ListsOnly:
    name = "lists"

    async def run(self, store: ClusterStore) -> None:
        for kind in Kind:
            store.replace(kind, [])
        await asyncio.Event().wait()


async def test_a_crashed_source_is_reported_not_swallowed() -> None:
    async with open_cluster(settings(demo=True), sources=[Broken()]) as cluster:
        with pytest.raises(GpuctlError, match="the broken source stopped: boom"):
            await cluster.wait_ready(10)


async def test_lists_without_metrics_return_on_timeout() -> None:
    async with open_cluster(settings(demo=True), sources=[ListsOnly()]) as cluster:
        snap = await cluster.wait_ready(0.5)  # demo mode expects metrics; they never come: still a snapshot
        assert snap.metrics.stale and not cluster.ready


class Feeds:
    """Lists every kind and feeds one metrics batch as `name`; stops with `error` once `stop` is set."""

    listed, failure = True, None  # what open_cluster asks of a source named "kubernetes"

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.stop = asyncio.Event()

    async def run(self, store: ClusterStore) -> None:
        if self.name == "kubernetes":
            store.set_watch_health(WatchHealth(source="kubernetes", connected=True, context="test"))
            for kind in Kind:
                store.replace(kind, [])
        else:
            store.set_metrics_source("prometheus")
            store.apply_metrics(MetricsBatch(at=datetime.now(UTC), samples=()))
        await self.stop.wait()
        if self.error is not None:
            raise self.error


async def test_a_watcher_that_stops_after_ready_shows_in_every_snapshot_and_fails_one_shots() -> None:
    watch, metrics = Feeds("kubernetes", KeyError("name")), Feeds("prometheus")
    async with open_cluster(settings(), sources=[watch, metrics]) as cluster:
        first = await cluster.wait_ready(10)
        assert first.failures == () and first.watch.connected
        async with cluster.subscribe() as updates:
            watch.stop.set()
            # What every consumer gets: an update that says so (not just a line in the log).
            update = await poll(lambda: anext(updates), lambda u: bool(u.snapshot.failures), timeout_s=10, interval_s=0,
                                what="an update with the failure")
        snap = update.snapshot
        (failure,) = snap.failures
        assert (failure.source, failure.error) == ("kubernetes", "'name' (KeyError)")
        assert not snap.watch.connected and snap.watch.retry_at is None
        assert snap.watch.error == "the kubernetes source stopped: 'name' (KeyError)"
        assert not snap.metrics.stale  # the other source still runs
        with pytest.raises(SourceStopped, match=r"^the kubernetes source stopped: 'name' \(KeyError\)") as info:
            await cluster.wait_ready(10)
        assert isinstance(info.value.__cause__, KeyError)


async def test_a_stopped_metrics_loop_makes_the_metrics_stale_with_its_error() -> None:
    watch, metrics = Feeds("kubernetes"), Feeds("prometheus", AttributeError("'NoneType' object has no attribute 'get'"))
    async with open_cluster(settings(), sources=[watch, metrics]) as cluster:
        await cluster.wait_ready(10)
        metrics.stop.set()
        snap = await poll(cluster.snapshot, lambda s: bool(s.failures), timeout_s=10, what="the failure in the snapshot")
        assert [f.source for f in snap.failures] == ["prometheus"]
        assert snap.metrics.stale and snap.metrics.retry_at is None
        assert snap.metrics.error == "the prometheus source stopped: 'NoneType' object has no attribute 'get' (AttributeError)"
        assert snap.watch.connected


def test_prometheus_sources_get_the_metrics_settings(dead_kubeconfig: Path) -> None:
    from gpuctl.service import build_sources
    from gpuctl.sources.alerts import PrometheusAlertsSource
    from gpuctl.sources.prometheus import PrometheusSource
    from gpuctl.sources.selector import parse_selector

    sources = build_sources(
        settings(
            kubeconfig=dead_kubeconfig,
            prometheus_url="http://127.0.0.1:1",
            metrics_selector='cluster="prod-a"',
            idle_window_s=600,
            refresh_s=10,
            gpu_stale_after_s=90,
        )
    )
    (prometheus,) = [s for s in sources if isinstance(s, PrometheusSource)]
    (alerts,) = [s for s in sources if isinstance(s, PrometheusAlertsSource)]
    try:
        assert prometheus.selector == parse_selector('cluster="prod-a"') and alerts.prometheus is prometheus
        assert (prometheus.history.lookback_s, prometheus.history.step_s) == (680, 40)  # the window + 2 window/15 steps, not 6 hours
        assert prometheus.stale_window_s == 90
    finally:
        prometheus.close()


class RecordedJoins:
    """Wraps a store's join: which thread each join ran on."""

    def __init__(self, store: ClusterStore) -> None:
        self.threads: list[threading.Thread] = []
        self._join = store._joiner.join
        store._joiner.join = self  # type: ignore[method-assign]

    def __call__(self, inputs: JoinInputs) -> Joined:
        self.threads.append(threading.current_thread())
        return self._join(inputs)


async def test_current_joins_off_the_loop_and_has_everything_delivered_before_the_call() -> None:
    watch, metrics = Feeds("kubernetes"), Feeds("prometheus")
    async with open_cluster(settings(), sources=[watch, metrics]) as cluster:
        joins = RecordedJoins(cluster.store)
        await cluster.wait_ready(10)
        cluster.store.upsert(node("n1"))
        cluster.store.upsert(pod("ml", "train", "n1"))  # right before the call: no publish has it yet
        snap = await cluster.current()
        assert "ml/train" in {p.key for p in snap.pods} and [n.name for n in snap.nodes] == ["n1"]
        assert await cluster.current() is snap  # nothing moved since: the same snapshot, no join
        planned = await LiveSnapshots(cluster.settings, cluster)()  # what the engine plans from
        assert planned is snap
        cluster.store.delete(Kind.POD, "ml/train")
        assert "ml/train" not in {p.key for p in (await LiveSnapshots(cluster.settings, cluster)()).pods}
        assert joins.threads and threading.main_thread() not in joins.threads
