"""open_cluster(settings): the one way front ends get a live cluster picture.

It builds the store and the hub, starts the sources the settings ask for as
tasks, and cancels them on exit:

    kubernetes (default)  KubernetesSource + PrometheusSource/alerts when prometheus_url is set
    demo                  DemoSource (simulated fleet, nothing to connect to)
    local                 NvmlSource (this machine's GPUs, no Kubernetes)

    async with open_cluster(settings) as cluster:
        await cluster.wait_ready(10)           # first lists + first metrics
        async for update in cluster.subscribe():
            ...

Sources are imported lazily: the demo needs no Kubernetes client, `--local`
needs no Prometheus client. Front ends reach Kubernetes and Prometheus only
through this module (`open_cluster`, `kube_contexts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuctl.config import Settings
from gpuctl.errors import ClusterUnreachable, GpuctlError, NotReady, SourceStopped
from gpuctl.model import Snapshot, WatchHealth
from gpuctl.sources.base import Source, describe_crash
from gpuctl.state.hub import SnapshotHub, Subscription
from gpuctl.state.records import Kind
from gpuctl.state.store import ClusterStore
from gpuctl.trace import NO_TRACE, Trace, watch_loop

if TYPE_CHECKING:
    from gpuctl.sources.kube.contexts import KubeContexts

log = logging.getLogger(__name__)

ALL_KINDS = frozenset(Kind)


class Cluster:
    """A running set of sources feeding one store; see `open_cluster`."""

    def __init__(
        self, settings: Settings, store: ClusterStore, hub: SnapshotHub, sources: Sequence[Any], trace: Trace = NO_TRACE
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self._trace = trace
        self.sources = list(sources)
        # Sources that stopped on an unexpected error (also in every snapshot's `failures`).
        self.crashed: list[tuple[str, BaseException]] = []
        # What "ready" means for these sources: which kinds must be listed, whether metrics must arrive.
        self.expected_kinds = ALL_KINDS if settings.mode in ("kubernetes", "demo") else frozenset()
        self.expects_metrics = any(getattr(s, "name", "") in ("prometheus", "nvml") for s in self.sources) or (
            settings.mode == "demo"
        )

    def subscribe(self) -> Subscription:
        return self.hub.subscribe()

    def snapshot(self) -> Snapshot:
        """The store joined now, on the calling thread: for tools and tests with no loop to keep
        serving. At 10,000 pods a join takes seconds, so code on a serving loop uses `current()`."""
        return self.store.snapshot()

    async def current(self) -> Snapshot:
        """The store as of now, joined in the join's worker thread: the event loop serves on meanwhile.

        Current, not merely recent: everything the sources delivered before the call is in it
        (the cached join when nothing moved since; else, after any join already running, a new
        one). What a planner reads, so a plan is never made from an older picture than the
        hub's. For answers that may be one publish old, `hub.latest` costs nothing."""
        return await self.store.snapshot_in_thread()

    @property
    def ready(self) -> bool:
        listed = self.expected_kinds <= self.store.listed
        return listed and (not self.expects_metrics or self.store.metrics_attempted)

    def _kube_failure(self) -> GpuctlError | None:
        for source in self.sources:
            if getattr(source, "name", "") == "kubernetes" and not source.listed:
                return source.failure
        return None

    def _raise_if_crashed(self) -> None:
        if self.crashed:
            name, error = self.crashed[0]
            raise SourceStopped(name, describe_crash(error)) from error

    async def wait_ready(self, timeout: float | None = None, *, fail_fast: bool = True) -> Snapshot:
        """Wait for the first lists and the first metrics refresh (success or failure).

        fail_fast: raise the cluster's error as soon as the very first connection
        fails (one-shot commands) instead of waiting out retries (the TUI).
        On timeout: returns what there is if the lists are done (metrics just
        late), else raises the cluster error or NotReady.
        Raises SourceStopped when a source has stopped on an unexpected error, before
        or at the moment it returns: a one-shot answer never comes from frozen data.
        """
        async def until_ready() -> None:
            # Judged on the store as it changes, not on published snapshots: no join until the answer.
            changed = asyncio.Event()
            stop_listening = self.store.add_listener(changed.set)
            listed = metrics = False  # traced once each, for benchmarks
            try:
                while True:
                    self._raise_if_crashed()
                    if fail_fast and (failure := self._kube_failure()) is not None:
                        raise failure
                    if not listed and (listed := self.expected_kinds <= self.store.listed):
                        self._trace.event("listed")
                    if not metrics and (metrics := self.store.metrics_attempted):
                        self._trace.event("metrics_attempted")
                    if self.ready:
                        return
                    await changed.wait()
                    changed.clear()
            finally:
                stop_listening()

        try:
            async with asyncio.timeout(timeout):  # (not wait_for: on 3.11 it can swallow a cancel)
                await until_ready()
        except TimeoutError:
            if not self.expected_kinds <= self.store.listed:
                failure = self._kube_failure()
                if failure is not None:
                    raise failure from None
                missing = ", ".join(sorted(k.value for k in self.expected_kinds - self.store.listed))
                if self.settings.mode == "kubernetes":
                    raise ClusterUnreachable(
                        f"the Kubernetes API did not list {missing} within {timeout:g} s", hint="is it overloaded?"
                    ) from None
                raise NotReady(f"no data for {missing} within {timeout:g} s") from None
        self._raise_if_crashed()
        return await self.current()


