"""DCGM metrics for every GPU in the cluster, read from Prometheus.

Each refresh sends a fixed number of instant queries, one per quantity for all
GPUs (never one per GPU: at 10,000 GPUs that would be 70,000 requests), and
hands the merged samples to the store. On start-up one more pair of queries
looks back over the history so idle streaks survive a gpuctl restart.

prometheus-api-client is synchronous (requests), so every call runs in a
worker thread; our own Session carries the auth, and every request has a
timeout both here and on the Prometheus side.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import MetricsUnavailable
from gpuctl.sources import dcgm_fields as fields
from gpuctl.sources.base import Backoff
from gpuctl.sources.dcgm_fields import Quantity
from gpuctl.state.records import GpuSample, MetricsBatch

log = logging.getLogger(__name__)

# Quantities fetched on every refresh, in this order.
REFRESH_QUANTITIES: tuple[Quantity, ...] = tuple(Quantity)

# What a failed query can raise; anything else is a bug and propagates.
FETCH_ERRORS: tuple[type[Exception], ...] = (
    requests.RequestException,
    PrometheusApiClientException,
    ValueError,  # the answer was not JSON (requests.JSONDecodeError is a ValueError)
    KeyError,  # JSON without data.result
    TypeError,
)


class MetricsSink(Protocol):
    """The part of ClusterStore this source feeds."""

    def set_metrics_source(self, name: str) -> None: ...
    def apply_metrics(self, batch: MetricsBatch) -> None: ...
    def metrics_failed(self, error: str, at: datetime, *, retry_at: datetime | None = None) -> None: ...
    def backfill_idle(self, idle_since: Mapping[str, datetime]) -> None: ...


@dataclass(frozen=True, slots=True)
class PrometheusAuth:
    """How to authenticate to Prometheus; all optional, combinable."""

    bearer_token: str | None = None
    basic: tuple[str, str] | None = None  # (user, password)
    ca_file: str | None = None  # PEM bundle that signed the server's certificate
    insecure: bool = False  # skip TLS verification entirely

    def session(self) -> requests.Session:
        session = requests.Session()
        if self.bearer_token:
            session.headers["Authorization"] = f"Bearer {self.bearer_token}"
        if self.basic:
            session.auth = self.basic
        if self.insecure:
            session.verify = False
        elif self.ca_file:
            session.verify = self.ca_file
        return session


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str
    gpu_series: int  # utilisation series found: 0 means Prometheus works but sees no DCGM exporter



class PrometheusSource:
    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        refresh_s: float = 15.0,
        timeout_s: float = 10.0,
        auth: PrometheusAuth | None = None,
        idle_threshold_pct: float = 5.0,
        backfill_s: float = 6 * 3600.0,
        max_backoff_s: float = 120.0,
        now: Clock = utcnow,
    ) -> None:
        self.url = url.rstrip("/")
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.idle_threshold_pct = idle_threshold_pct
        self.backfill_s = backfill_s
        self.max_backoff_s = max_backoff_s
        self._now = now
        # When the next refresh is tried after a failure; None while refreshes succeed.
        self.retry_at: datetime | None = None
        self._session = (auth or PrometheusAuth()).session()
        self._client = PrometheusConnect(
            url=self.url,
            session=self._session,
            # No urllib3 retries: a dead Prometheus must fail fast; run() owns the backoff.
            retry=Retry(total=0, raise_on_status=False),
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    # -- one-shot calls --------------------------------------------------------------

    async def probe(self) -> ProbeResult:
        """Check the URL answers as a Prometheus API and count DCGM utilisation series."""
        try:
            results = await self._query(fields.instant_query(Quantity.UTIL))
        except FETCH_ERRORS as e:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer a query: {describe_error(e)}",
                hint="check --prometheus-url, credentials and that the URL is the Prometheus API root",
            ) from e
        return ProbeResult(url=self.url, gpu_series=len(results))

    async def fetch(self) -> MetricsBatch:
        """One refresh: a query per quantity, concurrently, merged into samples. Raises FETCH_ERRORS."""
        answers = await asyncio.gather(*(self._query(fields.instant_query(q)) for q in REFRESH_QUANTITIES))
        # The idle clock runs on Prometheus's time, not ours. With no series there is no evidence to
        # time; our clock stands in (skewed far ahead, it only delays the next batch: stale, never idle).
        at = evaluation_time(answers) or self._now()
        parsed = fields.parse_results(series for answer in answers for series in answer)
        if parsed.rejected:
            log.debug("rejected %d DCGM series: %s", parsed.rejected, dict(parsed.reasons))
        return MetricsBatch(at=at, samples=fields.merge_readings(parsed.readings), rejected=parsed.rejected)

    async def idle_history(self, samples: Sequence[GpuSample]) -> dict[str, datetime]:
        """For GPUs now under the threshold: since when, according to Prometheus's history.

        Two subqueries over the look-back: when each (GPU, pod) series was last at or
        over the threshold, and when it first appeared. A GPU never busy in the
        look-back counts as idle since it first appeared (at most the look-back).
        """
        span, step = _duration(self.backfill_s), _duration(max(1.0, self.backfill_s / 360))
        busy = fields.threshold_query(Quantity.UTIL, ">=", self.idle_threshold_pct)
        last_busy_q = f"max_over_time(timestamp({busy})[{span}:{step}])"
        first_seen_q = f"min_over_time(timestamp({fields.instant_query(Quantity.UTIL)})[{span}:{step}])"
        last_busy, first_seen = await asyncio.gather(self._query(last_busy_q), self._query(first_seen_q))
        return idle_since(samples, self.idle_threshold_pct, last_busy=last_busy, first_seen=first_seen, now=self._now())

    # -- the source loop --------------------------------------------------------------

    async def run(self, store: MetricsSink) -> None:
        """Feed the store until cancelled; outages are recorded, never raised."""
        store.set_metrics_source(self.name)
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=self.refresh_s, cap=self.max_backoff_s)
        backfilled = False
        while True:
            started = loop.time()
            try:
                batch = await self.fetch()
            except FETCH_ERRORS as e:
                message = describe_error(e)
                log.warning("Prometheus refresh failed (%d in a row): %s", backoff.failures + 1, message)
                delay = backoff.next()
                now = self._now()
                self.retry_at = now + timedelta(seconds=delay)
                store.metrics_failed(message, now, retry_at=self.retry_at)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            self.retry_at = None
            store.apply_metrics(batch)
            if not backfilled:
                backfilled = await self._backfill(store, batch.samples)
            await asyncio.sleep(max(0.0, self.refresh_s - (loop.time() - started)))

    async def _backfill(self, store: MetricsSink, samples: Sequence[GpuSample]) -> bool:
        try:
            history = await self.idle_history(samples)
        except FETCH_ERRORS as e:
            log.warning("idle history query failed, will retry: %s", describe_error(e))
            return False
        store.backfill_idle(history)
        return True

    async def api_get(self, path: str) -> Any:
        """GET an HTTP API path (e.g. /api/v1/alerts) with this source's auth; returns `data`. Raises FETCH_ERRORS."""

        def get() -> Any:
            # The session already carries auth headers and TLS settings; the client's
            # adapter (mounted on the base URL) means no urllib3 retries here either.
            resp = self._session.get(f"{self.url}{path}", timeout=self.timeout_s)
            if resp.status_code != 200:
                raise PrometheusApiClientException(f"HTTP Status Code {resp.status_code} ({resp.content[:200]!r})")
            return resp.json()["data"]

        return await asyncio.to_thread(get)

    async def _query(self, promql: str) -> list[Any]:
        params = {"timeout": f"{self.timeout_s:g}s"}
        result = await asyncio.to_thread(self._client.custom_query, promql, params)
        if not isinstance(result, list):
            raise TypeError("Prometheus answer has no result list")
        return result


