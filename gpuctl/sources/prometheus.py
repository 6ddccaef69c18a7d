"""DCGM metrics for every GPU in the cluster, read from Prometheus.

The query budget is fixed whatever the fleet size (never a query per GPU: at
10,000 GPUs that would be 70,000 requests):

* every refresh: one instant query per quantity for all GPUs, plus one
  freshness query (queries.freshness) that tells which GPUs' values still
  move: `REFRESH_QUERIES` (8) queries, sent concurrently. Each answer keeps
  only the labels gpuctl reads (queries.instant). When the freshness query
  fails (a slow Prometheus times it out first: it reads a window, the others
  one sample) the refresh still delivers its readings, every one marked stale
  and the batch `unconfirmed` with the reason: neither idle nor fresh;
* once per start: the idle history, so idle streaks survive a restart: two
  instant reads of gpuctl's recording rules when Prometheus runs them current
  at gpuctl's threshold (gpuctl.sources.recorded: the rules API and Prometheus's
  time are asked first), else two subqueries over the idle window plus a margin
  (gpuctl.sources.history); MetricsHealth.history_via says which, and
  history_fallback why not the rules. With the first refresh for a one-shot
  answer, after it for a live view. When they fail
  they are retried with an exponential, capped backoff, not after every
  refresh; the snapshot's MetricsHealth says so (history_error, history_retry_at).

Every query carries the metrics selector (`--metrics-selector`), so a
Prometheus that holds several clusters answers for this one only.

Requests are synchronous (requests), so every call runs in a worker thread
(and every answer is parsed on one more, one at a time); our own Session
carries the auth, and every request has a timeout both here and on the
Prometheus side. prometheus-api-client provides the error type only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import urlencode

import requests
from prometheus_api_client import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from gpuctl.clock import Clock, utcnow
from gpuctl.errors import MetricsUnavailable
from gpuctl.model import HistoryVia
from gpuctl.sources import dcgm_fields as fields
from gpuctl.sources import queries, recorded
from gpuctl.sources.base import Backoff
from gpuctl.sources.dcgm_fields import Quantity
from gpuctl.sources.history import HistoryPlan, idle_since, split_recorded
from gpuctl.sources.selector import NO_SELECTOR, Selector
from gpuctl.state.records import GpuSample, MetricsBatch
from gpuctl.workers import Workers

log = logging.getLogger(__name__)
T = TypeVar("T")
HistoryAnswers = tuple[list[Any], list[Any]]  # last_busy, present_since (queries.py)

# Quantities fetched on every refresh, in this order, after the freshness query (see fetch).
REFRESH_QUANTITIES: tuple[Quantity, ...] = tuple(Quantity)
REFRESH_QUERIES = len(REFRESH_QUANTITIES) + 1
HISTORY_QUERIES = 2
MAX_IN_FLIGHT = 4  # queries sent to Prometheus at once
CLIENT_TIMEOUT_MARGIN_S = 2.0  # the client waits this much past a query's Prometheus-side timeout

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
    def history_requested(self) -> None: ...
    def backfill_idle(self, idle_since: Mapping[str, datetime], *, via: HistoryVia | None = None, fallback: str | None = None) -> None: ...
    def history_failed(self, error: str, *, retry_at: datetime) -> None: ...


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
    """DCGM metrics from Prometheus; see the module docstring for the query budget."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        refresh_s: float = 15.0,
        timeout_s: float = 10.0,
        freshness_timeout_s: float | None = None,
        auth: PrometheusAuth | None = None,
        selector: Selector = NO_SELECTOR,
        idle_threshold_pct: float = 5.0,
        idle_window_s: float = 1800.0,
        idle_grace_s: float = 300.0,
        stale_window_s: float = 120.0,
        max_backoff_s: float = 120.0,
        history_backoff_s: tuple[float, float] = (60.0, 1800.0),
        history_first: bool = True,
        history_rules: bool = True,
        now: Clock = utcnow,
    ) -> None:
        self.url = url.rstrip("/")
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        # Prometheus's own limit for the freshness query (default: timeout_s); past it the readings come unconfirmed.
        self.freshness_timeout_s = timeout_s if freshness_timeout_s is None else freshness_timeout_s
        self.selector = selector
        self.idle_threshold_pct = idle_threshold_pct
        self.history = HistoryPlan.for_window(idle_window_s, refresh_s, idle_grace_s)
        self.stale_window_s = stale_window_s
        self.max_backoff_s = max_backoff_s
        self.history_backoff_s = history_backoff_s  # (first delay, cap) between failed history queries
        # True: a refresh's batch waits for the history sent with it, so the first snapshot carries the streaks
        # (one-shot answers); False: the batch first, then the history is asked for (a live view).
        self.history_first = history_first
        # False: never read the recording rules, always the subqueries (tests of the subqueries, benchmarks).
        self.history_rules = history_rules
        self.idle_grace_s = idle_grace_s
        # How the last history answers were read, and why not from the recording rules (None when they were).
        self.history_via: HistoryVia | None = None
        self.history_fallback: str | None = None
        self._now = now
        # When the next refresh is tried after a failure; None while refreshes succeed.
        self.retry_at: datetime | None = None
        # When the idle history is (re)tried; None once it has loaded.
        self.history_retry_at: datetime | None = None
        self._session = (auth or PrometheusAuth()).session()
        # No urllib3 retries: a dead Prometheus must fail fast; run() owns the backoff.
        self._session.mount(self.url, HTTPAdapter(max_retries=Retry(total=0, raise_on_status=False)))
        # Requests on threads of their own (gpuctl.workers), at most four in flight: a loaded Prometheus answers
        # ten concurrent queries no sooner than four at a time, and each slower (at load 17 they passed the
        # timeout). They hold an answer's bytes only. Decoding, parsing and joining on one more thread, an answer
        # at a time and its series one by one (fields.Results): decoded whole, an answer is many times its bytes.
        self._requests = Workers("gpuctl-prometheus", MAX_IN_FLIGHT)
        self._parsing = Workers("gpuctl-prometheus-parse", 1)
        self._pods = fields.PodRefs()  # used on the parsing thread only

    def close(self) -> None:
        self._requests.close()
        self._parsing.close()
        self._session.close()

    # -- one-shot calls --------------------------------------------------------------

    async def probe(self) -> ProbeResult:
        """Check the URL answers as a Prometheus API and count DCGM utilisation series."""
        try:
            results = await self._query(queries.instant(Quantity.UTIL, self.selector))
        except FETCH_ERRORS as e:
            raise MetricsUnavailable(
                f"Prometheus at {self.url} did not answer a query: {describe_error(e)}",
                hint="check --prometheus-url, credentials and that the URL is the Prometheus API root",
            ) from e
        return ProbeResult(url=self.url, gpu_series=len(results))

    async def fetch(self) -> MetricsBatch:
        """One refresh: a query per quantity and one for freshness, concurrently. Raises FETCH_ERRORS
        when a quantity's query fails; a failed freshness query makes the batch `unconfirmed` instead.

        Each answer is parsed on the parsing thread as it comes, a series at a time, and the readings
        merged there: at 12,500 GPUs that is ~90,000 series, work the event loop must not do (and the
        answers' JSON is let go one by one, not held all at once). Every request is queued before
        the first wait (so queries queued after this call starts go behind them), the freshness query
        first: it reads a window, the others one sample, so it is the longest, and queued last it would
        start only when an instant query ended (MAX_IN_FLIGHT) and end the refresh alone."""
        self._parsing.submit(self._pods.next_refresh)  # before this refresh's answers, on their thread
        merger = fields.ReadingsMerger()  # each answer's readings join it as parsed, on the parsing thread
        parse = partial(_parse_answer, pods=self._pods, memo=fields.RefreshMemo(), merger=merger)  # dropped with the refresh
        freshness = self._send(queries.freshness(self.stale_window_s, self.selector), timeout_s=self.freshness_timeout_s)
        sent = [self._send(queries.instant(q, self.selector)) for q in REFRESH_QUANTITIES]
        instants = asyncio.gather(*(self._answer(answer, then=partial(parse, order=i)) for i, answer in enumerate(sent)))
        try:
            parsed, moving = await asyncio.gather(instants, self._moving(freshness))
        except BaseException:
            # The error's traceback keeps this frame, and `instants` keeps the error: a reference cycle that
            # held every answer of the refresh (bytes and merged readings, MiBs at 12,500 GPUs) until the
            # cyclic collector ran, which gpuctl asks for rarely (service.tune_gc). Let go of them now.
            del sent, freshness, instants, parse, merger
            raise
        return await self._parsing.run(self._batch_of, parsed, moving, merger)

    async def _moving(self, sent: Awaitable[bytes]) -> set[str] | str:
        """The freshness query's answer (keys of GPUs whose readings move), or why it failed."""
        try:
            return await self._answer(sent, then=moving_gpus)
        except FETCH_ERRORS as e:
            reason = f"freshness check failed: {describe_error(e)}"
            log.warning("%s; this refresh's readings are all marked stale", reason)
            return reason

    def _batch_of(
        self, answers: Sequence[fields.ParsedResults], moving: Set[str] | str, merger: fields.ReadingsMerger
    ) -> MetricsBatch:
        # The idle clock runs on Prometheus's time, not ours. With no series there is no evidence to
        # time; our clock stands in (skewed far ahead, it only delays the next batch: stale, never idle).
        at = earliest_time(p.evaluated_at for p in answers) or self._now()
        rejected = sum(p.rejected for p in answers)
        if rejected:
            reasons = sum((p.reasons for p in answers), start=Counter[str]())
            log.debug("rejected %d DCGM series: %s", rejected, dict(reasons))
        unconfirmed, moving = (moving, frozenset()) if isinstance(moving, str) else (None, moving)
        samples = mark_stale(merger.samples(), moving)
        return MetricsBatch(at=at, samples=samples, rejected=rejected, unconfirmed=unconfirmed)

    async def idle_history(self, samples: Sequence[GpuSample]) -> dict[str, datetime]:
        """For GPUs now under the threshold: since when, by Prometheus's history (see gpuctl.sources.history)."""
        return await self._parsing.run(self.history_from, samples, await self.history_answers())

    async def history_answers(self, rules: recorded.Recorded | str | None = None) -> HistoryAnswers:
        """The idle history's two answers (last busy, present since): the recording rules' when Prometheus runs
        them current at gpuctl's threshold, else the subqueries'; `history_via` and `history_fallback` say which
        and why. They do not depend on the samples: run() sends them with a refresh. `rules`: what
        history_rules_usable() said, when the caller already asked (else it is asked here)."""
        if rules is None:
            rules = await self.history_rules_usable()
        plan, sel, pct = self.history, self.selector, self.idle_threshold_pct
        if isinstance(rules, recorded.Recorded):
            live_s = (recorded.CURRENT_INTERVALS + 1) * rules.interval_s  # reaches back past the rules' last evaluation
            read = self._send(queries.recorded_history(pct, live_s, sel))
            last_busy, present_since = await self._answer(read, then=split_recorded)
            self.history_via, self.history_fallback = "recording-rules", None
        else:
            reads = (
                queries.last_busy(pct, plan.lookback_s, plan.step_s, sel),
                queries.present_since(pct, plan.lookback_s, plan.presence_step_s, plan.gap_s, sel),
            )
            sent = tuple(self._send(q) for q in reads)  # both queued before the first wait, as fetch's
            last_busy, present_since = await asyncio.gather(*(self._answer(answer) for answer in sent))
            self.history_via, self.history_fallback = "subqueries", rules
            log.info("idle history read with subqueries: %s", rules)
        return last_busy, present_since

    async def history_rules_usable(self) -> recorded.Recorded | str:
        """gpuctl's recording rules as Prometheus runs them, if gpuctl may read them; else why not (a rules API
        that fails is a reason, not an error: the subqueries still work)."""
        if not self.history_rules:
            return "recording rules not asked for"
        rules = self.api_get("/api/v1/rules?type=record")
        # How far back the recorded history reaches, and Prometheus's time (the answer's), in one cheap query.
        oldest = self.api_get("/api/v1/query?" + urlencode({"query": f"min({queries.PRESENT_SINCE_RECORD}) or vector(-1)"}),
                              then=_oldest_recorded)
        try:
            groups, (prometheus_now, earliest) = await asyncio.gather(rules, oldest)
        except FETCH_ERRORS as e:
            return f"Prometheus's rules could not be read: {describe_error(e)}"
        groups = groups.get("groups") if isinstance(groups, dict) else None
        now = prometheus_now or self._now()
        chosen = recorded.choose(groups, threshold_pct=self.idle_threshold_pct, grace_s=self.idle_grace_s, now=now)
        short = None if isinstance(chosen, str) else recorded.short_reach(earliest, now=now, lookback_s=self.history.lookback_s)
        if short is None or earliest is None:
            return short or chosen
        # Young rules prove as much as the subqueries where Prometheus holds no samples from before they began
        # (it started with them: a new install), up to the subqueries' own resolution (one presence step).
        # Whether it does: any utilisation sample in the grace period before that; an older one is cut off by
        # the gap, for the subqueries too. One cheap count, only while the rules are young.
        before = earliest - self.history.presence_step_s
        older = self.api_get("/api/v1/query?" + urlencode({
            "query": queries.samples_in_window(self.history.gap_s, self.selector), "time": f"{before:.3f}"}),
            then=_any_result)  # fmt: skip
        try:
            if await older:
                return f"{short}, and Prometheus holds older samples"
        except FETCH_ERRORS as e:
            return f"{short}; whether Prometheus holds older samples could not be read: {describe_error(e)}"
        return chosen

    def history_from(self, samples: Sequence[GpuSample], answers: HistoryAnswers) -> dict[str, datetime]:
        """Join the history's answers with the current samples (pure, and thread-safe)."""
        last_busy, present_since = answers
        now = evaluation_time(answers) or self._now()  # Prometheus's clock, as for the batches
        return idle_since(samples, self.idle_threshold_pct, last_busy=last_busy, present_since=present_since, now=now)

    # -- the source loop --------------------------------------------------------------

    async def run(self, store: MetricsSink) -> None:
        """Feed the store until cancelled; outages are recorded, never raised."""
        store.set_metrics_source(self.name)
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=self.refresh_s, cap=self.max_backoff_s)
        history_backoff = Backoff(base=self.history_backoff_s[0], cap=self.history_backoff_s[1])
        self.history_retry_at = self._now()
        while True:
            started = loop.time()
            # When due, a one-shot answer (which waits for both) sends the history's queries ahead of the
            # refresh's in the request queue (MAX_IN_FLIGHT at a time; the longest first), so the first snapshot
            # waits for the slower of the two, not for both one after the other. A live view asks for the
            # history only once the readings are in: on a busy Prometheus the two would share its CPU, and
            # the readings are what the screen waits for.
            due = self.history_retry_at is not None and self._now() >= self.history_retry_at
            history = None
            if due and self.history_first:
                # Which history to ask for (cheap: the rules API and Prometheus's time) first, so that its
                # queries still go out ahead of the refresh's.
                history = asyncio.ensure_future(self.history_answers(await self.history_rules_usable()))
            if due:
                store.history_requested()
            refresh = asyncio.ensure_future(self.fetch())
            try:
                batch = await refresh
            except FETCH_ERRORS as e:
                if history is not None:  # no samples to join it with: asked again with the next refresh
                    history.cancel()
                    await asyncio.gather(history, return_exceptions=True)
                message = describe_error(e)
                log.warning("Prometheus refresh failed (%d in a row): %s", backoff.failures + 1, message)
                delay = backoff.next()
                now = self._now()
                self.retry_at = now + timedelta(seconds=delay)
                store.metrics_failed(message, now, retry_at=self.retry_at)
                await asyncio.sleep(delay)
                continue
            except BaseException:  # cancelled, or a crash: the refresh's and the history's queries go too
                refresh.cancel()
                if history is not None:
                    history.cancel()
                raise
            backoff.reset()
            self.retry_at = None
            if history is not None:
                # Before the batch, so the first snapshot already carries the streaks.
                await self._load_history(store, batch.samples, history_backoff, history)
            store.apply_metrics(batch)
            if due and not self.history_first:
                # After it, but before the next batch: the history speaks for these samples, and must reach
                # the idle clock before a later batch does (a GPU that changed hands since would inherit it).
                await self._load_history(store, batch.samples, history_backoff, self.history_answers())
            await asyncio.sleep(max(0.0, self.refresh_s - (loop.time() - started)))

    async def _load_history(
        self, store: MetricsSink, samples: Sequence[GpuSample], backoff: Backoff, answers: Awaitable[HistoryAnswers]
    ) -> None:
        try:
            history = await self._parsing.run(self.history_from, samples, await answers)
        except FETCH_ERRORS as e:
            message = describe_error(e)
            self.history_retry_at = self._now() + timedelta(seconds=backoff.next())
            log.warning("idle history query failed (%d in a row), next try at %s: %s",
                        backoff.failures, self.history_retry_at.isoformat(timespec="seconds"), message)
            store.history_failed(message, retry_at=self.history_retry_at)
            return
        self.history_retry_at = None
        store.backfill_idle(history, via=self.history_via, fallback=self.history_fallback)

    @overload
    async def api_get(self, path: str) -> Any: ...
    @overload
    async def api_get(self, path: str, *, then: Callable[[Any], T]) -> T: ...

    async def api_get(self, path: str, *, then: Callable[[Any], Any] | None = None) -> Any:
        """GET an HTTP API path (e.g. /api/v1/rules) with this source's auth; returns `data`, or with `then`
        what `then` makes of it, decoded and made on the parsing thread (not the loop). Raises FETCH_ERRORS."""

        def parse(body: bytes) -> Any:
            data = json.loads(body)["data"]
            return data if then is None else then(data)

        return await self.api_read(path, parse)

    async def api_read(self, path: str, parse: Callable[[bytes], T]) -> T:
        """GET an HTTP API path with this source's auth; what `parse` makes of the answer's bytes, made on the
        parsing thread (not the loop). Raises FETCH_ERRORS (`parse` too: they are its errors to raise)."""
        body = await self._requests.run(self._get, path, {}, self.timeout_s)
        return await self._parsing.run(parse, body)

    @overload
    async def _query(self, promql: str, *, timeout_s: float | None = None) -> list[Any]: ...
    @overload
    async def _query(self, promql: str, *, then: Callable[[Iterable[Any]], T], timeout_s: float | None = None) -> T: ...

    async def _query(
        self, promql: str, *, then: Callable[[Iterable[Any]], Any] | None = None, timeout_s: float | None = None
    ) -> Any:
        """The instant query's result list; with `then`, what `then` makes of it, on the parsing thread."""
        return await self._answer(self._send(promql, timeout_s=timeout_s), then=then)

    def _send(self, promql: str, *, timeout_s: float | None = None) -> asyncio.Future[bytes]:
        """The instant query queued for the request threads now; its answer's bytes when it comes.

        `timeout_s` (default: the source's) is Prometheus's limit, sent as plain seconds (a float: its API
        takes "0.5" where a unit would need whole numbers); the client waits a little longer. Cancelling
        the future drops the request if it has not started yet."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        params = {"query": promql, "timeout": f"{limit:g}"}
        return asyncio.wrap_future(self._requests.submit(self._get, "/api/v1/query", params, limit))

    async def _answer(self, sent: Awaitable[bytes], *, then: Callable[[Iterable[Any]], Any] | None = None) -> Any:
        """A sent query's result list (or what `then` makes of it), parsed on the parsing thread."""
        try:
            body = await sent
        except BaseException:
            del sent, then  # as in fetch: the traceback keeps this frame, `sent` the error, `then` a refresh's pods
            raise

        def parse() -> Any:
            result = fields.decode_results(body)
            if not isinstance(result, fields.Results):
                raise TypeError("Prometheus answer has no result list")
            return list(result) if then is None else then(result)

        return await self._parsing.run(parse)

    def _get(self, path: str, params: Mapping[str, str], timeout_s: float) -> bytes:
        """GET an API path; the answer's bytes. Raises FETCH_ERRORS (PrometheusApiClientException: not 200)."""
        # The session carries auth headers, TLS settings and the no-retries adapter; `verify` is passed again
        # because requests lets REQUESTS_CA_BUNDLE override the session's. The client waits a little past
        # Prometheus's own limit, so its answer saying why comes first.
        resp = self._session.get(
            f"{self.url}{path}", params=params, timeout=timeout_s + CLIENT_TIMEOUT_MARGIN_S, verify=self._session.verify
        )
        if resp.status_code != 200:
            raise PrometheusApiClientException(f"HTTP Status Code {resp.status_code} ({resp.content[:500]!r})")
        return resp.content