def kube_contexts(kubeconfig: Path | None) -> KubeContexts:
    """The contexts of the kubeconfig gpuctl would connect with (a front end's context switcher).

    Reads files only, no connection; blocking, so call it in a thread. Raises ConfigError."""
    from gpuctl.sources.kube.contexts import read_contexts

    return read_contexts(kubeconfig)


def idle_grace_s(settings: Settings) -> float:
    """The grace period: the longest time without a utilisation reading that an idle streak
    survives (and a GPU missing from the metrics is remembered). Three refreshes, so one or
    two failed refreshes do not reset a streak; at least 5 minutes, so that with a fast refresh
    (2 s for --local) a dcgm-exporter restart of a minute or two does not either. A longer gap
    restarts the streak (gpuctl.state.idle), in the clock and in the history read at start
    (gpuctl.sources.history): time nobody measured never counts as idle."""
    return max(300.0, 3 * settings.refresh_s)


def build_sources(settings: Settings, *, history_first: bool = True) -> list[Any]:
    """The sources `settings` ask for (not started).

    history_first: the first metrics wait for the idle history (one-shot answers carry the
    streaks); False shows them at once and the streaks when the history answers (a live view:
    at 12,500 GPUs the history can take seconds)."""
    if settings.mode == "demo":
        from gpuctl.sources.demo import DemoSource

        return [DemoSource(seed=settings.demo_seed, scale=settings.demo_scale, tick_s=settings.refresh_s)]
    if settings.mode == "local":
        from gpuctl.sources.nvml import NvmlSource

        return [NvmlSource(refresh_s=settings.refresh_s)]
    from gpuctl.sources.kubernetes import KubernetesSource

    sources: list[Any] = [
        KubernetesSource(
            kubeconfig=settings.kubeconfig,
            context=settings.context,
            in_cluster=settings.in_cluster,
            pool_label=settings.pool_label,
        )
    ]
    if settings.prometheus_url:
        from gpuctl.sources.alerts import PrometheusAlertsSource
        from gpuctl.sources.prometheus import PrometheusAuth, PrometheusSource
        from gpuctl.sources.selector import NO_SELECTOR, parse_selector

        auth = PrometheusAuth(
            bearer_token=settings.prometheus_token.get_secret_value() if settings.prometheus_token else None,
            basic=(settings.prometheus_username, settings.prometheus_password.get_secret_value())
            if settings.prometheus_username and settings.prometheus_password
            else None,
            ca_file=str(settings.prometheus_ca_file) if settings.prometheus_ca_file else None,
            insecure=settings.prometheus_insecure,
        )
        prometheus = PrometheusSource(
            settings.prometheus_url,
            refresh_s=settings.refresh_s,
            auth=auth,
            selector=parse_selector(settings.metrics_selector) if settings.metrics_selector else NO_SELECTOR,
            idle_threshold_pct=settings.idle_threshold_pct,
            idle_window_s=settings.idle_window_s,
            idle_grace_s=idle_grace_s(settings),
            stale_window_s=settings.gpu_stale_after_s,
            history_first=history_first,
        )
        sources += [prometheus, PrometheusAlertsSource(prometheus, refresh_s=max(settings.refresh_s, 30.0))]
    return sources


