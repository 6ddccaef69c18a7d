"""ClusterStore: the one mutable place that holds what sources report.

Sources call the mutators (sync, no I/O, cheap); consumers call `snapshot()`,
which joins everything into an immutable `Snapshot` and caches it until the
next mutation. Listeners (the SnapshotHub) are told "something changed" after
every mutation; they decide when to build and publish.

The store remembers which record keys each mutation touched, so the join
redoes only what depends on them, and which rows each join replaced, so
`changes(old, new)` costs what changed, not what exists.

Not thread-safe on purpose: everything runs on one event loop. Sync SDKs run in
threads but hand their results back to the loop before touching the store.
The one exception is the join itself (`snapshot_in_thread()`, what the running
hub uses), so that a metrics refresh at 12,500 GPUs does not stop the loop
from reading watches and drawing. The store's state is split in two:

* the loop's: the record tables, dirty keys, health, alerts, the idle queue
  and the cache, touched only on the loop;
* the join's: the Joiner's rows, the idle clock, the change log, the
  generation, touched only with the join lock held, by one join at a time.

A join's inputs are taken on the loop, with the lock held, in one go (no
await): copies of the record tables (records themselves are frozen), the
dirty keys and queued batches handed over, the health as of that moment. So
the thread reads nothing the loop mutates, and its snapshot is the store as
of one instant, never a mix; what the loop changes meanwhile waits for the
next join. Batches and history reach the idle clock through a queue that the
next join takes in first. A join started in a thread always runs to its end
(its rows are what the next join builds on), and its result is cached only if
nothing changed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from gpuctl.clock import Clock, utcnow
from gpuctl.model import Alert, Changes, HistoryVia, MetricsHealth, Snapshot, SourceFailure, WatchHealth
from gpuctl.state.changes import ChangeLog, diff
from gpuctl.state.idle import DEFAULT_GRACE_S, DEFAULT_THRESHOLD_PCT, DEFAULT_WINDOW_S, IdleClock
from gpuctl.state.join import Joiner, JoinInputs, Rows
from gpuctl.state.pools import pool_labels
from gpuctl.state.records import (
    JobRecord,
    Kind,
    MetricsBatch,
    NamespaceRecord,
    NodeRecord,
    PdbRecord,
    PodRecord,
    QuotaRecord,
    Record,
    ReplicaSetRecord,
)
from gpuctl.workers import Workers

log = logging.getLogger(__name__)

MetricsSourceName = Literal["prometheus", "nvml", "demo", "none"]
Listener = Callable[[], None]

@dataclass(frozen=True, slots=True)
class _Pending:
    """A join about to run: its inputs and what the snapshot takes from the store as of that moment."""

    inputs: JoinInputs
    idle: list[MetricsBatch | Mapping[str, datetime]]  # for the idle clock first: batches to observe, history
    mutations: int  # the store's mutation count when the inputs were taken
    metrics: MetricsHealth
    nodes_listed: bool
    watch: WatchHealth
    alerts: tuple[Alert, ...]
    failures: tuple[SourceFailure, ...]
    batch_at: datetime | None


# A refresh with fewer GPUs than the last full one divided by this is a gap (MetricsHealth.gpus_missing).
COVERAGE_DROP = 2

# Batches (and history) waiting for a join; past this many, the store feeds the idle clock itself.
_IDLE_QUEUE_MAX = 4

_KIND_OF: dict[type, Kind] = {
    NodeRecord: Kind.NODE,
    PodRecord: Kind.POD,
    QuotaRecord: Kind.QUOTA,
    NamespaceRecord: Kind.NAMESPACE,
    ReplicaSetRecord: Kind.REPLICASET,
    JobRecord: Kind.JOB,
    PdbRecord: Kind.PDB,
}



class ClusterStore:
    def __init__(
        self,
        *,
        idle_threshold_pct: float = DEFAULT_THRESHOLD_PCT,
        idle_window_s: float = DEFAULT_WINDOW_S,
        idle_grace_s: float = DEFAULT_GRACE_S,
        refresh_s: float = 15.0,
        stale_after_s: float | None = None,
        pool_label: str | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._clock = clock
        # Touched only by joins (under the join lock): batches and history queue up for the next one.
        self._idle = IdleClock(threshold_pct=idle_threshold_pct, window_s=idle_window_s, grace_s=idle_grace_s)
        self._idle_queue: list[MetricsBatch | Mapping[str, datetime]] = []
        self._idle_at: datetime | None = None  # time of the latest batch taken in
        self._pool_order = pool_labels(pool_label)
        self._stale_after = timedelta(seconds=stale_after_s if stale_after_s is not None else 3 * refresh_s)
        # A cached snapshot is rebuilt at least this often, so ages and staleness keep moving.
        self._max_cache_age = timedelta(seconds=refresh_s)
        self._records: dict[Kind, dict[str, Record]] = {kind: {} for kind in Kind}
        self._listed: set[Kind] = set()
        self._unreadable: frozenset[Kind] = frozenset()
        self._epoch = 0
        self._batch: MetricsBatch | None = None
        self._metrics_source: MetricsSourceName = "none"
        self._metrics_error: str | None = None
        self._metrics_retry_at: datetime | None = None
        self._metrics_attempted = False
        self._history_error: str | None = None
        self._history_retry_at: datetime | None = None
        self._history_pending = False
        self._history_via: HistoryVia | None = None
        self._history_fallback: str | None = None
        self._warned_unmatched = False
        # The last refresh with enough GPUs in it, while later ones bring too few (see _check_coverage).
        self._full_batch: MetricsBatch | None = None
        self._gpus_missing = 0
        self._missing_since: datetime | None = None
        self._watch = WatchHealth(source="none")
        self._last_event: datetime | None = None
        self._alerts: tuple[Alert, ...] = ()
        self._failures: tuple[SourceFailure, ...] = ()
        self._generation = 0
        self._cached: Snapshot | None = None
        self._cached_until: datetime | None = None
        self._listeners: list[Listener] = []
        self._mutations = 0  # counts _changed(): a join's result is cached only if none came meanwhile
        self._join_lock = threading.Lock()  # one join at a time, on the loop or in a worker thread
        self._workers = Workers("gpuctl-join", 1)
        self._in_thread: asyncio.Future[Any] | None = None  # the join (or changes) running in the worker thread
        self._joiner = Joiner()
        self._dirty: dict[Kind, set[str]] = {kind: set() for kind in Kind}  # keys touched since the last join
        self._log = ChangeLog()
        self._rows: Rows | None = None

    # -- listeners --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener()` after every mutation; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self) -> None:
        self._mutations += 1
        self._cached = None
        for listener in tuple(self._listeners):
            listener()

    # -- records ----------------------------------------------------------------------------

    def replace(self, kind: Kind, records: Iterable[Record]) -> None:
        """Exact replacement of one kind after a (re)list: anything not in `records` is gone."""
        old, new = self._records[kind], {r.key: r for r in records}
        dirty = self._dirty[kind]
        dirty.update(key for key in old if key not in new)
        dirty.update(key for key, record in new.items() if old.get(key) is not record)
        self._records[kind] = new
        self._listed.add(kind)
        self._epoch += 1
        self._last_event = self._clock()
        self._changed()

    def upsert(self, record: Record) -> None:
        kind, key = _KIND_OF[type(record)], record.key
        self._records[kind][key] = record
        self._dirty[kind].add(key)
        self._last_event = self._clock()
        self._changed()

    def delete(self, kind: Kind, key: str) -> None:
        self._last_event = self._clock()
        if self._records[kind].pop(key, None) is not None:
            self._dirty[kind].add(key)
            self._changed()

    def records(self, kind: Kind) -> Mapping[str, Record]:
        """Read-only view of one kind's raw records (for sources and tests)."""
        return self._records[kind]

    @property
    def listed(self) -> frozenset[Kind]:
        """Kinds that have had at least one full list (`replace`)."""
        return frozenset(self._listed)

    def set_unreadable(self, kinds: Iterable[Kind]) -> None:
        """Kinds the source may not list (RBAC): their records are missing, not absent."""
        kinds = frozenset(kinds)
        if kinds != self._unreadable:
            self._unreadable = kinds
            self._changed()

    @property
    def known(self) -> frozenset[Kind]:
        """Kinds whose records are the whole truth: listed, and not unreadable."""
        return frozenset(self._listed) - self._unreadable

    @property
    def epoch(self) -> int:
        """Counts `replace` calls: a change means whole kinds were swapped out."""
        return self._epoch

    # -- metrics ----------------------------------------------------------------------------

    def apply_metrics(self, batch: MetricsBatch) -> None:
        if self._idle_at is not None and batch.at < self._idle_at:
            return  # older than what we have: a late answer from a slow refresh (IdleClock.observe's rule)
        self._idle_at = batch.at
        self._check_coverage(batch)
        self._idle_queue.append(batch)
        if len(self._idle_queue) > _IDLE_QUEUE_MAX and self._join_lock.acquire(blocking=False):
            try:  # nobody takes snapshots: take the batches in now rather than hold them all
                self._drain_idle_queue(self._idle_queue)
                self._idle_queue = []
            finally:
                self._join_lock.release()
        self._batch = batch
        self._metrics_error = None
        self._metrics_retry_at = None
        self._metrics_attempted = True
        self._changed()

    def _check_coverage(self, batch: MetricsBatch) -> None:
        """A refresh with fewer than half the GPUs of the last full one is a gap in the metrics, not a smaller fleet.

        Counted against the last full refresh, only for GPUs of nodes still listed (a node that
        went took its GPUs with it); the count stays until a refresh brings enough GPUs again."""
        full = self._full_batch
        if full is None or len(batch.samples) * COVERAGE_DROP >= len(full.samples):
            self._full_batch, self._gpus_missing, self._missing_since = batch, 0, None
            return
        nodes = self._records[Kind.NODE]
        check_nodes = Kind.NODE in self._listed
        now = {s.key for s in batch.samples}
        self._gpus_missing = sum(
            1 for s in full.samples if s.key not in now and (not check_nodes or s.hostname in nodes)
        )
        if not self._gpus_missing:  # the nodes went, and their GPUs with them: a smaller fleet
            self._full_batch, self._missing_since = batch, None
        elif self._missing_since is None:
            self._missing_since = batch.at

    def metrics_failed(self, error: str, at: datetime, *, retry_at: datetime | None = None) -> None:
        self._metrics_error = error
        self._metrics_retry_at = retry_at
        self._metrics_attempted = True
        self._changed()

    def history_requested(self) -> None:
        """The source asked for idle history: until it answers (or fails), streaks count only from gpuctl's start.

        A refresh that fails takes its history query with it; it is asked again with the next refresh, and
        stays pending meanwhile."""
        self._history_pending = True
        self._changed()

    def backfill_idle(
        self, idle_since: Mapping[str, datetime], *, via: HistoryVia | None = None, fallback: str | None = None
    ) -> None:
        """Idle streaks from history (a source's start); clears a history failure. `via`, `fallback`: how
        the history was read, and why not from recording rules (MetricsHealth.history_via, history_fallback)."""
        self._idle_queue.append(dict(idle_since))
        self._history_via, self._history_fallback = via, fallback
        self._history_error = None
        self._history_retry_at = None
        self._history_pending = False
        self._changed()

    def history_failed(self, error: str, *, retry_at: datetime) -> None:
        """The idle-history query failed; the source tries again at `retry_at`."""
        self._history_error = error
        self._history_retry_at = retry_at
        self._history_pending = False
        self._changed()

    @property
    def metrics_attempted(self) -> bool:
        """A metrics refresh has finished, successfully or not."""
        return self._metrics_attempted

    # -- health and alerts ------------------------------------------------------------------

    def set_watch_health(self, health: WatchHealth) -> None:
        if health != self._watch:
            self._watch = health
            self._changed()

    @property
    def watch_health(self) -> WatchHealth:
        return self._watch

    def set_metrics_source(self, name: MetricsSourceName) -> None:
        if name != self._metrics_source:
            self._metrics_source = name
            self._changed()

    def source_failed(self, source: str, error: str) -> None:
        """A source stopped on an unexpected error: record it, and mark what it fed as no longer live.

        The watch health (when `source` fed it) turns disconnected and the metrics (when
        `source` fed them) stale, both with the error and no retry, so a consumer that only
        reads those still sees the frozen data for what it is."""
        failure = SourceFailure(source=source, error=error, since=self._clock())
        self._failures += (failure,)
        message = f"the {source} source stopped: {error}"
        if source == self._watch.source:
            self._watch = self._watch.model_copy(update={"connected": False, "error": message, "retry_at": None})
        if source == self._metrics_source:
            self._metrics_error, self._metrics_retry_at = message, None
        self._changed()

    @property
    def failures(self) -> tuple[SourceFailure, ...]:
        """Sources that stopped on an unexpected error, in the order they stopped."""
        return self._failures

    def set_alerts(self, alerts: Sequence[Alert]) -> None:
        alerts = tuple(alerts)
        if alerts != self._alerts:
            self._alerts = alerts
            self._changed()

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The joined picture; the same object until something changes (or it gets old).

        Joins on the calling thread (the loop's); if a join is running in the worker
        thread, blocks until it ends first."""
        now = self._clock()
        cached = self._fresh_cache(now)
        if cached is not None:
            return cached
        with self._join_lock:
            pending = self._prepare(now, copy=False)
            snapshot = self._join(pending)
        self._adopt(snapshot, pending)
        return snapshot

    async def snapshot_in_thread(self) -> Snapshot:
        """`snapshot()`, with the join in the worker thread: the event loop runs on meanwhile.

        The join reads what was taken on the loop when it started (see the module doc),
        so what the loop changes meanwhile waits for the next join. A caller that comes
        while a join runs in the thread waits for it without blocking the loop, then
        joins anew. Cancelling the caller does not stop a join once queued: it runs to
        its end and lets go of the lock itself."""
        while (running := self._in_thread) is not None and not running.done():
            await asyncio.wait([running])
        now = self._clock()
        cached = self._fresh_cache(now)
        if cached is not None:
            return cached
        # Free: joins on the loop end before they return, the one in the thread has ended (the
        # thread lets go before its future is done), and nothing else holds it across an await.
        if not self._join_lock.acquire(blocking=False):
            raise RuntimeError("ClusterStore: the join lock is held outside a join")
        try:
            pending = self._prepare(now, copy=True)
            # Queued now, from here: from this point the thread owns the lock and always releases it.
            queued = self._workers.submit(self._join_and_release, pending)
        except BaseException:
            self._join_lock.release()
            raise
        running = self._in_thread = asyncio.wrap_future(queued)
        snapshot = await asyncio.shield(running)  # a cancelled caller must not cancel the queued join
        self._adopt(snapshot, pending)
        return snapshot

    async def changes_in_thread(self, old: Snapshot | None, new: Snapshot, *, everything: bool = False) -> Changes:
        """`changes()` in the join's worker thread, after any join there: when the log can't tell
        (another reader joined since `old`), a full diff of 22,000 GPU rows takes a few hundred ms."""
        while (running := self._in_thread) is not None and not running.done():
            await asyncio.wait([running])
        queued = self._workers.submit(partial(self.changes, everything=everything), old, new)
        found = self._in_thread = asyncio.wrap_future(queued)  # a join waits for it: it takes the join lock
        changes: Changes = await asyncio.shield(found)
        return changes

    def _join_and_release(self, pending: _Pending) -> Snapshot:
        """The worker thread's part: `_join`, then the lock `snapshot_in_thread` took goes."""
        try:
            return self._join(pending)
        finally:
            self._join_lock.release()

    def close(self) -> None:
        """Let the join's worker thread go (a join queued or running still finishes, and releases the lock)."""
        self._workers.close(drop_waiting=False)

    def _fresh_cache(self, now: datetime) -> Snapshot | None:
        cached = self._cached
        if cached is not None and self._cached_until is not None and now < self._cached_until:
            return cached
        return None

    def _prepare(self, now: datetime, *, copy: bool) -> _Pending:
        """Take the join's inputs (with the join lock held); `copy`: for a join in another thread."""
        dirty, self._dirty = self._dirty, {kind: set() for kind in Kind}
        idle, self._idle_queue = self._idle_queue, []
        records = {kind: dict(table) for kind, table in self._records.items()} if copy else self._records
        batch = self._batch
        inputs = JoinInputs(
            nodes=records[Kind.NODE],  # type: ignore[arg-type]
            pods=records[Kind.POD],  # type: ignore[arg-type]
            quotas=records[Kind.QUOTA],  # type: ignore[arg-type]
            namespaces=records[Kind.NAMESPACE],  # type: ignore[arg-type]
            replicasets=records[Kind.REPLICASET],  # type: ignore[arg-type]
            jobs=records[Kind.JOB],  # type: ignore[arg-type]
            pdbs=records[Kind.PDB],  # type: ignore[arg-type]
            known=self.known,
            batch=self._batch,
            idle=self._idle,
            pool_order=self._pool_order,
            now=now,
            dirty=dirty,
            readings_stale=batch is not None and now - batch.at > self._stale_after,
        )
        return _Pending(
            inputs=inputs,
            idle=idle,
            mutations=self._mutations,
            metrics=self._metrics_health(now),  # its gpus_stale and unmatched_hosts come from the join
            nodes_listed=Kind.NODE in self._listed,
            watch=self._watch_health(),
            alerts=self._alerts,
            failures=self._failures,
            batch_at=self._batch.at if self._batch is not None else None,
        )

    def _join(self, pending: _Pending) -> Snapshot:
        """Join and record what the join replaced (with the join lock held, on whichever thread)."""
        self._drain_idle_queue(pending.idle)
        try:
            joined = self._joiner.join(pending.inputs)
        except BaseException:
            # The join's memory of the last rows is unreliable now: next time, start over.
            self._joiner.reset()
            raise
        self._generation += 1
        snapshot = Snapshot.model_construct(
            generation=self._generation,
            taken_at=pending.inputs.now,
            idle_threshold_pct=self._idle.threshold_pct,
            idle_window_s=self._idle.window_s,
            nodes=joined.nodes,
            gpus=joined.gpus,
            pools=joined.pools,
            pods=joined.pods,
            namespaces=joined.namespaces,
            alerts=pending.alerts,
            pdbs=joined.pdbs,
            metrics=pending.metrics.model_copy(
                update={"gpus_stale": joined.gpus_stale, "unmatched_hosts": self._unmatched(joined.unmatched_hosts, pending)}
            ),
            watch=pending.watch,
            failures=pending.failures,
        )
        self._rows = joined.rows
        if joined.fresh:
            self._log.forget()  # its delta starts from nothing, not from the last snapshot
        self._log.record(snapshot, joined.delta, len(joined.gpus) + len(joined.pods) + len(joined.nodes))
        return snapshot

    def _drain_idle_queue(self, queue: Iterable[MetricsBatch | Mapping[str, datetime]]) -> None:
        """Feed the idle clock, in order (with the join lock held)."""
        for item in queue:
            if isinstance(item, MetricsBatch):
                samples = item.samples
                if any(s.stale for s in samples):
                    samples = tuple(s for s in samples if not s.stale)  # stale readings are no evidence, idle or busy
                self._idle.observe(item.at, samples)
            else:
                self._idle.backfill(item)

    def _adopt(self, snapshot: Snapshot, pending: _Pending) -> None:
        """Cache the snapshot (on the loop) unless something changed, or another join ran, since its inputs were taken."""
        if self._mutations != pending.mutations or self._generation != snapshot.generation:
            return
        self._cached = snapshot
        self._cached_until = pending.inputs.now + self._max_cache_age
        if pending.batch_at is not None and not snapshot.metrics.stale:
            # Rebuild the moment the metrics turn stale, not up to a cache age later.
            self._cached_until = min(self._cached_until, pending.batch_at + self._stale_after + timedelta(microseconds=1))

    def changes(self, old: Snapshot | None, new: Snapshot, *, everything: bool = False) -> Changes:
        """What differs from `old` to `new`, by key: the same answer as `changes.diff(old, new)`.

        Cheap (rows that changed, from the joins' log) when both are recent snapshots of
        this store and `new` is the latest; otherwise a full diff. Reads the join's state:
        with the join lock (uncontended when the hub asks, right after its own join).
        """
        if old is not None:
            with self._join_lock:
                found = self._log.changes(old, new, self._rows, everything=everything) if self._rows is not None else None
            if found is not None:
                return found
        return diff(old, new, everything=everything)

    def _unmatched(self, hosts: frozenset[str], pending: _Pending) -> int:
        """Hosts in the metrics without a node, once nodes are listed (never in --local mode); warns once."""
        if not pending.nodes_listed or not hosts:
            return 0
        if not self._warned_unmatched:
            self._warned_unmatched = True
            log.warning(
                "%d host(s) in the metrics match no node of this cluster (e.g. %s): another cluster's series? "
                "Scope the queries with --metrics-selector",
                len(hosts),
                ", ".join(sorted(hosts)[:3]),
            )
        return len(hosts)

    def _metrics_health(self, now: datetime) -> MetricsHealth:
        last = self._batch.at if self._batch is not None else None
        age = (now - last).total_seconds() if last is not None else None
        stale = last is None or self._metrics_error is not None or now - last > self._stale_after
        return MetricsHealth(
            source=self._metrics_source,
            last_success=last,
            age_s=None if age is None else max(0.0, age),
            stale=stale,
            error=self._metrics_error,
            retry_at=self._metrics_retry_at,
            series_rejected=self._batch.rejected if self._batch is not None else 0,
            unconfirmed=self._batch.unconfirmed if self._batch is not None else None,
            history_error=self._history_error,
            history_retry_at=self._history_retry_at,
            history_pending=self._history_pending,
            history_via=self._history_via,
            history_fallback=self._history_fallback,
            gpus_reported=len(self._batch.samples) if self._batch is not None else 0,
            gpus_missing=self._gpus_missing,
            missing_since=self._missing_since if self._gpus_missing else None,
        )

    def _watch_health(self) -> WatchHealth:
        watch = self._watch
        if self._last_event is not None and (watch.last_event is None or watch.last_event < self._last_event):
            watch = watch.model_copy(update={"last_event": self._last_event})
        return watch
