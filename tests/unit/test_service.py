"""open_cluster: sources start, readiness, failures surface as gpuctl errors, everything stops on exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuctl.config import Settings
from gpuctl.errors import ClusterUnreachable, GpuctlError
from gpuctl.service import open_cluster
from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll


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
