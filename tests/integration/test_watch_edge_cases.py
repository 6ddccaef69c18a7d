"""The reflector's list/watch edge cases against the real API server: a list of many
pages, a continue token that expires between two pages, bookmarks on a quiet
watch, and a 410 soon after a relist.

Expiry is real: `ControlPlane.compact_etcd` compacts etcd the way kube-apiserver's
own compactor does, and the API server answers 410 itself. The only seam is the
list call a test hands the Reflector (`RecordingCall`), which records requests,
notes what the store held when each watch started, and may act before a request
goes out (compact between two pages).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from test_kubernetes_source import TRIM, create, eventually, gpu_pod, own_node_and_namespace

from gpuctl.sources.base import Backoff
from gpuctl.sources.kube.reflector import Reflector, Resource
from gpuctl.sources.kubernetes import KubernetesSource, fold_health
from gpuctl.state.records import Kind, PodRecord, Record
from gpuctl.state.store import ClusterStore
from testbed.controlplane import ControlPlane
from testbed.kube import RestClient
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


@dataclass
class RecordingCall:
    """A KubeConnection list call as the Reflector calls it, recording every request.

    `at_watch` holds, for each watch request, its resourceVersion and the records the
    store held at that moment (right after a list: exactly what the list gave)."""

    path: str  # e.g. "/api/v1/pods"
    fixed: Mapping[str, Any] = field(default_factory=dict)  # sent with every request, e.g. a label selector
    before: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    at_watch: list[tuple[str, dict[str, Record]]] = field(default_factory=list)
    store: ClusterStore | None = None
    kind: Kind | None = None
    call: Callable[..., Awaitable[aiohttp.ClientResponse]] | None = None

    async def __call__(self, **params: Any) -> aiohttp.ClientResponse:
        assert self.call is not None and self.store is not None and self.kind is not None
        self.requests.append(params)
        if params.get("watch"):
            self.at_watch.append((params["resource_version"], dict(self.store.records(self.kind))))
        if self.before is not None:
            await self.before(params)
        return await self.call(**self.fixed, **params)

    @property
    def pages(self) -> list[dict[str, Any]]:
        return [p for p in self.requests if not p.get("watch")]

    @property
    def watches(self) -> list[dict[str, Any]]:
        return [p for p in self.requests if p.get("watch")]


@dataclass
class Reports:
    """What the reflector told its health callback, each time: (connected, error, retry_at, lists)."""

    seen: list[tuple[bool, bool, datetime | None, int]] = field(default_factory=list)

    def __call__(self, reflector: Reflector) -> None:
        self.seen.append((reflector.connected, reflector.error is not None, reflector.retry_at, reflector.lists))

    def relist_waits(self) -> list[datetime]:
        """Retry times reported while waiting to list again after a 410 (not after an error)."""
        return [at for connected, error, at, _ in self.seen if not connected and not error and at is not None]


@contextlib.asynccontextmanager
async def reflecting(
    plane: ControlPlane,
    call: RecordingCall,
    kind: Kind,
    *,
    store: ClusterStore | None = None,
    start_from: str | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Reflector, Reports]]:
    """A Reflector for `kind` through `call` on the test bed's API server (fixed clock, fast reconnects)."""
    conn = await KubernetesSource(kubeconfig=plane.kubeconfig()).connect()
    call.call, call.store, call.kind = conn.lister(call.path), store or ClusterStore(), kind
    reports = Reports()
    options.setdefault("backoff", Backoff(base=0.2, cap=1))
    api_kind, trim = TRIM[kind]
    reflector = Reflector(
        Resource(kind, api_kind.lower() + "s", call, trim),
        call.store,
        describe=lambda e, what: AssertionError(f"{what}: {e}"),  # type: ignore[arg-type,return-value]
        on_health=reports,
        clock=lambda: T0,
        **options,
    )
    reflector.resource_version = start_from
    task = asyncio.create_task(reflector.run())
    try:
        yield reflector, reports
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()


async def listed_at(admin: RestClient, kind: Kind, resource_version: str) -> dict[str, Record]:
    """Every object of `kind` exactly as of `resource_version`, trimmed as the reflector trims."""
    api_kind, trim = TRIM[kind]
    response = await admin.list(api_kind, resourceVersion=resource_version, resourceVersionMatch="Exact")
    assert response.status == 200, response.body
    records = (trim(obj) for obj in response.body["items"])
    return {r.key: r for r in records if r is not None}


async def gpu_pods(admin: RestClient, prefix: str, count: int) -> None:
    node, namespace = await own_node_and_namespace(admin, prefix)
    await asyncio.gather(*(create(admin, gpu_pod(f"p{i}", namespace, node)) for i in range(count)))


async def test_a_list_of_many_pages_is_exact(control_plane: ControlPlane, admin: RestClient) -> None:
    await gpu_pods(admin, "pages", 7)
    pods = RecordingCall("/api/v1/pods")
    async with reflecting(control_plane, pods, Kind.POD, page_size=2) as (reflector, _):
        await eventually(lambda: bool(pods.at_watch), "the first watch after the list")
    assert len(pods.pages) >= 4 and all(p["limit"] == 2 for p in pods.pages)
    assert [bool(p.get("_continue")) for p in pods.pages] == [False] + [True] * (len(pods.pages) - 1)
    version, records = pods.at_watch[0]
    assert records == await listed_at(admin, Kind.POD, version)
    assert sum(1 for key in records if key.startswith("pages-")) == 7 and reflector.lists == 1