@contextlib.asynccontextmanager
async def open_cluster(
    settings: Settings,
    *,
    sources: Sequence[Source] | None = None,
    min_interval: float = 0.25,
    history_first: bool = True,
    publishing: bool = True,
) -> AsyncIterator[Cluster]:
    """Start the sources for `settings` (or the given ones) feeding a fresh store; stop them on exit.

    history_first: see build_sources (the live view passes False).
    publishing: False for one-shot answers (`wait_ready` then `current()`): the hub publishes nothing and
    subscriptions get no updates, so no snapshot is joined before the one asked for (at 10,000 pods each
    join is ~0.3 s of CPU, and the store changes many times while the lists and metrics come in).

    Raises ConfigError before anything starts when credentials can't be loaded.
    With `settings.trace_file`, publishes and event-loop stalls are traced there (gpuctl.trace).
    """
    store = ClusterStore(
        idle_threshold_pct=settings.idle_threshold_pct,
        idle_window_s=settings.idle_window_s,
        refresh_s=settings.refresh_s,
        stale_after_s=settings.stale_after_s,
        pool_label=settings.pool_label,
        idle_grace_s=idle_grace_s(settings),
    )
    chosen = list(sources) if sources is not None else build_sources(settings, history_first=history_first)
    if any(getattr(source, "name", "") == "kubernetes" for source in chosen):
        store.set_watch_health(WatchHealth(source="kubernetes"))  # a cluster not listed yet; "none" means no cluster
    for source in chosen:
        connect = getattr(source, "connect", None)
        if connect is not None:
            await connect()  # bad kubeconfig -> ConfigError now, not a retry loop later
    trace = Trace.open(settings.trace_file)
    trace.event("open_cluster")
    hub = SnapshotHub(
        store, min_interval=min_interval, heartbeat=min(settings.refresh_s, 5.0), trace=trace, join_in_thread=True
    )
    cluster = Cluster(settings, store, hub, chosen, trace)

    async def supervise(source: Any) -> None:
        name = getattr(source, "name", type(source).__name__)
        try:
            await source.run(store)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in a source must not take the others down silently
            log.exception("source %s stopped", name)
            cluster.crashed.append((name, e))
            store.source_failed(name, describe_crash(e))  # every consumer sees it in the snapshot

    tasks = [asyncio.create_task(hub.run(), name="snapshot-hub")] if publishing else []
    tasks += [asyncio.create_task(supervise(s), name=f"source-{getattr(s, 'name', '?')}") for s in chosen]
    if trace.enabled:
        tasks.append(asyncio.create_task(watch_loop(trace), name="trace-loop-lag"))
    try:
        yield cluster
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in chosen:
            close = getattr(source, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
        hub.close()
        store.close()
        trace.close()


SERVING_SWITCH_S = 0.0005


def tune_switching() -> None:
    """Hand the GIL over after 0.5 ms instead of 5 ms, for processes that answer requests (the bot).

    The bot's main loop shares the GIL with its worker threads (the join, the Prometheus parsing, the
    answers): CPU-bound Python that holds it. Every syscall of the loop (reading the front door's
    Tallies, /healthz, the answers' posts) gives the GIL up, and taking it back waits out the switch
    interval. The acks no longer wait on it (a process of their own, gpuctl.bot.front_door); when
    they shared this GIL from a thread, 50 requests at once spent seconds waiting for it at 5 ms.
    Process-wide, so only entry points call it."""
    sys.setswitchinterval(SERVING_SWITCH_S)


def tune_gc() -> None:
    """Collect the young generation less often: a 10,000-pod snapshot is ~100k live objects, and
    default gen-0 thresholds make the collector rescan them several times per snapshot.

    The older generations keep CPython's default ratios (a full collection also waits until a quarter
    of the long-lived objects are new): what dies in a reference cycle is freed only by them, and
    cycles are made all the time (every Strip Textual renders caches itself; a failed request's
    traceback keeps its frames). With full collections all but off (50, 1000), an hour of churn at
    12,500 GPUs left 2 million such objects in `gpuctl top` (BENCHMARKS.md section 8).
    Process-wide, so only entry points (the CLI) call it."""
    gc.set_threshold(100_000, 10, 10)
