"""Failures that must never pass for live data, against the real test bed.

- An object the watcher cannot read (trim raises, injected through the Resource
  seam for named pods) is left out, counted and logged once; the watch goes on.
- A watcher that hits a bug stops the Kubernetes source, and every snapshot says so.
- A Prometheus batch is stamped with Prometheus's evaluation time, not gpuctl's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpuctl.config import Settings
from gpuctl.service import open_cluster
from gpuctl.sources.kube.connect import KubeConnection
from gpuctl.sources.kube.reflector import Resource
from gpuctl.sources.kube.trim import JSON
from gpuctl.sources.kubernetes import KubernetesSource
from gpuctl.sources.prometheus import PrometheusSource
from gpuctl.state.records import Kind, Record
from gpuctl.state.store import ClusterStore
from testbed.bed import Telemetry
from testbed.controlplane import ControlPlane
from testbed.kube import RestClient
from testbed.waiting import poll
from tests.integration.test_kubernetes_source import create, eventually, fresh_list, gpu_pod, own_node_and_namespace

pytestmark = pytest.mark.testbed


class OddPods(KubernetesSource):
    """The real source, with a pod trim that raises `errors[name]` for the pods named there."""

    def __init__(self, errors: Mapping[str, Exception], **kw: Any) -> None:
        super().__init__(**kw)
        self.errors = errors

    def _resources(self, conn: KubeConnection) -> list[Resource]:
        return [replace(r, trim=self._odd(r.trim)) if r.kind is Kind.POD else r for r in super()._resources(conn)]

    def _odd(self, trim: Callable[[JSON], Record | None]) -> Callable[[JSON], Record | None]:
        def odd(obj: JSON) -> Record | None:
            error = self.errors.get(obj["metadata"]["name"])
            if error is not None:
                raise error
            return trim(obj)

        return odd


@asynccontextmanager
async def running(source: KubernetesSource) -> AsyncIterator[ClusterStore]:
    store = ClusterStore()
    task = asyncio.create_task(source.run(store))
    try:
        await eventually(lambda: store.listed == frozenset(Kind), "the first list of every kind")
        yield store
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_unreadable_pod_is_left_out_counted_and_logged_once(
    control_plane: ControlPlane, admin: RestClient, caplog: pytest.LogCaptureFixture
) -> None:
    node, namespace = await own_node_and_namespace(admin, "odd")
    await create(admin, gpu_pod("odd-before", namespace, node))  # there at the first list
    source = OddPods(
        {"odd-before": KeyError("name"), "odd-after": ValueError("bad quantity")},
        kubeconfig=control_plane.kubeconfig(),
    )
    caplog.set_level(logging.ERROR, logger="gpuctl.sources.kube.reflector")
    async with running(source) as store:
        await create(admin, gpu_pod("odd-after", namespace, node))  # arrives as a watch event
        await create(admin, gpu_pod("fine", namespace, node))
        await eventually(lambda: f"{namespace}/fine" in store.records(Kind.POD), "the readable pod created after them")
        health = store.snapshot().watch
        assert health.connected and health.error is None and health.retry_at is None  # not an outage
        assert health.objects_skipped == 2 and health.relists == 0
        pods = dict(store.records(Kind.POD))
        odd = {f"{namespace}/odd-before", f"{namespace}/odd-after"}
        fresh = await fresh_list(admin, Kind.POD)
        assert odd <= set(fresh) and set(fresh) - set(pods) == odd  # left out; every other pod is there

        # Changes to an unreadable pod (kwok runs it, we label it) are skipped again, not logged again.
        assert (await admin.patch("Pod", "odd-after", {"metadata": {"labels": {"touched": "yes"}}}, namespace)).status == 200
        await create(admin, gpu_pod("fence", namespace, node))  # the watch delivers in order: after the patch
        await eventually(lambda: f"{namespace}/fence" in store.records(Kind.POD), "a pod created after the patch")
        assert store.watch_health.objects_skipped == 2
        logged = [r.getMessage() for r in caplog.records if namespace in r.getMessage()]
        assert len(logged) == 2, logged
        assert any(f"left out {namespace}/odd-before" in m and "'name' (KeyError)" in m for m in logged)
        assert any(f"left out {namespace}/odd-after" in m and "bad quantity (ValueError)" in m for m in logged)

        # Gone from the cluster: no longer counted. Everything else stays exactly a fresh list.
        assert (await admin.delete("Pod", "odd-before", namespace, grace_s=0)).status == 200
        await eventually(lambda: store.watch_health.objects_skipped == 1, "the deleted pod to stop counting")
        assert store.watch_health.connected


async def test_a_watcher_bug_stops_the_source_and_every_snapshot_says_so(
    control_plane: ControlPlane, admin: RestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))

    class BuggyWatch(KubernetesSource):
        """Lists pods as usual; opening the pod watch hits a bug."""

        def _resources(self, conn: KubeConnection) -> list[Resource]:
            return [replace(r, list_call=self._buggy(r.list_call)) if r.kind is Kind.POD else r for r in super()._resources(conn)]

        @staticmethod
        def _buggy(call: Callable[..., Any]) -> Callable[..., Any]:
            async def buggy(**params: Any) -> Any:
                if params.get("watch"):
                    raise RuntimeError("a bug on the watch path")
                return await call(**params)

            return buggy

    source = BuggyWatch(kubeconfig=control_plane.kubeconfig())
    settings = Settings(config_file=None, kubeconfig=control_plane.kubeconfig())  # type: ignore[call-arg]
    async with open_cluster(settings, sources=[source]) as cluster:
        snap = await poll(cluster.snapshot, lambda s: bool(s.failures), what="the stopped source in the snapshot")
        (failure,) = snap.failures
        assert (failure.source, failure.error) == ("kubernetes", "a bug on the watch path (RuntimeError)")
        assert not snap.watch.connected and snap.watch.retry_at is None
        assert snap.watch.error == "the kubernetes source stopped: a bug on the watch path (RuntimeError)"
        pods = next(r for r in source.reflectors if r.resource.kind is Kind.POD)
        assert pods.crashed == "a bug on the watch path (RuntimeError)" and pods.lists == 1  # listed, then stopped


async def test_a_metrics_batch_has_prometheus_evaluation_time(telemetry: Telemetry) -> None:
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    source = PrometheusSource(telemetry.monitoring.prometheus_url, now=lambda: long_ago)  # a clock far off
    try:
        before = datetime.now(UTC)
        batch = await source.fetch()
        after = datetime.now(UTC)
    finally:
        source.close()
    assert batch.samples
    # Prometheus runs on this machine: its evaluation time lies within the request, whatever gpuctl's clock says.
    assert before.timestamp() - 1 <= batch.at.timestamp() <= after.timestamp() + 1
