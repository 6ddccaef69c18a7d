"""The whole test bed in one object: control plane with the simulated fleet
loaded, the DCGM-exporter simulator for that fleet, and real Prometheus and
Alertmanager scraping it and alerting to a webhook receiver.

Used by `python -m testbed up` and by the `testbed` fixture in tests/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpuctl.sim.fleet import Fleet, build_fleet
from testbed.controlplane import ControlPlane
from testbed.dcgm_exporter import DcgmExporterSim
from testbed.fleet_loader import load_fleet
from testbed.kube import client_for
from testbed.monitoring import Monitoring, ScrapeJob, WebhookReceiver


@dataclass
class Telemetry:
    """The metrics half of the test bed: exporter → Prometheus → Alertmanager → webhook."""

    exporter: DcgmExporterSim
    monitoring: Monitoring
    webhook: WebhookReceiver

    @classmethod
    async def start(
        cls,
        workdir: Path,
        fleet: Fleet,
        *,
        seed: int = 7,
        scrape_interval_s: float = 1.0,
        evaluation_interval_s: float = 1.0,
        query_log: Path | None = None,
    ) -> Telemetry:
        """Scraping and rule evaluation every second by default (tests); a large fleet's
        benchmark scrapes less often, as a real Prometheus does (see Monitoring for query_log)."""
        exporter = DcgmExporterSim(fleet, seed)
        await exporter.start()
        webhook = WebhookReceiver()
        await webhook.start()
        monitoring = Monitoring(
            workdir,
            jobs=[ScrapeJob("dcgm-exporter", [exporter.url])],
            webhook_url=webhook.url,
            scrape_interval_s=scrape_interval_s,
            evaluation_interval_s=evaluation_interval_s,
            query_log=query_log,
        )
        await monitoring.start()
        return cls(exporter, monitoring, webhook)

    async def stop(self) -> None:
        self.monitoring.stop()
        await self.webhook.stop()
        await self.exporter.stop()


async def start_full(
    workdir: Path, bin_dir: Path, *, seed: int = 7, scale: int = 1, scrape_interval_s: float = 1.0
) -> tuple[ControlPlane, Fleet, Telemetry]:
    plane = ControlPlane(workdir / "controlplane", bin_dir)
    await plane.start()
    fleet = build_fleet(seed=seed, scale=scale)
    async with client_for(plane) as admin:
        await load_fleet(admin, fleet)
    telemetry = await Telemetry.start(
        workdir / "monitoring", fleet, seed=seed, scrape_interval_s=scrape_interval_s, evaluation_interval_s=scrape_interval_s
    )
    return plane, fleet, telemetry
