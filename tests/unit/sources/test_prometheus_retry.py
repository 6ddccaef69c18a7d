"""PrometheusSource records when it retries: a failed refresh (a port nobody listens on), a failed history query.

That it clears `retry_at` on recovery is checked against a real Prometheus in
tests/integration/test_prometheus.py (test_outage_is_recorded_and_the_source_recovers).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

from prometheus_api_client import PrometheusApiClientException

from gpuctl.sources import queries
from gpuctl.sources.prometheus import REFRESH_QUANTITIES, HistoryAnswers, PrometheusSource
from gpuctl.state.records import GpuSample, MetricsBatch
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def running(source: PrometheusSource, store: ClusterStore) -> AsyncIterator[None]:
    """The source feeding `store` for the block; cancelled and closed after it."""
    task = asyncio.create_task(source.run(store))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        source.close()


async def test_a_failed_refresh_sets_retry_at_one_backoff_ahead() -> None:
    source = PrometheusSource("http://127.0.0.1:1", refresh_s=4.0, timeout_s=2, now=lambda: T0)
    store = ClusterStore()
    async with running(source, store):
        await poll(lambda: source.retry_at is not None, timeout_s=10, interval_s=0.01, what="the first retry time")
        # The first backoff is the refresh interval scaled by 0.5-1.0 of jitter.
        assert T0 + timedelta(seconds=2) <= source.retry_at <= T0 + timedelta(seconds=4)
        assert "cannot connect to Prometheus" in (store.snapshot().metrics.error or "")


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class _HistoryFails(PrometheusSource):
    """The real run loop; refreshes and history replaced at their seam, so only the schedule is under test
    (the queries themselves run against a real Prometheus in tests/integration/test_prometheus.py)."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__("http://127.0.0.1:1", refresh_s=0.005, history_backoff_s=(10.0, 40.0), now=clock)
        self.refreshes = 0
        self.history_calls = 0
        self.history_ok = False

    async def fetch(self) -> MetricsBatch:
        self.refreshes += 1
        return MetricsBatch(at=self._now(), samples=(GpuSample(hostname="n1", index=0, util_pct=0.0),))

    async def history_answers(self, rules: object = None) -> HistoryAnswers:
        self.history_calls += 1
        if not self.history_ok:
            raise PrometheusApiClientException("HTTP Status Code 422 (b'vector cannot contain metrics')")
        return [], []


async def test_a_failing_history_query_backs_off_instead_of_following_every_refresh() -> None:
    clock = _Clock()
    source = _HistoryFails(clock)
    store = ClusterStore(clock=clock)

    async def refreshes_after(n: int) -> None:
        target = source.refreshes + n
        await poll(lambda: source.refreshes, lambda r: r >= target, interval_s=0.01, what=f"{n} refreshes")

    async with running(source, store):
        await refreshes_after(20)
        assert source.history_calls == 1  # once, not after each of 20 refreshes
        health = store.snapshot().metrics
        assert "422" in (health.history_error or "")
        assert health.history_retry_at == source.history_retry_at
        assert T0 + timedelta(seconds=5) <= health.history_retry_at <= T0 + timedelta(seconds=10)  # type: ignore[operator]

        first_retry = source.history_retry_at
        assert first_retry is not None
        clock.now = first_retry
        await poll(lambda: source.history_calls, lambda n: n == 2, interval_s=0.01, what="second try")
        await refreshes_after(20)
        assert source.history_calls == 2
        second_retry = store.snapshot().metrics.history_retry_at
        assert second_retry is not None and 10 <= (second_retry - first_retry).total_seconds() <= 20  # doubled

        source.history_ok = True
        clock.now = second_retry
        await poll(lambda: store.snapshot().metrics.history_error, lambda e: e is None, interval_s=0.01, what="loaded")
        await refreshes_after(20)
        assert source.history_calls == 3 and source.history_retry_at is None  # loaded: never again
        assert store.snapshot().metrics.history_retry_at is None