def idle_since(
    samples: Sequence[GpuSample],
    threshold_pct: float,
    *,
    last_busy: Iterable[Any],
    first_seen: Iterable[Any],
    now: datetime,
) -> dict[str, datetime]:
    """Join the two history subqueries with the current samples (pure; see idle_history)."""
    busy_at = _timestamps(last_busy, max)
    seen_at = _timestamps(first_seen, min)
    out: dict[str, datetime] = {}
    for sample in samples:
        if sample.util_pct is None or sample.util_pct >= threshold_pct:
            continue
        last = _for_holder(busy_at.get(sample.key, {}), sample)
        first = _for_holder(seen_at.get(sample.key, {}), sample)
        since = max(last) if last else (min(first) if first else None)
        if since is not None:
            out[sample.key] = min(datetime.fromtimestamp(since, UTC), now)
    return out


def _timestamps(results: Iterable[Any], pick: Callable[[float, float], float]) -> dict[str, dict[Any, float]]:
    """gpu key -> pod (or None) -> timestamp, from series whose labels name a GPU."""
    out: dict[str, dict[Any, float]] = {}
    for series in results:
        try:
            labels = series["metric"]
            gpu = fields.parse_identity(labels)
            ts = fields.parse_value(series["value"])
        except (ValueError, KeyError, TypeError):
            continue
        pod = fields.parse_pod(labels)
        holder = pod[0] if pod else None
        by_pod = out.setdefault(gpu.key, {})
        by_pod[holder] = pick(by_pod[holder], ts) if holder in by_pod else ts
    return out


def _for_holder(by_pod: Mapping[Any, float], sample: GpuSample) -> list[float]:
    # The idle clock restarts when a GPU changes hands, so only the current holder's
    # history counts. An unheld sample may still carry the scrape target's own pod
    # label in history (see dcgm_fields.merge_readings): then take every series.
    if sample.pod in by_pod:
        return [by_pod[sample.pod]]
    return list(by_pod.values()) if sample.pod is None else []


def evaluation_time(answers: Iterable[Iterable[Any]]) -> datetime | None:
    """When Prometheus evaluated these instant queries: the earliest timestamp its answers carry
    (every series of an instant query is stamped with its evaluation time); None when they are empty."""
    earliest: datetime | None = None
    for answer in answers:
        for series in answer:
            try:
                at = datetime.fromtimestamp(float(series["value"][0]), UTC)
            except (KeyError, IndexError, TypeError, ValueError, OverflowError, OSError):
                continue  # a malformed series: parse_results rejects and counts it
            earliest = at if earliest is None else min(earliest, at)
    return earliest


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def describe_error(e: BaseException) -> str:
    """One line a person can act on, for the snapshot's metrics.error and the TUI."""
    if isinstance(e, requests.Timeout):
        return "Prometheus did not answer in time"
    if isinstance(e, requests.exceptions.SSLError):
        return f"TLS error talking to Prometheus: {_short(e)}"
    if isinstance(e, requests.ConnectionError):
        # requests buries the cause ("[Errno 111] Connection refused") in a long repr
        cause = _ERRNO.search(str(e))
        return f"cannot connect to Prometheus: {cause.group(0) if cause else _short(e)}"
    if isinstance(e, PrometheusApiClientException):
        text = str(e)
        if "Status Code 401" in text or "Status Code 403" in text:
            return f"Prometheus rejected the credentials: {_short(e)}"
        return f"Prometheus query failed: {_short(e)}"
    if isinstance(e, ValueError | KeyError | TypeError):
        return "the URL answered, but not as the Prometheus HTTP API (expected JSON with data.result)"
    return _short(e)


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def _short(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
