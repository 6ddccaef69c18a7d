"""Real Prometheus scrapes the simulated dcgm-exporter; PrometheusSource reads the whole fleet back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from gpuctl.sim import build_fleet
from gpuctl.sim.fleet import Fleet
from gpuctl.sources.prometheus import PrometheusSource
from testbed.dcgm_exporter import DcgmExporterSim
from testbed.monitoring import Monitoring, ScrapeJob


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet() -> Fleet:
    return build_fleet()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def monitoring(tmp_path_factory, fleet: Fleet) -> AsyncIterator[Monitoring]:
    async with DcgmExporterSim(fleet) as sim:
        async with Monitoring(tmp_path_factory.mktemp("dcgm-sim"), jobs=[ScrapeJob("dcgm-exporter", [sim.url])]) as mon:
            await mon.wait_for_series("DCGM_FI_DEV_FB_USED", count=len(fleet.gpus))
            yield mon


async def test_prometheus_keeps_every_series_and_label(monitoring: Monitoring, fleet: Fleet) -> None:
    util = await monitoring.query("DCGM_FI_DEV_GPU_UTIL")
    assert len(util) == sum(1 for g in fleet.gpus if g.mig_profile is None)
    engine = await monitoring.query('DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_PROFILE!=""}')
    assert len(engine) == sum(1 for g in fleet.gpus if g.mig_profile)
    held = await monitoring.query('DCGM_FI_DEV_FB_USED{pod!=""}')
    assert {f"{s['metric']['namespace']}/{s['metric']['pod']}" for s in held} == {p.key for p in fleet.pods if p.node}
    xid = await monitoring.query("DCGM_FI_DEV_XID_ERRORS > 0")
    assert [(s["metric"]["Hostname"], s["metric"]["gpu"], s["value"][1]) for s in xid] == [
        (key.split("/")[0], key.split("/")[1], str(v)) for key, v in fleet.xid_faults.items()
    ]


async def test_prometheus_source_reads_the_fleet(monitoring: Monitoring, fleet: Fleet) -> None:
    source = PrometheusSource(monitoring.prometheus_url, timeout_s=5)
    try:
        batch = await source.fetch()
    finally:
        source.close()
    assert batch.rejected == 0
    samples = {s.key: s for s in batch.samples}
    assert set(samples) == {g.key for g in fleet.gpus}
    hot = {k for p in fleet.pods if p.behaviour == "hot" for k in p.gpu_keys}
    assert {k for k, s in samples.items() if s.temp_c is not None and s.temp_c >= 85} == hot
    for pod in fleet.pods:
        for key in pod.gpu_keys:
            assert samples[key].pod is not None and samples[key].pod.key == pod.key
            if pod.behaviour == "idle":
                assert samples[key].util_pct is not None and samples[key].util_pct <= 2