class _Gated(PrometheusSource):
    """The first refresh and the history each wait at a gate; the test sees which are waiting at once."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1", refresh_s=60.0, now=lambda: T0)
        self.fetching, self.querying_history, self.release = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.fetched = asyncio.Event()

    async def fetch(self) -> MetricsBatch:
        self.fetching.set()
        await self.release.wait()
        self.fetched.set()  # the run loop goes on from here without yielding, to apply or to wait
        return MetricsBatch(at=T0, samples=(GpuSample(hostname="n1", index=0, util_pct=0.0),))

    async def history_answers(self, rules: object = None) -> HistoryAnswers:
        self.querying_history.set()
        await self.release.wait()
        return [], []


async def test_the_history_queries_go_out_with_the_first_refresh_not_after_it() -> None:
    source = _Gated()
    store = ClusterStore(clock=lambda: T0)
    async with running(source, store):
        await asyncio.wait_for(asyncio.gather(source.fetching.wait(), source.querying_history.wait()), 10)
        assert not store.metrics_attempted  # both in flight, nothing applied yet
        source.release.set()
        await poll(lambda: store.metrics_attempted, timeout_s=10, interval_s=0.01, what="the first batch")
        assert source.history_retry_at is None and store.snapshot().metrics.history_error is None  # loaded with it


class _SlowHistory(_Gated):
    """The refresh answers at once; the history only when the test says so."""

    def __init__(self, *, history_first: bool) -> None:
        super().__init__()
        self.history_first = history_first
        self.release.set()
        self.history_release = asyncio.Event()

    async def history_answers(self, rules: object = None) -> HistoryAnswers:
        self.querying_history.set()
        await self.history_release.wait()
        return [], []


async def test_a_live_view_shows_the_batch_before_the_history_answers() -> None:
    for history_first in (False, True):
        source = _SlowHistory(history_first=history_first)
        store = ClusterStore(clock=lambda: T0)
        async with running(source, store):
            await asyncio.wait_for(asyncio.gather(source.querying_history.wait(), source.fetched.wait()), 10)
            if history_first:  # one-shot answers: the batch waits for the history sent with it
                assert not store.metrics_attempted
            else:
                await poll(lambda: store.metrics_attempted, timeout_s=10, interval_s=0.01, what="the batch, history pending")
                assert source.history_retry_at is not None  # not loaded yet
            source.history_release.set()
            await poll(lambda: source.history_retry_at is None and store.metrics_attempted, timeout_s=10,
                       interval_s=0.01, what="history loaded, batch applied")


async def test_a_live_view_says_history_is_pending_until_it_answers_or_fails() -> None:
    source = _SlowHistory(history_first=False)
    store = ClusterStore(clock=lambda: T0)
    async with running(source, store):
        await poll(lambda: store.metrics_attempted, timeout_s=10, interval_s=0.01, what="the batch, history pending")
        assert store.snapshot().metrics.history_pending  # the streaks shown count from gpuctl's start
        source.history_release.set()
        await poll(lambda: store.snapshot().metrics.history_pending, lambda p: not p, timeout_s=10, interval_s=0.01,
                   what="history loaded")
        assert store.snapshot().metrics.history_error is None
    # A failed history is not pending: it says it failed (and when it is tried again).
    clock = _Clock()
    failing = _HistoryFails(clock)
    store = ClusterStore(clock=clock)
    async with running(failing, store):
        await poll(lambda: store.snapshot().metrics.history_error, timeout_s=10, interval_s=0.01, what="failure")
        assert not store.snapshot().metrics.history_pending


class _Queued(PrometheusSource):
    """Records the order in which queries are queued for the request threads; no request ever answers
    until the test lets them fail (the queue's order, not Prometheus, is under test)."""

    def __init__(self, *, history_first: bool) -> None:
        super().__init__("http://127.0.0.1:1", refresh_s=60.0, history_first=history_first, now=lambda: T0)
        self.queued: list[str] = []
        self.answer = threading.Event()

    def _send(self, promql: str, *, timeout_s: float | None = None) -> asyncio.Future[bytes]:
        self.queued.append(promql)
        return super()._send(promql, timeout_s=timeout_s)

    def _get(self, path: str, params: Mapping[str, str], timeout_s: float) -> bytes:
        if path != "/api/v1/query":  # the rules API, asked which history to read: none here
            raise PrometheusApiClientException("HTTP Status Code 404 (b'no rules API')")
        self.answer.wait(10)
        raise PrometheusApiClientException("HTTP Status Code 503 (b'not now')")


async def test_a_one_shot_answer_queues_the_history_ahead_of_the_refresh_a_live_view_only_the_refresh() -> None:
    for history_first in (True, False):
        source = _Queued(history_first=history_first)
        plan = source.history
        history = [queries.last_busy(source.idle_threshold_pct, plan.lookback_s, plan.step_s),
                   queries.present_since(source.idle_threshold_pct, plan.lookback_s, plan.presence_step_s, plan.gap_s)]
        refresh = [queries.freshness(source.stale_window_s), *(queries.instant(q) for q in REFRESH_QUANTITIES)]
        store = ClusterStore(clock=lambda: T0)
        async with running(source, store):
            try:
                expected = history + refresh if history_first else refresh
                await poll(lambda: len(source.queued), lambda n: n == len(expected), timeout_s=10, interval_s=0.01,
                           what="every query queued")
                # A one-shot answer waits for both: the longest first (and in the refresh, the freshness query,
                # which reads a window). A live view asks for the readings alone
                # (the history once they are in: the next test), and says the history is pending meanwhile.
                assert source.queued == expected
                assert store.snapshot().metrics.history_pending
            finally:
                source.answer.set()


async def test_a_live_view_asks_for_the_history_once_the_readings_are_in() -> None:
    source = _Gated()
    source.history_first = False
    store = ClusterStore(clock=lambda: T0)
    async with running(source, store):
        await asyncio.wait_for(source.fetching.wait(), 10)
        for _ in range(20):  # the old order asked for it one loop iteration after the refresh
            await asyncio.sleep(0)
        assert not source.querying_history.is_set()
        source.release.set()
        await asyncio.wait_for(source.querying_history.wait(), 10)
        assert store.metrics_attempted  # the batch was applied before the history was asked for
        await poll(lambda: source.history_retry_at, lambda at: at is None, timeout_s=10, interval_s=0.01,
                   what="history loaded")
