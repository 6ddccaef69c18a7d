"""Idle you can act on: real Prometheus 2.42 scraping the DCGM simulator, gpuctl reading it.

The simulator's default output is what dcgm-exporter serves on A100/H100 with
profiling metrics on: DCGM_FI_DEV_GPU_UTIL and DCGM_FI_PROF_GR_ENGINE_ACTIVE for
the same GPU with the same labels. Here it also serves MIG instances (with and
without a GPU_UTIL of 0), dcgm-exporter 4.9 names, frozen nodes, nodes that are
no longer served, and a second cluster behind the same Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest

from gpuctl.config import Settings
from gpuctl.model import Snapshot
from gpuctl.service import Cluster, open_cluster
from gpuctl.sim.fleet import Fleet, build_fleet
from gpuctl.sources.alerts import PrometheusAlertsSource
from gpuctl.sources.prometheus import PrometheusSource
from gpuctl.sources.selector import parse_selector
from gpuctl.state.store import ClusterStore
from testbed.bed import Telemetry
from testbed.controlplane import ADMIN, ControlPlane
from testbed.dcgm_exporter import DcgmExporterSim, Options
from testbed.monitoring import Monitoring, ScrapeJob
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

IDLE = ("idle", None)  # behaviours under 5 %: an idle workload, or no pod at all


@contextlib.asynccontextmanager
async def exporters(*sims: DcgmExporterSim) -> AsyncIterator[None]:
    for sim in sims:
        await sim.start()
    try:
        yield
    finally:
        for sim in sims:
            await sim.stop()


def idle_keys(fleet: Fleet, nodes: Iterable[str]) -> set[str]:
    """Devices on these nodes that are under 5 % all the time (the simulator's idle pods and free GPUs)."""
    chosen = set(nodes)
    holders = fleet.pod_by_gpu
    return {
        g.key for g in fleet.gpus if g.node in chosen and (holders[g.key].behaviour if g.key in holders else None) in IDLE
    }


def held_idle_keys(fleet: Fleet, nodes: Iterable[str]) -> set[str]:
    return {k for k in idle_keys(fleet, nodes) if k in fleet.pod_by_gpu}


async def snapshot_when(source: Callable[[], Snapshot], done: Callable[[Snapshot], bool], what: str) -> Snapshot:
    return await poll(source, done, timeout_s=60, what=what)


# -- item 1: idle history ----------------------------------------------------------------


async def test_idle_history_with_both_names_mig_and_49_names_reaches_the_first_snapshot(tmp_path: Path) -> None:
    fleet = build_fleet(seed=7)
    nodes = {n.name: n for n in fleet.nodes}
    default = ["a100-train-9nn5p", "h100-mig-b7vm2", "l4-infer-wvxt5", "l4-infer-pnd6p"]
    renamed = ["a100-train-pmk8h", "t4-batch-mcshh", "t4-batch-hbnqd"]
    mig_zero = ["h100-mig-vtp6b"]  # 4.9 names, and a GPU_UTIL_RATIO of 0 on every MIG instance
    assert set(default + renamed + mig_zero) <= nodes.keys()
    sims = (
        DcgmExporterSim(fleet, 7, nodes=default),  # the simulator's default output: both utilisation names
        DcgmExporterSim(fleet, 7, nodes=renamed, generation="4.9"),
        DcgmExporterSim(fleet, 7, nodes=mig_zero, options=Options(generation="4.9", mig_gpu_util="zero")),
    )
    async with exporters(*sims), Monitoring(
        tmp_path, jobs=[ScrapeJob(f"dcgm-{i}", [s.url]) for i, s in enumerate(sims)], rule_files=()
    ) as mon:
        raw = await mon.wait_for_series('DCGM_FI_DEV_GPU_UTIL{Hostname="a100-train-9nn5p"}')
        both = await mon.query('DCGM_FI_PROF_GR_ENGINE_ACTIVE{Hostname="a100-train-9nn5p"}')
        assert {s["metric"]["gpu"] for s in raw} == {s["metric"]["gpu"] for s in both}  # same GPUs, same labels
        # 12+ seconds of history: more than the 8 s look-back of a 6 s window at 1 s steps.
        await mon.wait_for_series("count_over_time(up[15s]) >= 13", count=len(sims))

        source = PrometheusSource(mon.prometheus_url, refresh_s=1, timeout_s=10, idle_window_s=6)
        try:
            assert (source.history.lookback_s, source.history.step_s) == (8, 1)
            batch = await source.fetch()
            asked = time.time()
            since = await source.idle_history(batch.samples)  # before: 422, same labelset
        finally:
            source.close()
        served = default + renamed + mig_zero
        assert set(since) == idle_keys(fleet, served)
        assert all(t.timestamp() <= asked - 6 for t in since.values())  # idle for the whole window
        # A MIG instance reads its profiling ratio: busy ones with a GPU_UTIL of 0 are not idle.
        busy_mig = {k for k, p in fleet.pod_by_gpu.items() if p.node in mig_zero and p.behaviour == "busy"}
        assert busy_mig and not busy_mig & set(since)

        # Run as `gpuctl snapshot` does: the very first snapshot with metrics already shows the streaks.
        store = ClusterStore(idle_window_s=6, refresh_s=1)
        source = PrometheusSource(mon.prometheus_url, refresh_s=1, timeout_s=10, idle_window_s=6)
        task = asyncio.create_task(source.run(store))
        try:
            first = await snapshot_when(store.snapshot, lambda s: s.metrics.last_success is not None, "first metrics")
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            source.close()
    gpus = {g.key: g for g in first.gpus}
    assert {k for k, g in gpus.items() if g.idle} == held_idle_keys(fleet, served)
    assert all(gpus[k].busy for k in busy_mig)
    assert first.metrics.history_error is None and first.metrics.gpus_stale == 0


async def test_gpuctl_snapshot_reports_idle_gpus_on_the_default_test_bed(
    control_plane: ControlPlane, fleet: Fleet, telemetry: Telemetry
) -> None:
    """End to end: the command, the real cluster, the simulator's default output (both utilisation names)."""
    await telemetry.monitoring.wait_for_series("count_over_time(up[12s]) >= 11")  # history past the 7 s look-back
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gpuctl", "snapshot", "--json", "--kubeconfig", str(control_plane.kubeconfig(ADMIN)),
         "--prometheus", telemetry.monitoring.prometheus_url, "--refresh", "1s", "--idle-window", "5s"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    snap = Snapshot.model_validate_json(done.stdout)
    assert snap.metrics.history_error is None
    served = [n.name for n in fleet.nodes]
    assert {g.key for g in snap.gpus if g.idle} == held_idle_keys(fleet, served)
    assert {p.key for p in snap.pods if p.idle} == {p.key for p in fleet.pods if p.behaviour == "idle" and p.gpu_keys}


async def test_idle_history_never_reaches_back_across_a_gap_in_the_samples(tmp_path: Path) -> None:
    fleet = build_fleet(seed=7)
    gapped, steady = "l4-infer-wvxt5", "a100-train-9nn5p"  # idle pods on both
    sim = DcgmExporterSim(fleet, 7, nodes=[gapped, steady])
    async with exporters(sim), Monitoring(tmp_path, jobs=[ScrapeJob("dcgm", [sim.url])], rule_files=()) as mon:
        await mon.wait_for_series("count_over_time(up[15s]) >= 13")
        sim.stop_serving(gapped)  # its exporter is gone for longer than the 3 s grace period...
        await poll(lambda: mon.query(f'count_over_time(DCGM_FI_DEV_FB_USED{{Hostname="{gapped}"}}[4s])'), lambda r: not r,
                   what="a 4 s gap")  # fmt: skip
        sim.serve_again(gapped)  # ...and back
        resumed = time.time()
        await mon.wait_for_series(f'DCGM_FI_DEV_FB_USED{{Hostname="{gapped}"}}', count=4)

        source = PrometheusSource(mon.prometheus_url, refresh_s=1, timeout_s=10, idle_window_s=6, idle_grace_s=3)
        try:
            batch = await source.fetch()
            asked = time.time()
            since = await source.idle_history(batch.samples)
        finally:
            source.close()
    assert set(since) == idle_keys(fleet, [gapped, steady])
    assert all(since[k].timestamp() >= resumed - 1 for k in idle_keys(fleet, [gapped]))  # not from before the gap
    assert all(since[k].timestamp() <= asked - 6 for k in idle_keys(fleet, [steady]))


# -- item 2: stale is not idle --------------------------------------------------------------


def settings(kubeconfig: Path, prometheus_url: str, **kw: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        config_file=None,
        kubeconfig=kubeconfig,
        prometheus_url=prometheus_url,
        refresh_s=0.5,
        idle_window_s=3,
        gpu_stale_after_s=3,
        **kw,
    )


async def test_frozen_and_unscraped_gpus_are_stale_never_idle(control_plane: ControlPlane, fleet: Fleet, tmp_path: Path) -> None:
    frozen, gone = "l4-infer-wvxt5", "a100-train-9nn5p"  # both have idle pods on them
    assert held_idle_keys(fleet, [frozen]) and held_idle_keys(fleet, [gone])
    sim = DcgmExporterSim(fleet, 7)
    async with exporters(sim), Monitoring(tmp_path, jobs=[ScrapeJob("dcgm", [sim.url])], rule_files=()) as mon:
        await mon.wait_for_series("count_over_time(up[10s]) >= 8")
        async with open_cluster(settings(control_plane.kubeconfig(ADMIN), mon.prometheus_url)) as cluster:
            await cluster.wait_ready(30)

            def on(node: str, snap: Snapshot) -> list:
                return [g for g in snap.gpus if g.node == node and g.util_pct is not None]

            snap = await snapshot_when(
                cluster.snapshot,
                lambda s: {g.key for g in s.gpus if g.idle} >= held_idle_keys(fleet, [frozen, gone]),
                "idle pods idle",
            )
            assert snap.metrics.gpus_stale == 0

            # A hung DCGM: the exporter keeps serving the same values.
            sim.freeze(frozen)
            snap = await snapshot_when(
                cluster.snapshot, lambda s: all(g.stale for g in on(frozen, s)), f"{frozen} stale"
            )
            assert all(not g.idle and not g.busy and g.idle_for_s is None for g in on(frozen, snap))
            nodes = {n.name: n for n in snap.nodes}
            assert nodes[frozen].metrics_stale and not nodes[gone].metrics_stale
            assert snap.metrics.gpus_stale == len(on(frozen, snap)) and not snap.metrics.stale
            assert not any(p.idle for p in snap.pods if p.node == frozen)

            # An exporter gone while Prometheus restarts: no staleness marker is ever written,
            # so for 5 minutes an instant query still returns its last values, stamped "now".
            mon.prometheus.stop()
            sim.stop_serving(gone)
            await mon.prometheus.start()
            def settled(s: Snapshot) -> bool:
                stale = {g.node for g in s.gpus if g.stale}
                return s.metrics.error is None and len(on(gone, s)) == 8 and all(g.stale for g in on(gone, s)) and (
                    stale == {frozen, gone}
                )

            snap = await snapshot_when(cluster.snapshot, settled, f"{gone} stale, the others not")
            assert await mon.query(f'DCGM_FI_DEV_FB_USED{{Hostname="{gone}"}}'), "Prometheus forgot the series"
            assert all(not g.idle and not g.busy for g in on(gone, snap))
            assert {n.name for n in snap.nodes if n.metrics_stale} == {frozen, gone}


# -- item 3: one cluster of several --------------------------------------------------------

# Alerts for every held GPU, carrying the series' (and so the target's) cluster label.
HELD_RULE = {
    "groups": [
        {
            "name": "gpuctl-test",
            "rules": [{"alert": "TestGpuHeld", "expr": 'DCGM_FI_DEV_FB_USED{pod!=""}', "labels": {"severity": "info"}}],
        }
    ]
}


async def test_the_metrics_selector_keeps_one_cluster_of_a_shared_prometheus(
    control_plane: ControlPlane, fleet: Fleet, tmp_path: Path
) -> None:
    other = build_fleet(seed=11)  # another cluster's nodes: none of them is a node of this one
    assert not {n.name for n in other.nodes} & {n.name for n in fleet.nodes}
    here, there = DcgmExporterSim(fleet, 7), DcgmExporterSim(other, 11)
    async with exporters(here, there):
        jobs = [  # after the start: a target's port is known once it listens
            ScrapeJob("dcgm-a", [here.url], labels={"cluster": "prod-a"}),
            ScrapeJob("dcgm-b", [there.url], labels={"cluster": "prod-b"}),
        ]
        async with Monitoring(tmp_path, jobs=jobs, rule_files=(), extra_rules=HELD_RULE) as mon:
            await check_scoping(mon, control_plane, fleet, other)


async def check_scoping(mon: Monitoring, control_plane: ControlPlane, fleet: Fleet, other: Fleet) -> None:
    await mon.wait_for_series("count_over_time(up[10s]) >= 8", count=2)
    ours = {g.key for g in fleet.gpus}
    kubeconfig = control_plane.kubeconfig(ADMIN)

    async with open_cluster(settings(kubeconfig, mon.prometheus_url)) as cluster:
        await cluster.wait_ready(30)
        unscoped = await snapshot_when(
            cluster.snapshot, lambda s: s.metrics.unmatched_hosts > 0, "the other cluster's hosts counted"
        )
    assert unscoped.metrics.unmatched_hosts == len(other.nodes)
    assert {g.key for g in unscoped.gpus if g.util_pct is not None} >= ours | {g.key for g in other.gpus}

    scoped_settings = settings(kubeconfig, mon.prometheus_url, metrics_selector='cluster="prod-a"')
    async with open_cluster(scoped_settings) as cluster:
        await cluster.wait_ready(30)
        scoped = await snapshot_when(
            cluster.snapshot, lambda s: {g.key for g in s.gpus if g.util_pct is not None} >= ours, "our GPUs"
        )
        await assert_scoped_history_and_alerts(cluster, mon, fleet, other)
    assert {g.key for g in scoped.gpus if g.util_pct is not None} == ours
    assert scoped.metrics.unmatched_hosts == 0 and scoped.metrics.gpus_stale == 0


async def assert_scoped_history_and_alerts(cluster: Cluster, mon: Monitoring, fleet: Fleet, other: Fleet) -> None:
    (source,) = [s for s in cluster.sources if isinstance(s, PrometheusSource)]
    assert source.selector == parse_selector('cluster="prod-a"')
    batch = await source.fetch()
    since = await source.idle_history(batch.samples)
    assert since and {k.split("/")[0] for k in since} <= {n.name for n in fleet.nodes}

    # Both clusters' alerts fire; the source keeps ours.
    await mon.wait_for_series('ALERTS{alertname="TestGpuHeld",cluster="prod-b"}')
    alerts = next(s for s in cluster.sources if isinstance(s, PrometheusAlertsSource))
    ours = await poll(alerts.fetch, lambda a: len(a) == len(fleet.pod_by_gpu), what="our held GPUs' alerts")
    assert {a.node for a in ours} <= {n.name for n in fleet.nodes}
    assert {a.node for a in ours} & {n.name for n in fleet.nodes}
    assert not {a.node for a in ours} & {n.name for n in other.nodes}
