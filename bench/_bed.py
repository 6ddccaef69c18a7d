"""The test bed at benchmark scale, for bench_e2e.py and bench_bot.py.

`fleet_bed` starts the control plane on loopback (testbed.controlplane: etcd,
kube-apiserver, controllers, kwok), loads the seeded fleet topped up to
`pods` GPU pods (_common.filled_fleet; 80 per scale unit is the benchmarks'
default: scale 125 is 10,000 GPU pods on 12,500 devices), waits until kwok
runs them, starts the DCGM-exporter simulator for that fleet with a real
Prometheus scraping it every `scrape_s` seconds (testbed.bed.Telemetry), and
waits until Prometheus has every device. Everything it started is stopped
when the block ends or fails.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import filled_fleet

PODS_PER_SCALE = 80
RBAC = "rbac.authorization.k8s.io"
# user-a may do what reclaim-idle-gpus does, everywhere (the benchmarks are about time, not about who).
RECLAIMER = [
    {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": "bench-reclaimer"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]},
    {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "bench-reclaimer"},
     "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "bench-reclaimer"},
     "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "team-a"}]},
]  # fmt: skip


@dataclass
class FleetBed:
    plane: Any  # testbed.controlplane.ControlPlane
    fleet: Any  # gpuctl.sim.fleet.Fleet
    telemetry: Any  # testbed.bed.Telemetry
    admin: Any  # testbed.kube.RestClient as the test bed's admin
    plane_s: float  # control plane up
    load_s: float  # fleet loaded
    running_s: float  # then every placed pod Running
    prometheus_s: float  # then Prometheus had every device

    @property
    def prometheus(self) -> str:
        return self.telemetry.monitoring.prometheus_url

    def floor_args(self) -> dict[str, Any]:
        """bench/_floor.py's argument (as JSON): the admin's credentials, Prometheus, the refresh's queries."""
        from gpuctl.sources import queries
        from gpuctl.sources.prometheus import REFRESH_QUANTITIES
        from testbed.controlplane import ADMIN

        pair = self.plane.client_cert(ADMIN)
        return {"server": self.plane.server, "ca": str(self.plane.ca.pair.cert), "cert": str(pair.cert),
                "key": str(pair.key), "prometheus": self.prometheus,
                "queries": [queries.instant(q) for q in REFRESH_QUANTITIES]}  # fmt: skip

    def setup_line(self, scrape_s: float) -> str:
        return (f"control plane up in {self.plane_s:.1f} s, fleet loaded in {self.load_s:.1f} s, running in "
                f"{self.running_s:.1f} s more; Prometheus (scrape and rules every {scrape_s:g} s) had every device "
                f"{self.prometheus_s:.1f} s later")  # fmt: skip


async def wait_running(admin: Any, pending: int, timeout: float) -> float:
    """Wait until no more than `pending` pods are not Running (the fleet's unplaced ones); the seconds it took."""
    from testbed.waiting import poll

    async def not_running() -> int:
        body = (await admin.list("Pod", fieldSelector="status.phase!=Running")).body
        return len(body.get("items") or ())

    started = time.perf_counter()
    await poll(not_running, lambda n: n <= pending, timeout_s=timeout, interval_s=1.0, what="kwok to run the pods")
    return time.perf_counter() - started


@asynccontextmanager
async def fleet_bed(workdir: Path, *, scale: int, pods: int | None = None, scrape_s: float, timeout_s: float,
                    query_log: Path | None = None) -> AsyncIterator[FleetBed]:  # fmt: skip
    """The test bed with the benchmark fleet and its metrics (see the module doc); `timeout_s` per wait."""
    from testbed.bed import Telemetry
    from testbed.controlplane import ControlPlane, build_binaries
    from testbed.fleet_loader import load_fleet
    from testbed.kube import client_for

    bin_dir = await asyncio.to_thread(build_binaries)
    plane = ControlPlane(workdir / "controlplane", bin_dir)
    telemetry = None
    try:
        t = time.perf_counter()
        await plane.start()
        plane_s = time.perf_counter() - t
        fleet = filled_fleet(scale, pods if pods is not None else PODS_PER_SCALE * scale)
        pending = sum(1 for p in fleet.pods if p.node is None)
        async with client_for(plane) as admin:
            t = time.perf_counter()
            await load_fleet(admin, fleet)
            load_s = time.perf_counter() - t
            running_s = await wait_running(admin, pending, timeout_s * 3)
            t = time.perf_counter()
            telemetry = await Telemetry.start(workdir / "monitoring", fleet, scrape_interval_s=scrape_s,
                                              evaluation_interval_s=scrape_s, query_log=query_log)  # fmt: skip
            await telemetry.monitoring.wait_for_series("DCGM_FI_DEV_FB_USED", count=len(fleet.gpus), timeout_s=timeout_s * 3)
            yield FleetBed(plane, fleet, telemetry, admin, plane_s, load_s, running_s, time.perf_counter() - t)
    finally:
        if telemetry is not None:
            await telemetry.stop()
        plane.stop()
