"""Shipped rules -> real Prometheus -> real Alertmanager -> webhook, and the alerts source feeding the store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gpuctl.sources.alerts import PrometheusAlertsSource, gpu_alerts
from gpuctl.sources.prometheus import PrometheusSource
from gpuctl.state.store import ClusterStore
from testbed.monitoring import Monitoring, ScrapeJob, StaticExporter, WebhookReceiver, exposition_line
from testbed.waiting import poll

pytestmark = pytest.mark.testbed

FIRING_ENDS_AT = "0001-01-01T00:00:00Z"
# An extra rule with no `for:` so the test need not wait 30 minutes for the shipped idle rule.
TEST_RULES = {
    "groups": [
        {
            "name": "gpuctl-test",
            "rules": [
                {
                    "alert": "TestGpuHeld",
                    "expr": 'DCGM_FI_DEV_GPU_UTIL{pod!=""}',
                    "labels": {"severity": "info"},
                    "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.pod }} holds a GPU"},
                }
            ],
        }
    ]
}


def gpu(index: int, *, xid: int, pod: tuple[str, str] | None = None) -> list[str]:
    labels = {"gpu": str(index), "UUID": f"GPU-{index}", "modelName": "NVIDIA A100-SXM4-80GB", "Hostname": "node-x"}
    if pod:
        labels |= {"namespace": pod[0], "pod": pod[1], "container": "main"}
    return [
        exposition_line("DCGM_FI_DEV_GPU_UTIL", 50, **labels),
        exposition_line("DCGM_FI_DEV_XID_ERRORS", xid, **labels),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bed(tmp_path_factory) -> AsyncIterator[tuple[Monitoring, StaticExporter, WebhookReceiver]]:
    async with WebhookReceiver() as hook, StaticExporter([*gpu(0, xid=79, pod=("ml", "trainer-0")), *gpu(1, xid=0)]) as exporter:
        mon = Monitoring(
            tmp_path_factory.mktemp("alerting"),
            jobs=[ScrapeJob("dcgm-exporter", [exporter.url])],
            webhook_url=hook.url,
            extra_rules=TEST_RULES,
        )
        async with mon:
            yield mon, exporter, hook


def alert_named(name: str, status: str = "firing"):
    def match(body: dict[str, Any]) -> bool:
        return any(a["labels"].get("alertname") == name and a["status"] == status for a in body.get("alerts", []))

    return match


async def test_shipped_xid_rule_reaches_the_webhook_as_a_version_4_payload(bed) -> None:
    _mon, exporter, hook = bed
    body = await hook.wait_for(alert_named("GpuXidCritical"))

    assert body["version"] == "4"
    assert body["status"] == "firing" and body["receiver"] == "webhook"
    assert body["groupLabels"] == {"alertname": "GpuXidCritical"}
    assert {"groupKey", "truncatedAlerts", "commonLabels", "commonAnnotations", "externalURL"} <= body.keys()
    (alert,) = [a for a in body["alerts"] if a["labels"]["alertname"] == "GpuXidCritical"]
    assert {"Hostname": "node-x", "gpu": "0", "severity": "critical", "job": "dcgm-exporter"}.items() <= alert["labels"].items()
    assert alert["annotations"]["summary"] == "GPU 0 on node-x hit hardware XID 79: drain the node"
    assert alert["endsAt"] == FIRING_ENDS_AT and alert["startsAt"] and alert["fingerprint"]

    # The XID clears: Alertmanager sends the resolution (send_resolved) for the same alert.
    exporter.set([*gpu(0, xid=0, pod=("ml", "trainer-0")), *gpu(1, xid=0)])
    resolved = await hook.wait_for(alert_named("GpuXidCritical", "resolved"))
    (done,) = [a for a in resolved["alerts"] if a["labels"]["alertname"] == "GpuXidCritical"]
    assert done["fingerprint"] == alert["fingerprint"] and done["startsAt"] == alert["startsAt"]
    assert done["endsAt"] != FIRING_ENDS_AT


async def test_extra_test_rule_fires_through_alertmanager(bed) -> None:
    _, _, hook = bed
    body = await hook.wait_for(alert_named("TestGpuHeld"))
    (alert,) = [a for a in body["alerts"] if a["labels"]["alertname"] == "TestGpuHeld"]
    assert alert["annotations"]["summary"] == "ml/trainer-0 holds a GPU"


async def test_firing_gpu_alerts_land_in_the_store(bed) -> None:
    mon, exporter, _ = bed
    exporter.set([*gpu(0, xid=48, pod=("ml", "trainer-0")), *gpu(1, xid=0)])
    prometheus = PrometheusSource(mon.prometheus_url, timeout_s=5)
    store = ClusterStore()
    task = asyncio.create_task(PrometheusAlertsSource(prometheus, refresh_s=0.5).run(store))  # the real source loop
    try:
        snap = await poll(
            store.snapshot,
            lambda s: any(a.name == "GpuXidCritical" and a.summary and "XID 48" in a.summary for a in s.alerts),
            what="XID 48 alert in the store",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        prometheus.close()
    critical = next(a for a in snap.alerts if a.name == "GpuXidCritical")
    assert (critical.state, critical.severity, critical.node, critical.gpu) == ("firing", "critical", "node-x", "node-x/0")
    assert (critical.namespace, critical.pod) == ("ml", "trainer-0")
    assert critical.summary == "GPU 0 on node-x hit hardware XID 48: drain the node"
    assert critical.since is not None and critical.since.tzinfo is not None


def test_gpu_alerts_skips_unrelated_and_junk_entries() -> None:
    api = [
        {"labels": {"alertname": "NodeDiskFull", "instance": "n1"}, "state": "firing"},
        {"labels": {"alertname": "DcgmExporterDown", "instance": "n1:9400", "severity": "warning"}, "state": "pending", "activeAt": "2025-01-02T03:04:05.123456789Z"},
        {"labels": "nonsense"},
        "junk",
    ]
    (down,) = gpu_alerts(api)
    assert (down.name, down.state, down.node, down.gpu) == ("DcgmExporterDown", "pending", None, None)
    assert down.since is not None and down.since.isoformat() == "2025-01-02T03:04:05.123456+00:00"