def _parse_answer(
    answer: Iterable[Any], *, pods: fields.PodRefs, memo: fields.RefreshMemo, merger: fields.ReadingsMerger, order: int
) -> fields.ParsedResults:
    """One instant query's answer, its series parsed (in one pass: see fields.Results) and its readings added to
    the refresh's merger (`order`: the query's place in the refresh); what is left is its counts and time."""
    parsed = fields.parse_results(answer, pods, memo)
    merger.add(parsed.readings, order)
    return replace(parsed, readings=())


def _oldest_recorded(data: Any) -> tuple[datetime | None, float | None]:
    """Prometheus's time and the earliest present-since value from `min(…) or vector(-1)`'s data (-1: none)."""
    try:
        at, value = data["result"][0]["value"]
        oldest = float(value)
        return datetime.fromtimestamp(float(at), UTC), (oldest if oldest >= 0 else None)
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, OSError):
        return None, None


def _any_result(data: Any) -> bool:
    """Whether a query's data holds any series (a malformed answer counts as one: the subqueries are safe)."""
    result = data.get("result") if isinstance(data, dict) else None
    return not isinstance(result, list) or bool(result)


def moving_gpus(results: Iterable[Any]) -> set[str]:
    """Keys of the GPUs whose values changed in the freshness window (queries.freshness's answer)."""
    out: set[str] = set()
    for series in results:
        try:
            key = fields.parse_identity(series["metric"]).key
            changes = fields.parse_value(series["value"])
        except (ValueError, KeyError, TypeError):
            continue
        if changes > 0:
            out.add(key)
    return out


