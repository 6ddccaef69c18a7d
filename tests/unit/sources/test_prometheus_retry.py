"""PrometheusSource records when it retries after a failed refresh (a port nobody listens on).

That it clears `retry_at` on recovery is checked against a real Prometheus in
tests/integration/test_prometheus.py (test_outage_is_recorded_and_the_source_recovers).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from gpuctl.sources.prometheus import PrometheusSource
from gpuctl.state.store import ClusterStore
from testbed.waiting import poll

T0 = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)


async def test_a_failed_refresh_sets_retry_at_one_backoff_ahead() -> None:
    source = PrometheusSource("http://127.0.0.1:1", refresh_s=4.0, timeout_s=2, now=lambda: T0)
    store = ClusterStore()
    task = asyncio.create_task(source.run(store))
    try:
        await poll(lambda: source.retry_at is not None, timeout_s=10, interval_s=0.01, what="the first retry time")
        # The first backoff is the refresh interval scaled by 0.5-1.0 of jitter.
        assert T0 + timedelta(seconds=2) <= source.retry_at <= T0 + timedelta(seconds=4)
        assert "cannot connect to Prometheus" in (store.snapshot().metrics.error or "")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        source.close()
