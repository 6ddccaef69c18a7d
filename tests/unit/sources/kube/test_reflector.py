"""Reflector health: a failed list reports when the next try is, a successful one clears it.

The API server here is a small real HTTP server on loopback (the reflector reads
raw responses, so it needs nothing more): it answers the first list with an
error, then lists and holds watches open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gpuctl.errors import ClusterError
from gpuctl.sources.base import Backoff
from gpuctl.sources.kube.connect import describe
from gpuctl.sources.kube.reflector import Reflector, Resource
from gpuctl.sources.kube.trim import trim_node
from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore
from testbed.http import LoopbackServer
from testbed.waiting import poll

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


class FlakyApiServer(LoopbackServer):
    """GET /nodes: the first `failures` lists answer `status`; then an empty list; the first `gone`
    watches answer 410, the others stay open."""

    def __init__(self, *, failures: int, status: int, gone: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.status = status
        self.gone = gone
        self.lists = 0
        self.watches = 0
        self.closing = asyncio.Event()

    async def stop(self) -> None:
        self.closing.set()  # end the open watches, or the shutdown waits them out
        await super().stop()

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/nodes", self.nodes)

    async def nodes(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            self.watches += 1
            if self.watches <= self.gone:
                return web.json_response({"message": "too old resource version: 7 (9)", "code": 410}, status=410)
            resp = web.StreamResponse()
            await resp.prepare(request)
            await self.closing.wait()  # a quiet watch, open until the server stops
            return resp
        self.lists += 1
        if self.lists <= self.failures:
            return web.json_response({"message": "etcd is unavailable"}, status=self.status)
        return web.json_response({"items": [], "metadata": {"resourceVersion": "7"}})


def list_call(session: aiohttp.ClientSession, url: str) -> Callable[..., Awaitable[aiohttp.ClientResponse]]:
    """What KubeConnection.lister("/nodes") does, as a plain GET."""

    async def call(*, _request_timeout: Any = None, **params: Any) -> aiohttp.ClientResponse:
        query = {"continue" if k == "_continue" else k: str(v) for k, v in params.items() if v is not None}
        return await session.get(url, params=query, timeout=_request_timeout)

    return call


@contextlib.asynccontextmanager
async def reflecting(
    server: FlakyApiServer, backoff: Backoff, relist_backoff: Backoff | None = None
) -> AsyncIterator[tuple[Reflector, list[tuple[bool, datetime | None]]]]:
    reports: list[tuple[bool, datetime | None]] = []
    async with server, aiohttp.ClientSession() as session:
        url = f"http://{server.target}/nodes"

        def describe_error(error: BaseException, resource: str) -> ClusterError:
            return describe(error, server=url, context="test", resource=resource)

        reflector = Reflector(
            Resource(Kind.NODE, "nodes", list_call(session, url), partial(trim_node, keep_labels=())),
            ClusterStore(),
            describe=describe_error,
            on_health=lambda r: reports.append((r.connected, r.retry_at)),
            backoff=backoff,
            relist_backoff=relist_backoff,
            clock=lambda: T0,
        )
        task = asyncio.create_task(reflector.run())
        try:
            yield reflector, reports
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class PagedApiServer(FlakyApiServer):
    """Lists two pages of GPU nodes; the first stops after its metadata until the second is asked for (or
    `patience_s` passes): only a reflector that asks for the next page ahead gets its items at once."""

    def __init__(self, patience_s: float, *, garbled: int = 0) -> None:
        super().__init__(failures=0, status=200)
        self.patience_s = patience_s
        self.garbled = garbled  # first pages whose items are cut short (after the second page was asked for)
        self.asked_ahead = asyncio.Event()
        self.waited_out = False

    async def nodes(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            return await super().nodes(request)
        if request.query.get("continue") == "page-2":
            self.asked_ahead.set()
            return web.json_response({"metadata": {"resourceVersion": "7"}, "items": [gpu_node("gpu-2")]})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"7","continue":"page-2"},"items":[')
        try:
            await asyncio.wait_for(self.asked_ahead.wait(), self.patience_s)
        except TimeoutError:
            self.waited_out = True
        self.lists += 1
        await resp.write(json.dumps(gpu_node("gpu-1")).encode() + (b"" if self.lists <= self.garbled else b"]}"))
        await resp.write_eof()
        return resp


def gpu_node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"capacity": {"nvidia.com/gpu": "8"}}}


async def test_the_next_page_is_asked_for_once_the_metadata_names_it() -> None:
    server = PagedApiServer(patience_s=5)
    async with reflecting(server, Backoff(base=0.05)) as (reflector, _):
        await poll(lambda: reflector.lists == 1, timeout_s=10, interval_s=0.01, what="the list")
        assert set(dict(reflector.store.records(Kind.NODE))) == {"gpu-1", "gpu-2"}
    assert not server.waited_out  # the second page was asked for while the first one's items were still to come


async def test_a_list_that_fails_after_asking_ahead_lets_the_page_go_and_lists_again() -> None:
    server = PagedApiServer(patience_s=5, garbled=1)
    async with reflecting(server, Backoff(base=0.05)) as (reflector, reports):
        await poll(lambda: reflector.lists == 1, timeout_s=10, interval_s=0.01, what="the list after the failed one")
        assert set(dict(reflector.store.records(Kind.NODE))) == {"gpu-1", "gpu-2"}
    assert server.lists == 2 and reports[0][0] is False  # the cut page failed the first list, reported


async def test_a_failed_list_sets_retry_at_and_the_next_list_clears_it() -> None:
    expected_delay = Backoff(base=0.05, rng=random.Random(3)).next()  # the same draw the reflector makes
    server = FlakyApiServer(failures=1, status=503)
    async with reflecting(server, Backoff(base=0.05, rng=random.Random(3))) as (reflector, reports):
        await poll(lambda: reflector.lists == 1, timeout_s=10, interval_s=0.01, what="the second list")
        assert reports[0] == (False, T0 + timedelta(seconds=expected_delay))
        assert reports[-1] == (True, None)
        assert reflector.retry_at is None and reflector.error is None


async def test_unauthorized_waits_at_least_30_seconds() -> None:
    server = FlakyApiServer(failures=1, status=401)
    async with reflecting(server, Backoff(base=0.05)) as (reflector, reports):
        await poll(lambda: bool(reports), timeout_s=10, interval_s=0.01, what="the failure report")
        assert reports == [(False, T0 + timedelta(seconds=30))]
        assert reflector.error is not None and "401" in str(reflector.error)


async def test_a_410_relists_at_once_and_the_next_ones_soon_after_wait_longer() -> None:
    draws = Backoff(base=0.05, cap=60, rng=random.Random(4))
    expected = [draws.next(), draws.next()]  # the 2nd and 3rd 410: the 1st relists at once
    server = FlakyApiServer(failures=0, status=200, gone=3)
    async with reflecting(server, Backoff(base=0.01), Backoff(base=0.05, cap=60, rng=random.Random(4))) as (reflector, reports):
        await poll(lambda: reflector.lists == 4 and reflector.connected, timeout_s=10, interval_s=0.01, what="the third relist")
        waits = [retry_at for connected, retry_at in reports if not connected and retry_at is not None]
        assert waits == [T0 + timedelta(seconds=d) for d in expected]
        assert reflector.relists == 3 and reflector.error is None and reflector.retry_at is None


async def test_an_unexpected_error_stops_the_reflector_and_says_so() -> None:
    """A bug (not an outage) is not retried as a connection failure: the reflector reports it and raises."""

    async def buggy(**_: object) -> aiohttp.ClientResponse:
        raise RuntimeError("a bug in the list call")

    reports: list[tuple[bool, str | None]] = []
    reflector = Reflector(
        Resource(Kind.NODE, "nodes", buggy, trim_node),
        ClusterStore(),
        describe=lambda e, what: AssertionError(f"not an outage: {e}"),  # type: ignore[arg-type,return-value]
        on_health=lambda r: reports.append((r.connected, r.crashed)),
        backoff=Backoff(base=0.05),
        clock=lambda: T0,
    )
    with pytest.raises(RuntimeError, match="a bug in the list call"):
        await reflector.run()
    assert reports == [(False, "a bug in the list call (RuntimeError)")]
    assert reflector.retry_at is None and reflector.error is None