def mark_stale(samples: Sequence[GpuSample], moving: Set[str]) -> tuple[GpuSample, ...]:
    """The samples, those of GPUs not in `moving` flagged stale."""
    return tuple(s if s.key in moving else replace(s, stale=True) for s in samples)


def evaluation_time(answers: Iterable[Iterable[Any]]) -> datetime | None:
    """When Prometheus evaluated these instant queries: the earliest timestamp its answers carry
    (every series of an instant query is stamped with its evaluation time); None when they are empty.
    A malformed series is skipped (parse_results rejects and counts it)."""
    return earliest_time(fields.series_time(series) for answer in answers for series in answer)


def earliest_time(times: Iterable[float | None]) -> datetime | None:
    """The earliest of these Unix times (fields.series_time's) as a datetime; None when there is none."""
    known = [t for t in times if t is not None]
    return datetime.fromtimestamp(min(known), UTC) if known else None


def describe_error(e: BaseException) -> str:
    """One line a person can act on, for the snapshot's metrics.error and the TUI."""
    if isinstance(e, requests.Timeout) or _READ_TIMEOUT in str(e):
        # With retries configured (even none), requests reports a read timeout as a ConnectionError.
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
        timed_out = _TIMEOUT.search(text)  # Prometheus's own limit (the query's `timeout`, or --query.timeout)
        if timed_out:
            return f"Prometheus did not answer in time ({timed_out.group(1)})"
        return f"Prometheus query failed: {_short(e)}"
    if isinstance(e, ValueError | KeyError | TypeError):
        return "the URL answered, but not as the Prometheus HTTP API (expected JSON with data.result)"
    return _short(e)


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")
_READ_TIMEOUT = "ReadTimeoutError"
_TIMEOUT = re.compile(r'"errorType":"timeout","error":"([^"]*)"')


def _short(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
