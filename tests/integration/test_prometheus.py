"""PrometheusSource against a real Prometheus 2.42 scraping real /metrics endpoints.

Two exporters: one in the classic and 4.9 spellings scraped like a static
target, one scraped the way Kubernetes service discovery does it (target
labels pod/namespace, honor_labels off) so Prometheus renames the exporter's
pod labels to exported_*. Prometheus, the store and the source are real; only
the exporters serve fixed text (tests need exact series, malformed ones too).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gpuctl.errors import MetricsUnavailable
from gpuctl.model import Gpu, PodRef, Snapshot
from gpuctl.sim.fleet import build_fleet
from gpuctl.sources import dcgm_fields, queries
from gpuctl.sources.dcgm_fields import MIB, Quantity
from gpuctl.sources.prometheus import REFRESH_QUANTITIES, PrometheusAuth, PrometheusSource
from gpuctl.sources.queries import instant
from gpuctl.sources.recorded import Recorded
from gpuctl.state.store import ClusterStore
from testbed.dcgm_exporter import DcgmExporterSim, Options
from testbed.monitoring import SHIPPED_RULES, BearerProxy, Monitoring, ScrapeJob, StaticExporter, exposition_line
from testbed.pki import CertificateAuthority
from testbed.process import free_port
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

A100 = "NVIDIA A100-SXM4-80GB"
H100 = "NVIDIA H100 80GB HBM3"
UTIL_ANY = instant(Quantity.UTIL)


def classic(node: str, gpu: int, *, util: float, used: float = 1000, free: float = 80000, pod: tuple[str, str] | None = None, **extra: str) -> list[str]:
    labels = {"gpu": str(gpu), "UUID": f"GPU-{node}-{gpu}", "device": f"nvidia{gpu}", "modelName": A100, "Hostname": node, **extra}
    if pod:
        labels |= {"namespace": pod[0], "pod": pod[1], "container": "main"}
    return [
        exposition_line("DCGM_FI_DEV_GPU_UTIL", util, **labels),
        exposition_line("DCGM_FI_DEV_FB_USED", used, **labels),
        exposition_line("DCGM_FI_DEV_FB_FREE", free, **labels),
        exposition_line("DCGM_FI_DEV_GPU_TEMP", 55, **labels),
        exposition_line("DCGM_FI_DEV_POWER_USAGE", 250.5, **labels),
        exposition_line("DCGM_FI_DEV_XID_ERRORS", 0, **labels),
    ]


def renamed_49(node: str, gpu: int, *, util_ratio: float, pod: tuple[str, str] | None = None) -> list[str]:
    labels = {"gpu": str(gpu), "UUID": f"GPU-{node}-{gpu}", "modelName": H100, "hostname": node, "DCGM_FI_SYSTEM_DRIVER_VERSION": "580.1"}
    if pod:
        labels |= {"namespace": pod[0], "pod": pod[1], "container": "main"}
    return [
        exposition_line("DCGM_FI_DEV_GPU_UTIL_RATIO", util_ratio, **labels),
        exposition_line("DCGM_FI_DEV_FB_USED_BYTES", 2048 * MIB, **labels),
        exposition_line("DCGM_FI_DEV_FB_FREE_BYTES", 79000 * MIB, **labels),
        exposition_line("DCGM_FI_DEV_FB_CAPACITY_BYTES", 81559 * MIB, **labels),
        exposition_line("DCGM_FI_DEV_GPU_TEMP_CELSIUS", 61, **labels),
        exposition_line("DCGM_FI_DEV_BOARD_POWER_WATTS", 700, **labels),
        exposition_line("DCGM_FI_DEV_XID_ERROR", 0, **labels),
    ]


MALFORMED = [
    exposition_line("DCGM_FI_DEV_GPU_UTIL", 10, gpu="nvidia7", Hostname="node-a"),  # non-numeric gpu
    exposition_line("DCGM_FI_DEV_GPU_UTIL", 10, gpu="5"),  # no Hostname (exporter run with --no-hostname)
    exposition_line("DCGM_FI_DEV_GPU_UTIL", "NaN", gpu="6", Hostname="node-a"),
]


def static_fleet(*, a1_util: float = 85) -> list[str]:
    return [
        *classic("node-a", 0, util=0),
        *classic("node-a", 1, util=a1_util, used=60000, free=20000, pod=("ml", "trainer-0")),
        *classic("node-a", 2, util=0, pod=("ml", "notebook-3")),
        # one MIG instance of GPU 3: no GPU_UTIL for MIG, graphics-engine activity instead
        exposition_line("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.25, gpu="3", modelName=A100, Hostname="node-a", GPU_I_PROFILE="1g.10gb", GPU_I_ID="9", namespace="ml", pod="mig-job", container="main"),
        *renamed_49("node-b", 0, util_ratio=0.42, pod=("research", "sweep-7")),
        *renamed_49("node-b", 1, util_ratio=0.0),
        *MALFORMED,
    ]


def k8s_fleet() -> list[str]:
    # What dcgm-exporter serves with --kubernetes: workload pod labels on held GPUs only.
    return [*classic("node-c", 0, util=70, pod=("ml", "job-1")), *classic("node-c", 1, util=0)]


# Target labels as a ServiceMonitor adds them: the exporter's own pod and namespace.
K8S_TARGET = {"pod": "gpu-metrics-x7k2p", "namespace": "gpu-operator"}
EXPECTED_GPUS = {"node-a/0", "node-a/1", "node-a/2", "node-a/3/mig9", "node-b/0", "node-b/1", "node-c/0", "node-c/1"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def exporters() -> AsyncIterator[tuple[StaticExporter, StaticExporter]]:
    async with StaticExporter(static_fleet()) as static, StaticExporter(k8s_fleet()) as k8s:
        yield static, k8s


def jobs(static: StaticExporter, k8s: StaticExporter) -> list[ScrapeJob]:
    return [
        ScrapeJob("dcgm-exporter", [static.url]),
        ScrapeJob("dcgm-exporter-k8s", [k8s.url], labels=K8S_TARGET),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def monitoring(tmp_path_factory, exporters) -> AsyncIterator[Monitoring]:
    async with Monitoring(tmp_path_factory.mktemp("monitoring"), jobs=jobs(*exporters)) as mon:
        await mon.wait_for_series(UTIL_ANY, count=11)  # 8 GPUs + 3 malformed
        yield mon


@contextlib.asynccontextmanager
async def running(source: PrometheusSource, store: ClusterStore) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run(store))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        source.close()


async def snapshot_when(store: ClusterStore, done, *, timeout_s: float = 30.0, what: str = "snapshot") -> Snapshot:
    async def fetch() -> Snapshot:
        return store.snapshot()

    return await poll(fetch, done, timeout_s=timeout_s, what=what)


async def until_the_rules_are_read(source: PrometheusSource, monitoring: Monitoring) -> None:
    """Until `source` would read the recording rules, as evaluated since every series of the fleet came (young
    rules may be read before an evaluation saw a later series, which then has no history: shorter, never longer)."""
    [last_came] = await monitoring.query(f"max(min_over_time(timestamp({UTIL_ANY})[10m:1s]))")
    came = float(last_came["value"][1])

    def read_since_the_fleet_came(answer: Recorded | str) -> bool:
        return isinstance(answer, Recorded) and answer.last_evaluation.timestamp() > came

    await poll(source.history_rules_usable, read_since_the_fleet_came, timeout_s=200, what="the rules run")


def by_key(snap: Snapshot) -> dict[str, Gpu]:
    return {g.key: g for g in snap.gpus}


async def test_every_simulated_gpu_reaches_the_snapshot_with_its_pod(monitoring: Monitoring) -> None:
    store = ClusterStore(refresh_s=0.5)
    async with running(PrometheusSource(monitoring.prometheus_url, refresh_s=0.5, timeout_s=5), store):
        snap = await snapshot_when(store, lambda s: {g.key for g in s.gpus} == EXPECTED_GPUS, what="all GPUs")

    gpus = by_key(snap)
    assert snap.metrics.source == "prometheus" and not snap.metrics.stale and snap.metrics.error is None
    assert snap.metrics.unconfirmed is None
    assert gpus["node-a/1"].pod == PodRef(namespace="ml", name="trainer-0", container="main")
    assert gpus["node-a/1"].util_pct == 85 and gpus["node-a/1"].mem_used_mib == 60000
    assert gpus["node-a/1"].model == A100 and gpus["node-a/1"].uuid == "GPU-node-a-1"
    assert gpus["node-a/0"].pod is None
    mig = gpus["node-a/3/mig9"]
    assert (mig.mig_profile, mig.mig_instance, mig.util_pct) == ("1g.10gb", 9, 25.0)
    # dcgm-exporter 4.9 spelling: ratio -> %, bytes -> MiB, lowercase hostname
    b0 = gpus["node-b/0"]
    assert (b0.util_pct, b0.mem_used_mib, b0.temp_c, b0.power_w, b0.model) == (42.0, 2048.0, 61.0, 700.0, H100)
    assert b0.pod == PodRef(namespace="research", name="sweep-7", container="main")


async def test_malformed_series_are_counted_not_fatal(monitoring: Monitoring) -> None:
    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5)
    try:
        batch = await source.fetch()
    finally:
        source.close()
    # non-numeric gpu, missing Hostname, NaN value; each is a utilisation series
    assert batch.rejected == 3
    assert {s.key for s in batch.samples} == EXPECTED_GPUS


async def test_exported_pod_labels_from_a_scrape_job_without_honor_labels(monitoring: Monitoring) -> None:
    raw = await monitoring.query('DCGM_FI_DEV_GPU_UTIL{Hostname="node-c"}')
    held = next(s["metric"] for s in raw if s["metric"]["gpu"] == "0")
    assert held["exported_pod"] == "job-1" and held["pod"] == K8S_TARGET["pod"]  # Prometheus really renamed it

    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5)
    try:
        batch = await source.fetch()
    finally:
        source.close()
    samples = {s.key: s for s in batch.samples}
    assert samples["node-c/0"].pod == PodRef(namespace="ml", name="job-1", container="main")
    assert samples["node-c/1"].pod is None  # only the target's own pod label: not held


async def test_answers_carry_only_the_labels_gpuctl_reads_and_make_the_same_samples(monitoring: Monitoring) -> None:
    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5)
    try:
        batch = await source.fetch()
    finally:
        source.close()
    full: list[dict] = []
    for quantity in REFRESH_QUANTITIES:
        kept = set(queries.SERIES_LABELS if quantity in queries.DETAILED else queries.IDENTITY_LABELS) | {"__name__"}
        answer = await monitoring.query(instant(quantity))
        assert all(set(s["metric"]) <= kept for s in answer), quantity
        full += await monitoring.query(queries.series(quantity))
    assert any("device" in s["metric"] and "job" in s["metric"] for s in full)  # what the answers leave out
    # Every series with all its labels, parsed and merged, makes the samples the lean answers made.
    # (These exporters serve constant values, so the freshness query finds every GPU frozen: stale.)
    expected = [replace(s, stale=True) for s in dcgm_fields.merge_readings(dcgm_fields.parse_results(full).readings)]
    assert sorted(batch.samples, key=lambda s: s.key) == sorted(expected, key=lambda s: s.key)
    assert batch.unconfirmed is None


async def test_a_freshness_query_past_its_timeout_leaves_every_reading_stale_not_the_refresh_failed(
    monitoring: Monitoring,
) -> None:
    # A limit no query can meet: Prometheus answers "timeout" for the freshness query, every time.
    store = ClusterStore(refresh_s=0.5)
    source = PrometheusSource(monitoring.prometheus_url, refresh_s=0.5, timeout_s=5, freshness_timeout_s=1e-9)
    async with running(source, store):
        snap = await snapshot_when(store, lambda s: {g.key for g in s.gpus} == EXPECTED_GPUS, what="all GPUs")

    m = snap.metrics
    assert m.error is None and m.retry_at is None  # the refresh did not fail: its readings are here
    assert m.unconfirmed is not None
    assert m.unconfirmed.startswith("freshness check failed: Prometheus did not answer in time (query timed out")
    assert m.gpus_stale == len(snap.gpus)
    assert all(g.stale and not g.idle and not g.busy for g in snap.gpus)  # never idle, never fresh
    assert by_key(snap)["node-a/1"].util_pct == 85  # the readings themselves came


async def test_probe_reports_a_working_url_and_explains_bad_ones(monitoring: Monitoring, exporters) -> None:
    good = PrometheusSource(monitoring.prometheus_url, timeout_s=5)
    nobody = PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    not_prometheus = PrometheusSource(exporters[0].url.removesuffix("/metrics"), timeout_s=5)
    try:
        assert (await good.probe()).gpu_series == 11  # every utilisation series, malformed ones too
        with pytest.raises(MetricsUnavailable, match=r"cannot connect to Prometheus: .*Connection refused"):
            await nobody.probe()
        with pytest.raises(MetricsUnavailable, match="HTTP Status Code 404"):
            await not_prometheus.probe()
    finally:
        for s in (good, nobody, not_prometheus):
            s.close()


async def test_idle_streaks_are_backfilled_from_history(monitoring: Monitoring, exporters) -> None:
    static, _ = exporters
    # node-a/2 has been under 5% since the fleet started; node-a/1 was busy and goes idle now.
    await monitoring.wait_for_series('count_over_time(DCGM_FI_DEV_GPU_UTIL{Hostname="node-a",gpu="1"}[1m]) >= 4')
    # Presence is read at 5 s steps here (window/12): the fleet's start must lie further back than one.
    await monitoring.wait_for_series('count_over_time(DCGM_FI_DEV_GPU_UTIL{Hostname="node-a",gpu="2"}[1m]) >= 12')
    went_idle = time.time()
    static.set(static_fleet(a1_util=1))
    try:
        await monitoring.wait_for_series('DCGM_FI_DEV_GPU_UTIL{Hostname="node-a",gpu="1"} < 5')
        # The subqueries: the rules, evaluated once a minute, give node-a/1 no streak yet (shorter, never longer).
        source = PrometheusSource(monitoring.prometheus_url, timeout_s=5, idle_window_s=60, refresh_s=1, history_rules=False)
        try:
            batch = await source.fetch()
            since = await source.idle_history(batch.samples)
        finally:
            source.close()
    finally:
        static.set(static_fleet())
        await monitoring.wait_for_series('DCGM_FI_DEV_GPU_UTIL{Hostname="node-a",gpu="1"} >= 5')  # busy again for the next tests

    assert "node-a/0" in since and "node-a/2" in since and "node-b/1" in since
    assert "node-b/0" not in since  # 42% busy
    assert since["node-a/2"].timestamp() < went_idle - 1  # idle since the fleet appeared
    assert since["node-a/1"].timestamp() >= went_idle - 2  # busy until the switch (1 s steps, 1 s scrapes)


async def test_a_gpu_present_for_longer_than_the_look_back_is_idle_since_the_look_back_began(monitoring: Monitoring) -> None:
    # A 4 s window: 1 s steps, a 6 s look-back, a 6 s grace. node-a/2 (held, at 0 %) has samples from
    # before the look-back began and none missing since: the answer is the look-back's start, by evidence
    # read there (not by its absence from the run starts).
    await monitoring.wait_for_series('count_over_time(DCGM_FI_DEV_GPU_UTIL{Hostname="node-a",gpu="2"}[20s]) >= 15')
    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5, idle_window_s=4, refresh_s=0.5, idle_grace_s=6, history_rules=False)
    assert (source.history.step_s, source.history.lookback_s) == (1, 6)
    try:
        batch = await source.fetch()
        answers = await source.history_answers()
        since = source.history_from(batch.samples, answers)
    finally:
        source.close()
    evaluated = datetime.fromtimestamp(float(answers[1][0]["value"][0]), UTC)
    assert abs(since["node-a/2"] - (evaluated - timedelta(seconds=6))) < timedelta(milliseconds=1)  # float seconds
    assert "node-a/1" not in since  # 85 % busy


async def test_history_answers_only_for_series_under_the_threshold_now_with_key_and_holder(monitoring: Monitoring) -> None:
    # Busy now (node-a/1 85 %, the MIG instance's ratio 0.25, node-b/0's 4.9 ratio 0.42, node-c/0 70 %): no
    # history asked of Prometheus's steps, none answered. Idle now, in both generations and both scrape jobs:
    # answered under the name gpuctl reads, with the GPU's key and holder and nothing else.
    await monitoring.wait_for_series('count_over_time(DCGM_FI_DEV_GPU_UTIL{Hostname="node-a",gpu="2"}[1m]) >= 4')
    for history_rules in (False, True):  # the subqueries, and the recording rules once Prometheus has run them
        source = PrometheusSource(monitoring.prometheus_url, timeout_s=5, idle_window_s=60, refresh_s=1, history_rules=history_rules)
        try:
            if history_rules:
                await until_the_rules_are_read(source, monitoring)
            last_busy, present_since = await source.history_answers()
        finally:
            source.close()
        assert source.history_via == ("recording-rules" if history_rules else "subqueries")
        # the recorded answer is one, split by its records' names (history.split_recorded)
        _answered_only_idle_now_with_key_and_holder(last_busy, present_since, named=history_rules)


def _answered_only_idle_now_with_key_and_holder(last_busy: list[Any], present_since: list[Any], *, named: bool = False) -> None:
    idle_now = {"node-a/0", "node-a/2", "node-b/1", "node-c/1"}
    assert {dcgm_fields.parse_identity(s["metric"]).key for s in present_since} == idle_now
    assert {dcgm_fields.parse_identity(s["metric"]).key for s in last_busy} <= idle_now
    allowed = {queries.NAME_LABEL, *queries.HISTORY_LABELS, *(["__name__"] if named else [])}
    assert all(set(s["metric"]) <= allowed for s in (*last_busy, *present_since))
    names = {s["metric"]["Hostname" if "Hostname" in s["metric"] else "hostname"]: s["metric"][queries.NAME_LABEL] for s in present_since}
    assert names == {"node-a": "DCGM_FI_DEV_GPU_UTIL", "node-b": "DCGM_FI_DEV_GPU_UTIL_RATIO", "node-c": "DCGM_FI_DEV_GPU_UTIL"}
    held = {dcgm_fields.parse_identity(s["metric"]).key: dcgm_fields.parse_pod(s["metric"]) for s in present_since}
    assert held["node-a/2"] is not None and held["node-a/2"][0].name == "notebook-3"



async def test_the_history_comes_from_the_recording_rules_when_prometheus_runs_them_at_gpuctls_threshold(
    monitoring: Monitoring,
) -> None:
    # The module's Prometheus loads the shipped rules file: gpuctl-history records every 60 s at 5 %.
    # A 10 s idle window: a 12 s look-back, which the rules must reach back past to be read. The probe asks
    # as by_rules will (the refresh sets the presence step, which decides whether young rules are read).
    probe = PrometheusSource(monitoring.prometheus_url, timeout_s=5, refresh_s=1, idle_window_s=10)
    try:
        await until_the_rules_are_read(probe, monitoring)
    finally:
        probe.close()
    [recorded_a2] = await monitoring.query(f'{queries.PRESENT_SINCE_RECORD}{{Hostname="node-a",gpu="2"}}')
    at_5, at_10 = ClusterStore(), ClusterStore()
    by_rules = PrometheusSource(monitoring.prometheus_url, timeout_s=5, refresh_s=1, idle_window_s=10)
    by_subqueries = PrometheusSource(monitoring.prometheus_url, timeout_s=5, refresh_s=1, idle_window_s=10, idle_threshold_pct=10)
    async with running(by_rules, at_5), running(by_subqueries, at_10):
        health = await snapshot_when(at_5, lambda s: s.metrics.history_via is not None, what="history from the rules")
        other = await snapshot_when(at_10, lambda s: s.metrics.history_via is not None, what="history from subqueries")
    assert (health.metrics.history_via, health.metrics.history_fallback) == ("recording-rules", None)
    assert other.metrics.history_via == "subqueries"
    assert other.metrics.history_fallback == "recording rules record threshold 5 %, not gpuctl's 10 %"

    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5, refresh_s=1, idle_window_s=10)
    try:
        batch = await source.fetch()
        since = source.history_from(batch.samples, await source.history_answers())
    finally:
        source.close()
    assert source.history_via == "recording-rules"
    # node-a/2 (held, at 0 % since the fleet began): idle since the rules first saw it, no earlier; node-a/1
    # (85 %) and the MIG instance (25 %) are busy; the other idle ones answered in both generations and jobs.
    assert since["node-a/2"] == datetime.fromtimestamp(float(recorded_a2["value"][1]), UTC)
    assert set(since) == {"node-a/0", "node-a/2", "node-b/1", "node-c/1"}

async def test_young_rules_are_read_where_prometheus_holds_no_samples_from_before_them(monitoring: Monitoring) -> None:
    # The module's Prometheus began scraping and evaluating the rules together minutes ago: with a 30-minute
    # window (a 34-minute look-back, 150 s presence steps) the rules reach back less than the look-back, but
    # Prometheus holds nothing older for the subqueries to read either, so the rules are read.
    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5, idle_window_s=1800)
    try:
        await until_the_rules_are_read(source, monitoring)
        [oldest] = await monitoring.query(f"min({queries.PRESENT_SINCE_RECORD})")
        batch = await source.fetch()
        since = source.history_from(batch.samples, await source.history_answers())
    finally:
        source.close()
    assert time.time() - float(oldest["value"][1]) < source.history.lookback_s  # young: read for what Prometheus holds
    assert (source.history_via, source.history_fallback) == ("recording-rules", None)
    assert "node-a/2" in since  # held at 0 % since the fleet began: idle since the rules first saw it


async def test_outage_is_recorded_and_the_source_recovers(tmp_path: Path, exporters) -> None:
    store = ClusterStore(refresh_s=0.3)
    async with Monitoring(tmp_path, jobs=jobs(*exporters), rule_files=()) as mon:
        await mon.wait_for_series(UTIL_ANY, count=11)
        source = PrometheusSource(mon.prometheus_url, refresh_s=0.3, timeout_s=2, max_backoff_s=1)
        async with running(source, store) as task:
            await snapshot_when(store, lambda s: len(s.gpus) == len(EXPECTED_GPUS), what="first metrics")

            mon.prometheus.stop()
            down = await snapshot_when(store, lambda s: s.metrics.error is not None, what="outage recorded")
            assert down.metrics.stale
            assert "cannot connect to Prometheus" in (down.metrics.error or "")
            assert down.metrics.retry_at is not None and source.retry_at is not None  # when the next try is
            assert not task.done()  # still retrying, never raised

            await mon.prometheus.start()
            back = await snapshot_when(store, lambda s: s.metrics.error is None and not s.metrics.stale, what="recovery")
            assert {g.key for g in back.gpus} == EXPECTED_GPUS
            assert source.retry_at is None and back.metrics.retry_at is None


async def test_a_refresh_that_lost_most_series_is_partial_not_a_fresh_fleet_without_data(tmp_path: Path) -> None:
    # A scrape gap as Prometheus sees it: one exporter serves nothing, Prometheus marks its series stale, and the
    # next refresh brings 2 of the 8 GPUs. The snapshot says which are missing, not a fresh fleet without data.
    async with StaticExporter(static_fleet()) as static, StaticExporter(k8s_fleet()) as k8s:
        async with Monitoring(tmp_path, jobs=jobs(static, k8s), rule_files=()) as mon:
            await mon.wait_for_series(UTIL_ANY, count=11)
            store = ClusterStore(refresh_s=0.3)
            source = PrometheusSource(mon.prometheus_url, refresh_s=0.3, timeout_s=2)
            async with running(source, store):
                await snapshot_when(store, lambda s: s.metrics.gpus_reported == len(EXPECTED_GPUS), what="every GPU")
                static.set([])
                gap = await snapshot_when(store, lambda s: s.metrics.gpus_missing > 0, what="the gap reported")
                assert (gap.metrics.gpus_reported, gap.metrics.gpus_missing) == (2, 6)
                assert not gap.metrics.stale and gap.metrics.missing_since is not None  # fresh, and yet partial
                static.set(static_fleet())
                back = await snapshot_when(store, lambda s: s.metrics.gpus_reported == len(EXPECTED_GPUS), what="back")
                assert (back.metrics.gpus_missing, back.metrics.missing_since) == (0, None)


async def test_simulated_fleet_in_both_generations_reaches_the_snapshot(tmp_path: Path) -> None:
    """The fleet simulator's exporters: half the nodes classic, half dcgm-exporter 4.9."""
    fleet = build_fleet(seed=7)
    names = [n.name for n in fleet.nodes]
    classic_nodes, new_nodes = names[: len(names) // 2], names[len(names) // 2 :]
    old = DcgmExporterSim(fleet, seed=7, nodes=classic_nodes)
    new = DcgmExporterSim(fleet, seed=7, nodes=new_nodes, options=Options(generation="4.9"))
    await old.start()
    await new.start()
    store = ClusterStore(refresh_s=0.5)
    try:
        async with Monitoring(tmp_path, jobs=[ScrapeJob("dcgm-exporter", [old.url, new.url])], rule_files=()) as mon:
            source = PrometheusSource(mon.prometheus_url, refresh_s=0.5, timeout_s=5)
            async with running(source, store):
                expected = {g.key for g in fleet.gpus}
                snap = await snapshot_when(store, lambda s: {g.key for g in s.gpus} == expected, what="every simulated GPU")
    finally:
        await old.stop()
        await new.stop()

    held = {k: PodRef(namespace=p.namespace, name=p.name, container=p.container) for k, p in fleet.pod_by_gpu.items() if p.node}
    assert held, "the simulated fleet should have pods holding GPUs"
    gpus = by_key(snap)
    assert {k: g.pod for k, g in gpus.items() if g.pod is not None} == held
    assert all(g.util_pct is not None and 0 <= g.util_pct <= 100 for g in gpus.values())  # MIG via GR_ENGINE_ACTIVE
    for key in (g.key for g in fleet.gpus if g.node in new_nodes and g.mig_instance is None):
        sim = fleet.gpu_by_key[key]
        gpu = gpus[key]
        # bytes -> MiB: used + free is the card's memory again (within the exporter's rounding)
        assert gpu.mem_total_mib is not None and abs(gpu.mem_total_mib - sim.mem_total_mib) <= 1
    assert snap.metrics.series_rejected == 0


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # insecure=True, on purpose
async def test_tls_and_basic_auth_against_a_protected_prometheus(tmp_path: Path, exporters) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    serving = ca.issue("prometheus", "127.0.0.1", server=True)
    async with Monitoring(
        tmp_path / "mon", jobs=jobs(*exporters), rule_files=(), tls=(serving.cert, serving.key), basic_auth=("gpuctl", "s3cret")
    ) as mon:
        assert mon.prometheus_url.startswith("https://")

        async def probe(auth: PrometheusAuth) -> int:
            source = PrometheusSource(mon.prometheus_url, auth=auth, timeout_s=5)
            try:
                return (await source.probe()).gpu_series
            finally:
                source.close()

        assert await poll(lambda: probe(PrometheusAuth(basic=("gpuctl", "s3cret"), ca_file=str(ca.pair.cert))), lambda n: n == 11, what="series over TLS")
        assert await probe(PrometheusAuth(basic=("gpuctl", "s3cret"), insecure=True)) == 11
        with pytest.raises(MetricsUnavailable, match="rejected the credentials"):
            await probe(PrometheusAuth(basic=("gpuctl", "wrong"), ca_file=str(ca.pair.cert)))
        with pytest.raises(MetricsUnavailable, match="TLS error"):
            await probe(PrometheusAuth(basic=("gpuctl", "s3cret")))  # the system CAs don't know the test bed's


async def test_bearer_token_goes_on_every_request(monitoring: Monitoring) -> None:
    # Prometheus itself only checks basic auth; a bearer token is for the proxy in front of it.
    async with BearerProxy(monitoring.prometheus_url, token="t0ken") as proxy:
        right = PrometheusSource(proxy.url, auth=PrometheusAuth(bearer_token="t0ken"), timeout_s=5)
        wrong = PrometheusSource(proxy.url, auth=PrometheusAuth(bearer_token="stolen"), timeout_s=5)
        try:
            assert (await right.probe()).gpu_series == 11  # through the proxy to the real Prometheus
            batch = await right.fetch()
            await right.api_get("/api/v1/alerts")
            with pytest.raises(MetricsUnavailable, match="rejected the credentials"):
                await wrong.probe()
        finally:
            right.close()
            wrong.close()
    assert {s.key for s in batch.samples} == EXPECTED_GPUS
    paths = {path for path, header in proxy.seen if header == "Bearer t0ken"}
    assert paths == {"/api/v1/query", "/api/v1/alerts"}
    assert len([p for p, h in proxy.seen if h == "Bearer t0ken"]) == 1 + len(Quantity) + 1 + 1  # probe, refresh, alerts


def test_shipped_rules_pass_promtool_check() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(SHIPPED_RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


# promtool's rule unit tests evaluate the shipped rules on synthetic series with
# Prometheus's own engine: the memory formula, both generations, pod spellings.
RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # half full: the wrong used/free formula would read 1.0 and fire
      - {{series: 'DCGM_FI_DEV_FB_USED{{gpu="0",Hostname="n1"}}', values: '40000x10'}}
      - {{series: 'DCGM_FI_DEV_FB_FREE{{gpu="0",Hostname="n1"}}', values: '40000x10'}}
      - {{series: 'DCGM_FI_DEV_FB_USED{{gpu="1",Hostname="n1"}}', values: '76000x10'}}
      - {{series: 'DCGM_FI_DEV_FB_FREE{{gpu="1",Hostname="n1"}}', values: '4000x10'}}
      - {{series: 'DCGM_FI_DEV_FB_USED_BYTES{{gpu="0",hostname="n2"}}', values: '80000000000x10'}}
      - {{series: 'DCGM_FI_DEV_FB_FREE_BYTES{{gpu="0",hostname="n2"}}', values: '1000000000x10'}}
      - {{series: 'DCGM_FI_DEV_GPU_TEMP{{gpu="0",Hostname="n1"}}', values: '90x10'}}
      - {{series: 'DCGM_FI_DEV_GPU_TEMP_CELSIUS{{gpu="0",hostname="n2"}}', values: '70x10'}}
      - {{series: 'DCGM_FI_DEV_XID_ERRORS{{gpu="1",Hostname="n1"}}', values: '79x10'}}
      - {{series: 'DCGM_FI_DEV_XID_ERROR{{gpu="0",hostname="n2"}}', values: '13x10'}}
      - {{series: 'up{{job="dcgm-exporter",instance="n3:9400"}}', values: '0x10'}}
    alert_rule_test:
      - eval_time: 6m
        alertname: GpuMemoryNearlyFull
        exp_alerts:
          - exp_labels: {{severity: warning, gpu: "1", Hostname: n1}}
            exp_annotations: {{summary: "GPU 1 on n1 memory is 95% full"}}
          - exp_labels: {{severity: warning, gpu: "0", hostname: n2}}
            exp_annotations: {{summary: "GPU 0 on n2 memory is 98.77% full"}}
      - eval_time: 6m
        alertname: GpuHot
        exp_alerts:
          - exp_labels: {{severity: warning, gpu: "0", Hostname: n1}}
            exp_annotations: {{summary: "GPU 0 on n1 is at 90°C (over 85°C for 5 minutes)"}}
      - eval_time: 1m
        alertname: GpuXidCritical
        exp_alerts:
          - exp_labels: {{severity: critical, gpu: "1", Hostname: n1}}
            exp_annotations: {{summary: "GPU 1 on n1 hit hardware XID 79: drain the node"}}
      - eval_time: 1m
        alertname: GpuXidError
        exp_alerts:
          - exp_labels: {{severity: warning, gpu: "1", Hostname: n1}}
            exp_annotations: {{summary: "GPU 1 on n1 reported XID 79"}}
          - exp_labels: {{severity: warning, gpu: "0", hostname: n2}}
            exp_annotations: {{summary: "GPU 0 on n2 reported XID 13"}}
      - eval_time: 3m
        alertname: DcgmExporterDown
        exp_alerts:
          - exp_labels: {{severity: warning, job: dcgm-exporter, instance: "n3:9400"}}
            exp_annotations: {{summary: "dcgm-exporter target n3:9400 is down: no GPU metrics from it"}}

  - interval: 1m
    input_series:
      - {{series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="0",Hostname="n1",namespace="ml",pod="idle-job"}}', values: '1x40'}}
      - {{series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="1",Hostname="n1"}}', values: '0x40'}}
      - {{series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="2",Hostname="n1",namespace="ml",pod="busy-job"}}', values: '90x40'}}
      - {{series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="3",Hostname="n1",namespace="gpu-operator",pod="nvidia-dcgm-exporter-abc"}}', values: '0x40'}}
      - {{series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="4",Hostname="n1",namespace="gpu-operator",pod="nvidia-dcgm-exporter-abc",exported_namespace="ml",exported_pod="renamed-job"}}', values: '2x40'}}
      - {{series: 'DCGM_FI_DEV_GPU_UTIL_RATIO{{gpu="0",hostname="n2",namespace="ml",pod="new-names"}}', values: '0.01x40'}}
      - {{series: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="0",Hostname="n3",GPU_I_ID="9",GPU_I_PROFILE="1g.10gb",namespace="ml",pod="mig-job"}}', values: '0x40'}}
      # a busy MIG instance whose exporter reports GPU_UTIL as 0 for MIG: not idle
      - {{series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="1",Hostname="n3",GPU_I_ID="3",GPU_I_PROFILE="3g.40gb",namespace="ml",pod="busy-mig"}}', values: '0x40'}}
      - {{series: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="1",Hostname="n3",GPU_I_ID="3",GPU_I_PROFILE="3g.40gb",namespace="ml",pod="busy-mig"}}', values: '0.7x40'}}
    alert_rule_test:
      - eval_time: 20m
        alertname: GpuIdleWhileAllocated
        exp_alerts: []
      - eval_time: 31m
        alertname: GpuIdleWhileAllocated
        exp_alerts:
          - exp_labels: {{severity: warning, gpu: "0", Hostname: n1, namespace: ml, pod: idle-job}}
            exp_annotations:
              summary: "GPU 0 on n1 is allocated to ml/idle-job but has been under 5% busy for 30 minutes"
              description: "Current utilisation 1.0%."
          - exp_labels: {{severity: warning, gpu: "4", Hostname: n1, namespace: gpu-operator, pod: nvidia-dcgm-exporter-abc, exported_namespace: ml, exported_pod: renamed-job}}
            exp_annotations:
              summary: "GPU 4 on n1 is allocated to ml/renamed-job but has been under 5% busy for 30 minutes"
              description: "Current utilisation 2.0%."
          - exp_labels: {{severity: warning, gpu: "0", hostname: n2, namespace: ml, pod: new-names}}
            exp_annotations:
              summary: "GPU 0 on n2 is allocated to ml/new-names but has been under 5% busy for 30 minutes"
              description: "Current utilisation 1.0%."
          - exp_labels: {{severity: warning, gpu: "0", Hostname: n3, GPU_I_ID: "9", GPU_I_PROFILE: 1g.10gb, namespace: ml, pod: mig-job}}
            exp_annotations:
              summary: "GPU 0 (MIG 9) on n3 is allocated to ml/mig-job but has been under 5% busy for 30 minutes"
              description: "Current utilisation 0.0%."
"""


def test_shipped_rules_behave_under_promtool_unit_tests(tmp_path: Path) -> None:
    tests = tmp_path / "gpuctl-rules-test.yaml"
    tests.write_text(RULE_TESTS.format(rules=SHIPPED_RULES))
    result = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