async def test_an_expired_continue_token_restarts_the_list_from_scratch(control_plane: ControlPlane, admin: RestClient) -> None:
    await gpu_pods(admin, "expiring", 5)
    ghost = PodRecord(namespace="nowhere", name="ghost", node=None, phase="Running", gpu_requests={"nvidia.com/gpu": 1})
    store = ClusterStore()
    store.replace(Kind.POD, [ghost])
    seen: dict[str, Any] = {}

    async def compact_before_the_second_page(params: dict[str, Any]) -> None:
        token = params.get("_continue")
        if token and "compacted" not in seen:
            seen["compacted"] = await control_plane.compact_etcd()
            # The API server drops its cached snapshots older than the compaction within ~15 s;
            # from then on only etcd could serve the token, and etcd has compacted it away.
            await poll(lambda: admin.list("Pod", limit="2", **{"continue": token}), lambda r: r.status == 410,
                       timeout_s=60, interval_s=1, what="the continue token to expire")
        elif "compacted" in seen and not token and not params.get("watch") and "restarted_with" not in seen:
            seen["restarted_with"] = dict(store.records(Kind.POD))

    expected_wait = Backoff(base=0.2, cap=600, rng=random.Random(11)).next()
    pods = RecordingCall("/api/v1/pods", before=compact_before_the_second_page)
    relist = Backoff(base=0.2, cap=600, rng=random.Random(11))
    async with reflecting(control_plane, pods, Kind.POD, store=store, page_size=2, relist_backoff=relist) as (reflector, reports):
        await eventually(lambda: bool(pods.at_watch), "a complete list after the expired one", timeout_s=120)
    assert seen["restarted_with"] == {ghost.key: ghost}  # the half-done list replaced nothing
    assert reflector.lists == 1 and reports.relist_waits() == [T0 + timedelta(seconds=expected_wait)]
    first_pages = [p for p in pods.pages if not p.get("_continue")]
    assert len(first_pages) == 2  # the list started over from its first page
    version, records = pods.at_watch[0]
    assert int(version) > seen["compacted"] and ghost.key not in records
    assert records == await listed_at(admin, Kind.POD, version)


async def test_bookmarks_keep_a_quiet_watch_fresh(control_plane: ControlPlane, admin: RestClient) -> None:
    # A watch that selects nothing: only bookmarks can move its resourceVersion on.
    label = f"gpuctl-quiet-{uuid.uuid4().hex[:6]}"
    namespaces = RecordingCall("/api/v1/namespaces", fixed={"label_selector": f"{label}=yes"})
    # The API server sends a bookmark 2 s before a watch's timeout: a 5 s watch gets one 3 s in.
    async with reflecting(control_plane, namespaces, Kind.NAMESPACE, watch_timeout_s=(5, 5)) as (reflector, _):
        await eventually(lambda: bool(namespaces.at_watch), "the first watch")
        listed = int(namespaces.at_watch[0][0])
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": label, "namespace": "default"}}
        assert (await admin.create(configmap)).status == 201  # etcd's revision moves on; nothing watched changes

        def fresher() -> bool:
            return reflector.bookmarks > 0 and int(reflector.resource_version or 0) > listed

        await eventually(fresher, "a bookmark carrying a newer resourceVersion", timeout_s=45)
        assert reflector.events == 0 and not reflector.store.records(Kind.NAMESPACE)
        bookmarked = int(reflector.resource_version or 0)
        await eventually(lambda: any(int(w["resource_version"]) >= bookmarked for w in namespaces.watches),
                         "a watch from the bookmarked version", timeout_s=20)
    assert all(w["allow_watch_bookmarks"] for w in namespaces.watches)
    await admin.delete("ConfigMap", label, "default")


async def test_a_410_soon_after_a_relist_waits_and_health_shows_it(control_plane: ControlPlane, admin: RestClient) -> None:
    expected_wait = Backoff(base=0.5, cap=600, rng=random.Random(5)).next()
    relist = Backoff(base=0.5, cap=600, rng=random.Random(5))
    namespaces = RecordingCall("/api/v1/namespaces")

    async def expire() -> int:
        """Compact etcd past the reflector's version and restart the API server: its watch cache
        starts over at the current revision, so the reconnecting watch gets 410 Gone."""
        compacted = await control_plane.compact_etcd()
        await control_plane.restart_apiserver()
        return compacted

    async with reflecting(control_plane, namespaces, Kind.NAMESPACE, relist_backoff=relist) as (reflector, reports):
        await eventually(lambda: len(namespaces.at_watch) == 1, "the first watch")
        first = await expire()
        await eventually(lambda: reflector.lists == 2 and reflector.connected, "a relist after the first 410", timeout_s=120)
        assert reports.relist_waits() == []  # the first 410 relists at once
        second = await expire()
        await eventually(lambda: reflector.lists == 3 and reflector.connected, "a relist after the second 410", timeout_s=120)
    assert reports.relist_waits() == [T0 + timedelta(seconds=expected_wait)]
    # Each 410 answered a watch (and its reconnects) from a version the compaction had removed.
    listed = list(dict.fromkeys(int(version) for version, _ in namespaces.at_watch))
    assert len(listed) == 3 and listed[0] < first < listed[1] < second < listed[2]
    health = fold_health([reflector], context=None)
    assert health.relists == 2 and health.connected and health.retry_at is None
    version, records = namespaces.at_watch[-1]
    assert records == await listed_at(admin, Kind.NAMESPACE, version)
