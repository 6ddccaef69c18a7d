"""KubernetesSource folds its reflectors' retries into WatchHealth.retry_at (an API server nobody listens on)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpuctl.sources.base import Backoff
from gpuctl.sources.kubernetes import KubernetesSource
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


async def test_unreachable_server_reports_the_soonest_retry(dead_kubeconfig: Path) -> None:
    source = KubernetesSource(kubeconfig=dead_kubeconfig, backoff=lambda: Backoff(base=5.0), clock=lambda: T0)
    store = ClusterStore()
    task = asyncio.create_task(source.run(store))
    try:
        await poll(
            lambda: bool(source.reflectors) and all(r.retry_at for r in source.reflectors),
            timeout_s=10, interval_s=0.01, what="every reflector to back off",
        )
        health = store.watch_health
        assert not health.connected and health.context == "dead"
        assert health.retry_at == min(r.retry_at for r in source.reflectors if r.retry_at)
        # Backoff(base=5) draws 2.5-5 s for a first failure.
        assert T0 + timedelta(seconds=2.5) <= health.retry_at <= T0 + timedelta(seconds=5)
        assert store.snapshot().watch.retry_at == health.retry_at  # the store passes it through as given
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_fold_takes_the_soonest_retry_of_the_reflectors_still_down() -> None:
    from gpuctl.sources.kube.reflector import Reflector, Resource
    from gpuctl.sources.kube.trim import trim_node
    from gpuctl.sources.kubernetes import fold_health
    from gpuctl.state.records import Kind

    async def never(**_: object) -> object:
        raise AssertionError("not called")

    store = ClusterStore()
    reflectors = [
        Reflector(Resource(Kind.NODE, "nodes", never, trim_node), store, describe=None, on_health=print)  # type: ignore[arg-type]
        for _ in range(3)
    ]
    up, down_late, down_soon = reflectors
    up.connected = True
    down_late.retry_at, down_soon.retry_at = T0 + timedelta(seconds=9), T0 + timedelta(seconds=2)
    health = fold_health(reflectors, context="c")
    assert not health.connected and health.retry_at == T0 + timedelta(seconds=2)

    down_soon.connected, down_soon.retry_at = True, None
    assert fold_health(reflectors, context="c").retry_at == T0 + timedelta(seconds=9)
    down_late.connected, down_late.retry_at = True, None
    healthy = fold_health(reflectors, context="c")
    assert healthy.connected and healthy.retry_at is None


def test_fold_says_stopped_when_a_watcher_crashed_and_counts_skipped_objects() -> None:
    from gpuctl.sources.kube.reflector import Reflector, Resource
    from gpuctl.sources.kube.trim import trim_node
    from gpuctl.sources.kubernetes import fold_health
    from gpuctl.state.records import Kind

    async def never(**_: object) -> object:
        raise AssertionError("not called")

    store = ClusterStore()
    nodes, pods = (
        Reflector(Resource(Kind.NODE, plural, never, trim_node), store, describe=None, on_health=print)  # type: ignore[arg-type]
        for plural in ("nodes", "pods")
    )
    nodes.connected, nodes.skipped = True, {"odd-node"}
    pods.connected, pods.skipped = True, {"ml/odd", "ml/odder"}
    healthy = fold_health([nodes, pods], context="c")
    assert healthy.connected and healthy.objects_skipped == 3 and healthy.error is None

    pods.connected, pods.crashed = False, "'name' (KeyError)"
    nodes.retry_at = T0  # a stale retry elsewhere must not suggest that anything will retry the crashed one
    stopped = fold_health([nodes, pods], context="c")
    assert not stopped.connected and stopped.retry_at is None
    assert stopped.error == "the pods watcher stopped: 'name' (KeyError)"
